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

/// Server configurations by SNI, compiled from TLS options and the routers that name them.
#[derive(Debug, Clone)]
pub struct TlsPolicy {
    exact: HashMap<String, Arc<rustls::ServerConfig>>,
    wildcard: HashMap<String, Arc<rustls::ServerConfig>>,
    default: Arc<rustls::ServerConfig>,
    /// Every configuration built, by the option it was built from: a reload that keeps an
    /// option keeps its configuration (and so its session cache and ticket keys).
    built: Vec<(crate::config::TlsOptions, Arc<rustls::ServerConfig>)>,
}

impl TlsPolicy {
    /// One configuration for every handshake.
    pub fn uniform(default: Arc<rustls::ServerConfig>) -> TlsPolicy {
        TlsPolicy {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default,
            built: Vec::new(),
        }
    }

    /// The configuration for a handshake's server name.
    pub fn for_sni(&self, sni: Option<&str>) -> Arc<rustls::ServerConfig> {
        if let Some(name) = sni {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(c) = self.exact.get(&name) {
                return c.clone();
            }
            if let Some(c) = name
                .split_once('.')
                .and_then(|(_, parent)| self.wildcard.get(parent))
            {
                return c.clone();
            }
        }
        self.default.clone()
    }

    /// Builds the policy: each named option compiled once, hosts mapped to the options their
    /// routers name. An option that cannot be built, or a host two options claim, yields a
    /// diagnostic; such hosts get the default.
    pub fn build(
        options: &std::collections::BTreeMap<String, crate::config::TlsOptions>,
        claims: &[(crate::rule::HostPattern, String, String)],
        store: &Arc<ArcSwap<CertStore>>,
        previous: Option<&TlsPolicy>,
    ) -> (TlsPolicy, Vec<Diagnostic>) {
        let mut diags = Vec::new();
        let mut built: Vec<(crate::config::TlsOptions, Arc<rustls::ServerConfig>)> = Vec::new();
        // The previous configuration of an unchanged option, else a new one. (Every
        // configuration resolves certificates through `store`, which outlives reloads.)
        let mut server_config = |opt: &crate::config::TlsOptions,
                                 store: &Arc<ArcSwap<CertStore>>|
         -> Result<Arc<rustls::ServerConfig>, String> {
            if let Some((_, c)) = built.iter().find(|(o, _)| o == opt) {
                return Ok(c.clone());
            }
            let reused = previous.and_then(|p| p.built.iter().find(|(o, _)| o == opt));
            let c = match reused {
                Some((_, c)) => c.clone(),
                None => server_config(opt, store)?,
            };
            built.push((opt.clone(), c.clone()));
            Ok(c)
        };
        let mut compiled: HashMap<String, Arc<rustls::ServerConfig>> = HashMap::new();
        for (name, opt) in options {
            match server_config(opt, store) {
                Ok(c) => {
                    compiled.insert(name.clone(), c);
                }
                Err(message) => diags.push(Diagnostic {
                    kind: "tlsoption",
                    name: name.clone(),
                    message,
                }),
            }
        }
        let default = match compiled.get("default") {
            Some(c) => c.clone(),
            None => match server_config(&crate::config::TlsOptions::default(), store) {
                Ok(c) => c,
                Err(message) => {
                    // The built-in defaults always build; keep serving with no ALPN tweaks.
                    diags.push(Diagnostic {
                        kind: "tlsoption",
                        name: "default".into(),
                        message,
                    });
                    Arc::new(fallback_config(store))
                }
            },
        };
        let mut policy = TlsPolicy::uniform(default);
        policy.built = built;
        let mut owner: HashMap<String, String> = HashMap::new();
        let mut conflicted = std::collections::HashSet::new();
        for (host, option, router) in claims {
            let Some(cfg) = compiled.get(option) else {
                diags.push(Diagnostic {
                    kind: "router",
                    name: router.clone(),
                    message: format!(
                        "TLS option {option:?} does not exist or is invalid; the default applies"
                    ),
                });
                continue;
            };
            let key = host.to_string();
            match owner.get(&key) {
                Some(o) if o != option => {
                    conflicted.insert(key.clone());
                    diags.push(Diagnostic {
                        kind: "router",
                        name: router.clone(),
                        message: format!(
                            "host {key} has TLS options {o:?} and {option:?}; the default applies"
                        ),
                    });
                    continue;
                }
                _ => {}
            }
            owner.insert(key, option.clone());
            match host {
                crate::rule::HostPattern::Exact(h) => {
                    policy.exact.insert(h.clone(), cfg.clone());
                }
                crate::rule::HostPattern::OneLabel(s) | crate::rule::HostPattern::AnyLabels(s) => {
                    policy.wildcard.insert(s.clone(), cfg.clone());
                }
            }
        }
        for key in conflicted {
            match key.strip_prefix("*.").or_else(|| key.strip_prefix("**.")) {
                Some(s) => policy.wildcard.remove(s),
                None => policy.exact.remove(&key),
            };
        }
        (policy, diags)
    }
}

/// The resolver of one TLS option: the shared certificates, strict or not about SNI.
#[derive(Debug)]
struct OptionResolver {
    store: Arc<ArcSwap<CertStore>>,
    sni_strict: bool,
}

impl ResolvesServerCert for OptionResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let store = self.store.load();
        match hello.server_name() {
            Some(name) if self.sni_strict && !store.covers(name) => None,
            None if self.sni_strict => None,
            sni => store.find(sni),
        }
    }
}

