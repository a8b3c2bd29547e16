//! The secret store: Kubernetes-shaped secrets, envelope-encrypted at rest, versioned, with
//! per-identity access rules and an audit log.
//!
//! Secrets share the store's redb database (one durable commit per write) but not its zone
//! snapshots. Values exist in plaintext only in memory, in zeroed-on-drop buffers; metadata
//! (type, data key names, labels, annotations, versions) is stored in clear so secrets can be
//! listed without decrypting them.

mod audit;
pub mod crypto;
pub mod master_key;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use model::secret::{
    AccessRule, SecretError, SecretRef, SecretSpec, SecretType, SecretValue, Verb,
};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub use crypto::MasterKey;
pub use master_key::{LoadedKeys, MasterKeySource};

use crate::Store;

const SECRET_META: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("secret_meta");
const SECRET_VERSIONS: TableDefinition<(&str, &str, u64), &[u8]> =
    TableDefinition::new("secret_versions");
const SECRET_KEYS: TableDefinition<&str, &str> = TableDefinition::new("secret_keys");
const ACTIVE: &str = "active";
const NEXT: &str = "next";

/// Versions kept per secret; older ones are deleted when a new one is written.
pub const KEEP_VERSIONS: usize = 10;
/// Versions re-wrapped per transaction during a master-key rotation.
const ROTATION_BATCH: usize = 256;

