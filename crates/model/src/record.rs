//! Record types, TTLs, typed record data with its presentation format, and record sets with the
//! Route53 routing-policy fields.

use std::fmt;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::name::{DomainName, NameError};
use crate::text::{self, Token};

/// Why a record value or record set was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("unknown or unsupported record type {0:?}")]
    UnknownType(String),
    #[error("invalid {rtype} value {value:?}: {reason}")]
    BadValue {
        rtype: RecordType,
        value: String,
        reason: String,
    },
    #[error("TTL {0} is out of range (0..=2147483647)")]
    BadTtl(u64),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Lex(#[from] text::LexError),
    #[error("record set {name} {rtype} has no values")]
    EmptySet { name: DomainName, rtype: RecordType },
    #[error("record set {name} {rtype} has a value of another type")]
    TypeMismatch { name: DomainName, rtype: RecordType },
    #[error("record set {name} {rtype}: {reason}")]
    BadSet {
        name: DomainName,
        rtype: RecordType,
        reason: String,
    },
}

macro_rules! record_types {
    ($($variant:ident = $code:expr),* $(,)?) => {
        /// A record type edgeplane stores: every type Route53 accepts.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum RecordType { $($variant),* }

        impl RecordType {
            /// Every stored type, in code order.
            pub const ALL: &'static [RecordType] = &[$(RecordType::$variant),*];

            /// The type's code on the wire.
            pub fn code(self) -> u16 {
                match self { $(RecordType::$variant => $code),* }
            }

            /// The stored type with this wire code, if any.
            pub fn from_code(code: u16) -> Option<Self> {
                match code { $($code => Some(RecordType::$variant),)* _ => None }
            }

            /// The type's mnemonic.
            pub fn as_str(self) -> &'static str {
                match self { $(RecordType::$variant => stringify!($variant)),* }
            }
        }
    };
}

record_types! {
    A = 1, NS = 2, CNAME = 5, SOA = 6, PTR = 12, MX = 15, TXT = 16, AAAA = 28, SRV = 33,
    NAPTR = 35, DS = 43, SSHFP = 44, TLSA = 52, SVCB = 64, HTTPS = 65, SPF = 99, CAA = 257,
}

impl std::str::FromStr for RecordType {
    type Err = RecordError;
    fn from_str(s: &str) -> Result<Self, RecordError> {
        RecordType::ALL
            .iter()
            .copied()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| RecordError::UnknownType(s.to_string()))
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A time-to-live in seconds, at most 2^31 - 1 (RFC 2181 section 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ttl(u32);

impl Ttl {
    pub const MAX: u32 = 2_147_483_647;

    pub fn new(seconds: u64) -> Result<Self, RecordError> {
        u32::try_from(seconds)
            .ok()
            .filter(|&s| s <= Self::MAX)
            .map(Ttl)
            .ok_or(RecordError::BadTtl(seconds))
    }

    /// Parses seconds, or BIND-style units (`1h30m`, `2d`, `1w`).
    pub fn parse(text: &str) -> Result<Self, RecordError> {
        let bad = || RecordError::BadValue {
            rtype: RecordType::SOA,
            value: text.to_string(),
            reason: "not a TTL".to_string(),
        };
        if text.is_empty() {
            return Err(bad());
        }
        if let Ok(v) = text.parse::<u64>() {
            return Self::new(v);
        }
        let mut total: u64 = 0;
        let mut num: Option<u64> = None;
        for c in text.chars() {
            if let Some(d) = c.to_digit(10) {
                num = Some(
                    num.unwrap_or(0)
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(u64::from(d)))
                        .ok_or_else(bad)?,
                );
            } else {
                let unit = match c.to_ascii_lowercase() {
                    's' => 1,
                    'm' => 60,
                    'h' => 3600,
                    'd' => 86_400,
                    'w' => 604_800,
                    _ => return Err(bad()),
                };
                let n = num.take().ok_or_else(bad)?;
                total = n
                    .checked_mul(unit)
                    .and_then(|v| total.checked_add(v))
                    .ok_or_else(bad)?;
            }
        }
        if num.is_some() {
            return Err(bad());
        }
        Self::new(total)
    }

    pub fn seconds(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The fields of an SOA record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Soa {
    pub mname: DomainName,
    pub rname: DomainName,
    pub serial: u32,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub minimum: u32,
}

/// One SVCB/HTTPS service parameter: its key number and its value in wire form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SvcParam {
    pub key: u16,
    pub value: Vec<u8>,
}

/// One record's data, typed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RecordData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Ns(DomainName),
    Cname(DomainName),
    Ptr(DomainName),
    Soa(Soa),
    Mx {
        preference: u16,
        exchange: DomainName,
    },
    /// Character-strings, each at most 255 octets.
    Txt(Vec<Vec<u8>>),
    Spf(Vec<Vec<u8>>),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: DomainName,
    },
    Naptr {
        order: u16,
        preference: u16,
        flags: Vec<u8>,
        services: Vec<u8>,
        regexp: Vec<u8>,
        replacement: DomainName,
    },
    Ds {
        key_tag: u16,
        algorithm: u8,
        digest_type: u8,
        digest: Vec<u8>,
    },
    Sshfp {
        algorithm: u8,
        fingerprint_type: u8,
        fingerprint: Vec<u8>,
    },
    Tlsa {
        usage: u8,
        selector: u8,
        matching_type: u8,
        data: Vec<u8>,
    },
    Svcb {
        priority: u16,
        target: DomainName,
        params: Vec<SvcParam>,
    },
    Https {
        priority: u16,
        target: DomainName,
        params: Vec<SvcParam>,
    },
    Caa {
        flags: u8,
        tag: String,
        value: Vec<u8>,
    },
}

