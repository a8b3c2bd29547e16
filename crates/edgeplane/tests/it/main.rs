//! Integration tests: the real `edgeplane` binary, queried and transferred from by real peers
//! (kdig, dig, Knot, NSD) on loopback ports chosen at run time. A missing peer fails the test.

mod acme;
mod acme_issuer;
mod admin_api;
mod certificates;
mod cli;
mod dns;
mod durability;
mod harness;
mod proxy;
mod route53;
mod secondary;
mod secrets;
mod zone_providers;
mod zones;
