//! cert-manager's `cert-manager.io/v1` resources: `Issuer` and `ClusterIssuer` (types `ca`
//! and `selfSigned`; `acme` is recognised and reported as not available yet), and
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
}

/// Everything cert-manager-shaped in a set of files.
#[derive(Debug, Default)]
pub struct CertPlan {
    pub issuers: Vec<IssuerPlan>,
    pub certificates: Vec<CertificatePlan>,
    pub diagnostics: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    api_version: Option<String>,
    kind: Option<String>,
}

#[derive(Deserialize)]
struct Meta {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
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
    acme: Option<serde::de::IgnoredAny>,
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
    let mut plan = CertPlan::default();
    for (file, text) in files {
        for (line, doc) in crate::documents(text) {
            if let Err(e) = parse_one(&doc, &mut plan) {
                plan.diagnostics.push(format!("{file}:{line}: {e}"));
            }
        }
    }
    plan
}

fn parse_one(doc: &str, plan: &mut CertPlan) -> Result<(), String> {
    let head: Head = crate::from_yaml(doc).map_err(|e| e.to_string())?;
    if matches!(
        head.api_version.as_deref(),
        Some("traefik.io/v1alpha1" | "traefik.containo.us/v1alpha1")
    ) && head.kind.as_deref() == Some("IngressRoute")
    {
        return ingress_shim(doc, plan);
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
            let kind_of = if s.self_signed.is_some() {
                IssuerType::SelfSigned
            } else if let Some(ca) = &s.ca {
                IssuerType::Ca {
                    secret_name: ca.secret_name.clone(),
                }
            } else {
                return Err(format!(
                    "{who}: only selfSigned and ca issuers are available in this version"
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
            certificate(ns, d.metadata.name, d.spec)
                .map(|c| plan.certificates.push(c))
                .map_err(|e| format!("{who}: {e}"))
        }
        _ => Ok(()),
    }
}

fn certificate(
    namespace: String,
    name: String,
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
}

/// cert-manager's ingress-shim for IngressRoutes: `cert-manager.io/issuer` or
/// `cert-manager.io/cluster-issuer` on a route with `tls.secretName` asks for a Certificate
/// of that name covering the hosts of its rules (`duration`, `renew-before`, `common-name`,
/// `private-key-algorithm` and `private-key-size` annotations honoured).
fn ingress_shim(doc: &str, plan: &mut CertPlan) -> Result<(), String> {
    let d: ShimDoc = crate::from_yaml(doc).map_err(|e| format!("IngressRoute: {e}"))?;
    let a = &d.metadata.annotations;
    let (issuer_name, issuer_kind) = match (
        a.get("cert-manager.io/issuer"),
        a.get("cert-manager.io/cluster-issuer"),
    ) {
        (Some(i), None) => (i.clone(), "Issuer"),
        (None, Some(i)) => (i.clone(), "ClusterIssuer"),
        (None, None) => return Ok(()),
        (Some(_), Some(_)) => {
            return Err(format!(
                "IngressRoute {}: both cert-manager.io/issuer and cluster-issuer are set",
                d.metadata.name
            ))
        }
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
    let mut dns_names = Vec::new();
    for r in &d.spec.routes {
        let Ok(rule) = proxy::rule::Rule::parse(&r.rule) else {
            continue; // the proxy reports the rule
        };
        for h in rule.expr().required_hosts().unwrap_or_default() {
            let name = match h {
                proxy::rule::HostPattern::Exact(h) => h,
                proxy::rule::HostPattern::OneLabel(s) => format!("*.{s}"),
                proxy::rule::HostPattern::AnyLabels(_) => continue,
            };
            if !dns_names.contains(&name) {
                dns_names.push(name);
            }
        }
    }
    if dns_names.is_empty() {
        return Err(format!(
            "{who}: no Host in its rules to put in a certificate"
        ));
    }
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
    plan.certificates.push(CertificatePlan {
        namespace: ns,
        name: secret_name.clone(),
        secret_name,
        secret_labels: BTreeMap::new(),
        secret_annotations: BTreeMap::new(),
        issuer_name,
        issuer_kind: issuer_kind.to_string(),
        spec,
        keep_key: false,
    });
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
            p.diagnostics[0].contains("Issuer le")
                && p.diagnostics[0].contains("only selfSigned and ca"),
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
