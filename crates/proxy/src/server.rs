//! Entry points: listeners that accept TCP (and TLS) connections, serve HTTP/1.1 and HTTP/2
//! (ALPN, and h2c by preface), and hand each request to [`crate::forward`]. HTTP/1.1 is
//! served by [`crate::h1_server`], which hands a connection to hyper for the requests it
//! leaves to it; HTTP/2 (ALPN `h2`, or the h2c preface) by [`crate::h2`].
//! Graceful shutdown stops accepting and lets in-flight requests finish within a deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::forward::{ConnInfo, Shared};
use crate::h1_server::Hyper;
use model::net::IpNet;

/// One entry point's static configuration.
#[derive(Debug, Clone)]
pub struct EntryPointConfig {
    pub name: String,
    pub listen: SocketAddr,
    /// Terminate TLS (certificates chosen by SNI).
    pub tls: bool,
    /// Redirect every request to this scheme and port (`web` -> `websecure`).
    pub redirect_to: Option<Redirect>,
    /// Sources whose X-Forwarded-* headers are kept (others are replaced).
    pub trusted_ips: Vec<IpNet>,
    /// Sources whose PROXY protocol header (v1 or v2) is read for the client's address.
    pub proxy_protocol_trusted: Vec<IpNet>,
    /// Longest time to read a request's head: from the connection's start for its first
    /// request, from the first byte for the next ones (Traefik's `readTimeout`, 60 s).
    pub read_header_timeout: Duration,
    /// Longest time a kept-alive connection waits for its next request (Traefik's
    /// `idleTimeout`, 180 s). Connections handed to hyper use `read_header_timeout` for this.
    pub idle_timeout: Duration,
    /// Longest time from the end of a request's head to the end of its response (Traefik's
    /// `writeTimeout`): past it the connection is closed (an HTTP/2 stream is reset).
    /// `None` for no limit, the default.
    pub write_timeout: Option<Duration>,
    /// Requests served on one HTTP/1.1 connection before it is closed (the last answer says
    /// `connection: close`); 0 for no limit (Traefik's `keepAliveMaxRequests`).
    pub keep_alive_max_requests: u64,
    /// Longest life of a kept-alive HTTP/1.1 connection: the first answer after it says
    /// `connection: close` (Traefik's `keepAliveMaxTime`); `None` for no limit.
    pub keep_alive_max_time: Option<Duration>,
    /// Largest request head, in bytes.
    pub max_header_bytes: usize,
    /// How long a graceful shutdown waits for in-flight requests.
    pub grace_period: Duration,
}

/// An entry point redirection.
#[derive(Debug, Clone)]
pub struct Redirect {
    pub scheme: String,
    pub port: u16,
    pub permanent: bool,
}

impl EntryPointConfig {
    /// An entry point with the defaults (plain HTTP, 60 s head and 180 s idle timeouts,
    /// 64 KiB heads, no keep-alive limits).
    pub fn new(name: &str, listen: SocketAddr) -> EntryPointConfig {
        EntryPointConfig {
            name: name.to_string(),
            listen,
            tls: false,
            redirect_to: None,
            trusted_ips: Vec::new(),
            proxy_protocol_trusted: Vec::new(),
            read_header_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(180),
            write_timeout: None,
            keep_alive_max_requests: 0,
            keep_alive_max_time: None,
            max_header_bytes: 64 * 1024,
            grace_period: Duration::from_secs(10),
        }
    }
}

pub(crate) struct EntryPoint {
    pub(crate) config: EntryPointConfig,
    pub(crate) listener: TcpListener,
}

/// Serves one entry point until `stop` turns true, then drains.
pub(crate) async fn serve(
    ep: EntryPoint,
    shared: Arc<Shared>,
    tls: Option<Arc<arc_swap::ArcSwap<crate::tls::TlsPolicy>>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    dispatch: crate::worker::Dispatch,
) {
    let config = Arc::new(ep.config);
    // Every connection holds a receiver: a drain is asked for through it, and it is over
    // when they are all gone.
    let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.read_header_timeout)
        .max_buf_size(config.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let builder = Arc::new(builder);
    let local_port = ep.listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let metrics = shared.metrics.entry_point(&config.name);
    loop {
        let accepted = tokio::select! {
            a = ep.listener.accept() => a,
            r = stop.changed() => {
                if r.is_err() || *stop.borrow() { break }
                continue;
            }
        };
        let (tcp, mut peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(entry_point = %config.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let config = config.clone();
        let builder = builder.clone();
        let tls = tls.clone();
        let drain = drain_rx.clone();
        let metrics = metrics.clone();
        dispatch.spawn(tcp, move |mut tcp, on_worker| async move {
            let open = (metrics.open_connection(), on_worker);
            if config
                .proxy_protocol_trusted
                .iter()
                .any(|n| n.contains(peer.ip()))
            {
                match crate::proxy_protocol::read_header(&mut tcp, config.read_header_timeout).await
                {
                    Ok(Some(client)) => peer = client,
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(entry_point = %config.name, %peer, error = %e, "PROXY header refused");
                        return;
                    }
                }
            }
            let info = Arc::new(ConnInfo::new(peer, local_port, config.clone(), metrics, open));
            match tls {
                None => {
                    let hyper = Hyper {
                        builder,
                        shared,
                        info,
                        tls: false,
                    };
                    crate::h1_server::serve(tcp, hyper, drain).await;
                }
                Some(policy) => {
                    // Read the ClientHello first: the server name picks the TLS options.
                    let handshake = tokio::time::timeout(config.read_header_timeout, async move {
                        let start = tokio_rustls::LazyConfigAcceptor::new(
                            rustls::server::Acceptor::default(),
                            tcp,
                        )
                        .await?;
                        let tls_config = policy.load().for_sni(start.client_hello().server_name());
                        start.into_stream(tls_config).await
                    })
                    .await;
                    let stream = match handshake {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(entry_point = %config.name, %peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                        crate::h2::serve(stream, bytes::Bytes::new(), shared, info, true, drain)
                            .await;
                    } else {
                        let hyper = Hyper {
                            builder,
                            shared,
                            info,
                            tls: true,
                        };
                        crate::h1_server::serve(stream, hyper, drain).await;
                    }
                }
            }
        });
    }
    drop(ep.listener);
    drain_tx.send_replace(true);
    drop(drain_rx);
    tokio::select! {
        () = drain_tx.closed() => {}
        () = tokio::time::sleep(config.grace_period) => {
            tracing::warn!(entry_point = %config.name, "grace period over; closing remaining connections");
        }
    }
}
