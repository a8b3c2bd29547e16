//! Edgeplane's L7 proxy: entry points (HTTP/1.1, HTTP/2 over TLS with ALPN, h2c), TLS
//! termination with certificates chosen by SNI, routers written in Traefik's rule language and
//! compiled into an index, middlewares, and load-balanced services.
//!
//! Configuration arrives as a [`config::DynamicConfig`] through [`Proxy::apply`], which
//! compiles it off the serving path and swaps it in atomically: requests in flight finish on
//! the configuration they started with, new ones see the new one, connection pools and
//! balancer state survive. A broken router, service, middleware or certificate yields a
//! [`config::Diagnostic`] and is skipped; everything else keeps serving.
//!
//! This crate does not read manifests (that is `config`) and never writes state.

pub mod access_log;
pub mod acme;
pub mod balancer;
pub mod body;
pub mod config;
mod fnv;
mod forward;
mod h1;
mod h1_server;
mod h2;
pub mod health;
pub mod metrics;
pub mod proxy_protocol;
pub mod rule;
pub mod runtime;
mod server;
pub mod table;
#[cfg(test)]
mod test_util;
pub mod tls;
pub mod transport;
mod worker;

/// Entry points for the fuzz targets; not part of the crate's interface.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::h2::{exchange as h2_exchange, frames as h2_frames, RawFrame};
}

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::watch;

pub use forward::Body;
pub use h1::BoxError;
pub use server::{EntryPointConfig, Redirect};

use crate::config::{Diagnostic, DynamicConfig};
use crate::runtime::{EntryPointInfo, Runtime};
use crate::tls::{CertStore, TlsPolicy};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("binding entry point {name} on {addr}: {source}")]
    Bind {
        name: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("opening the access log: {0}")]
    AccessLog(String),
    #[error("starting proxy worker {index}: {source}")]
    Worker {
        index: usize,
        source: std::io::Error,
    },
}

/// How long route tables stay layered after the last change before they are rebuilt whole.
pub const COMPACT_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// Options of the whole proxy.
#[derive(Debug, Clone, Default)]
pub struct ProxyOptions {
    pub access_log: Option<access_log::AccessLogConfig>,
    /// Worker threads. 0 or 1: the proxy runs on the runtime that starts it. N > 1: N
    /// threads, each with a current-thread runtime; every connection is served by the worker
    /// with the fewest open connections when it is accepted.
    pub workers: usize,
}

/// A running proxy.
pub struct Proxy {
    shared: Arc<forward::Shared>,
    entry_points: Vec<EntryPointInfo>,
    addrs: Vec<(String, SocketAddr)>,
    certs: Arc<ArcSwap<CertStore>>,
    tls_policy: Arc<ArcSwap<TlsPolicy>>,
    default_cert: Arc<rustls::sign::CertifiedKey>,
    stop: watch::Sender<bool>,
    /// The entry points' accept loops, or the workers that run them: each ends once its
    /// connections are drained.
    tasks: Mutex<Vec<Finished>>,
    /// Serialises `apply` so each build sees the previous runtime.
    apply_lock: Arc<Mutex<()>>,
}

impl Proxy {
    /// Binds every entry point and starts serving an empty configuration (every request gets
    /// 404 until [`Proxy::apply`]).
    pub async fn start(entry_points: Vec<EntryPointConfig>) -> Result<Proxy, ProxyError> {
        Proxy::start_with(entry_points, ProxyOptions::default()).await
    }

