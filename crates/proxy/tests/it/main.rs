//! The proxy against real backends and real clients (curl, h2load, wrk, openssl, a raw
//! socket), on loopback ports chosen at runtime.

mod backend;
mod features;
mod http1;
mod http2;
mod load;
mod tls;

use std::net::SocketAddr;
use std::process::{Command, Output};

use proxy::config::{
    DynamicConfig, LoadBalancerConfig, RouterConfig, ServerConfig, ServiceConfig, Strategy,
};
use proxy::{EntryPointConfig, Proxy};

/// Fails the test loudly when a peer program is missing.
pub(crate) fn require(program: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{program} is not installed: run scripts/install-test-deps.sh (or scripts/test.sh)"
    );
}

/// A proxy with a plain `web` and a TLS `websecure` entry point on ephemeral ports.
pub(crate) async fn start_proxy() -> Proxy {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("literal");
    let mut secure = EntryPointConfig::new("websecure", any);
    secure.tls = true;
    Proxy::start(vec![EntryPointConfig::new("web", any), secure])
        .await
        .expect("proxy starts")
}

/// A router on every entry point of its kind (plain unless `tls`).
pub(crate) fn router(rule: &str, service: &str) -> RouterConfig {
    RouterConfig {
        entry_points: Vec::new(),
        rule: rule.to_string(),
        priority: None,
        middlewares: Vec::new(),
        service: service.to_string(),
        tls: None,
    }
}

/// A load-balanced service over these backend addresses.
pub(crate) fn service(backends: &[SocketAddr]) -> ServiceConfig {
    ServiceConfig::LoadBalancer(LoadBalancerConfig {
        servers: backends
            .iter()
            .map(|a| ServerConfig {
                url: format!("http://{a}"),
                weight: 1,
            })
            .collect(),
        strategy: Strategy::WeightedRoundRobin,
        pass_host_header: true,
        ..Default::default()
    })
}

/// A configuration with one router to one service.
pub(crate) fn simple(rule: &str, backend: SocketAddr) -> DynamicConfig {
    let mut c = DynamicConfig::default();
    c.routers.insert("r".into(), router(rule, "s"));
    c.services.insert("s".into(), service(&[backend]));
    c
}

/// Runs curl (off the async runtime) and returns its output.
pub(crate) async fn curl(args: &[&str]) -> Output {
    require("curl");
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .args(&args)
            .output()
            .expect("curl runs")
    })
    .await
    .expect("join")
}

/// `curl URL` with a Host header; returns (status, body).
pub(crate) async fn get(addr: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let out = curl(&[
        "-H",
        &format!("Host: {host}"),
        "-w",
        "\n%{http_code}",
        &format!("http://{addr}{path}"),
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}
