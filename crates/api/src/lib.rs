//! Edgeplane's HTTP APIs and their authentication.
//!
//! `sigv4` signs and verifies AWS Signature Version 4; `route53` is the Route53-compatible REST
//! API on the embedded store; `admin` is the admin API (secrets), whose
//! every route authenticates the caller against the store's identities and lets the secret
//! store enforce the caller's access rules. This crate serves no DNS and holds no state of its
//! own.

pub mod admin;
pub mod auth;
pub mod iam;
pub mod policy;
pub mod route53;
pub mod sigv4;

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
