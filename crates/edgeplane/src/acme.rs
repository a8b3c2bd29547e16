//! ACME issuance for `serve`: the certificate pass hands a Certificate whose issuer is an ACME
//! Issuer or ClusterIssuer to [`Acme::request`], which starts at most one order per
//! Certificate (and at most `maxConcurrentOrders` at once), in the background. An order's
//! challenges are answered the issuer's way:
//!
//! - DNS-01 through a Route53-compatible API: the zone holding the name is the DNSZone (or
//!   embedded zone) with the longest matching domain; its provider's endpoint (edgeplane's own
//!   Route53 API for embedded zones), and the credentials of the solver's secret refs or else
//!   the zone's scoped identity (`acmeCredentials`), which may only touch `_acme-challenge` TXT
//!   records. The TXT record set is changed with multivalue semantics (read, add or remove
//!   this value, write back), serialised per name in this process, so apex plus wildcard and
//!   concurrent orders do not overwrite each other. The CA is only told to validate once every
//!   authoritative name server of the zone answers the value (edgeplane's own DNS listeners for
//!   embedded zones, the zone's NS records otherwise), never a recursive resolver.
//! - HTTP-01 by the proxy: the plain-HTTP entry points answer the token for its host.
//!
//! A failed order is retried after an exponential backoff (`retryBackoff`, doubling up to
//! `maxRetryBackoff`); a change of the Certificate or its issuer retries at once. The account
//! key lives in the issuer's `privateKeySecretRef` secret (`tls.key`), made on first use and
//! reused by every order after.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certs::acme::{Challenge, ChallengeKind, Directory, Solver, Timeouts};
use clouddns::route53::{Route53Options, Route53Provider};
use clouddns::{ChangeStatus, DnsProvider};
use config::certmanager::{AcmeIssuer, CertificatePlan, SolverKind};
use config::dnszone::ProviderRef;
use model::record::{RecordData, RecordSet, RecordType, Ttl};
use model::secret::{SecretRef, SecretSpec, SecretType, SecretValue};
use model::zone::{Change, ChangeAction};
use model::DomainName;
use store::certificates::CertificateOutcome;
use store::secrets::{SecretStoreError, Secrets};
use zeroize::Zeroizing;

/// The ACME settings of the static configuration.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) max_concurrent_orders: usize,
    pub(crate) retry_backoff: Duration,
    pub(crate) max_retry_backoff: Duration,
    pub(crate) propagation_timeout: Duration,
}

impl From<&config::static_config::AcmeSettings> for Settings {
    fn from(s: &config::static_config::AcmeSettings) -> Self {
        Settings {
            max_concurrent_orders: s.max_concurrent_orders,
            retry_backoff: s.retry_backoff,
            max_retry_backoff: s.max_retry_backoff,
            propagation_timeout: s.propagation_timeout,
        }
    }
}

/// What the solvers reach.
pub(crate) struct Env {
    /// edgeplane's own Route53 API (`http://...`), for zones of the embedded store.
    pub(crate) api_endpoint: Option<String>,
    /// edgeplane's DNS listeners: the authoritative servers of embedded zones.
    pub(crate) dns_addrs: Vec<SocketAddr>,
    /// The proxy's HTTP-01 answers and a plain-HTTP entry point to check them through.
    pub(crate) http01: Option<(proxy::acme::Http01Challenges, Option<SocketAddr>)>,
    pub(crate) providers: Arc<crate::providers::DnsProviders>,
    pub(crate) store: store::Store,
    pub(crate) settings: Settings,
}

/// A DNSZone of the manifests, as the DNS-01 solver needs it.
#[derive(Debug, Clone)]
pub(crate) struct ZoneRef {
    pub(crate) domain: DomainName,
    pub(crate) provider: ProviderRef,
    pub(crate) acme_secret: Option<SecretRef>,
}

/// One Certificate to issue from an ACME issuer.
pub(crate) struct Job {
    pub(crate) cert: CertificatePlan,
    pub(crate) issuer_ns: String,
    pub(crate) issuer: AcmeIssuer,
    pub(crate) kept_key: Option<Zeroizing<String>>,
    pub(crate) zones: Vec<ZoneRef>,
    /// The certificate digest written on its secret.
    pub(crate) digest: String,
}

