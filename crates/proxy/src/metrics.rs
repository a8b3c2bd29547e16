//! Prometheus metrics with Traefik's family names: requests by entry point, router and
//! service (code, method, protocol), request durations, open connections, configuration
//! reloads and certificate expiry.

use std::collections::{BTreeMap, HashMap};
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

/// The maps below are keyed by names from the configuration and by bounded labels, none a
/// client chooses, and looked up on every request: hashed with FNV-1a.
type Map<K, V> = HashMap<K, V, crate::fnv::Build>;

/// Series of one name (entry point, router or service) by `(code, method, protocol)`.
type ByCode = Map<(u16, String, &'static str), Series>;

#[derive(Debug, Default)]
struct Inner {
    entry: Map<String, ByCode>,
    /// Keyed by router, then service.
    router: Map<String, Map<String, ByCode>>,
    service: Map<String, ByCode>,
    open: BTreeMap<String, Arc<AtomicI64>>,
    certs: Vec<(String, Vec<String>, i64)>,
}

/// The series for a key, allocating its name only the first time it is seen.
fn slot<'a, V: Default>(map: &'a mut Map<String, V>, key: &str) -> &'a mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

fn observe(by_code: &mut ByCode, code: u16, method: &str, proto: &'static str, took: Duration) {
    // The method string is allocated only for a new (code, method, protocol) combination.
    if let Some(s) = by_code
        .iter_mut()
        .find(|((c, m, p), _)| *c == code && m == method && *p == proto)
        .map(|(_, s)| s)
    {
        s.observe(took);
        return;
    }
    by_code
        .entry((code, method.to_string(), proto))
        .or_default()
        .observe(took);
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
        proto: &'static str,
        code: u16,
        took: Duration,
    ) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        observe(slot(&mut inner.entry, entry), code, method, proto, took);
        if let (Some(r), Some(s)) = (router, service) {
            observe(
                slot(slot(&mut inner.router, r), s),
                code,
                method,
                proto,
                took,
            );
            observe(slot(&mut inner.service, s), code, method, proto, took);
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
        let mut entry: Vec<(String, &Series)> = Vec::new();
        for (ep, by) in &inner.entry {
            for ((c, m, p), s) in by {
                entry.push((
                    format!(
                        "code=\"{c}\",entrypoint=\"{}\",method=\"{}\",protocol=\"{}\"",
                        esc(ep),
                        esc(m),
                        esc(p)
                    ),
                    s,
                ));
            }
        }
        entry.sort_by(|a, b| a.0.cmp(&b.0));
        family(&mut out, "traefik_entrypoint", &entry);
        let mut router: Vec<(String, &Series)> = Vec::new();
        for (r, by_service) in &inner.router {
            for (sv, by) in by_service {
                for ((c, m, p), s) in by {
                    router.push((format!("code=\"{c}\",method=\"{}\",protocol=\"{}\",router=\"{}\",service=\"{}\"", esc(m), esc(p), esc(r), esc(sv)), s));
                }
            }
        }
        router.sort_by(|a, b| a.0.cmp(&b.0));
        family(&mut out, "traefik_router", &router);
        let mut service: Vec<(String, &Series)> = Vec::new();
        for (sv, by) in &inner.service {
            for ((c, m, p), s) in by {
                service.push((
                    format!(
                        "code=\"{c}\",method=\"{}\",protocol=\"{}\",service=\"{}\"",
                        esc(m),
                        esc(p),
                        esc(sv)
                    ),
                    s,
                ));
            }
        }
        service.sort_by(|a, b| a.0.cmp(&b.0));
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
