//! Server health: active HTTP probes (Traefik's `healthCheck`) and passive ejection after
//! consecutive failed connections. The state belongs to a service and survives
//! reconfigurations that keep the service's definition.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

use crate::config::{HealthCheck, PassiveHealthCheck};
use crate::runtime::{Service, Upstream};

/// The health of each server of one service.
#[derive(Debug)]
pub struct Health {
    up: Vec<AtomicBool>,
    failures: Vec<AtomicU32>,
    /// Milliseconds since `epoch` until which a server is ejected (0: not ejected).
    ejected_until: Vec<AtomicU64>,
    epoch: Instant,
    passive: Option<PassiveHealthCheck>,
}

impl Health {
    /// Every server healthy.
    pub fn new(servers: usize, passive: Option<PassiveHealthCheck>) -> Health {
        Health {
            up: (0..servers).map(|_| AtomicBool::new(true)).collect(),
            failures: (0..servers).map(|_| AtomicU32::new(0)).collect(),
            ejected_until: (0..servers).map(|_| AtomicU64::new(0)).collect(),
            epoch: Instant::now(),
            passive,
        }
    }

    /// Whether server `i` may get traffic now.
    pub fn usable(&self, i: usize) -> bool {
        let up = self.up.get(i).is_some_and(|u| u.load(Ordering::Relaxed));
        let until = self
            .ejected_until
            .get(i)
            .map_or(0, |e| e.load(Ordering::Relaxed));
        up && (until == 0 || self.now_ms() >= until)
    }

    /// Whether the active probe last found server `i` healthy.
    pub fn probed_up(&self, i: usize) -> bool {
        self.up.get(i).is_some_and(|u| u.load(Ordering::Relaxed))
    }

    /// A request reached server `i`.
    pub fn succeeded(&self, i: usize) {
        if let Some(f) = self.failures.get(i) {
            f.store(0, Ordering::Relaxed);
        }
        if let Some(e) = self.ejected_until.get(i) {
            e.store(0, Ordering::Relaxed);
        }
    }

    /// A connection to server `i` failed; ejects it after too many in a row.
    pub fn failed(&self, i: usize) {
        let (Some(p), Some(f), Some(e)) = (
            &self.passive,
            self.failures.get(i),
            self.ejected_until.get(i),
        ) else {
            return;
        };
        let n = f.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= p.max_failures {
            let until = self.now_ms() + u64::try_from(p.cooldown.as_millis()).unwrap_or(u64::MAX);
            e.store(until.max(1), Ordering::Relaxed);
            f.store(0, Ordering::Relaxed);
            tracing::warn!(
                server = i,
                cooldown_ms = p.cooldown.as_millis() as u64,
                "server ejected after failed connections"
            );
        }
    }

    fn set_up(&self, i: usize, up: bool) -> bool {
        self.up
            .get(i)
            .map(|u| u.swap(up, Ordering::Relaxed))
            .is_some_and(|was| was != up)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Probes the servers of `service` every interval until the service is dropped (replaced by
/// a configuration that changed it, or removed).
pub(crate) async fn probe_loop(
    service: Weak<Service>,
    check: HealthCheck,
    client: Client<HttpConnector, Empty<Bytes>>,
) {
    loop {
        let Some(svc) = service.upgrade() else { return };
        let Service::Servers {
            servers, health, ..
        } = svc.as_ref()
        else {
            return;
        };
        // Every server at once: one slow server does not delay the others' results.
        let mut set = tokio::task::JoinSet::new();
        for (i, s) in servers.iter().enumerate() {
            let (client, s, check) = (client.clone(), s.clone(), check.clone());
            set.spawn(async move { (i, probe(&client, &s, &check).await) });
        }
        let mut results = vec![false; servers.len()];
        while let Some(r) = set.join_next().await {
            if let Ok((i, ok)) = r {
                results[i] = ok;
            }
        }
        for (i, ok) in results.into_iter().enumerate() {
            if health.set_up(i, ok) {
                tracing::warn!(server = %servers[i].url, healthy = ok, "health check changed");
            }
        }
        drop(svc);
        tokio::time::sleep(check.interval).await;
    }
}

async fn probe(
    client: &Client<HttpConnector, Empty<Bytes>>,
    server: &Upstream,
    check: &HealthCheck,
) -> bool {
    let host = server.authority.host();
    let port = check
        .port
        .or_else(|| server.authority.port_u16())
        .unwrap_or(80);
    let authority = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let Ok(uri) = format!("http://{authority}{}", check.path).parse::<http::Uri>() else {
        return false;
    };
    let mut req = http::Request::new(Empty::<Bytes>::new());
    *req.uri_mut() = uri;
    if let Some(h) = &check.hostname {
        if let Ok(v) = http::HeaderValue::from_str(h) {
            req.headers_mut().insert(http::header::HOST, v);
        }
    }
    match tokio::time::timeout(check.timeout, client.request(req)).await {
        Ok(Ok(resp)) => {
            let code = resp.status().as_u16();
            match check.status {
                Some(want) => code == want,
                None => (200..400).contains(&code),
            }
        }
        _ => false,
    }
}

/// Starts probing `service` if it has an active health check.
pub(crate) fn watch(service: &Arc<Service>, client: &Client<HttpConnector, Empty<Bytes>>) {
    if let Service::Servers { definition, .. } = service.as_ref() {
        if let Some(check) = definition.health_check.clone() {
            tokio::spawn(probe_loop(Arc::downgrade(service), check, client.clone()));
        }
    }
}

/// The shortest probe interval a health check may ask for.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