impl RecordData {
    /// The type of this data.
    pub fn rtype(&self) -> RecordType {
        match self {
            RecordData::A(_) => RecordType::A,
            RecordData::Aaaa(_) => RecordType::AAAA,
            RecordData::Ns(_) => RecordType::NS,
            RecordData::Cname(_) => RecordType::CNAME,
            RecordData::Ptr(_) => RecordType::PTR,
            RecordData::Soa(_) => RecordType::SOA,
            RecordData::Mx { .. } => RecordType::MX,
            RecordData::Txt(_) => RecordType::TXT,
            RecordData::Spf(_) => RecordType::SPF,
            RecordData::Srv { .. } => RecordType::SRV,
            RecordData::Naptr { .. } => RecordType::NAPTR,
            RecordData::Ds { .. } => RecordType::DS,
            RecordData::Sshfp { .. } => RecordType::SSHFP,
            RecordData::Tlsa { .. } => RecordType::TLSA,
            RecordData::Svcb { .. } => RecordType::SVCB,
            RecordData::Https { .. } => RecordType::HTTPS,
            RecordData::Caa { .. } => RecordType::CAA,
        }
    }

    /// Parses a value in presentation format (as in a master file or a Route53 `Value`).
    /// Relative names are completed with `origin`; without one every name is absolute.
    pub fn parse(
        rtype: RecordType,
        value: &str,
        origin: Option<&DomainName>,
    ) -> Result<Self, RecordError> {
        let tokens = text::tokens(value)?;
        Self::from_tokens(rtype, &tokens, origin).map_err(|reason| RecordError::BadValue {
            rtype,
            value: value.to_string(),
            reason,
        })
    }

