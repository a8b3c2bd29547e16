//! Certificates the cert-manager way: a [`CertificateSpec`] (names, lifetime, key, usages)
//! issued by an issuer (self-signed, or a CA whose certificate and key are given) into PEM, and
//! the time it is due for renewal (2/3 of its lifetime unless `renewBefore` or
//! `renewBeforePercentage` say otherwise). Pure: no I/O, no clock (the caller passes `now`).
//!
//! [`acme`] runs ACME orders (instant-acme) with the challenges answered by a caller's
//! [`acme::Solver`]. This crate does not read manifests or write secrets: `config` parses
//! Certificate and Issuer resources, and `serve` stores what is issued in the secret store.

pub mod acme;

use std::net::IpAddr;
use std::time::Duration;

use zeroize::Zeroizing;

/// Why a certificate was not issued.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("invalid certificate spec: {0}")]
    Invalid(String),
    #[error("unusable issuer: {0}")]
    Issuer(String),
    #[error("signing failed: {0}")]
    Signing(String),
}

/// A key algorithm and size (cert-manager's `privateKey`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// 2048, 3072 or 4096 bits.
    Rsa(u32),
    /// 256 or 384 (curve P-256 or P-384).
    Ecdsa(u32),
    Ed25519,
}

/// What a certificate should say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSpec {
    pub common_name: Option<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub duration: Duration,
    pub renew_before: Option<Duration>,
    pub renew_before_percentage: Option<u8>,
    pub key: KeyAlgorithm,
    /// cert-manager usage names (`digital signature`, `key encipherment`, `server auth`,
    /// `client auth`, `cert sign`, ...); empty means `digital signature`, `key encipherment`.
    pub usages: Vec<String>,
    pub is_ca: bool,
}

/// Who signs.
pub enum Signer<'a> {
    SelfSigned,
    /// A CA: its certificate and private key, in PEM.
    Ca {
        cert_pem: &'a str,
        key_pem: &'a str,
    },
}

