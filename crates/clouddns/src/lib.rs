//! Cloud-DNS providers: the [`DnsProvider`] trait, and its Route53 backend on the official AWS
//! SDK, which talks to AWS, to edgeplane's own Route53-compatible API, or to any other
//! Route53-compatible endpoint.
//!
//! The embedded backend runs the same operations in-process against the store; `workflow` is
//! the zone workflow over either.
//!
//! This crate keeps the AWS SDK away from the rest of the tree (it is the slowest part to
//! build); it does not parse manifests or hold state.

pub mod embedded;
pub mod route53;
pub mod workflow;

use model::record::RecordSet;
use model::zone::Change;
use model::DomainName;

/// A hosted zone as a provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostedZoneInfo {
    /// The bare zone ID (`Z...`).
    pub id: String,
    pub name: DomainName,
    pub caller_reference: String,
    /// The delegation set; empty when the provider's listing does not carry it.
    pub name_servers: Vec<String>,
}

/// Whether a submitted change is served yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeStatus {
    Pending,
    InSync,
}

/// What went wrong, classified so that callers can decide (retry, adopt, give up).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("rejected: {code}: {message}")]
    Rejected { code: String, message: String },
    #[error("access denied: {0}")]
    AccessDenied(String),
    #[error("transport or service failure: {0}")]
    Unavailable(String),
}

/// The operations the zone workflow needs from a DNS service.
#[allow(async_fn_in_trait)]
pub trait DnsProvider {
    /// Creates a hosted zone; `caller_reference` makes the call idempotent.
    async fn create_zone(
        &self,
        name: &DomainName,
        caller_reference: &str,
        comment: Option<&str>,
    ) -> Result<HostedZoneInfo, ProviderError>;
    /// The hosted zones named exactly `name`.
    async fn find_zones(&self, name: &DomainName) -> Result<Vec<HostedZoneInfo>, ProviderError>;
    /// Deletes a hosted zone (it must hold only its SOA and NS).
    async fn delete_zone(&self, id: &str) -> Result<(), ProviderError>;
    /// Every record set of a zone.
    async fn list_record_sets(&self, zone_id: &str) -> Result<Vec<RecordSet>, ProviderError>;
    /// Applies changes, in as few batches as the service's limits allow (one when they fit);
    /// returns the change IDs.
    async fn change_record_sets(
        &self,
        zone_id: &str,
        changes: &[Change],
    ) -> Result<Vec<String>, ProviderError>;
    /// The status of a change.
    async fn change_status(&self, change_id: &str) -> Result<ChangeStatus, ProviderError>;

    /// Whether an IAM user exists (GetUser).
    async fn user_exists(&self, user: &str) -> Result<bool, ProviderError>;
    /// Creates an IAM user unless it exists.
    async fn ensure_user(&self, user: &str) -> Result<(), ProviderError>;
    /// The document of a user's inline policy, decoded (GetUserPolicy); `None` when the user
    /// has no policy of that name.
    async fn get_user_policy(
        &self,
        user: &str,
        policy: &str,
    ) -> Result<Option<String>, ProviderError>;
    /// Sets an inline policy of a user.
    async fn put_user_policy(
        &self,
        user: &str,
        policy: &str,
        document: &str,
    ) -> Result<(), ProviderError>;
    /// Creates an access key; returns its ID and secret (shown once).
    async fn create_access_key(&self, user: &str) -> Result<AccessKey, ProviderError>;
    /// The IDs of a user's access keys.
    async fn list_access_keys(&self, user: &str) -> Result<Vec<String>, ProviderError>;
    /// Deletes one access key.
    async fn delete_access_key(&self, user: &str, access_key_id: &str)
        -> Result<(), ProviderError>;
    /// Deletes an inline policy of a user.
    async fn delete_user_policy(&self, user: &str, policy: &str) -> Result<(), ProviderError>;
    /// Deletes a user that has no keys or policies left.
    async fn delete_user(&self, user: &str) -> Result<(), ProviderError>;
}

/// A new access key.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AccessKey({}, <redacted>)", self.id)
    }
}
