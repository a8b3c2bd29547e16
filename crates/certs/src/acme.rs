//! ACME (RFC 8555) orders through instant-acme: an account whose key the caller keeps (PKCS#8
//! PEM, created on first use), and one order per certificate: every pending authorization's
//! challenge presented by a [`Solver`] (DNS-01 or HTTP-01, its choice per name), checked by the
//! solver before the CA is told to validate, the CSR made from the [`CertificateSpec`] (its key
//! algorithm, or the kept key), the chain fetched, and every presented challenge cleaned up
//! whatever happened. Each step is bounded in time; a failure carries the CA's own reason.
//!
//! The HTTP client is hyper with the caller's rustls configuration (its roots, or none verified
//! when the issuer says `skipTLSVerify`), so one TLS stack serves the whole process.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType, ExternalAccountKey, Identifier,
    NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use zeroize::Zeroizing;

use crate::{CertError, CertificateSpec, Issued};

pub use instant_acme::Account;

/// Why an ACME step failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct AcmeError(pub String);

impl AcmeError {
    /// `step: error: its source: ...` (HTTP errors hide their cause in the sources).
    fn at(step: &str, e: impl std::error::Error) -> AcmeError {
        let mut text = format!("{step}: {e}");
        let mut source = e.source();
        while let Some(s) = source {
            let s_text = s.to_string();
            if !text.contains(&s_text) {
                text.push_str(": ");
                text.push_str(&s_text);
            }
            source = s.source();
        }
        AcmeError(text)
    }
}

impl From<CertError> for AcmeError {
    fn from(e: CertError) -> Self {
        AcmeError(e.to_string())
    }
}

/// Where the CA is and how to trust it.
#[derive(Clone)]
pub struct Directory {
    pub url: String,
    /// The TLS client configuration for the CA's API.
    pub tls: rustls::ClientConfig,
}

/// How long each phase may take.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// One HTTP exchange with the CA.
    pub request: Duration,
    /// From telling the CA the challenges are ready to the order being ready.
    pub validation: Duration,
    /// From finalizing to the certificate being available.
    pub issuance: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            request: Duration::from_secs(30),
            validation: Duration::from_secs(120),
            issuance: Duration::from_secs(120),
        }
    }
}

/// The challenge types a solver can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    Dns01,
    Http01,
}

/// One challenge to answer.
#[derive(Clone)]
pub struct Challenge {
    pub kind: ChallengeKind,
    /// The identifier, without the `*.` of a wildcard.
    pub name: String,
    pub wildcard: bool,
    pub token: String,
    /// The HTTP-01 response body.
    pub key_authorization: Zeroizing<String>,
    /// The DNS-01 TXT value (base64url of the key authorization's SHA-256).
    pub dns_value: String,
}

impl std::fmt::Debug for Challenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenge")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("wildcard", &self.wildcard)
            .finish_non_exhaustive()
    }
}

/// Answers challenges. `present` makes the answer visible (writes the TXT record, adds the
/// HTTP route), `wait_ready` returns once the CA will see it (every authoritative name server
/// answers it), `cleanup` takes it away again.
pub trait Solver: Sync {
    /// The challenge to use for a name, or `None` when no solver of the issuer covers it.
    fn kind_for(&self, name: &str, wildcard: bool) -> Option<ChallengeKind>;
    fn present(&self, c: &Challenge) -> impl Future<Output = Result<(), String>> + Send;
    fn wait_ready(&self, c: &Challenge) -> impl Future<Output = Result<(), String>> + Send;
    fn cleanup(&self, c: &Challenge) -> impl Future<Output = ()> + Send;
}

type HyperClient = Client<HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>;

struct Http {
    client: HyperClient,
    timeout: Duration,
}

impl instant_acme::HttpClient for Http {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let fut = self.client.request(req);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, fut).await {
                Ok(Ok(rsp)) => Ok(BytesResponse::from(rsp)),
                Ok(Err(e)) => Err(instant_acme::Error::Other(Box::new(e))),
                Err(_) => Err(instant_acme::Error::Other(
                    format!("no answer from the ACME server within {timeout:?}").into(),
                )),
            }
        })
    }
}

fn http(dir: &Directory, timeouts: &Timeouts) -> Box<dyn instant_acme::HttpClient> {
    let mut connector = HttpConnector::new();
    connector.enforce_http(false);
    connector.set_connect_timeout(Some(Duration::from_secs(10)));
    let mut tls = dir.tls.clone();
    tls.alpn_protocols.clear();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(connector);
    Box::new(Http {
        client: Client::builder(TokioExecutor::new()).build(https),
        timeout: timeouts.request,
    })
}

