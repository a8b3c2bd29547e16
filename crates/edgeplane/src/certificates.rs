//! The certificate controller of `serve`: keeps every cert-manager `Certificate` in the
//! manifest directory issued into its `kubernetes.io/tls` secret (as cert-manager writes it:
//! `tls.crt`, `tls.key`, `ca.crt` and its annotations), renewed when due, by its `Issuer` or
//! `ClusterIssuer` (self-signed, a CA from a secret, or ACME through [`crate::acme`]). On
//! first start it creates the
//! internal root CA behind the built-in ClusterIssuer `edgeplane-ca`, so services get TLS with
//! no outside CA. The proxy serves a renewed certificate on the next handshake, because it
//! follows the versions of the secrets it uses.

use std::collections::BTreeMap;

use config::certmanager::{CertPlan, CertificatePlan, IssuerType};
use model::secret::{AccessRule, SecretRef, SecretSpec, SecretType, SecretValue};
use store::secrets::{Caller, SecretStoreError, Secrets};

/// Where ClusterIssuers' CA secrets live (cert-manager's cluster resource namespace).
pub(crate) const CLUSTER_NAMESPACE: &str = "cert-manager";
/// The internal root CA's secret.
pub(crate) const ROOT_SECRET: &str = "edgeplane-root-ca";
/// The built-in ClusterIssuer that signs with the internal root CA.
pub(crate) const DEFAULT_ISSUER: &str = "edgeplane-ca";

const ANN_CERT: &str = "cert-manager.io/certificate-name";
const ANN_DIGEST: &str = "edgeplane.io/certificate-digest";

pub(crate) fn caller() -> Caller {
    Caller {
        identity: "certificates".to_string(),
        rules: AccessRule::parse("*:*/*")
            .map(|r| vec![r])
            .unwrap_or_default(),
    }
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Creates the internal root CA if it does not exist yet; returns whether it did.
pub(crate) fn ensure_root_ca(secrets: &Secrets) -> Result<bool, anyhow::Error> {
    let r = SecretRef::new(CLUSTER_NAMESPACE, ROOT_SECRET)?;
    match secrets.info(&r) {
        Ok(_) => return Ok(false),
        Err(SecretStoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let spec = certs::CertificateSpec {
        common_name: Some("Edgeplane Internal Root CA".to_string()),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        uris: Vec::new(),
        duration: std::time::Duration::from_secs(10 * 365 * 86_400),
        renew_before: None,
        renew_before_percentage: None,
        key: certs::KeyAlgorithm::Ecdsa(256),
        usages: vec![
            "cert sign".into(),
            "crl sign".into(),
            "digital signature".into(),
        ],
        is_ca: true,
    };
    let issued = certs::issue(&spec, &certs::Signer::SelfSigned, now(), None)?;
    let data = BTreeMap::from([
        (
            "tls.crt".to_string(),
            SecretValue::new(issued.chain_pem.clone().into_bytes()),
        ),
        (
            "tls.key".to_string(),
            SecretValue::new(issued.key_pem.as_bytes().to_vec()),
        ),
        (
            "ca.crt".to_string(),
            SecretValue::new(issued.ca_pem.into_bytes()),
        ),
    ]);
    secrets.create(
        &caller(),
        &r,
        &SecretSpec {
            secret_type: SecretType::Tls,
            data,
            labels: BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                "edgeplane".to_string(),
            )]),
            annotations: BTreeMap::new(),
        },
    )?;
    Ok(true)
}

/// What one pass did, and when the next certificate is due (Unix seconds).
#[derive(Debug, Default)]
pub(crate) struct Pass {
    pub(crate) issued: Vec<String>,
    pub(crate) problems: Vec<String>,
    pub(crate) next_due: Option<i64>,
}

/// Issues every certificate that is missing, changed or due, and records each one's status
/// in the store; ACME certificates are handed to `acme`, which orders them in the background.
/// Blocking (store I/O).
pub(crate) fn reconcile(
    store: &store::Store,
    secrets: &Secrets,
    plan: &CertPlan,
    acme: Option<&std::sync::Arc<crate::acme::Acme>>,
    zones: &[crate::acme::ZoneRef],
) -> Pass {
    use store::certificates::CertificateOutcome;
    let mut pass = Pass::default();
    let t = now();
    for c in &plan.certificates {
        let who = format!("Certificate {}/{}", c.namespace, c.name);
        let ctx = Ctx {
            store,
            secrets,
            plan,
            acme,
            zones,
        };
        let outcome = match reconcile_one(&ctx, c, t) {
            Ok(Step::Pending { reason, at }) => {
                if let Some(at) = at {
                    pass.next_due = Some(pass.next_due.map_or(at, |d: i64| d.min(at)));
                }
                CertificateOutcome::Pending { reason }
            }
            Ok(Step::Done(done)) => {
                if done.issued {
                    tracing::info!(certificate = %who, secret = %c.secret_name, "certificate issued");
                    pass.issued.push(who.clone());
                }
                pass.next_due = Some(pass.next_due.map_or(done.due, |d: i64| d.min(done.due)));
                let (not_before, not_after, renewal_time) =
                    (done.not_before, done.not_after, done.due);
                if done.issued {
                    CertificateOutcome::Issued {
                        not_before,
                        not_after,
                        renewal_time,
                    }
                } else {
                    CertificateOutcome::UpToDate {
                        not_before,
                        not_after,
                        renewal_time,
                    }
                }
            }
            Err(e) => {
                tracing::warn!(certificate = %who, problem = %e, "certificate not issued");
                pass.problems.push(format!("{who}: {e}"));
                CertificateOutcome::Failed { reason: e }
            }
        };
        let owner = format!("{}/{}", c.namespace, c.name);
        if let Err(e) = store.record_certificate_outcome(&owner, &c.secret_name, &outcome) {
            tracing::warn!(certificate = %who, error = %e, "cannot record the certificate's status");
        }
    }
    pass
}

