//! IP networks in CIDR notation, as allow-lists and rules use them (zone transfers, the
//! proxy's `ClientIP` matcher and trusted forwarders).

use std::net::IpAddr;

/// An IP network in CIDR notation (`192.0.2.0/24`, `::1/128`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

/// Why a network was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid network {0:?}: expected ADDRESS or ADDRESS/PREFIX")]
pub struct BadNet(pub String);

impl std::str::FromStr for IpNet {
    type Err = BadNet;
    fn from_str(s: &str) -> Result<Self, BadNet> {
        IpNet::parse(s)
    }
}

impl IpNet {
    /// Parses `ADDRESS` or `ADDRESS/PREFIX`.
    pub fn parse(s: &str) -> Result<IpNet, BadNet> {
        let bad = || BadNet(s.to_string());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|&p| p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(IpNet { addr, prefix })
    }

    /// Whether `ip` is inside this network; an IPv4-mapped IPv6 address counts as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Decodes `application/x-www-form-urlencoded` text: `%XX` escapes and `+` as a space; an
/// invalid escape stays as it is, invalid UTF-8 becomes U+FFFD.
pub fn form_decode(s: &str) -> String {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(v) => {
                    out.push(v);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let n = IpNet::parse("192.0.2.0/24").expect("valid");
        assert!(n.contains("192.0.2.200".parse().expect("literal")));
        assert!(n.contains("::ffff:192.0.2.1".parse().expect("literal")));
        assert!(!n.contains("192.0.3.1".parse().expect("literal")));
        assert!(!n.contains("2001:db8::1".parse().expect("literal")));
        let any = IpNet::parse("0.0.0.0/0").expect("valid");
        assert!(any.contains("203.0.113.1".parse().expect("literal")));
        let v6 = IpNet::parse("2001:db8::/32").expect("valid");
        assert!(v6.contains("2001:db8::5".parse().expect("literal")));
        assert!(IpNet::parse("10.0.0.0/33").is_err());
        assert!(IpNet::parse("nope").is_err());
    }

    #[test]
    fn form_decoding() {
        assert_eq!(form_decode("a%20b+c"), "a b c");
        assert_eq!(form_decode("100%"), "100%");
        assert_eq!(form_decode("%zz%4"), "%zz%4");
        assert_eq!(form_decode("J%C3%BCrgen"), "Jürgen");
    }
}
