//! Routing, headers, middlewares, services, upgrades, strict parsing and reconfiguration.

use std::time::Duration;

use proxy::config::{MiddlewareConfig, ServiceConfig, WeightedService};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{backend, curl, get, router, service, simple, start_proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_path_and_priority() {
    let a = backend::start("a").await;
    let b = backend::start("b").await;
    let c = backend::start("c").await;
    let p = start_proxy().await;
    let mut cfg = simple("Host(`app.test`)", a);
    cfg.routers.insert(
        "api".into(),
        router("Host(`app.test`) && PathPrefix(`/api`)", "b"),
    );
    cfg.services.insert("b".into(), service(&[b]));
    let mut low = router("PathPrefix(`/`)", "c");
    low.priority = Some(1);
    cfg.routers.insert("catchall".into(), low);
    let mut wild = router("Host(`*.wild.test`) && Method(`GET`)", "c");
    wild.priority = Some(100_000);
    cfg.routers.insert("wild".into(), wild);
    cfg.services.insert("c".into(), service(&[c]));
    assert_eq!(p.apply(&cfg), vec![]);
    let web = p.local_addr("web").expect("web");

    let (code, body) = get(web, "app.test", "/").await;
    assert_eq!(code, 200);
    assert!(body.contains("backend=a"), "{body}");
    let (_, body) = get(web, "APP.test:8080", "/api/v1").await;
    assert!(body.contains("backend=b"), "{body}");
    let (_, body) = get(web, "other.test", "/x").await;
    assert!(body.contains("backend=c"), "{body}");
    let (_, body) = get(web, "x.wild.test", "/api").await;
    assert!(body.contains("backend=c"), "{body}");

    // Nothing on the TLS entry point: these routers have no TLS section.
    let secure = p.local_addr("websecure").expect("websecure");
    let out = curl(&[
        "-k",
        "-w",
        "%{http_code}",
        "-o",
        "/dev/null",
        &format!("https://{secure}/"),
    ])
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");

    // An empty configuration answers 404 like Traefik.
    p.apply(&Default::default());
    let (code, body) = get(web, "app.test", "/").await;
    assert_eq!((code, body.as_str()), (404, "404 page not found\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_and_hop_by_hop_headers() {
    let a = backend::start("a").await;
    let p = start_proxy().await;
    p.apply(&simple("Host(`app.test`)", a));
    let web = p.local_addr("web").expect("web");
    let out = curl(&[
        "-i",
        "-H",
        "Host: app.test",
        "-H",
        "X-Forwarded-For: 203.0.113.9",
        "-H",
        "X-Forwarded-Host: evil.test",
        "-H",
        "Connection: keep-alive, X-Private",
        "-H",
        "X-Private: secret",
        "-H",
        "Keep-Alive: timeout=5",
        &format!("http://{web}/p?q=1"),
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    // Untrusted client: its X-Forwarded-* are replaced.
    assert!(text.contains("x-forwarded-for=127.0.0.1\n"), "{text}");
    assert!(text.contains("x-forwarded-host=app.test\n"), "{text}");
    assert!(text.contains("x-forwarded-proto=http\n"), "{text}");
    assert!(
        text.contains(&format!("x-forwarded-port={}\n", web.port())),
        "{text}"
    );
    assert!(text.contains("x-real-ip=127.0.0.1\n"), "{text}");
    // Each once: the client's are gone, not kept beside edgeplane's.
    for name in ["x-forwarded-for=", "x-forwarded-host=", "x-real-ip="] {
        assert_eq!(text.matches(name).count(), 1, "{name} {text}");
    }
    assert!(text.contains("host=app.test\n"), "{text}");
    assert!(text.contains("path=/p?q=1\n"), "{text}");
    assert!(!text.contains("x-private"), "{text}");
    assert!(!text.contains("keep-alive=timeout"), "{text}");
    // The backend's hop-by-hop Keep-Alive header is not passed on either.
    assert!(!text.contains("keep-alive: timeout"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_sources_keep_their_forwarded_headers() {
    let a = backend::start("a").await;
    let any = "127.0.0.1:0".parse().expect("literal");
    let mut web = proxy::EntryPointConfig::new("web", any);
    web.trusted_ips = vec![model::net::IpNet::parse("127.0.0.0/8").expect("literal")];
    let p = proxy::Proxy::start(vec![web]).await.expect("start");
    p.apply(&simple("PathPrefix(`/`)", a));
    let addr = p.local_addr("web").expect("web");
    let out = curl(&[
        "-H",
        "X-Forwarded-For: 203.0.113.9",
        "-H",
        "X-Forwarded-Proto: https",
        &format!("http://{addr}/"),
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        text.contains("x-forwarded-for=203.0.113.9, 127.0.0.1\n"),
        "{text}"
    );
    assert!(text.contains("x-forwarded-proto=https\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn middlewares_strip_add_redirect_and_headers() {
    let a = backend::start("a").await;
    let p = start_proxy().await;
    let mut cfg = simple("PathPrefix(`/api`)", a);
    cfg.middlewares.insert(
        "strip".into(),
        MiddlewareConfig::StripPrefix {
            prefixes: vec!["/api".into(), "/api/v1".into()],
        },
    );
    cfg.middlewares.insert(
        "add".into(),
        MiddlewareConfig::AddPrefix {
            prefix: "/inner".into(),
        },
    );
    cfg.middlewares.insert(
        "hdr".into(),
        MiddlewareConfig::Headers {
            request: vec![("X-Env".into(), "canary".into())],
            response: vec![("X-Served-By".into(), "edgeplane".into())],
        },
    );
    cfg.middlewares.insert(
        "to-https".into(),
        MiddlewareConfig::RedirectScheme {
            scheme: "https".into(),
            port: Some("8443".into()),
            permanent: true,
        },
    );
    if let Some(r) = cfg.routers.get_mut("r") {
        r.middlewares = vec!["strip".into(), "add".into(), "hdr".into()];
    }
    let mut redirected = crate::router("PathPrefix(`/secure`)", "s");
    redirected.middlewares = vec!["to-https".into()];
    cfg.routers.insert("redirected".into(), redirected);
    assert_eq!(p.apply(&cfg), vec![]);
    let web = p.local_addr("web").expect("web");

    let out = curl(&["-i", &format!("http://{web}/api/v1/users?x=1")]).await;
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(text.contains("path=/inner/users?x=1\n"), "{text}");
    assert!(text.contains("x-forwarded-prefix=/api/v1\n"), "{text}");
    assert!(text.contains("x-env=canary\n"), "{text}");
    assert!(text.contains("x-served-by: edgeplane"), "{text}");

    let out = curl(&[
        "-i",
        "-H",
        "Host: app.test",
        &format!("http://{web}/secure/x?y=2"),
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 301"), "{text}");
    assert!(
        text.contains("location: https://app.test:8443/secure/x?y=2"),
        "{text}"
    );
    let out = curl(&[
        "-i",
        "-X",
        "POST",
        "-H",
        "Host: app.test",
        &format!("http://{web}/secure"),
    ])
    .await;
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("HTTP/1.1 308"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_point_redirects_to_https() {
    let any = "127.0.0.1:0".parse().expect("literal");
    let mut web = proxy::EntryPointConfig::new("web", any);
    web.redirect_to = Some(proxy::Redirect {
        scheme: "https".into(),
        port: 443,
        permanent: true,
    });
    let p = proxy::Proxy::start(vec![web]).await.expect("start");
    let addr = p.local_addr("web").expect("web");
    let out = curl(&["-i", "-H", "Host: app.test", &format!("http://{addr}/a?b")]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 301"), "{text}");
    assert!(text.contains("location: https://app.test/a?b"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_canary_and_load_balancing() {
    let v1a = backend::start("v1a").await;
    let v1b = backend::start("v1b").await;
    let v2 = backend::start("v2").await;
    let p = start_proxy().await;
    let mut cfg = proxy::config::DynamicConfig::default();
    cfg.routers
        .insert("r".into(), router("PathPrefix(`/`)", "canary"));
    cfg.services.insert("v1".into(), service(&[v1a, v1b]));
    cfg.services.insert("v2".into(), service(&[v2]));
    cfg.services.insert(
        "canary".into(),
        ServiceConfig::Weighted(vec![
            WeightedService {
                service: "v1".into(),
                weight: 3,
            },
            WeightedService {
                service: "v2".into(),
                weight: 1,
            },
        ]),
    );
    assert_eq!(p.apply(&cfg), vec![]);
    let web = p.local_addr("web").expect("web");
    let mut counts = std::collections::BTreeMap::new();
    // One curl process, 200 requests on keep-alive connections.
    let url = format!("http://{web}/");
    let urls: Vec<&str> = (0..200).map(|_| url.as_str()).collect();
    let mut args = vec!["-H", "Host: x"];
    args.extend(urls);
    let out = curl(&args).await;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(name) = line.strip_prefix("backend=") {
            *counts.entry(name.to_string()).or_insert(0) += 1;
        }
    }
    assert_eq!(counts.get("v2"), Some(&50), "{counts:?}");
    assert_eq!(counts.get("v1a"), Some(&75), "{counts:?}");
    assert_eq!(counts.get("v1b"), Some(&75), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_resource_is_skipped_and_the_rest_keeps_serving() {
    let a = backend::start("a").await;
    let p = start_proxy().await;
    let web = p.local_addr("web").expect("web");
    let mut cfg = simple("Host(`good.test`)", a);
    cfg.routers
        .insert("bad-rule".into(), router("Host(`x`) &&", "s"));
    cfg.routers
        .insert("bad-service".into(), router("Host(`y.test`)", "nope"));
    cfg.routers.insert("bad-mw".into(), {
        let mut r = router("Host(`z.test`)", "s");
        r.middlewares = vec!["missing".into()];
        r
    });
    cfg.services.insert("bad-url".into(), service(&[]));
    let diags = p.apply(&cfg);
    let text: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    assert_eq!(diags.len(), 4, "{text:?}");
    assert!(
        text.iter()
            .any(|d| d.contains("router \"bad-rule\"") && d.contains("at position 12")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|d| d.contains("service \"nope\" does not exist")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|d| d.contains("middleware \"missing\"")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|d| d.contains("bad-url") && d.contains("no servers")),
        "{text:?}"
    );
    let (code, body) = get(web, "good.test", "/").await;
    assert_eq!(code, 200, "{body}");
    let status = p.runtime();
    let bad = status
        .routers()
        .into_iter()
        .find(|r| r.name == "bad-rule")
        .expect("listed");
    assert!(bad.error.is_some());
    let good = status
        .routers()
        .into_iter()
        .find(|r| r.name == "r")
        .expect("listed");
    assert_eq!(good.error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_servers_give_502() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let p = start_proxy().await;
    p.apply(&simple("PathPrefix(`/`)", dead));
    let (code, _) = get(p.local_addr("web").expect("web"), "x", "/").await;
    assert_eq!(code, 502);
}

/// Sends raw bytes and returns what came back before the connection closed or 2 s passed.
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_smuggling_and_bad_heads_are_refused() {
    let a = backend::start("a").await;
    let p = start_proxy().await;
    p.apply(&simple("PathPrefix(`/`)", a));
    let web = p.local_addr("web").expect("web");
    // Both framings: Transfer-Encoding wins and Content-Length is dropped before forwarding
    // (RFC 9112 section 6.3), so the backend frames the message exactly as the proxy did; the
    // connection is then closed, so bytes hidden after the chunked body are never parsed as
    // a request by anyone.
    let both = raw(web, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(both.starts_with("HTTP/1.1 200"), "{both}");
    assert!(both.contains("connection: close\r\n"), "{both}");
    assert!(both.contains("body-length=0\n"), "{both}");
    assert!(!both.contains("content-length=40"), "{both}");
    assert!(!both.contains("/second"), "{both}");
    // A Transfer-Encoding the proxy cannot frame by, or one in HTTP/1.0, is refused.
    let gzip = raw(
        web,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\nabc",
    )
    .await;
    assert!(
        gzip.starts_with("HTTP/1.1 400") || gzip.is_empty(),
        "{gzip}"
    );
    let fold = raw(
        web,
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(fold.starts_with("HTTP/1.1 400"), "{fold}");
    let two_lengths = raw(web, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nab").await;
    assert!(two_lengths.starts_with("HTTP/1.1 400"), "{two_lengths}");
    for length in ["+2", "1, 2", "0x2", "2 2", "-2"] {
        let request = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\nConnection: close\r\n\r\nab"
        );
        let answer = raw(web, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{length}: {answer}");
    }
    let bad_byte = raw(
        web,
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(bad_byte.starts_with("HTTP/1.1 400"), "{bad_byte}");
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let huge = raw(web, huge.as_bytes()).await;
    assert!(
        huge.starts_with("HTTP/1.1 431") || huge.is_empty(),
        "{huge}"
    );
    let two_hosts = raw(
        web,
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(two_hosts.starts_with("HTTP/1.1 400"), "{two_hosts}");
    // And the proxy still serves.
    let ok = raw(
        web,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgraded_connections_are_spliced() {
    let a = backend::start("a").await;
    let p = start_proxy().await;
    p.apply(&simple("PathPrefix(`/`)", a));
    let web = p.local_addr("web").expect("web");
    let mut s = tokio::net::TcpStream::connect(web).await.expect("connect");
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.expect("read");
    let head = String::from_utf8_lossy(&buf[..n]).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    for msg in [&b"hello"[..], b"world, through the proxy"] {
        s.write_all(msg).await.expect("write");
        let n = s.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], msg);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_both_ways_and_h2c_works() {
    let a = backend::start("a").await;
    let p = start_proxy().await;
    p.apply(&simple("PathPrefix(`/`)", a));
    let web = p.local_addr("web").expect("web");
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big");
    let data: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&big, &data).expect("write");
    let back = dir.path().join("back");
    let out = curl(&[
        "--data-binary",
        &format!("@{}", big.display()),
        "-o",
        &back.display().to_string(),
        "-w",
        "%{http_code}",
        &format!("http://{web}/echo"),
    ])
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    assert!(
        std::fs::read(&back).expect("read") == data,
        "echoed body differs"
    );

    let out = curl(&[
        "--http2-prior-knowledge",
        "-w",
        "\n%{http_version}",
        &format!("http://{web}/h2c"),
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n2"), "{text}");
    assert!(text.contains("backend=a"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_requests_finish() {
    let a = backend::start("a").await;
    let p = start_proxy().await;
    p.apply(&simple("PathPrefix(`/`)", a));
    let web = p.local_addr("web").expect("web");
    let slow = tokio::spawn(async move { get(web, "x", "/slow?ms=800").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    p.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let (code, body) = slow.await.expect("join");
    assert_eq!(code, 200, "{body}");
    // Nothing listens any more.
    assert!(tokio::net::TcpStream::connect(web).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_use_traefik_families() {
    let a = backend::start("a").await;
    let p = start_proxy().await;
    p.apply(&simple("PathPrefix(`/`)", a));
    let web = p.local_addr("web").expect("web");
    get(web, "x", "/").await;
    get(web, "x", "/").await;
    // Methods outside RFC 9110's set share one label, so clients cannot add series at will.
    for method in ["FOO1", "FOO2"] {
        let url = format!("http://{web}/");
        curl(&["-s", "-X", method, "-H", "Host: x", &url]).await;
    }
    let m = p.metrics().render();
    assert!(m.contains("traefik_service_requests_total{code=\"200\",method=\"OTHER\",protocol=\"http/1.1\",service=\"s\"} 2"), "{m}");
    assert!(!m.contains("FOO1"), "{m}");
    assert!(m.contains("traefik_router_requests_total{code=\"200\",method=\"GET\",protocol=\"http/1.1\",router=\"r\",service=\"s\"} 2"), "{m}");
    assert!(m.contains("traefik_service_requests_total{code=\"200\",method=\"GET\",protocol=\"http/1.1\",service=\"s\"} 2"), "{m}");
    assert!(
        m.contains("traefik_entrypoint_requests_total{code=\"200\",entrypoint=\"web\""),
        "{m}"
    );
    assert!(m.contains("traefik_config_reloads_total 1"), "{m}");
    assert!(
        m.contains("traefik_router_request_duration_seconds_count"),
        "{m}"
    );
}

/// Which backend answered each of `n` requests (one curl, keep-alive), optionally with a
/// cookie jar.
async fn spread(web: std::net::SocketAddr, n: usize, jar: Option<&str>) -> Vec<String> {
    let url = format!("http://{web}/");
    let mut args: Vec<String> = vec!["-H".into(), "Host: x".into()];
    if let Some(j) = jar {
        args.extend(["-b".into(), j.into(), "-c".into(), j.into()]);
    }
    let mut out = Vec::new();
    for _ in 0..n {
        let mut a = args.clone();
        a.push(url.clone());
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = curl(&refs).await;
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        out.push(
            text.lines()
                .find_map(|l| l.strip_prefix("backend="))
                .unwrap_or(if text.contains("502") { "502" } else { "?" })
                .to_string(),
        );
    }
    out
}

fn lb(backends: &[std::net::SocketAddr]) -> proxy::config::LoadBalancerConfig {
    match service(backends) {
        ServiceConfig::LoadBalancer(lb) => lb,
        _ => unreachable!("service() builds a load balancer"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_checks_take_failing_servers_out_and_back() {
    let (a, a_ok) = backend::start_flagged("a").await;
    let b = backend::start("b").await;
    let p = start_proxy().await;
    let mut cfg = simple("PathPrefix(`/`)", a);
    let mut l = lb(&[a, b]);
    l.health_check = Some(proxy::config::HealthCheck {
        path: "/health".into(),
        interval: Duration::from_millis(100),
        timeout: Duration::from_secs(1),
        hostname: None,
        port: None,
        status: None,
    });
    cfg.services
        .insert("s".into(), ServiceConfig::LoadBalancer(l));
    assert_eq!(p.apply(&cfg), vec![]);
    let web = p.local_addr("web").expect("web");
    let seen = spread(web, 6, None).await;
    assert!(
        seen.contains(&"a".to_string()) && seen.contains(&"b".to_string()),
        "{seen:?}"
    );
    a_ok.store(false, std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(spread(web, 6, None).await, vec!["b"; 6]);
    // A reload that keeps the service keeps its health state and its probe.
    assert_eq!(p.apply(&cfg), vec![]);
    assert_eq!(spread(web, 4, None).await, vec!["b"; 4]);
    a_ok.store(true, std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(spread(web, 6, None).await.contains(&"a".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_connections_eject_a_server_for_a_while() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let b = backend::start("b").await;
    let p = start_proxy().await;
    let mut cfg = simple("PathPrefix(`/`)", b);
    let mut l = lb(&[dead, b]);
    l.passive = Some(proxy::config::PassiveHealthCheck {
        max_failures: 1,
        cooldown: Duration::from_millis(600),
    });
    cfg.services
        .insert("s".into(), ServiceConfig::LoadBalancer(l));
    p.apply(&cfg);
    let web = p.local_addr("web").expect("web");
    let first = spread(web, 8, None).await;
    assert_eq!(first.iter().filter(|s| *s == "502").count(), 1, "{first:?}");
    assert_eq!(first.iter().filter(|s| *s == "b").count(), 7, "{first:?}");
    // After the cooldown the server is tried again (and ejected again).
    tokio::time::sleep(Duration::from_millis(700)).await;
    let again = spread(web, 4, None).await;
    assert_eq!(again.iter().filter(|s| *s == "502").count(), 1, "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_cookies_pin_a_client_to_its_server() {
    let a = backend::start("a").await;
    let b = backend::start("b").await;
    let p = start_proxy().await;
    let mut cfg = simple("PathPrefix(`/`)", a);
    let mut l = lb(&[a, b]);
    l.sticky = Some(proxy::config::StickyCookie {
        name: "lb".into(),
        secure: false,
        http_only: true,
        same_site: "Lax".into(),
        max_age: 60,
    });
    cfg.services
        .insert("s".into(), ServiceConfig::LoadBalancer(l));
    p.apply(&cfg);
    let web = p.local_addr("web").expect("web");
    let out = curl(&["-i", "-H", "Host: x", &format!("http://{web}/")]).await;
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(text.contains("set-cookie: lb="), "{text}");
    assert!(
        text.contains("max-age=60; httponly; samesite=lax"),
        "{text}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let jar = dir.path().join("jar").display().to_string();
    let seen = spread(web, 8, Some(&jar)).await;
    assert!(seen.iter().all(|s| *s == seen[0]), "{seen:?}");
    // Without the cookie, requests spread again.
    let seen = spread(web, 4, None).await;
    assert!(
        seen.contains(&"a".to_string()) && seen.contains(&"b".to_string()),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_from_trusted_sources() {
    let a = backend::start("a").await;
    let any = "127.0.0.1:0".parse().expect("literal");
    let mut trusting = proxy::EntryPointConfig::new("web", any);
    trusting.proxy_protocol_trusted =
        vec![model::net::IpNet::parse("127.0.0.0/8").expect("literal")];
    let plain = proxy::EntryPointConfig::new("other", any);
    let p = proxy::Proxy::start(vec![trusting, plain])
        .await
        .expect("start");
    p.apply(&simple("PathPrefix(`/`)", a));
    let web = p.local_addr("web").expect("web");
    let v1 = raw(web, b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 80\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(v1.contains("x-forwarded-for=203.0.113.7\n"), "{v1}");
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend([
        0x21, 0x11, 0, 12, 198, 51, 100, 9, 10, 0, 0, 1, 0x1f, 0x90, 0, 80,
    ]);
    v2.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let v2 = raw(web, &v2).await;
    assert!(v2.contains("x-real-ip=198.51.100.9\n"), "{v2}");
    // Without a header a trusted source is served as it is.
    let none = raw(
        web,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(none.contains("x-forwarded-for=127.0.0.1\n"), "{none}");
    // A broken header closes the connection.
    let broken = raw(web, b"PROXY TCP4 nonsense\r\nGET / HTTP/1.1\r\n\r\n").await;
    assert!(broken.is_empty(), "{broken}");
    // An entry point that trusts nobody does not read the header: it is a bad request.
    let other = p.local_addr("other").expect("other");
    let spoof = raw(
        other,
        b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 80\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(spoof.starts_with("HTTP/1.1 400"), "{spoof}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_logs_in_common_and_json_formats() {
    let a = backend::start("a").await;
    let dir = tempfile::tempdir().expect("tempdir");
    for (format, file) in [
        (proxy::access_log::AccessLogFormat::Common, "access.log"),
        (proxy::access_log::AccessLogFormat::Json, "access.json"),
    ] {
        let path = dir.path().join(file);
        let any = "127.0.0.1:0".parse().expect("literal");
        let p = proxy::Proxy::start_with(
            vec![proxy::EntryPointConfig::new("web", any)],
            proxy::ProxyOptions {
                access_log: Some(proxy::access_log::AccessLogConfig {
                    path: Some(path.clone()),
                    format,
                }),
                ..Default::default()
            },
        )
        .await
        .expect("start");
        p.apply(&simple("PathPrefix(`/app`)", a));
        let web = p.local_addr("web").expect("web");
        get(web, "app.test", "/app/x?y=1").await;
        get(web, "app.test", "/missing").await;
        let mut text = String::new();
        for _ in 0..50 {
            text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.lines().count() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        match format {
            proxy::access_log::AccessLogFormat::Common => {
                assert!(lines[0].starts_with("127.0.0.1 - - ["), "{text}");
                assert!(
                    lines[0].contains("] \"GET /app/x?y=1 HTTP/1.1\" 200 "),
                    "{text}"
                );
                assert!(
                    lines[0].contains(&format!(" 1 \"r\" \"http://{a}\" ")),
                    "{text}"
                );
                assert!(
                    lines[1].contains("\"GET /missing HTTP/1.1\" 404 19 "),
                    "{text}"
                );
            }
            proxy::access_log::AccessLogFormat::Json => {
                assert!(
                    lines[0].contains("\"RequestPath\":\"/app/x?y=1\""),
                    "{text}"
                );
                assert!(lines[0].contains("\"DownstreamStatus\":200"), "{text}");
                assert!(
                    lines[0].contains("\"RouterName\":\"r\",\"ServiceName\":\"s\""),
                    "{text}"
                );
                assert!(lines[1].contains("\"DownstreamStatus\":404"), "{text}");
                assert!(lines[1].contains("\"RouterName\":null"), "{text}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_services_use_the_fallback_while_the_main_one_is_down() {
    let (main, main_ok) = backend::start_flagged("main").await;
    let spare = backend::start("spare").await;
    let p = start_proxy().await;
    let mut cfg = proxy::config::DynamicConfig::default();
    cfg.routers
        .insert("r".into(), router("PathPrefix(`/`)", "ha"));
    let mut l = lb(&[main]);
    l.health_check = Some(proxy::config::HealthCheck {
        path: "/health".into(),
        interval: Duration::from_millis(100),
        timeout: Duration::from_secs(1),
        hostname: None,
        port: None,
        status: None,
    });
    cfg.services
        .insert("main".into(), ServiceConfig::LoadBalancer(l));
    cfg.services.insert("spare".into(), service(&[spare]));
    cfg.services.insert(
        "ha".into(),
        ServiceConfig::Failover {
            service: "main".into(),
            fallback: "spare".into(),
        },
    );
    assert_eq!(p.apply(&cfg), vec![]);
    let web = p.local_addr("web").expect("web");
    assert_eq!(spread(web, 3, None).await, vec!["main"; 3]);
    main_ok.store(false, std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(spread(web, 3, None).await, vec!["spare"; 3]);
    main_ok.store(true, std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(spread(web, 3, None).await, vec!["main"; 3]);
    // A failover naming a missing service is reported, not served.
    cfg.services.insert(
        "ha".into(),
        ServiceConfig::Failover {
            service: "main".into(),
            fallback: "nope".into(),
        },
    );
    let diags = p.apply(&cfg);
    assert!(
        diags.iter().any(|d| d.kind == "service" && d.name == "ha"),
        "{diags:?}"
    );
}

/// A backend that records (method, path, body) of every request and answers 200.
async fn recorder() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<(String, String, Vec<u8>)>>>,
) {
    use http_body_util::BodyExt;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes().to_vec())
                                .unwrap_or_default();
                            log.lock().expect("lock").push((
                                parts.method.to_string(),
                                parts.uri.path().to_string(),
                                body,
                            ));
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(b"mirror\n")),
                            ))
                        }
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirroring_copies_a_share_of_requests_with_their_bodies() {
    let main = backend::start("main").await;
    let (all_addr, all) = recorder().await;
    let (some_addr, some) = recorder().await;
    let p = start_proxy().await;
    let mut cfg = simple("PathPrefix(`/`)", main);
    cfg.services.insert("all".into(), service(&[all_addr]));
    cfg.services.insert("some".into(), service(&[some_addr]));
    cfg.services.insert(
        "mirrored".into(),
        ServiceConfig::Mirroring(proxy::config::MirroringConfig {
            service: "s".into(),
            mirrors: vec![("all".into(), 100), ("some".into(), 25)],
            mirror_body: true,
            max_body_size: 1024,
        }),
    );
    cfg.routers
        .insert("r".into(), router("PathPrefix(`/`)", "mirrored"));
    assert_eq!(p.apply(&cfg), vec![]);
    let web = p.local_addr("web").expect("web");
    for i in 0..20 {
        let (code, body) = get(web, "app.test", &format!("/get/{i}")).await;
        assert_eq!(code, 200);
        assert!(body.contains("main"), "the main service answers: {body}");
    }
    // A body within the limit is copied; the main service gets it whole too.
    let out = curl(&[
        "-H",
        "Host: app.test",
        "--data-binary",
        "hello mirrors",
        &format!("http://{web}/post"),
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("main") && text.contains("13"), "{text}");
    // A body above the limit reaches the main service, not the mirrors.
    let big = "x".repeat(4000);
    let out = curl(&[
        "-H",
        "Host: app.test",
        "--data-binary",
        &big,
        &format!("http://{web}/big"),
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("main") && text.contains("4000"), "{text}");
    // The same without a length (chunked): read up to the limit, then streamed on whole.
    let out = curl(&[
        "-H",
        "Host: app.test",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &big,
        &format!("http://{web}/big-chunked"),
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("main") && text.contains("4000"), "{text}");
    // Mirrors are sent in the background: wait for them.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while all.lock().expect("lock").len() < 21 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let all = all.lock().expect("lock").clone();
    assert_eq!(
        all.len(),
        21,
        "every request but the oversized one: {all:?}"
    );
    assert!(all
        .iter()
        .any(|(m, p, b)| m == "POST" && p == "/post" && b == b"hello mirrors"));
    assert!(!all.iter().any(|(_, p, _)| p.starts_with("/big")));
    // 25% of the 23 requests that came through (the big ones count): 5 or 6.
    let some = some.lock().expect("lock").len();
    assert!((4..=6).contains(&some), "25% mirror got {some}");
}

/// A change is served from an overlay at once, and the same routing is served after the
/// background rebuild folds the overlay back into the tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_routers_are_served_layered_then_rebuilt_whole() {
    let a = backend::start("a").await;
    let b = backend::start("b").await;
    let p = start_proxy().await;
    let mut cfg = simple("PathPrefix(`/`)", a);
    cfg.services.insert("b".into(), service(&[b]));
    for i in 0..500 {
        cfg.routers
            .insert(format!("h{i}"), router(&format!("Host(`h{i}.test`)"), "s"));
    }
    assert_eq!(p.apply(&cfg), vec![]);
    assert!(!p.runtime().is_layered());
    let web = p.local_addr("web").expect("web");
    // Replace one router, remove another, add one with a higher priority.
    cfg.routers
        .insert("h7".into(), router("Host(`h7.test`) && Path(`/x`)", "b"));
    cfg.routers.remove("h8");
    let mut over = router("Host(`h9.test`) && PathPrefix(`/`)", "b");
    over.priority = Some(10_000);
    cfg.routers.insert("over".into(), over);
    assert_eq!(p.apply(&cfg), vec![]);
    assert!(p.runtime().is_layered(), "a three-router change is layered");
    let expect = [
        ("h7.test", "/x", "backend=b"),
        ("h7.test", "/y", "backend=a"),
        ("h8.test", "/", "backend=a"),
        ("h9.test", "/", "backend=b"),
        ("h10.test", "/", "backend=a"),
    ];
    for (host, path, want) in expect {
        let (code, body) = get(web, host, path).await;
        assert_eq!(code, 200, "{host}{path}");
        assert!(body.contains(want), "{host}{path}: {body}");
    }
    let deadline = std::time::Instant::now() + proxy::COMPACT_AFTER + Duration::from_secs(20);
    while p.runtime().is_layered() {
        assert!(
            std::time::Instant::now() < deadline,
            "the tables were not rebuilt whole"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (host, path, want) in expect {
        let (_, body) = get(web, host, path).await;
        assert!(
            body.contains(want),
            "after the rebuild, {host}{path}: {body}"
        );
    }
}
