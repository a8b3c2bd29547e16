//! Proxy workers. With more than one, each worker is a thread of its own running a
//! current-thread runtime. Each entry point keeps one listener, whose accept loop runs on
//! one of the workers and hands every connection to the worker with the fewest open
//! connections (its own included), so that long-lived connections spread evenly (where
//! `SO_REUSEPORT`'s hash of addresses and ports may give one worker far more than another).
//! A connection lives and dies on the worker it was given to, and so do the upstream
//! connections it uses: state that requests touch (idle upstream connections) is kept per
//! worker, so that no request waits on another core or is woken from one.
//!
//! With one worker the proxy runs on the runtime that started it, as any other task.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Most workers that keep state of their own; beyond that, workers share slots: a worker
/// may then take an idle upstream connection another worker's runtime watches (correct
/// while both run, only less local).
const MAX_SLOTS: usize = 16;

/// The most workers any proxy of this process was started with.
static WORKERS: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// This thread's worker number: 1 to N on worker threads, 0 on any other thread.
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Records that a proxy runs `n` workers (before it builds any per-worker state).
pub(crate) fn started(n: usize) {
    WORKERS.fetch_max(n, Ordering::Relaxed);
}

/// Marks the current thread as worker `i` (1-based).
pub(crate) fn enter(i: usize) {
    INDEX.with(|c| c.set(i));
}

/// How many slots per-worker state needs: one for the threads that are not workers, and
/// one per worker.
fn slots() -> usize {
    match WORKERS.load(Ordering::Relaxed) {
        0 | 1 => 1,
        n => n.min(MAX_SLOTS) + 1,
    }
}

/// A value per worker (and one for every other thread), each on cache lines of its own.
#[derive(Debug)]
pub(crate) struct PerWorker<T> {
    slots: Box<[Padded<T>]>,
}

#[derive(Debug)]
#[repr(align(128))]
struct Padded<T>(T);

impl<T> PerWorker<T> {
    pub(crate) fn new(mut make: impl FnMut() -> T) -> PerWorker<T> {
        PerWorker {
            slots: (0..slots()).map(|_| Padded(make())).collect(),
        }
    }

    /// The current thread's value.
    pub(crate) fn mine(&self) -> &T {
        let i = INDEX.with(Cell::get) % self.slots.len();
        &self.slots[i].0
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().map(|p| &p.0)
    }
}

/// Work sent to a worker: run on its runtime (it spawns the connection's task there).
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// Where an accept loop's connections are served.
#[derive(Clone)]
pub(crate) enum Dispatch {
    /// On the runtime that accepted them.
    Here,
    /// On the least busy of the workers.
    Workers(Arc<Workers>),
}

/// The workers' inboxes, in worker order.
#[derive(Debug)]
pub(crate) struct Workers {
    inboxes: Vec<Inbox>,
    /// Where the search for the least busy worker starts, so that ties rotate.
    next: AtomicUsize,
}

#[derive(Debug)]
struct Inbox {
    jobs: mpsc::UnboundedSender<Job>,
    /// Connections given to this worker and not yet closed.
    open: Arc<AtomicUsize>,
}

/// Counts a connection as open on its worker until dropped.
#[derive(Debug)]
pub(crate) struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// `n` workers' inboxes; each receiver is to be drained by its worker's runtime
    /// ([`run_inbox`]), and ends once every [`Dispatch`] holding them is gone.
    pub(crate) fn new(n: usize) -> (Arc<Workers>, Vec<mpsc::UnboundedReceiver<Job>>) {
        let mut inboxes = Vec::with_capacity(n);
        let mut receivers = Vec::with_capacity(n);
        for _ in 0..n {
            let (jobs, rx) = mpsc::unbounded_channel();
            inboxes.push(Inbox {
                jobs,
                open: Arc::new(AtomicUsize::new(0)),
            });
            receivers.push(rx);
        }
        let workers = Workers {
            inboxes,
            next: AtomicUsize::new(0),
        };
        (Arc::new(workers), receivers)
    }

    /// Open connections per worker.
    pub(crate) fn open(&self) -> Vec<usize> {
        self.inboxes
            .iter()
            .map(|i| i.open.load(Ordering::Relaxed))
            .collect()
    }

    /// The inbox with the fewest open connections (ties taken in turn).
    fn least_busy(&self) -> usize {
        let n = self.inboxes.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|k| (start + k) % n)
            .min_by_key(|&i| self.inboxes[i].open.load(Ordering::Relaxed))
            .unwrap_or(0)
    }
}