    /// Parses from already lexed tokens; the error is a reason, without the value.
    pub fn from_tokens(
        rtype: RecordType,
        tokens: &[Token],
        origin: Option<&DomainName>,
    ) -> Result<Self, String> {
        let mut p = Fields {
            tokens,
            pos: 0,
            origin,
        };
        let data = match rtype {
            RecordType::A => RecordData::A(
                p.next()?
                    .parse()
                    .map_err(|_| "not an IPv4 address".to_string())?,
            ),
            RecordType::AAAA => RecordData::Aaaa(
                p.next()?
                    .parse()
                    .map_err(|_| "not an IPv6 address".to_string())?,
            ),
            RecordType::NS => RecordData::Ns(p.name()?),
            RecordType::CNAME => RecordData::Cname(p.name()?),
            RecordType::PTR => RecordData::Ptr(p.name()?),
            RecordType::SOA => RecordData::Soa(Soa {
                mname: p.name()?,
                rname: p.name()?,
                serial: p.num()?,
                refresh: p.ttl()?,
                retry: p.ttl()?,
                expire: p.ttl()?,
                minimum: p.ttl()?,
            }),
            RecordType::MX => RecordData::Mx {
                preference: p.num()?,
                exchange: p.name()?,
            },
            RecordType::TXT => RecordData::Txt(p.strings()?),
            RecordType::SPF => RecordData::Spf(p.strings()?),
            RecordType::SRV => RecordData::Srv {
                priority: p.num()?,
                weight: p.num()?,
                port: p.num()?,
                target: p.name()?,
            },
            RecordType::NAPTR => RecordData::Naptr {
                order: p.num()?,
                preference: p.num()?,
                flags: p.string()?,
                services: p.string()?,
                regexp: p.string()?,
                replacement: p.name()?,
            },
            RecordType::DS => RecordData::Ds {
                key_tag: p.num()?,
                algorithm: p.num()?,
                digest_type: p.num()?,
                digest: p.hex_rest()?,
            },
            RecordType::SSHFP => RecordData::Sshfp {
                algorithm: p.num()?,
                fingerprint_type: p.num()?,
                fingerprint: p.hex_rest()?,
            },
            RecordType::TLSA => RecordData::Tlsa {
                usage: p.num()?,
                selector: p.num()?,
                matching_type: p.num()?,
                data: p.hex_rest()?,
            },
            RecordType::SVCB | RecordType::HTTPS => {
                let priority = p.num()?;
                let target = p.name()?;
                let params = p.svc_params()?;
                if priority == 0 && !params.is_empty() {
                    return Err("AliasMode (priority 0) takes no parameters".to_string());
                }
                if rtype == RecordType::SVCB {
                    RecordData::Svcb {
                        priority,
                        target,
                        params,
                    }
                } else {
                    RecordData::Https {
                        priority,
                        target,
                        params,
                    }
                }
            }
            RecordType::CAA => {
                let flags = p.num()?;
                let tag = p.next()?.to_string();
                if tag.is_empty()
                    || tag.len() > 15
                    || !tag.bytes().all(|b| b.is_ascii_alphanumeric())
                {
                    return Err(format!("CAA tag {tag:?} must be 1-15 letters or digits"));
                }
                let value = p.string()?;
                RecordData::Caa { flags, tag, value }
            }
        };
        if p.pos != tokens.len() {
            return Err(format!(
                "unexpected trailing field {:?}",
                tokens[p.pos].text
            ));
        }
        Ok(data)
    }

    /// Names this data points at that may need address records in the additional section.
    pub fn target_name(&self) -> Option<&DomainName> {
        match self {
            RecordData::Ns(n) => Some(n),
            RecordData::Mx { exchange, .. } => Some(exchange),
            RecordData::Srv { target, .. } => Some(target),
            _ => None,
        }
    }
}

impl fmt::Display for RecordData {
    /// Presentation format, names absolute.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        match self {
            RecordData::A(a) => write!(s, "{a}")?,
            RecordData::Aaaa(a) => write!(s, "{a}")?,
            RecordData::Ns(n) | RecordData::Cname(n) | RecordData::Ptr(n) => write!(s, "{n}")?,
            RecordData::Soa(soa) => write!(
                s,
                "{} {} {} {} {} {} {}",
                soa.mname, soa.rname, soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum
            )?,
            RecordData::Mx {
                preference,
                exchange,
            } => write!(s, "{preference} {exchange}")?,
            RecordData::Txt(strings) | RecordData::Spf(strings) => {
                for (i, cs) in strings.iter().enumerate() {
                    if i > 0 {
                        s.push(' ');
                    }
                    text::quote(&mut s, cs);
                }
            }
            RecordData::Srv {
                priority,
                weight,
                port,
                target,
            } => write!(s, "{priority} {weight} {port} {target}")?,
            RecordData::Naptr {
                order,
                preference,
                flags,
                services,
                regexp,
                replacement,
            } => {
                write!(s, "{order} {preference} ")?;
                for part in [flags, services, regexp] {
                    text::quote(&mut s, part);
                    s.push(' ');
                }
                write!(s, "{replacement}")?;
            }
            RecordData::Ds {
                key_tag,
                algorithm,
                digest_type,
                digest,
            } => write!(s, "{key_tag} {algorithm} {digest_type} {}", hex(digest))?,
            RecordData::Sshfp {
                algorithm,
                fingerprint_type,
                fingerprint,
            } => write!(s, "{algorithm} {fingerprint_type} {}", hex(fingerprint))?,
            RecordData::Tlsa {
                usage,
                selector,
                matching_type,
                data,
            } => write!(s, "{usage} {selector} {matching_type} {}", hex(data))?,
            RecordData::Svcb {
                priority,
                target,
                params,
            }
            | RecordData::Https {
                priority,
                target,
                params,
            } => {
                write!(s, "{priority} {target}")?;
                for p in params {
                    s.push(' ');
                    crate::svcb::write_param(&mut s, p);
                }
            }
            RecordData::Caa { flags, tag, value } => {
                write!(s, "{flags} {tag} ")?;
                text::quote(&mut s, value);
            }
        }
        f.write_str(&s)
    }
}

