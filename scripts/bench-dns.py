#!/usr/bin/env python3
"""DNS benchmark: edgeplane, Knot and NSD serve the same zone, pinned to the same CPU, and
dnsperf (pinned to another CPU) measures each in turn, in one run.

Reports, per server: queries/s at saturation, and p50/p99 latency at a fixed offered load.
Writes the table into docs/benchmarks.md between the dns-bench markers.

This is a benchmark, not a test: it asserts only that every server answers the zone.

usage: scripts/bench-dns.py [--seconds N] [--records N] [--no-build] [--no-write]
"""

import argparse
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ZONE = "bench.example"
SERVER_CPU = "0"
CLIENT_CPU = "1"


def free_port():
    while True:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket()
        try:
            t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()


def make_zone(path: Path, records: int):
    rnd = random.Random(42)
    lines = [
        f"$ORIGIN {ZONE}.",
        "$TTL 300",
        "@ SOA ns1 hostmaster 1 7200 900 1209600 60",
        "@ NS ns1",
        "ns1 A 192.0.2.53",
        "*.wild A 192.0.2.80",
    ]
    for i in range(records):
        lines.append(f"host{i} A 10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}")
        if i % 10 == 0:
            lines.append(f"alias{i} CNAME host{i}")
        if i % 4 == 0:
            lines.append(f"host{i} AAAA 2001:db8::{i:x}")
    path.write_text("\n".join(lines) + "\n")
    queries = []
    for _ in range(100_000):
        r = rnd.random()
        i = rnd.randrange(records)
        if r < 0.70:
            queries.append(f"host{i}.{ZONE} A")
        elif r < 0.80:
            queries.append(f"host{i}.{ZONE} MX")  # NODATA
        elif r < 0.90:
            queries.append(f"missing{i}.{ZONE} A")  # NXDOMAIN
        elif r < 0.95:
            queries.append(f"alias{(i // 10) * 10}.{ZONE} A")  # CNAME + target
        else:
            queries.append(f"x{i}.wild.{ZONE} A")  # wildcard
    return queries


def wait_udp(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run(["kdig", "@127.0.0.1", "-p", str(port), "+time=1", "+retry=0", f"host1.{ZONE}", "A", "+short"],
                             capture_output=True, text=True)
        if "10.0.0.1" in out.stdout:
            return
        time.sleep(0.2)
    raise SystemExit(f"server on port {port} never answered host1.{ZONE}")


def start_edgeplane(work: Path, zone_file: Path, port: int):
    binary = ROOT / "target" / "release" / "edgeplane"
    data = work / "edgeplane-data"
    subprocess.run([binary, "--data-dir", data, "zone", "import", ZONE, "--file", zone_file, "--create"],
                   check=True, capture_output=True)
    log = open(work / "edgeplane.log", "w")
    return subprocess.Popen(["taskset", "-c", SERVER_CPU, binary, "--data-dir", data, "serve",
                             "--dns-listen", f"127.0.0.1:{port}", "--udp-workers", "1",
                             "--metrics-listen", "127.0.0.1:0"],
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env={**os.environ, "EDGEPLANE_LOG": "warn"})


def start_knot(work: Path, zone_file: Path, port: int):
    d = work / "knot"
    d.mkdir()
    shutil.copy(zone_file, d / f"{ZONE}.zone")
    conf = d / "knot.conf"
    conf.write_text(f"""server:
    rundir: {d}
    listen: 127.0.0.1@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: {d}
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: {d}
    file: "%s.zone"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: {ZONE}
""")
    log = open(d / "knot.log", "w")
    return subprocess.Popen(["taskset", "-c", SERVER_CPU, "knotd", "-c", conf], stdout=log, stderr=log, stdin=subprocess.DEVNULL)


def start_nsd(work: Path, zone_file: Path, port: int):
    d = work / "nsd"
    d.mkdir()
    shutil.copy(zone_file, d / f"{ZONE}.zone")
    conf = d / "nsd.conf"
    conf.write_text(f"""server:
  ip-address: 127.0.0.1@{port}
  port: {port}
  server-count: 1
  zonesdir: "{d}"
  database: ""
  pidfile: "{d}/nsd.pid"
  xfrdfile: "{d}/xfrd.state"
  zonelistfile: "{d}/zone.list"
  username: ""
  chroot: ""
  rrl-ratelimit: 0
  verbosity: 0
remote-control:
  control-enable: no
zone:
  name: {ZONE}
  zonefile: "{d}/{ZONE}.zone"
""")
    log = open(d / "nsd.log", "w")
    return subprocess.Popen(["taskset", "-c", SERVER_CPU, "nsd", "-d", "-c", conf], stdout=log, stderr=log, stdin=subprocess.DEVNULL)


def dnsperf_throughput(port, queries_file, seconds):
    out = subprocess.run(["taskset", "-c", CLIENT_CPU, "dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", queries_file,
                          "-l", str(seconds), "-c", "8", "-q", "1000", "-t", "2"],
                         capture_output=True, text=True, check=True).stdout
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))
    lost = re.search(r"Queries lost:\s+(\d+)", out).group(1)
    completed = re.search(r"Queries completed:\s+(\d+)", out).group(1)
    return qps, int(completed), int(lost)