/// Runs a worker's jobs until every sender is gone.
pub(crate) async fn run_inbox(mut jobs: mpsc::UnboundedReceiver<Job>) {
    while let Some(job) = jobs.recv().await {
        job();
    }
}

impl Dispatch {
    /// Serves an accepted connection with `serve`, here or on the least busy worker. `serve`
    /// gets what counts the connection as open on its worker (`None` here), to hold for as
    /// long as the connection is used.
    pub(crate) fn spawn<F, Fut>(&self, tcp: TcpStream, serve: F)
    where
        F: FnOnce(TcpStream, Option<Open>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let workers = match self {
            Dispatch::Here => {
                tokio::spawn(serve(tcp, None));
                return;
            }
            Dispatch::Workers(w) => w,
        };
        let i = workers.least_busy();
        let inbox = &workers.inboxes[i];
        inbox.open.fetch_add(1, Ordering::Relaxed);
        let open = Open(inbox.open.clone());
        if INDEX.with(Cell::get) == i + 1 {
            // This worker's own: its socket is already watched by this runtime.
            tokio::spawn(serve(tcp, Some(open)));
            return;
        }
        // The socket moves to the other worker's runtime.
        let std = match tcp.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "accepted connection lost on its way to a worker");
                return;
            }
        };
        let job: Job = Box::new(move || match TcpStream::from_std(std) {
            Ok(tcp) => {
                tokio::spawn(serve(tcp, Some(open)));
            }
            Err(e) => tracing::debug!(error = %e, "a worker could not take a connection"),
        });
        if inbox.jobs.send(job).is_err() {
            tracing::debug!("a connection came for a worker that has stopped");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use crate::config::{
        DynamicConfig, LoadBalancerConfig, RouterConfig, ServerConfig, ServiceConfig,
    };
    use crate::{EntryPointConfig, Proxy, ProxyOptions};

    /// A keep-alive HTTP/1.1 server answering `ok` to every request head, `/slow` after
    /// 300 ms.
    async fn backend() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head: Vec<u8> = buf.drain(..end + 4).collect();
                            if head.starts_with(b"GET /upgrade") {
                                // A tunnel: 101, then every byte echoed.
                                let answer = b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n";
                                if s.write_all(answer).await.is_err() {
                                    return;
                                }
                                let (mut r, mut w) = s.split();
                                let _ = tokio::io::copy(&mut r, &mut w).await;
                                return;
                            }
                            if head.starts_with(b"GET /slow") {
                                tokio::time::sleep(Duration::from_millis(300)).await;
                            }
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if s.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        addr
    }

    fn config(backend: SocketAddr) -> DynamicConfig {
        let mut c = DynamicConfig::default();
        c.routers.insert(
            "r".into(),
            RouterConfig {
                entry_points: Vec::new(),
                rule: "PathPrefix(`/`)".into(),
                priority: None,
                middlewares: Vec::new(),
                service: "s".into(),
                tls: None,
            },
        );
        c.services.insert(
            "s".into(),
            ServiceConfig::LoadBalancer(LoadBalancerConfig {
                servers: vec![ServerConfig {
                    url: format!("http://{backend}"),
                    weight: 1,
                }],
                ..Default::default()
            }),
        );
        c
    }

    /// Reads from `s` until what was read ends with `end`.
    async fn read_to(s: &mut TcpStream, end: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.ends_with(end) {
            let n = s.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
        }
        buf
    }

    /// Sends `n` keep-alive GETs of `path` on one connection; returns the bodies' total.
    async fn requests(web: SocketAddr, path: &str, n: usize) -> String {
        let mut s = TcpStream::connect(web).await.expect("connect");
        let mut got = String::new();
        for _ in 0..n {
            let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
            s.write_all(req.as_bytes()).await.expect("write");
            let buf = read_to(&mut s, b"\r\n\r\nok").await;
            assert!(buf.starts_with(b"HTTP/1.1 200"), "{buf:?}");
            got.push_str("ok");
        }
        got
    }

    /// Waits until no worker counts an open connection.
    async fn all_closed(p: &Proxy) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while open_by_worker(p) != [0, 0] {
            assert!(Instant::now() < deadline, "{:?}", open_by_worker(p));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `edgeplane_proxy_worker_open_connections`, by worker.
    fn open_by_worker(p: &Proxy) -> Vec<u64> {
        let text = p.metrics().render();
        (1..=2)
            .map(|w| {
                let name = format!("edgeplane_proxy_worker_open_connections{{worker=\"{w}\"}} ");
                let line = text.lines().find_map(|l| l.strip_prefix(&name));
                line.and_then(|v| v.parse().ok()).unwrap_or(u64::MAX)
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn workers_share_each_entry_point_and_keep_their_own_upstream_connections() {
        let backend = backend().await;
        let any = "127.0.0.1:0".parse().expect("literal");
        let p = Proxy::start_with(
            vec![EntryPointConfig::new("web", any)],
            ProxyOptions {
                workers: 2,
                ..Default::default()
            },
        )
        .await
        .expect("start");
        assert!(p.apply(&config(backend)).is_empty());
        let web = p.local_addr("web").expect("web");
        assert_ne!(web.port(), 0);

        // Concurrent connections: the accept loop deals them to both workers.
        let clients: Vec<_> = (0..32)
            .map(|_| tokio::spawn(requests(web, "/", 3)))
            .collect();
        for c in clients {
            assert_eq!(c.await.expect("join"), "okokok");
        }
        let runtime = p.runtime();
        let pool = &runtime.transports.get("default").expect("default").h1;
        let idle = pool.idle_by_worker();
        // Slot 0 is for threads that are not workers: nothing of the proxy's runs there.
        assert_eq!(idle[0], 0, "{idle:?}");
        assert!(
            idle[1] > 0 && idle[2] > 0,
            "each worker keeps the upstream connections it used: {idle:?}"
        );

        // Connections held open are spread evenly, and counted out when they close.
        all_closed(&p).await;
        let mut held = Vec::new();
        for _ in 0..20 {
            let mut s = TcpStream::connect(web).await.expect("connect");
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .expect("write");
            let buf = read_to(&mut s, b"\r\n\r\nok").await;
            assert!(buf.starts_with(b"HTTP/1.1 200"), "{buf:?}");
            held.push(s);
        }
        assert_eq!(open_by_worker(&p), [10, 10]);
        drop(held);
        all_closed(&p).await;

        // An upgraded connection is counted while its tunnel is open, after the HTTP
        // exchange is over.
        let mut tunnel = TcpStream::connect(web).await.expect("connect");
        tunnel
            .write_all(
                b"GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n",
            )
            .await
            .expect("write");
        let buf = read_to(&mut tunnel, b"\r\n\r\n").await;
        assert!(buf.starts_with(b"HTTP/1.1 101"), "{buf:?}");
        tunnel.write_all(b"ping").await.expect("write");
        let mut echoed = [0u8; 4];
        tunnel.read_exact(&mut echoed).await.expect("echo");
        assert_eq!(&echoed, b"ping");
        let open = open_by_worker(&p);
        assert_eq!(open.iter().sum::<u64>(), 1, "{open:?}");
        drop(tunnel);
        all_closed(&p).await;

        // A drain lets a request in flight finish, on whichever worker it is.
        let slow = tokio::spawn(requests(web, "/slow", 1));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        p.shutdown().await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(slow.await.expect("join"), "ok");
        // The listener is closed.
        assert!(TcpStream::connect(web).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_address_in_use_fails_the_start() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        let started = Proxy::start_with(
            vec![EntryPointConfig::new("web", addr)],
            ProxyOptions {
                workers: 2,
                ..Default::default()
            },
        )
        .await;
        let Err(e) = started else {
            panic!("started on an address in use")
        };
        assert!(e.to_string().contains("binding entry point web"), "{e}");
    }
}
