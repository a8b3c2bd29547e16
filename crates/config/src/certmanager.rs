//! cert-manager's `cert-manager.io/v1` resources: `Issuer` and `ClusterIssuer` (types `ca`,
//! `selfSigned` and `acme` with `dns01.route53` and `http01` solvers), and
//! `Certificate`, converted into [`certs::CertificateSpec`] plus what the controller needs to
//! find the issuer and the secret. Each broken document yields a diagnostic naming it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// An issuer, namespaced (`Issuer`) or cluster-wide (`ClusterIssuer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerPlan {
    /// `None` for a ClusterIssuer.
    pub namespace: Option<String>,
    pub name: String,
    pub kind: IssuerType,
}

/// What an issuer signs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerType {
    SelfSigned,
    /// A CA whose `tls.crt`/`tls.key` are in this secret (the issuer's namespace, or the
    /// cluster resource namespace for a ClusterIssuer).
    Ca {
        secret_name: String,
    },
    /// An ACME CA (Let's Encrypt, Pebble, ZeroSSL...).
    Acme(Box<AcmeIssuer>),
}

/// An ACME issuer (`spec.acme`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeIssuer {
    /// The directory URL.
    pub server: String,
    pub email: Option<String>,
    /// The secret (issuer's namespace) holding the account key as PKCS#8 PEM in `tls.key`;
    /// created with a new key when missing.
    pub private_key_secret: String,
    /// PEM certificates trusted for the ACME server's TLS, besides the system roots.
    pub ca_bundle: Option<String>,
    pub skip_tls_verify: bool,
    pub external_account_binding: Option<ExternalAccountBinding>,
    pub solvers: Vec<AcmeSolver>,
}

/// `externalAccountBinding`: a key ID and the HMAC key (base64url) in a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalAccountBinding {
    pub key_id: String,
    pub key_secret: SecretKeyRef,
}

/// A key of a secret in the issuer's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

/// One entry of `spec.acme.solvers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSolver {
    pub selector: SolverSelector,
    pub kind: SolverKind,
}

/// Which names a solver is for (cert-manager's `selector`; empty matches every name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SolverSelector {
    pub dns_names: Vec<String>,
    pub dns_zones: Vec<String>,
    pub match_labels: BTreeMap<String, String>,
}

/// How a solver answers challenges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SolverKind {
    /// DNS-01 through a Route53-compatible API: the one of the DNSZone (or embedded zone)
    /// holding the name, with these credentials or else the zone's scoped identity.
    Dns01Route53(Route53Solver),
    /// HTTP-01 answered by the proxy's `web` entry point.
    Http01,
}

/// `dns01.route53`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route53Solver {
    pub region: Option<String>,
    pub hosted_zone_id: Option<String>,
    /// `accessKeyID` given in the manifest (not a secret).
    pub access_key_id: Option<String>,
    pub access_key_id_ref: Option<SecretKeyRef>,
    pub secret_access_key_ref: Option<SecretKeyRef>,
}

impl AcmeIssuer {
    /// The solver cert-manager would choose for `name` (a DNS name, maybe `*.`-prefixed) of a
    /// Certificate with `labels`: among solvers whose `matchLabels` all match, one listing the
    /// name in `dnsNames` wins, then the longest matching `dnsZones` entry, then one with no
    /// name selector; ties go to the first listed. A wildcard name needs DNS-01.
    pub fn solver_for(&self, name: &str, labels: &BTreeMap<String, String>) -> Option<&AcmeSolver> {
        let wildcard = name.starts_with("*.");
        let bare = name
            .trim_start_matches("*.")
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let mut best: Option<(u32, &AcmeSolver)> = None;
        for s in &self.solvers {
            if wildcard && s.kind == SolverKind::Http01 {
                continue;
            }
            let sel = &s.selector;
            if !sel
                .match_labels
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
            {
                continue;
            }
            let label_bonus = u32::try_from(sel.match_labels.len())
                .unwrap_or(u32::MAX)
                .min(999);
            let score = if sel.dns_names.is_empty() && sel.dns_zones.is_empty() {
                Some(label_bonus)
            } else if sel.dns_names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                Some(1_000_000 + label_bonus)
            } else {
                sel.dns_zones
                    .iter()
                    .map(|z| z.trim_end_matches('.').to_ascii_lowercase())
                    .filter(|z| bare == *z || bare.ends_with(&format!(".{z}")))
                    .map(|z| {
                        1000 + 1000 * u32::try_from(z.split('.').count()).unwrap_or(0).min(900)
                            + label_bonus
                    })
                    .max()
            };
            if let Some(score) = score {
                if best.is_none_or(|(b, _)| score > b) {
                    best = Some((score, s));
                }
            }
        }
        best.map(|(_, s)| s)
    }
}

/// A Certificate to keep issued.
#[derive(Debug, Clone, PartialEq)]
pub struct CertificatePlan {
    pub namespace: String,
    pub name: String,
    pub secret_name: String,
    pub secret_labels: BTreeMap<String, String>,
    pub secret_annotations: BTreeMap<String, String>,
    pub issuer_name: String,
    /// `Issuer` or `ClusterIssuer`.
    pub issuer_kind: String,
    pub spec: certs::CertificateSpec,
    /// `rotationPolicy: Never` keeps the private key across renewals.
    pub keep_key: bool,
    /// The Certificate's labels (ACME solver selectors match them).
    pub labels: BTreeMap<String, String>,
}

/// Everything cert-manager-shaped in a set of files.
#[derive(Debug, Default)]
pub struct CertPlan {
    pub issuers: Vec<IssuerPlan>,
    pub certificates: Vec<CertificatePlan>,
    /// The static configuration's certificate resolvers, by name: routers' `tls.certResolver`
    /// asks them for certificates (issuer kind [`RESOLVER_KIND`]).
    pub resolvers: BTreeMap<String, CertResolver>,
    pub diagnostics: Vec<String>,
}

/// The issuer kind of certificates a router asks a certificate resolver for.
pub const RESOLVER_KIND: &str = "CertResolver";