    /// [`Proxy::start`] with options (access logs).
    pub async fn start_with(
        entry_points: Vec<EntryPointConfig>,
        options: ProxyOptions,
    ) -> Result<Proxy, ProxyError> {
        let default_cert = tls::self_signed_default().map_err(ProxyError::Tls)?;
        let certs = Arc::new(ArcSwap::from_pointee(
            CertStore::build(&[], Some(default_cert.clone())).0,
        ));
        let (policy, _) = TlsPolicy::build(&Default::default(), &[], &certs, None);
        let tls_policy = Arc::new(ArcSwap::from_pointee(policy));
        let access_log = match &options.access_log {
            Some(c) => Some(
                access_log::AccessLog::start(c)
                    .map_err(|e| ProxyError::AccessLog(e.to_string()))?,
            ),
            None => None,
        };
        let shared = Arc::new(forward::Shared::new(
            metrics::Metrics::default(),
            access_log,
        ));
        let (stop, stop_rx) = watch::channel(false);
        let workers = options.workers.max(1);
        worker::started(workers);
        let mut bound = Vec::new();
        for ep in &entry_points {
            let listener = tokio::net::TcpListener::bind(ep.listen)
                .await
                .map_err(|source| ProxyError::Bind {
                    name: ep.name.clone(),
                    addr: ep.listen,
                    source,
                })?;
            bound.push((ep.clone(), listener));
        }
        let mut addrs = Vec::new();
        let mut infos = Vec::new();
        for (ep, listener) in &bound {
            let addr = listener.local_addr().unwrap_or(ep.listen);
            tracing::info!(entry_point = %ep.name, %addr, tls = ep.tls, workers, "proxy entry point listening");
            addrs.push((ep.name.clone(), addr));
            infos.push(EntryPointInfo {
                name: ep.name.clone(),
                tls: ep.tls,
            });
        }
        let serve = |ep: EntryPointConfig, listener, dispatch| {
            let tls = ep.tls.then(|| tls_policy.clone());
            server::serve(
                server::EntryPoint {
                    config: ep,
                    listener,
                },
                shared.clone(),
                tls,
                stop_rx.clone(),
                dispatch,
            )
        };
        let mut tasks = Vec::new();
        if workers == 1 {
            for (ep, listener) in bound {
                tasks.push(Finished::Task(tokio::spawn(serve(
                    ep,
                    listener,
                    worker::Dispatch::Here,
                ))));
            }
        } else {
            // Runtimes not yet running on their threads: dropped without blocking if the
            // start fails (a runtime cannot be dropped inside an async context).
            let mut runtimes = Pending(Vec::with_capacity(workers));
            for i in 0..workers {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|source| ProxyError::Worker {
                        index: i + 1,
                        source,
                    })?;
                runtimes.0.push(Some(runtime));
            }
            let (dispatch, inboxes) = worker::Workers::new(workers);
            // Weak: the workers end when their accept loops do.
            shared.metrics.workers(Arc::downgrade(&dispatch));
            // The accept loops take the workers in turn; each hands its connections to the
            // least busy worker.
            for (k, (ep, listener)) in bound.into_iter().enumerate() {
                let Some(runtime) = runtimes.0[k % workers].as_ref() else {
                    continue;
                };
                let bind_err = |source| ProxyError::Bind {
                    name: ep.name.clone(),
                    addr: ep.listen,
                    source,
                };
                // The listener moves to that worker's runtime.
                let listener = listener.into_std().map_err(bind_err)?;
                let listener = {
                    let _entered = runtime.enter();
                    tokio::net::TcpListener::from_std(listener).map_err(bind_err)?
                };
                runtime.spawn(serve(
                    ep,
                    listener,
                    worker::Dispatch::Workers(dispatch.clone()),
                ));
            }
            drop(dispatch);
            for (i, inbox) in inboxes.into_iter().enumerate() {
                let done = start_worker(i + 1, &mut runtimes.0[i], inbox).map_err(|source| {
                    ProxyError::Worker {
                        index: i + 1,
                        source,
                    }
                })?;
                tasks.push(Finished::Worker(done));
            }
        }
        Ok(Proxy {
            shared,
            entry_points: infos,
            addrs,
            certs,
            tls_policy,
            default_cert,
            stop,
            tasks: Mutex::new(tasks),
            apply_lock: Arc::new(Mutex::new(())),
        })
    }

    /// Compiles and swaps in a configuration; returns what was skipped and why.
    pub fn apply(&self, config: &DynamicConfig) -> Vec<Diagnostic> {
        self.apply_shared(Arc::new(config.clone()))
    }

    /// [`Proxy::apply`] of a configuration the proxy keeps (the next apply is compared with
    /// it, so only what changed is compiled).
    pub fn apply_shared(&self, config: Arc<DynamicConfig>) -> Vec<Diagnostic> {
        let _guard = self.apply_lock.lock().unwrap_or_else(|p| p.into_inner());
        let previous = self.shared.runtime.load_full();
        let mut runtime =
            Runtime::build_shared(config.clone(), &self.entry_points, Some(&previous));
        let config = config.as_ref();
        let (certs, cert_diags) =
            CertStore::build(&config.certificates, Some(self.default_cert.clone()));
        runtime.diagnostics.extend(cert_diags);
        let claims = tls_claims(config);
        let previous_policy = self.tls_policy.load_full();
        let (policy, tls_diags) = TlsPolicy::build(
            &config.tls_options,
            &claims,
            &self.certs,
            Some(&previous_policy),
        );
        runtime.diagnostics.extend(tls_diags);
        let diags = runtime.diagnostics.clone();
        for (name, svc) in &runtime.services {
            let reused = previous
                .services
                .get(name)
                .is_some_and(|p| Arc::ptr_eq(p, svc));
            if !reused {
                health::watch(svc, &self.shared.probe);
            }
        }
        let loaded = certs.loaded.clone();
        self.certs.store(Arc::new(certs));
        self.tls_policy.store(Arc::new(policy));
        let layered = runtime.is_layered();
        let runtime = Arc::new(runtime);
        self.shared.runtime.store(runtime.clone());
        if layered {
            self.compact_later(&runtime);
        }
        // Freeing a large configuration takes a while: not on the reload's path.
        let retired = (previous, previous_policy);
        if std::thread::Builder::new()
            .name("config-drop".into())
            .spawn(move || drop(retired))
            .is_err()
        {
            tracing::debug!("freeing the previous configuration in place");
        }
        self.shared.metrics.reloaded(diags.is_empty(), loaded);
        for d in &diags {
            tracing::warn!(kind = d.kind, name = %d.name, problem = %d.message, "proxy resource skipped; the rest applies");
        }
        diags
    }

    /// Once no change has come for [`COMPACT_AFTER`], rebuilds `runtime` whole (off the
    /// reload's path, on a thread) and swaps it in if it is still the one serving: the
    /// routers of the overlays move into the tables, and the next change starts from there.
    fn compact_later(&self, runtime: &Arc<Runtime>) {
        let weak = Arc::downgrade(runtime);
        let shared = self.shared.clone();
        let lock = self.apply_lock.clone();
        let spawned = std::thread::Builder::new()
            .name("config-compact".into())
            .spawn(move || {
                std::thread::sleep(COMPACT_AFTER);
                let Some(current) = weak.upgrade() else {
                    return;
                };
                if !Arc::ptr_eq(&shared.runtime.load_full(), &current) {
                    return;
                }
                let whole = Arc::new(Runtime::compacted(&current));
                let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
                // A change applied meanwhile started its own wait.
                if Arc::ptr_eq(&shared.runtime.load_full(), &current) {
                    shared.runtime.store(whole);
                    tracing::debug!("proxy route tables rebuilt whole");
                }
            });
        if spawned.is_err() {
            tracing::debug!("route tables stay layered until the next full build");
        }
    }

    /// The address an entry point is bound to.
    pub fn local_addr(&self, entry_point: &str) -> Option<SocketAddr> {
        self.addrs
            .iter()
            .find(|(n, _)| n == entry_point)
            .map(|(_, a)| *a)
    }

    /// The configuration being served: routers with their status, services, diagnostics.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.shared.runtime.load_full()
    }

    /// The names served by the loaded certificates, with their source and expiry.
    pub fn certificates(&self) -> Vec<(String, Vec<String>, i64)> {
        self.certs.load().loaded.clone()
    }

    /// The ACME HTTP-01 answers the plain-HTTP entry points serve.
    pub fn http01_challenges(&self) -> acme::Http01Challenges {
        self.shared.acme.clone()
    }

    /// The proxy's metrics.
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.shared.metrics
    }

    /// Stops accepting, lets in-flight requests finish (each entry point's grace period), and
    /// returns when every entry point is closed.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            match t {
                Finished::Task(t) => {
                    let _ = t.await;
                }
                Finished::Worker(w) => {
                    let _ = w.await;
                }
            }
        }
    }
}