#[derive(Default)]
struct Slot {
    /// The digest of the Certificate and issuer the failures are about.
    key: String,
    running: bool,
    failures: u32,
    retry_at: i64,
    last_error: Option<String>,
}

/// The ACME side of the certificate controller.
pub(crate) struct Acme {
    env: Env,
    handle: tokio::runtime::Handle,
    slots: Mutex<HashMap<String, Slot>>,
    permits: Arc<tokio::sync::Semaphore>,
    accounts: tokio::sync::Mutex<HashMap<String, certs::acme::Account>>,
    txt_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Fired when an order ends, so the manifest loop runs a pass (status, proxy).
    pub(crate) wake: Arc<tokio::sync::Notify>,
}

/// Where a requested certificate stands: an order runs or waits for its retry. Why, and
/// when to look again (Unix seconds).
pub(crate) struct Pending {
    pub(crate) reason: String,
    pub(crate) at: Option<i64>,
}

impl Acme {
    pub(crate) fn new(env: Env, handle: tokio::runtime::Handle) -> Arc<Acme> {
        let permits = Arc::new(tokio::sync::Semaphore::new(
            env.settings.max_concurrent_orders.max(1),
        ));
        Arc::new(Acme {
            env,
            handle,
            slots: Mutex::new(HashMap::new()),
            permits,
            accounts: tokio::sync::Mutex::new(HashMap::new()),
            txt_locks: Mutex::new(HashMap::new()),
            wake: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// Starts an order for `job` unless one runs or its retry time has not come. Called from
    /// the (blocking) certificate pass.
    pub(crate) fn request(
        self: &Arc<Self>,
        job: Job,
        store: &store::Store,
        secrets: &Secrets,
    ) -> Pending {
        let owner = format!("{}/{}", job.cert.namespace, job.cert.name);
        let key = format!(
            "{}|{}",
            job.digest,
            crate::certificates::fnv_hex(&format!("{:?}", job.issuer))
        );
        let now = crate::certificates::now();
        {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let slot = slots.entry(owner.clone()).or_default();
            if slot.running {
                return Pending {
                    reason: "an ACME order is in progress".into(),
                    at: None,
                };
            }
            if slot.key != key {
                // A changed Certificate or issuer is tried at once.
                *slot = Slot {
                    key: key.clone(),
                    ..Slot::default()
                };
            }
            if slot.failures > 0 && now < slot.retry_at {
                return Pending {
                    reason: format!(
                        "retrying in {} s (attempt {}) after: {}",
                        slot.retry_at - now,
                        slot.failures + 1,
                        slot.last_error.as_deref().unwrap_or("a failure")
                    ),
                    at: Some(slot.retry_at),
                };
            }
            slot.running = true;
        }
        let this = self.clone();
        let (store, secrets) = (store.clone(), secrets.clone());
        self.handle.spawn(async move {
            let started = Instant::now();
            let result = match this.permits.clone().acquire_owned().await {
                Ok(_permit) => this.order(&job, &secrets).await,
                Err(_) => Err("shutting down".to_string()),
            };
            let outcome = match result {
                Ok(issued) => {
                    let (s, c, d) = (secrets.clone(), job.cert.clone(), job.digest.clone());
                    let (nb, na) = (issued.not_before, issued.not_after);
                    let stored = tokio::task::spawn_blocking(move || {
                        crate::certificates::store_issued(&s, &c, &issued, &d)
                    })
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r);
                    match stored {
                        Ok(()) => {
                            tracing::info!(certificate = %owner, secret = %job.cert.secret_name, took_ms = started.elapsed().as_millis() as u64, "ACME certificate issued");
                            CertificateOutcome::Issued {
                                not_before: nb,
                                not_after: na,
                                renewal_time: certs::renewal_time(&job.cert.spec, nb, na),
                            }
                        }
                        Err(e) => CertificateOutcome::Failed {
                            reason: format!("storing the certificate: {e}"),
                        },
                    }
                }
                Err(e) => {
                    tracing::warn!(certificate = %owner, problem = %e, "ACME order failed");
                    CertificateOutcome::Failed { reason: e }
                }
            };
            {
                let mut slots = this.slots.lock().unwrap_or_else(|p| p.into_inner());
                let slot = slots.entry(owner.clone()).or_default();
                slot.running = false;
                match &outcome {
                    CertificateOutcome::Failed { reason } => {
                        slot.failures += 1;
                        let backoff = backoff(&this.env.settings, slot.failures);
                        slot.retry_at = crate::certificates::now()
                            + i64::try_from(backoff.as_secs().max(1)).unwrap_or(i64::MAX / 2);
                        slot.last_error = Some(reason.clone());
                    }
                    _ => *slot = Slot::default(),
                }
            }
            let secret_name = job.cert.secret_name.clone();
            let owner2 = owner.clone();
            let recorded = tokio::task::spawn_blocking(move || {
                store.record_certificate_outcome(&owner2, &secret_name, &outcome)
            })
            .await;
            if let Ok(Err(e)) = recorded {
                tracing::warn!(certificate = %owner, error = %e, "cannot record the certificate's status");
            }
            this.wake.notify_one();
        });
        Pending {
            reason: "an ACME order was started".into(),
            at: None,
        }
    }

    async fn order(&self, job: &Job, secrets: &Secrets) -> Result<certs::Issued, String> {
        let roots: Vec<&[u8]> = job.issuer.ca_bundle.iter().map(|b| b.as_bytes()).collect();
        let tls = proxy::transport::client_tls_config(&roots, job.issuer.skip_tls_verify)
            .map_err(|e| format!("the issuer's TLS settings: {e}"))?;
        let dir = Directory {
            url: job.issuer.server.clone(),
            tls,
        };
        let timeouts = Timeouts::default();
        let account = self.account(job, secrets, &dir, &timeouts).await?;
        let solver = IssuerSolver {
            acme: self,
            job,
            secrets,
            targets: tokio::sync::Mutex::new(HashMap::new()),
        };
        certs::acme::obtain(
            &account,
            &job.cert.spec,
            job.kept_key.as_deref().map(String::as_str),
            &solver,
            &timeouts,
        )
        .await
        .map_err(|e| e.to_string())
    }

    /// The issuer's account: from the cache, else from its key secret (registered if the CA
    /// does not know it), else a new key, stored before it is used.
    async fn account(
        &self,
        job: &Job,
        secrets: &Secrets,
        dir: &Directory,
        timeouts: &Timeouts,
    ) -> Result<certs::acme::Account, String> {
        let key_ref = SecretRef::new(&job.issuer_ns, &job.issuer.private_key_secret)
            .map_err(|e| format!("privateKeySecretRef: {e}"))?;
        let cache_key = format!("{key_ref}|{}", job.issuer.server);
        // Held across the lookup, so concurrent orders of one issuer register one account.
        let mut accounts = self.accounts.lock().await;
        let stored = read_secret(secrets, &key_ref)
            .await?
            .and_then(|s| text_of(&s, "tls.key"));
        if let (Some(a), Some(_)) = (accounts.get(&cache_key), &stored) {
            return Ok(a.clone());
        }
        let eab = match &job.issuer.external_account_binding {
            Some(e) => {
                let r = SecretRef::new(&job.issuer_ns, &e.key_secret.name)
                    .map_err(|err| format!("externalAccountBinding.keySecretRef: {err}"))?;
                let spec = read_secret(secrets, &r).await?.ok_or_else(|| {
                    format!("the external account binding secret {r} does not exist")
                })?;
                let text = text_of(&spec, &e.key_secret.key)
                    .ok_or_else(|| format!("the secret {r} has no key {:?}", e.key_secret.key))?;
                let key = base64url_decode(text.trim()).ok_or_else(|| {
                    format!("the external account binding key in {r} is not base64url")
                })?;
                Some((e.key_id.clone(), key))
            }
            None => None,
        };
        let (account, new_key) = certs::acme::account(
            dir,
            timeouts,
            stored.as_deref().map(String::as_str),
            job.issuer.email.as_deref(),
            eab.as_ref().map(|(id, k)| (id.as_str(), k.as_slice())),
        )
        .await
        .map_err(|e| e.to_string())?;
        if let Some(pem) = new_key {
            let spec = SecretSpec {
                secret_type: SecretType::Opaque,
                data: BTreeMap::from([(
                    "tls.key".to_string(),
                    SecretValue::new(pem.as_bytes().to_vec()),
                )]),
                labels: BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_string(),
                    "edgeplane".to_string(),
                )]),
                annotations: BTreeMap::from([(
                    "edgeplane.io/acme-server".to_string(),
                    job.issuer.server.clone(),
                )]),
            };
            let (s, r) = (secrets.clone(), key_ref.clone());
            tokio::task::spawn_blocking(move || s.apply(&crate::certificates::caller(), &r, &spec))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("storing the ACME account key in {key_ref}: {e}"))?;
            tracing::info!(issuer_secret = %key_ref, server = %job.issuer.server, "ACME account registered");
        }
        accounts.insert(cache_key, account.clone());
        Ok(account)
    }

    fn txt_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.txt_locks.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() > 10_000 {
            m.retain(|_, l| Arc::strong_count(l) > 1);
        }
        m.entry(key.to_string()).or_default().clone()
    }
}

