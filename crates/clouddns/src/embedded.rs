//! The embedded backend: the [`DnsProvider`] operations in-process against edgeplane's store,
//! with no HTTP hop. Same semantics as the Route53 API (both call the same store methods).

use std::sync::Arc;

use model::record::RecordSet;
use model::zone::Change;
use model::{DomainName, HostedZoneId, RecordData, RecordType, Zone};
use store::identities::{IamError, Identities};
use store::{Store, StoreError};

use crate::{AccessKey, ChangeStatus, DnsProvider, HostedZoneInfo, ProviderError};

/// The store as a DNS provider.
#[derive(Clone)]
pub struct EmbeddedProvider {
    store: Store,
    name_servers: Vec<DomainName>,
    identities: Option<Identities>,
}

impl EmbeddedProvider {
    /// `name_servers` become the NS set of zones it creates.
    pub fn new(store: Store, name_servers: Vec<DomainName>) -> Self {
        EmbeddedProvider {
            store,
            name_servers,
            identities: None,
        }
    }

    /// Adds IAM users and access keys (kept in the secret store).
    pub fn with_identities(mut self, identities: Identities) -> Self {
        self.identities = Some(identities);
        self
    }

    fn ids(&self) -> Result<Identities, ProviderError> {
        self.identities.clone().ok_or_else(|| {
            ProviderError::Unavailable("this embedded provider has no identity store".into())
        })
    }

    fn zone(&self, id: &str) -> Result<Arc<Zone>, ProviderError> {
        let id = HostedZoneId::parse(id).map_err(|e| ProviderError::NotFound(e.to_string()))?;
        self.store.zone(&id).map_err(classify)
    }
}

fn classify(e: StoreError) -> ProviderError {
    match e {
        StoreError::NoSuchHostedZone(_) | StoreError::NoSuchZoneName(_) => {
            ProviderError::NotFound(e.to_string())
        }
        StoreError::HostedZoneAlreadyExists { .. } => ProviderError::AlreadyExists(e.to_string()),
        StoreError::HostedZoneNotEmpty(_) => ProviderError::Rejected {
            code: "HostedZoneNotEmpty".into(),
            message: e.to_string(),
        },
        StoreError::InvalidChangeBatch(_) => ProviderError::Rejected {
            code: "InvalidChangeBatch".into(),
            message: e.to_string(),
        },
        StoreError::Invalid(_) | StoreError::TooManyTags(_) => ProviderError::Rejected {
            code: "InvalidInput".into(),
            message: e.to_string(),
        },
        other => ProviderError::Unavailable(other.to_string()),
    }
}

fn iam(e: IamError) -> ProviderError {
    match e {
        IamError::EntityAlreadyExists(m) => ProviderError::AlreadyExists(m),
        IamError::NoSuchEntity(m) => ProviderError::NotFound(m),
        IamError::DeleteConflict(_) => ProviderError::Rejected {
            code: "DeleteConflict".into(),
            message: e.to_string(),
        },
        IamError::LimitExceeded => ProviderError::Rejected {
            code: "LimitExceeded".into(),
            message: e.to_string(),
        },
        IamError::Validation(m) => ProviderError::Rejected {
            code: "ValidationError".into(),
            message: m,
        },
        IamError::Store(inner) => ProviderError::Unavailable(inner.to_string()),
    }
}

/// Runs an identity-store call off the async workers.
async fn on_ids<T: Send + 'static>(
    ids: Identities,
    f: impl FnOnce(&Identities) -> Result<T, IamError> + Send + 'static,
) -> Result<T, ProviderError> {
    tokio::task::spawn_blocking(move || f(&ids))
        .await
        .map_err(|e| ProviderError::Unavailable(e.to_string()))?
        .map_err(iam)
}

fn info(z: &Zone) -> HostedZoneInfo {
    HostedZoneInfo {
        id: z.id.to_string(),
        name: z.name.clone(),
        caller_reference: z.caller_reference.clone(),
        name_servers: z
            .records
            .values()
            .filter(|s| s.name == z.name && s.rtype == RecordType::NS)
            .flat_map(|s| s.records.iter())
            .filter_map(|r| match r {
                RecordData::Ns(n) => Some(n.to_string().trim_end_matches('.').to_string()),
                _ => None,
            })
            .collect(),
    }
}

impl DnsProvider for EmbeddedProvider {
    async fn create_zone(
        &self,
        name: &DomainName,
        caller_reference: &str,
        comment: Option<&str>,
    ) -> Result<HostedZoneInfo, ProviderError> {
        let (store, name, caller, comment, ns) = (
            self.store.clone(),
            name.clone(),
            caller_reference.to_string(),
            comment.map(str::to_string),
            self.name_servers.clone(),
        );
        let (zone, _) =
            tokio::task::spawn_blocking(move || store.create_zone(name, caller, comment, &ns))
                .await
                .map_err(|e| ProviderError::Unavailable(e.to_string()))?
                .map_err(classify)?;
        Ok(info(&zone))
    }