/// The account of `key_pem` on the CA, registered when it has none yet (agreeing to the terms
/// of service, with `email` as contact and an external account binding when given: key ID and
/// HMAC key). Without a key, a new one is made and returned (PKCS#8 PEM) for the caller to
/// keep.
pub async fn account(
    dir: &Directory,
    timeouts: &Timeouts,
    key_pem: Option<&str>,
    email: Option<&str>,
    eab: Option<(&str, &[u8])>,
) -> Result<(Account, Option<Zeroizing<String>>), AcmeError> {
    let builder = Account::builder_with_http(http(dir, timeouts));
    let contact = email.map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let eab = eab.map(|(id, key)| ExternalAccountKey::new(id.to_string(), key));
    match key_pem {
        Some(pem) => {
            let key = rcgen::KeyPair::from_pem(pem)
                .map_err(|e| AcmeError::at("the stored account key", e))?;
            let der = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
            let signing = instant_acme::Key::from_pkcs8_der(der.clone_key())
                .map_err(|e| AcmeError::at("the stored account key", e))?;
            // An existing account comes back for its key; a CA that forgot it registers anew.
            let (account, _) = builder
                .create_from_key((signing, der.into()), dir.url.clone())
                .await
                .map_err(|e| AcmeError::at("finding the ACME account", e))?;
            Ok((account, None))
        }
        None => {
            let (account, credentials) = builder
                .create(
                    &NewAccount {
                        contact: &contacts,
                        terms_of_service_agreed: true,
                        only_return_existing: false,
                    },
                    dir.url.clone(),
                    eab.as_ref(),
                )
                .await
                .map_err(|e| AcmeError::at("registering the ACME account", e))?;
            let der = credentials.private_key().secret_pkcs8_der().to_vec();
            let key = rcgen::KeyPair::try_from(der.as_slice())
                .map_err(|e| AcmeError::at("the new account key", e))?;
            Ok((account, Some(Zeroizing::new(key.serialize_pem()))))
        }
    }
}

/// The identifiers of a certificate: its DNS names (the common name too when it is not one of
/// them) and IP addresses.
pub fn identifiers(spec: &CertificateSpec) -> Vec<Identifier> {
    let mut names: Vec<String> = spec
        .dns_names
        .iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    if let Some(cn) = &spec.common_name {
        let cn = cn.to_ascii_lowercase();
        if cn.parse::<IpAddr>().is_err() && !names.contains(&cn) {
            names.push(cn);
        }
    }
    let mut out: Vec<Identifier> = names.into_iter().map(Identifier::Dns).collect();
    out.extend(spec.ip_addresses.iter().map(|ip| Identifier::Ip(*ip)));
    out
}

fn challenge_type(kind: ChallengeKind) -> ChallengeType {
    match kind {
        ChallengeKind::Dns01 => ChallengeType::Dns01,
        ChallengeKind::Http01 => ChallengeType::Http01,
    }
}

/// Runs one order for `spec` to its certificate. `keep_key` (PEM) is the key to certify
/// instead of a new one (`rotationPolicy: Never`).
pub async fn obtain<S: Solver>(
    account: &Account,
    spec: &CertificateSpec,
    keep_key: Option<&str>,
    solver: &S,
    timeouts: &Timeouts,
) -> Result<Issued, AcmeError> {
    spec.validate()?;
    let ids = identifiers(spec);
    if spec.uris.iter().any(|u| !u.is_empty()) {
        return Err(AcmeError("ACME certificates cannot carry URI names".into()));
    }
    let mut order = account
        .new_order(&NewOrder::new(&ids))
        .await
        .map_err(|e| AcmeError::at("creating the order", e))?;
    let mut presented: Vec<Challenge> = Vec::new();
    let result = run_order(&mut order, spec, keep_key, solver, timeouts, &mut presented).await;
    for c in &presented {
        solver.cleanup(c).await;
    }
    result
}

