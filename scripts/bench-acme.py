#!/usr/bin/env python3
"""ACME issuance benchmark: edgeplane against Pebble (Let's Encrypt's test CA), Pebble resolving
names through edgeplane's DNS and validating HTTP-01 on edgeplane's proxy.

1. Latency: a Certificate and its IngressRoute written into the watched manifest directory,
   until the first HTTPS response through the proxy verified against Pebble's root (curl
   --cacert --resolve); N certificates one after another with new names, for DNS-01 (a name
   plus its wildcard, TXT records through edgeplane's Route53 API) and for HTTP-01 (answered
   by the proxy's plain-HTTP entry point). Reports min/median/max.
2. Concurrency: 100 Certificates (half DNS-01, half HTTP-01) written at once, until every
   one is Ready with its secret (`cert list`); wall time, edgeplane's peak resident memory
   (VmHWM) and the failed attempts seen. Run with acme.maxConcurrentOrders 16 (the default)
   and 100, twice each, each run on a fresh edgeplane and Pebble.

Pebble runs with PEBBLE_VA_NOSLEEP=1 (no random sleep before validating) and its default 5%
nonce rejection. Everything is bounded in time and every child process is stopped on exit.

Writes the tables into docs/benchmarks.md between the acme-bench markers. A benchmark, not a
test: it asserts only that the certificates are issued and served.

usage: scripts/bench-acme.py [--bin PATH] [--latency-runs N] [--certs N] [--orders 16,100]
                            [--repeat N] [--tmp DIR] [--keep-logs DIR] [--timeout S] [--no-write]
"""

import argparse
import base64
import json
import random
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NS = "default"
ZONE = "bench.test"
BODY = "hello from the acme bench backend"
CHILDREN = []
LOAD = (0.0, 0.0, 0.0)


class Timeout(Exception):
    pass


class Stopped(Exception):
    """The whole run's deadline, or a signal."""


def free_port():
    """A port free on 127.0.0.1 for TCP and UDP."""
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


def spawn(cmd, log, env=None, cwd=None):
    """A child in its own process group, stopped by stop_all()."""
    proc = subprocess.Popen([str(c) for c in cmd], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)
    CHILDREN.append(proc)
    return proc


def stop(proc):
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    if proc in CHILDREN:
        CHILDREN.remove(proc)


def stop_all():
    for proc in list(reversed(CHILDREN)):
        stop(proc)


