//! Tests for the health checker against real sockets on loopback.

use super::*;
use model::health::ConfigText;
use tokio::net::TcpListener;

fn config(fields: ConfigText<'_>) -> HealthCheckConfig {
    HealthCheckConfig::from_text(&fields).expect("valid config")
}

/// A server that answers every connection with `response` and reports each request's head.
async fn http_server(response: &'static str) -> (SocketAddr, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let _ = tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .await;
                let _ = s.write_all(response.as_bytes()).await;
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn tcp_checks_pass_while_the_port_accepts() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    let c = config(ConfigText {
        check_type: Some("TCP"),
        ip_address: Some("127.0.0.1"),
        port: Some(&port),
        ..ConfigText::default()
    });
    let up = probe(&c).await;
    assert!(up.success, "{up:?}");
    assert_eq!(up.report, "Success: TCP connection established.");
    drop(listener);
    let down = probe(&c).await;
    assert!(!down.success && down.report.contains("refused"), "{down:?}");
}

#[tokio::test]
async fn http_checks_want_a_2xx_or_3xx_status() {
    let cases: &[(&str, bool, &str)] = &[
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            true,
            "Success: HTTP Status Code 200, OK",
        ),
        (
            "HTTP/1.0 301 Moved Permanently\r\nLocation: /x\r\n\r\n",
            true,
            "Success: HTTP Status Code 301, Moved Permanently",
        ),
        (
            "HTTP/1.1 503 Service Unavailable\r\n\r\n",
            false,
            "Failure: HTTP Status Code 503, Service Unavailable",
        ),
        (
            "SSH-2.0-OpenSSH_9.6\r\n",
            false,
            "Failure: the response is not HTTP",
        ),
        (
            "",
            false,
            "Failure: the connection closed before a response",
        ),
    ];
    for &(response, success, report) in cases {
        let (addr, mut requests) = http_server(response).await;
        let port = addr.port().to_string();
        let c = config(ConfigText {
            check_type: Some("HTTP"),
            ip_address: Some("127.0.0.1"),
            fqdn: Some("app.example.com"),
            port: Some(&port),
            resource_path: Some("/healthz?deep=1"),
            ..ConfigText::default()
        });
        let o = probe(&c).await;
        assert_eq!(
            (o.success, o.report.as_str()),
            (success, report),
            "{response:?}"
        );
        let head = requests.recv().await.expect("a request");
        assert!(
            head.starts_with("GET /healthz?deep=1 HTTP/1.1\r\n")
                && head.contains(&format!("\r\nHost: app.example.com:{port}\r\n")),
            "{head:?}"
        );
    }
}

#[tokio::test]
async fn http_checks_time_out_on_silent_endpoints() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            open.push(s);
        }
    });
    let c = config(ConfigText {
        check_type: Some("HTTP"),
        ip_address: Some("127.0.0.1"),
        port: Some(&port),
        ..ConfigText::default()
    });
    let o = probe(&c).await;
    assert!(!o.success && o.report.contains("Timeout"), "{o:?}");
}

#[tokio::test]
async fn https_checks_accept_any_certificate_and_send_sni() {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["app.example.com".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("self-signed");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    let (sni_tx, mut sni_rx) = mpsc::channel::<Option<String>>(4);
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let sni_tx = sni_tx.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().map(str::to_string);
                let _ = sni_tx.send(sni).await;
                let mut buf = vec![0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let _ = tls.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
                let _ = tls.shutdown().await;
            });
        }
    });
    for (sni, expect) in [("true", Some("app.example.com")), ("false", None)] {
        let c = config(ConfigText {
            check_type: Some("HTTPS"),
            ip_address: Some("127.0.0.1"),
            fqdn: Some("app.example.com"),
            port: Some(&port),
            enable_sni: Some(sni),
            ..ConfigText::default()
        });
        let o = probe(&c).await;
        assert_eq!(
            o.report, "Success: HTTP Status Code 204, No Content",
            "{o:?}"
        );
        assert_eq!(
            sni_rx.recv().await.expect("handshake"),
            expect.map(str::to_string)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_publishes_status_changes_to_the_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let open_port = listener.local_addr().expect("addr").port();
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let tcp = |port: &str| {
        config(ConfigText {
            check_type: Some("TCP"),
            ip_address: Some("127.0.0.1"),
            port: Some(port),
            failure_threshold: Some("1"),
            ..ConfigText::default()
        })
    };
    let (up, _) = store
        .create_health_check("up", &tcp(&open_port.to_string()))
        .expect("create");
    let (down, _) = store
        .create_health_check("down", &tcp(&closed_port.to_string()))
        .expect("create");
    let (stop_tx, stop_rx) = watch::channel(false);
    let prober = tokio::spawn(run(
        store.clone(),
        ProberConfig {
            interval: Some(Duration::from_millis(50)),
        },
        stop_rx,
    ));
    let wait_for = |up_healthy: bool, down_healthy: bool| {
        let store = store.clone();
        let (up, down) = (up.id.clone(), down.id.clone());
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let h = store.snapshot().health.clone();
                if h.is_healthy(Some(&up)) == up_healthy
                    && h.is_healthy(Some(&down)) == down_healthy
                {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "health never became {up_healthy}/{down_healthy}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for(true, false).await;
    let status = store.health_status(&down.id).expect("probed");
    assert!(status.last.is_some_and(|o| o.report.contains("refused")));
    drop(listener);
    wait_for(false, false).await;
    store.delete_health_check(&down.id).expect("delete");
    assert!(
        store.snapshot().health.is_healthy(Some(&down.id)),
        "a deleted check no longer counts"
    );
    let _ = stop_tx.send(true);
    prober.await.expect("prober stops");
}
