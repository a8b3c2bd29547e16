//! The manifest directory (`edgeplane.d/` by default): every `*.yaml`/`*.yml` file in it is read
//! at start, again whenever a file appears, changes or goes away, and once a minute to repair
//! drift; each DNSZone is reconciled on its provider (the embedded backend, or one named in the
//! static configuration; its status written to the store),
//! and the proxy resources (IngressRoute, Middleware, ..., Traefik's file format) are applied
//! to the proxy. A TLS secret in the store that the proxy uses is re-read when its version
//! changes.
//!
//! The directory is watched (inotify through `notify`): an event is looked at 20 ms later, so
//! a burst of writes makes one pass. It is also polled once a second (a listing and file
//! metadata), which sees what a watcher can miss (Kubernetes' ConfigMap symlink swaps, a
//! directory that appears later, a watcher that failed): the listing, not the event, decides
//! what changed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use store::identities::Identities;
use store::secrets::Secrets;
use store::Store;
use tokio::sync::watch;

/// How often the directory is looked at.
const POLL: Duration = Duration::from_secs(1);
/// How often everything is reconciled even when no file changed.
const RESYNC: Duration = Duration::from_secs(60);

type Fingerprint = Vec<(PathBuf, Option<SystemTime>, u64)>;

/// One file, parsed by every consumer; kept while its text stays the same, so a change to
/// one file re-parses only that file (a file of 100,000 routers is not read again).
struct Parsed {
    text: String,
    zones: Vec<Result<config::dnszone::DnsZone, config::dnszone::ManifestError>>,
    certs: config::certmanager::CertPlan,
    proxy: config::ingress::ParsedFile,
}

/// The parse of every file, by path, in the directory's order.
#[derive(Default)]
struct ParseCache {
    files: Vec<(String, Parsed)>,
}

