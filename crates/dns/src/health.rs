//! The health checker: probes the endpoints of the store's Route53 health checks for real and
//! publishes their status, so that failover, weighted and multivalue answers follow it.
//!
//! A TCP check passes when a connection is established within 10 seconds; an HTTP check when,
//! within 4 seconds of connecting, a GET of the resource path is answered with a 2xx or 3xx
//! status within 2 seconds; an HTTPS check does the same over TLS without validating the
//! certificate (as Route53 does not). Each check is probed every RequestInterval seconds (or
//! at the configured interval) and changes status after FailureThreshold consecutive results
//! that disagree with it (`model::health::Tracker`). Results stay in memory and reach the DNS
//! handler through the store's snapshot (`Store::publish_health`).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use model::health::{
    CheckType, HealthCheck, HealthCheckConfig, HealthStatus, Observation, Tracker,
};
use store::Store;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

/// Route53's budgets: a TCP check's connection, an HTTP(S) check's connection, its response.
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(4);
const HTTP_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Most octets read looking for the status line.
const MAX_STATUS_LINE: usize = 8 * 1024;

/// Settings of the health checker.
#[derive(Debug, Clone, Default)]
pub struct ProberConfig {
    /// Probe every check this often instead of every RequestInterval (10 or 30 s), e.g. to
    /// watch failover happen in seconds on loopback.
    pub interval: Option<Duration>,
}

/// What the checker keeps per health check.
struct CheckState {
    config: HealthCheckConfig,
    tracker: Tracker,
    last_probe: Option<Instant>,
    in_flight: bool,
    last: Option<Observation>,
}

/// Probes every health check of the store until `stop` is set, publishing each result.
pub async fn run(store: Store, config: ProberConfig, mut stop: watch::Receiver<bool>) {
    let tick = config
        .interval
        .map_or(Duration::from_secs(1), |i| i.min(Duration::from_secs(1)))
        .max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (tx, mut results) = mpsc::channel::<(String, Observation)>(256);
    let mut checks: HashMap<String, CheckState> = HashMap::new();
    loop {
        tokio::select! {
            _ = crate::server::stopped(&mut stop) => return,
            _ = ticker.tick() => {
                let listed = {
                    let store = store.clone();
                    tokio::task::spawn_blocking(move || store.health_checks()).await
                };
                let listed: Vec<HealthCheck> = match listed {
                    Ok(Ok(l)) => l,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot list health checks");
                        continue;
                    }
                    Err(_) => continue,
                };
                let before = checks.len();
                checks.retain(|id, _| listed.iter().any(|c| c.id == *id));
                let mut changed = checks.len() != before;
                for check in listed {
                    let state = checks.entry(check.id.clone()).or_insert_with(|| {
                        changed = true;
                        CheckState {
                            config: check.config.clone(),
                            tracker: Tracker::default(),
                            last_probe: None,
                            in_flight: false,
                            last: None,
                        }
                    });
                    if check.config.disabled || state.in_flight {
                        continue;
                    }
                    let every = config.interval.unwrap_or(Duration::from_secs(u64::from(
                        check.config.request_interval,
                    )));
                    if state.last_probe.is_some_and(|t| t.elapsed() < every) {
                        continue;
                    }
                    state.in_flight = true;
                    state.last_probe = Some(Instant::now());
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let observation = probe(&check.config).await;
                        let _ = tx.send((check.id, observation)).await;
                    });
                }
                if changed {
                    publish(&store, &checks).await;
                }
            }
            Some((id, observation)) = results.recv() => {
                let Some(state) = checks.get_mut(&id) else { continue };
                state.in_flight = false;
                let healthy = state.config.counts_as_healthy(observation.success);
                if state.tracker.record(healthy, state.config.failure_threshold) {
                    tracing::info!(
                        health_check = id,
                        healthy = state.tracker.healthy(),
                        report = observation.report,
                        "health check status changed"
                    );
                }
                state.last = Some(observation);
                publish(&store, &checks).await;
            }
        }
    }
}

/// Hands the current statuses to the store (which takes its writer lock: off the runtime).
async fn publish(store: &Store, checks: &HashMap<String, CheckState>) {
    let statuses: BTreeMap<String, HealthStatus> = checks
        .iter()
        .map(|(id, s)| {
            (
                id.clone(),
                HealthStatus {
                    healthy: s.config.disabled || s.tracker.healthy(),
                    last: s.last.clone(),
                },
            )
        })
        .collect();
    let store = store.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.publish_health(statuses)).await {
        tracing::warn!(error = %e, "cannot publish health checks' status");
    }
}

