//! A real HTTP backend for the tests: answers with what it received (`name`, method, path,
//! headers, body length), streams large bodies back (`/echo`, `/bytes?n=N`), echoes upgraded
//! connections, and can be slow on purpose (`/slow?ms=N`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A backend that names itself `name` in every answer. It stops with the test's runtime.
pub(crate) async fn start(name: &'static str) -> SocketAddr {
    start_flagged(name).await.0
}

/// A backend whose `/health` answers 200 while the flag is true, 503 otherwise.
pub(crate) async fn start_flagged(name: &'static str) -> (SocketAddr, Arc<AtomicBool>) {
    let healthy = Arc::new(AtomicBool::new(true));
    let flag = healthy.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let flag = flag.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| answer(name, flag.clone(), req));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, healthy)
}

async fn answer(
    name: &'static str,
    healthy: Arc<AtomicBool>,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    if path == "/health" {
        let mut r = Response::new(Full::new(Bytes::from_static(b"health\n")));
        if !healthy.load(Ordering::Relaxed) {
            *r.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
        }
        return Ok(r);
    }
    if path.contains("/slow") {
        let ms = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("ms="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(500);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if path == "/bytes" {
        // `/bytes?n=N`: N octets, for large responses.
        let n: usize = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("n="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let body: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        return Ok(Response::new(Full::new(Bytes::from(body))));
    }
    if req.headers().get("upgrade").is_some() {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut()
            .insert("connection", "upgrade".parse().expect("literal"));
        r.headers_mut()
            .insert("upgrade", "echo".parse().expect("literal"));
        return Ok(r);
    }
    let mut text = format!(
        "backend={name}\nmethod={}\npath={}\nversion={:?}\n",
        req.method(),
        req.uri().path_and_query().map_or("", |p| p.as_str()),
        req.version()
    );
    for (k, v) in req.headers() {
        text.push_str(&format!("{k}={}\n", v.to_str().unwrap_or("?")));
    }
    let (_, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if path == "/echo" {
        return Ok(Response::new(Full::new(body)));
    }
    text.push_str(&format!("body-length={}\n", body.len()));
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut()
        .insert("x-backend", name.parse().expect("literal"));
    r.headers_mut()
        .insert("keep-alive", "timeout=5".parse().expect("literal"));
    Ok(r)
}

/// A TLS backend (ALPN h2 and http/1.1) with this certificate; when `client_ca` is given it
/// requires a client certificate from that CA.
pub(crate) async fn start_tls(
    name: &'static str,
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca: Option<&[u8]>,
) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    let chain: Vec<rustls::pki_types::CertificateDer<'static>> =
        rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .expect("chain");
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem).expect("key");
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca) {
                roots.add(c.expect("ca")).expect("add");
            }
            let v =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .expect("verifier");
            builder.with_client_cert_verifier(v)
        }
    };
    let mut config = builder.with_single_cert(chain, key).expect("cert");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("addr");
    let flag = Arc::new(AtomicBool::new(true));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let flag = flag.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req| answer(name, flag.clone(), req));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}