impl ParseCache {
    /// Re-parses the files whose text changed (off the async threads), drops removed ones.
    async fn refresh(
        &mut self,
        texts: Vec<(String, String)>,
        config: &config::static_config::StaticConfig,
    ) {
        let mut old: std::collections::HashMap<String, Parsed> =
            std::mem::take(&mut self.files).into_iter().collect();
        let mut todo = Vec::new();
        for (i, (path, text)) in texts.into_iter().enumerate() {
            match old.remove(&path) {
                Some(p) if p.text == text => self.files.push((path, p)),
                _ => {
                    todo.push((i, path.clone(), text));
                    self.files.push((path, Parsed::empty()));
                }
            }
        }
        if todo.is_empty() {
            return;
        }
        let config = config.clone();
        let parsed = tokio::task::spawn_blocking(move || {
            todo.into_iter()
                .map(|(i, path, text)| {
                    let p = Parsed {
                        zones: config::dnszone::parse_with(&text, &config),
                        certs: config::certmanager::load_file(&path, &text, &config.cert_resolvers),
                        proxy: config::ingress::parse_file(&config::ingress::ManifestFile {
                            name: &path,
                            text: &text,
                        }),
                        text,
                    };
                    (i, p)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (i, p) in parsed {
            if let Some(slot) = self.files.get_mut(i) {
                slot.1 = p;
            }
        }
    }
}

impl Parsed {
    fn empty() -> Parsed {
        Parsed {
            text: String::new(),
            zones: Vec::new(),
            certs: config::certmanager::CertPlan::default(),
            proxy: config::ingress::parse_file(&config::ingress::ManifestFile {
                name: "",
                text: "",
            }),
        }
    }
}

fn fingerprint(dir: &Path) -> Fingerprint {
    let mut out: Fingerprint = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
                .map(|p| {
                    // Follow symlinks: a ConfigMap volume swaps the link, not the file.
                    let meta = std::fs::metadata(&p).ok();
                    let modified = meta.as_ref().and_then(|m| m.modified().ok());
                    let len = meta.map_or(0, |m| m.len());
                    (p, modified, len)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// What the manifests feed besides the store: the proxy, and the ACME orders of the
/// certificate controller.
pub(crate) struct Planes {
    pub(crate) proxy: Option<std::sync::Arc<proxy::Proxy>>,
    pub(crate) acme: Option<std::sync::Arc<crate::acme::Acme>>,
}

/// Reconciles the directory until `stop` fires.
pub(crate) async fn watch(
    dir: PathBuf,
    store: Store,
    secrets: Secrets,
    name_servers: Vec<model::DomainName>,
    providers: std::sync::Arc<crate::providers::DnsProviders>,
    planes: Planes,
    mut stop: watch::Receiver<bool>,
) {
    let Planes { proxy, acme } = planes;
    let identities = match Identities::new(secrets.clone()) {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %e, "manifest reconciler cannot open identities");
            return;
        }
    };
    let provider = clouddns::embedded::EmbeddedProvider::new(store.clone(), name_servers)
        .with_identities(identities);
    let mut last: Option<Fingerprint> = None;
    let mut last_sync = Instant::now();
    let mut used: (Vec<(String, String)>, crate::ingress::SecretVersions) = Default::default();
    let mut cache = ParseCache::default();
    // When the next certificate is due for renewal (Unix seconds).
    let mut next_due: Option<i64> = None;
    // An ACME order ended: run the certificate pass (status, proxy) now.
    let mut woken = false;
    let wake = acme.as_ref().map(|a| a.wake.clone());
    let (event_tx, mut events) = tokio::sync::mpsc::unbounded_channel::<()>();
    let _watcher = {
        use notify::Watcher as _;
        match notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
            if e.is_ok() {
                let _ = event_tx.send(());
            }
        }) {
            Ok(mut w) => match w.watch(&dir, notify::RecursiveMode::NonRecursive) {
                Ok(()) => Some(w),
                Err(e) => {
                    tracing::debug!(dir = %dir.display(), error = %e, "not watching the manifest directory; polling it");
                    None
                }
            },
            Err(e) => {
                tracing::debug!(error = %e, "no file watcher; polling the manifest directory");
                None
            }
        }
    };
    tracing::info!(dir = %dir.display(), "watching manifests");
    loop {
        let now = fingerprint(&dir);
        let files_changed = last.as_ref() != Some(&now) || last_sync.elapsed() >= RESYNC;
        let certs_changed = !files_changed
            && proxy.is_some()
            && !used.0.is_empty()
            && crate::ingress::secrets_changed(&secrets, &used.1, &used.0);
        let renewal_due =
            next_due.is_some_and(|due| unix_now() >= due) || std::mem::take(&mut woken);
        if files_changed || certs_changed || renewal_due {
            cache
                .refresh(read_all(&now).await, providers.config())
                .await;
            if files_changed {
                reconcile_all(&provider, &providers, &store, &secrets, &cache).await;
            }
            if files_changed || renewal_due {
                // Certificates before the proxy, so a new secret is served in the same pass.
                let parts: Vec<&config::certmanager::CertPlan> =
                    cache.files.iter().map(|(_, p)| &p.certs).collect();
                let plan = config::certmanager::combine(&parts, &providers.config().cert_resolvers);
                for d in &plan.diagnostics {
                    tracing::warn!(problem = %d, "cert-manager manifest skipped; the rest applies");
                }
                let zones = zone_refs(&cache);
                let (st, s, a) = (store.clone(), secrets.clone(), acme.clone());
                next_due = tokio::task::spawn_blocking(move || {
                    crate::certificates::reconcile(&st, &s, &plan, a.as_ref(), &zones)
                })
                .await
                .ok()
                .and_then(|pass| pass.next_due);
            }
            if let Some(p) = &proxy {
                let parsed: Vec<&config::ingress::ParsedFile> =
                    cache.files.iter().map(|(_, p)| &p.proxy).collect();
                used = crate::ingress::apply(p, &secrets, &parsed).await;
            }
            last = Some(now);
            if files_changed {
                last_sync = Instant::now();
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            Some(()) = events.recv() => {
                // Let a burst of writes settle, then look once.
                tokio::time::sleep(Duration::from_millis(20)).await;
                while events.try_recv().is_ok() {}
            }
            _ = async {
                match &wake {
                    Some(w) => w.notified().await,
                    None => std::future::pending().await,
                }
            } => woken = true,
            r = stop.changed() => if r.is_err() || *stop.borrow() { return },
        }
    }
}

/// The DNSZones of the manifests, for the DNS-01 solver (broken ones are reported elsewhere).
fn zone_refs(cache: &ParseCache) -> Vec<crate::acme::ZoneRef> {
    let mut out = Vec::new();
    for (_, p) in &cache.files {
        for zone in p.zones.iter().flatten() {
            out.push(crate::acme::ZoneRef {
                domain: zone.plan.domain.clone(),
                provider: zone.provider.clone(),
                acme_secret: zone.plan.acme_secret.clone(),
            });
        }
    }
    out
}

/// The text of every file (a file that cannot be read is reported and left out).
async fn read_all(files: &Fingerprint) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, _, _) in files {
        match tokio::fs::read_to_string(path).await {
            Ok(t) => out.push((path.display().to_string(), t)),
            Err(e) => tracing::warn!(file = %path.display(), error = %e, "cannot read manifest"),
        }
    }
    out
}

async fn reconcile_all(
    embedded: &clouddns::embedded::EmbeddedProvider,
    providers: &crate::providers::DnsProviders,
    store: &Store,
    secrets: &Secrets,
    cache: &ParseCache,
) {
    for (path, parsed) in &cache.files {
        for result in &parsed.zones {
            match result {
                Ok(zone) => {
                    let plan = &zone.plan;
                    let status = match providers
                        .reconcile(embedded, zone, secrets, |w| {
                            // Quiet while serving: the outcome is logged below.
                            tracing::debug!(owner = plan.owner, "{w}")
                        })
                        .await
                    {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::warn!(file = %path, owner = plan.owner, error = format!("{e:#}"), "DNSZone not reconciled; the rest still applies");
                            continue;
                        }
                    };
                    // Written back where `zone get` and `zone list` read it.
                    let (s, record) = (store.clone(), status.to_record(plan));
                    match tokio::task::spawn_blocking(move || s.record_dnszone_status(record)).await
                    {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(owner = plan.owner, error = %e, "cannot record the DNSZone's status")
                        }
                        Err(e) => {
                            tracing::warn!(owner = plan.owner, error = %e, "cannot record the DNSZone's status")
                        }
                    }
                    let conditions: Vec<String> = status
                        .conditions
                        .iter()
                        .map(|c| format!("{}={}", c.kind, c.ok))
                        .collect();
                    if status.ready() {
                        tracing::info!(zone = %plan.domain, owner = plan.owner, zone_id = ?status.zone_id, conditions = conditions.join(","), "DNSZone reconciled");
                    } else {
                        let failed: Vec<String> = status
                            .conditions
                            .iter()
                            .filter(|c| !c.ok)
                            .map(|c| format!("{}: {}", c.kind, c.reason))
                            .collect();
                        tracing::warn!(zone = %plan.domain, owner = plan.owner, problems = failed.join("; "), "DNSZone not ready");
                    }
                }
                Err(e @ config::dnszone::ManifestError::OtherKind { .. }) => {
                    tracing::debug!(file = %path, "{e}");
                }
                Err(e) => {
                    tracing::warn!(file = %path, error = %e, "invalid manifest; skipped, the rest still applies")
                }
            }
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