/// An issued certificate.
pub struct Issued {
    /// The leaf, then the chain up to (not including) a self-signed root.
    pub chain_pem: String,
    pub key_pem: Zeroizing<String>,
    /// The CA that signed it (the certificate itself when self-signed).
    pub ca_pem: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    pub serial_hex: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("serial", &self.serial_hex)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// The shortest and longest lifetimes accepted.
const MIN_DURATION: Duration = Duration::from_secs(60);
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

impl CertificateSpec {
    /// Checks what cert-manager checks before issuing.
    pub fn validate(&self) -> Result<(), CertError> {
        if self.common_name.is_none()
            && self.dns_names.is_empty()
            && self.ip_addresses.is_empty()
            && self.uris.is_empty()
        {
            return Err(CertError::Invalid(
                "at least one of commonName, dnsNames, ipAddresses or uris is required".into(),
            ));
        }
        if self.duration < MIN_DURATION || self.duration > MAX_DURATION {
            return Err(CertError::Invalid(format!(
                "duration must be between {} s and 100 years",
                MIN_DURATION.as_secs()
            )));
        }
        if let Some(rb) = self.renew_before {
            if rb >= self.duration {
                return Err(CertError::Invalid(
                    "renewBefore must be shorter than the duration".into(),
                ));
            }
        }
        if let Some(p) = self.renew_before_percentage {
            if p == 0 || p >= 100 {
                return Err(CertError::Invalid(
                    "renewBeforePercentage must be between 1 and 99".into(),
                ));
            }
        }
        match self.key {
            KeyAlgorithm::Rsa(2048 | 3072 | 4096) | KeyAlgorithm::Ecdsa(256 | 384) => {}
            KeyAlgorithm::Ed25519 => {}
            KeyAlgorithm::Rsa(n) => {
                return Err(CertError::Invalid(format!(
                    "RSA size {n} (2048, 3072 or 4096)"
                )))
            }
            KeyAlgorithm::Ecdsa(n) => {
                return Err(CertError::Invalid(format!("ECDSA size {n} (256 or 384)")))
            }
        }
        for n in &self.dns_names {
            let bare = n.strip_prefix("*.").unwrap_or(n);
            let ok = !bare.is_empty()
                && bare.len() <= 253
                && bare.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !ok {
                return Err(CertError::Invalid(format!("invalid DNS name {n:?}")));
            }
        }
        for u in &self.usages {
            if usage(u).is_none() {
                return Err(CertError::Invalid(format!("unknown usage {u:?}")));
            }
        }
        Ok(())
    }
}

/// When a certificate valid from `not_before` to `not_after` (Unix seconds) is due for
/// renewal: `renewBefore` before expiry, or `renewBeforePercentage` of its lifetime before
/// expiry, else at 2/3 of its lifetime (cert-manager's default).
pub fn renewal_time(spec: &CertificateSpec, not_before: i64, not_after: i64) -> i64 {
    let lifetime = (not_after - not_before).max(0);
    let before = match (spec.renew_before, spec.renew_before_percentage) {
        (Some(rb), _) => i64::try_from(rb.as_secs())
            .unwrap_or(i64::MAX)
            .min(lifetime),
        (None, Some(p)) => lifetime * i64::from(p) / 100,
        (None, None) => lifetime / 3,
    };
    not_after - before
}

/// Issues a certificate for `spec`, signed by `signer`, at time `now` (Unix seconds). A key
/// in PEM may be given to keep the private key (`rotationPolicy: Never`).
pub fn issue(
    spec: &CertificateSpec,
    signer: &Signer<'_>,
    now: i64,
    keep_key: Option<&str>,
) -> Result<Issued, CertError> {
    spec.validate()?;
    let key = key_for(spec, keep_key)?;
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    if let Some(cn) = &spec.common_name {
        dn.push(rcgen::DnType::CommonName, cn.as_str());
    }
    params.distinguished_name = dn;
    for n in &spec.dns_names {
        let name = rcgen::string::Ia5String::try_from(n.as_str())
            .map_err(|_| CertError::Invalid(format!("invalid DNS name {n:?}")))?;
        params.subject_alt_names.push(rcgen::SanType::DnsName(name));
    }
    for ip in &spec.ip_addresses {
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(*ip));
    }
    for u in &spec.uris {
        let uri = rcgen::string::Ia5String::try_from(u.as_str())
            .map_err(|_| CertError::Invalid(format!("invalid URI {u:?}")))?;
        params.subject_alt_names.push(rcgen::SanType::URI(uri));
    }
    let start = time::OffsetDateTime::from_unix_timestamp(now - 60)
        .map_err(|e| CertError::Invalid(e.to_string()))?;
    let lifetime = i64::try_from(spec.duration.as_secs()).unwrap_or(i64::MAX);
    params.not_before = start;
    params.not_after = time::OffsetDateTime::from_unix_timestamp(now + lifetime)
        .map_err(|e| CertError::Invalid(e.to_string()))?;
    let serial: [u8; 16] = random_serial(now, &key);
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let usages: Vec<&str> = if spec.usages.is_empty() {
        vec!["digital signature", "key encipherment"]
    } else {
        spec.usages.iter().map(String::as_str).collect()
    };
    for u in usages {
        match usage(u) {
            Some(Usage::Key(k)) => params.key_usages.push(k),
            Some(Usage::Extended(e)) => params.extended_key_usages.push(e),
            None => return Err(CertError::Invalid(format!("unknown usage {u:?}"))),
        }
    }
    if spec.is_ca {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        for k in [
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ] {
            if !params.key_usages.contains(&k) {
                params.key_usages.push(k);
            }
        }
    }
    params.use_authority_key_identifier_extension = true;
    let (cert, ca_pem) = match signer {
        Signer::SelfSigned => {
            let cert = params
                .self_signed(&key)
                .map_err(|e| CertError::Signing(e.to_string()))?;
            let pem = cert.pem();
            (cert, pem)
        }
        Signer::Ca { cert_pem, key_pem } => {
            let ca_key = rcgen::KeyPair::from_pem(key_pem)
                .map_err(|e| CertError::Issuer(format!("CA key: {e}")))?;
            let issuer = rcgen::Issuer::from_ca_cert_pem(cert_pem, ca_key)
                .map_err(|e| CertError::Issuer(format!("CA certificate: {e}")))?;
            let cert = params
                .signed_by(&key, &issuer)
                .map_err(|e| CertError::Signing(e.to_string()))?;
            (cert, first_pem(cert_pem))
        }
    };
    let mut chain_pem = cert.pem();
    if let Signer::Ca { cert_pem, .. } = signer {
        // An intermediate CA's own chain goes along; a self-signed root stays out.
        if !is_self_signed(cert_pem) {
            chain_pem.push_str(cert_pem);
        }
    }
    Ok(Issued {
        chain_pem,
        key_pem: Zeroizing::new(key.serialize_pem()),
        ca_pem,
        not_before: now - 60,
        not_after: now + lifetime,
        serial_hex: serial.iter().map(|b| format!("{b:02x}")).collect(),
    })
}