def wait_until(what, timeout, f, interval=0.1):
    deadline = time.time() + timeout
    while True:
        v = f()
        if v:
            return v
        if time.time() >= deadline:
            raise Timeout(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def run(cmd, timeout=30):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def b64(text):
    return base64.b64encode(text.encode()).decode()


def write_atomic(path: Path, text: str):
    """Written whole (the directory poller never sees half a file)."""
    tmp = path.parent.parent / (path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def vm(pid, field):
    """A /proc/<pid>/status field in MiB (VmRSS, VmHWM)."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid):
    """User + system CPU time of a process so far."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def machine_busy():
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    v = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


class Edgeplane:
    """`edgeplane serve` on ephemeral ports, learned from its JSON log."""

    def __init__(self, binary, work: Path, max_orders: int, retry: str):
        self.binary, self.work = binary, work
        self.data = work / "data"
        self.manifests = work / "edgeplane.d"
        self.manifests.mkdir(parents=True)
        self.config = work / "edgeplane.yaml"
        self.config.write_text(f"acme:\n  maxConcurrentOrders: {max_orders}\n  retryBackoff: {retry}\n"
                               f"  maxRetryBackoff: 1m\n  propagationTimeout: 30s\n")
        self.log_path = work / "edgeplane.log"
        self.proc = spawn([binary, "--data-dir", self.data, "--log-format", "json", "serve",
                           "--admin-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
                           "--dns-listen", "127.0.0.1:0", "--web-listen", "127.0.0.1:0",
                           "--websecure-listen", "127.0.0.1:0", "--manifests", self.manifests,
                           "--config", self.config],
                          open(self.log_path, "w"), env={"EDGEPLANE_LOG": "info"}, cwd=work)
        self.dns = self.web = self.websecure = None
        wait_until("edgeplane to serve", 30, self._started)

    def _started(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"edgeplane exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
        serving = False
        for v in self.events():
            f = v["fields"]
            if f.get("message") == "DNS listening on UDP and TCP":
                self.dns = f["addr"]
            elif f.get("message") == "proxy entry point listening":
                if f.get("entry_point") == "websecure":
                    self.websecure = int(f["addr"].rsplit(":", 1)[1])
                else:
                    self.web = int(f["addr"].rsplit(":", 1)[1])
            elif f.get("message") == "edgeplane serving":
                serving = True
        return serving and self.dns and self.web and self.websecure

    def events(self):
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                v = json.loads(line)
            except ValueError:
                continue
            if isinstance(v, dict) and isinstance(v.get("fields"), dict):
                out.append(v)
        return out

    def cli(self, *args, timeout=30):
        return run([self.binary, "--data-dir", self.data, *args], timeout=timeout)

    def secret(self, name, key):
        out = self.cli("secret", "get", name, "-n", NS, "--key", key)
        return out.stdout if out.returncode == 0 else None

    def cert_rows(self):
        out = self.cli("cert", "list")
        rows = {}
        for line in out.stdout.splitlines()[1:]:
            cols = line.split("\t")
            if len(cols) >= 4:
                rows[cols[0]] = cols
        return rows

    def alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"edgeplane exited with {self.proc.returncode}; log tail:\n"
                               f"{self.log_path.read_text()[-3000:]}")


class Pebble:
    def __init__(self, work: Path, dns: str, http_port: int):
        work.mkdir(parents=True)
        ossl = lambda *a: subprocess.run(["openssl", *map(str, a)], check=True, capture_output=True)
        ca, ca_key = work / "listener-ca.pem", work / "listener-ca.key"
        cert, key, csr, ext = work / "pebble.pem", work / "pebble.key", work / "pebble.csr", work / "pebble.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
                       "extendedKeyUsage=serverAuth\n")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        ossl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=pebble listener CA", "-keyout", ca_key, "-out", ca)
        ossl("req", *ec, "-subj", "/CN=localhost", "-keyout", key, "-out", csr)
        ossl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
             "-extfile", ext, "-out", cert)
        self.acme_port, self.mgmt_port = free_port(), free_port()
        config = work / "pebble.json"
        config.write_text(json.dumps({"pebble": {
            "listenAddress": f"127.0.0.1:{self.acme_port}", "managementListenAddress": f"127.0.0.1:{self.mgmt_port}",
            "certificate": str(cert), "privateKey": str(key), "httpPort": http_port, "tlsPort": free_port(),
            "ocspResponderURL": "", "externalAccountBindingRequired": False}}))
        self.log_path = work / "pebble.log"
        # PEBBLE_WFE_NONCEREJECT is left unset: Pebble's default 5% nonce rejection stays on.
        env = {"PEBBLE_VA_NOSLEEP": "1"}
        os.environ.pop("PEBBLE_WFE_NONCEREJECT", None)
        self.proc = spawn(["pebble", "-config", config, "-dnsserver", dns], open(self.log_path, "w"), env=env)
        self.directory = f"https://127.0.0.1:{self.acme_port}/dir"
        self.listener_ca = ca.read_text()

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"pebble exited:\n{self.log_path.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.acme_port), timeout=0.5).close()
                return True
            except OSError:
                return False
        wait_until("pebble to listen", 20, up)

    def root(self, path: Path):
        out = run(["curl", "-sSk", "--max-time", "5", f"https://127.0.0.1:{self.mgmt_port}/roots/0"])
        if "BEGIN CERTIFICATE" not in out.stdout:
            raise RuntimeError(f"no Pebble root: {out.stdout} {out.stderr}")
        path.write_text(out.stdout)
        return path

    def nonce(self):
        """Pebble's nonce rejection as it announced it, and the signed POSTs it took (each uses
        a nonce; Pebble does not log the ones it rejects, which the ACME client retries)."""
        text = self.log_path.read_text(errors="replace")
        rate = next((l.split("reject ", 1)[1].split(" ", 1)[0] for l in text.splitlines()
                     if "Configured to reject" in l), "?")
        return rate, sum(1 for l in text.splitlines() if " POST /" in l)


