//! TLS termination: certificates indexed by the names they are valid for (exact and `*.`
//! wildcard SANs), chosen by SNI at each handshake from a set swapped in atomically, so a
//! certificate replaced in the store is served on the next handshake.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::{CertificatePem, Diagnostic};

/// Certificates by name. Built off the serving path and swapped in whole.
#[derive(Debug, Default)]
pub struct CertStore {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    /// `(source, names, not_after as Unix seconds)` of every loaded certificate.
    pub loaded: Vec<(String, Vec<String>, i64)>,
}

impl CertStore {
    /// Loads certificates; a broken one yields a diagnostic and is skipped. The first
    /// certificate for a name wins. `default` answers handshakes no certificate matches.
    pub fn build(
        certs: &[CertificatePem],
        default: Option<Arc<CertifiedKey>>,
    ) -> (CertStore, Vec<Diagnostic>) {
        let mut store = CertStore {
            default,
            ..CertStore::default()
        };
        let mut diags = Vec::new();
        for c in certs {
            match load(c) {
                Ok((key, names, not_after)) => {
                    let key = Arc::new(key);
                    for n in &names {
                        let slot = match n.strip_prefix("*.") {
                            Some(suffix) => store.wildcard.entry(suffix.to_string()),
                            None => store.exact.entry(n.clone()),
                        };
                        slot.or_insert_with(|| key.clone());
                    }
                    store.loaded.push((c.source.clone(), names, not_after));
                }
                Err(message) => diags.push(Diagnostic {
                    kind: "certificate",
                    name: c.source.clone(),
                    message,
                }),
            }
        }
        (store, diags)
    }

    /// The certificate for a server name (lowercase), else the default.
    pub fn find(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = sni {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(k) = self.exact.get(&name) {
                return Some(k.clone());
            }
            if let Some(k) = name
                .split_once('.')
                .and_then(|(_, parent)| self.wildcard.get(parent))
            {
                return Some(k.clone());
            }
        }
        self.default.clone()
    }

    /// Whether some certificate (not the default) covers the name.
    pub fn covers(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        self.exact.contains_key(&name)
            || name
                .split_once('.')
                .is_some_and(|(_, p)| self.wildcard.contains_key(p))
    }
}

/// Parses a PEM chain and key into a signing key, the names it serves and its expiry.
pub fn load(c: &CertificatePem) -> Result<(CertifiedKey, Vec<String>, i64), String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&c.chain)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("unreadable certificate chain: {e}"))?;
    let leaf = chain
        .first()
        .ok_or_else(|| "no certificate in the chain".to_string())?;
    let key = PrivateKeyDer::from_pem_slice(&c.key)
        .map_err(|_| "unreadable private key (PEM PKCS#8, PKCS#1 or SEC1 expected)".to_string())?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("unusable private key: {e}"))?;
    let certified = CertifiedKey::new(chain.clone(), signing);
    certified
        .keys_match()
        .map_err(|e| format!("the private key does not match the certificate: {e}"))?;
    let (_, x509) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("unparsable certificate: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = x509.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => {
                    names.push(d.trim_end_matches('.').to_ascii_lowercase());
                }
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).ok().map(std::net::IpAddr::from),
                        16 => <[u8; 16]>::try_from(*b).ok().map(std::net::IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        names.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    if names.is_empty() {
        if let Some(cn) = x509.subject().iter_common_name().next() {
            if let Ok(cn) = cn.as_str() {
                names.push(cn.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        return Err("the certificate names no host (no DNS SAN or common name)".to_string());
    }
    let not_after = x509.validity().not_after.timestamp();
    Ok((certified, names, not_after))
}

/// The rustls resolver: reads the current [`CertStore`] at each handshake.
#[derive(Debug)]
pub struct SniResolver {
    pub(crate) store: Arc<ArcSwap<CertStore>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.store.load().find(hello.server_name())
    }
}

/// A self-signed certificate for handshakes that match no configured certificate (like
/// Traefik's default certificate).
pub fn self_signed_default() -> Result<Arc<CertifiedKey>, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(vec!["edgeplane.default.invalid".to_string()])
        .map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "EDGEPLANE DEFAULT CERT");
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let pem = CertificatePem {
        source: "default".to_string(),
        chain: cert.pem().into_bytes(),
        key: zeroize::Zeroizing::new(key.serialize_pem().into_bytes()),
    };
    load(&pem).map(|(k, _, _)| Arc::new(k))
}