/// What a pass needs.
struct Ctx<'a> {
    store: &'a store::Store,
    secrets: &'a Secrets,
    plan: &'a CertPlan,
    acme: Option<&'a std::sync::Arc<crate::acme::Acme>>,
    zones: &'a [crate::acme::ZoneRef],
}

/// Where a certificate stands after a pass.
enum Step {
    Done(Done),
    /// Being issued in the background; look again at `at` (Unix seconds) if given.
    Pending {
        reason: String,
        at: Option<i64>,
    },
}

/// What a pass did for one certificate.
struct Done {
    issued: bool,
    not_before: i64,
    not_after: i64,
    due: i64,
}

fn reconcile_one(ctx: &Ctx<'_>, c: &CertificatePlan, t: i64) -> Result<Step, String> {
    let (secrets, plan) = (ctx.secrets, ctx.plan);
    let (issuer_ns, kind) = find_issuer(plan, c)?;
    let digest = digest(c);
    let target = SecretRef::new(&c.namespace, &c.secret_name).map_err(|e| e.to_string())?;
    let existing = match secrets.get(&caller(), &target, None) {
        Ok((_, spec)) => Some(spec),
        Err(SecretStoreError::NotFound(_)) => None,
        Err(e) => return Err(e.to_string()),
    };
    if let Some(spec) = &existing {
        let owner = spec.annotations.get(ANN_CERT);
        if owner.map(String::as_str) != Some(c.name.as_str()) {
            return Err(format!(
                "secret {}/{} exists and is not managed by this Certificate",
                c.namespace, c.secret_name
            ));
        }
        let current = spec
            .data
            .get("tls.crt")
            .and_then(|v| std::str::from_utf8(v.expose()).ok())
            .and_then(certs::inspect);
        if let Some((nb, na, _)) = current {
            let due = certs::renewal_time(&c.spec, nb, na);
            if spec.annotations.get(ANN_DIGEST) == Some(&digest) && t < due {
                return Ok(Step::Done(Done {
                    issued: false,
                    not_before: nb,
                    not_after: na,
                    due,
                }));
            }
        }
    }
    let kept_key = if c.keep_key {
        existing
            .as_ref()
            .and_then(|s| s.data.get("tls.key"))
            .and_then(|v| std::str::from_utf8(v.expose()).ok().map(str::to_string))
    } else {
        None
    };
    let issued = match &kind {
        IssuerType::Acme(issuer) => {
            let Some(acme) = ctx.acme else {
                return Err("ACME issuers need `serve`'s certificate controller".into());
            };
            let job = crate::acme::Job {
                cert: c.clone(),
                issuer_ns: issuer_ns.clone(),
                issuer: (**issuer).clone(),
                kept_key: kept_key.map(zeroize::Zeroizing::new),
                zones: ctx.zones.to_vec(),
                digest,
            };
            let crate::acme::Pending { reason, at } = acme.request(job, ctx.store, secrets);
            return Ok(Step::Pending { reason, at });
        }
        IssuerType::SelfSigned => {
            certs::issue(&c.spec, &certs::Signer::SelfSigned, t, kept_key.as_deref())
        }
        IssuerType::Ca { secret_name } => {
            let ca_ref = SecretRef::new(&issuer_ns, secret_name).map_err(|e| e.to_string())?;
            let (_, ca) = secrets
                .get(&caller(), &ca_ref, None)
                .map_err(|e| format!("issuer's CA secret {issuer_ns}/{secret_name}: {e}"))?;
            let text = |k: &str| {
                ca.data
                    .get(k)
                    .and_then(|v| std::str::from_utf8(v.expose()).ok().map(str::to_string))
                    .ok_or_else(|| {
                        format!("issuer's CA secret {issuer_ns}/{secret_name} has no {k}")
                    })
            };
            let (cert_pem, key_pem) = (text("tls.crt")?, zeroize::Zeroizing::new(text("tls.key")?));
            certs::issue(
                &c.spec,
                &certs::Signer::Ca {
                    cert_pem: &cert_pem,
                    key_pem: &key_pem,
                },
                t,
                kept_key.as_deref(),
            )
        }
    }
    .map_err(|e| e.to_string())?;
    let due = certs::renewal_time(&c.spec, issued.not_before, issued.not_after);
    let (not_before, not_after) = (issued.not_before, issued.not_after);
    store_issued(secrets, c, &issued, &digest)?;
    Ok(Step::Done(Done {
        issued: true,
        not_before,
        not_after,
        due,
    }))
}