fn fallback_config(store: &Arc<ArcSwap<CertStore>>) -> rustls::ServerConfig {
    let mut c = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver {
            store: store.clone(),
        }));
    c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    c
}

/// Compiles one TLS option into a rustls server configuration.
pub fn server_config(
    opt: &crate::config::TlsOptions,
    store: &Arc<ArcSwap<CertStore>>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let base = rustls::crypto::aws_lc_rs::default_provider();
    let version = |v: &Option<String>, default: u8| -> Result<u8, String> {
        match v.as_deref() {
            None | Some("") => Ok(default),
            // rustls offers no TLS 1.0 or 1.1: a lower minimum means 1.2.
            Some("VersionTLS10" | "VersionTLS11" | "VersionTLS12") => Ok(12),
            Some("VersionTLS13") => Ok(13),
            Some(other) => Err(format!(
                "unknown TLS version {other:?} (VersionTLS12, VersionTLS13)"
            )),
        }
    };
    let min = version(&opt.min_version, 12)?;
    let max = version(&opt.max_version, 13)?;
    if min > max {
        return Err("minVersion is above maxVersion".to_string());
    }
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if min <= 12 && max >= 12 {
        versions.push(&rustls::version::TLS12);
    }
    if max >= 13 {
        versions.push(&rustls::version::TLS13);
    }
    let mut suites = base.cipher_suites.clone();
    if !opt.cipher_suites.is_empty() {
        let wanted: Vec<String> = opt
            .cipher_suites
            .iter()
            .map(|n| {
                // Go names the ChaCha20 suites without the hash.
                if n.ends_with("CHACHA20_POLY1305") {
                    format!("{n}_SHA256")
                } else {
                    n.clone()
                }
            })
            .collect();
        for w in &wanted {
            if !base
                .cipher_suites
                .iter()
                .any(|s| format!("{:?}", s.suite()) == *w)
            {
                return Err(format!("unknown or unsupported cipher suite {w:?}"));
            }
        }
        let lists_tls13 = wanted.iter().any(|w| !w.contains("_WITH_"));
        suites.retain(|s| {
            let name = format!("{:?}", s.suite());
            let is13 = matches!(s, rustls::SupportedCipherSuite::Tls13(_));
            wanted.contains(&name) || (is13 && !lists_tls13)
        });
    }
    let mut groups = base.kx_groups.clone();
    if !opt.curve_preferences.is_empty() {
        let mut ordered = Vec::new();
        for c in &opt.curve_preferences {
            let name = match c.as_str() {
                "CurveP256" | "secp256r1" | "P256" => "secp256r1",
                "CurveP384" | "secp384r1" | "P384" => "secp384r1",
                "CurveP521" | "secp521r1" | "P521" => "secp521r1",
                "X25519" | "x25519" => "X25519",
                "X25519MLKEM768" => "X25519MLKEM768",
                other => return Err(format!("unknown curve {other:?}")),
            };
            let g = base
                .kx_groups
                .iter()
                .find(|g| format!("{:?}", g.name()) == name)
                .ok_or_else(|| format!("curve {c:?} is not supported"))?;
            ordered.push(*g);
        }
        groups = ordered;
    }
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: suites,
        kx_groups: groups,
        ..base
    };
    let builder = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&versions)
        .map_err(|e| format!("inconsistent TLS option: {e}"))?;
    let resolver = Arc::new(OptionResolver {
        store: store.clone(),
        sni_strict: opt.sni_strict,
    });
    let mut config = match &opt.client_auth {
        None => builder.with_no_client_auth().with_cert_resolver(resolver),
        Some(auth)
            if matches!(
                auth.mode.as_str(),
                "RequestClientCert" | "RequireAnyClientCert"
            ) =>
        {
            // Traefik's unverified modes: a certificate is asked for (and required by the
            // second), its possession proven by the handshake signature, its issuer not checked.
            let verifier = Arc::new(AnyClientCertificate {
                mandatory: auth.mode == "RequireAnyClientCert",
                provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            });
            builder
                .with_client_cert_verifier(verifier)
                .with_cert_resolver(resolver)
        }
        Some(auth) => {
            let mut roots = rustls::RootCertStore::empty();
            for pem in &auth.ca_pems {
                for der in CertificateDer::pem_slice_iter(pem) {
                    let der = der.map_err(|e| format!("unreadable client CA: {e}"))?;
                    roots
                        .add(der)
                        .map_err(|e| format!("unusable client CA: {e}"))?;
                }
            }
            if roots.is_empty() {
                return Err("clientAuth needs at least one CA certificate".to_string());
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            );
            let verifier = match auth.mode.as_str() {
                "RequireAndVerifyClientCert" => verifier,
                "VerifyClientCertIfGiven" => verifier.allow_unauthenticated(),
                other => {
                    return Err(format!(
                        "clientAuthType {other:?} is not supported (NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert)"
                    ))
                }
            }
            .build()
            .map_err(|e| format!("client verifier: {e}"))?;
            builder
                .with_client_cert_verifier(verifier)
                .with_cert_resolver(resolver)
        }
    };
    config.alpn_protocols = if opt.alpn_protocols.is_empty() {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        opt.alpn_protocols
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect()
    };
    Ok(Arc::new(config))
}

/// `RequestClientCert` / `RequireAnyClientCert`: any client certificate is accepted; the
/// handshake signature still proves the client holds its key.
#[derive(Debug)]
struct AnyClientCertificate {
    mandatory: bool,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::server::danger::ClientCertVerifier for AnyClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
