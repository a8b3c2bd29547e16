//! Route53 health checks: their configurations, durable in redb together with every caller
//! reference ever used (Route53 never accepts a reference twice, not even after a deletion),
//! and the prober's results, kept in memory and published to the snapshot as the
//! [`HealthView`] that the DNS lookup reads.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use model::health::{CheckType, HealthCheck, HealthCheckConfig, HealthStatus, HealthView};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::{random_u64, Snapshot, Store, StoreError};

const HEALTH_CHECKS: TableDefinition<&str, &[u8]> = TableDefinition::new("health_checks");
/// Caller reference → health check ID, kept after the check is deleted.
const HEALTH_CHECK_REFS: TableDefinition<&str, &str> = TableDefinition::new("health_check_refs");
/// Most health checks at once (Route53's default quota); each one is probed.
pub const MAX_HEALTH_CHECKS: u64 = 200;

/// A health check as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredHealthCheck {
    caller_reference: String,
    #[serde(rename = "type")]
    check_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fqdn: Option<String>,
    port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resource_path: Option<String>,
    request_interval: u32,
    failure_threshold: u32,
    inverted: bool,
    disabled: bool,
    enable_sni: bool,
}

impl StoredHealthCheck {
    fn of(caller_reference: &str, c: &HealthCheckConfig) -> Self {
        StoredHealthCheck {
            caller_reference: caller_reference.to_string(),
            check_type: c.check_type.as_str().to_string(),
            ip_address: c.ip_address.map(|ip| ip.to_string()),
            fqdn: c.fqdn.clone(),
            port: c.port,
            resource_path: c.resource_path.clone(),
            request_interval: c.request_interval,
            failure_threshold: c.failure_threshold,
            inverted: c.inverted,
            disabled: c.disabled,
            enable_sni: c.enable_sni,
        }
    }

    fn decode(id: &str, bytes: &[u8]) -> Result<HealthCheck, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            what: format!("health check {id}"),
            reason,
        };
        let s: StoredHealthCheck =
            serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        let check_type = match s.check_type.as_str() {
            "HTTP" => CheckType::Http,
            "HTTPS" => CheckType::Https,
            "TCP" => CheckType::Tcp,
            other => return Err(corrupt(format!("type {other:?}"))),
        };
        let ip_address = match &s.ip_address {
            Some(a) => Some(
                a.parse::<IpAddr>()
                    .map_err(|_| corrupt(format!("address {a:?}")))?,
            ),
            None => None,
        };
        Ok(HealthCheck {
            id: id.to_string(),
            caller_reference: s.caller_reference,
            config: HealthCheckConfig {
                check_type,
                ip_address,
                fqdn: s.fqdn,
                port: s.port,
                resource_path: s.resource_path,
                request_interval: s.request_interval,
                failure_threshold: s.failure_threshold,
                inverted: s.inverted,
                disabled: s.disabled,
                enable_sni: s.enable_sni,
            },
        })
    }
}

/// Creates the health check tables, so that readers never see them missing.
pub(crate) fn create_tables(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(HEALTH_CHECKS).map_err(StoreError::storage)?;
    txn.open_table(HEALTH_CHECK_REFS)
        .map_err(StoreError::storage)?;
    Ok(())
}

