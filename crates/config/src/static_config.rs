//! The static configuration file (`edgeplane.yaml`, design section 3): settings that do not
//! change while edgeplane runs. For now it names the DNS providers a DNSZone's `provider` can
//! refer to besides `embedded`:
//!
//! ```yaml
//! dnsProviders:
//!   aws:                       # provider: aws
//!     type: route53
//!     region: us-east-1        # the default
//!     # endpoint: http://127.0.0.1:5000   (absent: AWS itself)
//!     # credentials absent: the AWS default credential chain (environment, profile, IRSA, IMDS)
//!   lab:
//!     type: route53
//!     endpoint: https://route53.lab.example
//!     credentials: {accessKeyIdFile: /run/keys/id, secretAccessKeyFile: /run/keys/secret}
//!   other:
//!     type: route53
//!     credentials: {secretRef: {namespace: edgeplane-system, name: other-aws}}
//! ```
//!
//! and how ACME orders run:
//!
//! ```yaml
//! acme:
//!   maxConcurrentOrders: 16    # orders in flight at once (the default)
//!   retryBackoff: 5m           # the wait after a failed order, doubled after each failure
//!   maxRetryBackoff: 32h       # ... up to this
//!   propagationTimeout: 2m     # how long a challenge may take to be visible everywhere
//! ```
//!
//! and certificate resolvers for routers' `tls.certResolver`, in Traefik's words:
//!
//! ```yaml
//! certificatesResolvers:
//!   le:
//!     acme:
//!       email: ops@example.com
//!       caServer: https://acme-v02.api.letsencrypt.org/directory   # the default
//!       keyType: EC256               # RSA2048, RSA3072, RSA4096, EC256 (default), EC384
//!       caCertificates: [/etc/edgeplane/acme-ca.pem]   # trusted for the CA's API
//!       dnsChallenge: {provider: route53}   # through the zone's scoped identity
//!       # or httpChallenge: {entryPoint: web}
//! ```
//!
//! YAML through serde-saphyr with `deny_unknown_fields`; the wire types stay here and are
//! converted into [`StaticConfig`]. Credentials are only named (files, a secret), never read
//! here, so no key passes through this crate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use model::secret::SecretRef;
use serde::Deserialize;

/// The file read when `--config` is not given, if it exists (relative to the working
/// directory).
pub const DEFAULT_FILE: &str = "edgeplane.yaml";

/// The provider name every edgeplane has: the store itself.
pub const EMBEDDED: &str = "embedded";

/// Why the static configuration could not be used; names the file.
#[derive(Debug, thiserror::Error)]
pub enum StaticConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: {reason}")]
    Invalid { origin: String, reason: String },
}

/// The static configuration, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticConfig {
    /// Where it was read from, for messages (`None` when no file was read).
    pub origin: Option<PathBuf>,
    /// The DNS providers by name (never `embedded`).
    pub dns_providers: BTreeMap<String, DnsProviderConfig>,
    pub acme: AcmeSettings,
    /// `certificatesResolvers`, by name.
    pub cert_resolvers: BTreeMap<String, crate::certmanager::CertResolver>,
}

/// How ACME orders run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    pub max_concurrent_orders: usize,
    pub retry_backoff: std::time::Duration,
    pub max_retry_backoff: std::time::Duration,
    pub propagation_timeout: std::time::Duration,
}

impl Default for AcmeSettings {
    fn default() -> Self {
        AcmeSettings {
            max_concurrent_orders: 16,
            retry_backoff: std::time::Duration::from_secs(300),
            max_retry_backoff: std::time::Duration::from_secs(32 * 3600),
            propagation_timeout: std::time::Duration::from_secs(120),
        }
    }
}

/// A named DNS provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsProviderConfig {
    /// AWS Route53, or any Route53-compatible API (edgeplane's own, moto).
    Route53(Route53Config),
}

