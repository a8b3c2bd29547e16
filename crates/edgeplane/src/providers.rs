//! The DNS providers DNSZones run on: the embedded store, or a Route53-compatible service named
//! in the static configuration (`edgeplane.yaml`'s `dnsProviders`). A named provider is built
//! on first use (its credentials read from their files or from the secret store) and reused
//! after; a provider that cannot be built is an error of the DNSZones that name it, and is
//! tried again at their next reconcile. Credentials are never logged.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context as _};
use clouddns::embedded::EmbeddedProvider;
use clouddns::route53::{Route53Options, Route53Provider};
use clouddns::workflow::{WaitProgress, ZoneStatus};
use config::dnszone::{DnsZone, ProviderRef};
use config::static_config::{CredentialSource, DnsProviderConfig, StaticConfig};
use store::secrets::{Caller, Secrets};

/// The static configuration's providers, and those already built.
pub(crate) struct DnsProviders {
    config: StaticConfig,
    built: tokio::sync::Mutex<BTreeMap<String, Route53Provider>>,
}

impl DnsProviders {
    pub(crate) fn new(config: StaticConfig) -> DnsProviders {
        DnsProviders {
            config,
            built: tokio::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// The static configuration DNSZones are parsed against.
    pub(crate) fn config(&self) -> &StaticConfig {
        &self.config
    }

    /// The Route53 provider `name`, built the first time it is asked for.
    async fn route53(&self, name: &str, secrets: &Secrets) -> anyhow::Result<Route53Provider> {
        let mut built = self.built.lock().await;
        if let Some(p) = built.get(name) {
            return Ok(p.clone());
        }
        let DnsProviderConfig::Route53(c) = self
            .config
            .dns_providers
            .get(name)
            .ok_or_else(|| anyhow!("provider {name:?} is not defined"))?;
        let credentials = match &c.credentials {
            CredentialSource::DefaultChain => None,
            CredentialSource::Files {
                access_key_id,
                secret_access_key,
            } => Some((read_key(access_key_id)?, read_key(secret_access_key)?)),
            CredentialSource::Secret(r) => {
                let (_, spec) = secrets
                    .get(&Caller::admin(), r, None)
                    .with_context(|| format!("reading the credentials secret {r}"))?;
                let value = |key: &str| {
                    spec.data
                        .get(key)
                        .and_then(|v| std::str::from_utf8(v.expose()).ok())
                        .map(|v| v.trim().to_string())
                        .filter(|v| !v.is_empty())
                        .ok_or_else(|| anyhow!("the credentials secret {r} has no {key}"))
                };
                Some((value("access-key-id")?, value("secret-access-key")?))
            }
        };
        let provider = Route53Provider::new(Route53Options {
            endpoint: c.endpoint.clone(),
            region: Some(c.region.clone()),
            credentials,
            max_attempts: None,
        })
        .await;
        tracing::info!(
            provider = name,
            endpoint = c.endpoint.as_deref().unwrap_or("AWS"),
            region = c.region,
            "DNS provider ready"
        );
        built.insert(name.to_string(), provider.clone());
        Ok(provider)
    }

    /// Reconciles `zone` on its provider.
    pub(crate) async fn reconcile(
        &self,
        embedded: &EmbeddedProvider,
        zone: &DnsZone,
        secrets: &Secrets,
        progress: impl FnMut(&WaitProgress),
    ) -> anyhow::Result<ZoneStatus> {
        let secrets_ref = Some(secrets);
        Ok(match &zone.provider {
            ProviderRef::Embedded => {
                clouddns::workflow::reconcile(embedded, &zone.plan, secrets_ref, progress).await
            }
            ProviderRef::Named(name) => {
                let p = self
                    .route53(name, secrets)
                    .await
                    .with_context(|| format!("provider {name}"))?;
                clouddns::workflow::reconcile(&p, &zone.plan, secrets_ref, progress).await
            }
        })
    }

    /// Removes what `zone` made on its provider; returns the steps done.
    pub(crate) async fn teardown(
        &self,
        embedded: &EmbeddedProvider,
        zone: &DnsZone,
        secrets: &Secrets,
    ) -> anyhow::Result<Vec<String>> {
        Ok(match &zone.provider {
            ProviderRef::Embedded => {
                clouddns::workflow::teardown(embedded, &zone.plan, Some(secrets)).await?
            }
            ProviderRef::Named(name) => {
                let p = self
                    .route53(name, secrets)
                    .await
                    .with_context(|| format!("provider {name}"))?;
                clouddns::workflow::teardown(&p, &zone.plan, Some(secrets)).await?
            }
        })
    }
}

/// One half of an access key from its file (surrounding whitespace dropped). The error names
/// the file, never its content.
fn read_key(path: &std::path::Path) -> anyhow::Result<String> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    );
    let key = text.trim();
    if key.is_empty() {
        anyhow::bail!("{} is empty", path.display());
    }
    Ok(key.to_string())
}
