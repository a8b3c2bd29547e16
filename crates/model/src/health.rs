//! Route53 health checks as data: a check's configuration with Route53's rules and defaults,
//! the threshold rule that turns probe results into a status, and the view of unhealthy checks
//! that the lookup answers by. Probing is I/O and lives in the DNS server (`dns::health`).

use std::collections::HashSet;
use std::net::IpAddr;

/// Why a health check configuration was refused (Route53's `InvalidInput`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthCheckError {
    #[error("Invalid parameter: {0}")]
    Invalid(String),
    #[error("health checks of type {0} are not supported (HTTP, HTTPS and TCP are)")]
    Unsupported(String),
}

/// How an endpoint is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckType {
    /// A TCP connection, then an HTTP GET answered with a 2xx or 3xx status.
    Http,
    /// The same over TLS; the certificate is not validated (as Route53 does not).
    Https,
    /// A TCP connection.
    Tcp,
}

impl CheckType {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckType::Http => "HTTP",
            CheckType::Https => "HTTPS",
            CheckType::Tcp => "TCP",
        }
    }
}

/// The two request intervals Route53 offers (fast and standard), in seconds.
pub const REQUEST_INTERVALS: [u32; 2] = [10, 30];
/// Route53's defaults.
pub const DEFAULT_REQUEST_INTERVAL: u32 = 30;
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;
/// Route53's bounds.
pub const MAX_FAILURE_THRESHOLD: u32 = 10;
pub const MAX_RESOURCE_PATH: usize = 255;
pub const MAX_FQDN: usize = 255;

/// A health check's configuration, checked and with Route53's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HealthCheckConfig {
    pub check_type: CheckType,
    /// The endpoint's address; without it the FQDN is resolved at every probe.
    pub ip_address: Option<IpAddr>,
    /// The endpoint's name: the Host header (and TLS server name) when given.
    pub fqdn: Option<String>,
    pub port: u16,
    /// The path requested by HTTP and HTTPS checks, as given (`/` when absent).
    pub resource_path: Option<String>,
    /// Seconds between probes.
    pub request_interval: u32,
    /// Consecutive results needed to change the status.
    pub failure_threshold: u32,
    /// Report healthy when the endpoint fails, and the other way around.
    pub inverted: bool,
    /// Not probed, and always healthy.
    pub disabled: bool,
    /// Send the FQDN as TLS server name (HTTPS).
    pub enable_sni: bool,
}

/// The fields of a `HealthCheckConfig` element as a client sent them (`None`: absent).
#[derive(Debug, Clone, Copy, Default)]
pub struct ConfigText<'a> {
    pub check_type: Option<&'a str>,
    pub ip_address: Option<&'a str>,
    pub port: Option<&'a str>,
    pub resource_path: Option<&'a str>,
    pub fqdn: Option<&'a str>,
    pub request_interval: Option<&'a str>,
    pub failure_threshold: Option<&'a str>,
    pub measure_latency: Option<&'a str>,
    pub inverted: Option<&'a str>,
    pub disabled: Option<&'a str>,
    pub enable_sni: Option<&'a str>,
}

