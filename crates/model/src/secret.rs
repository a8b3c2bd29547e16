//! Secrets shaped like Kubernetes Secrets: a namespaced name, a type, data (bytes), labels and
//! annotations; and the access rules that say who may do what to which secret.
//!
//! Secret values never appear in `Debug` output or error messages: [`SecretValue`] prints only
//! its length, and is zeroed when dropped.

use std::collections::BTreeMap;
use std::fmt;

use zeroize::Zeroizing;

/// Largest total size of a secret's data, as Kubernetes allows (1 MiB).
pub const MAX_SECRET_SIZE: usize = 1024 * 1024;

/// Why a secret or one of its parts was rejected. Never carries a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("invalid namespace {0:?}: must be a DNS-1123 label (lowercase letters, digits and '-', at most 63)")]
    BadNamespace(String),
    #[error("invalid secret name {0:?}: must be a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', at most 253)")]
    BadName(String),
    #[error(
        "invalid data key {0:?}: must consist of letters, digits, '-', '_' or '.' (at most 253)"
    )]
    BadKey(String),
    #[error("secret data totals {0} bytes, more than the 1 MiB limit")]
    TooLarge(usize),
    #[error("invalid secret type {0:?}")]
    BadType(String),
    #[error("a {kind} secret needs the data keys {needs}")]
    MissingKeys { kind: String, needs: String },
    #[error("invalid label or annotation key {0:?}")]
    BadMetadataKey(String),
}

/// A secret's namespace and name, both validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretRef {
    namespace: String,
    name: String,
}

impl SecretRef {
    pub fn new(namespace: &str, name: &str) -> Result<Self, SecretError> {
        if !is_dns1123_label(namespace) {
            return Err(SecretError::BadNamespace(namespace.to_string()));
        }
        if !is_dns1123_subdomain(name) {
            return Err(SecretError::BadName(name.to_string()));
        }
        Ok(SecretRef {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A secret's type, as Kubernetes names them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretType {
    Opaque,
    /// `kubernetes.io/tls`: needs `tls.crt` and `tls.key`.
    Tls,
    /// `kubernetes.io/basic-auth`.
    BasicAuth,
    /// `kubernetes.io/dockerconfigjson`: needs `.dockerconfigjson`.
    DockerConfigJson,
    /// Any other `domain/name` type.
    Other(String),
}

impl SecretType {
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        Ok(match text {
            "" | "Opaque" => SecretType::Opaque,
            "kubernetes.io/tls" => SecretType::Tls,
            "kubernetes.io/basic-auth" => SecretType::BasicAuth,
            "kubernetes.io/dockerconfigjson" => SecretType::DockerConfigJson,
            other => {
                let ok = other.len() <= 253
                    && other
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._/".contains(&b));
                if !ok {
                    return Err(SecretError::BadType(other.to_string()));
                }
                SecretType::Other(other.to_string())
            }
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            SecretType::Opaque => "Opaque",
            SecretType::Tls => "kubernetes.io/tls",
            SecretType::BasicAuth => "kubernetes.io/basic-auth",
            SecretType::DockerConfigJson => "kubernetes.io/dockerconfigjson",
            SecretType::Other(s) => s,
        }
    }

    fn required_keys(&self) -> &'static [&'static str] {
        match self {
            SecretType::Tls => &["tls.crt", "tls.key"],
            SecretType::DockerConfigJson => &[".dockerconfigjson"],
            _ => &[],
        }
    }
}

impl fmt::Display for SecretType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Secret bytes: zeroed on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretValue(Zeroizing::new(bytes))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}

/// A secret's content: what users write and read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSpec {
    pub secret_type: SecretType,
    pub data: BTreeMap<String, SecretValue>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl SecretSpec {
    /// Checks keys, sizes and the keys the type requires.
    pub fn validate(&self) -> Result<(), SecretError> {
        let mut total = 0usize;
        for (k, v) in &self.data {
            let ok = !k.is_empty()
                && k.len() <= 253
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !ok {
                return Err(SecretError::BadKey(k.clone()));
            }
            total += k.len() + v.len();
        }
        for k in self.labels.keys().chain(self.annotations.keys()) {
            let ok = !k.is_empty()
                && k.len() <= 317
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
            if !ok {
                return Err(SecretError::BadMetadataKey(k.clone()));
            }
            total += k.len();
        }
        total += self
            .labels
            .values()
            .chain(self.annotations.values())
            .map(String::len)
            .sum::<usize>();
        if total > MAX_SECRET_SIZE {
            return Err(SecretError::TooLarge(total));
        }
        let needs = self.secret_type.required_keys();
        if needs.iter().any(|k| !self.data.contains_key(*k)) {
            return Err(SecretError::MissingKeys {
                kind: self.secret_type.to_string(),
                needs: needs.join(", "),
            });
        }
        Ok(())
    }
}

/// An operation on secrets, for access rules and the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Get,
    List,
    Create,
    Update,
    Delete,
}