def base_manifests(pebble: Pebble, backend_port: int):
    bundle = b64(pebble.listener_ca)
    return f"""apiVersion: edgeplane.io/v1alpha1
kind: DNSZone
metadata: {{name: bench-test, namespace: {NS}}}
spec:
  domain: {ZONE}
  network: {{elbEips: [127.0.0.1]}}
  records:
    - {{name: "@", fromNetwork: public, ttl: 60}}
    - {{name: "*", fromNetwork: public, ttl: 60}}
  acmeCredentials: {{secretName: route53}}
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {{name: pebble-dns, namespace: {NS}}}
spec:
  acme:
    server: {pebble.directory}
    caBundle: {bundle}
    privateKeySecretRef: {{name: pebble-dns-account}}
    solvers: [{{dns01: {{route53: {{}}}}}}]
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {{name: pebble-http, namespace: {NS}}}
spec:
  acme:
    server: {pebble.directory}
    caBundle: {bundle}
    privateKeySecretRef: {{name: pebble-http-account}}
    solvers: [{{http01: {{ingress: {{}}}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: site, namespace: {NS}}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: site-1, namespace: {NS}, labels: {{kubernetes.io/service-name: site}}}}
ports: [{{name: http, port: {backend_port}}}]
endpoints: [{{addresses: [127.0.0.1]}}]
"""


def certificate(name, issuer, names):
    return f"""apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {{name: {name}, namespace: {NS}}}
spec:
  secretName: {name}-tls
  issuerRef: {{name: {issuer}}}
  dnsNames: [{", ".join(json.dumps(n) for n in names)}]
  privateKey: {{algorithm: ECDSA, size: 256}}
"""


def ingress_route(name, host, wildcard):
    rule = f"Host(`{host}`)"
    if wildcard:
        escaped = host.replace(".", "\\.")
        rule += f" || HostRegexp(`^[a-z0-9-]+\\.{escaped}$`)"
    return f"""apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {{name: {name}, namespace: {NS}}}
spec:
  entryPoints: [websecure]
  routes: [{{match: '{rule}', services: [{{name: site, port: 80}}]}}]
  tls: {{secretName: {name}-tls}}
"""


def start_stack(binary, work: Path, max_orders: int, retry: str, backend_port: int):
    """edgeplane, then Pebble on its DNS and web ports, then the zone and issuers, ready."""
    ep = Edgeplane(binary, work, max_orders, retry)
    pebble = Pebble(work / "pebble", ep.dns, ep.web)
    write_atomic(ep.manifests / "base.yaml", base_manifests(pebble, backend_port))
    host, port = ep.dns.rsplit(":", 1)

    def zone_ready():
        ep.alive()
        d = run(["kdig", f"@{host}", "-p", port, "+norecurse", "+time=1", "+retry=0", f"{ZONE}", "SOA"])
        return "status: NOERROR" in d.stdout and ep.secret("route53", "access-key-id") is not None
    wait_until(f"the DNSZone {ZONE} and its ACME identity", 30, zone_ready, interval=0.2)
    return ep, pebble


def curl_https(root: Path, host: str, port: int):
    out = run(["curl", "-sS", "--max-time", "3", "--cacert", root, "--resolve", f"{host}:{port}:127.0.0.1",
               f"https://{host}:{port}/"], timeout=10)
    return out.returncode == 0 and BODY in out.stdout


def failures(ep: Edgeplane):
    """`ACME order failed` warnings in edgeplane's log, by certificate, with their problems."""
    seen = []
    for v in ep.events():
        f = v["fields"]
        if f.get("message") == "ACME order failed":
            seen.append((f.get("certificate", "?"), f.get("problem", "")))
    return seen


def issued_ms(ep: Edgeplane):
    """`ACME certificate issued` took_ms (the order task from its start to the stored secret), by owner."""
    return {o: took for o, (took, _) in issued_events(ep).items()}


def issued_events(ep: Edgeplane):
    """By owner: (took_ms, Unix time of the `ACME certificate issued` line)."""
    out = {}
    for v in ep.events():
        f = v["fields"]
        if f.get("message") == "ACME certificate issued":
            try:
                at = datetime.fromisoformat(v["timestamp"].replace("Z", "+00:00")).timestamp()
            except (KeyError, ValueError):
                at = None
            out[f.get("certificate")] = (f.get("took_ms"), at)
    return out


