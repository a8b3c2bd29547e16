//! TLS termination: SNI selection, HTTP/2 by ALPN, the default certificate, and a certificate
//! replaced while serving.

use std::net::SocketAddr;

use proxy::config::{CertificatePem, DynamicConfig, RouterTls};

use crate::{backend, curl, router, service};

/// A CA and a function that issues leaf certificates from it.
struct Ca {
    cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("self-signed");
        let issuer = rcgen::Issuer::new(params, key);
        Ca { cert, issuer }
    }

    fn issue(&self, names: &[&str], source: &str) -> CertificatePem {
        let key = rcgen::KeyPair::generate().expect("key");
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        CertificatePem {
            source: source.to_string(),
            chain: cert.pem().into_bytes(),
            key: zeroize::Zeroizing::new(key.serialize_pem().into_bytes()),
        }
    }

    fn write(&self, dir: &std::path::Path, file: &str) -> String {
        let path = dir.join(file);
        std::fs::write(&path, self.cert.pem()).expect("write CA");
        path.display().to_string()
    }
}

fn tls_config(backend: SocketAddr, certs: Vec<CertificatePem>) -> DynamicConfig {
    let mut cfg = DynamicConfig::default();
    let mut r = router(
        "Host(`app.test`) || Host(`api.test`) || Host(`x.wild.test`)",
        "s",
    );
    r.tls = Some(RouterTls::default());
    cfg.routers.insert("secure".into(), r);
    cfg.services.insert("s".into(), service(&[backend]));
    cfg.certificates = certs;
    cfg
}

