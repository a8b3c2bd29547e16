//! Edgeplane's store: the single writer of state.
//!
//! Hosted zones and their record sets live in an embedded redb database. Every write is one
//! redb transaction, committed durably (fsync) before it is acknowledged, so an acknowledged
//! change survives `kill -9`. After each commit the store publishes a new immutable
//! [`Snapshot`]; readers (the DNS server) load it through an `ArcSwap` without taking a lock,
//! and can wait for new generations through [`Store::subscribe`].
//!
//! This crate does not serve traffic and does not parse wire formats of any protocol.

pub mod certificates;
mod codec;
pub mod dnszones;
pub mod health;
pub mod identities;
pub mod secrets;
mod status_table;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use model::health::{HealthStatus, HealthView};
use model::lookup::ZoneIndex;
use model::record::{RecordError, RecordSet};
use model::zone::{Change, ChangeError, Journal, RecordKey, ZoneDiff};
use model::{DomainName, HostedZoneId, Zone};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::watch;

pub use codec::{StoredRecordSet, ZoneMeta};

const ZONES: TableDefinition<&str, &[u8]> = TableDefinition::new("zones");
const RECORDS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("records");
const CHANGES: TableDefinition<&str, &[u8]> = TableDefinition::new("changes");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const TAGS: TableDefinition<&str, &[u8]> = TableDefinition::new("tags");
/// Most tags on one resource (Route53's limit).
pub const MAX_TAGS: usize = 50;
const GENERATION_KEY: &str = "generation";

/// The file name of the database inside the data directory.
pub const DB_FILE: &str = "edgeplane.redb";

/// Errors of the store. Validation errors carry the model's reasons; storage errors carry redb's.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store at {path} is in use by another edgeplane process")]
    Locked { path: PathBuf },
    #[error("storage error: {0}")]
    Storage(#[from] redb::Error),
    #[error("cannot create data directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("stored {what} is corrupt: {reason}")]
    Corrupt { what: String, reason: String },
    #[error("no hosted zone found with ID: {0}")]
    NoSuchHostedZone(String),
    #[error("no hosted zone named {0}")]
    NoSuchZoneName(DomainName),
    #[error("a hosted zone was already created with caller reference {caller_reference:?} (zone {zone_id})")]
    HostedZoneAlreadyExists {
        caller_reference: String,
        zone_id: HostedZoneId,
    },
    #[error("the hosted zone {0} contains resource record sets other than the apex SOA and NS; delete them first")]
    HostedZoneNotEmpty(HostedZoneId),
    #[error("invalid change batch: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidChangeBatch(Vec<ChangeError>),
    #[error(transparent)]
    Invalid(#[from] RecordError),
    #[error("{0} would have more than 50 tags")]
    TooManyTags(String),
    #[error("No health check exists with the specified ID {0}")]
    NoSuchHealthCheck(String),
    #[error("A health check with caller reference {0:?} already exists (or existed) with another configuration")]
    HealthCheckAlreadyExists(String),
    #[error("at most {0} health checks can exist")]
    TooManyHealthChecks(u64),
}

impl StoreError {
    fn storage(e: impl Into<redb::Error>) -> Self {
        StoreError::Storage(e.into())
    }
}

/// The status of a submitted change, as Route53's GetChange reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeInfo {
    pub id: String,
    pub zone_id: HostedZoneId,
    /// Seconds since the Unix epoch.
    pub submitted_at: u64,
    /// Snapshot generation that first contains the change: INSYNC once it is published.
    pub generation: u64,
}

/// An immutable view of every hosted zone, as published after a commit.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Increases with every publish.
    pub generation: u64,
    /// Every hosted zone by ID.
    pub zones: BTreeMap<HostedZoneId, Arc<ZoneIndex>>,
    /// The zone served for each apex name (the oldest, when two zones share a name).
    pub serving: HashMap<DomainName, Arc<ZoneIndex>>,
    /// Recent diffs per zone, for incremental transfers (kept in memory only: after a restart
    /// secondaries get a full transfer once).
    pub journals: HashMap<HostedZoneId, Arc<Journal>>,
    /// The health checks that fail now (in memory only: every check is healthy after a
    /// restart until probed). A change of health publishes a snapshot of the same generation.
    pub health: Arc<HealthView>,
}

