//! The zone workflow (design section 1, steps 1, 2 and 4) over any [`DnsProvider`]: create the
//! hosted zone idempotently, delegate it from its parent, and point its records at the load
//! balancer's addresses, owning what it writes and never touching what it does not own.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use model::record::{RecordData, RecordSet, RecordType, Ttl};
use model::zone::{Change, ChangeAction};
use model::DomainName;

use crate::{ChangeStatus, DnsProvider, HostedZoneInfo, ProviderError};

/// Where the parent zone is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParentRef {
    Domain(DomainName),
    ZoneId(String),
}

/// Which of the load balancer's address lists a record takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkKind {
    /// The public ELB addresses (EIPs).
    Public,
    /// The internal load balancer's addresses.
    Internal,
}

/// The load balancer's addresses, as the network status reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    pub elb_eips: Vec<String>,
    pub internal_elb_ips: Vec<String>,
}

/// One wanted record: a name relative to the zone (`@`, `*`, `internal`), fed by an address list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSpec {
    pub name: String,
    pub from_network: NetworkKind,
    pub ttl: u32,
}

/// Why the workflow stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    #[error("invalid address {0:?} in the network status")]
    BadAddress(String),
    #[error("invalid record name {name:?}: {reason}")]
    BadName { name: String, reason: String },
    #[error("record {name} {rtype} exists but is not owned by {owner}; left alone")]
    NotOwned {
        name: DomainName,
        rtype: RecordType,
        owner: String,
    },
    #[error("no hosted zone found for parent {0}")]
    NoParent(String),
    #[error("hosted zone {domain} exists but was created by someone else (caller reference {caller_reference:?})")]
    ForeignZone {
        domain: DomainName,
        caller_reference: String,
    },
    #[error("changes not in sync after {0:?}")]
    Timeout(Duration),
    #[error("secret store: {0}")]
    Secret(String),
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

/// The CallerReference of the zone `owner` manages for `domain`: deterministic, so a retry after
/// a crash finds the zone instead of making another.
pub fn caller_reference(owner: &str, domain: &DomainName) -> String {
    let r = format!(
        "edgeplane/{owner}/{}",
        domain.to_string().trim_end_matches('.')
    );
    if r.len() <= 128 {
        return r;
    }
    // Long names: keep a readable prefix and a stable hash of the rest.
    format!("{}-{:016x}", &r[..100], fnv64(r.as_bytes()))
}