def log_problems(ep: Edgeplane):
    return [f"{v.get('level')} {v.get('target')}: {json.dumps(v['fields'])}" for v in ep.events()
            if v.get("level") in ("WARN", "ERROR")]


def latency(binary, work: Path, runs: int, retry: str, backend_port: int, timeout: int):
    ep, pebble = start_stack(binary, work, 16, retry, backend_port)
    root = pebble.root(work / "pebble-root.pem")
    results = {"dns01": [], "http01": []}
    wildcard_ok = []
    # A random pause before each write, so the writes fall anywhere in the manifest directory's
    # one-second poll (one after another at once, each would wait out a whole poll).
    rnd = random.Random(7)
    busy0 = machine_busy()
    try:
        for kind, issuer in [("dns01", "pebble-dns"), ("http01", "pebble-http")]:
            for i in range(runs):
                name = f"{'d' if kind == 'dns01' else 'h'}{i}"
                host = f"{name}.{ZONE}"
                names = [host, f"*.{host}"] if kind == "dns01" else [host]
                text = certificate(name, issuer, names) + "---\n" + ingress_route(name, host, kind == "dns01")
                time.sleep(rnd.uniform(0, 1))
                t0, wall0 = time.perf_counter(), time.time()
                write_atomic(ep.manifests / f"{name}.yaml", text)

                def served():
                    ep.alive()
                    return curl_https(root, host, ep.websecure)
                try:
                    wait_until(f"HTTPS for {host}", timeout, served, interval=0.05)
                except Timeout:
                    status = ep.cli("cert", "get", f"{NS}/{name}").stdout
                    raise Timeout(f"{host}: no verified HTTPS response within {timeout} s\n{status}")
                elapsed = time.perf_counter() - t0
                if kind == "dns01":
                    wildcard_ok.append(curl_https(root, f"www.{host}", ep.websecure))
                took, at = issued_events(ep).get(f"{NS}/{name}", (None, None))
                # Split: written -> order started (the poll and the pass), the order, stored -> served.
                pickup = (at - took / 1000 - wall0) if (took is not None and at) else None
                print(f"  {kind} {host}: first HTTPS response {elapsed * 1000:.0f} ms after the Certificate was "
                      f"written (order started after {pickup * 1000 if pickup is not None else -1:.0f} ms, "
                      f"took {took} ms)", flush=True)
                results[kind].append((elapsed, took, pickup))
        busy1 = machine_busy()
        busy = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
        fails = failures(ep)
        problems = log_problems(ep)
    finally:
        stop(pebble.proc)
        stop(ep.proc)
    return results, all(wildcard_ok), fails, problems, busy