/// Probes an endpoint once.
pub async fn probe(config: &HealthCheckConfig) -> Observation {
    let (success, report) = match probe_endpoint(config).await {
        Ok(r) => (true, format!("Success: {r}")),
        Err(r) => (false, format!("Failure: {r}")),
    };
    Observation {
        success,
        report,
        checked_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    }
}

async fn probe_endpoint(c: &HealthCheckConfig) -> Result<String, String> {
    let addr = endpoint(c).await?;
    match c.check_type {
        CheckType::Tcp => {
            connect(addr, TCP_CONNECT_TIMEOUT).await?;
            Ok("TCP connection established.".to_string())
        }
        CheckType::Http => {
            let stream = connect(addr, HTTP_CONNECT_TIMEOUT).await?;
            http_get(stream, c).await
        }
        CheckType::Https => {
            let stream = connect(addr, HTTP_CONNECT_TIMEOUT).await?;
            let name = match (&c.fqdn, c.enable_sni) {
                (Some(fqdn), true) => {
                    rustls::pki_types::ServerName::try_from(fqdn.trim_end_matches('.').to_string())
                        .map_err(|_| format!("{fqdn} is not a TLS server name"))?
                }
                // An address as server name: rustls sends no SNI.
                _ => rustls::pki_types::ServerName::IpAddress(addr.ip().into()),
            };
            let config = tls_config().ok_or_else(|| "TLS is unavailable".to_string())?;
            let connector = tokio_rustls::TlsConnector::from(config);
            let tls = tokio::time::timeout(HTTP_RESPONSE_TIMEOUT, connector.connect(name, stream))
                .await
                .map_err(|_| "TLS handshake timed out".to_string())?
                .map_err(|e| format!("TLS handshake failed: {e}"))?;
            http_get(tls, c).await
        }
    }
}

/// The address to probe: the configured one, else the FQDN resolved now.
async fn endpoint(c: &HealthCheckConfig) -> Result<SocketAddr, String> {
    if let Some(ip) = c.ip_address {
        return Ok(SocketAddr::new(ip, c.port));
    }
    let name = c.fqdn.as_deref().unwrap_or("");
    tokio::net::lookup_host((name.trim_end_matches('.'), c.port))
        .await
        .map_err(|e| format!("cannot resolve {name}: {e}"))?
        .next()
        .ok_or_else(|| format!("{name} has no address"))
}

async fn connect(addr: SocketAddr, limit: Duration) -> Result<TcpStream, String> {
    match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
        Err(_) => Err(format!("Connection to {addr} timed out")),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err(format!("Connection to {addr} refused"))
        }
        Ok(Err(e)) => Err(format!("Connection to {addr} failed: {e}")),
        Ok(Ok(s)) => Ok(s),
    }
}

/// Sends the GET and reads the status line: 2xx and 3xx pass.
async fn http_get<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    c: &HealthCheckConfig,
) -> Result<String, String> {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: edgeplane-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        c.request_path(),
        c.host_header()
    );
    let exchange = async {
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("cannot send the request: {e}"))?;
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 512];
        while !buf.contains(&b'\n') {
            if buf.len() >= MAX_STATUS_LINE {
                return Err("no HTTP status line".to_string());
            }
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("cannot read the response: {e}"))?;
            if n == 0 {
                return Err("the connection closed before a response".to_string());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok(buf)
    };
    let buf = tokio::time::timeout(HTTP_RESPONSE_TIMEOUT, exchange)
        .await
        .map_err(|_| "Timeout: no response within 2 seconds".to_string())??;
    let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let line = String::from_utf8_lossy(&buf[..line_end]);
    let mut parts = line.trim_end().splitn(3, ' ');
    let (version, code, reason) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
    let code: u16 = match (version, code.and_then(|c| c.parse().ok())) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => code,
        _ => return Err("the response is not HTTP".to_string()),
    };
    let text = format!("HTTP Status Code {code}, {reason}");
    if (200..400).contains(&code) {
        Ok(text)
    } else {
        Err(text)
    }
}

/// TLS without certificate validation (Route53 does not validate endpoints' certificates);
/// handshake signatures are still verified.
fn tls_config() -> Option<Arc<rustls::ClientConfig>> {
    static CONFIG: OnceLock<Option<Arc<rustls::ClientConfig>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
                .ok()?;
            Some(Arc::new(
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                    .with_no_client_auth(),
            ))
        })
        .clone()
}

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests;