/// Largest variable part of one record's data, so that every record fits in a DNS message
/// with room to spare (Route53 allows 4,000 characters per value).
pub const MAX_RDATA: usize = 16 * 1024;

/// Uppercase hex of `data`, as BIND and Knot print digests.
pub fn hex(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len() * 2);
    for b in data {
        let _ = write!(s, "{b:02X}");
    }
    s
}

struct Fields<'a> {
    tokens: &'a [Token],
    pos: usize,
    origin: Option<&'a DomainName>,
}

impl<'a> Fields<'a> {
    fn next(&mut self) -> Result<&'a str, String> {
        let t = self
            .tokens
            .get(self.pos)
            .ok_or_else(|| "missing field".to_string())?;
        self.pos += 1;
        Ok(&t.text)
    }

    fn num<T: std::str::FromStr>(&mut self) -> Result<T, String> {
        let t = self.next()?;
        t.parse()
            .map_err(|_| format!("{t:?} is not a number in range"))
    }

    fn ttl(&mut self) -> Result<u32, String> {
        let t = self.next()?;
        Ttl::parse(t)
            .map(Ttl::seconds)
            .map_err(|_| format!("{t:?} is not a time value"))
    }

    fn name(&mut self) -> Result<DomainName, String> {
        let t = self.next()?;
        let parsed = match self.origin {
            Some(origin) => DomainName::parse_relative(t, origin),
            None => DomainName::parse(t),
        };
        parsed.map_err(|e| e.to_string())
    }

    fn string(&mut self) -> Result<Vec<u8>, String> {
        let t = self.next()?;
        let bytes = text::unescape(t).ok_or_else(|| format!("bad escape in {t:?}"))?;
        if bytes.len() > 255 {
            return Err("character-string longer than 255 octets".to_string());
        }
        Ok(bytes)
    }

    fn strings(&mut self) -> Result<Vec<Vec<u8>>, String> {
        let mut out = Vec::new();
        while self.pos < self.tokens.len() {
            out.push(self.string()?);
        }
        if out.is_empty() {
            return Err("missing character-string".to_string());
        }
        let total: usize = out.iter().map(|s| s.len() + 1).sum();
        if total > MAX_RDATA {
            return Err(format!("value longer than {MAX_RDATA} octets"));
        }
        Ok(out)
    }

    fn hex_rest(&mut self) -> Result<Vec<u8>, String> {
        let mut digits = String::new();
        while self.pos < self.tokens.len() {
            digits.push_str(self.next()?);
        }
        if digits.is_empty() || !digits.len().is_multiple_of(2) {
            return Err("expected an even number of hex digits".to_string());
        }
        if digits.len() / 2 > MAX_RDATA {
            return Err(format!("value longer than {MAX_RDATA} octets"));
        }
        (0..digits.len())
            .step_by(2)
            .map(|i| {
                digits
                    .get(i..i + 2)
                    .and_then(|d| u8::from_str_radix(d, 16).ok())
                    .ok_or_else(|| "not hex".to_string())
            })
            .collect()
    }

    fn svc_params(&mut self) -> Result<Vec<SvcParam>, String> {
        let mut params = Vec::new();
        while self.pos < self.tokens.len() {
            let t = self.next()?;
            let (key, value) = match t.split_once('=') {
                Some((k, "")) => {
                    // `key="quoted value"` lexes as `key=` followed by a quoted token.
                    let next_quoted = self.tokens.get(self.pos).is_some_and(|t| t.quoted);
                    if next_quoted {
                        (k, Some(self.next()?))
                    } else {
                        (k, Some(""))
                    }
                }
                Some((k, v)) => (k, Some(v)),
                None => (t, None),
            };
            params.push(crate::svcb::parse_param(key, value)?);
        }
        crate::svcb::check_params(&mut params)?;
        let total: usize = params.iter().map(|p| p.value.len() + 4).sum();
        if total > MAX_RDATA {
            return Err(format!("parameters longer than {MAX_RDATA} octets"));
        }
        Ok(params)
    }
}