/// The key to certify: the kept one, or a new one of the spec's algorithm.
fn key_for(spec: &CertificateSpec, keep_key: Option<&str>) -> Result<rcgen::KeyPair, CertError> {
    match keep_key {
        Some(pem) => rcgen::KeyPair::from_pem(pem)
            .map_err(|e| CertError::Invalid(format!("the kept private key: {e}"))),
        None => {
            let alg: &'static rcgen::SignatureAlgorithm = match spec.key {
                KeyAlgorithm::Rsa(2048) => &rcgen::PKCS_RSA_SHA256,
                KeyAlgorithm::Rsa(3072) => &rcgen::PKCS_RSA_SHA384,
                KeyAlgorithm::Rsa(_) => &rcgen::PKCS_RSA_SHA512,
                KeyAlgorithm::Ecdsa(384) => &rcgen::PKCS_ECDSA_P384_SHA384,
                KeyAlgorithm::Ecdsa(_) => &rcgen::PKCS_ECDSA_P256_SHA256,
                KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
            };
            match spec.key {
                KeyAlgorithm::Rsa(bits) => generate_rsa(bits, alg),
                _ => {
                    rcgen::KeyPair::generate_for(alg).map_err(|e| CertError::Signing(e.to_string()))
                }
            }
        }
    }
}

/// A certificate signing request and the private key it is for.
pub struct Csr {
    pub der: Vec<u8>,
    pub key_pem: Zeroizing<String>,
}

/// A CSR for `spec` (its common name, DNS names and IP addresses), with the kept key or a new
/// one of the spec's algorithm, for a CA that sets everything else itself (ACME).
pub fn csr(spec: &CertificateSpec, keep_key: Option<&str>) -> Result<Csr, CertError> {
    spec.validate()?;
    let key = key_for(spec, keep_key)?;
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    if let Some(cn) = &spec.common_name {
        dn.push(rcgen::DnType::CommonName, cn.as_str());
    }
    params.distinguished_name = dn;
    let mut names: Vec<&str> = spec.dns_names.iter().map(String::as_str).collect();
    if let Some(cn) = spec.common_name.as_deref() {
        if cn.parse::<IpAddr>().is_err() && !names.iter().any(|n| n.eq_ignore_ascii_case(cn)) {
            names.push(cn);
        }
    }
    for n in names {
        let name = rcgen::string::Ia5String::try_from(n)
            .map_err(|_| CertError::Invalid(format!("invalid DNS name {n:?}")))?;
        params.subject_alt_names.push(rcgen::SanType::DnsName(name));
    }
    for ip in &spec.ip_addresses {
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(*ip));
    }
    let req = params
        .serialize_request(&key)
        .map_err(|e| CertError::Signing(e.to_string()))?;
    Ok(Csr {
        der: req.der().to_vec(),
        key_pem: Zeroizing::new(key.serialize_pem()),
    })
}

