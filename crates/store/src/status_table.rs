//! Status rows: small JSON documents keyed by `namespace/name` in a table of their own, read
//! and written the same way by every kind of status (DNSZones, Certificates). The table is
//! created by its first write; a row that does not decode is reported and left out of
//! listings, so it hides no other.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Store, StoreError};

pub(crate) type Table = TableDefinition<'static, &'static str, &'static [u8]>;

fn corrupt(what: &str, owner: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: format!("status of {what} {owner}"),
        reason: e.to_string(),
    }
}

impl Store {
    /// One row. `what` names the kind in errors (`DNSZone`, `Certificate`).
    pub(crate) fn status_get<T: DeserializeOwned>(
        &self,
        table: Table,
        what: &str,
        owner: &str,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.inner.db.begin_read().map_err(StoreError::storage)?;
        let t = match txn.open_table(table) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(StoreError::storage(e)),
        };
        match t.get(owner).map_err(StoreError::storage)? {
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(|e| corrupt(what, owner, e)),
            None => Ok(None),
        }
    }

    /// Every row that decodes, by owner.
    pub(crate) fn status_all<T: DeserializeOwned>(
        &self,
        table: Table,
        what: &str,
    ) -> Result<Vec<T>, StoreError> {
        let txn = self.inner.db.begin_read().map_err(StoreError::storage)?;
        let t = match txn.open_table(table) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::storage(e)),
        };
        let mut out = Vec::new();
        for item in t.iter().map_err(StoreError::storage)? {
            let (k, v) = item.map_err(StoreError::storage)?;
            match serde_json::from_slice(v.value()) {
                Ok(s) => out.push(s),
                Err(e) => {
                    tracing::warn!(owner = k.value(), error = %e, "skipping a corrupt {what} status")
                }
            }
        }
        Ok(out)
    }

    /// Writes one row durably. The caller holds the writer lock.
    pub(crate) fn status_put<T: Serialize>(
        &self,
        table: Table,
        what: &str,
        owner: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|e| corrupt(what, owner, e))?;
        let txn = self.inner.db.begin_write().map_err(StoreError::storage)?;
        txn.open_table(table)
            .map_err(StoreError::storage)?
            .insert(owner, bytes.as_slice())
            .map_err(StoreError::storage)?;
        txn.commit().map_err(StoreError::storage)?;
        Ok(())
    }
}