/// The wait after `failures` failed orders: the initial backoff, doubled each time, capped.
fn backoff(s: &Settings, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
    s.retry_backoff
        .saturating_mul(factor)
        .min(s.max_retry_backoff)
}

async fn read_secret(secrets: &Secrets, r: &SecretRef) -> Result<Option<SecretSpec>, String> {
    let (s, r2) = (secrets.clone(), r.clone());
    match tokio::task::spawn_blocking(move || s.get(&crate::certificates::caller(), &r2, None))
        .await
        .map_err(|e| e.to_string())?
    {
        Ok((_, spec)) => Ok(Some(spec)),
        Err(SecretStoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(format!("reading the secret {r}: {e}")),
    }
}

fn text_of(spec: &SecretSpec, key: &str) -> Option<Zeroizing<String>> {
    spec.data
        .get(key)
        .and_then(|v| std::str::from_utf8(v.expose()).ok())
        .map(|t| Zeroizing::new(t.to_string()))
}

fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let mut s: String = text
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !s.len().is_multiple_of(4) {
        s.push('=');
    }
    model::base64::decode(s.as_bytes())
}

/// Where a name's TXT records are written and checked.
struct DnsTarget {
    provider: Route53Provider,
    zone_id: String,
    zone: DomainName,
    /// The zone's authoritative servers, for the check before validation.
    servers: Vec<SocketAddr>,
}