impl Snapshot {
    /// The most specific served zone containing the wire name `qname`.
    pub fn find_zone(&self, qname: &[u8]) -> Option<&Arc<ZoneIndex>> {
        model::lookup::most_specific(&self.serving, qname)
    }
}

/// The store. Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: redb::Database,
    /// Serializes writers so that the published snapshot follows commit order.
    write: Mutex<WriterState>,
    snapshot: ArcSwap<Snapshot>,
    generation: watch::Sender<u64>,
    /// The prober's last results per health check (in memory only).
    health: ArcSwap<BTreeMap<String, HealthStatus>>,
}

struct WriterState {
    metas: BTreeMap<HostedZoneId, ZoneMeta>,
    next_seq: u64,
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        // A new data directory is private to its owner: it holds every zone and, later, secrets.
        if !dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| StoreError::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
        }
        let path = dir.join(DB_FILE);
        let db = match redb::Database::create(&path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::Locked { path })
            }
            Err(e) => return Err(StoreError::storage(e)),
        };
        {
            use std::os::unix::fs::PermissionsExt;
            if let Err(e) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot make the database private");
            }
        }
        // Create the tables so that readers never see them missing.
        let txn = db.begin_write().map_err(StoreError::storage)?;
        {
            txn.open_table(ZONES).map_err(StoreError::storage)?;
            txn.open_table(RECORDS).map_err(StoreError::storage)?;
            txn.open_table(CHANGES).map_err(StoreError::storage)?;
            txn.open_table(META).map_err(StoreError::storage)?;
            txn.open_table(TAGS).map_err(StoreError::storage)?;
            health::create_tables(&txn)?;
        }
        txn.commit().map_err(StoreError::storage)?;

        let (metas, zones, generation) = load(&db)?;
        let next_seq = metas.values().map(|m| m.seq + 1).max().unwrap_or(1);
        let snapshot = build_snapshot(generation, &metas, zones);
        let (generation, _) = watch::channel(generation);
        tracing::info!(path = %path.display(), zones = snapshot.zones.len(), "store opened");
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                write: Mutex::new(WriterState { metas, next_seq }),
                snapshot: ArcSwap::from_pointee(snapshot),
                generation,
                health: ArcSwap::from_pointee(BTreeMap::new()),
            }),
        })
    }

    /// The current snapshot; lock-free.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.snapshot.load_full()
    }

    /// A receiver of published generations.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.generation.subscribe()
    }

    /// Metadata of every zone.
    pub fn zone_metas(&self) -> Vec<(HostedZoneId, ZoneMeta)> {
        let w = self.lock();
        w.metas
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The zone with this ID.
    pub fn zone(&self, id: &HostedZoneId) -> Result<Arc<Zone>, StoreError> {
        self.snapshot()
            .zones
            .get(id)
            .map(|z| z.zone().clone())
            .ok_or_else(|| StoreError::NoSuchHostedZone(id.to_string()))
    }

    /// The served zone with exactly this name.
    pub fn zone_by_name(&self, name: &DomainName) -> Result<Arc<Zone>, StoreError> {
        self.snapshot()
            .serving
            .get(name)
            .map(|z| z.zone().clone())
            .ok_or_else(|| StoreError::NoSuchZoneName(name.clone()))
    }

    /// Creates a hosted zone with its SOA and NS set. A caller reference can be used once.
    pub fn create_zone(
        &self,
        name: DomainName,
        caller_reference: String,
        comment: Option<String>,
        name_servers: &[DomainName],
    ) -> Result<(Arc<Zone>, ChangeInfo), StoreError> {
        let mut w = self.lock();
        if let Some((id, _)) = w
            .metas
            .iter()
            .find(|(_, m)| m.caller_reference == caller_reference)
        {
            return Err(StoreError::HostedZoneAlreadyExists {
                caller_reference,
                zone_id: id.clone(),
            });
        }
        let id = loop {
            let id = HostedZoneId::from_random(random_u64());
            if !w.metas.contains_key(&id) {
                break id;
            }
        };
        let mut zone = Zone::new(id.clone(), name, caller_reference.clone(), name_servers)?;
        zone.comment = comment.clone();
        let meta = ZoneMeta {
            name: zone.name.to_string(),
            caller_reference,
            comment,
            private: false,
            seq: w.next_seq,
            created_at: now(),
        };
        let change = self.commit(&mut w, &id, Some(&meta), None, Some(&zone))?;
        w.next_seq += 1;
        w.metas.insert(id, meta);
        Ok((Arc::new(zone), change))
    }

    /// Replaces a zone's comment.
    pub fn update_comment(
        &self,
        id: &HostedZoneId,
        comment: Option<String>,
    ) -> Result<Arc<Zone>, StoreError> {
        let mut w = self.lock();
        let zone = self.zone(id)?;
        let mut next = (*zone).clone();
        next.comment = comment.clone();
        let mut meta = w
            .metas
            .get(id)
            .cloned()
            .ok_or_else(|| StoreError::NoSuchHostedZone(id.to_string()))?;
        meta.comment = comment;
        self.commit(&mut w, id, Some(&meta), Some(&zone), Some(&next))?;
        w.metas.insert(id.clone(), meta);
        Ok(Arc::new(next))
    }

    /// The tags of a resource (`hostedzone/ID`).
    pub fn tags(&self, resource: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let txn = self.inner.db.begin_read().map_err(StoreError::storage)?;
        let t = txn.open_table(TAGS).map_err(StoreError::storage)?;
        match t.get(resource).map_err(StoreError::storage)? {
            Some(v) => serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt {
                what: format!("tags of {resource}"),
                reason: e.to_string(),
            }),
            None => Ok(BTreeMap::new()),
        }
    }

    /// Adds (or replaces) and removes tags of a resource, atomically; at most [`MAX_TAGS`].
    pub fn change_tags(
        &self,
        resource: &str,
        add: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<BTreeMap<String, String>, StoreError> {
        let _w = self.lock();
        let mut tags = self.tags(resource)?;
        for k in remove {
            tags.remove(k);
        }
        tags.extend(add.iter().map(|(k, v)| (k.clone(), v.clone())));
        if tags.len() > MAX_TAGS {
            return Err(StoreError::TooManyTags(resource.to_string()));
        }
        let bytes = serde_json::to_vec(&tags).map_err(|e| StoreError::Corrupt {
            what: "tags".into(),
            reason: e.to_string(),
        })?;
        let txn = self.inner.db.begin_write().map_err(StoreError::storage)?;
        {
            let mut t = txn.open_table(TAGS).map_err(StoreError::storage)?;
            if tags.is_empty() {
                t.remove(resource).map_err(StoreError::storage)?;
            } else {
                t.insert(resource, bytes.as_slice())
                    .map_err(StoreError::storage)?;
            }
        }
        txn.commit().map_err(StoreError::storage)?;
        Ok(tags)
    }

    /// Deletes a zone that holds nothing but its apex SOA and NS.
    pub fn delete_zone(&self, id: &HostedZoneId) -> Result<ChangeInfo, StoreError> {
        let mut w = self.lock();
        let zone = self.zone(id)?;
        let only_apex = zone.records.values().all(|s| {
            s.name == zone.name && matches!(s.rtype, model::RecordType::SOA | model::RecordType::NS)
        });
        if !only_apex {
            return Err(StoreError::HostedZoneNotEmpty(id.clone()));
        }
        let change = self.commit(&mut w, id, None, Some(&zone), None)?;
        w.metas.remove(id);
        // Tags go with their zone.
        let txn = self.inner.db.begin_write().map_err(StoreError::storage)?;
        txn.open_table(TAGS)
            .map_err(StoreError::storage)?
            .remove(format!("hostedzone/{id}").as_str())
            .map_err(StoreError::storage)?;
        txn.commit().map_err(StoreError::storage)?;
        Ok(change)
    }

    /// Applies a change batch atomically (Route53 ChangeResourceRecordSets).
    pub fn change_records(
        &self,
        id: &HostedZoneId,
        changes: &[Change],
    ) -> Result<ChangeInfo, StoreError> {
        let mut w = self.lock();
        let zone = self.zone(id)?;
        let next = zone
            .apply(changes)
            .map_err(StoreError::InvalidChangeBatch)?;
        let meta = w.metas.get(id).cloned();
        self.commit(&mut w, id, meta.as_ref(), Some(&zone), Some(&next))
    }

    /// Replaces every record set but the apex SOA and NS with `sets` (zone import), atomically;
    /// an SOA or apex NS in `sets` replaces the current one.
    pub fn replace_records(
        &self,
        id: &HostedZoneId,
        sets: Vec<RecordSet>,
    ) -> Result<ChangeInfo, StoreError> {
        let mut w = self.lock();
        let zone = self.zone(id)?;
        let next = zone
            .replace_all(sets)
            .map_err(StoreError::InvalidChangeBatch)?;
        let meta = w.metas.get(id).cloned();
        self.commit(&mut w, id, meta.as_ref(), Some(&zone), Some(&next))
    }

    /// A change submitted earlier, if known.
    pub fn change(&self, change_id: &str) -> Result<Option<ChangeInfo>, StoreError> {
        let txn = self.inner.db.begin_read().map_err(StoreError::storage)?;
        let table = txn.open_table(CHANGES).map_err(StoreError::storage)?;
        let Some(v) = table.get(change_id).map_err(StoreError::storage)? else {
            return Ok(None);
        };
        codec::decode_change(change_id, v.value()).map(Some)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WriterState> {
        // A panic while holding the lock cannot leave the database inconsistent (redb
        // transactions are atomic), so a poisoned lock is still usable.
        self.inner
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes the difference between `old` and `new` for one zone in one durable transaction,
    /// then publishes the new snapshot.
    fn commit(
        &self,
        w: &mut WriterState,
        id: &HostedZoneId,
        meta: Option<&ZoneMeta>,
        old: Option<&Zone>,
        new: Option<&Zone>,
    ) -> Result<ChangeInfo, StoreError> {
        let current = self.snapshot();
        let generation = current.generation + 1;
        let change = ChangeInfo {
            id: format!(
                "C{}",
                HostedZoneId::from_random(random_u64())
                    .as_str()
                    .trim_start_matches('Z')
            ),
            zone_id: id.clone(),
            submitted_at: now(),
            generation,
        };
        let txn = self.inner.db.begin_write().map_err(StoreError::storage)?;
        {
            let mut zones = txn.open_table(ZONES).map_err(StoreError::storage)?;
            let mut records = txn.open_table(RECORDS).map_err(StoreError::storage)?;
            let mut changes = txn.open_table(CHANGES).map_err(StoreError::storage)?;
            let mut meta_t = txn.open_table(META).map_err(StoreError::storage)?;
            meta_t
                .insert(GENERATION_KEY, generation)
                .map_err(StoreError::storage)?;
            match (meta, new) {
                (Some(meta), Some(_)) => {
                    zones
                        .insert(id.as_str(), codec::encode_meta(meta).as_slice())
                        .map_err(StoreError::storage)?;
                }
                _ => {
                    zones.remove(id.as_str()).map_err(StoreError::storage)?;
                }
            }
            let empty = BTreeMap::new();
            let old_sets = old.map_or(&empty, |z| &z.records);
            let new_sets = new.map_or(&empty, |z| &z.records);
            for key in old_sets.keys() {
                if !new_sets.contains_key(key) {
                    records
                        .remove((id.as_str(), codec::record_key(key).as_str()))
                        .map_err(StoreError::storage)?;
                }
            }
            for (key, set) in new_sets {
                if old_sets.get(key) != Some(set) {
                    records
                        .insert(
                            (id.as_str(), codec::record_key(key).as_str()),
                            codec::encode_set(set).as_slice(),
                        )
                        .map_err(StoreError::storage)?;
                }
            }
            changes
                .insert(change.id.as_str(), codec::encode_change(&change).as_slice())
                .map_err(StoreError::storage)?;
        }
        txn.commit().map_err(StoreError::storage)?;

        // Publish: copy the maps, replace this zone's entry.
        let mut zones = current.zones.clone();
        match new {
            Some(z) => {
                zones.insert(id.clone(), Arc::new(ZoneIndex::new(Arc::new(z.clone()))));
            }
            None => {
                zones.remove(id);
            }
        }
        let mut journals = current.journals.clone();
        match (old, new) {
            (Some(o), Some(n)) => {
                if let Some(diff) = ZoneDiff::between(o, n) {
                    let mut journal = journals.get(id).map(|j| (**j).clone()).unwrap_or_default();
                    journal.push(diff);
                    journals.insert(id.clone(), Arc::new(journal));
                }
            }
            _ => {
                journals.remove(id);
            }
        }
        let mut metas: BTreeMap<HostedZoneId, ZoneMeta> = w.metas.clone();
        match meta {
            Some(m) if new.is_some() => {
                metas.insert(id.clone(), m.clone());
            }
            _ => {
                metas.remove(id);
            }
        }
        let serving = serving_map(&metas, &zones);
        self.inner.snapshot.store(Arc::new(Snapshot {
            generation,
            zones,
            serving,
            journals,
            health: Arc::clone(&current.health),
        }));
        self.inner.generation.send_replace(generation);
        tracing::debug!(zone = %id, change = %change.id, generation, "change committed");
        Ok(change)
    }
}

type Loaded = (
    BTreeMap<HostedZoneId, ZoneMeta>,
    BTreeMap<HostedZoneId, Zone>,
    u64,
);

/// Reads every zone and the last published generation.
fn load(db: &redb::Database) -> Result<Loaded, StoreError> {
    let txn = db.begin_read().map_err(StoreError::storage)?;
    let generation = txn
        .open_table(META)
        .map_err(StoreError::storage)?
        .get(GENERATION_KEY)
        .map_err(StoreError::storage)?
        .map_or(1, |g| g.value());
    let zones_t = txn.open_table(ZONES).map_err(StoreError::storage)?;
    let records_t = txn.open_table(RECORDS).map_err(StoreError::storage)?;
    let mut metas = BTreeMap::new();
    let mut zones = BTreeMap::new();
    for item in zones_t.iter().map_err(StoreError::storage)? {
        let (k, v) = item.map_err(StoreError::storage)?;
        let id = HostedZoneId::parse(k.value()).map_err(|e| StoreError::Corrupt {
            what: format!("zone key {:?}", k.value()),
            reason: e.to_string(),
        })?;
        let meta = codec::decode_meta(k.value(), v.value())?;
        let name = DomainName::parse(&meta.name).map_err(|e| StoreError::Corrupt {
            what: format!("zone {id}"),
            reason: e.to_string(),
        })?;
        let mut records = BTreeMap::new();
        for item in records_t
            .range((id.as_str(), "")..)
            .map_err(StoreError::storage)?
        {
            let (k, v) = item.map_err(StoreError::storage)?;
            let (zid, key) = k.value();
            if zid != id.as_str() {
                break;
            }
            let set = codec::decode_set(key, v.value())?;
            records.insert(RecordKey::of(&set), set);
        }
        zones.insert(
            id.clone(),
            Zone {
                id: id.clone(),
                name,
                caller_reference: meta.caller_reference.clone(),
                comment: meta.comment.clone(),
                private: meta.private,
                records,
            },
        );
        metas.insert(id, meta);
    }
    Ok((metas, zones, generation))
}

fn build_snapshot(
    generation: u64,
    metas: &BTreeMap<HostedZoneId, ZoneMeta>,
    zones: BTreeMap<HostedZoneId, Zone>,
) -> Snapshot {
    let zones: BTreeMap<HostedZoneId, Arc<ZoneIndex>> = zones
        .into_iter()
        .map(|(id, z)| (id, Arc::new(ZoneIndex::new(Arc::new(z)))))
        .collect();
    let serving = serving_map(metas, &zones);
    Snapshot {
        generation,
        zones,
        serving,
        journals: HashMap::new(),
        health: Arc::new(HealthView::all_healthy()),
    }
}

/// For each apex name the zone created first.
fn serving_map(
    metas: &BTreeMap<HostedZoneId, ZoneMeta>,
    zones: &BTreeMap<HostedZoneId, Arc<ZoneIndex>>,
) -> HashMap<DomainName, Arc<ZoneIndex>> {
    let mut ordered: Vec<(&HostedZoneId, &Arc<ZoneIndex>)> = zones.iter().collect();
    ordered.sort_by_key(|(id, _)| metas.get(*id).map_or(u64::MAX, |m| m.seq));
    let mut serving = HashMap::with_capacity(ordered.len());
    for (_, z) in ordered {
        serving
            .entry(z.apex().clone())
            .or_insert_with(|| Arc::clone(z));
    }
    serving
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// 64 unpredictable bits from the standard library's randomly keyed hasher.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

#[cfg(test)]
mod tests;
