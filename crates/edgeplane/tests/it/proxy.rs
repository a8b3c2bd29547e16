//! The proxy inside `edgeplane serve`: IngressRoutes from the manifest directory routed to a
//! real backend, TLS from a secret in the store (replaced while serving), a broken file that
//! harms nothing, and the proxy's admin routes and metrics.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{cli_ok, require, Edgeplane};

/// A Python HTTP server on an ephemeral port serving `root`; killed when dropped.
struct Backend {
    child: Child,
    port: u16,
}

impl Backend {
    fn start(root: &Path) -> Backend {
        let port = crate::harness::free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 http.server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "backend did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Backend { child, port }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for `name` written as `<stem>.crt` / `<stem>.key`.
fn self_signed(dir: &Path, stem: &str, name: &str) {
    require("openssl");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
        ])
        .args([
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            &format!("subjectAltName=DNS:{name}"),
        ])
        .arg("-keyout")
        .arg(dir.join(format!("{stem}.key")))
        .arg("-out")
        .arg(dir.join(format!("{stem}.crt")))
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn curl(args: &[&str]) -> (bool, String) {
    require("curl");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .args(args)
        .output()
        .expect("curl");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn manifests(port: u16) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: site, namespace: apps}}
spec:
  ports: [{{name: http, port: 80}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: site-1
  namespace: apps
  labels: {{kubernetes.io/service-name: site}}
addressType: IPv4
ports: [{{name: http, port: {port}}}]
endpoints: [{{addresses: [127.0.0.1]}}]
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {{name: strip-site, namespace: apps}}
spec:
  stripPrefix: {{prefixes: [/site]}}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {{name: site-web, namespace: apps}}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`app.test`) && PathPrefix(`/site`)
      kind: Rule
      middlewares: [{{name: strip-site}}]
      services: [{{name: site, port: 80}}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {{name: site-secure, namespace: apps}}
spec:
  entryPoints: [websecure]
  routes:
    - match: Host(`app.test`)
      kind: Rule
      services: [{{name: site, port: http}}]
  tls: {{secretName: app-tls}}
"#
    )
}