impl Verb {
    pub const ALL: [Verb; 5] = [
        Verb::Get,
        Verb::List,
        Verb::Create,
        Verb::Update,
        Verb::Delete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Delete => "delete",
        }
    }

    pub fn parse(text: &str) -> Option<Verb> {
        Verb::ALL.into_iter().find(|v| v.as_str() == text)
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Allows some verbs on secrets whose namespace and name match the patterns. A pattern is a
/// literal, `*`, or a prefix followed by `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRule {
    pub verbs: Vec<Verb>,
    pub namespaces: Vec<String>,
    pub names: Vec<String>,
}

impl AccessRule {
    /// Parses `VERBS:NAMESPACE/NAME`, e.g. `get,list:cert-manager/*` or `*:*/*`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (verbs, target) = text
            .split_once(':')
            .ok_or_else(|| format!("rule {text:?} must look like VERBS:NAMESPACE/NAME"))?;
        let (ns, name) = target
            .split_once('/')
            .ok_or_else(|| format!("rule {text:?} must look like VERBS:NAMESPACE/NAME"))?;
        let verbs = if verbs == "*" {
            Verb::ALL.to_vec()
        } else {
            verbs
                .split(',')
                .map(|v| {
                    Verb::parse(v).ok_or_else(|| format!("unknown verb {v:?} in rule {text:?}"))
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        Ok(AccessRule {
            verbs,
            namespaces: vec![ns.to_string()],
            names: vec![name.to_string()],
        })
    }

    /// Whether this rule allows `verb` on `namespace`/`name`. With `name` `None` it asks
    /// whether the verb is allowed on some name in the namespace: the gate of a listing, whose
    /// rows must then each be checked with their name.
    pub fn allows(&self, verb: Verb, namespace: &str, name: Option<&str>) -> bool {
        self.verbs.contains(&verb)
            && self
                .namespaces
                .iter()
                .any(|p| pattern_matches(p, namespace))
            && match name {
                Some(n) => self.names.iter().any(|p| pattern_matches(p, n)),
                None => true,
            }
    }
}

impl fmt::Display for AccessRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verbs: Vec<&str> = self.verbs.iter().map(|v| v.as_str()).collect();
        write!(
            f,
            "{}:{}/{}",
            verbs.join(","),
            self.namespaces.join("|"),
            self.names.join("|")
        )
    }
}

fn pattern_matches(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => pattern == value,
    }
}

/// Whether `s` is a DNS-1123 label: lowercase alphanumerics and '-', starting and ending with
/// an alphanumeric, at most 63 characters.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Whether `s` is a DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kubernetes() {
        assert!(SecretRef::new("default", "route53").is_ok());
        assert!(SecretRef::new("cert-manager", "tls.example.com").is_ok());
        for (ns, name) in [
            ("Default", "x"),
            ("-a", "x"),
            ("a", "X"),
            ("a", "a..b"),
            ("a", ""),
            ("a".repeat(64).as_str(), "x"),
        ] {
            assert!(SecretRef::new(ns, name).is_err(), "{ns}/{name}");
        }
        assert!(SecretRef::new("a", &"b".repeat(254)).is_err());
    }

    #[test]
    fn values_are_never_printed() {
        let mut data = BTreeMap::new();
        data.insert(
            "password".to_string(),
            SecretValue::new(b"hunter2-very-secret".to_vec()),
        );
        let spec = SecretSpec {
            secret_type: SecretType::Opaque,
            data,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        };
        let shown = format!("{spec:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted 19 bytes>"));
    }

    #[test]
    fn validation() {
        let spec = |t: &str, keys: &[(&str, usize)]| SecretSpec {
            secret_type: SecretType::parse(t).expect("type"),
            data: keys
                .iter()
                .map(|(k, n)| (k.to_string(), SecretValue::new(vec![b'x'; *n])))
                .collect(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        };
        assert!(spec("Opaque", &[("a", 1)]).validate().is_ok());
        assert!(spec("Opaque", &[("a/b", 1)]).validate().is_err());
        assert!(spec("Opaque", &[("a", MAX_SECRET_SIZE)])
            .validate()
            .is_err());
        assert!(spec("kubernetes.io/tls", &[("tls.crt", 1)])
            .validate()
            .is_err());
        assert!(spec("kubernetes.io/tls", &[("tls.crt", 1), ("tls.key", 1)])
            .validate()
            .is_ok());
        assert!(SecretType::parse("bad type!").is_err());
    }

    #[test]
    fn access_rules() {
        let r = AccessRule::parse("get,list:cert-manager/route53*").expect("rule");
        assert!(r.allows(Verb::Get, "cert-manager", Some("route53-example")));
        assert!(r.allows(Verb::List, "cert-manager", None));
        assert!(r.allows(Verb::List, "cert-manager", Some("route53")));
        assert!(!r.allows(Verb::List, "cert-manager", Some("other")));
        assert!(!r.allows(Verb::Delete, "cert-manager", Some("route53")));
        assert!(!r.allows(Verb::Get, "default", Some("route53")));
        assert!(!r.allows(Verb::Get, "cert-manager", Some("other")));
        let all = AccessRule::parse("*:*/*").expect("rule");
        assert!(Verb::ALL.iter().all(|v| all.allows(*v, "x", Some("y"))));
        assert!(AccessRule::parse("fly:a/b").is_err());
        assert!(AccessRule::parse("get:ab").is_err());
    }
}
