//! The `edgeplane.io/v1alpha1` `DNSZone` resource (design section 3) as a workflow plan, with
//! the provider it runs on: `embedded`, or a provider named in the static configuration.

use std::collections::BTreeMap;

use clouddns::workflow::{Network, NetworkKind, ParentRef, RecordSpec, ZonePlan};
use model::secret::SecretRef;
use model::DomainName;
use serde::Deserialize;

use crate::static_config::{DnsProviderConfig, StaticConfig};

/// Why a document was not turned into a plan; names the document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("document at line {line}: {reason}")]
    Invalid { line: usize, reason: String },
    #[error("document at line {line}: {kind} is not a DNSZone; skipped")]
    OtherKind { line: usize, kind: String },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    api_version: Option<String>,
    kind: Option<String>,
    http: Option<serde::de::IgnoredAny>,
    tls: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DnsZoneDoc {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    metadata: Metadata,
    spec: Spec,
    #[serde(default)]
    #[allow(dead_code)]
    status: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Metadata {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Spec {
    domain: String,
    #[serde(default)]
    parent: Option<Parent>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    network: NetworkDoc,
    #[serde(default)]
    records: Vec<RecordDoc>,
    #[serde(default)]
    acme_credentials: Option<AcmeCredentials>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Parent {
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    zone_id: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NetworkDoc {
    #[serde(default)]
    elb_eips: Vec<String>,
    #[serde(default)]
    internal_elb_ips: Vec<String>,
    #[serde(default)]
    service_ref: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RecordDoc {
    name: String,
    from_network: String,
    #[serde(default = "default_ttl")]
    ttl: u32,
}

fn default_ttl() -> u32 {
    300
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AcmeCredentials {
    secret_name: String,
}

/// A DNSZone: its plan and where it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsZone {
    pub plan: ZonePlan,
    pub provider: ProviderRef,
}

/// The provider a DNSZone names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderRef {
    /// The store itself (`provider: embedded`, or no provider).
    Embedded,
    /// A provider defined in the static configuration's `dnsProviders`.
    Named(String),
}

/// Parses every document of `text` with no named provider (only `embedded`); see
/// [`parse_with`].
pub fn parse(text: &str) -> Vec<Result<ZonePlan, ManifestError>> {
    parse_with(text, &StaticConfig::default())
        .into_iter()
        .map(|r| r.map(|z| z.plan))
        .collect()
}

/// Parses every document of `text`; DNSZones become plans on a provider of `providers` (a
/// provider it does not define is the document's error), other kinds are reported as skipped,
/// and a broken document yields its own error.
pub fn parse_with(text: &str, providers: &StaticConfig) -> Vec<Result<DnsZone, ManifestError>> {
    crate::documents(text)
        .into_iter()
        .map(|(line, doc)| parse_one(line, &doc, providers))
        .collect()
}

fn parse_one(line: usize, doc: &str, providers: &StaticConfig) -> Result<DnsZone, ManifestError> {
    let invalid = |reason: String| ManifestError::Invalid { line, reason };
    // A DNSZone says so: other documents (a file of 100,000 routers, say) are not parsed.
    if !doc.contains("DNSZone") {
        let top = |key: &str| {
            doc.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().trim_matches(['"', '\'']).to_string())
        };
        if let Some(kind) = top("kind:").filter(|k| !k.is_empty() && !k.starts_with('#')) {
            return Err(ManifestError::OtherKind { line, kind });
        }
        if top("http:").is_some() || top("tls:").is_some() {
            return Err(ManifestError::OtherKind {
                line,
                kind: "Traefik dynamic configuration".to_string(),
            });
        }
    }
    let head: Head = crate::from_yaml(doc).map_err(|e| invalid(e.to_string()))?;
    match (head.api_version.as_deref(), head.kind.as_deref()) {
        (Some("edgeplane.io/v1alpha1"), Some("DNSZone")) => {}
        (_, Some(kind)) => {
            return Err(ManifestError::OtherKind {
                line,
                kind: kind.to_string(),
            })
        }
        (None, None) if head.http.is_some() || head.tls.is_some() => {
            return Err(ManifestError::OtherKind {
                line,
                kind: "Traefik dynamic configuration".to_string(),
            })
        }
        _ => return Err(invalid("apiVersion and kind are required".into())),
    }
    let d: DnsZoneDoc = crate::from_yaml(doc).map_err(|e| invalid(e.to_string()))?;
    let namespace = d
        .metadata
        .namespace
        .unwrap_or_else(|| "default".to_string());
    if !model::secret::is_dns1123_label(&namespace)
        || !model::secret::is_dns1123_subdomain(&d.metadata.name)
    {
        return Err(invalid(format!(
            "metadata {namespace}/{} is not a valid Kubernetes name",
            d.metadata.name
        )));
    }
    let (provider, region) = match d.spec.provider.as_deref() {
        None | Some(crate::static_config::EMBEDDED) => (ProviderRef::Embedded, None),
        Some(name) => match providers.dns_providers.get(name) {
            Some(DnsProviderConfig::Route53(r)) => {
                (ProviderRef::Named(name.to_string()), Some(r.region.clone()))
            }
            None => {
                let known: Vec<String> = providers
                    .provider_names()
                    .iter()
                    .map(|n| format!("{n:?}"))
                    .collect();
                return Err(invalid(format!(
                    "DNSZone {namespace}/{}: provider {name:?} is not defined in the static configuration's dnsProviders ({}); known: {}",
                    d.metadata.name,
                    providers
                        .origin
                        .as_ref()
                        .map_or_else(|| "no configuration file".to_string(), |p| p.display().to_string()),
                    known.join(", ")
                )));
            }
        },
    };
    if d.spec.network.service_ref.is_some() {
        return Err(invalid(
            "network.serviceRef needs the Kubernetes provider; give elbEips/internalElbIps".into(),
        ));
    }
    let domain =
        DomainName::parse(&d.spec.domain).map_err(|e| invalid(format!("spec.domain: {e}")))?;
    let parent = match d.spec.parent {
        None => None,
        Some(Parent {
            domain: Some(p),
            zone_id: None,
        }) => Some(ParentRef::Domain(
            DomainName::parse(&p).map_err(|e| invalid(format!("spec.parent.domain: {e}")))?,
        )),
        Some(Parent {
            domain: None,
            zone_id: Some(z),
        }) => Some(ParentRef::ZoneId(z)),
        Some(_) => {
            return Err(invalid(
                "spec.parent takes exactly one of domain and zoneId".into(),
            ))
        }
    };
    let records = d
        .spec
        .records
        .into_iter()
        .map(|r| {
            let from_network = match r.from_network.as_str() {
                "public" => NetworkKind::Public,
                "internal" => NetworkKind::Internal,
                other => {
                    return Err(invalid(format!(
                        "record {}: fromNetwork {other:?} must be public or internal",
                        r.name
                    )))
                }
            };
            Ok(RecordSpec {
                name: r.name,
                from_network,
                ttl: r.ttl,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let acme_secret = match d.spec.acme_credentials {
        Some(a) => Some(
            SecretRef::new(&namespace, &a.secret_name)
                .map_err(|e| invalid(format!("spec.acmeCredentials: {e}")))?,
        ),
        None => None,
    };
    let plan = ZonePlan {
        owner: format!("{namespace}/{}", d.metadata.name),
        domain,
        parent,
        network: Network {
            elb_eips: d.spec.network.elb_eips,
            internal_elb_ips: d.spec.network.internal_elb_ips,
        },
        records,
        acme_secret,
        // The provider's region goes into the scoped identity's secret.
        region: region.unwrap_or_else(|| "us-east-1".to_string()),
    };
    Ok(DnsZone { plan, provider })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = r#"apiVersion: edgeplane.io/v1alpha1
kind: DNSZone
metadata: {name: app-example-com, namespace: default}
spec:
  domain: app.example.com
  parent: {domain: example.com}
  provider: embedded
  network:
    elbEips: [34.210.12.3, 54.188.92.10]
    internalElbIps: [10.0.1.17]
  records:
    - {name: "@", fromNetwork: public, ttl: 60}
    - {name: "*", fromNetwork: public, ttl: 60}
    - {name: internal, fromNetwork: internal, ttl: 60}
  acmeCredentials: {secretName: route53}
status: {zoneId: Z1, nameServers: [a]}
"#;

    #[test]
    fn the_design_example_parses() {
        let plans = parse(SEED);
        let plan = plans[0].clone().expect("valid");
        assert_eq!(plan.owner, "default/app-example-com");
        assert_eq!(
            plan.domain,
            DomainName::parse("app.example.com").expect("n")
        );
        assert_eq!(
            plan.parent,
            Some(ParentRef::Domain(
                DomainName::parse("example.com").expect("n")
            ))
        );
        assert_eq!(plan.network.internal_elb_ips, ["10.0.1.17"]);
        assert_eq!(plan.records.len(), 3);
        assert_eq!(
            plan.acme_secret.map(|s| s.to_string()).as_deref(),
            Some("default/route53")
        );
    }

    #[test]
    fn one_bad_document_harms_only_itself() {
        let text = format!(
            "{SEED}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: x}}\n---\napiVersion: edgeplane.io/v1alpha1\nkind: DNSZone\nmetadata: {{name: bad}}\nspec: {{domain: a..b}}\n---\napiVersion: edgeplane.io/v1alpha1\nkind: DNSZone\nmetadata: {{name: typo}}\nspec: {{domain: ok.example, recrods: []}}\n---\n{}",
            SEED.replace("app-example-com", "second").replace("app.example.com", "api.example.com")
        );
        let results = parse(&text);
        assert_eq!(results.len(), 5);
        assert!(results[0].is_ok() && results[4].is_ok());
        assert!(
            matches!(&results[1], Err(ManifestError::OtherKind { kind, .. }) if kind == "Secret")
        );
        assert!(
            matches!(&results[2], Err(ManifestError::Invalid { reason, .. }) if reason.contains("spec.domain")),
            "{:?}",
            results[2]
        );
        assert!(
            matches!(&results[3], Err(ManifestError::Invalid { reason, .. }) if reason.contains("recrods")),
            "{:?}",
            results[3]
        );
        assert!(matches!(
            parse("apiVersion: [unclosed\n")[0],
            Err(ManifestError::Invalid { line: 1, .. })
        ));
    }

    #[test]
    fn a_named_provider_must_be_defined() {
        let config = StaticConfig::parse(
            "dnsProviders: {aws-like: {type: route53, region: eu-west-1}}",
            "edgeplane.yaml",
            std::path::Path::new("."),
        )
        .expect("config");
        /// The provider and region a DNSZone gets, or its error.
        type Want = Result<(ProviderRef, &'static str), &'static str>;
        let cases: &[(&str, Want)] = &[
            ("", Ok((ProviderRef::Embedded, "us-east-1"))),
            ("  provider: embedded\n", Ok((ProviderRef::Embedded, "us-east-1"))),
            (
                "  provider: aws-like\n",
                Ok((ProviderRef::Named("aws-like".into()), "eu-west-1")),
            ),
            (
                "  provider: nope\n",
                Err("DNSZone default/z: provider \"nope\" is not defined in the static configuration's dnsProviders (no configuration file); known: \"embedded\", \"aws-like\""),
            ),
        ];
        for (line, want) in cases {
            let text = format!("apiVersion: edgeplane.io/v1alpha1\nkind: DNSZone\nmetadata: {{name: z}}\nspec:\n  domain: z.example\n{line}");
            let got = parse_with(&text, &config).remove(0);
            match (got, want) {
                (Ok(z), Ok((provider, region))) => {
                    assert_eq!(&z.provider, provider, "{line}");
                    assert_eq!(z.plan.region, *region, "{line}");
                }
                (Err(ManifestError::Invalid { reason, .. }), Err(want)) => {
                    assert_eq!(reason, *want, "{line}")
                }
                (got, want) => panic!("{line}: got {got:?}, want {want:?}"),
            }
        }
        // Without the configuration only `embedded` exists.
        let text = "apiVersion: edgeplane.io/v1alpha1\nkind: DNSZone\nmetadata: {name: z}\nspec: {domain: z.example, provider: aws-like}\n";
        assert!(
            matches!(&parse(text)[0], Err(ManifestError::Invalid { reason, .. }) if reason.contains("known: \"embedded\"")),
            "{:?}",
            parse(text)
        );
    }
}