/// A new health check ID in Route53's form (a lowercase UUID).
fn new_id() -> String {
    let a = random_u64();
    let b = random_u64();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

impl Store {
    /// Creates a health check (Route53 CreateHealthCheck). The same caller reference with the
    /// same configuration returns the existing check (`false`: not created); with another
    /// configuration, or after that check was deleted, it is refused.
    pub fn create_health_check(
        &self,
        caller_reference: &str,
        config: &HealthCheckConfig,
    ) -> Result<(HealthCheck, bool), StoreError> {
        let _w = self.lock();
        let existing = {
            let txn = self.inner.db.begin_read().map_err(StoreError::storage)?;
            let refs = txn
                .open_table(HEALTH_CHECK_REFS)
                .map_err(StoreError::storage)?;
            let checks = txn.open_table(HEALTH_CHECKS).map_err(StoreError::storage)?;
            match refs.get(caller_reference).map_err(StoreError::storage)? {
                Some(id) => {
                    let id = id.value().to_string();
                    let check = match checks.get(id.as_str()).map_err(StoreError::storage)? {
                        Some(v) => Some(StoredHealthCheck::decode(&id, v.value())?),
                        None => None,
                    };
                    Some(check)
                }
                None => {
                    if checks.len().map_err(StoreError::storage)? >= MAX_HEALTH_CHECKS {
                        return Err(StoreError::TooManyHealthChecks(MAX_HEALTH_CHECKS));
                    }
                    None
                }
            }
        };
        match existing {
            Some(Some(check)) if check.config == *config => return Ok((check, false)),
            Some(_) => {
                return Err(StoreError::HealthCheckAlreadyExists(
                    caller_reference.to_string(),
                ))
            }
            None => {}
        }
        let id = loop {
            let id = new_id();
            match self.health_check(&id) {
                Err(StoreError::NoSuchHealthCheck(_)) => break id,
                Ok(_) => continue,
                Err(e) => return Err(e),
            }
        };
        let bytes =
            serde_json::to_vec(&StoredHealthCheck::of(caller_reference, config)).map_err(|e| {
                StoreError::Corrupt {
                    what: "health check".into(),
                    reason: e.to_string(),
                }
            })?;
        let txn = self.inner.db.begin_write().map_err(StoreError::storage)?;
        {
            let mut checks = txn.open_table(HEALTH_CHECKS).map_err(StoreError::storage)?;
            checks
                .insert(id.as_str(), bytes.as_slice())
                .map_err(StoreError::storage)?;
            let mut refs = txn
                .open_table(HEALTH_CHECK_REFS)
                .map_err(StoreError::storage)?;
            refs.insert(caller_reference, id.as_str())
                .map_err(StoreError::storage)?;
        }
        txn.commit().map_err(StoreError::storage)?;
        tracing::info!(health_check = id, "health check created");
        Ok((
            HealthCheck {
                id,
                caller_reference: caller_reference.to_string(),
                config: config.clone(),
            },
            true,
        ))
    }

    /// The health check with this ID.
    pub fn health_check(&self, id: &str) -> Result<HealthCheck, StoreError> {
        let txn = self.inner.db.begin_read().map_err(StoreError::storage)?;
        let checks = txn.open_table(HEALTH_CHECKS).map_err(StoreError::storage)?;
        match checks.get(id).map_err(StoreError::storage)? {
            Some(v) => StoredHealthCheck::decode(id, v.value()),
            None => Err(StoreError::NoSuchHealthCheck(id.to_string())),
        }
    }

    /// Every health check, by ID.
    pub fn health_checks(&self) -> Result<Vec<HealthCheck>, StoreError> {
        let txn = self.inner.db.begin_read().map_err(StoreError::storage)?;
        let checks = txn.open_table(HEALTH_CHECKS).map_err(StoreError::storage)?;
        let mut out = Vec::new();
        for item in checks.iter().map_err(StoreError::storage)? {
            let (k, v) = item.map_err(StoreError::storage)?;
            out.push(StoredHealthCheck::decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Deletes a health check. As in Route53, record sets may still name it; they are then
    /// answered as healthy.
    pub fn delete_health_check(&self, id: &str) -> Result<(), StoreError> {
        let _w = self.lock();
        self.health_check(id)?;
        let txn = self.inner.db.begin_write().map_err(StoreError::storage)?;
        txn.open_table(HEALTH_CHECKS)
            .map_err(StoreError::storage)?
            .remove(id)
            .map_err(StoreError::storage)?;
        txn.commit().map_err(StoreError::storage)?;
        let statuses = (*self.inner.health.load_full()).clone();
        self.publish_health_locked(statuses)?;
        tracing::info!(health_check = id, "health check deleted");
        Ok(())
    }

    /// Publishes the prober's results (those of checks that still exist). When the set of
    /// unhealthy checks changes, a snapshot of the same generation (same zones) with the new
    /// [`HealthView`] is swapped in.
    pub fn publish_health(
        &self,
        statuses: BTreeMap<String, HealthStatus>,
    ) -> Result<(), StoreError> {
        let _w = self.lock();
        self.publish_health_locked(statuses)
    }

    /// `publish_health` with the writer lock held, so that a deletion and a publication of
    /// older results cannot interleave.
    fn publish_health_locked(
        &self,
        mut statuses: BTreeMap<String, HealthStatus>,
    ) -> Result<(), StoreError> {
        {
            let txn = self.inner.db.begin_read().map_err(StoreError::storage)?;
            let checks = txn.open_table(HEALTH_CHECKS).map_err(StoreError::storage)?;
            let mut keep = BTreeMap::new();
            for (id, status) in statuses {
                if checks
                    .get(id.as_str())
                    .map_err(StoreError::storage)?
                    .is_some()
                {
                    keep.insert(id, status);
                }
            }
            statuses = keep;
        }
        let view = HealthView::with_unhealthy(
            statuses
                .iter()
                .filter(|(_, s)| !s.healthy)
                .map(|(id, _)| id.clone()),
        );
        self.inner.health.store(Arc::new(statuses));
        let current = self.snapshot();
        if *current.health == view {
            return Ok(());
        }
        tracing::info!(unhealthy = view.unhealthy_count(), "health view published");
        self.inner.snapshot.store(Arc::new(Snapshot {
            generation: current.generation,
            zones: current.zones.clone(),
            serving: current.serving.clone(),
            journals: current.journals.clone(),
            health: Arc::new(view),
        }));
        Ok(())
    }

    /// The prober's last word on a check, if it has probed it.
    pub fn health_status(&self, id: &str) -> Option<HealthStatus> {
        self.inner.health.load().get(id).cloned()
    }
}
