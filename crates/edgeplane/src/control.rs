//! Zone and record operations of the CLI, and the control socket that carries them to a
//! running server.
//!
//! The store has one writer. When no server runs, the CLI opens the store itself; when
//! `edgeplane serve` holds it, the CLI sends the same request over `control.sock` in the data
//! directory (mode 0600: only the owner of the data may write through it) and the server
//! executes it. Either way the request runs through [`execute`].

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use model::record::{RecordData, RecordSet, RecordType, Ttl};
use model::secret::{SecretRef, SecretSpec, SecretType, SecretValue};
use model::zone::{Change, ChangeAction};
use model::{DomainName, HostedZoneId, Zone};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use store::identities::Identities;
use store::secrets::{Caller, MasterKeySource, Secrets};
use store::{Store, StoreError};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The socket's file name inside the data directory.
pub(crate) const SOCKET_FILE: &str = "control.sock";
/// The secret store's audit log inside the data directory.
pub(crate) const AUDIT_FILE: &str = "audit.log";
/// Largest request accepted on the control socket (zone imports included).
const MAX_REQUEST: usize = 64 * 1024 * 1024;

/// Name servers of a new zone when none are given.
pub(crate) const DEFAULT_NAME_SERVERS: [&str; 2] =
    ["ns1.edgeplane.internal.", "ns2.edgeplane.internal."];

/// One CLI operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) enum Request {
    ZoneCreate {
        name: String,
        caller_reference: Option<String>,
        comment: Option<String>,
        name_servers: Vec<String>,
    },
    ZoneList,
    /// Every Certificate's status.
    CertList,
    /// One Certificate's status, by `namespace/name`.
    CertGet {
        name: String,
    },
    /// A DNSZone's status, by `namespace/name`, name (in any namespace) or domain.
    ZoneGet {
        name: String,
    },
    ZoneDelete {
        zone: String,
        force: bool,
    },
    ZoneImport {
        zone: String,
        text: String,
        create: bool,
    },
    ZoneExport {
        zone: String,
    },
    RecordChange {
        zone: String,
        action: String,
        name: String,
        rtype: String,
        ttl: u32,
        values: Vec<String>,
    },
    RecordDelete {
        zone: String,
        name: String,
        rtype: String,
    },
    RecordList {
        zone: String,
    },
    SecretPut {
        namespace: String,
        name: String,
        secret_type: String,
        /// Values in base64.
        data: RedactedData,
        /// Replace an existing secret instead of failing.
        update: bool,
    },
    SecretGet {
        namespace: String,
        name: String,
        version: Option<u64>,
        key: Option<String>,
    },
    SecretList {
        namespace: Option<String>,
    },
    SecretDelete {
        namespace: String,
        name: String,
    },
    SecretRotateMasterKey,
    IdentityCreate {
        name: String,
        rules: Vec<String>,
    },
    ZoneApply {
        /// Manifests (YAML, several documents).
        text: String,
    },
    ZoneTeardown {
        /// Manifests whose resources to remove.
        text: String,
    },
    IdentityList,
    IdentityDelete {
        access_key_id: String,
    },
    IdentitySetActive {
        access_key_id: String,
        active: bool,
    },
}

/// Secret values in transit on the control socket: never printed by `Debug`.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct RedactedData(pub(crate) BTreeMap<String, String>);

impl std::fmt::Debug for RedactedData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} redacted values>", self.0.len())
    }
}

