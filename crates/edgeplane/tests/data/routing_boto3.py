"""Routing policies through the Route53 API: weighted, failover, multivalue and alias sets.

usage: routing_boto3.py CREDENTIALS_FILE ENDPOINT ; prints nothing on success.
"""
import configparser
import sys

import boto3

cp = configparser.ConfigParser()
cp.read(sys.argv[1])
c = cp["edgeplane-admin"]
r = boto3.client("route53", endpoint_url=sys.argv[2], region_name="us-east-1",
                 aws_access_key_id=c["aws_access_key_id"], aws_secret_access_key=c["aws_secret_access_key"])
zone = r.create_hosted_zone(Name="route.example", CallerReference="routing")["HostedZone"]["Id"]


def rrs(name, value, **extra):
    base = {"Name": name, "Type": "A"}
    if value is not None:
        base.update({"TTL": 30, "ResourceRecords": [{"Value": value}]})
    base.update(extra)
    return {"Action": "CREATE", "ResourceRecordSet": base}


r.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [
    rrs("canary.route.example", "192.0.2.1", SetIdentifier="stable", Weight=3),
    rrs("canary.route.example", "192.0.2.2", SetIdentifier="canary", Weight=1),
    rrs("ha.route.example", "192.0.2.10", SetIdentifier="primary", Failover="PRIMARY"),
    rrs("ha.route.example", "192.0.2.11", SetIdentifier="secondary", Failover="SECONDARY"),
    rrs("multi.route.example", "192.0.2.21", SetIdentifier="a", MultiValueAnswer=True),
    rrs("multi.route.example", "192.0.2.22", SetIdentifier="b", MultiValueAnswer=True),
    rrs("target.route.example", "192.0.2.30"),
    *[rrs("many.route.example", f"192.0.2.{40 + i}", SetIdentifier=f"many-{i}", MultiValueAnswer=True)
      for i in range(10)],
    rrs("alias.route.example", None, AliasTarget={"HostedZoneId": zone.split("/")[-1], "DNSName": "target.route.example",
                                                  "EvaluateTargetHealth": False}),
]})
listed = {(s["Name"], s.get("SetIdentifier")): s for s in r.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]}
assert listed[("canary.route.example.", "canary")]["Weight"] == 1, listed
assert listed[("ha.route.example.", "primary")]["Failover"] == "PRIMARY"
assert listed[("multi.route.example.", "a")]["MultiValueAnswer"] is True
assert listed[("alias.route.example.", None)]["AliasTarget"]["DNSName"] == "target.route.example."
