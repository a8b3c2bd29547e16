//! Prometheus metrics with Traefik's family names: requests by entry point, router and
//! service (code, method, protocol), request durations, open connections, configuration
//! reloads and certificate expiry.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Histogram bucket bounds in seconds (Traefik's defaults).
const BUCKETS: [f64; 4] = [0.1, 0.3, 1.2, 5.0];

#[derive(Debug, Default, Clone)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; 4],
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

    fn add(&mut self, other: &Series) {
        self.count += other.count;
        self.sum += other.sum;
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
    }
}

/// A series' labels besides its name: status code, method and protocol, all from bounded
/// sets.
type Key = (u16, &'static str, &'static str);

/// One shard of a [`Requests`], on a cache line of its own so that threads counting into
/// different shards do not share one.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard(Mutex<Vec<(Key, Series)>>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Requests counted under one name (an entry point, a router and its service, or a service),
/// by [`Key`]. Each thread counts into a shard of its own: on many cores, requests through
/// one router do not serialise on one lock. Only rendering visits every shard.
#[derive(Debug)]
pub(crate) struct Requests {
    shards: Box<[Shard]>,
}

/// How many shards a [`Requests`] has: one per CPU, up to 16.
fn shard_count() -> usize {
    static COUNT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, 16)
    })
}

/// The shard the current thread counts into: threads take numbers in turn.
fn shard_index(len: usize) -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static MINE: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    MINE.with(|i| *i % len)
}

impl Requests {
    fn new() -> Requests {
        Requests {
            shards: (0..shard_count()).map(|_| Shard::default()).collect(),
        }
    }

    fn observe(&self, key: Key, took: Duration) {
        let shard = &self.shards[shard_index(self.shards.len())];
        let mut series = lock(&shard.0);
        // A handful of (code, method, protocol) combinations per name: a scan beats a hash.
        match series.iter_mut().find(|(k, _)| *k == key) {
            Some((_, s)) => s.observe(took),
            None => {
                let mut s = Series::default();
                s.observe(took);
                series.push((key, s));
            }
        }
    }

    /// Every shard's series summed, by key.
    fn snapshot(&self) -> BTreeMap<Key, Series> {
        let mut all: BTreeMap<Key, Series> = BTreeMap::new();
        for shard in &self.shards {
            for (k, s) in lock(&shard.0).iter() {
                all.entry(*k).or_default().add(s);
            }
        }
        all
    }
}

/// An entry point's metrics, taken once per listener: its open connections and requests.
#[derive(Debug)]
pub(crate) struct EntryMetrics {
    open: AtomicI64,
    requests: Requests,
}

impl EntryMetrics {
    pub(crate) fn open_connection(self: &Arc<Self>) -> OpenConnection {
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self.clone())
    }

    pub(crate) fn request(
        &self,
        method: &'static str,
        proto: &'static str,
        code: u16,
        took: Duration,
    ) {
        self.requests.observe((code, method, proto), took);
    }
}

/// A router's metrics: its requests by the service they went to, and that service's.
/// Resolved once per router (the first request it serves), then counted into without any
/// lookup.
#[derive(Debug, Clone)]
pub(crate) struct RouteMetrics {
    router: Arc<Requests>,
    service: Arc<Requests>,
}

impl RouteMetrics {
    pub(crate) fn request(
        &self,
        method: &'static str,
        proto: &'static str,
        code: u16,
        took: Duration,
    ) {
        self.router.observe((code, method, proto), took);
        self.service.observe((code, method, proto), took);
    }
}

#[derive(Debug, Default)]
struct Inner {
    entry: BTreeMap<String, Arc<EntryMetrics>>,
    /// Keyed by router, then service.
    router: BTreeMap<(String, String), Arc<Requests>>,
    service: BTreeMap<String, Arc<Requests>>,
    certs: Vec<(String, Vec<String>, i64)>,
    /// The proxy's workers, when it has more than one.
    workers: Option<std::sync::Weak<crate::worker::Workers>>,
}

/// The proxy's metrics, shared by every connection. Its lock guards the set of names only:
/// requests are counted through [`EntryMetrics`] and [`RouteMetrics`] handles.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    inner: Arc<Mutex<Inner>>,
    reloads: Arc<AtomicU64>,
    reload_failures: Arc<AtomicU64>,
    last_reload: Arc<AtomicI64>,
}