/// What [`Proxy::shutdown`] waits for.
enum Finished {
    /// An accept loop on the runtime that started the proxy.
    Task(tokio::task::JoinHandle<()>),
    /// A worker thread, which says when its accept loops are over.
    Worker(tokio::sync::oneshot::Receiver<()>),
}

/// Worker runtimes not yet handed to their threads.
struct Pending(Vec<Option<tokio::runtime::Runtime>>);

impl Drop for Pending {
    fn drop(&mut self) {
        for runtime in self.0.drain(..).flatten() {
            runtime.shutdown_background();
        }
    }
}

/// How long a worker waits, once its accept loops are over, for blocking tasks it started
/// (name lookups) before its runtime goes.
const WORKER_EXIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Starts worker `index` on a thread of its own, running the runtime taken from `slot`: the
/// accept loops already spawned on it, and the connections any accept loop hands it through
/// `inbox`. The receiver completes when the worker is over: once the accept loops have
/// stopped and drained, no job can come any more. If the thread cannot start, the runtime
/// stays in `slot`.
fn start_worker(
    index: usize,
    slot: &mut Option<tokio::runtime::Runtime>,
    inbox: tokio::sync::mpsc::UnboundedReceiver<worker::Job>,
) -> std::io::Result<tokio::sync::oneshot::Receiver<()>> {
    let (done, finished) = tokio::sync::oneshot::channel();
    // The runtime goes to the thread through a channel, so that a thread that cannot start
    // does not take it down with it here.
    let (give, take) = std::sync::mpsc::channel::<tokio::runtime::Runtime>();
    std::thread::Builder::new()
        .name(format!("proxy-worker-{index}"))
        .spawn(move || {
            let Ok(runtime) = take.recv() else { return };
            worker::enter(index);
            runtime.block_on(worker::run_inbox(inbox));
            // Connections still open past their grace period end with the runtime.
            runtime.shutdown_timeout(WORKER_EXIT);
            let _ = done.send(());
        })?;
    if let Some(runtime) = slot.take() {
        if let Err(std::sync::mpsc::SendError(runtime)) = give.send(runtime) {
            *slot = Some(runtime);
        }
    }
    Ok(finished)
}

/// The hosts each router's TLS options claim: `(host, option, router)`.
fn tls_claims(config: &DynamicConfig) -> Vec<(rule::HostPattern, String, String)> {
    let mut out = Vec::new();
    for (name, r) in &config.routers {
        let Some(option) = r.tls.as_ref().and_then(|t| t.options.clone()) else {
            continue;
        };
        // A rule that does not parse is reported by the runtime; it claims nothing.
        let Ok(rule) = rule::Rule::parse(&r.rule) else {
            continue;
        };
        for h in rule.expr().required_hosts().unwrap_or_default() {
            out.push((h, option.clone(), name.clone()));
        }
    }
    out
}