/// FNV-1a: a small hash that stays the same across builds and platforms.
fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Adopts the zone this owner created before (same caller reference), or creates it. Looking
/// first keeps the step idempotent even on services without CallerReference idempotency; the
/// caller reference still guards a concurrent create on Route53.
pub async fn ensure_zone<P: DnsProvider>(
    p: &P,
    owner: &str,
    domain: &DomainName,
) -> Result<HostedZoneInfo, WorkflowError> {
    let reference = caller_reference(owner, domain);
    if let Some(mine) = p
        .find_zones(domain)
        .await?
        .into_iter()
        .find(|z| z.caller_reference == reference)
    {
        return adopt(p, mine).await;
    }
    match p
        .create_zone(
            domain,
            &reference,
            Some(&format!("managed by edgeplane for {owner}")),
        )
        .await
    {
        Ok(z) => Ok(z),
        Err(ProviderError::AlreadyExists(_)) => {
            let zones = p.find_zones(domain).await?;
            let mine = zones
                .into_iter()
                .find(|z| z.caller_reference == reference)
                .ok_or_else(|| WorkflowError::ForeignZone {
                    domain: domain.clone(),
                    caller_reference: reference.clone(),
                })?;
            adopt(p, mine).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Fills in the name servers of a zone found by listing.
async fn adopt<P: DnsProvider>(
    p: &P,
    mut zone: HostedZoneInfo,
) -> Result<HostedZoneInfo, WorkflowError> {
    if zone.name_servers.is_empty() {
        zone.name_servers = p
            .list_record_sets(&zone.id)
            .await?
            .into_iter()
            .filter(|s| s.name == zone.name && s.rtype == RecordType::NS)
            .flat_map(|s| s.records)
            .filter_map(|r| match r {
                RecordData::Ns(n) => Some(n.to_string().trim_end_matches('.').to_string()),
                _ => None,
            })
            .collect();
    }
    Ok(zone)
}

/// The A and AAAA record sets wanted in `zone` from the network status: addresses validated,
/// de-duplicated and split by family.
pub fn address_records(
    zone: &DomainName,
    network: &Network,
    specs: &[RecordSpec],
) -> Result<Vec<RecordSet>, WorkflowError> {
    let parse = |list: &[String]| -> Result<BTreeSet<IpAddr>, WorkflowError> {
        list.iter()
            .map(|s| {
                s.trim()
                    .parse::<IpAddr>()
                    .map_err(|_| WorkflowError::BadAddress(s.clone()))
            })
            .collect()
    };
    let public = parse(&network.elb_eips)?;
    let internal = parse(&network.internal_elb_ips)?;
    let mut out = Vec::new();
    for spec in specs {
        let name =
            DomainName::parse_relative(&spec.name, zone).map_err(|e| WorkflowError::BadName {
                name: spec.name.clone(),
                reason: e.to_string(),
            })?;
        if !name.is_subdomain_of(zone) {
            return Err(WorkflowError::BadName {
                name: spec.name.clone(),
                reason: format!("not in zone {zone}"),
            });
        }
        let addrs = match spec.from_network {
            NetworkKind::Public => &public,
            NetworkKind::Internal => &internal,
        };
        let ttl = Ttl::new(u64::from(spec.ttl)).map_err(|e| WorkflowError::BadName {
            name: spec.name.clone(),
            reason: e.to_string(),
        })?;
        let v4: Vec<RecordData> = addrs
            .iter()
            .filter_map(|a| match a {
                IpAddr::V4(v) => Some(RecordData::A(*v)),
                IpAddr::V6(_) => None,
            })
            .collect();
        let v6: Vec<RecordData> = addrs
            .iter()
            .filter_map(|a| match a {
                IpAddr::V6(v) => Some(RecordData::Aaaa(*v)),
                IpAddr::V4(_) => None,
            })
            .collect();
        for (rtype, data) in [(RecordType::A, v4), (RecordType::AAAA, v6)] {
            if !data.is_empty() {
                let set = RecordSet::new(name.clone(), ttl, rtype, data).map_err(|e| {
                    WorkflowError::BadName {
                        name: spec.name.clone(),
                        reason: e.to_string(),
                    }
                })?;
                out.push(set);
            }
        }
    }
    Ok(out)
}

/// The owner-registry TXT name for an owned name (as external-dns keeps a TXT registry).
fn registry_name(name: &DomainName) -> Option<DomainName> {
    name.prepend_label(b"_edgeplane-owner")
}

fn registry_value(owner: &str) -> RecordData {
    RecordData::Txt(vec![
        format!("heritage=edgeplane,owner={owner}").into_bytes()
    ])
}

/// What one apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Change IDs submitted (empty when nothing had to change).
    pub change_ids: Vec<String>,
    pub upserted: usize,
    pub deleted: usize,
    /// Wanted records that someone else owns, left alone.
    pub skipped: Vec<WorkflowError>,
}

/// Makes the zone's owned A/AAAA records equal `desired` in one batch: new or changed sets are
/// UPSERTed with their ownership record, owned sets no longer wanted are deleted, records this
/// owner does not own are never touched. Nothing changed means no mutating call at all.
pub async fn apply_records<P: DnsProvider>(
    p: &P,
    zone_id: &str,
    owner: &str,
    desired: &[RecordSet],
) -> Result<ApplyReport, WorkflowError> {
    let current = p.list_record_sets(zone_id).await?;
    let marker = registry_value(owner);
    let by_key: BTreeMap<(DomainName, RecordType), &RecordSet> = current
        .iter()
        .filter(|s| s.set_identifier.is_none())
        .map(|s| ((s.name.clone(), s.rtype), s))
        .collect();
    let owned: BTreeSet<DomainName> = current
        .iter()
        .filter(|s| s.rtype == RecordType::TXT && s.records.contains(&marker))
        .filter_map(|s| s.name.parent())
        .collect();
    let mut report = ApplyReport::default();
    let mut changes = Vec::new();
    let mut wanted_names = BTreeSet::new();
    // A name holding any record set this owner did not make is someone else's: nothing is
    // written under it at all, so no record is ever left without its owner.
    let foreign: BTreeSet<DomainName> = desired
        .iter()
        .filter(|s| !owned.contains(&s.name))
        .filter(|s| {
            current.iter().any(|c| {
                c.name == s.name
                    && matches!(
                        c.rtype,
                        RecordType::A | RecordType::AAAA | RecordType::CNAME
                    )
            })
        })
        .map(|s| s.name.clone())
        .collect();
    for set in desired {
        wanted_names.insert(set.name.clone());
        if foreign.contains(&set.name) {
            if by_key.contains_key(&(set.name.clone(), set.rtype)) {
                report.skipped.push(WorkflowError::NotOwned {
                    name: set.name.clone(),
                    rtype: set.rtype,
                    owner: owner.to_string(),
                });
            }
            continue;
        }
        if by_key
            .get(&(set.name.clone(), set.rtype))
            .is_some_and(|c| same_set(c, set))
        {
            continue;
        }
        changes.push(Change {
            action: ChangeAction::Upsert,
            set: set.clone(),
        });
        report.upserted += 1;
    }
    // Ownership records for every wanted name we may write.
    for name in &wanted_names {
        if report
            .skipped
            .iter()
            .any(|e| matches!(e, WorkflowError::NotOwned { name: n, .. } if n == name))
        {
            continue;
        }
        if !owned.contains(name) {
            if let Some(reg) = registry_name(name) {
                let set = RecordSet::new(
                    reg,
                    Ttl::new(300).map_err(|e| WorkflowError::BadName {
                        name: name.to_string(),
                        reason: e.to_string(),
                    })?,
                    RecordType::TXT,
                    vec![marker.clone()],
                )
                .map_err(|e| WorkflowError::BadName {
                    name: name.to_string(),
                    reason: e.to_string(),
                })?;
                changes.push(Change {
                    action: ChangeAction::Upsert,
                    set,
                });
            }
        }
    }
    // Owned A/AAAA sets that are no longer wanted, and their ownership records.
    for name in &owned {
        for rtype in [RecordType::A, RecordType::AAAA] {
            let wanted = desired.iter().any(|s| &s.name == name && s.rtype == rtype);
            if let Some(cur) = by_key.get(&(name.clone(), rtype)) {
                if !wanted {
                    changes.push(Change {
                        action: ChangeAction::Delete,
                        set: (*cur).clone(),
                    });
                    report.deleted += 1;
                }
            }
        }
        if !wanted_names.contains(name) {
            if let Some(reg) =
                registry_name(name).and_then(|r| by_key.get(&(r, RecordType::TXT)).copied())
            {
                changes.push(Change {
                    action: ChangeAction::Delete,
                    set: reg.clone(),
                });
            }
        }
    }
    if !changes.is_empty() {
        report.change_ids = p.change_record_sets(zone_id, &changes).await?;
    }
    Ok(report)
}

/// UPSERTs the child's NS set in the parent zone (found by ID, or as the hosted zone with the
/// longest suffix of the child's name).
pub async fn delegate<P: DnsProvider>(
    p: &P,
    parent: &ParentRef,
    child: &HostedZoneInfo,
) -> Result<Vec<String>, WorkflowError> {
    let parent_id = match parent {
        ParentRef::ZoneId(id) => id.clone(),
        ParentRef::Domain(domain) => {
            let mut cur = Some(domain.clone());
            let mut found = None;
            while let Some(name) = cur {
                // The child itself is never its own parent.
                if let Some(z) = p
                    .find_zones(&name)
                    .await?
                    .into_iter()
                    .find(|z| z.id != child.id)
                {
                    found = Some(z.id);
                    break;
                }
                cur = name.parent().filter(|n| !n.is_root());
            }
            found.ok_or_else(|| WorkflowError::NoParent(domain.to_string()))?
        }
    };
    let ns = child
        .name_servers
        .iter()
        .map(|n| DomainName::parse(n).map(RecordData::Ns))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| WorkflowError::BadName {
            name: child.name.to_string(),
            reason: e.to_string(),
        })?;
    let set = RecordSet::new(
        child.name.clone(),
        Ttl::new(300).map_err(|e| WorkflowError::BadName {
            name: child.name.to_string(),
            reason: e.to_string(),
        })?,
        RecordType::NS,
        ns,
    )
    .map_err(|e| WorkflowError::BadName {
        name: child.name.to_string(),
        reason: e.to_string(),
    })?;
    let current = p.list_record_sets(&parent_id).await?;
    if current.iter().any(|s| same_set(s, &set)) {
        return Ok(Vec::new());
    }
    Ok(p.change_record_sets(
        &parent_id,
        &[Change {
            action: ChangeAction::Upsert,
            set,
        }],
    )
    .await?)
}

/// Whether two record sets hold the same data: a service may return a set's values in any
/// order (Route53 does not keep them sorted), so values compare as a set.
pub fn same_set(a: &RecordSet, b: &RecordSet) -> bool {
    a.name == b.name
        && a.rtype == b.rtype
        && a.ttl == b.ttl
        && a.set_identifier == b.set_identifier
        && a.policy == b.policy
        && a.health_check_id == b.health_check_id
        && a.alias == b.alias
        && a.records.len() == b.records.len()
        && a.records.iter().all(|r| b.records.contains(r))
        && b.records.iter().all(|r| a.records.contains(r))
}

/// Where a wait for INSYNC stands, reported after each poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitProgress {
    /// Changes not served yet.
    pub pending: Vec<String>,
    /// Changes served.
    pub insync: Vec<String>,
    /// Time since the wait began.
    pub elapsed: Duration,
}

