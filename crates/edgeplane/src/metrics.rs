//! The Prometheus endpoint: `GET /metrics` over plain HTTP/1.1 on loopback by default.
//! Only that one path exists; everything else gets 404, and requests are size- and time-bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dns::stats::Stats;
use store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// Binds the metrics endpoint.
pub(crate) async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "metrics listening");
    Ok(listener)
}

/// Serves `GET /metrics` until `stop` fires.
pub(crate) async fn serve(
    listener: TcpListener,
    store: Store,
    stats: Vec<Arc<Stats>>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let stats = Arc::new(stats);
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            accepted = listener.accept() => {
                let Ok((mut stream, _)) = accepted else { continue };
                let store = store.clone();
                let stats = Arc::clone(&stats);
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(5), async {
                        let mut head = Vec::with_capacity(512);
                        let mut buf = [0u8; 1024];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD {
                            let n = stream.read(&mut buf).await?;
                            if n == 0 { break; }
                            head.extend_from_slice(&buf[..n]);
                        }
                        let first = head.split(|&b| b == b'\r').next().unwrap_or(&[]);
                        let ok = first.starts_with(b"GET /metrics ") || first == b"GET /metrics";
                        let (status, body) = if ok {
                            ("200 OK", render(&store, &stats))
                        } else {
                            ("404 Not Found", "not found\n".to_string())
                        };
                        let resp = format!(
                            "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        stream.write_all(resp.as_bytes()).await?;
                        stream.shutdown().await
                    }).await;
                });
            }
        }
    }
}

fn render(store: &Store, stats: &[Arc<Stats>]) -> String {
    let snapshot = store.snapshot();
    let mut out = String::new();
    out.push_str("# HELP edgeplane_store_generation Snapshot generation last published by the store.\n# TYPE edgeplane_store_generation gauge\n");
    out.push_str(&format!(
        "edgeplane_store_generation {}\n",
        snapshot.generation
    ));
    out.push_str("# HELP edgeplane_hosted_zones Hosted zones in the store.\n# TYPE edgeplane_hosted_zones gauge\n");
    out.push_str(&format!(
        "edgeplane_hosted_zones {}\n",
        snapshot.zones.len()
    ));
    let sets: usize = snapshot
        .zones
        .values()
        .map(|z| z.zone().records.len())
        .sum();
    out.push_str("# HELP edgeplane_record_sets Record sets across all hosted zones.\n# TYPE edgeplane_record_sets gauge\n");
    out.push_str(&format!("edgeplane_record_sets {sets}\n"));
    // Sum the per-listener counters into one family.
    let total = Stats::default();
    for s in stats {
        use std::sync::atomic::Ordering::Relaxed;
        for (a, b) in [
            (&total.answer, &s.answer),
            (&total.nodata, &s.nodata),
            (&total.nxdomain, &s.nxdomain),
            (&total.referral, &s.referral),
            (&total.refused, &s.refused),
            (&total.formerr, &s.formerr),
            (&total.notimp, &s.notimp),
            (&total.truncated, &s.truncated),
            (&total.dropped, &s.dropped),
            (&total.transfers, &s.transfers),
        ] {
            a.fetch_add(b.load(Relaxed), Relaxed);
        }
    }
    out.push_str(&total.render_prometheus());
    out
}