def dnsperf_latency(port, queries_file, seconds, rate):
    out = subprocess.run(["taskset", "-c", CLIENT_CPU, "dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", queries_file,
                          "-l", str(seconds), "-Q", str(rate), "-v", "-t", "2"],
                         capture_output=True, text=True, check=True).stdout
    lat = []
    for line in out.splitlines():
        if line.startswith(">"):
            try:
                lat.append(float(line.split()[-1]))
            except ValueError:
                pass
    lat.sort()
    if not lat:
        raise SystemExit("dnsperf reported no latencies")
    pct = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))] * 1e6
    return pct(0.50), pct(0.99), pct(0.999)


def version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except Exception:
        return "unknown"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--rate", type=int, default=20_000, help="offered load of the latency phase (queries/s)")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    subprocess.run([ROOT / "scripts" / "install-test-deps.sh", "--bench"], check=True)
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "edgeplane"], cwd=ROOT, check=True)

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        zone_file = work / "bench.zone"
        queries = make_zone(zone_file, args.records)
        qfile = work / "queries.txt"
        qfile.write_text("\n".join(queries) + "\n")
        for name, start in [("edgeplane", start_edgeplane), ("Knot " + version(["knotd", "--version"]).split()[-1], start_knot),
                            ("NSD " + version(["nsd", "-v"]).split()[-1], start_nsd)]:
            port = free_port()
            proc = start(work, zone_file, port)
            try:
                wait_udp(port)
                dnsperf_throughput(port, qfile, 2)  # warm-up
                qps, completed, lost = dnsperf_throughput(port, qfile, args.seconds)
                # Latency is noisy on shared machines: the median of three runs.
                runs = [dnsperf_latency(port, qfile, max(3, args.seconds // 2), args.rate) for _ in range(3)]
                p50, p99, p999 = (sorted(r[k] for r in runs)[1] for k in range(3))
            finally:
                proc.kill()
                proc.wait()
            print(f"{name:12} {qps:12.0f} q/s  lost {lost}/{completed + lost}  p50 {p50:.0f} us  p99 {p99:.0f} us  p99.9 {p999:.0f} us", flush=True)
            results.append((name, qps, lost, completed, p50, p99, p999))

    base = results[0]
    cpu = "unknown"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except Exception:
        pass
    lines = [
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} CPUs ({cpu}); "
        f"zone of {args.records} hosts (+ AAAA, CNAME, wildcard), 100k-query mix "
        f"(70% A, 10% NODATA, 10% NXDOMAIN, 5% CNAME, 5% wildcard). Each server pinned to CPU {SERVER_CPU} "
        f"with one UDP worker; dnsperf pinned to CPU {CLIENT_CPU} (8 clients, 1000 outstanding, {args.seconds} s). "
        f"Latency at a fixed {args.rate} queries/s (median of three runs).",
        "",
        "| server | queries/s | vs edgeplane | lost | p50 µs | p99 µs | p99.9 µs |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, qps, lost, completed, p50, p99, p999 in results:
        ratio = qps / base[1] if base[1] else 0
        lines.append(f"| {name} | {qps:,.0f} | {ratio:.2f}x | {lost} | {p50:.0f} | {p99:.0f} | {p999:.0f} |")
    knot = results[1]
    lines += ["", f"edgeplane / Knot queries/s ratio: **{base[1] / knot[1]:.2f}**; "
              f"p99 latency ratio: **{base[5] / knot[5]:.2f}** (below 1 is better)."]
    table = "\n".join(lines)
    print("\n" + table)
    if not args.no_write:
        doc = ROOT / "docs" / "benchmarks.md"
        text = doc.read_text()
        start, end = "<!-- dns-bench:start -->", "<!-- dns-bench:end -->"
        if start not in text:
            sys.exit(f"{doc} lacks the {start} marker")
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        doc.write_text(f"{head}{start}\n{table}\n{end}{tail}")
        print(f"\nwritten to {doc}")


if __name__ == "__main__":
    main()
