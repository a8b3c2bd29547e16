//! Edgeplane's HTTP/2 side: large bodies both ways through the flow-control windows (curl,
//! h2c and TLS), a drain with streams in flight, and the protocol's edge cases driven by an
//! `h2`-package client (`h2_peer.py`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use proxy::config::RouterTls;

use crate::{backend, curl, simple, start_proxy};

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("EDGEPLANE_TEST_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/edgeplane/venv"))
        })
        .expect("HOME or EDGEPLANE_TEST_VENV is set");
    let python = venv.join("bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import h2"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "the h2 package is not installed in {}: run scripts/install-test-deps.sh",
        venv.display()
    );
    python
}

/// Runs one case of `h2_peer.py` against `addr`; its `key=value` lines.
async fn peer(case: &'static str, addr: SocketAddr) -> HashMap<String, String> {
    let python = venv_python();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/h2_peer.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args([case, "127.0.0.1", &addr.port().to_string()])
            .output()
            .expect("python runs")
    })
    .await
    .expect("join");
    assert!(
        out.status.success(),
        "{case}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn proxy_to_backend() -> (proxy::Proxy, SocketAddr, SocketAddr) {
    let a = backend::start("a").await;
    let p = start_proxy().await;
    let mut cfg = simple("PathPrefix(`/`)", a);
    if let Some(r) = cfg.routers.get_mut("r") {
        r.tls = Some(RouterTls::default());
    }
    // The same rule on the plain entry point (h2c).
    cfg.routers
        .insert("plain".into(), crate::router("PathPrefix(`/`)", "s"));
    p.apply(&cfg);
    let web = p.local_addr("web").expect("web");
    let secure = p.local_addr("websecure").expect("websecure");
    (p, web, secure)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_cross_the_windows_both_ways() {
    let (_p, web, secure) = proxy_to_backend().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big");
    // 12 MiB: many times both the stream and the connection window.
    let data: Vec<u8> = (0..12 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&big, &data).expect("write");
    for (flag, url) in [
        ("--http2-prior-knowledge", format!("http://{web}/echo")),
        (
            "--http2",
            format!("https://127.0.0.1:{}/echo", secure.port()),
        ),
    ] {
        let back = dir.path().join("back");
        let out = curl(&[
            flag,
            "-k",
            "--data-binary",
            &format!("@{}", big.display()),
            "-o",
            &back.display().to_string(),
            "-w",
            "%{http_code} %{http_version}",
            &url,
        ])
        .await;
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "200 2",
            "{url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            std::fs::read(&back).expect("read") == data,
            "{url}: echoed body differs"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_lets_http2_streams_finish() {
    let (p, web, _) = proxy_to_backend().await;
    let slow = tokio::spawn(async move {
        curl(&[
            "--http2-prior-knowledge",
            "-w",
            "\n%{http_code} %{http_version}",
            &format!("http://{web}/slow?ms=800"),
        ])
        .await
    });
    tokio::time::sleep(Duration::from_millis(250)).await;
    let started = std::time::Instant::now();
    p.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let out = slow.await.expect("join");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n200 2"), "{text}");
    assert!(tokio::net::TcpStream::connect(web).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_control_holds_a_small_client_window() {
    let (_p, web, _) = proxy_to_backend().await;
    let r = peer("small_window", web).await;
    assert_eq!(r["status"], "\"200\"", "{r:?}");
    assert_eq!(r["same"], "true", "{r:?}");
    let largest: usize = r["largest"].parse().expect("number");
    assert!(largest > 0 && largest <= 1000, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_over_the_limit_are_refused() {
    let (_p, web, _) = proxy_to_backend().await;
    let r = peer("stream_limit", web).await;
    assert_eq!(r["limit"], "250", "{r:?}");
    assert_eq!(r["ok"], "250", "{r:?}");
    assert_eq!(r["refused"], "10", "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_stream_leaves_the_connection_serving() {
    let (_p, web, _) = proxy_to_backend().await;
    let r = peer("cancel", web).await;
    assert_eq!(r["status"], "\"200\"", "{r:?}");
    assert_eq!(r["slow_answered"], "false", "{r:?}");
    let took: f64 = r["took"].parse().expect("number");
    assert!(took < 2.0, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_reset_and_cookies_joined() {
    let (_p, web, _) = proxy_to_backend().await;
    let r = peer("malformed", web).await;
    assert_eq!(r["resets"], "[1, 1, 1, 1, 1]", "{r:?}");
    assert_eq!(r["good"], "\"200\"", "{r:?}");
    assert_eq!(r["cookie"], "true", "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_blocks_span_continuation_frames_and_are_bounded() {
    let (_p, web, _) = proxy_to_backend().await;
    let r = peer("continuation", web).await;
    assert_eq!(r["big"], "\"200\"", "{r:?}");
    assert_eq!(r["big_seen"], "true", "{r:?}");
    assert_eq!(r["huge"], "\"431\"", "{r:?}");
    assert_eq!(r["after"], "\"200\"", "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_are_answered_and_bad_prefaces_refused() {
    let (_p, web, _) = proxy_to_backend().await;
    let r = peer("ping", web).await;
    assert_eq!(r["ack"], "\"edgeping\"", "{r:?}");
    let r = peer("bad_preface", web).await;
    // h2c is recognised by the preface's first line; the rest is checked by the HTTP/2 side.
    assert_eq!(r["goaway"], "1", "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_flood_ends_the_connection() {
    let (_p, web, _) = proxy_to_backend().await;
    let r = peer("reset_flood", web).await;
    assert_eq!(r["goaway"], "11", "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_responses_take_turns() {
    let (_p, web, _) = proxy_to_backend().await;
    let r = peer("turns", web).await;
    assert_eq!(r["status"], "[\"200\", \"200\"]", "{r:?}");
    assert_eq!(r["whole"], "[true, true]", "{r:?}");
    // Served one after the other, the second would have next to nothing when the first ends.
    let share: f64 = r["other_share"].parse().expect("number");
    assert!(share > 0.6, "{r:?}");
}

/// A real WebSocket echo server (the `websockets` package), killed when dropped.
struct WsServer(std::process::Child, SocketAddr);

impl WsServer {
    fn start() -> WsServer {
        use std::io::BufRead as _;
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/h2_peer.py");
        let mut child = Command::new(venv_python())
            .arg(script)
            .args(["ws_server", "127.0.0.1", "0"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python runs");
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = std::io::BufReader::new(out).read_line(&mut line);
        }
        let port: u16 = line
            .trim()
            .strip_prefix("port=")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the WebSocket server printed {line:?}"));
        WsServer(child, SocketAddr::from(([127, 0, 0, 1], port)))
    }
}

impl Drop for WsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_run_over_http2_streams() {
    let ws = WsServer::start();
    let p = start_proxy().await;
    p.apply(&simple("PathPrefix(`/`)", ws.1));
    let web = p.local_addr("web").expect("web");
    let r = peer("websocket", web).await;
    assert_eq!(r["enabled"], "true", "{r:?}");
    assert_eq!(r["status"], "\"200\"", "{r:?}");
    assert_eq!(r["echoed"], "true", "{r:?}");
    assert_eq!(r["close"], "1000", "{r:?}");
    assert_eq!(r["ended"], "true", "{r:?}");
    // The WebSocket server's own refusal, passed on as it is.
    assert_eq!(r["refused"], "\"400\"", "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_upgrade_offer_is_served_over_http1() {
    let (_p, web, _) = proxy_to_backend().await;
    // curl --http2 on http:// offers `Upgrade: h2c` with HTTP2-Settings.
    let out = curl(&[
        "--http2",
        "-s",
        "-w",
        "\n%{http_code} %{http_version}",
        &format!("http://{web}/offer"),
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n200 1.1"), "{text}");
    assert!(text.contains("path=/offer"), "{text}");
    // The offer is the client's and edgeplane's affair: the backend sees none of it.
    assert!(!text.contains("upgrade="), "{text}");
    assert!(!text.contains("http2-settings="), "{text}");
}