async fn https(addr: SocketAddr, host: &str, ca: &str, extra: &[&str]) -> (bool, String) {
    let mut args = vec![
        "--cacert".to_string(),
        ca.to_string(),
        "--resolve".to_string(),
        format!("{host}:{}:127.0.0.1", addr.port()),
        "-w".to_string(),
        "\nversion=%{http_version}".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(format!("https://{host}:{}/", addr.port()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = curl(&refs).await;
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_selects_the_certificate_and_alpn_gives_http2() {
    let a = backend::start("a").await;
    let p = crate::start_proxy().await;
    let ca1 = Ca::new("CA one");
    let ca2 = Ca::new("CA two");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca1_path = ca1.write(dir.path(), "ca1.pem");
    let ca2_path = ca2.write(dir.path(), "ca2.pem");
    let diags = p.apply(&tls_config(
        a,
        vec![
            ca1.issue(&["app.test"], "apps/app"),
            ca2.issue(&["api.test", "*.wild.test"], "apps/api"),
        ],
    ));
    assert_eq!(diags, vec![]);
    let secure = p.local_addr("websecure").expect("websecure");

    let (ok, out) = https(secure, "app.test", &ca1_path, &[]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("backend=a") && out.contains("x-forwarded-proto=https"),
        "{out}"
    );
    assert!(out.ends_with("version=2"), "{out}");
    let (ok, out) = https(secure, "api.test", &ca2_path, &["--http1.1"]).await;
    assert!(ok && out.ends_with("version=1.1"), "{out}");
    let (ok, out) = https(secure, "x.wild.test", &ca2_path, &[]).await;
    assert!(ok, "{out}");
    // The wrong CA for a name fails verification: each name got its own certificate.
    let (ok, _) = https(secure, "app.test", &ca2_path, &[]).await;
    assert!(!ok);
    // A name no certificate covers gets the default certificate.
    let out = curl(&[
        "-k",
        "-v",
        "--resolve",
        &format!("other.test:{}:127.0.0.1", secure.port()),
        &format!("https://other.test:{}/", secure.port()),
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("EDGEPLANE DEFAULT CERT"), "{text}");
    let certs = p.certificates();
    assert_eq!(certs.len(), 2);
    assert!(p
        .metrics()
        .render()
        .contains("traefik_tls_certs_not_after{cn=\"app.test\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_certificate_is_served_on_the_next_handshake() {
    let a = backend::start("a").await;
    let p = crate::start_proxy().await;
    let old = Ca::new("old CA");
    let new = Ca::new("new CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let old_path = old.write(dir.path(), "old.pem");
    let new_path = new.write(dir.path(), "new.pem");
    p.apply(&tls_config(a, vec![old.issue(&["app.test"], "apps/app")]));
    let secure = p.local_addr("websecure").expect("websecure");
    assert!(https(secure, "app.test", &old_path, &[]).await.0);
    p.apply(&tls_config(a, vec![new.issue(&["app.test"], "apps/app")]));
    let (ok, out) = https(secure, "app.test", &new_path, &[]).await;
    assert!(ok, "{out}");
    assert!(!https(secure, "app.test", &old_path, &[]).await.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_certificate_is_reported_and_others_still_load() {
    let a = backend::start("a").await;
    let p = crate::start_proxy().await;
    let ca = Ca::new("CA");
    let good = ca.issue(&["app.test"], "apps/good");
    let other = ca.issue(&["api.test"], "apps/other");
    let mismatched = CertificatePem {
        source: "apps/mismatched".into(),
        chain: good.chain.clone(),
        key: other.key.clone(),
    };
    let garbage = CertificatePem {
        source: "apps/garbage".into(),
        chain: b"not a certificate".to_vec(),
        key: zeroize::Zeroizing::new(b"nor a key".to_vec()),
    };
    let diags = p.apply(&tls_config(a, vec![mismatched, garbage, good]));
    let text: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    assert_eq!(diags.len(), 2, "{text:?}");
    assert!(
        text[0].contains("apps/mismatched") && text[0].contains("does not match"),
        "{text:?}"
    );
    assert!(text[1].contains("apps/garbage"), "{text:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_path = ca.write(dir.path(), "ca.pem");
    assert!(
        https(
            p.local_addr("websecure").expect("ws"),
            "app.test",
            &ca_path,
            &[]
        )
        .await
        .0
    );
}

fn with_option(
    backend: SocketAddr,
    certs: Vec<CertificatePem>,
    host_rule: &str,
    opt: proxy::config::TlsOptions,
) -> DynamicConfig {
    let mut cfg = tls_config(backend, certs);
    let mut strict = router(host_rule, "s");
    strict.tls = Some(RouterTls {
        options: Some("strict".into()),
        cert_resolver: None,
    });
    cfg.routers.insert("strict".into(), strict);
    cfg.tls_options.insert("strict".into(), opt);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_options_versions_alpn_and_sni_strict_per_host() {
    let a = backend::start("a").await;
    let p = crate::start_proxy().await;
    let ca = Ca::new("CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_path = ca.write(dir.path(), "ca.pem");
    let opt = proxy::config::TlsOptions {
        min_version: Some("VersionTLS13".into()),
        alpn_protocols: vec!["http/1.1".into()],
        sni_strict: true,
        ..Default::default()
    };
    let cfg = with_option(
        a,
        vec![ca.issue(&["app.test", "strict.test"], "apps/app")],
        "Host(`strict.test`)",
        opt,
    );
    assert_eq!(p.apply(&cfg), vec![]);
    let secure = p.local_addr("websecure").expect("websecure");
    // strict.test: TLS 1.3 only, HTTP/1.1 only.
    let (ok, _) = https(secure, "strict.test", &ca_path, &["--tls-max", "1.2"]).await;
    assert!(!ok, "TLS 1.2 must be refused for strict.test");
    let (ok, out) = https(secure, "strict.test", &ca_path, &[]).await;
    assert!(ok && out.ends_with("version=1.1"), "{out}");
    // app.test keeps the defaults: TLS 1.2 and HTTP/2 work.
    let (ok, out) = https(secure, "app.test", &ca_path, &["--tls-max", "1.2"]).await;
    assert!(ok && out.ends_with("version=2"), "{out}");

    // sniStrict as the default option: no SNI, or an unknown name, gets no certificate.
    let mut cfg = tls_config(a, vec![ca.issue(&["app.test"], "apps/app")]);
    cfg.tls_options.insert(
        "default".into(),
        proxy::config::TlsOptions {
            sni_strict: true,
            ..Default::default()
        },
    );
    assert_eq!(p.apply(&cfg), vec![]);
    let no_sni = curl(&["-k", &format!("https://127.0.0.1:{}/", secure.port())]).await;
    assert!(!no_sni.status.success());
    let unknown = curl(&[
        "-k",
        "--resolve",
        &format!("other.test:{}:127.0.0.1", secure.port()),
        &format!("https://other.test:{}/", secure.port()),
    ])
    .await;
    assert!(!unknown.status.success());
    assert!(https(secure, "app.test", &ca_path, &[]).await.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cipher_suites_and_curves_are_restricted() {
    crate::require("openssl");
    let a = backend::start("a").await;
    let p = crate::start_proxy().await;
    let ca = Ca::new("CA");
    let opt = proxy::config::TlsOptions {
        max_version: Some("VersionTLS12".into()),
        cipher_suites: vec!["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384".into()],
        curve_preferences: vec!["CurveP384".into()],
        ..Default::default()
    };
    let cfg = with_option(
        a,
        vec![ca.issue(&["app.test", "strict.test"], "apps/app")],
        "Host(`strict.test`)",
        opt,
    );
    assert_eq!(p.apply(&cfg), vec![]);
    let secure = p.local_addr("websecure").expect("websecure");
    let s_client = |cipher: &'static str, curve: &'static str| {
        let addr = format!("127.0.0.1:{}", secure.port());
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new("openssl")
                    .args([
                        "s_client",
                        "-connect",
                        &addr,
                        "-servername",
                        "strict.test",
                        "-tls1_2",
                        "-cipher",
                        cipher,
                        "-curves",
                        curve,
                    ])
                    .stdin(std::process::Stdio::null())
                    .output()
                    .expect("openssl")
            })
            .await
            .expect("join")
        }
    };
    let good = s_client("ECDHE-ECDSA-AES256-GCM-SHA384", "P-384:P-256").await;
    let text = String::from_utf8_lossy(&good.stdout);
    assert!(
        text.contains("Cipher is ECDHE-ECDSA-AES256-GCM-SHA384"),
        "{text}{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let bad_cipher = s_client("ECDHE-ECDSA-AES128-GCM-SHA256", "P-384:P-256").await;
    assert!(!String::from_utf8_lossy(&bad_cipher.stdout).contains("Cipher is ECDHE"));
    let bad_curve = s_client("ECDHE-ECDSA-AES256-GCM-SHA384", "X25519:P-256").await;
    assert!(!String::from_utf8_lossy(&bad_curve.stdout).contains("Cipher is ECDHE"));

    // A broken option is reported; the routers naming it get the default options.
    let mut cfg = cfg;
    if let Some(o) = cfg.tls_options.get_mut("strict") {
        o.cipher_suites = vec!["TLS_RSA_WITH_RC4_128_SHA".into()];
    }
    let diags = p.apply(&cfg);
    assert!(
        diags
            .iter()
            .any(|d| d.kind == "tlsoption" && d.message.contains("unsupported cipher suite")),
        "{diags:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_and_verified() {
    let a = backend::start("a").await;
    let p = crate::start_proxy().await;
    let ca = Ca::new("server CA");
    let clients = Ca::new("client CA");
    let stranger = Ca::new("another CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_path = ca.write(dir.path(), "ca.pem");
    let write_client = |who: &Ca, stem: &str| {
        let c = who.issue(&["client.test"], stem);
        let crt = dir.path().join(format!("{stem}.crt"));
        let key = dir.path().join(format!("{stem}.key"));
        std::fs::write(&crt, &c.chain).expect("write");
        std::fs::write(&key, &*c.key).expect("write");
        (crt.display().to_string(), key.display().to_string())
    };
    let (good_crt, good_key) = write_client(&clients, "good");
    let (bad_crt, bad_key) = write_client(&stranger, "bad");
    // (mode, no certificate accepted, another CA's certificate accepted)
    for (mode, anonymous_ok, stranger_ok) in [
        ("RequireAndVerifyClientCert", false, false),
        ("VerifyClientCertIfGiven", true, false),
        ("RequireAnyClientCert", false, true),
        ("RequestClientCert", true, true),
    ] {
        let opt = proxy::config::TlsOptions {
            client_auth: Some(proxy::config::ClientAuth {
                mode: mode.into(),
                ca_pems: vec![clients.cert.pem().into_bytes()],
            }),
            ..Default::default()
        };
        let cfg = with_option(
            a,
            vec![ca.issue(&["app.test", "strict.test"], "apps/app")],
            "Host(`strict.test`)",
            opt,
        );
        assert_eq!(p.apply(&cfg), vec![]);
        let secure = p.local_addr("websecure").expect("websecure");
        let (ok, out) = https(
            secure,
            "strict.test",
            &ca_path,
            &["--cert", &good_crt, "--key", &good_key],
        )
        .await;
        assert!(ok, "{mode}: {out}");
        let (ok, _) = https(
            secure,
            "strict.test",
            &ca_path,
            &["--cert", &bad_crt, "--key", &bad_key],
        )
        .await;
        assert_eq!(ok, stranger_ok, "{mode}: a certificate from another CA");
        let (ok, _) = https(secure, "strict.test", &ca_path, &[]).await;
        assert_eq!(ok, anonymous_ok, "{mode}: no certificate");
        // Hosts without the option ask for no certificate.
        assert!(https(secure, "app.test", &ca_path, &[]).await.0, "{mode}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_transports_reach_tls_backends() {
    use proxy::config::{LoadBalancerConfig, ServerConfig, ServersTransportConfig, ServiceConfig};
    let backend_ca = Ca::new("backend CA");
    let client_ca = Ca::new("proxy client CA");
    let leaf = backend_ca.issue(&["backend.internal"], "backend");
    let b = backend::start_tls("tls-backend", &leaf.chain, &leaf.key, None).await;
    let mtls = backend::start_tls(
        "mtls-backend",
        &leaf.chain,
        &leaf.key,
        Some(client_ca.cert.pem().as_bytes()),
    )
    .await;
    let p = crate::start_proxy().await;
    let web = p.local_addr("web").expect("web");
    let lb = |addr: SocketAddr, transport: &str| {
        ServiceConfig::LoadBalancer(LoadBalancerConfig {
            servers: vec![ServerConfig {
                url: format!("https://{addr}"),
                weight: 1,
            }],
            servers_transport: Some(transport.to_string()),
            ..Default::default()
        })
    };
    let mut cfg = DynamicConfig::default();
    let routes = [
        ("verified", b, "pinned"),
        ("untrusted", b, "default"),
        ("insecure", b, "insecure"),
        ("wrong-name", b, "wrong-name"),
        ("timeout", b, "impatient"),
        ("mtls", mtls, "with-client-cert"),
        ("mtls-anonymous", mtls, "pinned"),
    ];
    for (name, addr, transport) in routes {
        cfg.routers
            .insert(name.into(), router(&format!("PathPrefix(`/{name}`)"), name));
        cfg.services.insert(name.into(), lb(addr, transport));
    }
    let pinned = ServersTransportConfig {
        server_name: Some("backend.internal".into()),
        root_cas: vec![backend_ca.cert.pem().into_bytes()],
        ..Default::default()
    };
    cfg.servers_transports
        .insert("pinned".into(), pinned.clone());
    cfg.servers_transports.insert(
        "insecure".into(),
        ServersTransportConfig {
            insecure_skip_verify: true,
            ..Default::default()
        },
    );
    cfg.servers_transports.insert(
        "wrong-name".into(),
        ServersTransportConfig {
            server_name: Some("other.internal".into()),
            ..pinned.clone()
        },
    );
    cfg.servers_transports.insert(
        "impatient".into(),
        ServersTransportConfig {
            response_header_timeout: Some(std::time::Duration::from_millis(200)),
            ..pinned.clone()
        },
    );
    cfg.servers_transports.insert(
        "with-client-cert".into(),
        ServersTransportConfig {
            client_certificate: Some(client_ca.issue(&["proxy.internal"], "client")),
            ..pinned.clone()
        },
    );
    assert_eq!(p.apply(&cfg), vec![]);
    let (code, body) = crate::get(web, "x", "/verified").await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("backend=tls-backend") && body.contains("version=HTTP/2.0"),
        "{body}"
    );
    assert_eq!(crate::get(web, "x", "/untrusted").await.0, 502);
    assert_eq!(crate::get(web, "x", "/insecure").await.0, 200);
    assert_eq!(crate::get(web, "x", "/wrong-name").await.0, 502);
    assert_eq!(crate::get(web, "x", "/timeout/slow?ms=1000").await.0, 504);
    assert_eq!(crate::get(web, "x", "/timeout").await.0, 200);
    let (code, body) = crate::get(web, "x", "/mtls").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(crate::get(web, "x", "/mtls-anonymous").await.0, 502);
    // A transport that cannot be built is reported and its services skipped.
    cfg.servers_transports.insert(
        "pinned".into(),
        ServersTransportConfig {
            root_cas: vec![
                b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n".to_vec(),
            ],
            ..Default::default()
        },
    );
    let diags = p.apply(&cfg);
    assert!(
        diags
            .iter()
            .any(|d| d.kind == "serversTransport" && d.name == "pinned"),
        "{diags:?}"
    );
    assert!(
        diags
            .iter()
            .any(|d| d.kind == "service" && d.name == "verified"),
        "{diags:?}"
    );
    assert_eq!(crate::get(web, "x", "/insecure").await.0, 200);
}

/// One `openssl s_client` handshake with `host`, resuming the session in `out` when
/// `resume`, and saving the new one there; whether the session was reused.
async fn handshake(addr: SocketAddr, host: &str, out: &std::path::Path, resume: bool) -> bool {
    let out_path = out;
    let (host, out) = (host.to_string(), out.to_path_buf());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &addr.to_string(),
                "-servername",
                &host,
            ])
            // Sessions are single-use (TLS 1.3): each handshake keeps the next one.
            .args(if resume { &["-sess_in"][..] } else { &[][..] })
            .args(if resume {
                vec![out.as_os_str()]
            } else {
                vec![]
            })
            .arg("-sess_out")
            .arg(&out)
            // A whole request and its answer: the session tickets, sent after the handshake,
            // arrive before the connection ends.
            .arg("-ign_eof")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin
                    .take()
                    .expect("stdin")
                    .write_all(format!("GET / HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())?;
                c.wait_with_output()
            })
    })
    .await
    .expect("join")
    .expect("openssl s_client");
    let next = out_path.with_extension("next");
    if next.exists() {
        std::fs::rename(&next, out_path).expect("keep the session");
    }
    let text = String::from_utf8_lossy(&output.stdout);
    text.contains("Reused, TLSv1.")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_resume_across_a_reload_that_keeps_the_tls_option() {
    let a = backend::start("a").await;
    let p = crate::start_proxy().await;
    let ca = Ca::new("server CA");
    let certs = vec![ca.issue(&["app.test", "strict.test"], "apps/app")];
    let opt = proxy::config::TlsOptions {
        alpn_protocols: vec!["http/1.1".into()],
        ..Default::default()
    };
    let cfg = with_option(a, certs.clone(), "Host(`strict.test`)", opt.clone());
    assert_eq!(p.apply(&cfg), vec![]);
    let secure = p.local_addr("websecure").expect("websecure");
    let dir = tempfile::tempdir().expect("tempdir");
    let session = dir.path().join("session.pem");
    assert!(!handshake(secure, "strict.test", &session, false).await);
    // Resumption works at all.
    assert!(handshake(secure, "strict.test", &session, true).await);
    // A reload that changes routers but not the option keeps the session cache.
    let mut changed = cfg.clone();
    changed
        .routers
        .insert("extra".into(), router("Host(`extra.test`)", "s"));
    assert_eq!(p.apply(&changed), vec![]);
    assert!(
        handshake(secure, "strict.test", &session, true).await,
        "session lost by a reload that kept the option"
    );
    // A changed option is a new configuration: nothing to resume.
    let other = proxy::config::TlsOptions {
        alpn_protocols: vec!["h2".into(), "http/1.1".into()],
        ..opt
    };
    assert_eq!(
        p.apply(&with_option(a, certs, "Host(`strict.test`)", other)),
        vec![]
    );
    assert!(!handshake(secure, "strict.test", &session, true).await);
}
