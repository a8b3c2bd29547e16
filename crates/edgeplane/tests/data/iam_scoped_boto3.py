"""A per-zone identity through the IAM API, and its policy enforced by the Route53 API.

usage: iam_scoped_boto3.py CREDENTIALS_FILE ENDPOINT
The identity may only change `_acme-challenge` TXT records of its own zone, as cert-manager's
DNS-01 solver needs; every other change is refused with AccessDenied.
"""
import configparser
import json
import sys

import boto3
import botocore

cp = configparser.ConfigParser()
cp.read(sys.argv[1])
admin = cp["edgeplane-admin"]
endpoint = sys.argv[2]
cfg = botocore.config.Config(retries={"max_attempts": 1})


def clients(key_id, secret):
    kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=key_id,
              aws_secret_access_key=secret, config=cfg)
    return boto3.client("route53", **kw), boto3.client("iam", **kw)


def code_of(call):
    try:
        call()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    return None


r53, iam = clients(admin["aws_access_key_id"], admin["aws_secret_access_key"])
zone = r53.create_hosted_zone(Name="example.net", CallerReference="scoped-1")["HostedZone"]["Id"].split("/")[-1]
other = r53.create_hosted_zone(Name="other.net", CallerReference="scoped-2")["HostedZone"]["Id"].split("/")[-1]

user = "cert-manager-example-net"
created = iam.create_user(UserName=user)["User"]
assert created["UserName"] == user and created["Arn"].endswith(":user/" + user), created
assert code_of(lambda: iam.create_user(UserName=user)) == "EntityAlreadyExists"
assert code_of(lambda: iam.get_user(UserName="nobody")) == "NoSuchEntity"
assert code_of(lambda: iam.put_user_policy(UserName=user, PolicyName="bad", PolicyDocument="{not json")) == "MalformedPolicyDocument"

policy = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets"],
     "Resource": f"arn:aws:route53:::hostedzone/{zone}",
     "Condition": {"ForAllValues:StringLike": {"route53:ChangeResourceRecordSetsNormalizedRecordNames": ["_acme-challenge.*"]},
                   "ForAllValues:StringEquals": {"route53:ChangeResourceRecordSetsRecordTypes": ["TXT"]}}},
    {"Effect": "Allow", "Action": "route53:GetChange", "Resource": "arn:aws:route53:::change/*"},
    {"Effect": "Allow", "Action": "route53:ListHostedZonesByName", "Resource": "*"}]}
iam.put_user_policy(UserName=user, PolicyName="acme-dns01", PolicyDocument=json.dumps(policy))
assert iam.list_user_policies(UserName=user)["PolicyNames"] == ["acme-dns01"]
doc = iam.get_user_policy(UserName=user, PolicyName="acme-dns01")["PolicyDocument"]
assert (json.loads(doc) if isinstance(doc, str) else doc) == policy, doc  # botocore decodes it
key = iam.create_access_key(UserName=user)["AccessKey"]
assert key["Status"] == "Active" and len(key["SecretAccessKey"]) == 40
second = iam.create_access_key(UserName=user)["AccessKey"]
assert code_of(lambda: iam.create_access_key(UserName=user)) == "LimitExceeded"
assert sorted(k["AccessKeyId"] for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]) == sorted([key["AccessKeyId"], second["AccessKeyId"]])
iam.delete_access_key(UserName=user, AccessKeyId=second["AccessKeyId"])
assert code_of(lambda: iam.delete_user(UserName=user)) == "DeleteConflict"

scoped, scoped_iam = clients(key["AccessKeyId"], key["SecretAccessKey"])


def txt(name, zone_id, value='"token"', action="UPSERT", rtype="TXT"):
    rec = {"Name": name, "Type": rtype, "TTL": 60, "ResourceRecords": [{"Value": value}]}
    return lambda: scoped.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": action, "ResourceRecordSet": rec}]})


# Allowed: the challenge record of its own zone, then polling the change, finding the zone.
change = txt("_acme-challenge.example.net", zone, '"acme-token-42"')()
assert scoped.get_change(Id=change["ChangeInfo"]["Id"])["ChangeInfo"]["Status"] == "INSYNC"
assert scoped.list_hosted_zones_by_name(DNSName="example.net")["HostedZones"][0]["Name"] == "example.net."
assert code_of(txt("_acme-challenge.www.example.net", zone)) is None
# Refused: another type, another name, another zone, other actions.
assert code_of(txt("www.example.net", zone, "192.0.2.1", rtype="A")) == "AccessDenied"
assert code_of(txt("www.example.net", zone)) == "AccessDenied"
assert code_of(txt("_acme-challenge.other.net", other)) == "AccessDenied"
assert code_of(lambda: scoped.list_hosted_zones()) == "AccessDenied"
assert code_of(lambda: scoped.delete_hosted_zone(Id=zone)) == "AccessDenied"
assert code_of(lambda: scoped_iam.create_user(UserName="escalate")) == "AccessDenied"
# A deactivated key stops working at once.
iam.update_access_key(UserName=user, AccessKeyId=key["AccessKeyId"], Status="Inactive")
assert code_of(txt("_acme-challenge.example.net", zone)) == "InvalidClientTokenId"
iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])
iam.delete_user_policy(UserName=user, PolicyName="acme-dns01")
iam.delete_user(UserName=user)
assert code_of(lambda: iam.get_user(UserName=user)) == "NoSuchEntity"
print("ok")