impl Request {
    /// The operation's name, for logs.
    pub(crate) fn op(&self) -> &'static str {
        match self {
            Request::ZoneCreate { .. } => "zone-create",
            Request::ZoneList => "zone-list",
            Request::CertList => "cert-list",
            Request::CertGet { .. } => "cert-get",
            Request::ZoneGet { .. } => "zone-get",
            Request::ZoneDelete { .. } => "zone-delete",
            Request::ZoneImport { .. } => "zone-import",
            Request::ZoneExport { .. } => "zone-export",
            Request::RecordChange { .. } => "record-change",
            Request::RecordDelete { .. } => "record-delete",
            Request::RecordList { .. } => "record-list",
            Request::SecretPut { .. } => "secret-put",
            Request::SecretGet { .. } => "secret-get",
            Request::SecretList { .. } => "secret-list",
            Request::SecretDelete { .. } => "secret-delete",
            Request::SecretRotateMasterKey => "secret-rotate-master-key",
            Request::IdentityCreate { .. } => "identity-create",
            Request::ZoneApply { .. } => "zone-apply",
            Request::ZoneTeardown { .. } => "zone-teardown",
            Request::IdentityList => "identity-list",
            Request::IdentityDelete { .. } => "identity-delete",
            Request::IdentitySetActive { .. } => "identity-set-active",
        }
    }

    /// Whether the request needs the secret store (and so the master key).
    pub(crate) fn needs_secrets(&self) -> bool {
        self.op().starts_with("secret-")
            || self.op().starts_with("identity-")
            || self.op() == "zone-apply"
            || self.op() == "zone-teardown"
    }

    /// Whether the request runs DNSZones (and so needs the static configuration's providers).
    pub(crate) fn needs_dns_providers(&self) -> bool {
        self.op() == "zone-apply" || self.op() == "zone-teardown"
    }
}

/// The reply to a request: text to print, or an error. Before it, the server may send any
/// number of progress lines (`progress` set), which the CLI prints to standard error as they
/// come.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Reply {
    pub(crate) output: String,
    pub(crate) error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) progress: Option<String>,
}

/// What requests run against: the store, and the secret store when it is open.
#[derive(Clone)]
pub(crate) struct Context {
    pub(crate) store: Store,
    pub(crate) secrets: Option<Secrets>,
    /// Name servers of the zones DNSZones create (serve's `--zone-nameserver`, as for its
    /// manifest directory); empty for [`DEFAULT_NAME_SERVERS`].
    pub(crate) name_servers: Vec<DomainName>,
    /// The providers DNSZones may name (the static configuration of `serve`, or of the CLI when
    /// it opens the store itself).
    pub(crate) providers: std::sync::Arc<crate::providers::DnsProviders>,
}

impl Context {
    fn secrets(&self) -> anyhow::Result<&Secrets> {
        self.secrets
            .as_ref()
            .ok_or_else(|| anyhow!("the secret store is not open"))
    }
}

