//! Identities: access keys (AWS-style key ID and secret) with the access rules they grant.
//!
//! The key ID and rules are stored in clear; the secret access key is sealed in the secret store
//! (namespace `edgeplane-system`), so it is encrypted at rest like every other secret. The first
//! start creates an `admin` identity whose credentials are written to a file private to the
//! owner of the data directory.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use model::secret::{AccessRule, SecretRef, SecretSpec, SecretType, SecretValue};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::secrets::{Caller, SecretStoreError, Secrets};

/// A table of JSON documents keyed by name.
type Table = TableDefinition<'static, &'static str, &'static [u8]>;

const IDENTITIES: Table = TableDefinition::new("identities");
const IAM_USERS: Table = TableDefinition::new("iam_users");
/// Most access keys an IAM user may hold (as in AWS).
pub const MAX_KEYS_PER_USER: usize = 2;
/// The namespace holding identities' secret keys.
pub const SYSTEM_NAMESPACE: &str = "edgeplane-system";
/// The admin credentials file inside the data directory (AWS shared-credentials format).
pub const ADMIN_CREDENTIALS_FILE: &str = "admin-credentials";

/// An identity as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub access_key_id: String,
    pub name: String,
    pub active: bool,
    pub rules: Vec<String>,
    pub created_at: u64,
    /// The IAM user owning this key; its policies decide what the key may do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// An IAM user: a name, and inline policies (JSON documents, validated by the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IamUser {
    pub name: String,
    pub user_id: String,
    pub path: String,
    pub created_at: u64,
    #[serde(default)]
    pub policies: BTreeMap<String, String>,
}

/// IAM errors, with AWS's codes.
#[derive(Debug, thiserror::Error)]
pub enum IamError {
    #[error("User with name {0} already exists.")]
    EntityAlreadyExists(String),
    #[error("{0}")]
    NoSuchEntity(String),
    #[error("Cannot delete entity, must {0} first.")]
    DeleteConflict(&'static str),
    #[error("Cannot exceed quota for AccessKeysPerUser: {MAX_KEYS_PER_USER}")]
    LimitExceeded,
    #[error("{0}")]
    Validation(String),
    #[error(transparent)]
    Store(#[from] SecretStoreError),
}

impl Identity {
    /// The caller this identity acts as.
    pub fn caller(&self) -> Caller {
        Caller {
            identity: self.name.clone(),
            rules: self
                .rules
                .iter()
                .filter_map(|r| AccessRule::parse(r).ok())
                .collect(),
        }
    }
}

/// An identity's secret access key, zeroed when dropped.
pub type SecretKey = Zeroizing<Vec<u8>>;

/// A new identity's credentials: the secret is shown once.
pub struct NewCredentials {
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
}

impl std::fmt::Debug for NewCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NewCredentials({}, <redacted>)", self.access_key_id)
    }
}

/// Identity management over the store and the secret store.
#[derive(Clone)]
pub struct Identities {
    secrets: Secrets,
}

impl Identities {
    pub fn new(secrets: Secrets) -> Result<Self, SecretStoreError> {
        let txn = secrets.store().inner.db.begin_write().map_err(storage)?;
        txn.open_table(IDENTITIES).map_err(storage)?;
        txn.open_table(IAM_USERS).map_err(storage)?;
        txn.commit().map_err(storage)?;
        Ok(Identities { secrets })
    }

