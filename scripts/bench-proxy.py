#!/usr/bin/env python3
"""HTTP proxy benchmark: edgeplane, nginx and HAProxy in front of the same backend, each
pinned to the same CPU with one worker, measured in turn in one run by the same clients
(pinned to the other CPU): wrk (HTTP/1.1 keep-alive: requests/s, p50/p99), h2load (HTTPS with
HTTP/2 by ALPN) and openssl s_time (new TLS handshakes/s). Then edgeplane alone with 10, 10k
and 100k routers: requests/s, resident memory, and the time from a one-router change in the
manifest directory to that router answering.

Writes the tables into docs/benchmarks.md between the proxy-bench markers. A benchmark, not a
test: it asserts only that every proxy answers.

usage: scripts/bench-proxy.py [--seconds N] [--no-build] [--no-write] [--no-scale] [--workers N]
"""

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROXY_CPU = "0"
CLIENT_CPU = "1"
BINARY = ROOT / "target" / "release" / "edgeplane"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_http(url, host=None, timeout=60, expect=200, poll=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            req = urllib.request.Request(url, headers={"Host": host} if host else {})
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status == expect:
                    return
        except Exception:
            pass
        time.sleep(poll)
    sys.exit(f"{url} did not answer {expect}")


def spawn(cmd, log, cpu=PROXY_CPU, env=None):
    return subprocess.Popen(["taskset", "-c", cpu, *map(str, cmd)], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


def make_cert(work: Path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=bench.test", "-addext", "subjectAltName=DNS:bench.test",
                    "-keyout", work / "key.pem", "-out", work / "cert.pem"], check=True, capture_output=True)


def start_backend(work: Path, port: int):
    conf = work / "backend.conf"
    conf.write_text(f"""
worker_processes 1; daemon off; pid {work}/backend.pid; error_log {work}/backend.err;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{port} reuseport; location / {{ return 200 "ok\\n"; }} }} }}
""")
    return spawn(["nginx", "-c", conf, "-p", work], open(work / "backend.log", "w"), cpu=CLIENT_CPU)


def start_edgeplane(work: Path, port: int, tls_port: int, backend: int, routers: int = 1, workers: int = 1,
                    cpus=PROXY_CPU):
    data = work / f"edgeplane-data-{port}"
    manifests = work / f"edgeplane.d-{port}"
    manifests.mkdir()
    write_routers(manifests / "routes.yaml", backend, routers)
    cert, key = (work / "cert.pem").read_text(), (work / "key.pem").read_text()
    indent = lambda s: "\n".join("    " + l for l in s.strip().splitlines())
    (manifests / "tls.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: bench-tls}\ntype: kubernetes.io/tls\nstringData:\n"
        f"  tls.crt: |\n{indent(cert)}\n  tls.key: |\n{indent(key)}\n")
    log = open(work / f"edgeplane-{port}.log", "w")
    proc = spawn([BINARY, "--data-dir", data, "serve", "--web-listen", f"127.0.0.1:{port}",
                  "--websecure-listen", f"127.0.0.1:{tls_port}", "--admin-listen", "127.0.0.1:0",
                  "--api-listen", "127.0.0.1:0", "--dns-listen", "127.0.0.1:0", "--udp-workers", "1", "--worker-threads", workers,
                  "--manifests", manifests], log, cpu=cpus, env={"EDGEPLANE_LOG": "warn"})
    return proc, manifests


def write_routers(path: Path, backend: int, n: int):
    lines = ["http:", "  services:", "    s:", "      loadBalancer:",
             f"        servers: [{{url: 'http://127.0.0.1:{backend}'}}]", "  routers:"]
    if n == 1:
        # The side-by-side run: every request matches (as nginx's and HAProxy's one route).
        lines += ["    all:", "      rule: PathPrefix(`/`)", "      priority: 1", "      service: s",
                  "    all-tls:", "      rule: PathPrefix(`/`)", "      priority: 1", "      service: s", "      tls: {}"]
    for i in range(n if n > 1 else 0):
        lines += [f"    r{i}:", f"      rule: Host(`h{i}.bench.test`) && PathPrefix(`/`)", "      service: s"]
    path.write_text("\n".join(lines) + "\n")


def start_nginx(work: Path, port: int, tls_port: int, backend: int, workers: int = 1, cpus=PROXY_CPU):
    conf = work / "nginx.conf"
    # With more than one worker, a listener per worker (reuseport), as edgeplane's workers.
    rp = " reuseport" if workers > 1 else ""
    conf.write_text(f"""
worker_processes {workers}; daemon off; pid {work}/nginx.pid; error_log {work}/nginx.err;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  upstream b {{ server 127.0.0.1:{backend}; keepalive 128; }}
  server {{ listen 127.0.0.1:{port}{rp}; listen 127.0.0.1:{tls_port} ssl http2{rp};
    ssl_certificate {work}/cert.pem; ssl_certificate_key {work}/key.pem;
    location / {{ proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host $host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; }} }} }}
""")
    return spawn(["nginx", "-c", conf, "-p", work], open(work / "nginx.log", "w"), cpu=cpus)


def start_haproxy(work: Path, port: int, tls_port: int, backend: int, workers: int = 1, cpus=PROXY_CPU):
    pem = work / "haproxy.pem"
    pem.write_text((work / "cert.pem").read_text() + (work / "key.pem").read_text())
    conf = work / "haproxy.cfg"
    conf.write_text(f"""
global
  nbthread {workers}
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option forwardfor
  http-reuse always
frontend f
  bind 127.0.0.1:{port}
  bind 127.0.0.1:{tls_port} ssl crt {pem} alpn h2,http/1.1
  default_backend b
backend b
  server s1 127.0.0.1:{backend}
""")
    return spawn(["haproxy", "-f", conf, "-db"], open(work / "haproxy.log", "w"), cpu=cpus)


VENV_BIN = Path(os.environ.get("EDGEPLANE_TEST_VENV", Path.home() / ".cache/edgeplane/venv")) / "bin"


def start_caddy(work: Path, port: int, tls_port: int, backend: int):
    conf = work / "Caddyfile"
    conf.write_text(f"""{{
  admin off
  auto_https off
  default_sni bench.test
  log {{
    output discard
  }}
}}
http://:{port} {{
  bind 127.0.0.1
  reverse_proxy 127.0.0.1:{backend} {{
    transport http {{
      keepalive_idle_conns_per_host 128
    }}
  }}
}}
https://:{tls_port} {{
  bind 127.0.0.1
  tls {work}/cert.pem {work}/key.pem
  reverse_proxy 127.0.0.1:{backend} {{
    transport http {{
      keepalive_idle_conns_per_host 128
    }}
  }}
}}
""")
    return spawn([VENV_BIN / "caddy", "run", "--config", conf, "--adapter", "caddyfile"],
                 open(work / "caddy.log", "w"), env={"GOMAXPROCS": "1"})


def start_envoy(work: Path, port: int, tls_port: int, backend: int):
    conf = work / "envoy.yaml"
    hcm = """
          - name: envoy.filters.network.http_connection_manager
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
              stat_prefix: bench
              codec_type: AUTO
              route_config:
                virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: b}}]}]
              http_filters: [{name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]"""
    conf.write_text(f"""
static_resources:
  listeners:
    - name: plain
      address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
      filter_chains:
        - filters:{hcm}
    - name: tls
      address: {{socket_address: {{address: 127.0.0.1, port_value: {tls_port}}}}}
      filter_chains:
        - transport_socket:
            name: envoy.transport_sockets.tls
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
              common_tls_context:
                alpn_protocols: [h2, http/1.1]
                tls_certificates: [{{certificate_chain: {{filename: {work}/cert.pem}}, private_key: {{filename: {work}/key.pem}}}}]
          filters:{hcm}
  clusters:
    - name: b
      type: STATIC
      load_assignment:
        cluster_name: b
        endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {backend}}}}}}}}}]}}]
""")
    return spawn([VENV_BIN / "envoy", "-c", conf, "--concurrency", "1", "--log-level", "error",
                  "--base-id", str(port)], open(work / "envoy.log", "w"))


def client(cmd, timeout=600, cpus=None):
    out = subprocess.run(["taskset", "-c", cpus or CLIENT_CPU, *map(str, cmd)], capture_output=True, text=True, timeout=timeout)
    return out.stdout + out.stderr


def to_ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def post_script(work: Path):
    """A wrk script that POSTs a 1 KiB body (wrk frames it with a Content-Length)."""
    path = work / "post.lua"
    path.write_text('wrk.method = "POST"\nwrk.body = string.rep("x", 1024)\n'
                    'wrk.headers["Content-Type"] = "application/octet-stream"\n')
    return path


def wrk(port, seconds, host="bench.test", conns=64, script=None, threads=1, cpus=None):
    extra = ["-s", script] if script else []
    text = client(["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency", *extra, "-H", f"Host: {host}",
                   f"http://127.0.0.1:{port}/"], cpus=cpus)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    lat = {m.group(1): to_ms(m.group(2), m.group(3)) for m in re.finditer(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)", text, re.M)}
    errors = re.search(r"Socket errors.*|Non-2xx.*", text)
    return rps, lat.get("50", 0), lat.get("99", 0), errors.group(0) if errors else ""


def h2load(port, seconds, threads=1, cpus=None):
    text = client(["h2load", f"-t{threads}", "-c16", "-m10", f"-D{seconds}", f"https://127.0.0.1:{port}/"], cpus=cpus)
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text)
    proto = re.search(r"Application protocol: (\S+)", text)
    return (float(m.group(1)) if m else 0.0), (proto.group(1) if proto else "?")


def handshakes(port, seconds):
    text = client(["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", str(seconds)])
    m = re.search(r"(\d+) connections in ([\d.]+)s", text)
    return int(m.group(1)) / float(m.group(2)) if m else 0.0


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def version(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    return (out.stdout + out.stderr).strip().splitlines()[0]


def multi_worker(work: Path, backend: int, seconds: int, workers: int, peers):
    """Each proxy with `workers` workers, proxies and clients sharing every CPU."""
    cpus = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    rows = []
    for name, start in peers:
        port, tls_port = free_port(), free_port()
        proc = start(work, port, tls_port, backend, workers=workers, cpus=cpus)
        proc = proc[0] if isinstance(proc, tuple) else proc
        try:
            wait_http(f"http://127.0.0.1:{port}/", host="bench.test")
            wrk(port, 2, threads=workers, cpus=cpus)  # warm-up
            rps, p50, p99, errors = wrk(port, seconds, threads=workers, cpus=cpus)
            h2, proto = h2load(tls_port, seconds, threads=workers, cpus=cpus)
        finally:
            stop(proc)
        print(f"{name:16} {workers} workers {rps:10.0f} req/s  p50 {p50:.2f} ms  p99 {p99:.2f} ms  "
              f"h2 {h2:10.0f} req/s ({proto}) {errors}", flush=True)
        rows.append((name, rps, p50, p99, h2, proto))
    return cpus, rows


def scale(work: Path, backend: int, seconds: int):
    rows = []
    for n in [10, 10_000, 100_000]:
        port, tls_port = free_port(), free_port()
        proc, manifests = start_edgeplane(work, port, tls_port, backend, routers=n)
        try:
            host = f"h{n // 2}.bench.test"
            started = time.time()
            wait_http(f"http://127.0.0.1:{port}/", host=host, timeout=600)
            load_s = time.time() - started
            wrk(port, 2, host=host)
            rps, p50, p99, errors = wrk(port, seconds, host=host)
            rss = rss_mib(proc.pid)
            # One changed router: a new file with one router for a new host.
            start = time.time()
            (manifests / "one.yaml").write_text(
                "http:\n  routers:\n    added:\n      rule: Host(`added.bench.test`)\n      service: s\n")
            # Polled every 2 ms: the change itself takes a few milliseconds.
            wait_http(f"http://127.0.0.1:{port}/x", host="added.bench.test", timeout=600, poll=0.002)
            change = (time.time() - start) * 1000
        finally:
            stop(proc)
        print(f"edgeplane {n:>7} routers: {rps:10.0f} req/s  p99 {p99:.2f} ms  RSS {rss:.0f} MiB  first load {load_s:.1f} s  change served in {change:.0f} ms {errors}", flush=True)
        rows.append((n, rps, p50, p99, rss, change, load_s))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--no-scale", action="store_true")
    ap.add_argument("--workers", type=int, default=2,
                    help="workers per proxy in the run where proxies and clients share every CPU (0: skip it)")
    args = ap.parse_args()
    for tool in ["nginx", "haproxy", "wrk", "h2load", "openssl", "taskset"]:
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: run scripts/install-test-deps.sh --bench")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "edgeplane"], cwd=ROOT, check=True)

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_cert(work)
        post = post_script(work)
        backend = free_port()
        be = start_backend(work, backend)
        try:
            wait_http(f"http://127.0.0.1:{backend}/")
            peers = [("edgeplane", start_edgeplane), ("nginx " + version(["nginx", "-v"]).split("/")[-1], start_nginx),
                     ("HAProxy " + version(["haproxy", "-v"]).split()[2], start_haproxy)]
            # Caddy and Envoy from their PyPI wheels (scripts/install-test-deps.sh --bench).
            if (VENV_BIN / "caddy").exists():
                peers.append(("Caddy " + version([VENV_BIN / "caddy", "version"]).split()[0], start_caddy))
            else:
                print("caddy is missing: run scripts/install-test-deps.sh --bench", file=sys.stderr)
            if (VENV_BIN / "envoy").exists():
                envoy_v = re.search(r"/(\d+\.\d+\.\d+)/", version([VENV_BIN / "envoy", "--version"]))
                peers.append(("Envoy " + (envoy_v.group(1) if envoy_v else "?"), start_envoy))
            else:
                print("envoy is missing: run scripts/install-test-deps.sh --bench", file=sys.stderr)
            for name, start in peers:
                port, tls_port = free_port(), free_port()
                proc = start(work, port, tls_port, backend)
                proc = proc[0] if isinstance(proc, tuple) else proc
                try:
                    wait_http(f"http://127.0.0.1:{port}/", host="bench.test")
                    wrk(port, 2)  # warm-up
                    rps, p50, p99, errors = wrk(port, args.seconds)
                    post_rps, _, post_p99, post_errors = wrk(port, args.seconds, script=post)
                    errors = " ".join(e for e in [errors, post_errors and f"POST: {post_errors}"] if e)
                    h2, proto = h2load(tls_port, args.seconds)
                    hs = handshakes(tls_port, max(3, args.seconds // 2))
                finally:
                    stop(proc)
                print(f"{name:16} {rps:10.0f} req/s  p50 {p50:.2f} ms  p99 {p99:.2f} ms  POST {post_rps:10.0f} req/s  "
                      f"h2 {h2:10.0f} req/s ({proto})  TLS {hs:8.0f} handshakes/s {errors}", flush=True)
                results.append((name, rps, p50, p99, post_rps, post_p99, h2, proto, hs, errors))
            multi = (multi_worker(work, backend, args.seconds, args.workers, peers[:3])
                     if args.workers > 1 else None)
            rows = [] if args.no_scale else scale(work, backend, args.seconds)
        finally:
            stop(be)

    cpu = "unknown"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except Exception:
        pass
    base = results[0]
    lines = [
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} CPUs ({cpu}). "
        f"Backend: nginx returning a 3-byte body, pinned to CPU {CLIENT_CPU}. Each proxy pinned to CPU {PROXY_CPU} "
        f"with one worker (edgeplane's runtime sees one CPU); clients pinned to CPU {CLIENT_CPU}: "
        f"wrk -t1 -c64 {args.seconds} s (HTTP/1.1 keep-alive; GET, then POST with a 1 KiB body), h2load -c16 -m10 {args.seconds} s (HTTPS, ALPN), "
        f"openssl s_time -new (ECDSA P-256, TLS 1.3, new handshake per connection).",
        "",
        "| proxy | HTTP/1.1 req/s | vs edgeplane | p50 ms | p99 ms | POST 1 KiB req/s | POST p99 ms "
        "| HTTPS h2 req/s | TLS handshakes/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rps, p50, p99, post_rps, post_p99, h2, proto, hs, errors in results:
        lines.append(f"| {name} | {rps:,.0f} | {rps / base[1]:.2f}x | {p50:.2f} | {p99:.2f} | {post_rps:,.0f} | "
                     f"{post_p99:.2f} | {h2:,.0f} ({proto}) | {hs:,.0f} |")
    for other in results[1:]:
        lines.append("")
        lines.append(f"edgeplane / {other[0]}: HTTP/1.1 **{base[1] / other[1]:.2f}**, p99 **{base[3] / other[3]:.2f}** "
                     f"(below 1 is better), POST **{base[4] / other[4]:.2f}**, h2 **{base[6] / other[6]:.2f}**, "
                     f"handshakes **{base[8] / other[8]:.2f}**.")
    if multi:
        cpus, mrows = multi
        lines += ["", f"{args.workers} workers each (edgeplane: `--worker-threads {args.workers}`, nginx: "
                  f"`worker_processes {args.workers}` with `reuseport`, HAProxy: `nbthread {args.workers}`), "
                  f"proxy, clients (wrk -t{args.workers} -c64, h2load -t{args.workers} -c16 -m10) and backend sharing "
                  f"CPUs {cpus}:", "",
                  "| proxy | HTTP/1.1 req/s | p50 ms | p99 ms | HTTPS h2 req/s |", "|---|---:|---:|---:|---:|"]
        for name, rps, p50, p99, h2, proto in mrows:
            lines.append(f"| {name} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {h2:,.0f} ({proto}) |")
        mb = mrows[0]
        for other in mrows[1:]:
            lines.append("")
            lines.append(f"edgeplane / {other[0]}, {args.workers} workers: HTTP/1.1 **{mb[1] / other[1]:.2f}**, "
                         f"p99 **{mb[3] / other[3]:.2f}** (below 1 is better), h2 **{mb[4] / other[4]:.2f}**.")
    if rows:
        lines += ["", "Routing scale (edgeplane; one router hit among N; change = a new file with one router, "
                  "until it answers; the directory is watched, and only changed files are parsed again):", "",
                  "| routers | req/s | p99 ms | RSS MiB | start to first answer | change served in |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for n, rps, p50, p99, rss, change, load_s in rows:
            lines.append(f"| {n:,} | {rps:,.0f} | {p99:.2f} | {rss:.0f} | {load_s:.1f} s | {change:,.0f} ms |")
        lines.append("")
        lines.append(f"Throughput at 100k routers vs 10: **{rows[-1][1] / rows[0][1]:.2f}**.")
    table = "\n".join(lines)
    print("\n" + table)
    if not args.no_write:
        doc = ROOT / "docs" / "benchmarks.md"
        text = doc.read_text()
        start, end = "<!-- proxy-bench:start -->", "<!-- proxy-bench:end -->"
        if start not in text:
            text += f"\n## HTTP proxy: edgeplane vs nginx vs HAProxy\n\n`scripts/bench-proxy.py`.\n\n{start}\n{end}\n"
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        doc.write_text(f"{head}{start}\n{table}\n{end}{tail}")
        print(f"\nwritten to {doc}")


if __name__ == "__main__":
    main()