/// A certificate resolver of the static configuration (Traefik's `certificatesResolvers`):
/// an ACME issuer and the key type of the certificates it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertResolver {
    pub issuer: AcmeIssuer,
    pub key: certs::KeyAlgorithm,
}

/// The secret holding what `resolver` keeps for `names`: readable, and unique per name set.
pub fn resolver_secret_name(resolver: &str, names: &[String]) -> String {
    let first = names.first().map_or("none", String::as_str);
    let slug: String = first
        .replace("*.", "wildcard.")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in names.join(",").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut slug = slug.trim_matches('-').to_string();
    slug.truncate(180);
    let res: String = resolver
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    format!("{res}-{slug}-{:08x}-tls", h as u32)
}

/// The names a resolver's certificate covers: `tls.domains` (each main, then its sans) when
/// given, else the hosts the rules require (a `*.x` host pattern as a wildcard name).
pub fn resolver_names(domains: &[(String, Vec<String>)], rules: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut add = |n: String| {
        let n = n.trim_end_matches('.').to_ascii_lowercase();
        if !n.is_empty() && !names.contains(&n) {
            names.push(n);
        }
    };
    if domains.is_empty() {
        for r in rules {
            for h in rule_hosts(r) {
                add(h);
            }
        }
    } else {
        for (main, sans) in domains {
            add(main.clone());
            for s in sans {
                add(s.clone());
            }
        }
    }
    names
}

