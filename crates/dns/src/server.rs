//! The serving loops: UDP on blocking worker threads (no async overhead on the hot path), TCP
//! on tokio with pipelining, idle timeouts, a connection limit, and zone transfers.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::handler::{self, Outcome, Transport};
use crate::stats::Stats;
use crate::wire::{MessageWriter, Rcode, CLASS_IN};
use crate::{transfer, DnsConfig, IpNet};

/// A running DNS server. Dropping it does not stop it; call [`DnsServer::shutdown`].
pub struct DnsServer {
    addrs: Vec<SocketAddr>,
    stop_flag: Arc<AtomicBool>,
    stop_tx: watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stats: Arc<Stats>,
}

impl DnsServer {
    /// Binds every listen address (UDP and TCP on the same port; port 0 picks a free one) and
    /// starts serving `store`'s snapshots. Must be called inside a tokio runtime.
    pub async fn start(config: DnsConfig, store: Store) -> io::Result<DnsServer> {
        let stop_flag = Arc::new(AtomicBool::new(false));
        let (stop_tx, stop_rx) = watch::channel(false);
        let stats = Arc::new(Stats::default());
        let mut addrs = Vec::new();
        let mut threads = Vec::new();
        let mut tasks = Vec::new();
        let allow = Arc::new(config.allow_transfer.clone());
        let active = Arc::new(AtomicUsize::new(0));
        for listen in &config.listen {
            let (udp, tcp) = bind_pair(*listen).await?;
            let addr = udp.local_addr()?;
            tracing::info!(%addr, "DNS listening on UDP and TCP");
            addrs.push(addr);
            udp.set_read_timeout(Some(Duration::from_millis(200)))?;
            #[cfg(target_os = "linux")]
            batched::enlarge_buffers(&udp);
            let udp = Arc::new(udp);
            for i in 0..config.udp_workers.max(1) {
                let sock = Arc::clone(&udp);
                let store = store.clone();
                let stop = Arc::clone(&stop_flag);
                let stats = Arc::clone(&stats);
                threads.push(
                    std::thread::Builder::new()
                        .name(format!("dns-udp-{i}"))
                        .spawn(move || {
                            #[cfg(target_os = "linux")]
                            batched::udp_worker(&sock, &store, &stop, &stats);
                            #[cfg(not(target_os = "linux"))]
                            udp_worker(&sock, &store, &stop, &stats);
                        })?,
                );
            }
            tasks.push(tokio::spawn(tcp_accept_loop(
                tcp,
                TcpContext {
                    store: store.clone(),
                    allow: Arc::clone(&allow),
                    stats: Arc::clone(&stats),
                    idle: config.tcp_idle_timeout,
                    max_connections: config.max_tcp_connections,
                    active: Arc::clone(&active),
                    per_ip: std::sync::Mutex::new(std::collections::HashMap::new()),
                    transfers: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_TRANSFERS)),
                },
                stop_rx.clone(),
            )));
        }
        if !config.notify.is_empty() {
            tasks.push(tokio::spawn(crate::notify::run(
                store.clone(),
                config.notify.clone(),
                stop_rx.clone(),
            )));
        }
        Ok(DnsServer {
            addrs,
            stop_flag,
            stop_tx,
            threads,
            tasks,
            stats,
        })
    }

    /// The bound addresses (each serves UDP and TCP).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Counters of answered queries.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// Stops every loop and waits for them.
    pub async fn shutdown(self) {
        self.stop_flag.store(true, Ordering::SeqCst);
        let _ = self.stop_tx.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// Binds UDP and TCP on the same address; with port 0, retries until both get the same port.
async fn bind_pair(addr: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    let mut last_err = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind(addr)?;
        let bound = udp.local_addr()?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("could not bind UDP and TCP on one port")))
}

#[cfg(not(target_os = "linux"))]
fn udp_worker(sock: &UdpSocket, store: &Store, stop: &AtomicBool, stats: &Stats) {
    let mut inbuf = vec![0u8; 65_535];
    let mut outbuf: Vec<u8> = Vec::with_capacity(usize::from(handler::MAX_UDP_PAYLOAD) + 64);
    let mut rng = Rng::new();
    while !stop.load(Ordering::Relaxed) {
        let (n, peer) = match sock.recv_from(&mut inbuf) {
            Ok(v) => v,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                tracing::warn!(error = %e, "UDP receive failed");
                continue;
            }
        };
        let snapshot = store.snapshot();
        let (outcome, kind) = handler::handle(
            &snapshot,
            &inbuf[..n],
            Transport::Udp,
            rng.next(),
            std::mem::take(&mut outbuf),
        );
        stats.record(kind);
        match outcome {
            Outcome::Reply(reply) => {
                if let Err(e) = sock.send_to(&reply, peer) {
                    tracing::debug!(error = %e, %peer, "UDP send failed");
                }
                outbuf = reply;
            }
            Outcome::Drop | Outcome::Transfer(_) => {}
        }
    }
}