def concurrent(binary, work: Path, n: int, max_orders: int, retry: str, backend_port: int, timeout: int):
    ep, pebble = start_stack(binary, work, max_orders, retry, backend_port)
    try:
        docs = []
        for i in range(n):
            issuer = "pebble-dns" if i % 2 == 0 else "pebble-http"
            docs.append(certificate(f"c{i}", issuer, [f"c{i}.{ZONE}"]))
        rss_before = vm(ep.proc.pid, "VmRSS")
        hwm_before = vm(ep.proc.pid, "VmHWM")
        cpu0 = (cpu_seconds(ep.proc.pid), cpu_seconds(pebble.proc.pid), machine_busy())
        t0 = time.perf_counter()
        written_at = datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%S.%f")
        write_atomic(ep.manifests / "certificates.yaml", "---\n".join(docs))
        progress = {"last": -1}
        marks = {}

        def all_ready():
            ep.alive()
            rows = ep.cert_rows()
            ready = sum(1 for i in range(n) if rows.get(f"{NS}/c{i}", [None, None, "False"])[2] == "True")
            now = time.perf_counter() - t0
            if ready >= 1:
                marks.setdefault("first", now)
            if ready >= n / 2:
                marks.setdefault("half", now)
            if ready != progress["last"] and (ready % 20 == 0 or ready == n):
                print(f"    {ready}/{n} ready after {time.perf_counter() - t0:.1f} s", flush=True)
                progress["last"] = ready
            return ready == n
        try:
            wait_until(f"{n} certificates", timeout, all_ready, interval=0.25)
        except Timeout:
            rows = ep.cert_rows()
            stuck = [f"c{i}" for i in range(n) if rows.get(f"{NS}/c{i}", [None, None, "False"])[2] != "True"]
            detail = "".join(ep.cli("cert", "get", f"{NS}/{c}").stdout for c in stuck[:3])
            raise Timeout(f"{len(stuck)} of {n} certificates not Ready after {timeout} s: {stuck[:10]}\n{detail}")
        wall = time.perf_counter() - t0
        cpu1 = (cpu_seconds(ep.proc.pid), cpu_seconds(pebble.proc.pid), machine_busy())
        hwm = vm(ep.proc.pid, "VmHWM")
        rss_after = vm(ep.proc.pid, "VmRSS")
        # Every secret is there, and the status' failed attempts (since the last success).
        missing = [i for i in range(n) if not (ep.secret(f"c{i}-tls", "tls.crt") or "").startswith("-----BEGIN")]
        status_failed = 0
        for i in range(n):
            for line in ep.cli("cert", "get", f"{NS}/c{i}").stdout.splitlines():
                if line.strip().startswith("failed attempts:"):
                    status_failed += int(line.split(":")[1])
        fails = failures(ep)
        took = sorted(v for v in issued_ms(ep).values() if v is not None)
        passes = sum(1 for v in ep.events() if v["fields"].get("message") == "proxy configuration applied"
                     and v.get("timestamp", "") >= written_at)
        problems = log_problems(ep)
        nonce = pebble.nonce()
    finally:
        stop(pebble.proc)
        stop(ep.proc)
    busy = (cpu1[2][0] - cpu0[2][0]) / max(1, cpu1[2][1] - cpu0[2][1])
    return {"n": n, "max_orders": max_orders, "wall": wall, "first": marks.get("first", wall),
            "half": marks.get("half", wall), "ep_cpu": cpu1[0] - cpu0[0], "pebble_cpu": cpu1[1] - cpu0[1],
            "busy": busy, "passes": passes, "hwm": hwm, "hwm_before": hwm_before,
            "rss_before": rss_before, "rss_after": rss_after, "missing": missing, "status_failed": status_failed,
            "fails": fails, "took": took, "problems": problems, "nonce": nonce}


