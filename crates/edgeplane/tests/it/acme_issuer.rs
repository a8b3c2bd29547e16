//! ACME issuers inside `serve`, against Pebble (Let's Encrypt's test CA) resolving through
//! edgeplane's DNS: the seed workflow of `examples/seed` with DNS-01 (apex plus wildcard, the
//! zone's scoped identity, Pebble's 5% nonce rejection left on) and HTTPS through the proxy;
//! HTTP-01 answered by the proxy with a short-lived certificate renewed and served; a failing
//! solver reported with its reason, retried with backoff (no storm), and recovering once fixed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{
    cli, cli_ok, free_port, kdig, require, secret_key, wait_until, Edgeplane, Pebble,
};

struct Backend(Child);
impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A static site on a free port.
fn backend(dir: &Path, body: &str) -> (Backend, u16) {
    let site = dir.join("site");
    std::fs::create_dir_all(&site).expect("mkdir");
    std::fs::write(site.join("index.html"), body).expect("write");
    let port = free_port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(&site)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("backend");
    (Backend(child), port)
}

fn cert_status(data: &Path, name: &str) -> String {
    let out = cli(data, &["cert", "get", name]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed_attempts(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.trim().strip_prefix("failed attempts: "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn curl_https(root: &Path, host: &str, port: u16, path: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--cacert"])
        .arg(root)
        .args([
            "--resolve",
            &format!("{host}:{port}:127.0.0.1"),
            &format!("https://{host}:{port}{path}"),
        ])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn static_config(dir: &Path, retry: &str) -> PathBuf {
    let path = dir.join("edgeplane.yaml");
    std::fs::write(
        &path,
        format!(
            "acme:\n  retryBackoff: {retry}\n  maxRetryBackoff: 1m\n  propagationTimeout: 30s\n"
        ),
    )
    .expect("static config");
    path
}

/// Starts edgeplane with an empty manifest directory (Pebble needs its ports first).
fn start(dir: &Path, retry: &str) -> (Edgeplane, PathBuf, PathBuf) {
    let data = dir.join("data");
    let manifests = dir.join("edgeplane.d");
    std::fs::create_dir_all(&manifests).expect("mkdir");
    let config = static_config(dir, retry);
    let server = Edgeplane::start(
        &data,
        &[
            "--manifests",
            &manifests.display().to_string(),
            "--config",
            &config.display().to_string(),
        ],
    );
    (server, data, manifests)
}

#[test]
fn seed_workflow_gets_an_apex_and_wildcard_certificate_over_dns01_and_serves_it() {
    require("curl");
    require("kdig");
    let dir = tempfile::tempdir().expect("tempdir");
    let (_site, port) = backend(dir.path(), "hello from the seed backend\n");
    let (server, data, manifests) = start(dir.path(), "2s");
    // Pebble's default 5% nonce rejection stays on: every certificate must still be issued.
    let pebble = Pebble::start(
        &dir.path().join("pebble"),
        server.addr(),
        server.web.port(),
        None,
        &[("PEBBLE_VA_NOSLEEP", "1")],
    );
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed");
    for f in ["zones.yaml", "certificate.yaml", "ingress.yaml"] {
        let text = std::fs::read_to_string(seed.join(f)).expect("example file");
        let text = text.replace("port: 8081", &format!("port: {port}"));
        std::fs::write(manifests.join(f), text).expect("write");
    }
    // The example's ACME issuer, on Pebble and trusting its listener.
    let issuer = std::fs::read_to_string(seed.join("alternatives/acme-issuer.yaml"))
        .expect("acme issuer")
        .replace(
            "server: https://acme-staging-v02.api.letsencrypt.org/directory",
            &format!(
                "server: {}\n    caBundle: {}",
                pebble.directory,
                base64(pebble.listener_cert.as_bytes())
            ),
        );
    assert!(issuer.contains("caBundle"), "{issuer}");
    // Another ACME client's challenge value at the same name: it must survive (multivalue).
    wait_until("the zone served", 30, || {
        let d = kdig(server.addr(), &["app.example.com", "A"]);
        (!d.answer.is_empty()).then_some(())
    });
    cli_ok(
        &data,
        &[
            "record",
            "upsert",
            "app.example.com",
            "_acme-challenge",
            "TXT",
            "\"kept-by-another-client\"",
            "--ttl",
            "60",
        ],
    );
    let applied = Instant::now();
    std::fs::write(manifests.join("issuer.yaml"), issuer).expect("write");

    let chain = wait_until("the ACME certificate", 90, || {
        secret_key(&data, "default", "app-tls", "tls.crt")
    });
    let root = pebble.root();
    let root_path = dir.path().join("pebble-root.pem");
    std::fs::write(&root_path, &root).expect("write");
    for host in ["app.example.com", "www.app.example.com"] {
        wait_until(&format!("HTTPS for {host}"), 20, || {
            curl_https(&root_path, host, server.websecure.port(), "/index.html")
                .contains("hello from the seed backend")
                .then_some(())
        });
    }
    eprintln!(
        "first HTTPS response {} ms after the issuer was applied",
        applied.elapsed().as_millis()
    );
    // The chain names the apex and the wildcard, and verifies up to Pebble's root.
    let chain_path = dir.path().join("chain.pem");
    std::fs::write(&chain_path, &chain).expect("write");
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&chain_path)
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("DNS:app.example.com") && text.contains("DNS:*.app.example.com"),
        "{text}"
    );
    let status = cert_status(&data, "default/app");
    assert!(status.contains("Ready=True"), "{status}");
    // The account key was made once and kept in the ClusterIssuer's secret.
    let account = secret_key(&data, "cert-manager", "seed-acme-account", "tls.key")
        .expect("account key stored");
    assert!(account.contains("PRIVATE KEY"));
    // Our challenge values are gone again and the other client's is still there, in
    // edgeplane's authoritative answers.
    let d = kdig(server.addr(), &["_acme-challenge.app.example.com", "TXT"]);
    assert_eq!(d.answer.len(), 1, "challenge left behind: {}", d.raw);
    assert!(d.raw.contains("kept-by-another-client"), "{}", d.raw);
    // The zone's scoped identity did the writing: its key is in the zone's secret.
    assert!(secret_key(&data, "default", "route53", "access-key-id").is_some());
    drop(pebble);
}

const EAB_KEY: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";

/// A DNSZone whose one name points where nothing answers HTTP (127.0.0.2), or at the proxy.
fn far_zone(address: &str) -> String {
    format!(
        "apiVersion: edgeplane.io/v1alpha1\nkind: DNSZone\nmetadata: {{name: example-net, namespace: default}}\nspec:\n  domain: example.net\n  network: {{elbEips: [{address}]}}\n  records: [{{name: far, fromNetwork: public, ttl: 5}}]\n"
    )
}

#[test]
fn http01_through_the_proxy_with_eab_renewal_key_rotation_and_a_ca_side_failure() {
    require("curl");
    require("openssl");
    let dir = tempfile::tempdir().expect("tempdir");
    let (_site, port) = backend(dir.path(), "hello over http-01\n");
    let (server, data, manifests) = start(dir.path(), "2s");
    // Certificates valid for 45 s: renewed at 2/3, 30 s after issuance. Accounts need an
    // external account binding (as ZeroSSL's do).
    let pebble = Pebble::start_with(
        &dir.path().join("pebble"),
        server.addr(),
        server.web.port(),
        Some(45),
        &[("PEBBLE_VA_NOSLEEP", "1")],
        Some(("kid-1", EAB_KEY)),
    );
    cli_ok(
        &data,
        &[
            "secret",
            "create",
            "eab",
            "--from-literal",
            &format!("secret={EAB_KEY}"),
        ],
    );
    std::fs::write(manifests.join("far.yaml"), far_zone("127.0.0.2")).expect("write");
    std::fs::write(
        manifests.join("site.yaml"),
        format!(
            r#"apiVersion: edgeplane.io/v1alpha1
kind: DNSZone
metadata: {{name: example-org, namespace: default}}
spec:
  domain: example.org
  network: {{elbEips: [127.0.0.1]}}
  records: [{{name: www, fromNetwork: public, ttl: 60}}, {{name: keep, fromNetwork: public, ttl: 60}}]
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {{name: pebble-http, namespace: default}}
spec:
  acme:
    server: {server}
    caBundle: {bundle}
    privateKeySecretRef: {{name: pebble-http-account}}
    externalAccountBinding: {{keyID: kid-1, keySecretRef: {{name: eab, key: secret}}}}
    solvers: [{{http01: {{ingress: {{ingressClassName: edgeplane}}}}}}]
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {{name: www, namespace: default}}
spec:
  secretName: www-tls
  issuerRef: {{name: pebble-http}}
  dnsNames: [www.example.org]
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {{name: keep, namespace: default}}
spec:
  secretName: keep-tls
  issuerRef: {{name: pebble-http}}
  dnsNames: [keep.example.org]
  privateKey: {{rotationPolicy: Never, algorithm: ECDSA}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {{name: far, namespace: default}}
spec:
  secretName: far-tls
  issuerRef: {{name: pebble-http}}
  dnsNames: [far.example.net]
---
apiVersion: v1
kind: Service
metadata: {{name: site, namespace: default}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: site-1, namespace: default, labels: {{kubernetes.io/service-name: site}}}}
ports: [{{name: http, port: {port}}}]
endpoints: [{{addresses: [127.0.0.1]}}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {{name: www, namespace: default}}
spec:
  entryPoints: [websecure]
  routes: [{{match: Host(`www.example.org`), services: [{{name: site, port: 80}}]}}]
  tls: {{secretName: www-tls}}
"#,
            server = pebble.directory,
            bundle = base64(pebble.listener_cert.as_bytes()),
        ),
    )
    .expect("write");
    let first = wait_until("the HTTP-01 certificate", 60, || {
        secret_key(&data, "default", "www-tls", "tls.crt")
    });
    let first_key = secret_key(&data, "default", "www-tls", "tls.key").expect("key");
    let keep_key = wait_until("the kept-key certificate", 30, || {
        secret_key(&data, "default", "keep-tls", "tls.key")
    });
    // The CA could not reach far.example.net: its own reason is reported.
    let far = wait_until("the CA-side failure", 60, || {
        let s = cert_status(&data, "default/far");
        (failed_attempts(&s) >= 1).then_some(s)
    });
    assert!(
        far.contains("Ready=False")
            && far.contains("the CA did not validate")
            && far.contains("far.example.net")
            && far.contains("connection refused"),
        "{far}"
    );
    // Fixed in DNS; the next retry (backoff) gets the certificate.
    std::fs::write(manifests.join("far.yaml"), far_zone("127.0.0.1")).expect("write");
    let root_path = dir.path().join("pebble-root.pem");
    std::fs::write(&root_path, pebble.root()).expect("write");
    wait_until("HTTPS for www.example.org", 20, || {
        curl_https(
            &root_path,
            "www.example.org",
            server.websecure.port(),
            "/index.html",
        )
        .contains("hello over http-01")
        .then_some(())
    });
    // No challenge route is left on the web entry point.
    let leftover = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Host: www.example.org",
        ])
        .arg(format!(
            "http://127.0.0.1:{}/.well-known/acme-challenge/anything",
            server.web.port()
        ))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&leftover.stdout), "404");
    wait_until("far.example.net after the fix", 60, || {
        secret_key(&data, "default", "far-tls", "tls.crt")
    });
    // Renewed when due, and the proxy serves the new one on the next handshake.
    let renewed = wait_until("renewal", 60, || {
        let pem = secret_key(&data, "default", "www-tls", "tls.crt")?;
        (pem != first).then_some(pem)
    });
    // rotationPolicy: the default (Always) made a new key, Never kept it.
    assert_ne!(
        secret_key(&data, "default", "www-tls", "tls.key").expect("key"),
        first_key
    );
    wait_until("the kept-key certificate renewed", 30, || {
        let s = cert_status(&data, "default/keep");
        s.contains("revision: 2").then_some(())
    });
    assert_eq!(
        secret_key(&data, "default", "keep-tls", "tls.key").expect("key"),
        keep_key
    );
    // The account was registered once, with the binding, and kept.
    assert!(secret_key(&data, "default", "pebble-http-account", "tls.key").is_some());
    let serial = |pem: &str| {
        let path = dir.path().join("serial.pem");
        std::fs::write(&path, pem).expect("write");
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-serial", "-in"])
            .arg(&path)
            .output()
            .expect("openssl");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let want = serial(&renewed);
    wait_until("the renewed certificate served", 15, || {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -connect 127.0.0.1:{} -servername www.example.org </dev/null 2>/dev/null | openssl x509 -noout -serial",
                server.websecure.port()
            ))
            .output()
            .expect("s_client");
        (String::from_utf8_lossy(&out.stdout).trim() == want).then_some(())
    });
    let status = cert_status(&data, "default/www");
    assert!(status.contains("Ready=True"), "{status}");
    let revision: u64 = status
        .lines()
        .find_map(|l| l.trim().strip_prefix("revision: "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(revision >= 2, "{status}");
}

#[test]
fn a_failing_solver_is_reported_retried_with_backoff_and_recovers_once_fixed() {
    require("curl");
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, data, manifests) = start(dir.path(), "3s");
    let pebble = Pebble::start(
        &dir.path().join("pebble"),
        server.addr(),
        server.web.port(),
        None,
        &[("PEBBLE_VA_NOSLEEP", "1")],
    );
    // Credentials the API refuses.
    cli_ok(
        &data,
        &[
            "secret",
            "create",
            "dns-creds",
            "--from-literal",
            "access-key-id=AKIAEDGEPLANEWRONG00",
            "--from-literal",
            "secret-access-key=not-the-secret",
        ],
    );
    std::fs::write(
        manifests.join("failing.yaml"),
        format!(
            r#"apiVersion: edgeplane.io/v1alpha1
kind: DNSZone
metadata: {{name: example-net, namespace: default}}
spec:
  domain: example.net
  acmeCredentials: {{secretName: route53}}
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {{name: pebble-dns, namespace: default}}
spec:
  acme:
    server: {server}
    caBundle: {bundle}
    privateKeySecretRef: {{name: pebble-dns-account}}
    solvers:
      - dns01:
          route53:
            accessKeyIDSecretRef: {{name: dns-creds, key: access-key-id}}
            secretAccessKeySecretRef: {{name: dns-creds, key: secret-access-key}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {{name: api, namespace: default}}
spec:
  secretName: api-tls
  issuerRef: {{name: pebble-dns}}
  dnsNames: [api.example.net]
"#,
            server = pebble.directory,
            bundle = base64(pebble.listener_cert.as_bytes()),
        ),
    )
    .expect("write");
    let status = wait_until("the failure reported", 60, || {
        let s = cert_status(&data, "default/api");
        (failed_attempts(&s) >= 1).then_some(s)
    });
    assert!(status.contains("Ready=False"), "{status}");
    assert!(
        status.contains("InvalidClientTokenId") || status.contains("access denied"),
        "the reason names the refusal: {status}"
    );
    // Backoff of 3 s, doubled: over the next 8 s at most two more attempts (3 s, then 6 s
    // later), although the directory is re-read every second.
    let t0 = Instant::now();
    let start_attempts = failed_attempts(&status);
    std::thread::sleep(Duration::from_secs(8));
    let later = failed_attempts(&cert_status(&data, "default/api"));
    assert!(
        later > start_attempts && later <= start_attempts + 2,
        "attempts {start_attempts} -> {later} in {:?}",
        t0.elapsed()
    );
    // The fix: the secret gets the zone's scoped identity's key.
    let id = secret_key(&data, "default", "route53", "access-key-id").expect("scoped key");
    let secret =
        secret_key(&data, "default", "route53", "secret-access-key").expect("scoped secret");
    cli_ok(
        &data,
        &[
            "secret",
            "apply",
            "dns-creds",
            "--from-literal",
            &format!("access-key-id={}", id.trim()),
            "--from-literal",
            &format!("secret-access-key={}", secret.trim()),
        ],
    );
    wait_until("recovery after the fix", 90, || {
        secret_key(&data, "default", "api-tls", "tls.crt")
    });
    let status = wait_until("Ready=True", 10, || {
        let s = cert_status(&data, "default/api");
        s.contains("Ready=True").then_some(s)
    });
    assert!(status.contains("failed attempts: 0"), "{status}");
    drop(pebble);
}

#[test]
fn a_routers_cert_resolver_gets_a_certificate_over_http01() {
    require("curl");
    let dir = tempfile::tempdir().expect("tempdir");
    let (_site, port) = backend(dir.path(), "hello through a resolver\n");
    // Ports chosen up front: the static configuration names Pebble, and Pebble edgeplane's.
    let (dns_port, web_port) = (free_port(), free_port());
    let pebble = Pebble::start(
        &dir.path().join("pebble"),
        std::net::SocketAddr::from(([127, 0, 0, 1], dns_port)),
        web_port,
        None,
        &[("PEBBLE_VA_NOSLEEP", "1")],
    );
    let config = dir.path().join("edgeplane.yaml");
    std::fs::write(
        &config,
        format!(
            "acme: {{retryBackoff: 2s}}\ncertificatesResolvers:\n  pebble:\n    acme:\n      caServer: {}\n      caCertificates: [{}]\n      keyType: EC384\n      httpChallenge: {{entryPoint: web}}\n",
            pebble.directory,
            pebble.listener_cert_path.display()
        ),
    )
    .expect("static config");
    let data = dir.path().join("data");
    let manifests = dir.path().join("edgeplane.d");
    std::fs::create_dir_all(&manifests).expect("mkdir");
    std::fs::write(
        manifests.join("site.yaml"),
        format!(
            r#"apiVersion: edgeplane.io/v1alpha1
kind: DNSZone
metadata: {{name: example-com, namespace: web}}
spec:
  domain: example.com
  network: {{elbEips: [127.0.0.1]}}
  records: [{{name: www, fromNetwork: public, ttl: 60}}]
---
apiVersion: v1
kind: Service
metadata: {{name: site, namespace: web}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: site-1, namespace: web, labels: {{kubernetes.io/service-name: site}}}}
ports: [{{name: http, port: {port}}}]
endpoints: [{{addresses: [127.0.0.1]}}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {{name: www, namespace: web}}
spec:
  entryPoints: [websecure]
  routes: [{{match: Host(`www.example.com`), services: [{{name: site, port: 80}}]}}]
  tls: {{certResolver: pebble}}
"#
        ),
    )
    .expect("write");
    let server = Edgeplane::start(
        &data,
        &[
            "--manifests",
            &manifests.display().to_string(),
            "--config",
            &config.display().to_string(),
            "--dns-listen",
            &format!("127.0.0.1:{dns_port}"),
            "--web-listen",
            &format!("127.0.0.1:{web_port}"),
        ],
    );
    let root_path = dir.path().join("pebble-root.pem");
    std::fs::write(&root_path, pebble.root()).expect("write");
    wait_until("HTTPS with the resolver's certificate", 60, || {
        curl_https(
            &root_path,
            "www.example.com",
            server.websecure.port(),
            "/index.html",
        )
        .contains("hello through a resolver")
        .then_some(())
    });
    let list = cli_ok(&data, &["cert", "list"]);
    let row = list
        .lines()
        .find(|l| l.starts_with("web/pebble-www-example-com-"))
        .unwrap_or_else(|| panic!("no resolver certificate in {list}"));
    assert!(row.contains("\tTrue\t"), "{row}");
    // The resolver's key type: P-384.
    let secret = row.split('\t').nth(1).expect("secret column");
    let key = secret_key(&data, "web", secret, "tls.key").expect("key");
    let out = Command::new("sh")
        .arg("-c")
        .arg("openssl pkey -noout -text 2>/dev/null | head -1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(key.as_bytes())?;
            c.wait_with_output()
        })
        .expect("openssl pkey");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("384"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    drop(pebble);
}
