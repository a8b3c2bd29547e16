//! Load through the proxy: wrk while the configuration changes continuously (no failed
//! request, no socket error), and h2load over TLS with HTTP/2.

use std::process::Command;
use std::time::Duration;

use proxy::config::RouterTls;

use crate::{backend, require, router, service, simple};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfiguration_under_load_drops_nothing() {
    require("wrk");
    let a = backend::start("a").await;
    let b = backend::start("b").await;
    let p = std::sync::Arc::new(crate::start_proxy().await);
    p.apply(&simple("Host(`app.test`)", a));
    let web = p.local_addr("web").expect("web");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reloads = {
        let p = p.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Alternate backends, add and remove unrelated routers, change priorities.
                let mut cfg = simple("Host(`app.test`)", if n.is_multiple_of(2) { b } else { a });
                for i in 0..(n % 50) {
                    cfg.routers.insert(
                        format!("extra{i}"),
                        router(&format!("Host(`e{i}.test`)"), "s"),
                    );
                }
                if n.is_multiple_of(3) {
                    cfg.services.insert("s2".into(), service(&[a, b]));
                    cfg.routers.insert(
                        "r".into(),
                        router("Host(`app.test`) && PathPrefix(`/`)", "s2"),
                    );
                }
                assert_eq!(p.apply(&cfg), vec![]);
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            n
        })
    };
    let out = tokio::task::spawn_blocking(move || {
        Command::new("wrk")
            .args([
                "-t2",
                "-c32",
                "-d4s",
                "-H",
                "Host: app.test",
                &format!("http://{web}/"),
            ])
            .output()
            .expect("wrk runs")
    })
    .await
    .expect("join");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let n = reloads.await.expect("reloads");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(n > 100, "only {n} reloads");
    assert!(!text.contains("Socket errors"), "{text}");
    assert!(!text.contains("Non-2xx"), "{text}");
    let requests: u64 = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in"))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(requests > 1000, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2load_over_tls() {
    require("h2load");
    let a = backend::start("a").await;
    let p = crate::start_proxy().await;
    let mut cfg = simple("PathPrefix(`/`)", a);
    if let Some(r) = cfg.routers.get_mut("r") {
        r.tls = Some(RouterTls::default());
    }
    p.apply(&cfg);
    let secure = p.local_addr("websecure").expect("websecure");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("h2load")
            .args([
                "-n2000",
                "-c8",
                "-m8",
                &format!("https://127.0.0.1:{}/", secure.port()),
            ])
            .output()
            .expect("h2load runs")
    })
    .await
    .expect("join");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Application protocol: h2"), "{text}");
    assert!(
        text.contains("2000 succeeded, 0 failed, 0 errored"),
        "{text}"
    );
    assert!(text.contains("status codes: 2000 2xx"), "{text}");
}