fn wait_until(what: &str, mut f: impl FnMut() -> Option<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn serve_routes_ingress_routes_with_tls_from_the_secret_store() {
    routes_with_tls_from_the_secret_store(&[]);
}

/// The same on a current-thread runtime: the manifest watcher, the control socket's blocking
/// jobs, TLS and the admin API all share the one thread.
#[test]
fn serve_routes_on_a_single_worker_thread() {
    routes_with_tls_from_the_secret_store(&["--worker-threads", "1"]);
}

/// The same with three proxy workers (whatever the machine's CPUs): connections handed
/// from the accept loops to the workers, TLS on each.
#[test]
fn serve_routes_on_three_proxy_workers() {
    routes_with_tls_from_the_secret_store(&["--worker-threads", "3"]);
}

fn routes_with_tls_from_the_secret_store(extra: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let site = dir.path().join("site");
    std::fs::create_dir_all(&site).expect("mkdir");
    std::fs::write(site.join("index.html"), "hello from the backend\n").expect("write");
    let backend = Backend::start(&site);
    let manifests_dir = dir.path().join("edgeplane.d");
    std::fs::create_dir_all(&manifests_dir).expect("mkdir");
    std::fs::write(manifests_dir.join("site.yaml"), manifests(backend.port)).expect("write");
    self_signed(dir.path(), "one", "app.test");
    self_signed(dir.path(), "two", "app.test");

    let access_log = dir.path().join("access.log");
    let mut args = vec![
        "--manifests".to_string(),
        manifests_dir.display().to_string(),
        "--access-log".to_string(),
        access_log.display().to_string(),
        "--access-log-format".to_string(),
        "json".to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Edgeplane::start(&data, &args);
    if extra.contains(&"1") {
        let line = server.wait_log("edgeplane serving", Duration::from_secs(10));
        assert!(
            line.contains("\"workers\":1") && line.contains("\"CurrentThread\""),
            "{line}"
        );
    }
    let crt = |stem: &str| dir.path().join(format!("{stem}.crt")).display().to_string();
    let key = |stem: &str| dir.path().join(format!("{stem}.key")).display().to_string();
    cli_ok(
        &data,
        &[
            "secret",
            "create",
            "app-tls",
            "-n",
            "apps",
            "--cert",
            &crt("one"),
            "--key",
            &key("one"),
        ],
    );

    // Plain HTTP through the web entry point, with the prefix stripped.
    let web = format!("http://{}/site/index.html", server.web);
    let body = wait_until("the web route", || {
        let (ok, out) = curl(&["-H", "Host: app.test", &web]);
        (ok && out.contains("hello from the backend")).then_some(out)
    });
    assert!(body.contains("hello from the backend"));

    // HTTPS with the certificate from the secret store.
    let port = server.websecure.port();
    let resolve = format!("app.test:{port}:127.0.0.1");
    let url = format!("https://app.test:{port}/index.html");
    wait_until("the TLS route with the stored certificate", || {
        let (ok, out) = curl(&["--cacert", &crt("one"), "--resolve", &resolve, &url]);
        (ok && out.contains("hello from the backend")).then_some(out)
    });

    // Replace the certificate in the store: the next handshakes get the new one.
    cli_ok(
        &data,
        &[
            "secret",
            "apply",
            "app-tls",
            "-n",
            "apps",
            "--cert",
            &crt("two"),
            "--key",
            &key("two"),
        ],
    );
    wait_until("the replaced certificate", || {
        let (ok, out) = curl(&["--cacert", &crt("two"), "--resolve", &resolve, &url]);
        (ok && out.contains("hello from the backend")).then_some(out)
    });
    assert!(!curl(&["--cacert", &crt("one"), "--resolve", &resolve, &url]).0);

    // A broken file changes nothing that works.
    std::fs::write(manifests_dir.join("broken.yaml"), "apiVersion: traefik.io/v1alpha1\nkind: IngressRoute\nmetadata: {name: bad, namespace: apps}\nspec:\n  routes:\n    - match: Host(`x`) &&\n      services: [{name: site, port: 80}]\n---\n: : [ not yaml\n").expect("write");
    server.wait_log("proxy resource skipped", Duration::from_secs(10));
    let (ok, out) = curl(&["-H", "Host: app.test", &web]);
    assert!(ok && out.contains("hello from the backend"), "{out}");

    // The proxy's admin routes: /ping is open, the listing needs a signature.
    let (ok, out) = curl(&[&format!("http://{}/ping", server.admin)]);
    assert!(ok && out == "OK", "{out}");
    let creds = std::fs::read_to_string(data.join("admin-credentials")).expect("credentials");
    let get = |k: &str| {
        creds
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k} = ")))
            .unwrap_or_default()
            .to_string()
    };
    let user = format!(
        "{}:{}",
        get("aws_access_key_id"),
        get("aws_secret_access_key")
    );
    let routers_url = format!("http://{}/api/http/routers", server.admin);
    let (_, out) = curl(&[
        "--aws-sigv4",
        "aws:amz:us-east-1:edgeplane",
        "--user",
        &user,
        &routers_url,
    ]);
    let routers: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}"));
    let names: Vec<&str> = routers
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(names.contains(&"apps-site-web-0@kubernetescrd"), "{out}");
    assert!(names.contains(&"apps-site-secure-0@kubernetescrd"), "{out}");
    let bad = routers
        .as_array()
        .expect("array")
        .iter()
        .find(|r| r["name"] == "apps-bad-0@kubernetescrd")
        .unwrap_or_else(|| panic!("the broken router is listed: {out}"));
    assert_eq!(bad["status"], "disabled", "{out}");
    assert!(
        bad["error"][0]
            .as_str()
            .unwrap_or("")
            .contains("at position"),
        "{out}"
    );
    let (_, out) = curl(&["-w", "%{http_code}", "-o", "/dev/null", &routers_url]);
    assert_eq!(out, "403");
    let (_, metrics) = curl(&[&format!("http://{}/metrics", server.admin)]);
    assert!(metrics.contains("traefik_router_requests_total{code=\"200\",method=\"GET\",protocol=\"http/1.1\",router=\"apps-site-web-0@kubernetescrd\""), "{metrics}");
    assert!(
        metrics.contains("traefik_tls_certs_not_after{cn=\"app.test\""),
        "{metrics}"
    );
    let log = std::fs::read_to_string(&access_log).expect("access log");
    assert!(
        log.lines().any(
            |l| l.contains("\"RouterName\":\"apps-site-web-0@kubernetescrd\"")
                && l.contains("\"DownstreamStatus\":200")
        ),
        "{log}"
    );
    server.stop();
}