/// Runs a request against the store and returns what to print; long steps report to
/// `progress` as they go (one line each, for standard error).
pub(crate) fn execute(
    ctx: &Context,
    req: Request,
    progress: &dyn Fn(&str),
) -> anyhow::Result<String> {
    let store = &ctx.store;
    match req {
        Request::SecretPut {
            namespace,
            name,
            secret_type,
            data,
            update,
        } => {
            let r = SecretRef::new(&namespace, &name)?;
            let mut values = BTreeMap::new();
            for (k, v) in data.0 {
                let bytes = model::base64::decode(v.as_bytes())
                    .ok_or_else(|| anyhow!("value of {k} is not base64"))?;
                values.insert(k, SecretValue::new(bytes));
            }
            let spec = SecretSpec {
                secret_type: SecretType::parse(&secret_type)?,
                data: values,
                labels: BTreeMap::new(),
                annotations: BTreeMap::new(),
            };
            let caller = Caller::admin();
            let info = if update {
                ctx.secrets()?.apply(&caller, &r, &spec)?
            } else {
                ctx.secrets()?.create(&caller, &r, &spec)?
            };
            Ok(format!("{r} version {}\n", info.version))
        }
        Request::SecretGet {
            namespace,
            name,
            version,
            key,
        } => {
            let r = SecretRef::new(&namespace, &name)?;
            let (info, spec) = ctx.secrets()?.get(&Caller::admin(), &r, version)?;
            match key {
                Some(k) => {
                    let v = spec
                        .data
                        .get(&k)
                        .ok_or_else(|| anyhow!("secret {r} has no key {k:?}"))?;
                    Ok(String::from_utf8_lossy(v.expose()).into_owned())
                }
                None => Ok(format!(
                    "{}\n",
                    serde_json::to_string_pretty(&api::admin::secret_document(&info, &spec))?
                )),
            }
        }
        Request::SecretList { namespace } => {
            let list = ctx
                .secrets()?
                .list(&Caller::admin(), namespace.as_deref())?;
            let mut out = String::from("NAMESPACE\tNAME\tTYPE\tDATA\tVERSION\n");
            for i in list {
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\n",
                    i.reference.namespace(),
                    i.reference.name(),
                    i.secret_type,
                    i.keys.len(),
                    i.version
                ));
            }
            Ok(out)
        }
        Request::SecretDelete { namespace, name } => {
            let r = SecretRef::new(&namespace, &name)?;
            ctx.secrets()?.delete(&Caller::admin(), &r)?;
            Ok(format!("deleted {r}\n"))
        }
        Request::IdentityCreate { name, rules } => {
            let (identity, creds) =
                Identities::new(ctx.secrets()?.clone())?.create(&name, &rules)?;
            Ok(format!(
                "[{}]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                identity.name,
                creds.access_key_id,
                creds.secret_access_key.as_str()
            ))
        }
        Request::ZoneApply { text } => {
            let secrets = ctx.secrets()?.clone();
            let provider = embedded_provider(ctx)?;
            let runtime = tokio::runtime::Handle::current();
            let mut out = String::new();
            let mut failures = 0;
            for result in config::dnszone::parse_with(&text, ctx.providers.config()) {
                match result {
                    Ok(zone) => {
                        let plan = &zone.plan;
                        let status = match runtime.block_on(ctx.providers.reconcile(
                            &provider,
                            &zone,
                            &secrets,
                            |w| progress(&format!("{}: {w}", plan.owner)),
                        )) {
                            Ok(s) => s,
                            Err(e) => {
                                failures += 1;
                                out.push_str(&format!("error: {}: {e:#}\n", plan.owner));
                                continue;
                            }
                        };
                        if !status.ready() {
                            failures += 1;
                        }
                        // The status outlives the command: `zone get` and `zone list` show it.
                        if let Err(e) = store.record_dnszone_status(status.to_record(plan)) {
                            failures += 1;
                            out.push_str(&format!(
                                "error: {}: status not recorded: {e}\n",
                                plan.owner
                            ));
                        }
                        out.push_str(&format!(
                            "{}: {} zone {} ready={}\n",
                            plan.owner,
                            plan.domain,
                            status.zone_id.as_deref().unwrap_or("-"),
                            status.ready()
                        ));
                        if !status.name_servers.is_empty() {
                            out.push_str(&format!(
                                "  name servers: {}\n",
                                status.name_servers.join(", ")
                            ));
                        }
                        for c in &status.conditions {
                            out.push_str(&format!(
                                "  {}: {} ({})\n",
                                c.kind,
                                if c.ok { "True" } else { "False" },
                                c.reason
                            ));
                        }
                    }
                    Err(e @ config::dnszone::ManifestError::OtherKind { .. }) => {
                        out.push_str(&format!("{e}\n"))
                    }
                    Err(e) => {
                        failures += 1;
                        out.push_str(&format!("error: {e}\n"));
                    }
                }
            }
            if failures > 0 {
                bail!("{out}{failures} resource(s) not ready");
            }
            Ok(out)
        }
        Request::ZoneTeardown { text } => {
            let secrets = ctx.secrets()?.clone();
            let provider = embedded_provider(ctx)?;
            let runtime = tokio::runtime::Handle::current();
            let mut out = String::new();
            let mut failures = 0;
            // Children before parents: a parent zone still holds its children's delegations.
            let mut results = config::dnszone::parse_with(&text, ctx.providers.config());
            results.sort_by_key(|r| {
                std::cmp::Reverse(
                    r.as_ref()
                        .map_or(usize::MAX, |z| z.plan.domain.label_count()),
                )
            });
            for result in results {
                match result {
                    Ok(zone) => match runtime
                        .block_on(ctx.providers.teardown(&provider, &zone, &secrets))
                    {
                        Ok(done) => {
                            let plan = &zone.plan;
                            // Nothing of the DNSZone is left, so neither is its status.
                            store.delete_dnszone_status(&plan.owner)?;
                            if done.is_empty() {
                                out.push_str(&format!("{}: nothing left to delete\n", plan.owner))
                            } else {
                                out.push_str(&format!("{}: {}\n", plan.owner, done.join("; ")))
                            }
                        }
                        Err(e) => {
                            failures += 1;
                            out.push_str(&format!(
                                "{}: {e:#} (run again once resolved)\n",
                                zone.plan.owner
                            ));
                        }
                    },
                    Err(e @ config::dnszone::ManifestError::OtherKind { .. }) => {
                        out.push_str(&format!("{e}\n"))
                    }
                    Err(e) => {
                        failures += 1;
                        out.push_str(&format!("error: {e}\n"));
                    }
                }
            }
            if failures > 0 {
                bail!("{out}{failures} resource(s) not deleted");
            }
            Ok(out)
        }
        Request::IdentityList => {
            let mut out = String::from("ACCESS_KEY_ID\tNAME\tACTIVE\tRULES\n");
            for i in Identities::new(ctx.secrets()?.clone())?.list()? {
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\n",
                    i.access_key_id,
                    i.name,
                    i.active,
                    i.rules.join(" ")
                ));
            }
            Ok(out)
        }
        Request::IdentityDelete { access_key_id } => {
            Identities::new(ctx.secrets()?.clone())?.delete(&access_key_id)?;
            Ok(format!("deleted {access_key_id}\n"))
        }
        Request::IdentitySetActive {
            access_key_id,
            active,
        } => {
            let i = Identities::new(ctx.secrets()?.clone())?.set_active(&access_key_id, active)?;
            Ok(format!(
                "{} {}\n",
                i.access_key_id,
                if i.active { "active" } else { "inactive" }
            ))
        }
        Request::SecretRotateMasterKey => {
            let report = ctx.secrets()?.rotate_master_key()?;
            Ok(format!(
                "master key rotated from {} to {}: {} data keys re-sealed in {:.3} s\n",
                report.old_key, report.new_key, report.rewrapped, report.seconds
            ))
        }
        Request::ZoneCreate {
            name,
            caller_reference,
            comment,
            name_servers,
        } => {
            let name = DomainName::parse(&name)?;
            let ns: Vec<&str> = if name_servers.is_empty() {
                DEFAULT_NAME_SERVERS.to_vec()
            } else {
                name_servers.iter().map(String::as_str).collect()
            };
            let ns = ns
                .into_iter()
                .map(DomainName::parse)
                .collect::<Result<Vec<_>, _>>()?;
            let caller_reference = caller_reference
                .unwrap_or_else(|| format!("edgeplane-cli-{:016x}", store::random_u64()));
            let (zone, _) = store.create_zone(name, caller_reference, comment, &ns)?;
            Ok(format!("{}\t{}\n", zone.id, zone.name))
        }
        Request::ZoneList => {
            let snapshot = store.snapshot();
            let mut out = String::from("ID\tNAME\tRECORD_SETS\tSERIAL\n");
            for (id, z) in &snapshot.zones {
                let zone = z.zone();
                out.push_str(&format!(
                    "{id}\t{}\t{}\t{}\n",
                    zone.name,
                    zone.records.len(),
                    zone.serial()
                ));
            }
            let statuses = store.dnszone_statuses()?;
            if !statuses.is_empty() {
                out.push_str("\nDNSZONE\tDOMAIN\tZONE_ID\tREADY\tGENERATION\tRECONCILED\n");
                for s in statuses {
                    out.push_str(&format!(
                        "{}\t{}\t{}\t{}\t{}\t{}\n",
                        s.owner,
                        s.domain,
                        s.zone_id.as_deref().unwrap_or("-"),
                        truth(ready(&s)),
                        s.observed_generation,
                        rfc3339(s.last_reconciled)
                    ));
                }
            }
            Ok(out)
        }
        Request::CertList => {
            let mut out =
                String::from("CERTIFICATE\tSECRET\tREADY\tREVISION\tNOT_AFTER\tRENEWAL\n");
            for s in store.certificate_statuses()? {
                let ready = s.conditions.iter().any(|c| c.kind == "Ready" && c.status);
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\n",
                    s.owner,
                    s.secret_name,
                    truth(ready),
                    s.revision,
                    s.not_after
                        .map_or("-".to_string(), |t| rfc3339(u64::try_from(t).unwrap_or(0))),
                    s.renewal_time
                        .map_or("-".to_string(), |t| rfc3339(u64::try_from(t).unwrap_or(0))),
                ));
            }
            Ok(out)
        }
        Request::CertGet { name } => {
            let s = store
                .certificate_status(&name)?
                .ok_or_else(|| anyhow!("no status for Certificate {name:?} (namespace/name)"))?;
            let when = |t: Option<i64>| {
                t.map_or("-".to_string(), |t| rfc3339(u64::try_from(t).unwrap_or(0)))
            };
            let mut out = format!("Certificate {} (secret {})\n", s.owner, s.secret_name);
            out.push_str(&format!(
                "  not before: {}\n  not after: {}\n  renewal: {}\n",
                when(s.not_before),
                when(s.not_after),
                when(s.renewal_time)
            ));
            out.push_str(&format!(
                "  revision: {}\n  failed attempts: {}\n",
                s.revision, s.failed_issuance_attempts
            ));
            for c in &s.conditions {
                out.push_str(&format!(
                    "  {}={} since {}: {}\n",
                    c.kind,
                    truth(c.status),
                    rfc3339(c.last_transition_time),
                    c.reason
                ));
            }
            Ok(out)
        }
        Request::ZoneGet { name } => {
            let s = find_dnszone(store, &name)?;
            let mut out = format!("DNSZone {}: {}\n", s.owner, s.domain);
            out.push_str(&format!(
                "  zone ID: {}\n",
                s.zone_id.as_deref().unwrap_or("-")
            ));
            out.push_str(&format!("  name servers: {}\n", s.name_servers.join(", ")));
            out.push_str(&format!(
                "  observed generation: {} (reconciled {})\n",
                s.observed_generation,
                rfc3339(s.last_reconciled)
            ));
            for c in &s.conditions {
                out.push_str(&format!(
                    "  {}: {} ({}) since {}\n",
                    c.kind,
                    truth(c.status),
                    c.reason,
                    rfc3339(c.last_transition_time)
                ));
            }
            Ok(out)
        }
        Request::ZoneDelete { zone, force } => {
            let zone = resolve_zone(store, &zone)?;
            if force {
                let apex_only: Vec<RecordSet> = zone
                    .records
                    .values()
                    .filter(|s| {
                        s.name == zone.name && matches!(s.rtype, RecordType::SOA | RecordType::NS)
                    })
                    .cloned()
                    .collect();
                if apex_only.len() != zone.records.len() {
                    store.replace_records(&zone.id, apex_only)?;
                }
            }
            store.delete_zone(&zone.id)?;
            Ok(format!("deleted {}\t{}\n", zone.id, zone.name))
        }
        Request::ZoneImport { zone, text, create } => {
            let existing = resolve_zone(store, &zone);
            let zone = match (existing, create) {
                (Ok(z), _) => z,
                (Err(_), true) => {
                    let name = DomainName::parse(&zone)?;
                    let sets = model::zonefile::parse(&text, &name)?;
                    // The imported apex NS set becomes the zone's name servers.
                    let ns: Vec<DomainName> = sets
                        .iter()
                        .filter(|s| s.name == name && s.rtype == RecordType::NS)
                        .flat_map(|s| s.records.iter())
                        .filter_map(|r| match r {
                            RecordData::Ns(n) => Some(n.clone()),
                            _ => None,
                        })
                        .collect();
                    let ns = if ns.is_empty() {
                        DEFAULT_NAME_SERVERS
                            .iter()
                            .map(|s| DomainName::parse(s))
                            .collect::<Result<Vec<_>, _>>()?
                    } else {
                        ns
                    };
                    let caller = format!("edgeplane-import-{:016x}", store::random_u64());
                    store.create_zone(name, caller, None, &ns)?.0
                }
                (Err(e), false) => return Err(e),
            };
            let sets = model::zonefile::parse(&text, &zone.name)?;
            let count: usize = sets.iter().map(|s| s.records.len()).sum();
            store.replace_records(&zone.id, sets)?;
            let serial = store.zone(&zone.id)?.serial();
            Ok(format!(
                "imported {count} records into {} ({}), serial {serial}\n",
                zone.name, zone.id
            ))
        }
        Request::ZoneExport { zone } => {
            let zone = resolve_zone(store, &zone)?;
            Ok(model::zonefile::write(&zone))
        }
        Request::RecordChange {
            zone,
            action,
            name,
            rtype,
            ttl,
            values,
        } => {
            let zone = resolve_zone(store, &zone)?;
            let action = match action.as_str() {
                "create" => ChangeAction::Create,
                "upsert" => ChangeAction::Upsert,
                "delete" => ChangeAction::Delete,
                other => bail!("unknown action {other:?}"),
            };
            let set = record_set(&zone, &name, &rtype, ttl, &values)?;
            let change = store.change_records(
                &zone.id,
                &[Change {
                    action,
                    set: set.clone(),
                }],
            )?;
            Ok(format!(
                "{} {} {} in {}: change {} serial {}\n",
                action,
                set.name,
                set.rtype,
                zone.name,
                change.id,
                store.zone(&zone.id)?.serial()
            ))
        }
        Request::RecordDelete { zone, name, rtype } => {
            let zone = resolve_zone(store, &zone)?;
            let name = record_name(&zone, &name)?;
            let rtype: RecordType = rtype.parse()?;
            let sets: Vec<RecordSet> = zone
                .records
                .values()
                .filter(|s| s.name == name && s.rtype == rtype)
                .cloned()
                .collect();
            if sets.is_empty() {
                bail!("no {rtype} record set named {name} in {}", zone.name);
            }
            let changes: Vec<Change> = sets
                .into_iter()
                .map(|set| Change {
                    action: ChangeAction::Delete,
                    set,
                })
                .collect();
            let change = store.change_records(&zone.id, &changes)?;
            Ok(format!(
                "DELETE {name} {rtype} in {}: change {}\n",
                zone.name, change.id
            ))
        }
        Request::RecordList { zone } => {
            let zone = resolve_zone(store, &zone)?;
            let mut out = String::new();
            for set in zone.records.values() {
                for d in &set.records {
                    out.push_str(&format!(
                        "{}\t{}\tIN\t{}\t{}\n",
                        set.name, set.ttl, set.rtype, d
                    ));
                }
            }
            Ok(out)
        }
    }
}

