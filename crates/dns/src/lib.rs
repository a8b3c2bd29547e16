//! Edgeplane's authoritative DNS server.
//!
//! Serves every hosted zone of the store's current snapshot over UDP and TCP: authoritative
//! answers, referrals, wildcards, CNAME chains, EDNS(0) with truncation, AXFR/IXFR to an
//! allow-list, and NOTIFY to secondaries. The wire codec is edgeplane's own (zero-copy query
//! parsing, compression on write); the lookup logic is `model::lookup`.
//!
//! This crate never writes state: it only reads snapshots.

pub mod handler;
mod notify;
mod server;
pub mod stats;
pub mod transfer;
pub mod wire;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub use server::DnsServer;

/// Settings of the DNS server.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Addresses to serve UDP and TCP on.
    pub listen: Vec<SocketAddr>,
    /// Networks allowed to transfer zones (AXFR/IXFR).
    pub allow_transfer: Vec<IpNet>,
    /// Secondaries to NOTIFY when a zone changes.
    pub notify: Vec<SocketAddr>,
    /// UDP worker threads per listen address.
    pub udp_workers: usize,
    /// A TCP connection idle this long is closed.
    pub tcp_idle_timeout: Duration,
    /// Open TCP connections at most; further ones are closed at once.
    pub max_tcp_connections: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 1053))],
            allow_transfer: Vec::new(),
            notify: Vec::new(),
            udp_workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            tcp_idle_timeout: Duration::from_secs(10),
            max_tcp_connections: 1024,
        }
    }
}

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
}