struct IssuerSolver<'a> {
    acme: &'a Acme,
    job: &'a Job,
    secrets: &'a Secrets,
    targets: tokio::sync::Mutex<HashMap<String, Arc<DnsTarget>>>,
}

impl IssuerSolver<'_> {
    fn solver_kind(&self, name: &str, wildcard: bool) -> Option<&SolverKind> {
        let shown = if wildcard {
            format!("*.{name}")
        } else {
            name.to_string()
        };
        self.job
            .issuer
            .solver_for(&shown, &self.job.cert.labels)
            .map(|s| &s.kind)
    }

    /// The TXT record's name.
    fn fqdn(c: &Challenge) -> Result<DomainName, String> {
        DomainName::parse(&format!(
            "_acme-challenge.{}.",
            c.name.trim_end_matches('.')
        ))
        .map_err(|e| format!("the challenge name for {}: {e}", c.name))
    }

    async fn target(&self, c: &Challenge) -> Result<Arc<DnsTarget>, String> {
        let Some(SolverKind::Dns01Route53(r)) = self.solver_kind(&c.name, c.wildcard) else {
            return Err(format!("no dns01 solver covers {}", c.name));
        };
        let name = DomainName::parse(&format!("{}.", c.name.trim_end_matches('.')))
            .map_err(|e| format!("{}: {e}", c.name))?;
        let mut targets = self.targets.lock().await;
        // The DNSZone of the manifests with the longest domain that holds the name, else a zone
        // of the embedded store.
        let zone = self
            .job
            .zones
            .iter()
            .filter(|z| name.is_subdomain_of(&z.domain))
            .max_by_key(|z| z.domain.label_count())
            .cloned();
        let embedded_zone = {
            let snapshot = Some(self.acme.env.store.snapshot());
            let mut n = Some(name.clone());
            let mut found = None;
            while let Some(cur) = n {
                if let Some(z) = snapshot.as_ref().and_then(|s| s.serving.get(&cur)) {
                    found = Some((z.zone().id.to_string(), z.zone().name.clone()));
                    break;
                }
                n = cur.parent();
            }
            found
        };
        let (provider_ref, zone_name) = match (&zone, &embedded_zone) {
            (Some(z), _) => (Some(z.provider.clone()), Some(z.domain.clone())),
            (None, Some((_, n))) => (Some(ProviderRef::Embedded), Some(n.clone())),
            (None, None) => (None, None),
        };
        let cache_key = zone_name
            .as_ref()
            .map_or_else(|| name.to_string(), ToString::to_string);
        if let Some(t) = targets.get(&cache_key) {
            return Ok(t.clone());
        }
        // Credentials: the solver's, else the zone's scoped identity.
        let ns = &self.job.issuer_ns;
        let mut zone_secret: Option<SecretSpec> = None;
        let (key_id, secret_key) = match (
            &r.access_key_id,
            &r.access_key_id_ref,
            &r.secret_access_key_ref,
        ) {
            (id, id_ref, Some(sk)) => {
                let id = match (id, id_ref) {
                    (Some(id), _) => Zeroizing::new(id.clone()),
                    (None, Some(k)) => self.secret_value(ns, &k.name, &k.key).await?,
                    (None, None) => return Err("dns01.route53: no access key ID".into()),
                };
                (id, self.secret_value(ns, &sk.name, &sk.key).await?)
            }
            _ => {
                let Some(sref) = zone.as_ref().and_then(|z| z.acme_secret.clone()) else {
                    return Err(format!(
                        "dns01.route53 for {}: no credentials (give accessKeyIDSecretRef and secretAccessKeySecretRef, or a DNSZone with acmeCredentials for the zone)",
                        c.name
                    ));
                };
                let spec = read_secret(self.secrets, &sref).await?.ok_or_else(|| {
                    format!("the zone's scoped identity secret {sref} does not exist yet")
                })?;
                let id = text_of(&spec, "access-key-id")
                    .ok_or_else(|| format!("the secret {sref} has no access-key-id"))?;
                let sk = text_of(&spec, "secret-access-key")
                    .ok_or_else(|| format!("the secret {sref} has no secret-access-key"))?;
                zone_secret = Some(spec);
                (id, sk)
            }
        };
        let (endpoint, provider_region) = match &provider_ref {
            Some(ProviderRef::Embedded) => (self.acme.env.api_endpoint.clone(), None),
            Some(ProviderRef::Named(n)) => {
                match self.acme.env.providers.config().dns_providers.get(n) {
                    Some(config::static_config::DnsProviderConfig::Route53(c)) => {
                        (c.endpoint.clone(), Some(c.region.clone()))
                    }
                    None => return Err(format!("DNS provider {n:?} is not defined")),
                }
            }
            None => (None, None),
        };
        if matches!(provider_ref, Some(ProviderRef::Embedded)) && endpoint.is_none() {
            return Err(
                "edgeplane's Route53 API is not running, so embedded zones cannot answer DNS-01"
                    .into(),
            );
        }
        let region = r
            .region
            .clone()
            .or_else(|| {
                zone_secret
                    .as_ref()
                    .and_then(|s| text_of(s, "region").map(|t| t.to_string()))
            })
            .or(provider_region)
            .unwrap_or_else(|| "us-east-1".to_string());
        let provider = Route53Provider::new(Route53Options {
            endpoint: endpoint.clone(),
            region: Some(region),
            credentials: Some((key_id.to_string(), secret_key.to_string())),
            max_attempts: Some(4),
        })
        .await;
        // The zone ID: the solver's, the scoped identity's, the embedded store's, or found by name.
        let zone_id = match (
            &r.hosted_zone_id,
            zone_secret.as_ref().and_then(|s| text_of(s, "zone-id")),
        ) {
            (Some(id), _) => id.clone(),
            (None, Some(id)) => id.to_string(),
            (None, None) => match (&embedded_zone, &provider_ref) {
                (Some((id, _)), Some(ProviderRef::Embedded)) => id.clone(),
                _ => find_zone(&provider, &name, zone_name.as_ref()).await?,
            },
        };
        let zone_id = zone_id.trim_start_matches("/hostedzone/").to_string();
        let zone = zone_name.clone().unwrap_or_else(|| name.clone());
        let servers = if matches!(provider_ref, Some(ProviderRef::Embedded)) {
            self.acme.env.dns_addrs.clone()
        } else {
            authoritative_servers(&provider, &zone_id, &zone).await?
        };
        if servers.is_empty() {
            return Err(format!("no authoritative name server of {zone} to check"));
        }
        let t = Arc::new(DnsTarget {
            provider,
            zone_id,
            zone,
            servers,
        });
        targets.insert(cache_key, t.clone());
        Ok(t)
    }

    async fn secret_value(
        &self,
        ns: &str,
        name: &str,
        key: &str,
    ) -> Result<Zeroizing<String>, String> {
        let r = SecretRef::new(ns, name).map_err(|e| format!("secret {ns}/{name}: {e}"))?;
        let spec = read_secret(self.secrets, &r)
            .await?
            .ok_or_else(|| format!("the secret {r} does not exist"))?;
        text_of(&spec, key)
            .map(|t| Zeroizing::new(t.trim().to_string()))
            .ok_or_else(|| format!("the secret {r} has no key {key:?}"))
    }

    /// Adds or removes `value` in the TXT set of `fqdn`, keeping everyone else's values.
    async fn change_txt(
        &self,
        t: &DnsTarget,
        fqdn: &DomainName,
        value: &str,
        add: bool,
    ) -> Result<(), String> {
        let lock = self.acme.txt_lock(&format!("{}|{fqdn}", t.zone_id));
        let _held = lock.lock().await;
        let current = current_txt(&t.provider, &t.zone_id, fqdn).await?;
        let mut values: BTreeSet<Vec<u8>> = current
            .as_ref()
            .map(|s| {
                s.records
                    .iter()
                    .filter_map(|r| match r {
                        RecordData::Txt(parts) => Some(parts.concat()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let had = values.contains(value.as_bytes());
        if add == had {
            return Ok(());
        }
        if add {
            values.insert(value.as_bytes().to_vec());
        } else {
            values.remove(value.as_bytes());
        }
        let change = if values.is_empty() {
            let Some(set) = current else { return Ok(()) };
            Change {
                action: ChangeAction::Delete,
                set,
            }
        } else {
            let ttl = match &current {
                Some(s) => s.ttl,
                None => Ttl::new(60).map_err(|e| e.to_string())?,
            };
            let set = RecordSet::new(
                fqdn.clone(),
                ttl,
                RecordType::TXT,
                values
                    .into_iter()
                    .map(|v| RecordData::Txt(vec![v]))
                    .collect(),
            )
            .map_err(|e| e.to_string())?;
            Change {
                action: ChangeAction::Upsert,
                set,
            }
        };
        let ids = t
            .provider
            .change_record_sets(&t.zone_id, &[change])
            .await
            .map_err(|e| format!("writing the TXT record {fqdn}: {e}"))?;
        // Wait until the provider applied it everywhere (Route53's INSYNC).
        let deadline = Instant::now() + self.acme.env.settings.propagation_timeout;
        for id in ids {
            loop {
                match t.provider.change_status(&id).await {
                    Ok(ChangeStatus::InSync) => break,
                    Ok(ChangeStatus::Pending) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                    Ok(ChangeStatus::Pending) => {
                        return Err(format!("the change {id} stayed PENDING"));
                    }
                    Err(e) => return Err(format!("reading the change {id}: {e}")),
                }
            }
        }
        Ok(())
    }
}

impl Solver for IssuerSolver<'_> {
    fn kind_for(&self, name: &str, wildcard: bool) -> Option<ChallengeKind> {
        match self.solver_kind(name, wildcard)? {
            SolverKind::Dns01Route53(_) => Some(ChallengeKind::Dns01),
            SolverKind::Http01 if self.acme.env.http01.is_some() && !wildcard => {
                Some(ChallengeKind::Http01)
            }
            SolverKind::Http01 => None,
        }
    }

    async fn present(&self, c: &Challenge) -> Result<(), String> {
        match c.kind {
            ChallengeKind::Http01 => {
                let (table, _) = self
                    .acme
                    .env
                    .http01
                    .as_ref()
                    .ok_or("the proxy is not running, so HTTP-01 cannot be answered")?;
                table.insert(&c.name, &c.token, &c.key_authorization)
            }
            ChallengeKind::Dns01 => {
                let t = self.target(c).await?;
                let fqdn = Self::fqdn(c)?;
                self.change_txt(&t, &fqdn, &c.dns_value, true).await
            }
        }
    }

    async fn wait_ready(&self, c: &Challenge) -> Result<(), String> {
        let deadline = Instant::now() + self.acme.env.settings.propagation_timeout;
        match c.kind {
            ChallengeKind::Http01 => {
                let Some((_, Some(addr))) = &self.acme.env.http01 else {
                    return Ok(());
                };
                loop {
                    match http01_self_check(*addr, &c.name, &c.token).await {
                        Ok(body) if body == c.key_authorization.as_str() => return Ok(()),
                        Ok(_) => {}
                        Err(e) if Instant::now() >= deadline => return Err(e),
                        Err(_) => {}
                    }
                    if Instant::now() >= deadline {
                        return Err("the proxy does not serve the token".into());
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            ChallengeKind::Dns01 => {
                let t = self.target(c).await?;
                let fqdn = Self::fqdn(c)?;
                let mut missing: Vec<SocketAddr> = t.servers.clone();
                let mut last = String::new();
                loop {
                    let mut still = Vec::new();
                    for s in &missing {
                        match txt_query(*s, &fqdn).await {
                            Ok(values) if values.iter().any(|v| v == c.dns_value.as_bytes()) => {}
                            Ok(_) => {
                                last = format!("{s} does not answer the value yet");
                                still.push(*s);
                            }
                            Err(e) => {
                                last = format!("{s}: {e}");
                                still.push(*s);
                            }
                        }
                    }
                    if still.is_empty() {
                        return Ok(());
                    }
                    missing = still;
                    if Instant::now() >= deadline {
                        return Err(format!(
                            "{fqdn} TXT is not on every authoritative server of {} after {:?}: {last}",
                            t.zone, self.acme.env.settings.propagation_timeout
                        ));
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn cleanup(&self, c: &Challenge) {
        match c.kind {
            ChallengeKind::Http01 => {
                if let Some((table, _)) = &self.acme.env.http01 {
                    table.remove(&c.name, &c.token);
                }
            }
            ChallengeKind::Dns01 => {
                let done = async {
                    let t = self.target(c).await?;
                    let fqdn = Self::fqdn(c)?;
                    self.change_txt(&t, &fqdn, &c.dns_value, false).await
                };
                if let Err(e) = done.await {
                    tracing::warn!(name = %c.name, problem = %e, "ACME challenge TXT record not cleaned up");
                }
            }
        }
    }
}

/// The TXT set at `fqdn`.
async fn current_txt(
    p: &Route53Provider,
    zone_id: &str,
    fqdn: &DomainName,
) -> Result<Option<RecordSet>, String> {
    p.record_set(zone_id, fqdn, RecordType::TXT)
        .await
        .map_err(|e| format!("reading the TXT record {fqdn}: {e}"))
}

/// A zone's ID found by name (ListHostedZonesByName), trying the name and its parents.
async fn find_zone(
    p: &Route53Provider,
    name: &DomainName,
    known: Option<&DomainName>,
) -> Result<String, String> {
    let mut n = Some(known.cloned().unwrap_or_else(|| name.clone()));
    while let Some(cur) = n {
        if cur.is_root() {
            break;
        }
        match p.find_zones(&cur).await {
            Ok(zones) => {
                if let Some(z) = zones.first() {
                    return Ok(z.id.clone());
                }
            }
            Err(e) => return Err(format!("finding the hosted zone of {name}: {e}")),
        }
        if known.is_some() {
            break;
        }
        n = cur.parent();
    }
    Err(format!("no hosted zone holds {name}"))
}

/// The addresses of a zone's name servers (its apex NS records, resolved by the system).
async fn authoritative_servers(
    p: &Route53Provider,
    zone_id: &str,
    zone: &DomainName,
) -> Result<Vec<SocketAddr>, String> {
    let mut names = Vec::new();
    let set = p
        .record_set(zone_id, zone, RecordType::NS)
        .await
        .map_err(|e| format!("reading the NS records of {zone}: {e}"))?;
    for r in set.iter().flat_map(|s| s.records.iter()) {
        if let RecordData::Ns(n) = r {
            names.push(n.to_string());
        }
    }
    let mut addrs = Vec::new();
    for n in names {
        match tokio::net::lookup_host((n.trim_end_matches('.'), 53)).await {
            Ok(found) => addrs.extend(found),
            Err(e) => tracing::debug!(server = %n, error = %e, "cannot resolve a name server"),
        }
    }
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}

/// The TXT values one server answers for `name` (UDP, then TCP when truncated).
async fn txt_query(server: SocketAddr, name: &DomainName) -> Result<Vec<Vec<u8>>, String> {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RData};
    let qname = Name::from_ascii(name.to_string()).map_err(|e| e.to_string())?;
    let id: u16 = rand_id();
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = false;
    m.add_query(Query::query(qname, hickory_proto::rr::RecordType::TXT));
    let wire = m.to_vec().map_err(|e| e.to_string())?;
    let bind: SocketAddr = if server.is_ipv6() {
        "[::]:0".parse().map_err(|_| "bad bind address")?
    } else {
        "0.0.0.0:0".parse().map_err(|_| "bad bind address")?
    };
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| e.to_string())?;
    sock.send_to(&wire, server)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 4096];
    let answer = loop {
        let (n, from) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
            .await
            .map_err(|_| "no answer within 2 s".to_string())?
            .map_err(|e| e.to_string())?;
        if from != server {
            continue;
        }
        let Ok(msg) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if msg.metadata.id == id {
            break msg;
        }
    };
    let answer = if answer.metadata.truncation {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(server),
        )
        .await
        .map_err(|_| "TCP connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
        let len = u16::try_from(wire.len()).map_err(|_| "query too long")?;
        let mut out = len.to_be_bytes().to_vec();
        out.extend_from_slice(&wire);
        tcp.write_all(&out).await.map_err(|e| e.to_string())?;
        let mut lenb = [0u8; 2];
        tokio::time::timeout(Duration::from_secs(2), tcp.read_exact(&mut lenb))
            .await
            .map_err(|_| "TCP answer timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(lenb))];
        tokio::time::timeout(Duration::from_secs(2), tcp.read_exact(&mut body))
            .await
            .map_err(|_| "TCP answer timed out".to_string())?
            .map_err(|e| e.to_string())?;
        Message::from_vec(&body).map_err(|e| e.to_string())?
    } else {
        answer
    };
    if !answer.metadata.authoritative {
        return Err("the answer is not authoritative".into());
    }
    Ok(answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(t.txt_data.iter().flat_map(|s| s.iter().copied()).collect()),
            _ => None,
        })
        .collect())
}

/// An unpredictable query ID (std's randomly keyed hasher; no extra dependency).
fn rand_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() & 0xffff) as u16
}

/// What the proxy answers for a token, asked over plain HTTP on `addr`.
async fn http01_self_check(addr: SocketAddr, host: &str, token: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let req = format!(
        "GET {}{token} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: edgeplane-acme-self-check\r\n\r\n",
        proxy::acme::HTTP01_PREFIX
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(3),
        (&mut s).take(64 * 1024).read_to_end(&mut out),
    )
    .await
    .map_err(|_| "no answer".to_string())?
    .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("a malformed answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("answered {}", head.lines().next().unwrap_or("")));
    }
    Ok(body.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let s = Settings {
            max_concurrent_orders: 1,
            retry_backoff: Duration::from_secs(300),
            max_retry_backoff: Duration::from_secs(3600),
            propagation_timeout: Duration::from_secs(1),
        };
        let secs: Vec<u64> = (1..=6).map(|n| backoff(&s, n).as_secs()).collect();
        assert_eq!(secs, [300, 600, 1200, 2400, 3600, 3600]);
        assert_eq!(backoff(&s, u32::MAX).as_secs(), 3600);
    }

    #[test]
    fn base64url_keys_decode() {
        assert_eq!(
            base64url_decode("aGk_-w").as_deref(),
            Some(&[0x68, 0x69, 0x3f, 0xfb][..])
        );
        assert_eq!(base64url_decode("!!"), None);
    }
}