/// Whether a recorded status says Ready.
fn ready(s: &store::dnszones::DnsZoneStatus) -> bool {
    s.conditions.iter().any(|c| c.kind == "Ready" && c.status)
}

fn truth(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// Seconds since the Unix epoch as RFC 3339 (UTC).
fn rfc3339(t: u64) -> String {
    let s = api::sigv4::format_amz_date(t);
    match (
        s.get(0..4),
        s.get(4..6),
        s.get(6..8),
        s.get(9..11),
        s.get(11..13),
        s.get(13..15),
    ) {
        (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(se)) => {
            format!("{y}-{mo}-{d}T{h}:{mi}:{se}Z")
        }
        _ => s,
    }
}

/// The DNSZone status that `text` names: `namespace/name`, a name in one namespace, or the
/// domain.
fn find_dnszone(store: &Store, text: &str) -> anyhow::Result<store::dnszones::DnsZoneStatus> {
    let all = store.dnszone_statuses()?;
    let domain = DomainName::parse(text).ok().map(|d| d.to_string());
    let matches = |s: &store::dnszones::DnsZoneStatus| {
        s.owner == text
            || s.owner.split_once('/').map(|(_, n)| n) == Some(text)
            || domain.as_deref() == Some(s.domain.as_str())
    };
    let mut found: Vec<store::dnszones::DnsZoneStatus> = match all.iter().find(|s| s.owner == text)
    {
        Some(exact) => vec![exact.clone()],
        None => all.iter().filter(|s| matches(s)).cloned().collect(),
    };
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!(
            "no DNSZone {text:?} has been reconciled here (known: {})",
            if all.is_empty() {
                "none".to_string()
            } else {
                all.iter()
                    .map(|s| s.owner.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
        _ => bail!(
            "{text:?} names several DNSZones ({}); give namespace/name",
            found
                .iter()
                .map(|s| s.owner.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The embedded DNS provider over the store and its identities.
fn embedded_provider(ctx: &Context) -> anyhow::Result<clouddns::embedded::EmbeddedProvider> {
    let name_servers = if ctx.name_servers.is_empty() {
        DEFAULT_NAME_SERVERS
            .iter()
            .map(|s| DomainName::parse(s))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        ctx.name_servers.clone()
    };
    Ok(
        clouddns::embedded::EmbeddedProvider::new(ctx.store.clone(), name_servers)
            .with_identities(Identities::new(ctx.secrets()?.clone())?),
    )
}

/// Finds a zone by ID or by name.
fn resolve_zone(store: &Store, text: &str) -> anyhow::Result<std::sync::Arc<Zone>> {
    if let Ok(id) = HostedZoneId::parse(text) {
        match store.zone(&id) {
            Ok(z) => return Ok(z),
            Err(StoreError::NoSuchHostedZone(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let name = DomainName::parse(text)
        .with_context(|| format!("{text:?} is neither a zone ID nor a zone name"))?;
    Ok(store.zone_by_name(&name)?)
}

/// A record name given on the command line: `@`, relative to the zone, or absolute.
fn record_name(zone: &Zone, text: &str) -> anyhow::Result<DomainName> {
    Ok(DomainName::parse_relative(text, &zone.name)?)
}

fn record_set(
    zone: &Zone,
    name: &str,
    rtype: &str,
    ttl: u32,
    values: &[String],
) -> anyhow::Result<RecordSet> {
    let name = record_name(zone, name)?;
    let rtype: RecordType = rtype.parse()?;
    if values.is_empty() {
        bail!("at least one value is needed");
    }
    let data = values
        .iter()
        .map(|v| RecordData::parse(rtype, v, Some(&zone.name)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordSet::new(
        name,
        Ttl::new(u64::from(ttl))?,
        rtype,
        data,
    )?)
}

/// Where a CLI request goes: straight to the store, or to the server that holds it.
pub(crate) enum Target {
    Local(Context),
    Server(PathBuf),
}

/// Opens the store (and the secret store, for secret requests), or finds the running server's
/// control socket when the store is in use.
pub(crate) fn connect(
    data_dir: &Path,
    req: &Request,
    key: &MasterKeySource,
    providers: std::sync::Arc<crate::providers::DnsProviders>,
) -> anyhow::Result<Target> {
    match Store::open(data_dir) {
        Ok(store) => {
            let secrets = if req.needs_secrets() {
                Some(Secrets::open(
                    &store,
                    key.clone(),
                    &data_dir.join(AUDIT_FILE),
                )?)
            } else {
                None
            };
            Ok(Target::Local(Context {
                store,
                secrets,
                name_servers: Vec::new(),
                providers,
            }))
        }
        Err(StoreError::Locked { .. }) => {
            let sock = data_dir.join(SOCKET_FILE);
            if !sock.exists() {
                bail!(
                    "the store in {} is in use and no control socket was found",
                    data_dir.display()
                );
            }
            Ok(Target::Server(sock))
        }
        Err(e) => Err(e.into()),
    }
}

impl Target {
    /// Runs the request and returns what to print.
    pub(crate) async fn run(self, req: Request) -> anyhow::Result<String> {
        match self {
            Target::Local(ctx) => {
                tokio::task::spawn_blocking(move || execute(&ctx, req, &|l| eprintln!("{l}")))
                    .await?
            }
            Target::Server(path) => {
                let stream = tokio::net::UnixStream::connect(&path)
                    .await
                    .with_context(|| format!("connecting to {}", path.display()))?;
                let (r, mut w) = stream.into_split();
                let mut line = serde_json::to_vec(&req)?;
                line.push(b'\n');
                w.write_all(&line).await?;
                w.shutdown().await?;
                let mut reader = BufReader::new(r);
                loop {
                    let mut resp = String::new();
                    if reader.read_line(&mut resp).await? == 0 {
                        bail!("the server closed the connection without a reply");
                    }
                    let reply: Reply =
                        serde_json::from_str(&resp).context("malformed reply from the server")?;
                    if let Some(p) = reply.progress {
                        eprintln!("{p}");
                        continue;
                    }
                    return match reply.error {
                        Some(e) => Err(anyhow!(e)),
                        None => Ok(reply.output),
                    };
                }
            }
        }
    }
}

/// Binds the control socket in `data_dir`, readable and writable by its owner only.
pub(crate) fn bind_socket(data_dir: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = data_dir.join(SOCKET_FILE);
    // A socket left by a killed server is stale: this process holds the store lock now.
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)
        .with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves the control socket until `stop` fires, then removes it.
pub(crate) async fn serve_socket(
    listener: tokio::net::UnixListener,
    data_dir: &Path,
    ctx: Context,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let path = data_dir.join(SOCKET_FILE);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(v) => v,
                    Err(e) => { tracing::warn!(error = %e, "control socket accept failed"); continue; }
                };
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle_connection(stream, ctx).await {
                        tracing::warn!(error = %e, "control request failed");
                    }
                });
            }
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

async fn handle_connection(stream: tokio::net::UnixStream, ctx: Context) -> anyhow::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut reader = BufReader::new(r).take(MAX_REQUEST as u64);
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line).await?;
    let reply = match serde_json::from_slice::<Request>(&line) {
        Ok(req) => {
            let op = req.op();
            // Progress goes to the client as it happens, ahead of the reply.
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
            let mut job = tokio::task::spawn_blocking(move || {
                execute(&ctx, req, &|l| {
                    let _ = tx.send(l.to_string());
                })
            });
            let result = loop {
                tokio::select! {
                    done = &mut job => break done?,
                    Some(l) = rx.recv() => {
                        let mut out = serde_json::to_vec(&Reply {
                            output: String::new(),
                            error: None,
                            progress: Some(l),
                        })?;
                        out.push(b'\n');
                        // A client that went away still lets the request finish.
                        let _ = w.write_all(&out).await;
                    }
                }
            };
            // Lines sent just before the end.
            while let Ok(l) = rx.try_recv() {
                let mut out = serde_json::to_vec(&Reply {
                    output: String::new(),
                    error: None,
                    progress: Some(l),
                })?;
                out.push(b'\n');
                let _ = w.write_all(&out).await;
            }
            match result {
                Ok(output) => {
                    tracing::info!(op, "control request done");
                    Reply {
                        output,
                        error: None,
                        progress: None,
                    }
                }
                Err(e) => Reply {
                    output: String::new(),
                    error: Some(format!("{e:#}")),
                    progress: None,
                },
            }
        }
        Err(e) => Reply {
            output: String::new(),
            error: Some(format!("malformed request: {e}")),
            progress: None,
        },
    };
    let mut out = serde_json::to_vec(&reply)?;
    out.push(b'\n');
    w.write_all(&out).await?;
    Ok(())
}