    async fn find_zones(&self, name: &DomainName) -> Result<Vec<HostedZoneInfo>, ProviderError> {
        let snapshot = self.store.snapshot();
        Ok(snapshot
            .zones
            .values()
            .filter(|z| z.apex() == name)
            .map(|z| info(z.zone()))
            .collect())
    }

    async fn delete_zone(&self, id: &str) -> Result<(), ProviderError> {
        let id = HostedZoneId::parse(id).map_err(|e| ProviderError::NotFound(e.to_string()))?;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.delete_zone(&id))
            .await
            .map_err(|e| ProviderError::Unavailable(e.to_string()))?
            .map_err(classify)?;
        Ok(())
    }

    async fn list_record_sets(&self, zone_id: &str) -> Result<Vec<RecordSet>, ProviderError> {
        Ok(self.zone(zone_id)?.records.values().cloned().collect())
    }

    async fn change_record_sets(
        &self,
        zone_id: &str,
        changes: &[Change],
    ) -> Result<Vec<String>, ProviderError> {
        let zone = self.zone(zone_id)?;
        let store = self.store.clone();
        let changes = changes.to_vec();
        // One atomic batch: the store has no per-request limits to split for.
        let info = tokio::task::spawn_blocking(move || store.change_records(&zone.id, &changes))
            .await
            .map_err(|e| ProviderError::Unavailable(e.to_string()))?
            .map_err(classify)?;
        Ok(vec![info.id])
    }

    async fn change_status(&self, change_id: &str) -> Result<ChangeStatus, ProviderError> {
        let store = self.store.clone();
        let id = change_id.trim_start_matches("/change/").to_string();
        let change = tokio::task::spawn_blocking(move || store.change(&id))
            .await
            .map_err(|e| ProviderError::Unavailable(e.to_string()))?
            .map_err(classify)?
            .ok_or_else(|| ProviderError::NotFound(change_id.to_string()))?;
        Ok(if self.store.snapshot().generation >= change.generation {
            ChangeStatus::InSync
        } else {
            ChangeStatus::Pending
        })
    }

    async fn user_exists(&self, user: &str) -> Result<bool, ProviderError> {
        let user = user.to_string();
        on_ids(self.ids()?, move |ids| Ok(ids.user(&user)?.is_some())).await
    }

    async fn get_user_policy(
        &self,
        user: &str,
        policy: &str,
    ) -> Result<Option<String>, ProviderError> {
        let (user, policy) = (user.to_string(), policy.to_string());
        on_ids(self.ids()?, move |ids| {
            Ok(ids
                .user(&user)?
                .and_then(|mut u| u.policies.remove(&policy)))
        })
        .await
    }

    async fn ensure_user(&self, user: &str) -> Result<(), ProviderError> {
        let user = user.to_string();
        match on_ids(self.ids()?, move |ids| {
            ids.create_user(&user, "/").map(|_| ())
        })
        .await
        {
            Ok(()) | Err(ProviderError::AlreadyExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn put_user_policy(
        &self,
        user: &str,
        policy: &str,
        document: &str,
    ) -> Result<(), ProviderError> {
        api::policy::Policy::parse(document).map_err(|e| ProviderError::Rejected {
            code: "MalformedPolicyDocument".into(),
            message: e.to_string(),
        })?;
        let (user, policy, document) = (user.to_string(), policy.to_string(), document.to_string());
        on_ids(self.ids()?, move |ids| {
            ids.put_user_policy(&user, &policy, &document)
        })
        .await
    }

    async fn create_access_key(&self, user: &str) -> Result<AccessKey, ProviderError> {
        let user = user.to_string();
        on_ids(self.ids()?, move |ids| {
            let (identity, creds) = ids.create_access_key(&user)?;
            Ok(AccessKey {
                id: identity.access_key_id,
                secret: creds.secret_access_key.to_string(),
            })
        })
        .await
    }

    async fn list_access_keys(&self, user: &str) -> Result<Vec<String>, ProviderError> {
        let user = user.to_string();
        on_ids(self.ids()?, move |ids| {
            ids.require_user(&user)?;
            Ok(ids
                .user_keys(&user)?
                .into_iter()
                .map(|i| i.access_key_id)
                .collect())
        })
        .await
    }

    async fn delete_access_key(
        &self,
        user: &str,
        access_key_id: &str,
    ) -> Result<(), ProviderError> {
        let (user, key) = (user.to_string(), access_key_id.to_string());
        on_ids(self.ids()?, move |ids| {
            ids.user_key(&user, &key)?;
            Ok(ids.delete(&key)?)
        })
        .await
    }

    async fn delete_user_policy(&self, user: &str, policy: &str) -> Result<(), ProviderError> {
        let (user, policy) = (user.to_string(), policy.to_string());
        on_ids(self.ids()?, move |ids| {
            ids.delete_user_policy(&user, &policy)
        })
        .await
    }

    async fn delete_user(&self, user: &str) -> Result<(), ProviderError> {
        let user = user.to_string();
        on_ids(self.ids()?, move |ids| ids.delete_user(&user)).await
    }
}