/// Errors of the secret store. None carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum SecretStoreError {
    #[error("secret {0} not found")]
    NotFound(String),
    #[error("secret {0} has no version {1}")]
    VersionNotFound(String, u64),
    #[error("secret {0} already exists")]
    AlreadyExists(String),
    #[error("secret {secret} is at version {actual}, not {expected}: re-read and retry")]
    Conflict {
        secret: String,
        expected: u64,
        actual: u64,
    },
    #[error("{identity} may not {verb} secret {secret}")]
    Denied {
        identity: String,
        verb: Verb,
        secret: String,
    },
    #[error("secret {secret} version {version} failed its integrity check (corrupted, or sealed with another key)")]
    Integrity { secret: String, version: u64 },
    #[error(transparent)]
    Invalid(#[from] SecretError),
    #[error("wrong master key: the store's secrets are sealed with key {expected}, the key given is {given}")]
    WrongMasterKey { expected: String, given: String },
    #[error("invalid master key: {0}")]
    BadMasterKey(String),
    #[error("a master-key rotation is pending but the next key ({0}) is not available")]
    MissingNextKey(String),
    #[error("invalid identity: {0}")]
    BadIdentity(String),
    #[error("master-key rotation needs a file-backed master key")]
    RotationNeedsFile,
    #[error("cryptographic operation failed")]
    Crypto,
    #[error("storage error: {0}")]
    Storage(#[from] redb::Error),
    #[error("stored {0} is corrupt")]
    Corrupt(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn storage(e: impl Into<redb::Error>) -> SecretStoreError {
    SecretStoreError::Storage(e.into())
}

/// Who is asking, and what they may do.
#[derive(Debug, Clone)]
pub struct Caller {
    pub identity: String,
    pub rules: Vec<AccessRule>,
}

impl Caller {
    /// The bootstrap administrator: every verb on every secret.
    pub fn admin() -> Self {
        Caller {
            identity: "admin".to_string(),
            rules: vec![AccessRule {
                verbs: Verb::ALL.to_vec(),
                namespaces: vec!["*".to_string()],
                names: vec!["*".to_string()],
            }],
        }
    }

    fn allows(&self, verb: Verb, namespace: &str, name: Option<&str>) -> bool {
        self.rules.iter().any(|r| r.allows(verb, namespace, name))
    }
}

/// A secret's metadata, without its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    pub reference: SecretRef,
    pub secret_type: SecretType,
    pub keys: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The current version (the resource version).
    pub version: u64,
    /// Every version still readable, oldest first.
    pub versions: Vec<u64>,
    pub created_at: u64,
    pub updated_at: u64,
}

/// What a master-key rotation did.
#[derive(Debug, Clone, PartialEq)]
pub struct RotationReport {
    pub old_key: String,
    pub new_key: String,
    pub rewrapped: usize,
    /// Versions that could not be re-sealed (corrupted, or sealed with a key not held): they
    /// were left as they were and fail their integrity check when read.
    pub skipped: Vec<SkippedVersion>,
    pub seconds: f64,
}

/// A secret version a rotation left as it was because no key it holds opens its data key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedVersion {
    /// `namespace/name`.
    pub secret: String,
    pub version: u64,
}

/// What re-sealing the data keys did.
struct Rewrap {
    rewrapped: usize,
    skipped: Vec<SkippedVersion>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredMeta {
    secret_type: String,
    keys: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    versions: Vec<u64>,
    created_at: u64,
    updated_at: u64,
}

struct KeyRing {
    /// Seals new versions.
    active: Arc<MasterKey>,
    /// Opens versions sealed before a rotation finished.
    others: Vec<Arc<MasterKey>>,
}

impl KeyRing {
    fn find(&self, id: &str) -> Option<Arc<MasterKey>> {
        std::iter::once(&self.active)
            .chain(self.others.iter())
            .find(|k| k.id() == id)
            .cloned()
    }
}

/// The secret store. Cheap to clone.
#[derive(Clone)]
pub struct Secrets {
    store: Store,
    keys: Arc<RwLock<KeyRing>>,
    audit: Arc<audit::AuditLog>,
    source: MasterKeySource,
    /// Serializes rotations.
    rotation: Arc<std::sync::Mutex<()>>,
}

impl Secrets {
    /// Opens the secret store of `store` with the master key from `source`, writing the audit
    /// log to `audit_path`. A wrong key is refused before anything is written. An interrupted
    /// rotation is finished.
    pub fn open(
        store: &Store,
        source: MasterKeySource,
        audit_path: &Path,
    ) -> Result<Self, SecretStoreError> {
        let loaded = source.load()?;
        let db = &store.inner.db;
        let txn = db.begin_write().map_err(storage)?;
        let (active_id, next_id) = {
            let mut t = txn.open_table(SECRET_KEYS).map_err(storage)?;
            txn.open_table(SECRET_META).map_err(storage)?;
            txn.open_table(SECRET_VERSIONS).map_err(storage)?;
            let active = t
                .get(ACTIVE)
                .map_err(storage)?
                .map(|v| v.value().to_string());
            let next = t.get(NEXT).map_err(storage)?.map(|v| v.value().to_string());
            if active.is_none() {
                t.insert(ACTIVE, loaded.current.id()).map_err(storage)?;
            }
            (
                active.unwrap_or_else(|| loaded.current.id().to_string()),
                next,
            )
        };
        txn.commit().map_err(storage)?;

        let given: Vec<Arc<MasterKey>> = std::iter::once(loaded.current)
            .chain(loaded.next)
            .map(Arc::new)
            .collect();
        let find = |id: &str| given.iter().find(|k| k.id() == id).cloned();
        let active = find(&active_id).ok_or_else(|| SecretStoreError::WrongMasterKey {
            expected: active_id.clone(),
            given: given
                .iter()
                .map(|k| k.id().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
        let ring = match &next_id {
            Some(n) => {
                let next = find(n).ok_or_else(|| SecretStoreError::MissingNextKey(n.clone()))?;
                KeyRing {
                    active: next,
                    others: vec![active],
                }
            }
            None => KeyRing {
                active,
                others: Vec::new(),
            },
        };
        let secrets = Secrets {
            store: store.clone(),
            keys: Arc::new(RwLock::new(ring)),
            audit: Arc::new(audit::AuditLog::open(audit_path)?),
            source: source.clone(),
            rotation: Arc::new(std::sync::Mutex::new(())),
        };
        if let MasterKeySource::File(path) = &source {
            if next_id.is_some() {
                tracing::warn!("finishing an interrupted master-key rotation");
                let done = secrets.rewrap_until_finished()?;
                if !done.skipped.is_empty() {
                    tracing::warn!(
                        skipped = done.skipped.len(),
                        "interrupted master-key rotation finished; corrupted secret versions were left as they were"
                    );
                }
                master_key::promote_next_key_file(path)?;
            } else if given.len() == 2 && given[1].id() == active_id {
                // The rotation finished in the store but the key file was not yet promoted.
                master_key::promote_next_key_file(path)?;
            }
        }
        tracing::info!(key_id = secrets.active_key_id(), "secret store opened");
        Ok(secrets)
    }

    /// The store these secrets live in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Reads a secret without an access check or an audit entry: for edgeplane's own use of
    /// the secrets it manages (identities' keys), never for a caller's request.
    pub(crate) fn read_unaudited(
        &self,
        r: &SecretRef,
        version: Option<u64>,
    ) -> Result<(SecretInfo, SecretSpec), SecretStoreError> {
        self.read(r, version)
    }

    /// The ID of the key new versions are sealed with.
    pub fn active_key_id(&self) -> String {
        self.ring().active.id().to_string()
    }

    /// Creates a secret that must not exist yet.
    pub fn create(
        &self,
        caller: &Caller,
        r: &SecretRef,
        spec: &SecretSpec,
    ) -> Result<SecretInfo, SecretStoreError> {
        self.write(caller, Verb::Create, r, spec, None)
    }

    /// Replaces an existing secret's content with a new version; with `expected`, only if the
    /// current version is that one.
    pub fn update(
        &self,
        caller: &Caller,
        r: &SecretRef,
        spec: &SecretSpec,
        expected: Option<u64>,
    ) -> Result<SecretInfo, SecretStoreError> {
        self.write(caller, Verb::Update, r, spec, expected)
    }

    /// Creates or updates.
    pub fn apply(
        &self,
        caller: &Caller,
        r: &SecretRef,
        spec: &SecretSpec,
    ) -> Result<SecretInfo, SecretStoreError> {
        match self.info(r) {
            Ok(_) => self.update(caller, r, spec, None),
            Err(SecretStoreError::NotFound(_)) => self.create(caller, r, spec),
            Err(e) => Err(e),
        }
    }

    /// Reads a secret: the current version, or an older one still kept.
    pub fn get(
        &self,
        caller: &Caller,
        r: &SecretRef,
        version: Option<u64>,
    ) -> Result<(SecretInfo, SecretSpec), SecretStoreError> {
        let result = self
            .authorize(caller, Verb::Get, r.namespace(), Some(r.name()))
            .and_then(|()| self.read(r, version));
        self.audit.record(
            caller,
            Verb::Get,
            &r.to_string(),
            result.as_ref().ok().map(|(i, _)| i.version),
            outcome(&result),
            false,
        );
        result
    }

    /// Lists secrets (metadata only) in `namespace`, or in every namespace the caller may list.
    pub fn list(
        &self,
        caller: &Caller,
        namespace: Option<&str>,
    ) -> Result<Vec<SecretInfo>, SecretStoreError> {
        if let Some(ns) = namespace {
            if let Err(e) = self.authorize(caller, Verb::List, ns, None) {
                self.audit.record(
                    caller,
                    Verb::List,
                    &format!("{ns}/*"),
                    None,
                    "denied",
                    false,
                );
                return Err(e);
            }
        }
        let txn = self.store.inner.db.begin_read().map_err(storage)?;
        let t = txn.open_table(SECRET_META).map_err(storage)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(storage)? {
            let (k, v) = item.map_err(storage)?;
            let (ns, name) = k.value();
            // Rules are checked per name: a caller allowed `list:ns/prefix*` sees only those.
            if namespace.is_some_and(|want| want != ns)
                || !caller.allows(Verb::List, ns, Some(name))
            {
                continue;
            }
            // One corrupt row must not hide every other secret: leave it out and say so.
            match listed_info(ns, name, v.value()) {
                Ok(info) => out.push(info),
                Err(e) => {
                    tracing::error!(error = %e, "corrupt secret metadata left out of a listing")
                }
            }
        }
        self.audit.record(
            caller,
            Verb::List,
            &format!("{}/*", namespace.unwrap_or("*")),
            None,
            "ok",
            false,
        );
        Ok(out)
    }

    /// Deletes a secret and every version of it.
    pub fn delete(&self, caller: &Caller, r: &SecretRef) -> Result<(), SecretStoreError> {
        let result = self
            .authorize(caller, Verb::Delete, r.namespace(), Some(r.name()))
            .and_then(|()| {
                let txn = self.store.inner.db.begin_write().map_err(storage)?;
                {
                    let mut meta = txn.open_table(SECRET_META).map_err(storage)?;
                    let mut versions = txn.open_table(SECRET_VERSIONS).map_err(storage)?;
                    let existing = meta
                        .remove((r.namespace(), r.name()))
                        .map_err(storage)?
                        .map(|v| decode_meta(r.namespace(), r.name(), v.value()))
                        .transpose()?
                        .ok_or_else(|| SecretStoreError::NotFound(r.to_string()))?;
                    for v in existing.versions {
                        versions
                            .remove((r.namespace(), r.name(), v))
                            .map_err(storage)?;
                    }
                }
                txn.commit().map_err(storage)?;
                Ok(())
            });
        self.audit.record(
            caller,
            Verb::Delete,
            &r.to_string(),
            None,
            outcome(&result),
            true,
        );
        result
    }

    /// Metadata of one secret, without an access check or audit (for internal callers).
    pub fn info(&self, r: &SecretRef) -> Result<SecretInfo, SecretStoreError> {
        let txn = self.store.inner.db.begin_read().map_err(storage)?;
        let t = txn.open_table(SECRET_META).map_err(storage)?;
        let v = t
            .get((r.namespace(), r.name()))
            .map_err(storage)?
            .ok_or_else(|| SecretStoreError::NotFound(r.to_string()))?;
        to_info(r.clone(), &decode_meta(r.namespace(), r.name(), v.value())?)
    }

    /// Rotates the master key (file source): a new key is saved beside the current one, every
    /// data key is re-sealed with it in small transactions while reads and writes go on, then
    /// the new key replaces the old one. Payloads are not re-encrypted. Resumes after a crash.
    pub fn rotate_master_key(&self) -> Result<RotationReport, SecretStoreError> {
        let MasterKeySource::File(path) = &self.source else {
            return Err(SecretStoreError::RotationNeedsFile);
        };
        let _guard = self
            .rotation
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let started = Instant::now();
        let next = Arc::new(master_key::create_next_key_file(path)?);
        let old_id = self.active_key_id();
        if next.id() == old_id {
            return Err(SecretStoreError::BadMasterKey(
                "the next key equals the current one".into(),
            ));
        }
        {
            let txn = self.store.inner.db.begin_write().map_err(storage)?;
            txn.open_table(SECRET_KEYS)
                .map_err(storage)?
                .insert(NEXT, next.id())
                .map_err(storage)?;
            txn.commit().map_err(storage)?;
        }
        {
            let mut ring = self
                .keys
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let old = Arc::clone(&ring.active);
            ring.active = Arc::clone(&next);
            ring.others = vec![old];
        }
        let Rewrap { rewrapped, skipped } = self.rewrap_until_finished()?;
        master_key::promote_next_key_file(path)?;
        let report = RotationReport {
            old_key: old_id,
            new_key: next.id().to_string(),
            rewrapped,
            skipped,
            seconds: started.elapsed().as_secs_f64(),
        };
        tracing::info!(old = %report.old_key, new = %report.new_key, rewrapped, skipped = report.skipped.len(), seconds = report.seconds, "master key rotated");
        Ok(report)
    }

    fn ring(&self) -> std::sync::RwLockReadGuard<'_, KeyRing> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Re-seals every data key not sealed with the active key, in batches. A version no key
    /// held opens (a damaged record, or a key ID nobody has) is skipped and reported, so one
    /// corrupted record cannot hold a rotation, or the next open, back.
    fn rewrap_all(&self) -> Result<Rewrap, SecretStoreError> {
        let (active, others) = {
            let ring = self.ring();
            (Arc::clone(&ring.active), ring.others.clone())
        };
        let mut done = 0;
        let mut skipped = Vec::new();
        let mut skip: HashSet<(String, String, u64)> = HashSet::new();
        loop {
            // Find a batch of versions under an old key (or unreadable), not yet skipped.
            let batch: Vec<(String, String, u64)> = {
                let txn = self.store.inner.db.begin_read().map_err(storage)?;
                let t = txn.open_table(SECRET_VERSIONS).map_err(storage)?;
                let mut batch = Vec::new();
                for item in t.iter().map_err(storage)? {
                    let (k, v) = item.map_err(storage)?;
                    let current = crypto::Sealed::decode(v.value());
                    if current.is_some_and(|s| s.key_id == active.id()) {
                        continue;
                    }
                    let (ns, name, ver) = k.value();
                    let id = (ns.to_string(), name.to_string(), ver);
                    if !skip.contains(&id) {
                        batch.push(id);
                        if batch.len() == ROTATION_BATCH {
                            break;
                        }
                    }
                }
                batch
            };
            if batch.is_empty() {
                return Ok(Rewrap {
                    rewrapped: done,
                    skipped,
                });
            }
            let txn = self.store.inner.db.begin_write().map_err(storage)?;
            {
                let mut t = txn.open_table(SECRET_VERSIONS).map_err(storage)?;
                for id in batch {
                    let (ns, name, ver) = (id.0.as_str(), id.1.as_str(), id.2);
                    // Re-read inside the transaction: a concurrent delete or write wins.
                    let Some(raw) = t
                        .get((ns, name, ver))
                        .map_err(storage)?
                        .map(|v| v.value().to_vec())
                    else {
                        continue;
                    };
                    let sealed = crypto::Sealed::decode(&raw);
                    if sealed.as_ref().is_some_and(|s| s.key_id == active.id()) {
                        continue;
                    }
                    let rewrapped = sealed.as_ref().and_then(|sealed| {
                        let old = others.iter().find(|k| k.id() == sealed.key_id)?;
                        crypto::rewrap(old, &active, sealed, ns, name, ver)
                    });
                    match rewrapped {
                        Some(new) => {
                            t.insert((ns, name, ver), new.encode().as_slice())
                                .map_err(storage)?;
                            done += 1;
                        }
                        None => {
                            // Unreadable with any key we hold: leave it (reads report it) and
                            // go on with the others.
                            tracing::error!(secret = %format!("{ns}/{name}"), version = ver, "cannot re-seal a corrupted secret version; skipped");
                            skipped.push(SkippedVersion {
                                secret: format!("{ns}/{name}"),
                                version: ver,
                            });
                            skip.insert(id);
                        }
                    }
                }
            }
            txn.commit().map_err(storage)?;
        }
    }

    /// Re-seals until no version under an old key is left, then retires the old key.
    ///
    /// A write that sealed with the old key just before the key ring switched may commit
    /// after `rewrap_all`'s last scan; `finish_rotation` checks again inside its own write
    /// transaction (which waits for such a write) and another pass re-seals it, so the old key
    /// is dropped only when nothing needs it.
    fn rewrap_until_finished(&self) -> Result<Rewrap, SecretStoreError> {
        let mut total = Rewrap {
            rewrapped: 0,
            skipped: Vec::new(),
        };
        loop {
            let pass = self.rewrap_all()?;
            total.rewrapped += pass.rewrapped;
            for s in pass.skipped {
                if !total.skipped.contains(&s) {
                    total.skipped.push(s);
                }
            }
            if self.finish_rotation(&total.skipped)? {
                return Ok(total);
            }
        }
    }

    /// Records the rotation as finished, unless a version (other than the skipped, corrupted
    /// ones) is still sealed under an old key: then nothing changes and `false` is returned.
    fn finish_rotation(&self, skipped: &[SkippedVersion]) -> Result<bool, SecretStoreError> {
        let active = self.active_key_id();
        let txn = self.store.inner.db.begin_write().map_err(storage)?;
        {
            let versions = txn.open_table(SECRET_VERSIONS).map_err(storage)?;
            for item in versions.iter().map_err(storage)? {
                let (k, v) = item.map_err(storage)?;
                let Some(sealed) = crypto::Sealed::decode(v.value()) else {
                    continue;
                };
                if sealed.key_id == active {
                    continue;
                }
                let (ns, name, ver) = k.value();
                let secret = format!("{ns}/{name}");
                if !skipped
                    .iter()
                    .any(|s| s.secret == secret && s.version == ver)
                {
                    // Dropping the transaction aborts it.
                    return Ok(false);
                }
            }
        }
        {
            let mut t = txn.open_table(SECRET_KEYS).map_err(storage)?;
            t.insert(ACTIVE, active.as_str()).map_err(storage)?;
            t.remove(NEXT).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        self.keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .others
            .clear();
        Ok(true)
    }

    fn authorize(
        &self,
        caller: &Caller,
        verb: Verb,
        namespace: &str,
        name: Option<&str>,
    ) -> Result<(), SecretStoreError> {
        if caller.allows(verb, namespace, name) {
            Ok(())
        } else {
            Err(SecretStoreError::Denied {
                identity: caller.identity.clone(),
                verb,
                secret: format!("{namespace}/{}", name.unwrap_or("*")),
            })
        }
    }

    fn write(
        &self,
        caller: &Caller,
        verb: Verb,
        r: &SecretRef,
        spec: &SecretSpec,
        expected: Option<u64>,
    ) -> Result<SecretInfo, SecretStoreError> {
        let result = self
            .authorize(caller, verb, r.namespace(), Some(r.name()))
            .and_then(|()| {
                spec.validate()?;
                let payload = Zeroizing::new(encode_payload(spec));
                let now = crate::now();
                let txn = self.store.inner.db.begin_write().map_err(storage)?;
                let info = {
                    let mut meta_t = txn.open_table(SECRET_META).map_err(storage)?;
                    let mut versions_t = txn.open_table(SECRET_VERSIONS).map_err(storage)?;
                    let existing = meta_t
                        .get((r.namespace(), r.name()))
                        .map_err(storage)?
                        .map(|v| decode_meta(r.namespace(), r.name(), v.value()))
                        .transpose()?;
                    let mut meta = match (verb, existing) {
                        (Verb::Create, Some(_)) => {
                            return Err(SecretStoreError::AlreadyExists(r.to_string()))
                        }
                        (Verb::Create, None) => StoredMeta {
                            secret_type: String::new(),
                            keys: Vec::new(),
                            labels: BTreeMap::new(),
                            annotations: BTreeMap::new(),
                            versions: Vec::new(),
                            created_at: now,
                            updated_at: now,
                        },
                        (_, None) => return Err(SecretStoreError::NotFound(r.to_string())),
                        (_, Some(m)) => m,
                    };
                    let current = meta.versions.last().copied().unwrap_or(0);
                    if let Some(expected) = expected {
                        if expected != current {
                            return Err(SecretStoreError::Conflict {
                                secret: r.to_string(),
                                expected,
                                actual: current,
                            });
                        }
                    }
                    let version = current + 1;
                    let sealed = {
                        let ring = self.ring();
                        crypto::seal(&ring.active, r.namespace(), r.name(), version, &payload)?
                    };
                    versions_t
                        .insert(
                            (r.namespace(), r.name(), version),
                            sealed.encode().as_slice(),
                        )
                        .map_err(storage)?;
                    meta.versions.push(version);
                    while meta.versions.len() > KEEP_VERSIONS {
                        let old = meta.versions.remove(0);
                        versions_t
                            .remove((r.namespace(), r.name(), old))
                            .map_err(storage)?;
                    }
                    meta.secret_type = spec.secret_type.to_string();
                    meta.keys = spec.data.keys().cloned().collect();
                    meta.labels = spec.labels.clone();
                    meta.annotations = spec.annotations.clone();
                    meta.updated_at = now;
                    let bytes = serde_json::to_vec(&meta)
                        .map_err(|_| SecretStoreError::Corrupt("metadata".into()))?;
                    meta_t
                        .insert((r.namespace(), r.name()), bytes.as_slice())
                        .map_err(storage)?;
                    to_info(r.clone(), &meta)?
                };
                txn.commit().map_err(storage)?;
                Ok(info)
            });
        self.audit.record(
            caller,
            verb,
            &r.to_string(),
            result.as_ref().ok().map(|i| i.version),
            outcome(&result),
            true,
        );
        result
    }

    fn read(
        &self,
        r: &SecretRef,
        version: Option<u64>,
    ) -> Result<(SecretInfo, SecretSpec), SecretStoreError> {
        let txn = self.store.inner.db.begin_read().map_err(storage)?;
        let meta_t = txn.open_table(SECRET_META).map_err(storage)?;
        let versions_t = txn.open_table(SECRET_VERSIONS).map_err(storage)?;
        let meta = meta_t
            .get((r.namespace(), r.name()))
            .map_err(storage)?
            .map(|v| decode_meta(r.namespace(), r.name(), v.value()))
            .transpose()?
            .ok_or_else(|| SecretStoreError::NotFound(r.to_string()))?;
        let mut info = to_info(r.clone(), &meta)?;
        let version = version.unwrap_or(info.version);
        if !meta.versions.contains(&version) {
            return Err(SecretStoreError::VersionNotFound(r.to_string(), version));
        }
        let integrity = || SecretStoreError::Integrity {
            secret: r.to_string(),
            version,
        };
        let raw = versions_t
            .get((r.namespace(), r.name(), version))
            .map_err(storage)?
            .ok_or_else(integrity)?;
        let sealed = crypto::Sealed::decode(raw.value()).ok_or_else(integrity)?;
        let key = self.ring().find(&sealed.key_id).ok_or_else(integrity)?;
        let plain =
            crypto::open(&key, &sealed, r.namespace(), r.name(), version).ok_or_else(integrity)?;
        let spec = decode_payload(&plain).ok_or_else(integrity)?;
        info.version = version;
        Ok((info, spec))
    }
}

fn outcome<T>(r: &Result<T, SecretStoreError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(SecretStoreError::Denied { .. }) => "denied",
        Err(SecretStoreError::NotFound(_) | SecretStoreError::VersionNotFound(..)) => "not-found",
        Err(SecretStoreError::AlreadyExists(_) | SecretStoreError::Conflict { .. }) => "conflict",
        Err(SecretStoreError::Invalid(_)) => "invalid",
        Err(SecretStoreError::Integrity { .. }) => "integrity-error",
        Err(_) => "error",
    }
}

fn decode_meta(ns: &str, name: &str, bytes: &[u8]) -> Result<StoredMeta, SecretStoreError> {
    serde_json::from_slice(bytes)
        .map_err(|_| SecretStoreError::Corrupt(format!("metadata of secret {ns}/{name}")))
}

/// A metadata row as a listing shows it, or why it is corrupt.
fn listed_info(ns: &str, name: &str, bytes: &[u8]) -> Result<SecretInfo, SecretStoreError> {
    let r = SecretRef::new(ns, name)
        .map_err(|_| SecretStoreError::Corrupt(format!("secret key {ns}/{name}")))?;
    to_info(r, &decode_meta(ns, name, bytes)?)
}

fn to_info(r: SecretRef, m: &StoredMeta) -> Result<SecretInfo, SecretStoreError> {
    Ok(SecretInfo {
        secret_type: SecretType::parse(&m.secret_type)
            .map_err(|_| SecretStoreError::Corrupt(format!("type of secret {r}")))?,
        keys: m.keys.clone(),
        labels: m.labels.clone(),
        annotations: m.annotations.clone(),
        version: m.versions.last().copied().unwrap_or(0),
        versions: m.versions.clone(),
        created_at: m.created_at,
        updated_at: m.updated_at,
        reference: r,
    })
}

/// The sealed payload: the whole spec of a version, length-prefixed fields.
fn encode_payload(spec: &SecretSpec) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(1u8);
    let put = |out: &mut Vec<u8>, b: &[u8]| {
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(b);
    };
    put(&mut out, spec.secret_type.as_str().as_bytes());
    for map in [&spec.labels, &spec.annotations] {
        out.extend_from_slice(&(map.len() as u32).to_be_bytes());
        for (k, v) in map {
            put(&mut out, k.as_bytes());
            put(&mut out, v.as_bytes());
        }
    }
    out.extend_from_slice(&(spec.data.len() as u32).to_be_bytes());
    for (k, v) in &spec.data {
        put(&mut out, k.as_bytes());
        put(&mut out, v.expose());
    }
    out
}

fn decode_payload(bytes: &[u8]) -> Option<SecretSpec> {
    struct R<'a>(&'a [u8]);
    impl<'a> R<'a> {
        fn u32(&mut self) -> Option<usize> {
            let (h, t) = self.0.split_at_checked(4)?;
            self.0 = t;
            Some(u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize)
        }
        fn bytes(&mut self) -> Option<&'a [u8]> {
            let n = self.u32()?;
            let (h, t) = self.0.split_at_checked(n)?;
            self.0 = t;
            Some(h)
        }
        fn string(&mut self) -> Option<String> {
            String::from_utf8(self.bytes()?.to_vec()).ok()
        }
    }
    let (&format, rest) = bytes.split_first()?;
    if format != 1 {
        return None;
    }
    let mut r = R(rest);
    let secret_type = SecretType::parse(&r.string()?).ok()?;
    let mut maps = [BTreeMap::new(), BTreeMap::new()];
    for map in &mut maps {
        for _ in 0..r.u32()? {
            let k = r.string()?;
            map.insert(k, r.string()?);
        }
    }
    let mut data = BTreeMap::new();
    for _ in 0..r.u32()? {
        let k = r.string()?;
        data.insert(k, SecretValue::new(r.bytes()?.to_vec()));
    }
    let [labels, annotations] = maps;
    Some(SecretSpec {
        secret_type,
        data,
        labels,
        annotations,
    })
}

#[cfg(test)]
mod tests;
