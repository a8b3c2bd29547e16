//! Certificates inside `serve`: a Certificate from the built-in ClusterIssuer (the internal
//! root CA created at first start) served by the proxy over HTTPS and renewed while serving;
//! a self-signed root and a CA Issuer chained from it, checked with `openssl verify`.

use std::process::Command;
use std::time::Duration;

use crate::harness::{cli_ok, require, secret_key, wait_until, Edgeplane};

fn manifests(port: u16) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: site, namespace: apps}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: site-1, namespace: apps, labels: {{kubernetes.io/service-name: site}}}}
ports: [{{name: http, port: {port}}}]
endpoints: [{{addresses: [127.0.0.1]}}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {{name: site, namespace: apps}}
spec:
  entryPoints: [websecure]
  routes: [{{match: Host(`app.test`), services: [{{name: site, port: 80}}]}}]
  tls: {{secretName: app-tls}}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata:
  name: shim
  namespace: apps
  annotations: {{cert-manager.io/cluster-issuer: edgeplane-ca, cert-manager.io/private-key-algorithm: ECDSA}}
spec:
  entryPoints: [websecure]
  routes: [{{match: Host(`shim.test`), services: [{{name: site, port: 80}}]}}]
  tls: {{secretName: shim-tls}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {{name: app, namespace: apps}}
spec:
  secretName: app-tls
  issuerRef: {{name: edgeplane-ca, kind: ClusterIssuer}}
  dnsNames: [app.test]
  duration: 70s
  renewBefore: 62s
  privateKey: {{algorithm: ECDSA}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {{name: orphan, namespace: apps}}
spec:
  secretName: orphan-tls
  issuerRef: {{name: missing}}
  dnsNames: [orphan.test]
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {{name: bootstrap, namespace: apps}}
spec: {{selfSigned: {{}}}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {{name: team-root, namespace: apps}}
spec:
  secretName: team-root
  isCA: true
  commonName: Team Root
  issuerRef: {{name: bootstrap}}
  privateKey: {{algorithm: ECDSA, size: 384}}
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {{name: team, namespace: apps}}
spec: {{ca: {{secretName: team-root}}}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {{name: internal, namespace: apps}}
spec:
  secretName: internal-tls
  issuerRef: {{name: team}}
  dnsNames: [svc.apps.internal]
  usages: [server auth, client auth, digital signature]
  privateKey: {{algorithm: Ed25519}}
"#
    )
}

fn serial(pem: &str) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(pem.as_bytes())?;
            c.wait_with_output()
        })
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn certificates_are_issued_served_renewed_and_verify() {
    require("openssl");
    require("curl");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let site = dir.path().join("site");
    std::fs::create_dir_all(&site).expect("mkdir");
    std::fs::write(site.join("index.html"), "hello over internal TLS\n").expect("write");
    let port = crate::harness::free_port();
    let mut backend = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(&site)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("backend");
    let manifests_dir = dir.path().join("edgeplane.d");
    std::fs::create_dir_all(&manifests_dir).expect("mkdir");
    std::fs::write(manifests_dir.join("app.yaml"), manifests(port)).expect("write");
    let server = Edgeplane::start(
        &data,
        &["--manifests", &manifests_dir.display().to_string()],
    );
    server.wait_log("created the internal root CA", Duration::from_secs(5));

    // The root CA users trust, exported from the store.
    let root = secret_key(&data, "cert-manager", "edgeplane-root-ca", "ca.crt").expect("root CA");
    let root_path = dir.path().join("root.pem");
    std::fs::write(&root_path, &root).expect("write");
    let leaf = wait_until("app-tls", 10, || {
        secret_key(&data, "apps", "app-tls", "tls.crt")
    });
    let leaf_path = dir.path().join("leaf.pem");
    std::fs::write(&leaf_path, &leaf).expect("write");
    let verify = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(&root_path)
        .arg(&leaf_path)
        .output()
        .expect("openssl verify");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    assert_eq!(
        secret_key(&data, "apps", "app-tls", "ca.crt").as_deref(),
        Some(root.as_str())
    );
    let info = cli_ok(&data, &["secret", "get", "app-tls", "-n", "apps"]);
    assert!(
        info.contains("\"cert-manager.io/certificate-name\": \"app\""),
        "{info}"
    );
    assert!(info.contains("\"type\": \"kubernetes.io/tls\""), "{info}");

    // Served by the proxy over HTTPS, trusted through the root CA.
    let resolve = format!("app.test:{}:127.0.0.1", server.websecure.port());
    let url = format!("https://app.test:{}/index.html", server.websecure.port());
    let curl = || {
        Command::new("curl")
            .args(["-sS", "--max-time", "5", "--cacert"])
            .arg(&root_path)
            .args(["--resolve", &resolve, &url])
            .output()
            .expect("curl")
    };
    wait_until("HTTPS with the issued certificate", 10, || {
        let out = curl();
        String::from_utf8_lossy(&out.stdout)
            .contains("hello over internal TLS")
            .then_some(())
    });

    // Renewed when due (8 s after issuance here), and the proxy serves the new one.
    let first = serial(&leaf);
    let renewed = wait_until("renewal", 30, || {
        let pem = secret_key(&data, "apps", "app-tls", "tls.crt")?;
        (serial(&pem) != first).then_some(pem)
    });
    let served_serial = wait_until("the renewed certificate served", 10, || {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -connect 127.0.0.1:{} -servername app.test </dev/null 2>/dev/null | openssl x509 -noout -serial",
                server.websecure.port()
            ))
            .output()
            .expect("s_client");
        let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (s == serial(&renewed)).then_some(s)
    });
    assert_ne!(served_serial, first);
    assert!(String::from_utf8_lossy(&curl().stdout).contains("hello over internal TLS"));

    // Status, as cert-manager reports it.
    let status = cli_ok(&data, &["cert", "get", "apps/app"]);
    assert!(status.contains("Ready=True"), "{status}");
    let revision: u64 = status
        .lines()
        .find_map(|l| l.trim().strip_prefix("revision: "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(revision >= 2, "renewed at least once: {status}");
    let orphan = cli_ok(&data, &["cert", "get", "apps/orphan"]);
    assert!(
        orphan.contains("Ready=False") && orphan.contains("Issuer apps/missing not found"),
        "{orphan}"
    );
    let list = cli_ok(&data, &["cert", "list"]);
    assert!(list.contains("apps/app\tapp-tls\tTrue"), "{list}");

    // The ingress-shim annotation made a certificate for shim.test with no Certificate.
    let shim_resolve = format!("shim.test:{}:127.0.0.1", server.websecure.port());
    let shim_url = format!("https://shim.test:{}/index.html", server.websecure.port());
    wait_until("HTTPS for the annotated IngressRoute", 10, || {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", "--cacert"])
            .arg(&root_path)
            .args(["--resolve", &shim_resolve, &shim_url])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout)
            .contains("hello over internal TLS")
            .then_some(())
    });
    let shim = cli_ok(&data, &["secret", "get", "shim-tls", "-n", "apps"]);
    assert!(
        shim.contains("\"cert-manager.io/alt-names\": \"shim.test\""),
        "{shim}"
    );

    // A self-signed root and a CA Issuer chained from it.
    let team_root = wait_until("team-root", 10, || {
        secret_key(&data, "apps", "team-root", "tls.crt")
    });
    let internal = wait_until("internal-tls", 10, || {
        secret_key(&data, "apps", "internal-tls", "tls.crt")
    });
    std::fs::write(dir.path().join("team-root.pem"), &team_root).expect("write");
    std::fs::write(dir.path().join("internal.pem"), &internal).expect("write");
    let verify = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(dir.path().join("team-root.pem"))
        .arg(dir.path().join("internal.pem"))
        .output()
        .expect("openssl verify");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(dir.path().join("internal.pem"))
        .output()
        .expect("openssl x509");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("ED25519"), "{text}");
    assert!(
        text.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{text}"
    );
    assert!(text.contains("DNS:svc.apps.internal"), "{text}");
    server.stop();
    let _ = backend.kill();
    let _ = backend.wait();
}

