//! Edgeplane's authoritative DNS server.
//!
//! Serves every hosted zone of the store's current snapshot over UDP and TCP: authoritative
//! answers, referrals, wildcards, CNAME chains, EDNS(0) with truncation, AXFR/IXFR to an
//! allow-list, and NOTIFY to secondaries. The wire codec is edgeplane's own (zero-copy query
//! parsing, compression on write); the lookup logic is `model::lookup`. `health` probes the
//! endpoints of Route53 health checks and publishes their status to the store's snapshot,
//! which routing policies answer by.
//!
//! This crate never writes zones: it only reads snapshots (the health checker publishes its
//! in-memory results through the store).

pub mod handler;
pub mod health;
mod notify;
mod server;
pub mod stats;
pub mod transfer;
pub mod wire;

use std::net::SocketAddr;
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

pub use model::net::{BadNet, IpNet};