/// Counts a connection as open until dropped.
#[derive(Debug)]
pub struct OpenConnection(Arc<EntryMetrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// The metrics of the entry point with this name (the same handle for the same name).
    pub(crate) fn entry_point(&self, name: &str) -> Arc<EntryMetrics> {
        lock(&self.inner)
            .entry
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(EntryMetrics {
                    open: AtomicI64::new(0),
                    requests: Requests::new(),
                })
            })
            .clone()
    }

    /// The metrics of a router and its service (the same series for the same names, across
    /// reloads).
    pub(crate) fn route(&self, router: &str, service: &str) -> RouteMetrics {
        let mut inner = lock(&self.inner);
        let router = inner
            .router
            .entry((router.to_string(), service.to_string()))
            .or_insert_with(|| Arc::new(Requests::new()))
            .clone();
        let service = inner
            .service
            .entry(service.to_string())
            .or_insert_with(|| Arc::new(Requests::new()))
            .clone();
        RouteMetrics { router, service }
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
        lock(&self.inner).certs = certs;
    }

    /// Reports the open connections of each of these workers.
    pub(crate) fn workers(&self, workers: std::sync::Weak<crate::worker::Workers>) {
        lock(&self.inner).workers = Some(workers);
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        let inner = lock(&self.inner);
        let mut out = String::new();
        if let Some(w) = inner.workers.as_ref().and_then(std::sync::Weak::upgrade) {
            let _ = writeln!(
                out,
                "# HELP edgeplane_proxy_worker_open_connections Connections each proxy worker serves."
            );
            let _ = writeln!(out, "# TYPE edgeplane_proxy_worker_open_connections gauge");
            for (i, open) in w.open().into_iter().enumerate() {
                let _ = writeln!(
                    out,
                    "edgeplane_proxy_worker_open_connections{{worker=\"{}\"}} {open}",
                    i + 1
                );
            }
        }
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
        for (ep, m) in &inner.entry {
            let _ = writeln!(
                out,
                "traefik_open_connections{{entrypoint=\"{}\",protocol=\"TCP\"}} {}",
                esc(ep),
                m.open.load(Ordering::Relaxed)
            );
        }
        let mut entry: Vec<(String, Series)> = Vec::new();
        for (ep, m) in &inner.entry {
            for ((c, m, p), s) in m.requests.snapshot() {
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
        let mut router: Vec<(String, Series)> = Vec::new();
        for ((r, sv), by) in &inner.router {
            for ((c, m, p), s) in by.snapshot() {
                router.push((
                    format!(
                        "code=\"{c}\",method=\"{}\",protocol=\"{}\",router=\"{}\",service=\"{}\"",
                        esc(m),
                        esc(p),
                        esc(r),
                        esc(sv)
                    ),
                    s,
                ));
            }
        }
        router.sort_by(|a, b| a.0.cmp(&b.0));
        family(&mut out, "traefik_router", &router);
        let mut service: Vec<(String, Series)> = Vec::new();
        for (sv, by) in &inner.service {
            for ((c, m, p), s) in by.snapshot() {
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

fn family(out: &mut String, prefix: &str, series: &[(String, Series)]) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn counts_from_many_threads_are_summed_into_one_series() {
        let metrics = Metrics::default();
        let entry = metrics.entry_point("web");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let entry = entry.clone();
                let route = metrics.route("api", "backend");
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        entry.request("GET", "http/1.1", 200, Duration::from_millis(2));
                        route.request("GET", "http/1.1", 200, Duration::from_millis(2));
                    }
                    route.request("POST", "http/2", 503, Duration::from_millis(400));
                })
            })
            .collect();
        for t in threads {
            t.join().expect("counting thread");
        }
        let text = metrics.render();
        assert_eq!(
            line(&text, "traefik_entrypoint_requests_total{code=\"200\",entrypoint=\"web\",method=\"GET\",protocol=\"http/1.1\"}"),
            Some("traefik_entrypoint_requests_total{code=\"200\",entrypoint=\"web\",method=\"GET\",protocol=\"http/1.1\"} 8000"),
            "{text}"
        );
        assert_eq!(
            line(&text, "traefik_router_requests_total{code=\"503\",method=\"POST\",protocol=\"http/2\",router=\"api\",service=\"backend\"}"),
            Some("traefik_router_requests_total{code=\"503\",method=\"POST\",protocol=\"http/2\",router=\"api\",service=\"backend\"} 8"),
            "{text}"
        );
        // 400 ms is above the 0.3 s bucket and within the 1.2 s one.
        let bucket = |le: &str| {
            line(&text, &format!("traefik_service_request_duration_seconds_bucket{{code=\"503\",method=\"POST\",protocol=\"http/2\",service=\"backend\",le=\"{le}\"}}"))
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_string)
        };
        assert_eq!(bucket("0.3").as_deref(), Some("0"), "{text}");
        assert_eq!(bucket("1.2").as_deref(), Some("8"), "{text}");
        assert_eq!(bucket("+Inf").as_deref(), Some("8"), "{text}");
        let sum = line(
            &text,
            "traefik_service_request_duration_seconds_sum{code=\"200\"",
        )
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .expect("a duration sum");
        assert!((sum - 16.0).abs() < 1e-6, "{sum}");
    }

    #[test]
    fn the_same_names_share_series_and_open_connections_are_gauged() {
        let metrics = Metrics::default();
        let a = metrics.entry_point("web");
        let b = metrics.entry_point("web");
        assert!(Arc::ptr_eq(&a, &b));
        let c1 = a.open_connection();
        let c2 = b.open_connection();
        let open = "traefik_open_connections{entrypoint=\"web\",protocol=\"TCP\"}";
        assert_eq!(line(&metrics.render(), open), Some(&*format!("{open} 2")));
        drop(c1);
        assert_eq!(line(&metrics.render(), open), Some(&*format!("{open} 1")));
        drop(c2);
        // A router that served nothing has no series; one re-resolved after a reload counts
        // into the same ones.
        let first = metrics.route("r", "s");
        assert!(!metrics.render().contains("router=\"r\""));
        first.request("GET", "http/1.1", 200, Duration::from_millis(1));
        metrics
            .route("r", "s")
            .request("GET", "http/1.1", 200, Duration::from_millis(1));
        let total = "traefik_router_requests_total{code=\"200\",method=\"GET\",protocol=\"http/1.1\",router=\"r\",service=\"s\"}";
        assert_eq!(line(&metrics.render(), total), Some(&*format!("{total} 2")));
    }
}
