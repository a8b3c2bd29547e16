//! The PROXY protocol (HAProxy's, versions 1 and 2): a load balancer in front of the proxy
//! prefixes each connection with the client's real address. Read only from trusted sources,
//! before TLS and HTTP; a connection from a trusted source without the header is served as it
//! is.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line (RFC-like spec: 107 bytes with CRLF).
const V1_MAX: usize = 107;

/// Why a PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("malformed PROXY header: {0}")]
    Malformed(&'static str),
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
    #[error("no complete PROXY header in time")]
    Timeout,
}

/// Reads a PROXY header if the connection starts with one; returns the client address it
/// names (`None` when there is no header, or for `LOCAL`/`UNKNOWN` connections).
pub async fn read_header(
    tcp: &mut TcpStream,
    within: Duration,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    tokio::time::timeout(within, read(tcp))
        .await
        .map_err(|_| ProxyHeaderError::Timeout)?
}

async fn read(tcp: &mut TcpStream) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    // Peek until the first bytes tell: a v1 or v2 signature, or anything else (no header).
    let mut head = [0u8; 12];
    loop {
        let n = tcp.peek(&mut head).await?;
        if n == 0 {
            return Ok(None);
        }
        let v1 = head[..n.min(6)] == b"PROXY "[..n.min(6)];
        let v2 = head[..n] == V2_SIGNATURE[..n];
        if v1 && n >= 6 {
            return read_v1(tcp).await;
        }
        if v2 && n >= 12 {
            return read_v2(tcp).await;
        }
        if !v1 && !v2 {
            return Ok(None);
        }
        // A prefix of a signature so far: wait for more bytes.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn read_v1(tcp: &mut TcpStream) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut line = Vec::with_capacity(V1_MAX);
    loop {
        let b = tcp.read_u8().await?;
        line.push(b);
        if line.ends_with(b"\r\n") {
            break;
        }
        if line.len() >= V1_MAX {
            return Err(ProxyHeaderError::Malformed("v1 line too long"));
        }
    }
    let text = std::str::from_utf8(&line[..line.len() - 2])
        .map_err(|_| ProxyHeaderError::Malformed("v1 not ASCII"))?;
    parse_v1(text)
}

/// Parses a v1 line without its CRLF.
pub fn parse_v1(text: &str) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut parts = text.split(' ');
    if parts.next() != Some("PROXY") {
        return Err(ProxyHeaderError::Malformed("v1 must start with PROXY"));
    }
    let family = parts
        .next()
        .ok_or(ProxyHeaderError::Malformed("v1 family missing"))?;
    if family == "UNKNOWN" {
        return Ok(None);
    }
    let fields: Vec<&str> = parts.collect();
    let [src, _dst, sport, _dport] = fields[..] else {
        return Err(ProxyHeaderError::Malformed("v1 needs four fields"));
    };
    let ip: IpAddr = src
        .parse()
        .map_err(|_| ProxyHeaderError::Malformed("v1 source address"))?;
    let port: u16 = sport
        .parse()
        .map_err(|_| ProxyHeaderError::Malformed("v1 source port"))?;
    match (family, ip) {
        ("TCP4", IpAddr::V4(_)) | ("TCP6", IpAddr::V6(_)) => Ok(Some(SocketAddr::new(ip, port))),
        _ => Err(ProxyHeaderError::Malformed(
            "v1 family and address disagree",
        )),
    }
}

async fn read_v2(tcp: &mut TcpStream) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut fixed = [0u8; 16];
    tcp.read_exact(&mut fixed).await?;
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    let mut rest = vec![0u8; len];
    tcp.read_exact(&mut rest).await?;
    parse_v2(&fixed, &rest)
}

/// Parses a v2 header: its 16 fixed bytes and the address block that follows.
pub fn parse_v2(fixed: &[u8; 16], rest: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    if fixed[..12] != V2_SIGNATURE {
        return Err(ProxyHeaderError::Malformed("v2 signature"));
    }
    let ver_cmd = fixed[12];
    if ver_cmd >> 4 != 2 {
        return Err(ProxyHeaderError::Malformed("v2 version"));
    }
    match ver_cmd & 0x0f {
        0 => return Ok(None), // LOCAL: health checks from the balancer itself
        1 => {}
        _ => return Err(ProxyHeaderError::Malformed("v2 command")),
    }
    match fixed[13] >> 4 {
        1 if rest.len() >= 12 => {
            let ip = Ipv4Addr::new(rest[0], rest[1], rest[2], rest[3]);
            let port = u16::from_be_bytes([rest[8], rest[9]]);
            Ok(Some(SocketAddr::new(IpAddr::V4(ip), port)))
        }
        2 if rest.len() >= 36 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&rest[..16]);
            let port = u16::from_be_bytes([rest[32], rest[33]]);
            Ok(Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), port)))
        }
        0 => Ok(None),
        _ => Err(ProxyHeaderError::Malformed("v2 address block")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_lines() {
        assert_eq!(
            parse_v1("PROXY TCP4 203.0.113.7 10.0.0.1 51234 443").expect("valid"),
            Some("203.0.113.7:51234".parse().expect("literal"))
        );
        assert_eq!(
            parse_v1("PROXY TCP6 2001:db8::7 2001:db8::1 4000 443").expect("valid"),
            Some("[2001:db8::7]:4000".parse().expect("literal"))
        );
        assert_eq!(parse_v1("PROXY UNKNOWN").expect("valid"), None);
        for bad in [
            "PROXY TCP4 1.2.3.4",
            "PROXY TCP4 ::1 ::1 1 2",
            "PROXY TCP9 1.2.3.4 1.2.3.4 1 2",
            "PROXY TCP4 a b c d",
            "GET / HTTP/1.1",
        ] {
            assert!(parse_v1(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn v2_headers() {
        let mut fixed = [0u8; 16];
        fixed[..12].copy_from_slice(&V2_SIGNATURE);
        fixed[12] = 0x21;
        fixed[13] = 0x11;
        fixed[15] = 12;
        let rest = [198, 51, 100, 9, 10, 0, 0, 1, 0x1f, 0x90, 1, 187];
        assert_eq!(
            parse_v2(&fixed, &rest).expect("valid"),
            Some("198.51.100.9:8080".parse().expect("literal"))
        );
        fixed[12] = 0x20;
        assert_eq!(parse_v2(&fixed, &rest).expect("valid"), None);
        fixed[12] = 0x31;
        assert!(parse_v2(&fixed, &rest).is_err());
        fixed[12] = 0x21;
        assert!(parse_v2(&fixed, &rest[..4]).is_err());
    }
}