    /// Creates an identity with `rules` (each `VERBS:NAMESPACE/NAME`).
    pub fn create(
        &self,
        name: &str,
        rules: &[String],
    ) -> Result<(Identity, NewCredentials), SecretStoreError> {
        for r in rules {
            AccessRule::parse(r).map_err(SecretStoreError::BadIdentity)?;
        }
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
        {
            return Err(SecretStoreError::BadIdentity(format!(
                "invalid identity name {name:?}"
            )));
        }
        let access_key_id = format!(
            "EPAK{}",
            random_chars(16, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")?
        );
        let secret = Zeroizing::new(random_chars(
            40,
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        )?);
        let identity = Identity {
            access_key_id: access_key_id.clone(),
            name: name.to_string(),
            active: true,
            rules: rules.to_vec(),
            created_at: crate::now(),
            user: None,
        };
        let spec = SecretSpec {
            secret_type: SecretType::Other("edgeplane.io/access-key".to_string()),
            data: BTreeMap::from([(
                "secret-access-key".to_string(),
                SecretValue::new(secret.as_bytes().to_vec()),
            )]),
            labels: BTreeMap::from([("edgeplane.io/identity".to_string(), name.to_string())]),
            annotations: BTreeMap::new(),
        };
        self.secrets
            .create(&Caller::admin(), &key_ref(&access_key_id)?, &spec)?;
        self.put(&identity)?;
        tracing::info!(identity = name, access_key_id, "identity created");
        Ok((
            identity,
            NewCredentials {
                access_key_id,
                secret_access_key: secret,
            },
        ))
    }

    /// Every identity.
    pub fn list(&self) -> Result<Vec<Identity>, SecretStoreError> {
        self.read_all(IDENTITIES, "identity")
    }

    /// The identity with this key ID.
    pub fn get(&self, access_key_id: &str) -> Result<Option<Identity>, SecretStoreError> {
        self.read_one(IDENTITIES, access_key_id, "identity")
    }

    /// The identity and its secret key, for verifying a signed request.
    pub fn credentials(
        &self,
        access_key_id: &str,
    ) -> Result<Option<(Identity, SecretKey)>, SecretStoreError> {
        let Some(identity) = self.get(access_key_id)? else {
            return Ok(None);
        };
        let (_, spec) = self
            .secrets
            .read_unaudited(&key_ref(access_key_id)?, None)?;
        let secret = spec
            .data
            .get("secret-access-key")
            .map(|v| Zeroizing::new(v.expose().to_vec()))
            .ok_or_else(|| SecretStoreError::Corrupt(format!("access key {access_key_id}")))?;
        Ok(Some((identity, secret)))
    }

    /// Activates or deactivates a key.
    pub fn set_active(
        &self,
        access_key_id: &str,
        active: bool,
    ) -> Result<Identity, SecretStoreError> {
        let mut identity = self
            .get(access_key_id)?
            .ok_or_else(|| SecretStoreError::NotFound(access_key_id.to_string()))?;
        identity.active = active;
        self.put(&identity)?;
        Ok(identity)
    }

    /// Deletes an identity and its sealed key.
    pub fn delete(&self, access_key_id: &str) -> Result<(), SecretStoreError> {
        let txn = self
            .secrets
            .store()
            .inner
            .db
            .begin_write()
            .map_err(storage)?;
        let existed = txn
            .open_table(IDENTITIES)
            .map_err(storage)?
            .remove(access_key_id)
            .map_err(storage)?
            .is_some();
        txn.commit().map_err(storage)?;
        if !existed {
            return Err(SecretStoreError::NotFound(access_key_id.to_string()));
        }
        match self
            .secrets
            .delete(&Caller::admin(), &key_ref(access_key_id)?)
        {
            Ok(()) | Err(SecretStoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// On first start: creates the `admin` identity (every verb on every secret) and writes its
    /// credentials to `data_dir/admin-credentials` (mode 0600). Returns the file when created.
    pub fn ensure_admin(&self, data_dir: &Path) -> Result<Option<PathBuf>, SecretStoreError> {
        if !self.list()?.is_empty() {
            return Ok(None);
        }
        let (identity, creds) = self.create("admin", &["*:*/*".to_string()])?;
        let path = data_dir.join(ADMIN_CREDENTIALS_FILE);
        let text = Zeroizing::new(format!(
            "[edgeplane-admin]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            identity.access_key_id,
            creds.secret_access_key.as_str()
        ));
        use std::os::unix::fs::OpenOptionsExt;
        let io = |source| SecretStoreError::Io {
            path: path.clone(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok(Some(path))
    }

    /// Creates an IAM user.
    pub fn create_user(&self, name: &str, path: &str) -> Result<IamUser, IamError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
        if !valid {
            return Err(IamError::Validation(format!("1 validation error detected: Value '{name}' at 'userName' failed to satisfy constraint")));
        }
        if self.user(name)?.is_some() {
            return Err(IamError::EntityAlreadyExists(name.to_string()));
        }
        let user = IamUser {
            name: name.to_string(),
            user_id: format!(
                "AIDA{}",
                random_chars(17, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")?
            ),
            path: if path.is_empty() {
                "/".to_string()
            } else {
                path.to_string()
            },
            created_at: crate::now(),
            policies: BTreeMap::new(),
        };
        self.put_user(&user)?;
        Ok(user)
    }

    /// The IAM user with this name.
    pub fn user(&self, name: &str) -> Result<Option<IamUser>, SecretStoreError> {
        self.read_one(IAM_USERS, name, "IAM user")
    }

    /// The IAM user with this name, or NoSuchEntity.
    pub fn require_user(&self, name: &str) -> Result<IamUser, IamError> {
        self.user(name)?.ok_or_else(|| {
            IamError::NoSuchEntity(format!("The user with name {name} cannot be found."))
        })
    }

    /// Every IAM user.
    pub fn users(&self) -> Result<Vec<IamUser>, SecretStoreError> {
        self.read_all(IAM_USERS, "IAM user")
    }

    /// Deletes a user that has no access keys and no policies left.
    pub fn delete_user(&self, name: &str) -> Result<(), IamError> {
        let user = self.require_user(name)?;
        if !self.user_keys(name)?.is_empty() {
            return Err(IamError::DeleteConflict("delete access keys"));
        }
        if !user.policies.is_empty() {
            return Err(IamError::DeleteConflict("delete policies"));
        }
        let txn = self
            .secrets
            .store()
            .inner
            .db
            .begin_write()
            .map_err(storage)?;
        txn.open_table(IAM_USERS)
            .map_err(storage)?
            .remove(name)
            .map_err(storage)?;
        txn.commit().map_err(storage)?;
        Ok(())
    }

    /// Sets (creates or replaces) an inline policy; the caller has validated the document.
    pub fn put_user_policy(
        &self,
        user: &str,
        policy: &str,
        document: &str,
    ) -> Result<(), IamError> {
        let mut u = self.require_user(user)?;
        u.policies.insert(policy.to_string(), document.to_string());
        Ok(self.put_user(&u)?)
    }

    /// Deletes an inline policy.
    pub fn delete_user_policy(&self, user: &str, policy: &str) -> Result<(), IamError> {
        let mut u = self.require_user(user)?;
        if u.policies.remove(policy).is_none() {
            return Err(IamError::NoSuchEntity(format!(
                "The user policy with name {policy} cannot be found."
            )));
        }
        Ok(self.put_user(&u)?)
    }

    /// Creates an access key for an IAM user (at most two per user).
    pub fn create_access_key(&self, user: &str) -> Result<(Identity, NewCredentials), IamError> {
        self.require_user(user)?;
        if self.user_keys(user)?.len() >= MAX_KEYS_PER_USER {
            return Err(IamError::LimitExceeded);
        }
        let (mut identity, creds) = self.create(user, &[]).map_err(|e| match e {
            SecretStoreError::BadIdentity(m) => IamError::Validation(m),
            other => IamError::Store(other),
        })?;
        identity.user = Some(user.to_string());
        self.put(&identity)?;
        Ok((identity, creds))
    }

    /// The access keys of an IAM user.
    pub fn user_keys(&self, user: &str) -> Result<Vec<Identity>, SecretStoreError> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|i| i.user.as_deref() == Some(user))
            .collect())
    }

    /// The access key `access_key_id` of `user`, or NoSuchEntity.
    pub fn user_key(&self, user: &str, access_key_id: &str) -> Result<Identity, IamError> {
        self.require_user(user)?;
        self.get(access_key_id)?
            .filter(|i| i.user.as_deref() == Some(user))
            .ok_or_else(|| {
                IamError::NoSuchEntity(format!(
                    "The Access Key with id {access_key_id} cannot be found."
                ))
            })
    }

    fn put_user(&self, user: &IamUser) -> Result<(), SecretStoreError> {
        self.write_one(IAM_USERS, &user.name, user, "IAM user")
    }

    fn put(&self, identity: &Identity) -> Result<(), SecretStoreError> {
        self.write_one(IDENTITIES, &identity.access_key_id, identity, "identity")
    }

    /// Every value of a table of JSON documents.
    fn read_all<T: serde::de::DeserializeOwned>(
        &self,
        table: Table,
        what: &str,
    ) -> Result<Vec<T>, SecretStoreError> {
        let txn = self
            .secrets
            .store()
            .inner
            .db
            .begin_read()
            .map_err(storage)?;
        let t = txn.open_table(table).map_err(storage)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(storage)? {
            let (_, v) = item.map_err(storage)?;
            out.push(
                serde_json::from_slice(v.value())
                    .map_err(|_| SecretStoreError::Corrupt(what.to_string()))?,
            );
        }
        Ok(out)
    }

    /// One value of a table of JSON documents.
    fn read_one<T: serde::de::DeserializeOwned>(
        &self,
        table: Table,
        key: &str,
        what: &str,
    ) -> Result<Option<T>, SecretStoreError> {
        let txn = self
            .secrets
            .store()
            .inner
            .db
            .begin_read()
            .map_err(storage)?;
        let t = txn.open_table(table).map_err(storage)?;
        t.get(key)
            .map_err(storage)?
            .map(|v| {
                serde_json::from_slice(v.value())
                    .map_err(|_| SecretStoreError::Corrupt(what.to_string()))
            })
            .transpose()
    }

    /// Writes one value of a table of JSON documents, durably.
    fn write_one<T: Serialize>(
        &self,
        table: Table,
        key: &str,
        value: &T,
        what: &str,
    ) -> Result<(), SecretStoreError> {
        let bytes =
            serde_json::to_vec(value).map_err(|_| SecretStoreError::Corrupt(what.to_string()))?;
        let txn = self
            .secrets
            .store()
            .inner
            .db
            .begin_write()
            .map_err(storage)?;
        txn.open_table(table)
            .map_err(storage)?
            .insert(key, bytes.as_slice())
            .map_err(storage)?;
        txn.commit().map_err(storage)?;
        Ok(())
    }
}

fn key_ref(access_key_id: &str) -> Result<SecretRef, SecretStoreError> {
    Ok(SecretRef::new(
        SYSTEM_NAMESPACE,
        &format!("access-key-{}", access_key_id.to_ascii_lowercase()),
    )?)
}

fn random_chars(n: usize, alphabet: &[u8]) -> Result<String, SecretStoreError> {
    let mut bytes = Zeroizing::new(vec![0u8; n]);
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| SecretStoreError::Crypto)?;
    // Rejection-free mapping is fine here: both alphabets divide 256 (32 and 64 symbols).
    Ok(bytes
        .iter()
        .map(|b| char::from(alphabet[usize::from(*b) % alphabet.len()]))
        .collect())
}

fn storage(e: impl Into<redb::Error>) -> SecretStoreError {
    SecretStoreError::Storage(e.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::MasterKeySource;
    use crate::Store;

    #[test]
    fn identities_with_sealed_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("data")).expect("store");
        let secrets = Secrets::open(
            &store,
            MasterKeySource::File(dir.path().join("k")),
            &dir.path().join("audit"),
        )
        .expect("secrets");
        let ids = Identities::new(secrets).expect("identities");
        let path = ids
            .ensure_admin(&dir.path().join("data"))
            .expect("admin")
            .expect("created");
        assert!(
            ids.ensure_admin(&dir.path().join("data"))
                .expect("again")
                .is_none(),
            "only once"
        );
        let text = std::fs::read_to_string(&path).expect("credentials");
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
                0o600
            );
        }
        let akid = text
            .lines()
            .find_map(|l| l.strip_prefix("aws_access_key_id = "))
            .expect("akid")
            .to_string();
        let secret = text
            .lines()
            .find_map(|l| l.strip_prefix("aws_secret_access_key = "))
            .expect("secret")
            .to_string();
        assert!(akid.starts_with("EPAK") && akid.len() == 20);
        assert_eq!(secret.len(), 40);
        let (identity, key) = ids.credentials(&akid).expect("lookup").expect("present");
        assert_eq!(
            (identity.name.as_str(), key.as_slice()),
            ("admin", secret.as_bytes())
        );
        let (reader, creds) = ids
            .create("reader", &["get:team/*".to_string()])
            .expect("create");
        assert!(ids.create("bad name", &[]).is_err());
        assert!(ids.create("x", &["fly:a/b".to_string()]).is_err());
        assert_eq!(ids.list().expect("list").len(), 2);
        let caller = reader.caller();
        assert!(caller.rules[0].allows(model::secret::Verb::Get, "team", Some("x")));
        assert!(
            !ids.set_active(&creds.access_key_id, false)
                .expect("deactivate")
                .active
        );
        ids.delete(&creds.access_key_id).expect("delete");
        assert!(ids
            .credentials(&creds.access_key_id)
            .expect("lookup")
            .is_none());
        assert!(!format!("{creds:?}").contains(creds.secret_access_key.as_str()));
    }
}