def start_backend(work: Path):
    site = work / "site"
    site.mkdir()
    (site / "index.html").write_text(BODY + "\n")
    port = free_port()
    proc = spawn([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", port], open(work / "backend.log", "w"),
                 cwd=site)

    def up():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False
    wait_until("the backend", 10, up)
    return port


def rate(text):
    try:
        return float(text.rstrip("%")) / 100
    except ValueError:
        return 0.0


def fmt_s(v):
    return f"{v:.2f} s"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", help="edgeplane binary (default: target/release/edgeplane if built, else target/debug)")
    ap.add_argument("--latency-runs", type=int, default=5, help="certificates per challenge type, one after another")
    ap.add_argument("--certs", type=int, default=100, help="certificates issued concurrently")
    ap.add_argument("--orders", default="16,100", help="acme.maxConcurrentOrders of the concurrent runs")
    ap.add_argument("--repeat", type=int, default=2, help="concurrent runs per maxConcurrentOrders value")
    ap.add_argument("--retry-backoff", default="2s", help="acme.retryBackoff (edgeplane's default is 5m)")
    ap.add_argument("--timeout", type=int, default=290, help="the whole run, seconds")
    ap.add_argument("--tmp", help="directory for the run's data directories (default: the system's temp dir)")
    ap.add_argument("--keep-logs", help="copy edgeplane's and Pebble's logs of every run into this directory")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    for tool in ["pebble", "openssl", "curl", "kdig"]:
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: run scripts/install-test-deps.sh")
    if args.bin:
        source = Path(args.bin).resolve()
    else:
        release = ROOT / "target" / "release" / "edgeplane"
        source = release if release.exists() else ROOT / "target" / "debug" / "edgeplane"
    if not source.exists():
        sys.exit(f"{source} does not exist")
    build = "release" if "/release/" in str(source) else "debug" if "/debug/" in str(source) else source.name
    version = run([source, "--version"]).stdout.strip()
    commit = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).stdout.strip()
    built = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(source.stat().st_mtime))

    def on_signal(signum, _frame):
        raise Stopped(f"stopped by signal {signum}") if signum != signal.SIGALRM else \
            Stopped(f"the whole run exceeded {args.timeout} s")
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):
        signal.signal(s, on_signal)
    signal.alarm(args.timeout)
    started = time.time()
    global LOAD
    LOAD = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="bench-acme-", dir=args.tmp) as tmp:
        work = Path(tmp)
        # Our own link (or copy) of the binary: a rebuild during the run does not change it.
        binary = work / "edgeplane"
        try:
            os.link(source, binary)
        except OSError:
            shutil.copy2(source, binary)
        try:
            backend = start_backend(work)
            print(f"latency: {args.latency_runs} DNS-01 (name + wildcard) and {args.latency_runs} HTTP-01 "
                  f"certificates, one after another ({build} build)", flush=True)
            lat, wildcard_ok, lat_fails, lat_problems, lat_busy = latency(
                binary, work / "latency", args.latency_runs, args.retry_backoff, backend, 60)
            runs = []
            orders = [int(x) for x in args.orders.split(",") if x] * max(1, args.repeat)
            for k, m in enumerate(orders):
                print(f"concurrent: {args.certs} certificates, maxConcurrentOrders {m}", flush=True)
                r = concurrent(binary, work / f"concurrent{k}-{m}", args.certs, m, args.retry_backoff, backend, 150)
                print(f"  all {r['n']} Ready in {r['wall']:.1f} s, VmHWM {r['hwm']:.0f} MiB "
                      f"(before {r['hwm_before']:.0f}), failed orders {len(r['fails'])}, missing secrets "
                      f"{len(r['missing'])}", flush=True)
                runs.append(r)
        finally:
            signal.alarm(0)
            stop_all()
            if args.keep_logs:
                keep = Path(args.keep_logs)
                keep.mkdir(parents=True, exist_ok=True)
                for log in list(work.glob("*/edgeplane.log")) + list(work.glob("*/pebble/pebble.log")):
                    shutil.copy(log, keep / f"{log.relative_to(work).parts[0]}-{log.name}")
    total = time.time() - started

    cpu = "unknown"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except Exception:
        pass
    pebble_version = run(["dpkg-query", "-W", "-f", "${Version}", "pebble"]).stdout.strip() or "?"
    lines = [
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} CPUs ({cpu}), "
        f"{version} (**{build} build** of {built}, tree at {commit}), Pebble {pebble_version} with `PEBBLE_VA_NOSLEEP=1` and its default 5% "
        f"nonce rejection, everything on loopback (load average {LOAD[0]:.2f} at the start); `acme: {{retryBackoff: {args.retry_backoff}, "
        f"maxRetryBackoff: 1m, propagationTimeout: 30s}}`. The manifest directory is watched (inotify, looked at 20 ms after an event) and polled every second. "
        f"Whole run {total:.0f} s.",
        "",
        "From a Certificate (with its IngressRoute) written into the manifest directory to the first HTTPS "
        "response through the proxy that verifies against Pebble's root (curl `--cacert --resolve`, polled "
        "every 50 ms); zone, issuers and backend already in place, each certificate a new name, written at a "
        "random point of the directory's one-second poll (which no longer matters: the watcher sees the write); the first of each kind also registers the issuer's "
        "ACME account. The split comes from edgeplane's log (`ACME certificate issued`, its `took_ms`): "
        "written to the order's start (directory poll and pass), the order (account, order, challenges, "
        "validation, finalize, secret stored), stored to the first verified response (the proxy's reload "
        "and curl's poll):",
        "",
        "| challenge | certificates | min | median | max | median: written to order start | order | "
        "stored to served |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, label in [("dns01", "DNS-01, name + wildcard (two TXT values)"), ("http01", "HTTP-01")]:
        xs = [e for e, _, _ in lat[kind]]
        parts = [(e, t / 1000, p) for e, t, p in lat[kind] if t is not None and p is not None]
        med = lambda i: fmt_s(statistics.median(x[i] for x in parts)) if parts else "-"
        rest = fmt_s(statistics.median(e - t - p for e, t, p in parts)) if parts else "-"
        lines.append(f"| {label} | {len(xs)} | {fmt_s(min(xs))} | **{fmt_s(statistics.median(xs))}** | "
                     f"{fmt_s(max(xs))} | {med(2)} | {med(1)} | {rest} |")
    lines += ["", "Each run: " + "; ".join(
        f"{kind} " + ", ".join(f"{e:.2f}" for e, _, _ in lat[kind]) + " s" for kind in ("dns01", "http01"))
        + f". Wildcard name served too: {'yes' if wildcard_ok else 'NO'}. Failed orders: {len(lat_fails)}. "
        f"Machine busy meanwhile: {lat_busy * 100:.0f}%."]
    lines += [
        "",
        f"{args.certs} Certificates (even ones DNS-01, odd ones HTTP-01, one name each) written in one file at "
        "once, until `cert list` shows every one Ready (each secret checked after); fresh edgeplane and Pebble "
        "per row; peak memory is edgeplane's VmHWM (high-water mark of resident memory, since process start):",
        "",
        "| maxConcurrentOrders | all issued in | certificates/s | first / half Ready | peak RSS (VmHWM) | "
        "RSS before | CPU edgeplane / Pebble | machine busy | passes | issued | failed orders (retried) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(f"| {r['max_orders']} | **{r['wall']:.1f} s** | {r['n'] / r['wall']:.1f} | "
                     f"{r['first']:.1f} s / {r['half']:.1f} s | **{r['hwm']:.0f} MiB** | {r['rss_before']:.0f} MiB | "
                     f"{r['ep_cpu']:.1f} s / {r['pebble_cpu']:.1f} s | {r['busy'] * 100:.0f}% | {r['passes']} | "
                     f"{r['n'] - len(r['missing'])}/{r['n']} | {len(r['fails'])} |")
    notes = [
        "passes: manifest passes in the window (`proxy configuration applied`; a pass follows every finished "
        "order and reconciles every Certificate); machine busy: all CPUs, edgeplane's and Pebble's share "
        "included.",
        f"Sum of `failed attempts` over `cert get` after issuance: "
        + ", ".join(str(r["status_failed"]) for r in runs) + " (the count resets on success). Pebble "
        f"announced rejecting {runs[0]['nonce'][0] if runs else '?'} of good nonces; each run made "
        + ", ".join(f"{r['nonce'][1]:,}" for r in runs) + " signed POSTs, so about "
        + ", ".join(f"{r['nonce'][1] * rate(r['nonce'][0]):.0f}" for r in runs) + " badNonce answers, "
        "retried inside the ACME client (a failed order only when its retries run out). Warnings or "
        "errors in edgeplane's log: " + ", ".join(str(len(r["problems"])) for r in runs) + ".",
    ]
    for r in runs:
        kinds = {}
        for _, problem in r["fails"]:
            key = problem[:160]
            kinds[key] = kinds.get(key, 0) + 1
        if kinds:
            notes.append(f"Failed orders (maxConcurrentOrders {r['max_orders']}), retried after the backoff and "
                         "then issued: " + "; ".join(f"{c}x `{p}`" for p, c in sorted(kinds.items(), key=lambda kv: -kv[1])))
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    table = "\n".join(lines)
    print("\n" + table)
    all_problems = lat_problems + [p for r in runs for p in r["problems"]]
    # Expected: an IngressRoute written with its Certificate names a secret not issued yet.
    expected = [p for p in all_problems if "proxy manifest skipped" in p and "-tls not found" in p]
    others = [p for p in all_problems if p not in expected]
    print(f"\nedgeplane warnings: {len(expected)} expected (an IngressRoute's TLS secret not issued yet), "
          f"{len(others)} others")
    for p in others[:40]:
        print("  " + p[:400])
    if not args.no_write:
        doc = ROOT / "docs" / "benchmarks.md"
        text = doc.read_text()
        start, end = "<!-- acme-bench:start -->", "<!-- acme-bench:end -->"
        if start not in text:
            text += f"\n## ACME issuance\n\n`scripts/bench-acme.py`.\n\n{start}\n{end}\n"
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        doc.write_text(f"{head}{start}\n{table}\n{end}{tail}")
        print(f"\nwritten to {doc}")


if __name__ == "__main__":
    try:
        main()
    except (Timeout, Stopped, RuntimeError) as e:
        stop_all()
        sys.exit(f"bench-acme: {e}")
    finally:
        stop_all()