/// The host names a rule requires (`Host(...)`, and `HostRegexp` of one-label wildcards).
fn rule_hosts(rule: &str) -> Vec<String> {
    let Ok(rule) = proxy::rule::Rule::parse(rule) else {
        return Vec::new(); // the proxy reports the rule
    };
    let mut out = Vec::new();
    for h in rule.expr().required_hosts().unwrap_or_default() {
        let name = match h {
            proxy::rule::HostPattern::Exact(h) => h,
            proxy::rule::HostPattern::OneLabel(s) => format!("*.{s}"),
            proxy::rule::HostPattern::AnyLabels(_) => continue,
        };
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    http: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Meta {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Doc<S> {
    metadata: Meta,
    spec: S,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct IssuerSpec {
    #[serde(default)]
    self_signed: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    ca: Option<CaDoc>,
    #[serde(default)]
    acme: Option<AcmeDoc>,
    #[serde(default)]
    vault: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    venafi: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CaDoc {
    secret_name: String,
    #[serde(default)]
    #[allow(dead_code)]
    crl_distribution_points: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AcmeDoc {
    server: String,
    #[serde(default)]
    email: Option<String>,
    private_key_secret_ref: NameRefDoc,
    #[serde(default)]
    ca_bundle: Option<String>,
    #[serde(default, rename = "skipTLSVerify")]
    skip_tls_verify: bool,
    #[serde(default)]
    external_account_binding: Option<EabDoc>,
    #[serde(default)]
    solvers: Vec<SolverDoc>,
    #[serde(default)]
    #[allow(dead_code)]
    preferred_chain: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    disable_account_key_generation: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    enable_duration_feature: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    profile: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameRefDoc {
    name: String,
    #[serde(default)]
    key: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EabDoc {
    #[serde(rename = "keyID")]
    key_id: String,
    key_secret_ref: NameRefDoc,
    #[serde(default)]
    key_algorithm: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SolverDoc {
    #[serde(default)]
    selector: Option<SelectorDoc>,
    #[serde(default)]
    dns01: Option<Dns01Doc>,
    #[serde(default)]
    http01: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SelectorDoc {
    #[serde(default)]
    dns_names: Vec<String>,
    #[serde(default)]
    dns_zones: Vec<String>,
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Dns01Doc {
    #[serde(default)]
    route53: Option<Route53Doc>,
    #[serde(default)]
    #[allow(dead_code)]
    cname_strategy: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Route53Doc {
    #[serde(default)]
    region: Option<String>,
    #[serde(default, rename = "hostedZoneID")]
    hosted_zone_id: Option<String>,
    #[serde(default, rename = "accessKeyID")]
    access_key_id: Option<String>,
    #[serde(default, rename = "accessKeyIDSecretRef")]
    access_key_id_secret_ref: Option<NameRefDoc>,
    #[serde(default)]
    secret_access_key_secret_ref: Option<NameRefDoc>,
    #[serde(default)]
    role: Option<String>,
}

fn acme_issuer(d: AcmeDoc) -> Result<AcmeIssuer, String> {
    let url = d.server.trim();
    if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() < 10 {
        return Err(format!("acme.server {url:?} must be an https:// URL"));
    }
    let ca_bundle = match d.ca_bundle {
        Some(b) => {
            let bytes = model::base64::decode(b.trim().as_bytes())
                .ok_or_else(|| "acme.caBundle must be base64-encoded PEM".to_string())?;
            let pem = String::from_utf8(bytes)
                .map_err(|_| "acme.caBundle must be base64-encoded PEM".to_string())?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err("acme.caBundle holds no PEM certificate".into());
            }
            Some(pem)
        }
        None => None,
    };
    let key_ref = |r: NameRefDoc, field: &str| -> Result<SecretKeyRef, String> {
        let key = r.key.ok_or_else(|| format!("{field}.key is required"))?;
        Ok(SecretKeyRef { name: r.name, key })
    };
    let external_account_binding = match d.external_account_binding {
        Some(e) => {
            if let Some(a) = e.key_algorithm.as_deref() {
                if a != "HS256" {
                    return Err(format!(
                        "acme.externalAccountBinding.keyAlgorithm {a:?}: only HS256 is supported"
                    ));
                }
            }
            Some(ExternalAccountBinding {
                key_id: e.key_id,
                key_secret: key_ref(e.key_secret_ref, "acme.externalAccountBinding.keySecretRef")?,
            })
        }
        None => None,
    };
    let mut solvers = Vec::new();
    for (i, s) in d.solvers.into_iter().enumerate() {
        let at = format!("acme.solvers[{i}]");
        let kind = match (s.dns01, s.http01) {
            (Some(dns), None) => {
                let r = dns
                    .route53
                    .ok_or_else(|| format!("{at}.dns01: only the route53 provider is available"))?;
                if r.role.is_some() {
                    return Err(format!(
                        "{at}.dns01.route53.role: assuming a role is not supported"
                    ));
                }
                if r.access_key_id.is_some() && r.access_key_id_secret_ref.is_some() {
                    return Err(format!(
                        "{at}.dns01.route53: accessKeyID and accessKeyIDSecretRef are exclusive"
                    ));
                }
                let has_id = r.access_key_id.is_some() || r.access_key_id_secret_ref.is_some();
                if has_id != r.secret_access_key_secret_ref.is_some() {
                    return Err(format!(
                        "{at}.dns01.route53: an access key ID and secretAccessKeySecretRef go together"
                    ));
                }
                SolverKind::Dns01Route53(Route53Solver {
                    region: r.region,
                    hosted_zone_id: r.hosted_zone_id,
                    access_key_id: r.access_key_id,
                    access_key_id_ref: r
                        .access_key_id_secret_ref
                        .map(|k| key_ref(k, &format!("{at}.dns01.route53.accessKeyIDSecretRef")))
                        .transpose()?,
                    secret_access_key_ref: r
                        .secret_access_key_secret_ref
                        .map(|k| {
                            key_ref(k, &format!("{at}.dns01.route53.secretAccessKeySecretRef"))
                        })
                        .transpose()?,
                })
            }
            (None, Some(_)) => SolverKind::Http01,
            _ => return Err(format!("{at}: exactly one of dns01 and http01 is required")),
        };
        let sel = s.selector.unwrap_or(SelectorDoc {
            dns_names: Vec::new(),
            dns_zones: Vec::new(),
            match_labels: BTreeMap::new(),
        });
        solvers.push(AcmeSolver {
            selector: SolverSelector {
                dns_names: sel.dns_names,
                dns_zones: sel.dns_zones,
                match_labels: sel.match_labels,
            },
            kind,
        });
    }
    if solvers.is_empty() {
        return Err("acme.solvers: at least one solver is required".into());
    }
    Ok(AcmeIssuer {
        server: url.to_string(),
        email: d.email.filter(|e| !e.is_empty()),
        private_key_secret: d.private_key_secret_ref.name,
        ca_bundle,
        skip_tls_verify: d.skip_tls_verify,
        external_account_binding,
        solvers,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CertificateSpecDoc {
    secret_name: String,
    issuer_ref: IssuerRefDoc,
    #[serde(default)]
    common_name: Option<String>,
    #[serde(default)]
    dns_names: Vec<String>,
    #[serde(default)]
    ip_addresses: Vec<String>,
    #[serde(default)]
    uris: Vec<String>,
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    renew_before: Option<String>,
    #[serde(default)]
    renew_before_percentage: Option<u8>,
    #[serde(default)]
    private_key: Option<PrivateKeyDoc>,
    #[serde(default)]
    usages: Vec<String>,
    #[serde(default, rename = "isCA")]
    is_ca: bool,
    #[serde(default)]
    secret_template: Option<SecretTemplateDoc>,
    #[serde(default)]
    #[allow(dead_code)]
    subject: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    #[allow(dead_code)]
    revision_history_limit: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuerRefDoc {
    name: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    group: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PrivateKeyDoc {
    #[serde(default)]
    algorithm: Option<String>,
    #[serde(default)]
    size: Option<u32>,
    #[serde(default)]
    rotation_policy: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SecretTemplateDoc {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Reads every cert-manager resource of these files (name, text).
pub fn load(files: &[(String, String)]) -> CertPlan {
    load_with(files, &BTreeMap::new())
}

/// [`load`], with the static configuration's certificate resolvers: routers whose
/// `tls.certResolver` names one get a certificate for their hosts from it.
pub fn load_with(
    files: &[(String, String)],
    resolvers: &BTreeMap<String, CertResolver>,
) -> CertPlan {
    let parts: Vec<CertPlan> = files
        .iter()
        .map(|(file, text)| load_file(file, text, resolvers))
        .collect();
    combine(&parts.iter().collect::<Vec<_>>(), resolvers)
}

/// The cert-manager resources of one file (see [`combine`]); a caller may keep it while the
/// file does not change.
pub fn load_file(file: &str, text: &str, resolvers: &BTreeMap<String, CertResolver>) -> CertPlan {
    let mut plan = CertPlan {
        resolvers: resolvers.clone(),
        ..CertPlan::default()
    };
    for (line, doc) in crate::documents(text) {
        if let Err(e) = parse_one(&doc, &mut plan) {
            plan.diagnostics.push(format!("{file}:{line}: {e}"));
        }
    }
    plan
}

/// The files' plans as one; a resolver certificate two files ask for is kept once.
pub fn combine(parts: &[&CertPlan], resolvers: &BTreeMap<String, CertResolver>) -> CertPlan {
    let mut plan = CertPlan {
        resolvers: resolvers.clone(),
        ..CertPlan::default()
    };
    for p in parts {
        plan.issuers.extend(p.issuers.iter().cloned());
        plan.diagnostics.extend(p.diagnostics.iter().cloned());
        for c in &p.certificates {
            let duplicate = c.issuer_kind == RESOLVER_KIND
                && plan
                    .certificates
                    .iter()
                    .any(|x| x.namespace == c.namespace && x.secret_name == c.secret_name);
            if !duplicate {
                plan.certificates.push(c.clone());
            }
        }
    }
    plan
}

fn parse_one(doc: &str, plan: &mut CertPlan) -> Result<(), String> {
    // Every document this reads names cert-manager or a resolver; others (a file of 100,000
    // routers, say) are not parsed at all.
    if !(doc.contains("cert-manager.io")
        || doc.contains("certResolver")
        || doc.contains("certresolver"))
    {
        return Ok(());
    }
    let head: Head = crate::from_yaml(doc).map_err(|e| e.to_string())?;
    if matches!(
        head.api_version.as_deref(),
        Some("traefik.io/v1alpha1" | "traefik.containo.us/v1alpha1")
    ) && head.kind.as_deref() == Some("IngressRoute")
    {
        return ingress_shim(doc, plan);
    }
    if head.api_version.is_none() && head.kind.is_none() && head.http.is_some() {
        return file_resolvers(doc, plan);
    }
    if head.api_version.as_deref() == Some("networking.k8s.io/v1")
        && head.kind.as_deref() == Some("Ingress")
    {
        return kube_ingress_shim(doc, plan);
    }
    if head.api_version.as_deref() != Some("cert-manager.io/v1") {
        return Ok(());
    }
    match head.kind.as_deref() {
        Some(kind @ ("Issuer" | "ClusterIssuer")) => {
            let d: Doc<IssuerSpec> = crate::from_yaml(doc).map_err(|e| format!("{kind}: {e}"))?;
            let who = format!("{kind} {}", d.metadata.name);
            let s = &d.spec;
            let set = [
                s.self_signed.is_some(),
                s.ca.is_some(),
                s.acme.is_some(),
                s.vault.is_some(),
                s.venafi.is_some(),
            ];
            if set.iter().filter(|x| **x).count() != 1 {
                return Err(format!(
                    "{who}: exactly one of selfSigned, ca, acme is required"
                ));
            }
            let mut d = d;
            let kind_of = if d.spec.self_signed.is_some() {
                IssuerType::SelfSigned
            } else if let Some(ca) = &d.spec.ca {
                IssuerType::Ca {
                    secret_name: ca.secret_name.clone(),
                }
            } else if let Some(acme) = d.spec.acme.take() {
                IssuerType::Acme(Box::new(
                    acme_issuer(acme).map_err(|e| format!("{who}: {e}"))?,
                ))
            } else {
                return Err(format!(
                    "{who}: vault and venafi issuers are not available; use selfSigned, ca or acme"
                ));
            };
            plan.issuers.push(IssuerPlan {
                namespace: (kind == "Issuer").then(|| {
                    d.metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into())
                }),
                name: d.metadata.name,
                kind: kind_of,
            });
            Ok(())
        }
        Some("Certificate") => {
            let d: Doc<CertificateSpecDoc> =
                crate::from_yaml(doc).map_err(|e| format!("Certificate: {e}"))?;
            let ns = d
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let who = format!("Certificate {ns}/{}", d.metadata.name);
            certificate(ns, d.metadata.name, d.metadata.labels, d.spec)
                .map(|c| plan.certificates.push(c))
                .map_err(|e| format!("{who}: {e}"))
        }
        _ => Ok(()),
    }
}

fn certificate(
    namespace: String,
    name: String,
    labels: BTreeMap<String, String>,
    d: CertificateSpecDoc,
) -> Result<CertificatePlan, String> {
    if let Some(g) = d.issuer_ref.group.as_deref() {
        if g != "cert-manager.io" {
            return Err(format!(
                "issuerRef.group {g:?}: only cert-manager.io issuers are available"
            ));
        }
    }
    let issuer_kind = d.issuer_ref.kind.unwrap_or_else(|| "Issuer".to_string());
    if !matches!(issuer_kind.as_str(), "Issuer" | "ClusterIssuer") {
        return Err(format!(
            "issuerRef.kind {issuer_kind:?} must be Issuer or ClusterIssuer"
        ));
    }
    let pk = d.private_key.unwrap_or_default();
    if let Some(e) = pk.encoding.as_deref() {
        if e != "PKCS8" && e != "PKCS1" {
            return Err(format!("privateKey.encoding {e:?} must be PKCS1 or PKCS8"));
        }
    }
    let key = match pk.algorithm.as_deref().unwrap_or("RSA") {
        "RSA" => certs::KeyAlgorithm::Rsa(pk.size.unwrap_or(2048)),
        "ECDSA" => certs::KeyAlgorithm::Ecdsa(pk.size.unwrap_or(256)),
        "Ed25519" => certs::KeyAlgorithm::Ed25519,
        other => {
            return Err(format!(
                "privateKey.algorithm {other:?} must be RSA, ECDSA or Ed25519"
            ))
        }
    };
    let keep_key = match pk.rotation_policy.as_deref() {
        None | Some("Always") => false,
        Some("Never") => true,
        Some(other) => {
            return Err(format!(
                "privateKey.rotationPolicy {other:?} must be Always or Never"
            ))
        }
    };
    let ip_addresses = d
        .ip_addresses
        .iter()
        .map(|a| a.parse().map_err(|_| format!("invalid IP address {a:?}")))
        .collect::<Result<Vec<_>, _>>()?;
    let duration = match &d.duration {
        Some(t) => go_duration(t)?,
        None => Duration::from_secs(90 * 86_400),
    };
    let renew_before = d.renew_before.as_deref().map(go_duration).transpose()?;
    let spec = certs::CertificateSpec {
        common_name: d.common_name,
        dns_names: d.dns_names,
        ip_addresses,
        uris: d.uris,
        duration,
        renew_before,
        renew_before_percentage: d.renew_before_percentage,
        key,
        usages: d.usages,
        is_ca: d.is_ca,
    };
    spec.validate().map_err(|e| e.to_string())?;
    let template = d.secret_template.unwrap_or_default();
    Ok(CertificatePlan {
        namespace,
        name,
        secret_name: d.secret_name,
        secret_labels: template.labels,
        secret_annotations: template.annotations,
        issuer_name: d.issuer_ref.name,
        issuer_kind,
        spec,
        keep_key,
        labels,
    })
}

#[derive(Deserialize)]
struct ShimDoc {
    metadata: ShimMeta,
    spec: ShimSpec,
}

#[derive(Deserialize)]
struct ShimMeta {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct ShimSpec {
    #[serde(default)]
    routes: Vec<ShimRoute>,
    #[serde(default)]
    tls: Option<ShimTls>,
}

#[derive(Deserialize)]
struct ShimRoute {
    #[serde(rename = "match")]
    rule: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ShimTls {
    #[serde(default)]
    secret_name: Option<String>,
    #[serde(default)]
    cert_resolver: Option<String>,
    #[serde(default)]
    domains: Vec<DomainDoc>,
}

#[derive(Deserialize)]
struct DomainDoc {
    #[serde(default)]
    main: String,
    #[serde(default)]
    sans: Vec<String>,
}

#[derive(Deserialize)]
struct FileProviderDoc {
    #[serde(default)]
    http: Option<FileHttpDoc>,
}

#[derive(Deserialize)]
struct FileHttpDoc {
    #[serde(default)]
    routers: BTreeMap<String, FileRouterDoc>,
}

#[derive(Deserialize)]
struct FileRouterDoc {
    #[serde(default)]
    rule: String,
    #[serde(default)]
    tls: Option<ShimTls>,
}

/// A certificate a router asks `resolver` for, in `namespace` (the route's; `default` for the
/// file provider).
fn resolver_certificate(
    plan: &mut CertPlan,
    who: &str,
    namespace: &str,
    resolver: &str,
    domains: &[DomainDoc],
    rules: &[&str],
) -> Result<(), String> {
    let Some(r) = plan.resolvers.get(resolver) else {
        return Err(format!(
            "{who}: tls.certResolver {resolver:?} is not in the static configuration's certificatesResolvers"
        ));
    };
    let domains: Vec<(String, Vec<String>)> = domains
        .iter()
        .map(|d| (d.main.clone(), d.sans.clone()))
        .collect();
    let names = resolver_names(&domains, rules);
    if names.is_empty() {
        return Err(format!(
            "{who}: tls.certResolver needs a Host in the rules or tls.domains"
        ));
    }
    let secret_name = resolver_secret_name(resolver, &names);
    if plan
        .certificates
        .iter()
        .any(|c| c.namespace == namespace && c.secret_name == secret_name)
    {
        return Ok(()); // another router asked for the same names
    }
    let spec = certs::CertificateSpec {
        common_name: None,
        dns_names: names,
        ip_addresses: Vec::new(),
        uris: Vec::new(),
        duration: Duration::from_secs(90 * 86_400),
        renew_before: None,
        renew_before_percentage: None,
        key: r.key,
        usages: Vec::new(),
        is_ca: false,
    };
    spec.validate().map_err(|e| format!("{who}: {e}"))?;
    plan.certificates.push(CertificatePlan {
        namespace: namespace.to_string(),
        name: secret_name.clone(),
        secret_name,
        secret_labels: BTreeMap::from([(
            "edgeplane.io/cert-resolver".to_string(),
            resolver.to_string(),
        )]),
        secret_annotations: BTreeMap::new(),
        issuer_name: resolver.to_string(),
        issuer_kind: RESOLVER_KIND.to_string(),
        spec,
        keep_key: false,
        labels: BTreeMap::new(),
    });
    Ok(())
}

#[derive(Deserialize)]
struct KubeIngressDoc {
    metadata: ShimMeta,
    #[serde(default)]
    spec: KubeIngressSpec,
}

#[derive(Deserialize, Default)]
struct KubeIngressSpec {
    #[serde(default)]
    tls: Vec<KubeIngressTls>,
    #[serde(default)]
    rules: Vec<KubeIngressRule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KubeIngressTls {
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    secret_name: Option<String>,
}

#[derive(Deserialize)]
struct KubeIngressRule {
    #[serde(default)]
    host: Option<String>,
}

/// cert-manager's ingress-shim for `networking.k8s.io/v1` Ingresses: with
/// `cert-manager.io/issuer` or `cluster-issuer`, one Certificate per `spec.tls` entry (named
/// after its secret, for its hosts); with Traefik's `router.tls.certresolver` annotation, one
/// certificate from that resolver for the TLS hosts (else the rules' hosts).
fn kube_ingress_shim(doc: &str, plan: &mut CertPlan) -> Result<(), String> {
    let d: KubeIngressDoc = crate::from_yaml(doc).map_err(|e| format!("Ingress: {e}"))?;
    let ns = d
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let who = format!("Ingress {ns}/{}", d.metadata.name);
    let a = &d.metadata.annotations;
    if let Some(resolver) = a.get("traefik.ingress.kubernetes.io/router.tls.certresolver") {
        let mut hosts: Vec<String> = d.spec.tls.iter().flat_map(|t| t.hosts.clone()).collect();
        if hosts.is_empty() {
            hosts = d.spec.rules.iter().filter_map(|r| r.host.clone()).collect();
        }
        let domains: Vec<DomainDoc> = hosts
            .into_iter()
            .map(|h| DomainDoc {
                main: h,
                sans: Vec::new(),
            })
            .collect();
        resolver_certificate(plan, &who, &ns, resolver.trim(), &domains, &[])?;
    }
    let Some(issuer) = shim_issuer(a, &who)? else {
        return Ok(());
    };
    if d.spec.tls.is_empty() {
        return Err(format!("{who}: a cert-manager annotation needs spec.tls"));
    }
    for (i, t) in d.spec.tls.iter().enumerate() {
        let Some(secret_name) = t.secret_name.clone() else {
            return Err(format!("{who}: spec.tls[{i}] has no secretName"));
        };
        let mut dns_names: Vec<String> = Vec::new();
        for h in &t.hosts {
            let h = h.trim().trim_end_matches('.').to_ascii_lowercase();
            if !h.is_empty() && !dns_names.contains(&h) {
                dns_names.push(h);
            }
        }
        if dns_names.is_empty() {
            return Err(format!("{who}: spec.tls[{i}] has no hosts"));
        }
        let c = shim_certificate(a, &who, &ns, secret_name, &issuer, dns_names)?;
        plan.certificates.push(c);
    }
    Ok(())
}

/// The issuer ingress-shim annotations name, as (name, kind); `None` without them.
fn shim_issuer(
    a: &BTreeMap<String, String>,
    who: &str,
) -> Result<Option<(String, &'static str)>, String> {
    match (
        a.get("cert-manager.io/issuer"),
        a.get("cert-manager.io/cluster-issuer"),
    ) {
        (Some(i), None) => Ok(Some((i.clone(), "Issuer"))),
        (None, Some(i)) => Ok(Some((i.clone(), "ClusterIssuer"))),
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(format!(
            "{who}: both cert-manager.io/issuer and cluster-issuer are set"
        )),
    }
}

/// An ingress-shim Certificate (named after its secret) for `dns_names`, with the
/// `duration`, `renew-before`, `common-name`, `private-key-algorithm` and
/// `private-key-size` annotations.
fn shim_certificate(
    a: &BTreeMap<String, String>,
    who: &str,
    ns: &str,
    secret_name: String,
    (issuer_name, issuer_kind): &(String, &'static str),
    dns_names: Vec<String>,
) -> Result<CertificatePlan, String> {
    let duration = a
        .get("cert-manager.io/duration")
        .map(|v| go_duration(v))
        .transpose()?;
    let renew_before = a
        .get("cert-manager.io/renew-before")
        .map(|v| go_duration(v))
        .transpose()?;
    let key = match a
        .get("cert-manager.io/private-key-algorithm")
        .map(String::as_str)
    {
        None | Some("RSA") => certs::KeyAlgorithm::Rsa(size(a)?.unwrap_or(2048)),
        Some("ECDSA") => certs::KeyAlgorithm::Ecdsa(size(a)?.unwrap_or(256)),
        Some("Ed25519") => certs::KeyAlgorithm::Ed25519,
        Some(other) => return Err(format!("{who}: private-key-algorithm {other:?}")),
    };
    let spec = certs::CertificateSpec {
        common_name: a.get("cert-manager.io/common-name").cloned(),
        dns_names,
        ip_addresses: Vec::new(),
        uris: Vec::new(),
        duration: duration.unwrap_or(Duration::from_secs(90 * 86_400)),
        renew_before,
        renew_before_percentage: None,
        key,
        usages: Vec::new(),
        is_ca: false,
    };
    spec.validate().map_err(|e| format!("{who}: {e}"))?;
    Ok(CertificatePlan {
        namespace: ns.to_string(),
        name: secret_name.clone(),
        secret_name,
        secret_labels: BTreeMap::new(),
        secret_annotations: BTreeMap::new(),
        issuer_name: issuer_name.clone(),
        issuer_kind: issuer_kind.to_string(),
        spec,
        keep_key: false,
        labels: BTreeMap::new(),
    })
}

/// Routers of Traefik's file format with `tls.certResolver`.
fn file_resolvers(doc: &str, plan: &mut CertPlan) -> Result<(), String> {
    let d: FileProviderDoc =
        crate::from_yaml(doc).map_err(|e| format!("Traefik dynamic configuration: {e}"))?;
    let mut problems = Vec::new();
    for (name, r) in d.http.map(|h| h.routers).unwrap_or_default() {
        let Some(tls) = &r.tls else { continue };
        let Some(resolver) = &tls.cert_resolver else {
            continue;
        };
        if let Err(e) = resolver_certificate(
            plan,
            &format!("router {name}@file"),
            "default",
            resolver,
            &tls.domains,
            &[r.rule.as_str()],
        ) {
            problems.push(e);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// cert-manager's ingress-shim for IngressRoutes: `cert-manager.io/issuer` or
/// `cert-manager.io/cluster-issuer` on a route with `tls.secretName` asks for a Certificate
/// of that name covering the hosts of its rules (`duration`, `renew-before`, `common-name`,
/// `private-key-algorithm` and `private-key-size` annotations honoured).
fn ingress_shim(doc: &str, plan: &mut CertPlan) -> Result<(), String> {
    let d: ShimDoc = crate::from_yaml(doc).map_err(|e| format!("IngressRoute: {e}"))?;
    if let Some(resolver) = d.spec.tls.as_ref().and_then(|t| t.cert_resolver.as_deref()) {
        let ns = d.metadata.namespace.as_deref().unwrap_or("default");
        let rules: Vec<&str> = d.spec.routes.iter().map(|r| r.rule.as_str()).collect();
        let domains = d.spec.tls.as_ref().map_or(&[][..], |t| &t.domains[..]);
        resolver_certificate(
            plan,
            &format!("IngressRoute {ns}/{}", d.metadata.name),
            ns,
            resolver,
            domains,
            &rules,
        )?;
    }
    let a = &d.metadata.annotations;
    let named = format!("IngressRoute {}", d.metadata.name);
    let Some(issuer) = shim_issuer(a, &named)? else {
        return Ok(());
    };
    let ns = d
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let who = format!("IngressRoute {ns}/{}", d.metadata.name);
    let secret_name = d
        .spec
        .tls
        .and_then(|t| t.secret_name)
        .ok_or_else(|| format!("{who}: a cert-manager annotation needs tls.secretName"))?;
    let rules: Vec<&str> = d.spec.routes.iter().map(|r| r.rule.as_str()).collect();
    let dns_names = resolver_names(&[], &rules);
    if dns_names.is_empty() {
        return Err(format!(
            "{who}: no Host in its rules to put in a certificate"
        ));
    }
    let c = shim_certificate(a, &who, &ns, secret_name, &issuer, dns_names)?;
    plan.certificates.push(c);
    Ok(())
}

fn size(a: &BTreeMap<String, String>) -> Result<Option<u32>, String> {
    a.get("cert-manager.io/private-key-size")
        .map(|v| v.parse().map_err(|_| format!("private-key-size {v:?}")))
        .transpose()
}

/// A Go duration as cert-manager writes them: `2160h`, `1h30m`, `90s`, `500ms`.
pub fn go_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad = || format!("invalid duration {t:?} (e.g. 2160h, 1h30m, 90s)");
    if t.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let n_len = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        if n_len == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..n_len].parse().map_err(|_| bad())?;
        rest = &rest[n_len..];
        let u_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let mult = match &rest[..u_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return Err(bad()),
        };
        total += n * mult;
        rest = &rest[u_len..];
    }
    if !(0.0..=1e10).contains(&total) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_one(text: &str) -> CertPlan {
        load(&[("t.yaml".to_string(), text.to_string())])
    }

    #[test]
    fn routers_with_a_cert_resolver_ask_it_for_certificates() {
        let resolvers = BTreeMap::from([(
            "le".to_string(),
            CertResolver {
                issuer: AcmeIssuer {
                    server: "https://acme.test/dir".into(),
                    email: None,
                    private_key_secret: "le-resolver-account".into(),
                    ca_bundle: None,
                    skip_tls_verify: false,
                    external_account_binding: None,
                    solvers: vec![AcmeSolver {
                        selector: SolverSelector::default(),
                        kind: SolverKind::Http01,
                    }],
                },
                key: certs::KeyAlgorithm::Ecdsa(384),
            },
        )]);
        let text = r#"
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: shop, namespace: apps}
spec:
  routes:
    - {match: Host(`shop.example.com`) || Host(`www.shop.example.com`), services: [{name: s, port: 80}]}
  tls: {certResolver: le}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: wild, namespace: apps}
spec:
  routes: [{match: Host(`x.example.org`), services: [{name: s, port: 80}]}]
  tls: {certResolver: le, domains: [{main: example.org, sans: ["*.example.org"]}]}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: nope, namespace: apps}
spec:
  routes: [{match: Host(`n.example.com`), services: [{name: s, port: 80}]}]
  tls: {certResolver: missing}
---
http:
  routers:
    api:
      rule: Host(`api.example.net`)
      service: api
      tls: {certResolver: le}
"#;
        let p = load_with(&[("t.yaml".to_string(), text.to_string())], &resolvers);
        let names: Vec<(&str, &str, Vec<String>)> = p
            .certificates
            .iter()
            .map(|c| {
                (
                    c.namespace.as_str(),
                    c.issuer_kind.as_str(),
                    c.spec.dns_names.clone(),
                )
            })
            .collect();
        assert_eq!(
            names,
            vec![
                (
                    "apps",
                    RESOLVER_KIND,
                    vec![
                        "shop.example.com".to_string(),
                        "www.shop.example.com".to_string()
                    ]
                ),
                (
                    "apps",
                    RESOLVER_KIND,
                    vec!["example.org".to_string(), "*.example.org".to_string()]
                ),
                (
                    "default",
                    RESOLVER_KIND,
                    vec!["api.example.net".to_string()]
                ),
            ]
        );
        assert_eq!(p.certificates[0].spec.key, certs::KeyAlgorithm::Ecdsa(384));
        assert_eq!(
            p.certificates[0].secret_name,
            resolver_secret_name("le", &p.certificates[0].spec.dns_names)
        );
        assert!(p.certificates[0]
            .secret_name
            .starts_with("le-shop-example-com-"));
        assert!(
            p.diagnostics
                .iter()
                .any(|d| d.contains("nope") && d.contains("\"missing\"")),
            "{:?}",
            p.diagnostics
        );
        // The proxy side asks for the same secrets.
        let proxy = crate::ingress::load(&[crate::ingress::ManifestFile {
            name: "t.yaml",
            text,
        }]);
        for c in &p.certificates {
            assert!(
                proxy
                    .secret_refs
                    .contains(&(c.namespace.clone(), c.secret_name.clone())),
                "{:?} not in {:?}",
                c.secret_name,
                proxy.secret_refs
            );
        }
        // Names are distinct per name set.
        assert_ne!(
            resolver_secret_name("le", &["a.test".into()]),
            resolver_secret_name("le", &["a.test".into(), "b.test".into()])
        );
    }

    #[test]
    fn ingress_routes_with_cert_manager_annotations_ask_for_certificates() {
        let p = load_one(
            r#"
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata:
  name: web
  namespace: apps
  annotations: {cert-manager.io/cluster-issuer: edgeplane-ca, cert-manager.io/duration: 24h, cert-manager.io/private-key-algorithm: ECDSA}
spec:
  routes:
    - {match: Host(`a.test`) && PathPrefix(`/`), services: [{name: s, port: 80}]}
    - {match: Host(`*.b.test`) || Host(`a.test`), services: [{name: s, port: 80}]}
  tls: {secretName: web-tls}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: plain, namespace: apps}
spec:
  routes: [{match: Host(`c.test`), services: [{name: s, port: 80}]}]
  tls: {secretName: c-tls}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: nosecret, namespace: apps, annotations: {cert-manager.io/issuer: x}}
spec:
  routes: [{match: Host(`d.test`), services: [{name: s, port: 80}]}]
"#,
        );
        assert_eq!(p.certificates.len(), 1, "{:?}", p.diagnostics);
        let c = &p.certificates[0];
        assert_eq!(
            (
                c.name.as_str(),
                c.secret_name.as_str(),
                c.issuer_kind.as_str()
            ),
            ("web-tls", "web-tls", "ClusterIssuer")
        );
        assert_eq!(c.spec.dns_names, ["a.test", "*.b.test"]);
        assert_eq!(c.spec.duration.as_secs(), 86_400);
        assert_eq!(c.spec.key, certs::KeyAlgorithm::Ecdsa(256));
        assert_eq!(p.diagnostics.len(), 1, "{:?}", p.diagnostics);
        assert!(
            p.diagnostics[0].contains("needs tls.secretName"),
            "{:?}",
            p.diagnostics
        );
    }

    #[test]
    fn durations() {
        assert_eq!(go_duration("2160h").expect("valid").as_secs(), 2160 * 3600);
        assert_eq!(go_duration("1h30m").expect("valid").as_secs(), 5400);
        assert_eq!(go_duration("90s").expect("valid").as_secs(), 90);
        for bad in ["", "h", "10", "10d", "1h-1m"] {
            assert!(go_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn acme_issuers_and_solver_selection() {
        let p = load_one(
            r#"
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {name: le}
spec:
  acme:
    server: https://acme.test/dir
    email: ops@example.com
    caBundle: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=
    privateKeySecretRef: {name: le-account}
    externalAccountBinding: {keyID: kid-1, keySecretRef: {name: eab, key: secret}, keyAlgorithm: HS256}
    solvers:
      - http01: {ingress: {ingressClassName: edgeplane}}
      - selector: {dnsZones: [example.com]}
        dns01:
          route53:
            region: eu-west-1
            accessKeyIDSecretRef: {name: route53, key: access-key-id}
            secretAccessKeySecretRef: {name: route53, key: secret-access-key}
      - selector: {dnsZones: [deep.example.com]}
        dns01: {route53: {hostedZoneID: Z2}}
      - selector: {dnsNames: [exact.deep.example.com]}
        http01: {}
      - selector: {matchLabels: {tier: gold}}
        dns01: {route53: {hostedZoneID: GOLD}}
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: bad, namespace: apps}
spec:
  acme:
    server: https://acme.test/dir
    privateKeySecretRef: {name: k}
    solvers: [{dns01: {cloudflare: {}}}]
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: nosolver, namespace: apps}
spec: {acme: {server: https://acme.test/dir, privateKeySecretRef: {name: k}}}
"#,
        );
        assert_eq!(p.issuers.len(), 1, "{:?}", p.diagnostics);
        let IssuerType::Acme(a) = &p.issuers[0].kind else {
            panic!("not acme: {:?}", p.issuers[0].kind)
        };
        assert_eq!(a.server, "https://acme.test/dir");
        assert_eq!(a.private_key_secret, "le-account");
        assert!(a
            .ca_bundle
            .as_deref()
            .is_some_and(|b| b.contains("BEGIN CERTIFICATE")));
        assert_eq!(
            a.external_account_binding
                .as_ref()
                .map(|e| e.key_id.as_str()),
            Some("kid-1")
        );
        let none = BTreeMap::new();
        let kind = |name: &str, labels: &BTreeMap<String, String>| {
            a.solver_for(name, labels).map(|s| match &s.kind {
                SolverKind::Http01 => "http01".to_string(),
                SolverKind::Dns01Route53(r) => format!(
                    "dns01:{}",
                    r.hosted_zone_id
                        .clone()
                        .or(r.region.clone())
                        .unwrap_or_default()
                ),
            })
        };
        // No name selector matches: the first unselective solver (HTTP-01).
        assert_eq!(kind("www.other.org", &none).as_deref(), Some("http01"));
        // dnsZones beats no selector; the longest zone wins.
        assert_eq!(
            kind("www.example.com", &none).as_deref(),
            Some("dns01:eu-west-1")
        );
        assert_eq!(
            kind("example.com", &none).as_deref(),
            Some("dns01:eu-west-1")
        );
        assert_eq!(
            kind("a.deep.example.com", &none).as_deref(),
            Some("dns01:Z2")
        );
        // dnsNames beats dnsZones.
        assert_eq!(
            kind("exact.deep.example.com", &none).as_deref(),
            Some("http01")
        );
        // A wildcard never goes to HTTP-01.
        assert_eq!(
            kind("*.example.com", &none).as_deref(),
            Some("dns01:eu-west-1")
        );
        // matchLabels: only for Certificates with the label, then it beats no selector.
        let gold = BTreeMap::from([("tier".to_string(), "gold".to_string())]);
        assert_eq!(kind("www.other.org", &gold).as_deref(), Some("dns01:GOLD"));
        assert!(
            p.diagnostics
                .iter()
                .any(|d| d.contains("Issuer") && d.contains("unknown field `cloudflare`")),
            "{:?}",
            p.diagnostics
        );
        assert!(
            p.diagnostics
                .iter()
                .any(|d| d.contains("Issuer nosolver") && d.contains("at least one solver")),
            "{:?}",
            p.diagnostics
        );
    }

    #[test]
    fn issuers_and_certificates() {
        let p = load_one(
            r#"
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {name: root}
spec: {selfSigned: {}}
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: internal, namespace: apps}
spec: {ca: {secretName: internal-ca}}
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: le, namespace: apps}
spec: {acme: {server: https://acme.test/dir}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: web, namespace: apps}
spec:
  secretName: web-tls
  secretTemplate: {labels: {team: edge}}
  issuerRef: {name: internal}
  dnsNames: [web.apps.test, "*.web.apps.test"]
  ipAddresses: [10.0.0.7]
  duration: 2h
  renewBefore: 30m
  privateKey: {algorithm: ECDSA, size: 384, rotationPolicy: Never}
  usages: [server auth, digital signature]
  isCA: false
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: broken, namespace: apps}
spec: {secretName: x, issuerRef: {name: internal}}
"#,
        );
        assert_eq!(p.issuers.len(), 2);
        assert_eq!(
            p.issuers[0],
            IssuerPlan {
                namespace: None,
                name: "root".into(),
                kind: IssuerType::SelfSigned
            }
        );
        assert_eq!(
            p.issuers[1].kind,
            IssuerType::Ca {
                secret_name: "internal-ca".into()
            }
        );
        assert_eq!(p.certificates.len(), 1);
        let c = &p.certificates[0];
        assert_eq!(
            (c.secret_name.as_str(), c.issuer_kind.as_str()),
            ("web-tls", "Issuer")
        );
        assert_eq!(c.spec.duration.as_secs(), 7200);
        assert_eq!(c.spec.key, certs::KeyAlgorithm::Ecdsa(384));
        assert!(c.keep_key);
        assert_eq!(c.secret_labels["team"], "edge");
        assert_eq!(p.diagnostics.len(), 2, "{:?}", p.diagnostics);
        assert!(
            p.diagnostics[0].contains("Issuer") && p.diagnostics[0].contains("privateKeySecretRef"),
            "{:?}",
            p.diagnostics
        );
        assert!(
            p.diagnostics[1].contains("Certificate apps/broken"),
            "{:?}",
            p.diagnostics
        );
    }
}