impl std::fmt::Display for WaitProgress {
    /// `waiting for change C1 to be INSYNC (1.2 s)`, then `change C1 is INSYNC (1.4 s)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        let list = |ids: &[String]| {
            let noun = if ids.len() == 1 { "change" } else { "changes" };
            format!("{noun} {}", ids.join(", "))
        };
        if self.pending.is_empty() {
            let verb = if self.insync.len() == 1 { "is" } else { "are" };
            write!(f, "{} {verb} INSYNC ({secs:.1} s)", list(&self.insync))
        } else {
            write!(
                f,
                "waiting for {} to be INSYNC ({secs:.1} s)",
                list(&self.pending)
            )
        }
    }
}

/// Waits until every change is INSYNC, reporting `progress` after each poll (nothing when there
/// are no changes to wait for).
pub async fn wait_insync<P: DnsProvider>(
    p: &P,
    change_ids: &[String],
    timeout: Duration,
    mut progress: impl FnMut(&WaitProgress),
) -> Result<(), WorkflowError> {
    if change_ids.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        let mut state = WaitProgress {
            pending: Vec::new(),
            insync: Vec::new(),
            elapsed: Duration::ZERO,
        };
        for id in change_ids {
            if p.change_status(id).await? == ChangeStatus::InSync {
                state.insync.push(id.clone());
            } else {
                state.pending.push(id.clone());
            }
        }
        state.elapsed = started.elapsed();
        progress(&state);
        if state.pending.is_empty() {
            return Ok(());
        }
        if started.elapsed() > timeout {
            return Err(WorkflowError::Timeout(timeout));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// The policy of a zone's ACME identity: change and list only `_acme-challenge` TXT records of
/// that zone, poll changes, and find zones by name (design section 1, step 3).
pub fn acme_policy(zone_id: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":["route53:ChangeResourceRecordSets","route53:ListResourceRecordSets"],"Resource":"arn:aws:route53:::hostedzone/{zone_id}","Condition":{{"ForAllValues:StringLike":{{"route53:ChangeResourceRecordSetsNormalizedRecordNames":["_acme-challenge.*"]}},"ForAllValues:StringEquals":{{"route53:ChangeResourceRecordSetsRecordTypes":["TXT"]}}}}}},{{"Effect":"Allow","Action":"route53:GetChange","Resource":"arn:aws:route53:::change/*"}},{{"Effect":"Allow","Action":"route53:ListHostedZonesByName","Resource":"*"}}]}}"#
    )
}

/// The name of the ACME identity's inline policy.
pub const ACME_POLICY_NAME: &str = "acme-dns01";

/// Whether two IAM policy documents grant the same: both parsed as IAM reads them (a single
/// value or a list, one statement or a list), then compared with the order of statements,
/// actions, resources, conditions and values ignored. A document that does not parse equals
/// nothing, so it is replaced.
pub fn same_policy(a: &str, b: &str) -> bool {
    fn canonical(text: &str) -> Option<Vec<String>> {
        let policy = api::policy::Policy::parse(text).ok()?;
        let mut statements: Vec<String> = policy
            .statements
            .into_iter()
            .map(|mut s| {
                for list in [&mut s.actions, &mut s.resources] {
                    list.sort();
                    list.dedup();
                }
                for c in &mut s.conditions {
                    c.values.sort();
                    c.values.dedup();
                }
                let mut conditions: Vec<String> =
                    s.conditions.iter().map(|c| format!("{c:?}")).collect();
                conditions.sort();
                format!(
                    "{:?} {:?} {} {:?} {} {conditions:?}",
                    s.effect, s.actions, s.not_action, s.resources, s.not_resource
                )
            })
            .collect();
        statements.sort();
        statements.dedup();
        Some(statements)
    }
    match (canonical(a), canonical(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// The IAM user of a zone's ACME identity: `cert-manager-<zone with dashes>`, at most 64.
pub fn identity_user(zone: &DomainName) -> String {
    let mut u = format!(
        "cert-manager-{}",
        zone.to_string().trim_end_matches('.').replace('.', "-")
    );
    u.retain(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    u.truncate(64);
    u
}

/// What `ensure_identity` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityReport {
    pub user: String,
    pub access_key_id: String,
    /// A new key was made (first run or rotation).
    pub created: bool,
    /// Keys retired after the new one was stored.
    pub retired: Vec<String>,
}

/// Gives the zone its least-privilege identity: the user, its policy, and an access key stored
/// as the secret `secret` (`access-key-id`, `secret-access-key`, `zone-id`, `region`). With
/// `rotate`, or when the stored key no longer exists, a new key is made, stored, and only then
/// the older keys are deleted, so at most two keys are ever alive.
pub async fn ensure_identity<P: DnsProvider>(
    p: &P,
    zone: &HostedZoneInfo,
    region: &str,
    secrets: &store::secrets::Secrets,
    secret: &model::secret::SecretRef,
    rotate: bool,
) -> Result<IdentityReport, WorkflowError> {
    use model::secret::{SecretSpec, SecretType, SecretValue};
    use store::secrets::{Caller, SecretStoreError};
    let user = identity_user(&zone.name);
    // Read first, write only what differs: an unchanged identity costs no mutating call.
    if !p.user_exists(&user).await? {
        p.ensure_user(&user).await?;
    }
    let policy = acme_policy(&zone.id);
    let current = p.get_user_policy(&user, ACME_POLICY_NAME).await?;
    if !current.is_some_and(|c| same_policy(&c, &policy)) {
        p.put_user_policy(&user, ACME_POLICY_NAME, &policy).await?;
    }
    let keys = p.list_access_keys(&user).await?;
    let stored = match secrets.get(&Caller::admin(), secret, None) {
        Ok((_, spec)) => spec
            .data
            .get("access-key-id")
            .map(|v| String::from_utf8_lossy(v.expose()).into_owned()),
        Err(SecretStoreError::NotFound(_)) => None,
        Err(e) => return Err(WorkflowError::Secret(e.to_string())),
    };
    if let Some(id) = &stored {
        if !rotate && keys.contains(id) {
            return Ok(IdentityReport {
                user,
                access_key_id: id.clone(),
                created: false,
                retired: Vec::new(),
            });
        }
    }
    // Room for the new key: keep the stored one (still in use) and drop strays.
    let mut alive = keys.clone();
    while alive.len() >= 2 {
        let victim = alive
            .iter()
            .find(|k| Some(*k) != stored.as_ref())
            .cloned()
            .unwrap_or_else(|| alive[0].clone());
        p.delete_access_key(&user, &victim).await?;
        alive.retain(|k| k != &victim);
    }
    let key = p.create_access_key(&user).await?;
    let spec = SecretSpec {
        secret_type: SecretType::Opaque,
        data: std::collections::BTreeMap::from([
            (
                "access-key-id".to_string(),
                SecretValue::new(key.id.clone().into_bytes()),
            ),
            (
                "secret-access-key".to_string(),
                SecretValue::new(key.secret.clone().into_bytes()),
            ),
            (
                "zone-id".to_string(),
                SecretValue::new(zone.id.clone().into_bytes()),
            ),
            (
                "region".to_string(),
                SecretValue::new(region.as_bytes().to_vec()),
            ),
        ]),
        labels: std::collections::BTreeMap::from([(
            "edgeplane.io/zone".to_string(),
            zone.name.to_string().trim_end_matches('.').to_string(),
        )]),
        annotations: std::collections::BTreeMap::new(),
    };
    secrets
        .apply(&Caller::admin(), secret, &spec)
        .map_err(|e| WorkflowError::Secret(e.to_string()))?;
    // Only now, with the new key stored, retire the others.
    let mut retired = Vec::new();
    for old in alive.into_iter().filter(|k| k != &key.id) {
        p.delete_access_key(&user, &old).await?;
        retired.push(old);
    }
    Ok(IdentityReport {
        user,
        access_key_id: key.id,
        created: true,
        retired,
    })
}

/// Everything a DNSZone asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZonePlan {
    /// Who owns what the workflow writes (`namespace/name` of the DNSZone).
    pub owner: String,
    pub domain: DomainName,
    pub parent: Option<ParentRef>,
    pub network: Network,
    pub records: Vec<RecordSpec>,
    /// Where the scoped ACME identity's key goes; `None` for no identity.
    pub acme_secret: Option<model::secret::SecretRef>,
    pub region: String,
}

/// One condition of a zone's status, Kubernetes style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub kind: &'static str,
    pub ok: bool,
    pub reason: String,
}

/// The status a reconcile reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneStatus {
    pub zone_id: Option<String>,
    pub name_servers: Vec<String>,
    pub conditions: Vec<Condition>,
}

impl ZoneStatus {
    /// Whether every condition holds.
    pub fn ready(&self) -> bool {
        !self.conditions.is_empty() && self.conditions.iter().all(|c| c.ok)
    }

    /// The status as the store keeps it for `plan`'s DNSZone (the store sets times and the
    /// generation).
    pub fn to_record(&self, plan: &ZonePlan) -> store::dnszones::DnsZoneStatus {
        store::dnszones::DnsZoneStatus {
            owner: plan.owner.clone(),
            domain: plan.domain.to_string(),
            zone_id: self.zone_id.clone(),
            name_servers: self.name_servers.clone(),
            conditions: self
                .conditions
                .iter()
                .map(|c| store::dnszones::StatusCondition {
                    kind: c.kind.to_string(),
                    status: c.ok,
                    reason: c.reason.clone(),
                    last_transition_time: 0,
                })
                .collect(),
            observed_generation: 0,
            spec_digest: plan_digest(plan),
            last_reconciled: 0,
        }
    }
}

/// A digest of everything `plan` asks for: it changes exactly when the plan does, so a status
/// can count the generations of a DNSZone's spec.
pub fn plan_digest(plan: &ZonePlan) -> String {
    let mut text = format!("owner {}\ndomain {}\n", plan.owner, plan.domain);
    match &plan.parent {
        Some(ParentRef::Domain(d)) => text.push_str(&format!("parent domain {d}\n")),
        Some(ParentRef::ZoneId(z)) => text.push_str(&format!("parent zone {z}\n")),
        None => {}
    }
    text.push_str(&format!(
        "public {}\ninternal {}\n",
        plan.network.elb_eips.join(","),
        plan.network.internal_elb_ips.join(",")
    ));
    for r in &plan.records {
        text.push_str(&format!(
            "record {} {:?} {}\n",
            r.name, r.from_network, r.ttl
        ));
    }
    if let Some(secret) = &plan.acme_secret {
        text.push_str(&format!("acme {secret}\n"));
    }
    text.push_str(&format!("region {}\n", plan.region));
    format!("{:016x}", fnv64(text.as_bytes()))
}

/// How long a reconcile waits for its changes to be INSYNC.
pub const INSYNC_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs every step of the workflow for `plan` and reports each as a condition: Zone, Delegated,
/// RecordsSynced, CredentialsReady, and Ready (true when all the others are). A failed step is
/// reported, and the steps that do not need it still run. Waits for the delegation and the
/// records to be INSYNC, reporting each poll to `progress`. Safe to repeat: a second run with
/// nothing changed makes no mutating call.
pub async fn reconcile<P: DnsProvider>(
    p: &P,
    plan: &ZonePlan,
    secrets: Option<&store::secrets::Secrets>,
    mut progress: impl FnMut(&WaitProgress),
) -> ZoneStatus {
    let mut status = reconcile_steps(p, plan, secrets, &mut progress).await;
    let failed: Vec<&str> = status
        .conditions
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.kind)
        .collect();
    status.conditions.push(Condition {
        kind: "Ready",
        ok: failed.is_empty(),
        reason: if failed.is_empty() {
            "all conditions hold".to_string()
        } else {
            format!("not ready: {}", failed.join(", "))
        },
    });
    status
}

async fn reconcile_steps<P: DnsProvider>(
    p: &P,
    plan: &ZonePlan,
    secrets: Option<&store::secrets::Secrets>,
    progress: &mut impl FnMut(&WaitProgress),
) -> ZoneStatus {
    let mut status = ZoneStatus::default();
    let cond = |kind: &'static str, r: Result<String, WorkflowError>| match r {
        Ok(reason) => Condition {
            kind,
            ok: true,
            reason,
        },
        Err(e) => Condition {
            kind,
            ok: false,
            reason: e.to_string(),
        },
    };
    let zone = match ensure_zone(p, &plan.owner, &plan.domain).await {
        Ok(z) => z,
        Err(e) => {
            status.conditions.push(cond("Zone", Err(e)));
            return status;
        }
    };
    status.zone_id = Some(zone.id.clone());
    status.name_servers = zone.name_servers.clone();
    status
        .conditions
        .push(cond("Zone", Ok(format!("hosted zone {}", zone.id))));
    if let Some(parent) = &plan.parent {
        let r = async {
            let ids = delegate(p, parent, &zone).await?;
            wait_insync(p, &ids, INSYNC_TIMEOUT, &mut *progress).await?;
            Ok(if ids.is_empty() {
                "delegation in place".to_string()
            } else {
                "delegation updated".to_string()
            })
        }
        .await;
        status.conditions.push(cond("Delegated", r));
    }
    let records = async {
        let desired = address_records(&zone.name, &plan.network, &plan.records)?;
        let report = apply_records(p, &zone.id, &plan.owner, &desired).await?;
        wait_insync(p, &report.change_ids, INSYNC_TIMEOUT, &mut *progress).await?;
        if let Some(e) = report.skipped.first() {
            return Err(e.clone());
        }
        Ok(format!(
            "{} upserted, {} deleted",
            report.upserted, report.deleted
        ))
    }
    .await;
    status.conditions.push(cond("RecordsSynced", records));
    if let (Some(secret), Some(secrets)) = (&plan.acme_secret, secrets) {
        let r = ensure_identity(p, &zone, &plan.region, secrets, secret, false)
            .await
            .map(|i| format!("{} with key {} in secret {secret}", i.user, i.access_key_id));
        status.conditions.push(cond("CredentialsReady", r));
    }
    status
}

/// Removes everything a DNSZone made, in order: its records, the delegation in the parent, its
/// identity (keys, policy, user) and secret, then the zone. Every step is idempotent, so a run
/// interrupted by a crash is finished by the next one. Returns what it removed; a zone that still
/// holds records someone else made is left, with the reason.
pub async fn teardown<P: DnsProvider>(
    p: &P,
    plan: &ZonePlan,
    secrets: Option<&store::secrets::Secrets>,
) -> Result<Vec<String>, WorkflowError> {
    let mut done = Vec::new();
    let reference = caller_reference(&plan.owner, &plan.domain);
    let zone = p
        .find_zones(&plan.domain)
        .await?
        .into_iter()
        .find(|z| z.caller_reference == reference);
    if let Some(zone) = &zone {
        let report = apply_records(p, &zone.id, &plan.owner, &[]).await?;
        if report.deleted > 0 {
            done.push(format!("deleted {} record sets", report.deleted));
        }
    }
    if let Some(parent) = &plan.parent {
        let parent_id = match parent {
            ParentRef::ZoneId(id) => Some(id.clone()),
            ParentRef::Domain(d) => {
                let mut cur = Some(d.clone());
                let mut found = None;
                while let Some(name) = cur {
                    let own = zone.as_ref().map(|z| z.id.clone());
                    if let Some(z) = p
                        .find_zones(&name)
                        .await?
                        .into_iter()
                        .find(|z| Some(&z.id) != own.as_ref())
                    {
                        found = Some(z.id);
                        break;
                    }
                    cur = name.parent().filter(|n| !n.is_root());
                }
                found
            }
        };
        if let Some(parent_id) = parent_id {
            let delegation: Vec<RecordSet> = p
                .list_record_sets(&parent_id)
                .await?
                .into_iter()
                .filter(|s| s.name == plan.domain && s.rtype == RecordType::NS)
                .collect();
            if !delegation.is_empty() {
                let changes: Vec<Change> = delegation
                    .into_iter()
                    .map(|set| Change {
                        action: ChangeAction::Delete,
                        set,
                    })
                    .collect();
                p.change_record_sets(&parent_id, &changes).await?;
                done.push("removed the delegation".to_string());
            }
        }
    }
    if plan.acme_secret.is_some() {
        let user = identity_user(&plan.domain);
        match p.list_access_keys(&user).await {
            Ok(keys) => {
                for k in keys {
                    p.delete_access_key(&user, &k).await?;
                }
                match p.delete_user_policy(&user, ACME_POLICY_NAME).await {
                    Ok(()) | Err(ProviderError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                match p.delete_user(&user).await {
                    Ok(()) | Err(ProviderError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                done.push(format!("deleted identity {user}"));
            }
            Err(ProviderError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        if let (Some(secret), Some(secrets)) = (&plan.acme_secret, secrets) {
            match secrets.delete(&store::secrets::Caller::admin(), secret) {
                Ok(()) => done.push(format!("deleted secret {secret}")),
                Err(store::secrets::SecretStoreError::NotFound(_)) => {}
                Err(e) => return Err(WorkflowError::Secret(e.to_string())),
            }
        }
    }
    if let Some(zone) = zone {
        p.delete_zone(&zone.id).await?;
        done.push(format!("deleted hosted zone {}", zone.id));
    }
    Ok(done)
}

#[cfg(test)]
mod tests;