#[test]
fn websockets_pass_through_the_proxy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let script = format!(
        "{}/tests/data/websocket_echo.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let py = crate::harness::python();
    let port = crate::harness::free_port();
    let _echo = Backend {
        child: Command::new(&py)
            .args([&script, "server", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("websocket server"),
        port,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "websocket server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let manifests_dir = dir.path().join("edgeplane.d");
    std::fs::create_dir_all(&manifests_dir).expect("mkdir");
    std::fs::write(
        manifests_dir.join("ws.yaml"),
        format!(
            "http:\n  routers:\n    ws:\n      rule: PathPrefix(`/chat`)\n      service: ws\n  services:\n    ws:\n      loadBalancer:\n        servers: [{{url: 'http://127.0.0.1:{port}'}}]\n"
        ),
    )
    .expect("write");
    let server = Edgeplane::start(
        &data,
        &["--manifests", &manifests_dir.display().to_string()],
    );
    let url = format!("ws://{}/chat", server.web);
    let out = wait_until("the WebSocket route", || {
        let out = Command::new(&py)
            .args([&script, "client", &url])
            .output()
            .expect("websocket client");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success() && text.trim() == "OK").then_some(text)
    });
    assert_eq!(out.trim(), "OK");
    server.stop();
}

#[test]
fn servers_transports_take_their_root_ca_from_the_secret_store() {
    require("openssl");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let manifests_dir = dir.path().join("edgeplane.d");
    std::fs::create_dir_all(&manifests_dir).expect("mkdir");
    // The backend's certificate, from the internal CA.
    std::fs::write(
        manifests_dir.join("cert.yaml"),
        "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: backend, namespace: apps}\nspec:\n  secretName: backend-tls\n  issuerRef: {name: edgeplane-ca, kind: ClusterIssuer}\n  dnsNames: [backend.internal]\n  privateKey: {algorithm: ECDSA}\n",
    )
    .expect("write");
    let server = Edgeplane::start(
        &data,
        &["--manifests", &manifests_dir.display().to_string()],
    );
    let key = |ns: &str, name: &str, k: &str| {
        let out = crate::harness::cli(&data, &["secret", "get", name, "-n", ns, "--key", k]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let crt = wait_until("the backend certificate", || {
        key("apps", "backend-tls", "tls.crt")
    });
    std::fs::write(dir.path().join("backend.crt"), &crt).expect("write");
    std::fs::write(
        dir.path().join("backend.key"),
        key("apps", "backend-tls", "tls.key").expect("key"),
    )
    .expect("write");
    let root = key("cert-manager", "edgeplane-root-ca", "ca.crt").expect("root");
    std::fs::write(dir.path().join("root.pem"), &root).expect("write");
    // An HTTPS backend (openssl's status page).
    let port = crate::harness::free_port();
    let mut tls_backend = Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-www",
            "-accept",
            &port.to_string(),
            "-cert",
        ])
        .arg(dir.path().join("backend.crt"))
        .arg("-key")
        .arg(dir.path().join("backend.key"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    std::fs::write(
        manifests_dir.join("route.yaml"),
        format!(
            r#"apiVersion: traefik.io/v1alpha1
kind: ServersTransport
metadata: {{name: pinned, namespace: apps}}
spec:
  serverName: backend.internal
  rootCAsSecrets: [backend-ca]
---
apiVersion: v1
kind: Service
metadata: {{name: secure-backend, namespace: apps}}
spec: {{ports: [{{name: https, port: 443}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: secure-backend-1, namespace: apps, labels: {{kubernetes.io/service-name: secure-backend}}}}
ports: [{{name: https, port: {port}}}]
endpoints: [{{addresses: [127.0.0.1]}}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {{name: secure, namespace: apps}}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`secure.test`)
      services: [{{name: secure-backend, port: 443, scheme: https, serversTransport: pinned}}]
"#
        ),
    )
    .expect("write");
    let get = || {
        curl(&[
            "-H",
            "Host: secure.test",
            "-w",
            "\n%{http_code}",
            &format!("http://{}/", server.web),
        ])
        .1
    };
    // Without its root CA the transport is not used (never the system's roots instead).
    std::thread::sleep(Duration::from_secs(3));
    let before = get();
    assert!(!before.trim_end().ends_with("200"), "{before}");
    let ca_file = format!("ca.crt={}", dir.path().join("root.pem").display());
    cli_ok(
        &data,
        &[
            "secret",
            "create",
            "backend-ca",
            "-n",
            "apps",
            "--from-file",
            &ca_file,
        ],
    );
    let got = wait_until("the backend through the pinned transport", || {
        let out = get();
        out.trim_end().ends_with("200").then_some(out)
    });
    assert!(got.contains("s_server") || got.contains("Ciphers"), "{got}");
    let _ = tls_backend.kill();
    let _ = tls_backend.wait();
    server.stop();
}

/// The entry points' HTTP/1.1 limits are flags: a keep-alive budget of one request closes
/// each connection after its first answer, which says so; a zero timeout is refused.
#[test]
fn entry_point_limits_are_flags() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let out = crate::harness::cli(dir.path(), &["serve", "--http-read-timeout", "0s"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--http-read-timeout") && err.contains("longer than zero"),
        "{err}"
    );
    let out = crate::harness::cli(dir.path(), &["serve", "--http-idle-timeout", "soon"]);
    assert!(!out.status.success());
    let out = crate::harness::cli(dir.path(), &["serve", "--worker-threads", "0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--worker-threads"), "{err}");

    let server = Edgeplane::start(
        dir.path(),
        &[
            "--http-keep-alive-max-requests",
            "1",
            "--http-idle-timeout",
            "2s",
            "--http-max-header-bytes",
            "16384",
            "--http-write-timeout",
            "5s",
        ],
    );
    let mut s = std::net::TcpStream::connect(server.web).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(b"GET / HTTP/1.1\r\nHost: nothing.test\r\n\r\n")
        .expect("write");
    // No route: 404, and the connection closed after it (read_to_string ends).
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read to the close");
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(
        answer.to_lowercase().contains("\r\nconnection: close\r\n"),
        "{answer}"
    );
    // A head over the limit: 431.
    let mut s = std::net::TcpStream::connect(server.web).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let _ = s.write_all(big.as_bytes());
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}
