//! Prometheus metrics with Traefik's family names: requests by entry point, router and
//! service (code, method, protocol), request durations, open connections, configuration
//! reloads and certificate expiry.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Histogram bucket bounds in seconds (Traefik's defaults).
const BUCKETS: [f64; 4] = [0.1, 0.3, 1.2, 5.0];

#[derive(Debug, Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; 4],
}

type Key = (String, String, String, u16);

#[derive(Debug, Default)]
struct Inner {
    /// (entry point, method, protocol, code)
    entry: BTreeMap<Key, Series>,
    /// (router, service, method+protocol, code)
    router: BTreeMap<(String, String, String, String, u16), Series>,
    service: BTreeMap<Key, Series>,
    open: BTreeMap<String, Arc<AtomicI64>>,
    certs: Vec<(String, Vec<String>, i64)>,
}

/// The proxy's metrics, shared by every connection.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    inner: Arc<Mutex<Inner>>,
    reloads: Arc<AtomicU64>,
    reload_failures: Arc<AtomicU64>,
    last_reload: Arc<AtomicI64>,
}

/// Counts a connection as open until dropped.
#[derive(Debug)]
pub struct OpenConnection(Arc<AtomicI64>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Series {
    fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        self.count += 1;
        self.sum += s;
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.buckets[i] += 1;
            }
        }
    }
}

impl Metrics {
    pub(crate) fn open_connection(&self, entry: &str) -> OpenConnection {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let g = inner.open.entry(entry.to_string()).or_default().clone();
        g.fetch_add(1, Ordering::Relaxed);
        OpenConnection(g)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn request(
        &self,
        entry: &str,
        router: Option<&str>,
        service: Option<&str>,
        method: &str,
        proto: &str,
        code: u16,
        took: Duration,
    ) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .entry
            .entry((
                entry.to_string(),
                method.to_string(),
                proto.to_string(),
                code,
            ))
            .or_default()
            .observe(took);
        if let (Some(r), Some(s)) = (router, service) {
            inner
                .router
                .entry((
                    r.to_string(),
                    s.to_string(),
                    method.to_string(),
                    proto.to_string(),
                    code,
                ))
                .or_default()
                .observe(took);
            inner
                .service
                .entry((s.to_string(), method.to_string(), proto.to_string(), code))
                .or_default()
                .observe(took);
        }
    }

    pub(crate) fn reloaded(&self, ok: bool, certs: Vec<(String, Vec<String>, i64)>) {
        self.reloads.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.reload_failures.fetch_add(1, Ordering::Relaxed);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.last_reload.store(now, Ordering::Relaxed);
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).certs = certs;
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP traefik_config_reloads_total Configuration reloads."
        );
        let _ = writeln!(out, "# TYPE traefik_config_reloads_total counter");
        let _ = writeln!(
            out,
            "traefik_config_reloads_total {}",
            self.reloads.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# TYPE traefik_config_reloads_failure_total counter");
        let _ = writeln!(
            out,
            "traefik_config_reloads_failure_total {}",
            self.reload_failures.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# TYPE traefik_config_last_reload_success gauge");
        let _ = writeln!(
            out,
            "traefik_config_last_reload_success {}",
            self.last_reload.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# TYPE traefik_open_connections gauge");
        for (ep, g) in &inner.open {
            let _ = writeln!(
                out,
                "traefik_open_connections{{entrypoint=\"{}\",protocol=\"TCP\"}} {}",
                esc(ep),
                g.load(Ordering::Relaxed)
            );
        }
        let entry: Vec<(String, &Series)> = inner
            .entry
            .iter()
            .map(|((ep, m, p, c), s)| {
                (
                    format!(
                        "code=\"{c}\",entrypoint=\"{}\",method=\"{}\",protocol=\"{}\"",
                        esc(ep),
                        esc(m),
                        esc(p)
                    ),
                    s,
                )
            })
            .collect();
        family(&mut out, "traefik_entrypoint", &entry);
        let router: Vec<(String, &Series)> = inner
            .router
            .iter()
            .map(|((r, sv, m, p, c), s)| {
                (
                    format!(
                        "code=\"{c}\",method=\"{}\",protocol=\"{}\",router=\"{}\",service=\"{}\"",
                        esc(m),
                        esc(p),
                        esc(r),
                        esc(sv)
                    ),
                    s,
                )
            })
            .collect();
        family(&mut out, "traefik_router", &router);
        let service: Vec<(String, &Series)> = inner
            .service
            .iter()
            .map(|((sv, m, p, c), s)| {
                (
                    format!(
                        "code=\"{c}\",method=\"{}\",protocol=\"{}\",service=\"{}\"",
                        esc(m),
                        esc(p),
                        esc(sv)
                    ),
                    s,
                )
            })
            .collect();
        family(&mut out, "traefik_service", &service);
        let _ = writeln!(out, "# TYPE traefik_tls_certs_not_after gauge");
        for (source, names, not_after) in &inner.certs {
            let cn = names.first().map_or("", String::as_str);
            let _ = writeln!(
                out,
                "traefik_tls_certs_not_after{{cn=\"{}\",sans=\"{}\",source=\"{}\"}} {not_after}",
                esc(cn),
                esc(&names.join(",")),
                esc(source)
            );
        }
        out
    }
}

fn family(out: &mut String, prefix: &str, series: &[(String, &Series)]) {
    let _ = writeln!(out, "# TYPE {prefix}_requests_total counter");
    for (labels, s) in series {
        let _ = writeln!(out, "{prefix}_requests_total{{{labels}}} {}", s.count);
    }
    let _ = writeln!(out, "# TYPE {prefix}_request_duration_seconds histogram");
    for (labels, s) in series {
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{prefix}_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {}",
                s.buckets[i]
            );
        }
        let _ = writeln!(
            out,
            "{prefix}_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
            s.count
        );
        let _ = writeln!(
            out,
            "{prefix}_request_duration_seconds_sum{{{labels}}} {}",
            s.sum
        );
        let _ = writeln!(
            out,
            "{prefix}_request_duration_seconds_count{{{labels}}} {}",
            s.count
        );
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
