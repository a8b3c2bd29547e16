"""Drives edgeplane's Route53-compatible API with boto3 (an AWS SDK nobody here wrote).

usage: route53_boto3.py CREDENTIALS_FILE ENDPOINT
Exits non-zero (an assertion) on the first unexpected answer; prints the created zone ID.
"""
import configparser
import sys

import boto3
import botocore

cp = configparser.ConfigParser()
cp.read(sys.argv[1])
creds = cp["edgeplane-admin"]


def client(key_id=creds["aws_access_key_id"], secret=creds["aws_secret_access_key"]):
    return boto3.client("route53", endpoint_url=sys.argv[2], region_name="us-east-1",
                        aws_access_key_id=key_id, aws_secret_access_key=secret,
                        config=botocore.config.Config(retries={"max_attempts": 1}))


r = client()
created = r.create_hosted_zone(Name="example.org", CallerReference="boto3-1",
                               HostedZoneConfig={"Comment": "made by boto3"})
zone_id = created["HostedZone"]["Id"]
assert zone_id.startswith("/hostedzone/Z"), zone_id
assert created["HostedZone"]["Name"] == "example.org."
assert created["HostedZone"]["Config"]["Comment"] == "made by boto3"
assert created["DelegationSet"]["NameServers"], created
assert created["ResponseMetadata"]["HTTPStatusCode"] == 201

# Same caller reference again: refused.
try:
    r.create_hosted_zone(Name="other.org", CallerReference="boto3-1")
    raise AssertionError("a reused CallerReference was accepted")
except r.exceptions.HostedZoneAlreadyExists:
    pass

change = r.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Comment": "first", "Changes": [
    {"Action": "UPSERT", "ResourceRecordSet": {"Name": "www.example.org", "Type": "A", "TTL": 60,
                                               "ResourceRecords": [{"Value": "192.0.2.10"}, {"Value": "192.0.2.11"}]}},
    {"Action": "CREATE", "ResourceRecordSet": {"Name": "*.example.org", "Type": "TXT", "TTL": 60,
                                               "ResourceRecords": [{"Value": '"wild"'}]}},
    {"Action": "CREATE", "ResourceRecordSet": {"Name": "_acme-challenge.example.org", "Type": "TXT", "TTL": 30,
                                               "ResourceRecords": [{"Value": '"token-1"'}]}},
]})
info = change["ChangeInfo"]
assert info["Status"] in ("PENDING", "INSYNC"), info
assert r.get_change(Id=info["Id"])["ChangeInfo"]["Status"] == "INSYNC"
r.get_waiter("resource_record_sets_changed").wait(Id=info["Id"], WaiterConfig={"Delay": 1, "MaxAttempts": 5})

# An invalid batch changes nothing and names the problem.
try:
    r.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [
        {"Action": "UPSERT", "ResourceRecordSet": {"Name": "ok.example.org", "Type": "A", "TTL": 60,
                                                   "ResourceRecords": [{"Value": "192.0.2.1"}]}},
        {"Action": "DELETE", "ResourceRecordSet": {"Name": "nothere.example.org", "Type": "A", "TTL": 60,
                                                   "ResourceRecords": [{"Value": "192.0.2.1"}]}}]})
    raise AssertionError("an invalid batch was accepted")
except r.exceptions.InvalidChangeBatch as e:
    assert "but it was not found" in e.response["Error"]["Message"], e.response

sets = r.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
names = [(s["Name"], s["Type"]) for s in sets]
assert names == [("example.org.", "NS"), ("example.org.", "SOA"), ("\\052.example.org.", "TXT"),
                 ("_acme-challenge.example.org.", "TXT"), ("www.example.org.", "A")], names
assert not any(n == "ok.example.org." for n, _ in names)

# Paging: one set per page, following NextRecordName/Type.
seen, kwargs = [], {}
while True:
    page = r.list_resource_record_sets(HostedZoneId=zone_id, MaxItems="1", **kwargs)
    seen += [(s["Name"], s["Type"]) for s in page["ResourceRecordSets"]]
    if not page["IsTruncated"]:
        break
    kwargs = {"StartRecordName": page["NextRecordName"], "StartRecordType": page["NextRecordType"]}
assert seen == names, seen

assert [z["Name"] for z in r.list_hosted_zones()["HostedZones"]] == ["example.org."]
assert r.list_hosted_zones_by_name(DNSName="example.org")["HostedZones"][0]["Id"] == zone_id
assert r.get_hosted_zone_count()["HostedZoneCount"] == 1
assert r.get_hosted_zone(Id=zone_id.split("/")[-1])["HostedZone"]["ResourceRecordSetCount"] == 5

for call, code in [(lambda: r.get_hosted_zone(Id="ZNOSUCHZONE"), "NoSuchHostedZone"),
                   (lambda: r.delete_hosted_zone(Id=zone_id), "HostedZoneNotEmpty"),
                   (lambda: r.get_change(Id="CNOSUCH"), "NoSuchChange"),
                   (lambda: client(secret="x" * 40).list_hosted_zones(), "SignatureDoesNotMatch"),
                   (lambda: client(key_id="EPAKUNKNOWNUNKNOWN00").list_hosted_zones(), "InvalidClientTokenId")]:
    try:
        call()
        raise AssertionError(f"{code} expected")
    except botocore.exceptions.ClientError as e:
        assert e.response["Error"]["Code"] == code, (code, e.response)


# Comments and tags (external-dns keeps its ownership in tags).
zid = zone_id.split("/")[-1]
updated = r.update_hosted_zone_comment(Id=zid, Comment="renamed")
assert updated["HostedZone"]["Config"]["Comment"] == "renamed", updated
r.change_tags_for_resource(ResourceType="hostedzone", ResourceId=zid,
                           AddTags=[{"Key": "owner", "Value": "external-dns"}, {"Key": "env", "Value": "prod"}])
r.change_tags_for_resource(ResourceType="hostedzone", ResourceId=zid, RemoveTagKeys=["env"])
tags = r.list_tags_for_resource(ResourceType="hostedzone", ResourceId=zid)["ResourceTagSet"]["Tags"]
assert tags == [{"Key": "owner", "Value": "external-dns"}], tags
sets = r.list_tags_for_resources(ResourceType="hostedzone", ResourceIds=[zid])["ResourceTagSets"]
assert sets[0]["ResourceId"] == zid and sets[0]["Tags"] == tags, sets
try:
    r.list_tags_for_resource(ResourceType="hostedzone", ResourceId="ZNOSUCH")
    raise AssertionError("tags of a missing zone")
except r.exceptions.NoSuchHostedZone:
    pass

print(zone_id)
