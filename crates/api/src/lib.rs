//! Edgeplane's HTTP APIs and their authentication.
//!
//! `sigv4` signs and verifies AWS Signature Version 4; `admin` is the admin API (secrets), whose
//! every route authenticates the caller against the store's identities and lets the secret
//! store enforce the caller's access rules. This crate serves no DNS and holds no state of its
//! own.

pub mod admin;
pub mod sigv4;
