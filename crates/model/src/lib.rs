//! Edgeplane's model: plain data and pure functions over it.
//!
//! Domain names, record types and values, record sets, hosted zones, change batches, Route53
//! health checks, the authoritative lookup algorithm and the master-file format. This crate
//! does no I/O, has no async code, and knows no wire format but the DNS presentation format,
//! which *is* its data's text form.

pub mod base64;
pub mod health;
pub mod lookup;
pub mod name;
pub mod net;
pub mod record;
pub mod secret;
pub mod svcb;
pub mod text;
pub mod zone;
pub mod zonefile;

pub use name::DomainName;
pub use record::{RecordData, RecordSet, RecordType, Ttl};
pub use zone::{HostedZoneId, Zone};