/// Route53 failover role of a record set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failover {
    Primary,
    Secondary,
}

/// How Route53 chooses among record sets sharing a name and type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum RoutingPolicy {
    /// One record set for the name and type.
    #[default]
    Simple,
    /// Chosen in proportion to `weight` (0..=255).
    Weighted { weight: u8 },
    /// PRIMARY answers while healthy, else SECONDARY.
    Failover(Failover),
    /// Up to eight healthy record sets answered together.
    MultiValue,
}

/// An alias record set: answers with the data of another record set in the same zone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AliasTarget {
    pub hosted_zone_id: String,
    pub dns_name: DomainName,
    pub evaluate_target_health: bool,
}

/// A set of records sharing owner name and type (plus, for routing policies, a set identifier).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordSet {
    pub name: DomainName,
    pub rtype: RecordType,
    pub ttl: Ttl,
    pub records: Vec<RecordData>,
    /// Distinguishes record sets of the same name and type under a routing policy.
    pub set_identifier: Option<String>,
    pub policy: RoutingPolicy,
    pub health_check_id: Option<String>,
    pub alias: Option<AliasTarget>,
}

impl RecordSet {
    /// A simple record set, checked: every value of `rtype`, no duplicates, at least one value,
    /// and a single value for CNAME and SOA.
    pub fn new(
        name: DomainName,
        ttl: Ttl,
        rtype: RecordType,
        records: Vec<RecordData>,
    ) -> Result<Self, RecordError> {
        let set = RecordSet {
            name,
            rtype,
            ttl,
            records,
            set_identifier: None,
            policy: RoutingPolicy::Simple,
            health_check_id: None,
            alias: None,
        };
        set.check()?;
        Ok(set)
    }

    /// Checks the invariants of a record set (see [`RecordSet::new`]) and drops duplicate values.
    pub fn check(&self) -> Result<(), RecordError> {
        let err = |reason: &str| RecordError::BadSet {
            name: self.name.clone(),
            rtype: self.rtype,
            reason: reason.to_string(),
        };
        if self.alias.is_some() {
            if !self.records.is_empty() {
                return Err(err("an alias record set has no values"));
            }
        } else if self.records.is_empty() {
            return Err(RecordError::EmptySet {
                name: self.name.clone(),
                rtype: self.rtype,
            });
        }
        if self.records.iter().any(|r| r.rtype() != self.rtype) {
            return Err(RecordError::TypeMismatch {
                name: self.name.clone(),
                rtype: self.rtype,
            });
        }
        if matches!(self.rtype, RecordType::CNAME | RecordType::SOA) && self.records.len() > 1 {
            return Err(err("only one value is allowed"));
        }
        for (i, r) in self.records.iter().enumerate() {
            if self.records[..i].contains(r) {
                return Err(err("duplicate value"));
            }
        }
        match (&self.policy, &self.set_identifier) {
            (RoutingPolicy::Simple, Some(_)) => {
                return Err(err("a set identifier needs a routing policy"))
            }
            (RoutingPolicy::Simple, None) => {}
            (_, None) => return Err(err("a routing policy needs a set identifier")),
            (_, Some(id)) if id.is_empty() || id.len() > 128 => {
                return Err(err("set identifier must be 1-128 characters"))
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