/// The serial number (hex) of the first certificate of a PEM bundle.
pub fn serial_hex(pem: &str) -> Option<String> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let c = p.parse_x509().ok()?;
    Some(c.raw_serial().iter().map(|b| format!("{b:02x}")).collect())
}

fn generate_rsa(
    bits: u32,
    alg: &'static rcgen::SignatureAlgorithm,
) -> Result<rcgen::KeyPair, CertError> {
    let size = match bits {
        3072 => rcgen::RsaKeySize::_3072,
        4096 => rcgen::RsaKeySize::_4096,
        _ => rcgen::RsaKeySize::_2048,
    };
    rcgen::KeyPair::generate_rsa_for(alg, size).map_err(|e| CertError::Signing(e.to_string()))
}

/// A serial number: 16 bytes, the first bit clear, unique per key and second.
fn random_serial(now: i64, key: &rcgen::KeyPair) -> [u8; 16] {
    let der = key.serialized_der();
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in der.iter().chain(now.to_be_bytes().iter()) {
        h ^= u128::from(*b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013B);
    }
    let mut out = h.to_be_bytes();
    out[0] &= 0x7f;
    if out[0] == 0 {
        out[0] = 1;
    }
    out
}

enum Usage {
    Key(rcgen::KeyUsagePurpose),
    Extended(rcgen::ExtendedKeyUsagePurpose),
}

fn usage(name: &str) -> Option<Usage> {
    use rcgen::ExtendedKeyUsagePurpose as E;
    use rcgen::KeyUsagePurpose as K;
    Some(match name {
        "digital signature" | "signing" => Usage::Key(K::DigitalSignature),
        "content commitment" => Usage::Key(K::ContentCommitment),
        "key encipherment" => Usage::Key(K::KeyEncipherment),
        "data encipherment" => Usage::Key(K::DataEncipherment),
        "key agreement" => Usage::Key(K::KeyAgreement),
        "cert sign" => Usage::Key(K::KeyCertSign),
        "crl sign" => Usage::Key(K::CrlSign),
        "encipher only" => Usage::Key(K::EncipherOnly),
        "decipher only" => Usage::Key(K::DecipherOnly),
        "server auth" => Usage::Extended(E::ServerAuth),
        "client auth" => Usage::Extended(E::ClientAuth),
        "code signing" => Usage::Extended(E::CodeSigning),
        "email protection" => Usage::Extended(E::EmailProtection),
        "timestamping" => Usage::Extended(E::TimeStamping),
        "ocsp signing" => Usage::Extended(E::OcspSigning),
        _ => return None,
    })
}

/// The first PEM block of a bundle.
fn first_pem(bundle: &str) -> String {
    let end = "-----END CERTIFICATE-----";
    match bundle.find(end) {
        Some(i) => format!("{}\n", &bundle[..i + end.len()].trim_start()),
        None => bundle.to_string(),
    }
}

fn is_self_signed(pem: &str) -> bool {
    let Ok((_, p)) = x509_parser::pem::parse_x509_pem(pem.as_bytes()) else {
        return false;
    };
    let Ok(c) = p.parse_x509() else {
        return false;
    };
    c.subject() == c.issuer()
}

/// Validity (Unix seconds) and subject alternative names of a PEM certificate, to decide
/// whether a stored certificate still matches its spec.
pub fn inspect(pem: &str) -> Option<(i64, i64, Vec<String>)> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let c = p.parse_x509().ok()?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = c.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_string());
            }
        }
    }
    Some((
        c.validity().not_before.timestamp(),
        c.validity().not_after.timestamp(),
        names,
    ))
}

#[cfg(test)]
mod tests;