impl HealthCheckConfig {
    /// Checks a configuration against Route53's rules and fills in its defaults: port 80 for
    /// HTTP and 443 for HTTPS (TCP needs one), a request interval of 10 or 30 seconds (30),
    /// a failure threshold of 1 to 10 (3), SNI on for HTTPS. Unlike Route53, which probes from
    /// the internet, loopback and private addresses are accepted: edgeplane probes from where
    /// it runs.
    pub fn from_text(t: &ConfigText<'_>) -> Result<Self, HealthCheckError> {
        let invalid = |m: String| HealthCheckError::Invalid(m);
        let check_type = match t.check_type {
            None => return Err(invalid("Type is required".into())),
            Some("HTTP") => CheckType::Http,
            Some("HTTPS") => CheckType::Https,
            Some("TCP") => CheckType::Tcp,
            Some(
                other @ ("HTTP_STR_MATCH" | "HTTPS_STR_MATCH" | "CALCULATED" | "CLOUDWATCH_METRIC"
                | "RECOVERY_CONTROL"),
            ) => return Err(HealthCheckError::Unsupported(other.to_string())),
            Some(other) => {
                return Err(invalid(format!(
                    "Type {other:?} is not a health check type"
                )))
            }
        };
        let ip_address = match t.ip_address {
            Some(text) => {
                let ip: IpAddr = text
                    .parse()
                    .map_err(|_| invalid(format!("IPAddress {text:?} is not an IP address")))?;
                if ip.is_unspecified() || ip.is_multicast() {
                    return Err(invalid(format!("IPAddress {ip} cannot be checked")));
                }
                Some(ip)
            }
            None => None,
        };
        let fqdn = match t.fqdn {
            Some(name) => {
                let ok = !name.is_empty()
                    && name.len() <= MAX_FQDN
                    && !name.starts_with('.')
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
                if !ok {
                    return Err(invalid(format!(
                        "FullyQualifiedDomainName {name:?} is not a host name"
                    )));
                }
                Some(name.to_string())
            }
            None => None,
        };
        if ip_address.is_none() && fqdn.is_none() {
            return Err(invalid(
                "a health check needs an IPAddress or a FullyQualifiedDomainName".into(),
            ));
        }
        let port = match (t.port, check_type) {
            (Some(p), _) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| invalid(format!("Port {p:?} is not a port (1-65535)")))?,
            (None, CheckType::Http) => 80,
            (None, CheckType::Https) => 443,
            (None, CheckType::Tcp) => {
                return Err(invalid("a TCP health check needs a Port".into()))
            }
        };
        let resource_path = match t.resource_path {
            Some(p) => {
                if p.len() > MAX_RESOURCE_PATH || !p.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(invalid(format!(
                        "ResourcePath must be at most {MAX_RESOURCE_PATH} visible ASCII characters"
                    )));
                }
                Some(p.to_string())
            }
            None => None,
        };
        let request_interval = match t.request_interval {
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|v| REQUEST_INTERVALS.contains(v))
                .ok_or_else(|| invalid(format!("RequestInterval {v:?} must be 10 or 30")))?,
            None => DEFAULT_REQUEST_INTERVAL,
        };
        let failure_threshold = match t.failure_threshold {
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|v| (1..=MAX_FAILURE_THRESHOLD).contains(v))
                .ok_or_else(|| {
                    invalid(format!(
                        "FailureThreshold {v:?} must be 1 to {MAX_FAILURE_THRESHOLD}"
                    ))
                })?,
            None => DEFAULT_FAILURE_THRESHOLD,
        };
        let flag = |name: &str, v: Option<&str>, default: bool| match v {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(invalid(format!("{name} {other:?} must be true or false"))),
        };
        if flag("MeasureLatency", t.measure_latency, false)? {
            return Err(invalid("MeasureLatency is not supported".into()));
        }
        Ok(HealthCheckConfig {
            check_type,
            ip_address,
            fqdn,
            port,
            resource_path,
            request_interval,
            failure_threshold,
            inverted: flag("Inverted", t.inverted, false)?,
            disabled: flag("Disabled", t.disabled, false)?,
            enable_sni: flag("EnableSNI", t.enable_sni, check_type == CheckType::Https)?,
        })
    }

    /// The Host header of HTTP(S) probes: the FQDN (else the address), with the port unless it
    /// is the scheme's default (Route53's rule).
    pub fn host_header(&self) -> String {
        let host = match (&self.fqdn, self.ip_address) {
            (Some(name), _) => name.clone(),
            (None, Some(IpAddr::V6(ip))) => format!("[{ip}]"),
            (None, Some(ip)) => ip.to_string(),
            (None, None) => String::new(),
        };
        let default_port = match self.check_type {
            CheckType::Http => 80,
            CheckType::Https => 443,
            CheckType::Tcp => 0,
        };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The request target of HTTP(S) probes.
    pub fn request_path(&self) -> String {
        match self.resource_path.as_deref() {
            None | Some("") => "/".to_string(),
            Some(p) if p.starts_with('/') => p.to_string(),
            Some(p) => format!("/{p}"),
        }
    }

    /// Whether a probe result counts as healthy (inverted checks count failures).
    pub fn counts_as_healthy(&self, success: bool) -> bool {
        success != self.inverted
    }
}

/// A health check as stored: its ID, caller reference and configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub id: String,
    pub caller_reference: String,
    pub config: HealthCheckConfig,
}

/// A check's status from its probe results. A new check is healthy (Route53 considers it
/// healthy until there are results); the status flips after `failure_threshold` consecutive
/// results that disagree with it, in either direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracker {
    healthy: bool,
    streak: u32,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            healthy: true,
            streak: 0,
        }
    }
}

impl Tracker {
    pub fn healthy(&self) -> bool {
        self.healthy
    }

    /// Records one result (already inverted for inverted checks); true when the status changed.
    pub fn record(&mut self, healthy: bool, threshold: u32) -> bool {
        if healthy == self.healthy {
            self.streak = 0;
            return false;
        }
        self.streak += 1;
        if self.streak >= threshold.max(1) {
            self.healthy = healthy;
            self.streak = 0;
            return true;
        }
        false
    }
}

/// The outcome of one probe, as GetHealthCheckStatus reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub success: bool,
    /// Route53-style status text, e.g. `Success: HTTP Status Code 200, OK`.
    pub report: String,
    /// Seconds since the Unix epoch.
    pub checked_at: u64,
}

/// What the prober knows of one check: its status and its last probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthStatus {
    pub healthy: bool,
    pub last: Option<Observation>,
}

/// The health checks that are unhealthy now: what the lookup answers by. Any other ID (no
/// check, a check not probed yet, a disabled or deleted check) is healthy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthView {
    unhealthy: HashSet<String>,
}

impl HealthView {
    /// Every check healthy.
    pub fn all_healthy() -> Self {
        HealthView::default()
    }

    pub fn with_unhealthy<I, S>(ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        HealthView {
            unhealthy: ids.into_iter().map(Into::into).collect(),
        }
    }

    /// Whether a record set with this health check (or none) may be answered.
    pub fn is_healthy(&self, health_check_id: Option<&str>) -> bool {
        health_check_id.is_none_or(|id| !self.unhealthy.contains(id))
    }

    pub fn unhealthy_count(&self) -> usize {
        self.unhealthy.len()
    }
}

#[cfg(test)]
mod tests;