/// Writes an issued certificate into its secret the way cert-manager does (`tls.crt`,
/// `tls.key`, `ca.crt` when there is a CA, and the cert-manager annotations).
pub(crate) fn store_issued(
    secrets: &Secrets,
    c: &CertificatePlan,
    issued: &certs::Issued,
    digest: &str,
) -> Result<(), String> {
    let target = SecretRef::new(&c.namespace, &c.secret_name).map_err(|e| e.to_string())?;
    let mut annotations = c.secret_annotations.clone();
    annotations.insert(ANN_CERT.into(), c.name.clone());
    annotations.insert("cert-manager.io/issuer-name".into(), c.issuer_name.clone());
    annotations.insert("cert-manager.io/issuer-kind".into(), c.issuer_kind.clone());
    annotations.insert(
        "cert-manager.io/issuer-group".into(),
        "cert-manager.io".into(),
    );
    annotations.insert(
        "cert-manager.io/common-name".into(),
        c.spec.common_name.clone().unwrap_or_default(),
    );
    annotations.insert(
        "cert-manager.io/alt-names".into(),
        c.spec.dns_names.join(","),
    );
    annotations.insert(
        "cert-manager.io/ip-sans".into(),
        c.spec
            .ip_addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
    );
    annotations.insert("cert-manager.io/uri-sans".into(), c.spec.uris.join(","));
    annotations.insert(ANN_DIGEST.into(), digest.to_string());
    let mut data = BTreeMap::from([
        (
            "tls.crt".to_string(),
            SecretValue::new(issued.chain_pem.clone().into_bytes()),
        ),
        (
            "tls.key".to_string(),
            SecretValue::new(issued.key_pem.as_bytes().to_vec()),
        ),
    ]);
    if !issued.ca_pem.is_empty() {
        data.insert(
            "ca.crt".to_string(),
            SecretValue::new(issued.ca_pem.clone().into_bytes()),
        );
    }
    secrets
        .apply(
            &caller(),
            &target,
            &SecretSpec {
                secret_type: SecretType::Tls,
                data,
                labels: c.secret_labels.clone(),
                annotations,
            },
        )
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The issuer's namespace (where its CA secret is) and type.
fn find_issuer(plan: &CertPlan, c: &CertificatePlan) -> Result<(String, IssuerType), String> {
    if c.issuer_kind == config::certmanager::RESOLVER_KIND {
        return plan
            .resolvers
            .get(&c.issuer_name)
            .map(|r| {
                (
                    CLUSTER_NAMESPACE.to_string(),
                    IssuerType::Acme(Box::new(r.issuer.clone())),
                )
            })
            .ok_or_else(|| format!("certificate resolver {:?} not found", c.issuer_name));
    }
    if c.issuer_kind == "ClusterIssuer" {
        if let Some(i) = plan
            .issuers
            .iter()
            .find(|i| i.namespace.is_none() && i.name == c.issuer_name)
        {
            return Ok((CLUSTER_NAMESPACE.to_string(), i.kind.clone()));
        }
        if c.issuer_name == DEFAULT_ISSUER {
            return Ok((
                CLUSTER_NAMESPACE.to_string(),
                IssuerType::Ca {
                    secret_name: ROOT_SECRET.to_string(),
                },
            ));
        }
        return Err(format!("ClusterIssuer {:?} not found", c.issuer_name));
    }
    plan.issuers
        .iter()
        .find(|i| i.namespace.as_deref() == Some(c.namespace.as_str()) && i.name == c.issuer_name)
        .map(|i| (c.namespace.clone(), i.kind.clone()))
        .ok_or_else(|| format!("Issuer {}/{} not found", c.namespace, c.issuer_name))
}

/// A digest of what the certificate should say and who signs it: a change reissues.
fn digest(c: &CertificatePlan) -> String {
    fnv_hex(&format!(
        "{:?}|{}|{}|{}",
        c.spec, c.issuer_kind, c.issuer_name, c.keep_key
    ))
}

/// FNV-1a of `text`, in hex: a stable fingerprint (not a security boundary).
pub(crate) fn fnv_hex(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
