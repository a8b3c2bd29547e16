"""Route53 health checks through boto3, and record sets that name them.

usage: health_boto3.py CREDENTIALS_FILE ENDPOINT UP_PORT DOWN_PORT
UP_PORT answers HTTP on 127.0.0.1, nothing listens on DOWN_PORT. Prints the health check IDs
as JSON; exits non-zero (an assertion) on the first unexpected answer.
"""
import configparser
import json
import sys
import time

import boto3
import botocore

cp = configparser.ConfigParser()
cp.read(sys.argv[1])
c = cp["edgeplane-admin"]
r = boto3.client("route53", endpoint_url=sys.argv[2], region_name="us-east-1",
                 aws_access_key_id=c["aws_access_key_id"], aws_secret_access_key=c["aws_secret_access_key"],
                 config=botocore.config.Config(retries={"max_attempts": 1}))
up_port, down_port = int(sys.argv[3]), int(sys.argv[4])


def code(call):
    try:
        call()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    raise AssertionError("accepted")


http = {"Type": "HTTP", "IPAddress": "127.0.0.1", "Port": up_port, "ResourcePath": "/health",
        "RequestInterval": 10, "FailureThreshold": 1}
created = r.create_health_check(CallerReference="up", HealthCheckConfig=http)
assert created["ResponseMetadata"]["HTTPStatusCode"] == 201, created
up = created["HealthCheck"]["Id"]
got = created["HealthCheck"]["HealthCheckConfig"]
assert (got["Type"], got["Port"], got["ResourcePath"], got["RequestInterval"], got["FailureThreshold"]) == \
    ("HTTP", up_port, "/health", 10, 1), got
# The same reference and configuration: the same check. Another configuration: refused.
assert r.create_health_check(CallerReference="up", HealthCheckConfig=http)["HealthCheck"]["Id"] == up
assert code(lambda: r.create_health_check(CallerReference="up", HealthCheckConfig={**http, "Port": 1})) \
    == "HealthCheckAlreadyExists"
down = r.create_health_check(CallerReference="down", HealthCheckConfig={
    "Type": "TCP", "IPAddress": "127.0.0.1", "Port": down_port, "FailureThreshold": 1})["HealthCheck"]["Id"]
defaults = r.get_health_check(HealthCheckId=down)["HealthCheck"]["HealthCheckConfig"]
assert (defaults["RequestInterval"], defaults["Inverted"], defaults["Disabled"]) == (30, False, False), defaults
assert code(lambda: r.create_health_check(CallerReference="tcp-no-port", HealthCheckConfig={
    "Type": "TCP", "IPAddress": "127.0.0.1"})) == "InvalidInput"
assert code(lambda: r.create_health_check(CallerReference="calc", HealthCheckConfig={
    "Type": "CALCULATED", "ChildHealthChecks": [up], "HealthThreshold": 1})) == "InvalidInput"

# Listing pages by marker.
spare = r.create_health_check(CallerReference="spare", HealthCheckConfig={
    "Type": "TCP", "FullyQualifiedDomainName": "localhost", "Port": down_port})["HealthCheck"]["Id"]
seen, kwargs = [], {}
while True:
    page = r.list_health_checks(MaxItems="1", **kwargs)
    seen += [h["Id"] for h in page["HealthChecks"]]
    if not page["IsTruncated"]:
        break
    kwargs = {"Marker": page["NextMarker"]}
assert seen == sorted([up, down, spare]), seen
r.delete_health_check(HealthCheckId=spare)
assert code(lambda: r.get_health_check(HealthCheckId=spare)) == "NoSuchHealthCheck"
assert code(lambda: r.delete_health_check(HealthCheckId=spare)) == "NoSuchHealthCheck"
assert code(lambda: r.create_health_check(CallerReference="spare", HealthCheckConfig={
    "Type": "TCP", "FullyQualifiedDomainName": "localhost", "Port": down_port})) == "HealthCheckAlreadyExists"

zone = r.create_hosted_zone(Name="health.example", CallerReference="health")["HostedZone"]["Id"]


def rrs(name, ip, ident, check=None, **policy):
    s = {"Name": name, "Type": "A", "TTL": 30, "ResourceRecords": [{"Value": ip}], "SetIdentifier": ident, **policy}
    if check:
        s["HealthCheckId"] = check
    return {"Action": "CREATE", "ResourceRecordSet": s}


# A record set naming a missing check is refused, and the batch changes nothing.
assert code(lambda: r.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [
    rrs("x.health.example", "192.0.2.1", "x", "00000000-0000-4000-8000-000000000000", Failover="PRIMARY")]})) \
    == "NoSuchHealthCheck"
r.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [
    rrs("ha.health.example", "192.0.2.10", "primary", up, Failover="PRIMARY"),
    rrs("ha.health.example", "192.0.2.11", "secondary", Failover="SECONDARY"),
    rrs("multi.health.example", "192.0.2.21", "m1", up, MultiValueAnswer=True),
    rrs("multi.health.example", "192.0.2.22", "m2", down, MultiValueAnswer=True),
    rrs("multi.health.example", "192.0.2.23", "m3", MultiValueAnswer=True),
    rrs("w.health.example", "192.0.2.31", "heavy", down, Weight=100),
    rrs("w.health.example", "192.0.2.32", "light", up, Weight=1),
]})
listed = {(s["Name"], s.get("SetIdentifier")): s for s in r.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]}
assert listed[("ha.health.example.", "primary")]["HealthCheckId"] == up, listed
assert "HealthCheckId" not in listed[("ha.health.example.", "secondary")]
assert not any(n == "x.health.example." for n, _ in listed)

# The checker's observations, as GetHealthCheckStatus reports them.
deadline = time.time() + 20
while True:
    statuses = {}
    for name, hc in (("up", up), ("down", down)):
        obs = r.get_health_check_status(HealthCheckId=hc)["HealthCheckObservations"]
        statuses[name] = obs[0]["StatusReport"]["Status"] if obs else ""
    if statuses["up"].startswith("Success: HTTP Status Code 200") and statuses["down"].startswith("Failure:"):
        break
    assert time.time() < deadline, statuses
    time.sleep(0.2)
print(json.dumps({"up": up, "down": down}))