/// How to reach a Route53-compatible service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route53Config {
    /// `None` for AWS itself.
    pub endpoint: Option<String>,
    /// `us-east-1` unless given (Route53 is global; this also goes into the scoped identity's
    /// secret).
    pub region: String,
    pub credentials: CredentialSource,
}

/// Where a provider's access key comes from. Only locations: the key is read when the
/// provider is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// The AWS default credential chain (environment, profile, web identity, container, IMDS).
    DefaultChain,
    /// Two files holding the access key ID and the secret access key (surrounding whitespace
    /// ignored); relative paths are relative to the configuration file's directory.
    Files {
        access_key_id: PathBuf,
        secret_access_key: PathBuf,
    },
    /// A secret in edgeplane's store with keys `access-key-id` and `secret-access-key`.
    Secret(SecretRef),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    dns_providers: BTreeMap<String, ProviderDoc>,
    #[serde(default)]
    acme: Option<AcmeDoc>,
    #[serde(default)]
    certificates_resolvers: BTreeMap<String, ResolverDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolverDoc {
    acme: ResolverAcmeDoc,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ResolverAcmeDoc {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    ca_server: Option<String>,
    #[serde(default)]
    key_type: Option<String>,
    #[serde(default)]
    ca_certificates: Vec<PathBuf>,
    #[serde(default)]
    http_challenge: Option<HttpChallengeDoc>,
    #[serde(default)]
    dns_challenge: Option<DnsChallengeDoc>,
    #[serde(default)]
    tls_challenge: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    eab: Option<serde::de::IgnoredAny>,
    // Accepted for compatibility; edgeplane keeps accounts and certificates in its store.
    #[serde(default)]
    #[allow(dead_code)]
    storage: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    certificates_duration: Option<u64>,
    #[serde(default)]
    #[allow(dead_code)]
    preferred_chain: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    ca_system_cert_pool: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    ca_server_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HttpChallengeDoc {
    #[serde(default)]
    #[allow(dead_code)]
    entry_point: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    delay: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DnsChallengeDoc {
    provider: String,
    #[serde(default)]
    #[allow(dead_code)]
    resolvers: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    propagation: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    #[allow(dead_code)]
    delay_before_check: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    #[allow(dead_code)]
    disable_propagation_check: Option<bool>,
}

fn resolver(
    name: &str,
    d: ResolverAcmeDoc,
    base: &Path,
) -> Result<crate::certmanager::CertResolver, String> {
    use crate::certmanager::{AcmeIssuer, AcmeSolver, Route53Solver, SolverKind, SolverSelector};
    if !model::secret::is_dns1123_subdomain(name) {
        return Err("a resolver name is lowercase letters, digits, '-' and '.'".into());
    }
    if d.tls_challenge.is_some() {
        return Err("tlsChallenge is not supported; use httpChallenge or dnsChallenge".into());
    }
    if d.eab.is_some() {
        return Err("eab: keep the HMAC key in a secret and use a ClusterIssuer with externalAccountBinding".into());
    }
    let key = match d.key_type.as_deref().unwrap_or("EC256") {
        "EC256" => certs::KeyAlgorithm::Ecdsa(256),
        "EC384" => certs::KeyAlgorithm::Ecdsa(384),
        "RSA2048" => certs::KeyAlgorithm::Rsa(2048),
        "RSA3072" => certs::KeyAlgorithm::Rsa(3072),
        "RSA4096" => certs::KeyAlgorithm::Rsa(4096),
        other => {
            return Err(format!(
                "keyType {other:?} (EC256, EC384, RSA2048, RSA3072 or RSA4096)"
            ))
        }
    };
    let mut solvers = Vec::new();
    if let Some(dns) = d.dns_challenge {
        if dns.provider != "route53" {
            return Err(format!(
                "dnsChallenge.provider {:?}: only route53 is available",
                dns.provider
            ));
        }
        solvers.push(AcmeSolver {
            selector: SolverSelector::default(),
            kind: SolverKind::Dns01Route53(Route53Solver::default()),
        });
    }
    if d.http_challenge.is_some() {
        solvers.push(AcmeSolver {
            selector: SolverSelector::default(),
            kind: SolverKind::Http01,
        });
    }
    if solvers.is_empty() {
        return Err("one of httpChallenge and dnsChallenge is required".into());
    }
    let mut bundle = String::new();
    for f in &d.ca_certificates {
        let path = if f.is_absolute() {
            f.clone()
        } else {
            base.join(f)
        };
        let pem = std::fs::read_to_string(&path)
            .map_err(|e| format!("caCertificates {}: {e}", path.display()))?;
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(format!(
                "caCertificates {}: no PEM certificate",
                path.display()
            ));
        }
        bundle.push_str(&pem);
        bundle.push('\n');
    }
    let server = d
        .ca_server
        .unwrap_or_else(|| "https://acme-v02.api.letsencrypt.org/directory".to_string());
    if !server.starts_with("https://") && !server.starts_with("http://") {
        return Err(format!("caServer {server:?} must be an https:// URL"));
    }
    Ok(crate::certmanager::CertResolver {
        issuer: AcmeIssuer {
            server,
            email: d.email.filter(|e| !e.is_empty()),
            private_key_secret: format!("{name}-resolver-account"),
            ca_bundle: (!bundle.is_empty()).then_some(bundle),
            skip_tls_verify: false,
            external_account_binding: None,
            solvers,
        },
        key,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AcmeDoc {
    #[serde(default)]
    max_concurrent_orders: Option<usize>,
    #[serde(default)]
    retry_backoff: Option<String>,
    #[serde(default)]
    max_retry_backoff: Option<String>,
    #[serde(default)]
    propagation_timeout: Option<String>,
}

fn acme_settings(d: Option<AcmeDoc>) -> Result<AcmeSettings, String> {
    let mut s = AcmeSettings::default();
    let Some(d) = d else { return Ok(s) };
    let dur = |v: &Option<String>,
               field: &str,
               min: u64|
     -> Result<Option<std::time::Duration>, String> {
        v.as_deref()
            .map(|t| {
                crate::certmanager::go_duration(t)
                    .map_err(|e| format!("acme.{field}: {e}"))
                    .and_then(|d| {
                        if d.as_secs() < min {
                            Err(format!("acme.{field} must be at least {min} s"))
                        } else {
                            Ok(d)
                        }
                    })
            })
            .transpose()
    };
    if let Some(n) = d.max_concurrent_orders {
        if n == 0 || n > 1000 {
            return Err("acme.maxConcurrentOrders must be between 1 and 1000".into());
        }
        s.max_concurrent_orders = n;
    }
    if let Some(v) = dur(&d.retry_backoff, "retryBackoff", 1)? {
        s.retry_backoff = v;
    }
    if let Some(v) = dur(&d.max_retry_backoff, "maxRetryBackoff", 1)? {
        s.max_retry_backoff = v;
    }
    if s.max_retry_backoff < s.retry_backoff {
        return Err("acme.maxRetryBackoff must not be shorter than acme.retryBackoff".into());
    }
    if let Some(v) = dur(&d.propagation_timeout, "propagationTimeout", 1)? {
        s.propagation_timeout = v;
    }
    Ok(s)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProviderDoc {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    credentials: Option<CredentialsDoc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CredentialsDoc {
    #[serde(default)]
    access_key_id_file: Option<PathBuf>,
    #[serde(default)]
    secret_access_key_file: Option<PathBuf>,
    #[serde(default)]
    secret_ref: Option<SecretRefDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretRefDoc {
    #[serde(default)]
    namespace: Option<String>,
    name: String,
}

impl StaticConfig {
    /// Reads `explicit` (which must exist), or else [`DEFAULT_FILE`] in the working directory
    /// when it exists, or else nothing (no named providers).
    pub fn load(explicit: Option<&Path>) -> Result<StaticConfig, StaticConfigError> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None if Path::new(DEFAULT_FILE).is_file() => PathBuf::from(DEFAULT_FILE),
            None => return Ok(StaticConfig::default()),
        };
        let text = std::fs::read_to_string(&path).map_err(|source| StaticConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        let mut config = StaticConfig::parse(&text, &path.display().to_string(), base)?;
        config.origin = Some(path);
        Ok(config)
    }

    /// Parses and validates a configuration document; `origin` names it in errors and relative
    /// credential files are taken relative to `base`.
    pub fn parse(text: &str, origin: &str, base: &Path) -> Result<StaticConfig, StaticConfigError> {
        let invalid = |reason: String| StaticConfigError::Invalid {
            origin: origin.to_string(),
            reason,
        };
        let doc: FileDoc = if text.trim().is_empty() {
            FileDoc {
                dns_providers: BTreeMap::new(),
                acme: None,
                certificates_resolvers: BTreeMap::new(),
            }
        } else {
            serde_saphyr::from_str(text).map_err(|e| invalid(e.to_string()))?
        };
        let mut dns_providers = BTreeMap::new();
        for (name, p) in doc.dns_providers {
            let provider = convert(&name, p, base)
                .map_err(|e| invalid(format!("dnsProviders.{name}: {e}")))?;
            dns_providers.insert(name, provider);
        }
        let acme = acme_settings(doc.acme).map_err(invalid)?;
        let mut cert_resolvers = BTreeMap::new();
        for (name, r) in doc.certificates_resolvers {
            let built = resolver(&name, r.acme, base)
                .map_err(|e| invalid(format!("certificatesResolvers.{name}: {e}")))?;
            cert_resolvers.insert(name, built);
        }
        Ok(StaticConfig {
            origin: None,
            dns_providers,
            acme,
            cert_resolvers,
        })
    }

    /// The names a DNSZone's `provider` may take, `embedded` first.
    pub fn provider_names(&self) -> Vec<&str> {
        std::iter::once(EMBEDDED)
            .chain(self.dns_providers.keys().map(String::as_str))
            .collect()
    }
}

fn convert(name: &str, p: ProviderDoc, base: &Path) -> Result<DnsProviderConfig, String> {
    if name == EMBEDDED {
        return Err(format!("{EMBEDDED:?} is the built-in provider's name"));
    }
    if !model::secret::is_dns1123_subdomain(name) {
        return Err("a provider name is lowercase letters, digits, '-' and '.'".into());
    }
    if p.kind != "route53" {
        return Err(format!("type {:?} is not supported (only route53)", p.kind));
    }
    if let Some(e) = &p.endpoint {
        let rest = e
            .strip_prefix("http://")
            .or_else(|| e.strip_prefix("https://"))
            .ok_or_else(|| format!("endpoint {e:?} must be an http:// or https:// URL"))?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(format!("endpoint {e:?} has no host"));
        }
    }
    let region = p.region.unwrap_or_else(|| "us-east-1".to_string());
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!("region {region:?} is not a region name"));
    }
    let credentials =
        match p.credentials {
            None => CredentialSource::DefaultChain,
            Some(CredentialsDoc {
                access_key_id_file: Some(id),
                secret_access_key_file: Some(secret),
                secret_ref: None,
            }) => CredentialSource::Files {
                access_key_id: base.join(id),
                secret_access_key: base.join(secret),
            },
            Some(CredentialsDoc {
                access_key_id_file: None,
                secret_access_key_file: None,
                secret_ref: Some(r),
            }) => CredentialSource::Secret(
                SecretRef::new(r.namespace.as_deref().unwrap_or("default"), &r.name)
                    .map_err(|e| format!("credentials.secretRef: {e}"))?,
            ),
            Some(_) => return Err(
                "credentials take accessKeyIdFile and secretAccessKeyFile together, or secretRef"
                    .into(),
            ),
        };
    Ok(DnsProviderConfig::Route53(Route53Config {
        endpoint: p.endpoint,
        region,
        credentials,
    }))
}

#[cfg(test)]
mod tests;