async fn run_order<S: Solver>(
    order: &mut instant_acme::Order,
    spec: &CertificateSpec,
    keep_key: Option<&str>,
    solver: &S,
    timeouts: &Timeouts,
    presented: &mut Vec<Challenge>,
) -> Result<Issued, AcmeError> {
    // Present every pending authorization's challenge.
    {
        let mut authzs = order.authorizations();
        while let Some(a) = authzs.next().await {
            let mut a = a.map_err(|e| AcmeError::at("reading an authorization", e))?;
            match a.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => {
                    return Err(AcmeError(format!(
                        "the authorization for {} is {other:?}",
                        a.identifier()
                    )))
                }
            }
            let wildcard = a.wildcard;
            let name = match a.identifier().identifier {
                Identifier::Dns(n) => n.clone(),
                Identifier::Ip(ip) => ip.to_string(),
                other => return Err(AcmeError(format!("unsupported identifier {other:?}"))),
            };
            let shown = if wildcard {
                format!("*.{name}")
            } else {
                name.clone()
            };
            let kind = solver
                .kind_for(&name, wildcard)
                .ok_or_else(|| AcmeError(format!("no solver of the issuer covers {shown}")))?;
            let ch = a.challenge(challenge_type(kind)).ok_or_else(|| {
                AcmeError(format!("the CA offers no {kind:?} challenge for {shown}"))
            })?;
            let ka = ch.key_authorization();
            let c = Challenge {
                kind,
                name,
                wildcard,
                token: ch.token.clone(),
                key_authorization: Zeroizing::new(ka.as_str().to_string()),
                dns_value: ka.dns_value(),
            };
            presented.push(c.clone());
            solver.present(&c).await.map_err(|e| {
                AcmeError(format!(
                    "presenting the {kind:?} challenge for {shown}: {e}"
                ))
            })?;
        }
    }
    for c in presented.iter() {
        let shown = if c.wildcard {
            format!("*.{}", c.name)
        } else {
            c.name.clone()
        };
        solver.wait_ready(c).await.map_err(|e| {
            AcmeError(format!(
                "{:?} challenge for {shown} not visible: {e}",
                c.kind
            ))
        })?;
    }
    // Only now tell the CA to validate.
    {
        let mut authzs = order.authorizations();
        while let Some(a) = authzs.next().await {
            let mut a = a.map_err(|e| AcmeError::at("reading an authorization", e))?;
            if a.status != AuthorizationStatus::Pending {
                continue;
            }
            let (name, wildcard) = match a.identifier().identifier {
                Identifier::Dns(n) => (n.clone(), a.wildcard),
                Identifier::Ip(ip) => (ip.to_string(), false),
                _ => continue,
            };
            let Some(kind) = solver.kind_for(&name, wildcard) else {
                continue;
            };
            if let Some(mut ch) = a.challenge(challenge_type(kind)) {
                ch.set_ready()
                    .await
                    .map_err(|e| AcmeError::at("asking the CA to validate", e))?;
            }
        }
    }
    let policy = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(timeouts.validation);
    let status = order.poll_ready(&policy).await.map_err(|e| match e {
        instant_acme::Error::Timeout(_) => AcmeError(format!(
            "the CA did not validate within {:?}",
            timeouts.validation
        )),
        e => AcmeError::at("the CA did not validate the challenges", e),
    })?;
    if status != OrderStatus::Ready {
        return Err(AcmeError(invalid_reason(order).await));
    }
    let csr = crate::csr(spec, keep_key)?;
    order
        .finalize_csr(&csr.der)
        .await
        .map_err(|e| AcmeError::at("finalizing the order", e))?;
    let policy = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(timeouts.issuance);
    let chain = order
        .poll_certificate(&policy)
        .await
        .map_err(|e| AcmeError::at("fetching the certificate", e))?;
    let (not_before, not_after, _) = crate::inspect(&chain)
        .ok_or_else(|| AcmeError("the CA returned an unreadable certificate".into()))?;
    Ok(Issued {
        serial_hex: crate::serial_hex(&chain).unwrap_or_default(),
        chain_pem: chain,
        key_pem: csr.key_pem,
        ca_pem: String::new(),
        not_before,
        not_after,
    })
}

/// Why an order became invalid: the first failed challenge's problem, as the CA words it.
async fn invalid_reason(order: &mut instant_acme::Order) -> String {
    let mut authzs = order.authorizations();
    while let Some(a) = authzs.next().await {
        let Ok(mut a) = a else { continue };
        let shown = a.identifier().to_string();
        let Ok(state) = a.refresh().await else {
            continue;
        };
        for c in &state.challenges {
            if let Some(p) = &c.error {
                return format!(
                    "the CA refused {shown}: {}{}",
                    p.detail.as_deref().unwrap_or("no detail"),
                    p.r#type
                        .as_deref()
                        .map(|t| format!(
                            " ({})",
                            t.trim_start_matches("urn:ietf:params:acme:error:")
                        ))
                        .unwrap_or_default()
                );
            }
        }
    }
    "the order became invalid".to_string()
}
