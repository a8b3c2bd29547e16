//! DNSZone statuses: what the last reconcile of each DNSZone found (its hosted zone, name
//! servers, conditions with their reasons, the generation of the spec it saw, and when), one row
//! per DNSZone keyed by `namespace/name`.
//!
//! They live in the store, beside the zones, so the single-writer rule covers them: the process
//! that owns the data directory writes them (`serve`, for its manifest directory and for
//! `zone apply` through control.sock, or the CLI itself when no server runs), and every reader
//! goes through that process. Rows are small JSON documents; the table is created by the first
//! write.

use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use crate::{Store, StoreError};

const DNSZONE_STATUS: crate::status_table::Table = TableDefinition::new("dnszone_status");

/// The status of one DNSZone, as its last reconcile left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsZoneStatus {
    /// `namespace/name` of the DNSZone.
    pub owner: String,
    pub domain: String,
    pub zone_id: Option<String>,
    pub name_servers: Vec<String>,
    pub conditions: Vec<StatusCondition>,
    /// Counts the DNSZone's specs: goes up by one whenever `spec_digest` differs from the one
    /// last recorded (set by the store).
    pub observed_generation: u64,
    /// A digest of the spec this status is about.
    pub spec_digest: String,
    /// Seconds since the Unix epoch of the reconcile (set by the store).
    pub last_reconciled: u64,
}

/// One condition, Kubernetes style.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusCondition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: bool,
    pub reason: String,
    /// When `status` last changed, in seconds since the Unix epoch (set by the store).
    pub last_transition_time: u64,
}

impl Store {
    /// Records what a reconcile found. The store sets the times and the generation: the
    /// generation goes up when the spec digest differs from the one recorded before, and a
    /// condition keeps its transition time while its status holds. Returns the row as stored.
    pub fn record_dnszone_status(
        &self,
        mut status: DnsZoneStatus,
    ) -> Result<DnsZoneStatus, StoreError> {
        let _w = self.lock();
        let previous = self.dnszone_status(&status.owner)?;
        let now = crate::now();
        status.last_reconciled = now;
        status.observed_generation = match &previous {
            Some(p) if p.spec_digest == status.spec_digest => p.observed_generation.max(1),
            Some(p) => p.observed_generation + 1,
            None => 1,
        };
        for c in &mut status.conditions {
            c.last_transition_time = previous
                .as_ref()
                .and_then(|p| {
                    p.conditions
                        .iter()
                        .find(|o| o.kind == c.kind && o.status == c.status)
                })
                .map_or(now, |o| o.last_transition_time);
        }
        self.status_put(DNSZONE_STATUS, "DNSZone", &status.owner, &status)?;
        Ok(status)
    }

    /// The status of one DNSZone (`namespace/name`).
    pub fn dnszone_status(&self, owner: &str) -> Result<Option<DnsZoneStatus>, StoreError> {
        self.status_get(DNSZONE_STATUS, "DNSZone", owner)
    }

    /// Every DNSZone status, by owner. A row that does not decode is reported and left out, so
    /// it hides no other.
    pub fn dnszone_statuses(&self) -> Result<Vec<DnsZoneStatus>, StoreError> {
        self.status_all(DNSZONE_STATUS, "DNSZone")
    }

    /// Forgets a DNSZone's status (its resources are gone); whether there was one.
    pub fn delete_dnszone_status(&self, owner: &str) -> Result<bool, StoreError> {
        let _w = self.lock();
        let txn = self.inner.db.begin_write().map_err(StoreError::storage)?;
        let existed = txn
            .open_table(DNSZONE_STATUS)
            .map_err(StoreError::storage)?
            .remove(owner)
            .map_err(StoreError::storage)?
            .is_some();
        txn.commit().map_err(StoreError::storage)?;
        Ok(existed)
    }
}

#[cfg(test)]
mod tests;