/// UDP with `recvmmsg`/`sendmmsg`: one system call receives every datagram waiting (up to a
/// batch) and one sends every reply, which halves the per-query kernel entry cost under load.
#[cfg(target_os = "linux")]
mod batched {
    use std::io::{IoSlice, IoSliceMut};
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};

    use nix::errno::Errno;
    use nix::sys::socket::{
        recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage,
    };
    use store::Store;

    use super::Rng;
    use crate::handler::{self, Outcome, Transport};
    use crate::stats::Stats;

    /// Datagrams handled per system call at most.
    const BATCH: usize = 32;
    /// Receive buffer per datagram; a longer query is truncated by the kernel and dropped.
    const QUERY_BUF: usize = 4096;

    /// Asks for larger socket buffers so that bursts queue instead of being dropped (the
    /// kernel caps the size at net.core.rmem_max / wmem_max).
    pub(super) fn enlarge_buffers(sock: &UdpSocket) {
        use nix::sys::socket::{setsockopt, sockopt};
        if let Err(e) = setsockopt(sock, sockopt::RcvBuf, &(8 << 20)) {
            tracing::debug!(error = %e, "cannot enlarge the UDP receive buffer");
        }
        if let Err(e) = setsockopt(sock, sockopt::SndBuf, &(4 << 20)) {
            tracing::debug!(error = %e, "cannot enlarge the UDP send buffer");
        }
    }

    pub(super) fn udp_worker(sock: &UdpSocket, store: &Store, stop: &AtomicBool, stats: &Stats) {
        let fd = sock.as_raw_fd();
        let mut inbufs = vec![[0u8; QUERY_BUF]; BATCH];
        let mut outbufs: Vec<Vec<u8>> = (0..BATCH)
            .map(|_| Vec::with_capacity(usize::from(handler::MAX_UDP_PAYLOAD) + 64))
            .collect();
        let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let mut received: Vec<(usize, Option<SockaddrStorage>, bool)> = Vec::with_capacity(BATCH);
        let mut reply_idx: Vec<usize> = Vec::with_capacity(BATCH);
        let mut reply_addrs: Vec<Option<SockaddrStorage>> = Vec::with_capacity(BATCH);
        let mut rng = Rng::new();
        while !stop.load(Ordering::Relaxed) {
            received.clear();
            {
                let mut iovs: Vec<[IoSliceMut<'_>; 1]> = inbufs
                    .iter_mut()
                    .map(|b| [IoSliceMut::new(&mut b[..])])
                    .collect();
                match recvmmsg(
                    fd,
                    &mut recv_headers,
                    iovs.iter_mut(),
                    MsgFlags::MSG_WAITFORONE,
                    None,
                ) {
                    Ok(msgs) => {
                        for m in msgs {
                            received.push((
                                m.bytes,
                                m.address,
                                m.flags.contains(MsgFlags::MSG_TRUNC),
                            ));
                        }
                    }
                    Err(Errno::EAGAIN | Errno::EINTR | Errno::ETIMEDOUT) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "UDP receive failed");
                        continue;
                    }
                }
            }
            reply_idx.clear();
            reply_addrs.clear();
            let snapshot = store.snapshot();
            for (i, (len, addr, truncated)) in received.iter().enumerate() {
                if *truncated {
                    stats.record(None);
                    continue;
                }
                let (outcome, kind) = handler::handle(
                    &snapshot,
                    &inbufs[i][..*len],
                    Transport::Udp,
                    rng.next(),
                    std::mem::take(&mut outbufs[i]),
                );
                stats.record(kind);
                if let Outcome::Reply(reply) = outcome {
                    outbufs[i] = reply;
                    reply_idx.push(i);
                    reply_addrs.push(*addr);
                }
            }
            drop(snapshot);
            let slices: Vec<[IoSlice<'_>; 1]> = reply_idx
                .iter()
                .map(|&i| [IoSlice::new(&outbufs[i])])
                .collect();
            let mut sent = 0;
            while sent < slices.len() {
                let no_cmsgs: [ControlMessage<'_>; 0] = [];
                match sendmmsg(
                    fd,
                    &mut send_headers,
                    slices[sent..].iter(),
                    &reply_addrs[sent..],
                    no_cmsgs,
                    MsgFlags::empty(),
                ) {
                    Ok(results) => match results.count() {
                        0 => break,
                        n => sent += n,
                    },
                    Err(Errno::EINTR | Errno::EAGAIN) => continue,
                    Err(e) => {
                        // The first pending reply failed (e.g. an unreachable address): skip it.
                        tracing::debug!(error = %e, "UDP send failed");
                        sent += 1;
                    }
                }
            }
        }
    }
}

struct TcpContext {
    store: Store,
    allow: Arc<Vec<IpNet>>,
    stats: Arc<Stats>,
    idle: Duration,
    max_connections: usize,
    active: Arc<AtomicUsize>,
    /// Open connections per client address.
    per_ip: std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>,
    /// Zone transfers running at once.
    transfers: Arc<tokio::sync::Semaphore>,
}