#[test]
fn a_kubernetes_ingress_with_a_cluster_issuer_annotation_is_served_over_https() {
    require("curl");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let site = dir.path().join("site");
    std::fs::create_dir_all(&site).expect("mkdir");
    std::fs::write(site.join("index.html"), "hello from an Ingress\n").expect("write");
    let port = crate::harness::free_port();
    let mut backend = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(&site)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("backend");
    let manifests_dir = dir.path().join("edgeplane.d");
    std::fs::create_dir_all(&manifests_dir).expect("mkdir");
    std::fs::write(
        manifests_dir.join("ingress.yaml"),
        format!(
            r#"apiVersion: v1
kind: Service
metadata: {{name: site, namespace: shop}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: site-1, namespace: shop, labels: {{kubernetes.io/service-name: site}}}}
ports: [{{name: http, port: {port}}}]
endpoints: [{{addresses: [127.0.0.1]}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: shop
  namespace: shop
  annotations:
    cert-manager.io/cluster-issuer: edgeplane-ca
    traefik.ingress.kubernetes.io/router.entrypoints: websecure
spec:
  tls: [{{hosts: [shop.test], secretName: shop-tls}}]
  rules:
    - host: shop.test
      http:
        paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: site, port: {{name: http}}}}}}}}]
"#
        ),
    )
    .expect("write");
    let server = Edgeplane::start(
        &data,
        &["--manifests", &manifests_dir.display().to_string()],
    );
    let root = wait_until("the root CA", 10, || {
        secret_key(&data, "cert-manager", "edgeplane-root-ca", "ca.crt")
    });
    let root_path = dir.path().join("root.pem");
    std::fs::write(&root_path, &root).expect("write");
    let resolve = format!("shop.test:{}:127.0.0.1", server.websecure.port());
    let url = format!("https://shop.test:{}/index.html", server.websecure.port());
    wait_until("HTTPS for the Ingress", 15, || {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", "--cacert"])
            .arg(&root_path)
            .args(["--resolve", &resolve, &url])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout)
            .contains("hello from an Ingress")
            .then_some(())
    });
    let status = cli_ok(&data, &["cert", "get", "shop/shop-tls"]);
    assert!(status.contains("Ready=True"), "{status}");
    server.stop();
    let _ = backend.kill();
    let _ = backend.wait();
}
