"""ListHostedZonesByName order and paging over several zones, and change batch limits.

usage: listing_limits_boto3.py CREDENTIALS_FILE ENDPOINT ; prints nothing on success.
"""
import configparser
import sys

import boto3
import botocore

cp = configparser.ConfigParser()
cp.read(sys.argv[1])
c = cp["edgeplane-admin"]
r = boto3.client("route53", endpoint_url=sys.argv[2], region_name="us-east-1",
                 aws_access_key_id=c["aws_access_key_id"], aws_secret_access_key=c["aws_secret_access_key"],
                 config=botocore.config.Config(retries={"max_attempts": 1}))

ids = {}
for i, name in enumerate(["example.net", "b.a.com", "a.com", "a-b.com", "a.com"]):
    z = r.create_hosted_zone(Name=name, CallerReference=f"by-name-{i}")["HostedZone"]
    ids.setdefault(name + ".", []).append(z["Id"].split("/")[-1])
twins = sorted(ids["a.com."])

# Route53 sorts by the name with its labels reversed, as a string ("com.a-b." < "com.a."),
# then by ID.
listed = r.list_hosted_zones_by_name()
assert not listed["IsTruncated"], listed
order = [(z["Name"], z["Id"].split("/")[-1]) for z in listed["HostedZones"]]
expected = [("a-b.com.", ids["a-b.com."][0]), ("a.com.", twins[0]), ("a.com.", twins[1]),
            ("b.a.com.", ids["b.a.com."][0]), ("example.net.", ids["example.net."][0])]
assert order == expected, order

# Paging two at a time through NextDNSName/NextHostedZoneId visits the same zones.
pages, kwargs = [], {}
while True:
    page = r.list_hosted_zones_by_name(MaxItems="2", **kwargs)
    pages.append([(z["Name"], z["Id"].split("/")[-1]) for z in page["HostedZones"]])
    assert page["MaxItems"] == "2", page
    if kwargs:
        assert (page["DNSName"], page["HostedZoneId"]) == (kwargs["DNSName"], kwargs["HostedZoneId"]), page
    if not page["IsTruncated"]:
        assert "NextDNSName" not in page, page
        break
    kwargs = {"DNSName": page["NextDNSName"], "HostedZoneId": page["NextHostedZoneId"]}
assert [len(p) for p in pages] == [2, 2, 1], pages
assert sum(pages, []) == expected, pages
assert pages[1][0] == ("a.com.", twins[1]), "the second twin starts the second page"

# DNSName alone starts at the first zone of that name (or the next name).
start = r.list_hosted_zones_by_name(DNSName="a.com", MaxItems="1")
assert start["DNSName"] == "a.com." and start["HostedZones"][0]["Id"].endswith(twins[0]), start
assert (start["NextDNSName"], start["NextHostedZoneId"]) == ("a.com.", twins[1]), start
after = r.list_hosted_zones_by_name(DNSName="c.com")["HostedZones"]
assert [z["Name"] for z in after] == ["example.net."], after
try:
    r.list_hosted_zones_by_name(HostedZoneId=twins[0])
    raise AssertionError("HostedZoneId without DNSName was accepted")
except botocore.exceptions.ClientError as e:
    assert e.response["Error"]["Code"] == "InvalidInput", e.response

# Batch limits: 1,000 ResourceRecord elements and 32,000 characters of values, UPSERT counted
# twice; Route53's InvalidChangeBatch documents.
zone = ids["example.net."][0]


def batch(action, sets, values, length):
    changes = []
    for s in range(sets):
        records = []
        for v in range(values):
            tag = f"{action}-{s}-{v}-"
            records.append({"Value": '"' + tag + "x" * (length - len(tag) - 2) + '"'})
        changes.append({"Action": action, "ResourceRecordSet": {
            "Name": f"{action.lower()}{s}.example.net", "Type": "TXT", "TTL": 60, "ResourceRecords": records}})
    return {"Changes": changes}


def refused(b, message):
    try:
        r.change_resource_record_sets(HostedZoneId=zone, ChangeBatch=b)
    except r.exceptions.InvalidChangeBatch as e:
        assert e.response["Error"]["Message"] == message, e.response
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400, e.response
        return
    raise AssertionError("a batch over the limits was accepted")


records = "[Number of records limit of 1000 exceeded.]"
chars = "RDATA character limit of 32000 exceeded."
refused(batch("CREATE", 11, 91, 10), records)
refused(batch("UPSERT", 6, 84, 10), records)
refused(batch("CREATE", 5, 100, 65), chars)
refused(batch("UPSERT", 3, 100, 55), chars)
count = r.get_hosted_zone(Id=zone)["HostedZone"]["ResourceRecordSetCount"]
assert count == 2, f"refused batches changed the zone ({count} record sets)"
# At the limits: accepted.
r.change_resource_record_sets(HostedZoneId=zone, ChangeBatch=batch("UPSERT", 5, 100, 10))
r.change_resource_record_sets(HostedZoneId=zone, ChangeBatch=batch("CREATE", 4, 100, 80))
assert r.get_hosted_zone(Id=zone)["HostedZone"]["ResourceRecordSetCount"] == 11