/// Open TCP connections one client address may hold.
const MAX_CONNECTIONS_PER_IP: usize = 64;
/// Zone transfers built and sent at once.
const MAX_CONCURRENT_TRANSFERS: usize = 8;

/// Resolves when `stop` turns true; never when its sender is gone without stopping.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn tcp_accept_loop(listener: TcpListener, ctx: TcpContext, mut stop: watch::Receiver<bool>) {
    let ctx = Arc::new(ctx);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!(error = %e, "TCP accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if ctx.active.load(Ordering::Relaxed) >= ctx.max_connections {
                    tracing::debug!(%peer, "TCP connection limit reached; closing");
                    continue;
                }
                {
                    let mut per_ip = ctx.per_ip.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    let n = per_ip.entry(peer.ip()).or_insert(0);
                    if *n >= MAX_CONNECTIONS_PER_IP {
                        tracing::debug!(%peer, "per-address TCP connection limit reached; closing");
                        continue;
                    }
                    *n += 1;
                }
                ctx.active.fetch_add(1, Ordering::Relaxed);
                let ctx = Arc::clone(&ctx);
                let stop = stop.clone();
                conns.spawn(async move {
                    if let Err(e) = tcp_connection(stream, peer, &ctx, stop).await {
                        tracing::debug!(error = %e, %peer, "TCP connection ended");
                    }
                    ctx.active.fetch_sub(1, Ordering::Relaxed);
                    let mut per_ip = ctx.per_ip.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if let Some(n) = per_ip.get_mut(&peer.ip()) {
                        *n -= 1;
                        if *n == 0 {
                            per_ip.remove(&peer.ip());
                        }
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.shutdown().await;
}

/// Serves one TCP connection: length-prefixed messages, answered in order (pipelining). Reads
/// and writes each have the idle timeout, so a client that stops reading cannot hold a slot.
async fn tcp_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    ctx: &TcpContext,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut rng = Rng::new();
    let mut msg = Vec::with_capacity(512);
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let len = tokio::select! {
            _ = stopped(&mut stop) => return Ok(()),
            r = tokio::time::timeout(ctx.idle, stream.read_u16()) => match r {
                Err(_) => return Ok(()), // idle timeout
                Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Ok(r) => usize::from(r?),
            },
        };
        msg.resize(len, 0);
        match tokio::time::timeout(ctx.idle, stream.read_exact(&mut msg)).await {
            Ok(r) => {
                r?;
            }
            Err(_) => return Ok(()),
        }
        let snapshot = ctx.store.snapshot();
        let (outcome, kind) =
            handler::handle(&snapshot, &msg, Transport::Tcp, rng.next(), Vec::new());
        drop(snapshot);
        ctx.stats.record(kind);
        match outcome {
            Outcome::Reply(reply) => write_framed(&mut stream, &mut out, &reply, ctx.idle).await?,
            Outcome::Drop => return Ok(()),
            Outcome::Transfer(req) => {
                let allowed = ctx.allow.iter().any(|net| net.contains(peer.ip()));
                let zone = req.zone.apex().to_string();
                if !allowed {
                    tracing::warn!(%peer, %zone, "zone transfer refused: peer not in allow-transfer");
                    ctx.stats.record(Some(handler::Kind::Refused));
                    let mut w = MessageWriter::new(Vec::new(), &req.header, false, Rcode::Refused);
                    w.question(&req.qname_raw, req.qtype, CLASS_IN);
                    write_framed(&mut stream, &mut out, &w.finish(), ctx.idle).await?;
                    continue;
                }
                // Bounded concurrency, built off the async workers.
                let Ok(_permit) = ctx.transfers.acquire().await else {
                    return Ok(());
                };
                let serial = req.zone.zone().serial();
                let from = req.ixfr_serial;
                let (messages, kind) =
                    tokio::task::spawn_blocking(move || transfer::messages(&req))
                        .await
                        .map_err(io::Error::other)?;
                tracing::info!(%peer, %zone, serial, from_serial = ?from, ?kind, messages = messages.len(), "zone transfer");
                ctx.stats.transfers.fetch_add(1, Ordering::Relaxed);
                for m in messages {
                    write_framed(&mut stream, &mut out, &m, ctx.idle).await?;
                }
            }
        }
    }
}

async fn write_framed(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    msg: &[u8],
    timeout: Duration,
) -> io::Result<()> {
    debug_assert!(msg.len() <= usize::from(u16::MAX));
    out.clear();
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(msg);
    match tokio::time::timeout(timeout, stream.write_all(out)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "client stopped reading",
        )),
    }
}

/// xorshift32: cheap per-thread randomness for weighted answers (not for security).
struct Rng(u32);

impl Rng {
    fn new() -> Self {
        Rng((store::random_u64() as u32) | 1)
    }
    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
}
