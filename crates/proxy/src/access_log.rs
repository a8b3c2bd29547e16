//! Access logs, one line a request, in Traefik's common log format or as JSON. Lines are
//! handed to a writer task through a bounded queue, so a slow disk never slows requests; when
//! the queue is full lines are dropped and counted.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

/// Where and how access logs are written.
#[derive(Debug, Clone)]
pub struct AccessLogConfig {
    /// A file (appended to), or `None` for standard output.
    pub path: Option<PathBuf>,
    pub format: AccessLogFormat,
}

/// Traefik's two formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    Common,
    Json,
}

/// One request, as logged.
#[derive(Debug)]
pub(crate) struct Entry<'a> {
    pub(crate) client: std::net::SocketAddr,
    pub(crate) host: &'a str,
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) proto: &'a str,
    pub(crate) status: u16,
    pub(crate) size: Option<u64>,
    pub(crate) referer: &'a str,
    pub(crate) user_agent: &'a str,
    pub(crate) entry_point: &'a str,
    pub(crate) router: Option<&'a str>,
    pub(crate) service: Option<&'a str>,
    pub(crate) server: Option<&'a str>,
    pub(crate) started: SystemTime,
    pub(crate) duration: Duration,
}

/// The sending side; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct AccessLog {
    tx: mpsc::Sender<String>,
    format: AccessLogFormat,
    count: Arc<AtomicU64>,
    pub(crate) dropped: Arc<AtomicU64>,
}

impl AccessLog {
    /// Opens the destination and starts the writer task.
    pub(crate) fn start(config: &AccessLogConfig) -> std::io::Result<AccessLog> {
        let (tx, mut rx) = mpsc::channel::<String>(8192);
        let mut out: Box<dyn std::io::Write + Send> = match &config.path {
            Some(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
            None => Box::new(std::io::stdout()),
        };
        // A plain thread: writes block, requests never wait for them.
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                while let Some(line) = rx.blocking_recv() {
                    let mut batch = line;
                    while let Ok(more) = rx.try_recv() {
                        batch.push_str(&more);
                        if batch.len() > 64 * 1024 {
                            break;
                        }
                    }
                    if out
                        .write_all(batch.as_bytes())
                        .and_then(|()| out.flush())
                        .is_err()
                    {
                        break;
                    }
                }
            })?;
        Ok(AccessLog {
            tx,
            format: config.format,
            count: Arc::new(AtomicU64::new(0)),
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    pub(crate) fn log(&self, e: &Entry<'_>) {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let line = match self.format {
            AccessLogFormat::Common => common(e, n),
            AccessLogFormat::Json => json(e),
        };
        if self.tx.try_send(line).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn q(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Traefik's CLF: `client - - [time] "METHOD path proto" status size "referer" "agent"
/// count "router" "server" durationms`.
fn common(e: &Entry<'_>, n: u64) -> String {
    let size = e.size.map_or("-".to_string(), |s| s.to_string());
    format!(
        "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\" {} \"{}\" \"{}\" {}ms\n",
        e.client.ip(),
        clf_time(e.started),
        e.method,
        q(e.path),
        e.proto.to_ascii_uppercase(),
        e.status,
        size,
        q(if e.referer.is_empty() { "-" } else { e.referer }),
        q(if e.user_agent.is_empty() {
            "-"
        } else {
            e.user_agent
        }),
        n,
        q(e.router.unwrap_or("-")),
        q(e.server.unwrap_or("-")),
        e.duration.as_millis()
    )
}

fn json(e: &Entry<'_>) -> String {
    let v = serde_json_like(&[
        ("ClientAddr", Val::S(e.client.to_string())),
        ("ClientHost", Val::S(e.client.ip().to_string())),
        ("RequestHost", Val::S(e.host.to_string())),
        ("RequestMethod", Val::S(e.method.to_string())),
        ("RequestPath", Val::S(e.path.to_string())),
        ("RequestProtocol", Val::S(e.proto.to_ascii_uppercase())),
        ("DownstreamStatus", Val::N(u64::from(e.status))),
        ("DownstreamContentSize", e.size.map_or(Val::Null, Val::N)),
        ("entryPointName", Val::S(e.entry_point.to_string())),
        (
            "RouterName",
            e.router.map_or(Val::Null, |r| Val::S(r.to_string())),
        ),
        (
            "ServiceName",
            e.service.map_or(Val::Null, |s| Val::S(s.to_string())),
        ),
        (
            "ServiceURL",
            e.server.map_or(Val::Null, |s| Val::S(s.to_string())),
        ),
        (
            "Duration",
            Val::N(u64::try_from(e.duration.as_nanos()).unwrap_or(u64::MAX)),
        ),
        ("StartUTC", Val::S(rfc3339(e.started))),
        ("request_User-Agent", Val::S(e.user_agent.to_string())),
    ]);
    v + "\n"
}

enum Val {
    S(String),
    N(u64),
    Null,
}

/// A flat JSON object (keys are literals, string values escaped).
fn serde_json_like(fields: &[(&str, Val)]) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(k);
        out.push_str("\":");
        match v {
            Val::S(s) => {
                out.push('"');
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            Val::N(n) => out.push_str(&n.to_string()),
            Val::Null => out.push_str("null"),
        }
    }
    out.push('}');
    out
}

/// (year, month, day, hour, minute, second) in UTC.
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32, u32) {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
        d.subsec_millis(),
    )
}

fn clf_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, _) = civil(t);
    let name = MONTHS
        .get(mo.saturating_sub(1) as usize)
        .copied()
        .unwrap_or("Jan");
    format!("{d:02}/{name}/{y}:{h:02}:{mi:02}:{s:02} +0000")
}

fn rfc3339(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, ms) = civil(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            client: "192.0.2.9:4321".parse().expect("literal"),
            host: "app.test",
            method: "GET",
            path: "/a?\"b\"",
            proto: "http/1.1",
            status: 200,
            size: Some(12),
            referer: "",
            user_agent: "curl/8",
            entry_point: "web",
            router: Some("r@file"),
            service: Some("s@file"),
            server: Some("http://10.0.0.1:80"),
            started: SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_629_400),
            duration: Duration::from_millis(7),
        }
    }

    #[test]
    fn common_log_format() {
        assert_eq!(
            common(&entry(), 3),
            "192.0.2.9 - - [01/Dec/2025:22:50:00 +0000] \"GET /a?\\\"b\\\" HTTP/1.1\" 200 12 \"-\" \"curl/8\" 3 \"r@file\" \"http://10.0.0.1:80\" 7ms\n"
        );
    }

    #[test]
    fn json_format() {
        let line = json(&entry());
        assert!(
            line.starts_with("{\"ClientAddr\":\"192.0.2.9:4321\",\"ClientHost\":\"192.0.2.9\""),
            "{line}"
        );
        assert!(line.contains("\"RequestPath\":\"/a?\\\"b\\\"\""), "{line}");
        assert!(
            line.contains("\"DownstreamStatus\":200,\"DownstreamContentSize\":12"),
            "{line}"
        );
        assert!(
            line.contains("\"Duration\":7000000,\"StartUTC\":\"2025-12-01T22:50:00.000Z\""),
            "{line}"
        );
    }
}
