#!/usr/bin/env python3
"""Route53 API benchmark: the same boto3 workload against edgeplane's Route53-compatible API
and against moto's server, side by side in one run.

Workload per server: create a zone; 1,000 single-change batches (UPSERT of one A record each);
10 batches of 1,000 CREATEs; list every record set (paging). Reports changes/s, per-call
latency and the ratios in docs/benchmarks.md. On edgeplane every acknowledged change is
durable (fsync) and already served over DNS; the script checks a sample with kdig.

This is a benchmark, not a test. usage: scripts/bench-route53.py [--no-build] [--no-write]
"""

import argparse
import configparser
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("EDGEPLANE_TEST_VENV", Path.home() / ".cache/edgeplane/venv"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def workload(client):
    zone = client.create_hosted_zone(Name="bench.example", CallerReference=f"bench-{time.time()}")["HostedZone"]["Id"]
    lat = []
    started = time.perf_counter()
    for i in range(1000):
        t = time.perf_counter()
        client.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [
            {"Action": "UPSERT", "ResourceRecordSet": {"Name": f"single{i}.bench.example", "Type": "A", "TTL": 60,
                                                       "ResourceRecords": [{"Value": f"10.0.{i // 256}.{i % 256}"}]}}]})
        lat.append(time.perf_counter() - t)
    single = time.perf_counter() - started
    started = time.perf_counter()
    for b in range(10):
        client.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [
            {"Action": "CREATE", "ResourceRecordSet": {"Name": f"b{b}-{i}.bench.example", "Type": "A", "TTL": 60,
                                                       "ResourceRecords": [{"Value": f"10.1.{b}.{i % 256}"}]}}
            for i in range(1000)]})
    batched = time.perf_counter() - started
    started = time.perf_counter()
    count = 0
    for page in client.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone):
        count += len(page["ResourceRecordSets"])
    listing = time.perf_counter() - started
    return {"single_cps": 1000 / single, "p50_ms": pct(lat, 0.5) * 1000, "p99_ms": pct(lat, 0.99) * 1000,
            "batch_cps": 10_000 / batched, "list_s": listing, "listed": count, "zone": zone}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    subprocess.run([ROOT / "scripts/install-test-deps.sh", "--bench"], check=True)
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "edgeplane"], cwd=ROOT, check=True)
    try:
        import boto3
        import botocore
    except ImportError:
        # Run again with the virtualenv that install-test-deps.sh made.
        venv_python = str(VENV / "bin/python")
        os.execv(venv_python, [venv_python, __file__, "--no-build", *(["--no-write"] if args.no_write else [])])

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        api, dns, admin = free_port(), free_port(), free_port()
        ep = subprocess.Popen([ROOT / "target/release/edgeplane", "--data-dir", work / "data", "serve",
                               "--api-listen", f"127.0.0.1:{api}", "--dns-listen", f"127.0.0.1:{dns}",
                               "--admin-listen", f"127.0.0.1:{admin}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "EDGEPLANE_LOG": "warn"})
        moto_port = free_port()
        moto = subprocess.Popen([VENV / "bin/moto_server", "-p", str(moto_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(api)
            wait_port(moto_port)
            for _ in range(50):
                if (work / "data/admin-credentials").exists():
                    break
                time.sleep(0.1)
            cp = configparser.ConfigParser()
            cp.read(work / "data/admin-credentials")
            c = cp["edgeplane-admin"]
            cfg = botocore.config.Config(retries={"max_attempts": 1})
            clients = {
                "edgeplane": boto3.client("route53", endpoint_url=f"http://127.0.0.1:{api}", region_name="us-east-1",
                                          aws_access_key_id=c["aws_access_key_id"], aws_secret_access_key=c["aws_secret_access_key"], config=cfg),
                "moto": boto3.client("route53", endpoint_url=f"http://127.0.0.1:{moto_port}", region_name="us-east-1",
                                     aws_access_key_id="testing", aws_secret_access_key="testing", config=cfg),
            }
            for name, client in clients.items():
                results[name] = workload(client)
                r = results[name]
                print(f"{name:10} single {r['single_cps']:8.0f} changes/s (p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms)"
                      f"  batched {r['batch_cps']:8.0f} changes/s  list {r['listed']} sets in {r['list_s']:.2f} s", flush=True)
            out = subprocess.run(["kdig", "@127.0.0.1", "-p", str(dns), "+short", "single999.bench.example", "A"], capture_output=True, text=True)
            assert out.stdout.strip() == "10.0.3.231", f"edgeplane does not serve the last change: {out.stdout!r}"
            out = subprocess.run(["kdig", "@127.0.0.1", "-p", str(dns), "+short", "b9-999.bench.example", "A"], capture_output=True, text=True)
            assert out.stdout.strip() == "10.1.9.231", f"edgeplane does not serve the last batch: {out.stdout!r}"
        finally:
            for p in (ep, moto):
                p.kill()
                p.wait()

    e, m = results["edgeplane"], results["moto"]
    table = "\n".join([
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} CPUs, boto3 {boto3.__version__}, one client, loopback. "
        "edgeplane acknowledges a change after an fsync'd commit, and the change is then answerable over DNS "
        "(checked with kdig); moto keeps everything in memory.",
        "",
        "| | edgeplane | moto | edgeplane / moto |",
        "|---|---:|---:|---:|",
        f"| 1,000 single-change batches: changes/s | {e['single_cps']:,.0f} | {m['single_cps']:,.0f} | {e['single_cps'] / m['single_cps']:.2f}x |",
        f"| per call, p50 | {e['p50_ms']:.2f} ms | {m['p50_ms']:.2f} ms | {e['p50_ms'] / m['p50_ms']:.2f}x |",
        f"| per call, p99 | {e['p99_ms']:.2f} ms | {m['p99_ms']:.2f} ms | {e['p99_ms'] / m['p99_ms']:.2f}x |",
        f"| 10 batches of 1,000 changes: changes/s | {e['batch_cps']:,.0f} | {m['batch_cps']:,.0f} | {e['batch_cps'] / m['batch_cps']:.2f}x |",
        f"| list {e['listed']:,} record sets (paging) | {e['list_s']:.2f} s | {m['list_s']:.2f} s | {e['list_s'] / m['list_s']:.2f}x |",
    ])
    print("\n" + table)
    if not args.no_write:
        doc = ROOT / "docs/benchmarks.md"
        text = doc.read_text()
        start, end = "<!-- route53-bench:start -->", "<!-- route53-bench:end -->"
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        doc.write_text(f"{head}{start}\n{table}\n{end}{tail}")
        print(f"\nwritten to {doc}")


if __name__ == "__main__":
    main()
