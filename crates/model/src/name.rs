//! `DomainName`: a validated, lowercase DNS name held in uncompressed wire form.
//!
//! Names are stored lowercase (as Route53 stores them) so that equality and hashing are
//! case-insensitive for free; the DNS server keeps the question's original case separately.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;

/// Longest label, in octets (RFC 1035 section 2.3.4).
pub const MAX_LABEL_LEN: usize = 63;
/// Longest name in wire form, including length octets and the root label (RFC 1035 section 2.3.4).
pub const MAX_NAME_LEN: usize = 255;

/// Why a name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("domain name is empty")]
    Empty,
    #[error("domain name {name:?} has an empty label")]
    EmptyLabel { name: String },
    #[error("label of {len} octets in {name:?} exceeds 63")]
    LabelTooLong { name: String, len: usize },
    #[error("domain name {name:?} exceeds 255 octets in wire form")]
    NameTooLong { name: String },
    #[error("bad escape in domain name {name:?}")]
    BadEscape { name: String },
    #[error("character {ch:?} is not allowed in domain name {name:?}")]
    BadCharacter { name: String, ch: char },
    #[error("malformed wire-format name")]
    BadWire,
}

/// A fully qualified domain name, lowercase, in uncompressed wire form (length-prefixed labels
/// ending with the root label). It cannot hold an invalid name.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DomainName {
    wire: Box<[u8]>,
}

impl DomainName {
    /// The root name `.`.
    pub fn root() -> Self {
        DomainName {
            wire: Box::new([0u8]),
        }
    }

    /// Parses a name in presentation form. The trailing dot is optional (every name is taken as
    /// absolute); `\DDD` decimal escapes (RFC 1035 section 5.1, as Route53 returns `\052` for `*`)
    /// and `\X` escapes are understood; letters are folded to lowercase.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        if text.is_empty() {
            return Err(NameError::Empty);
        }
        if text == "." {
            return Ok(Self::root());
        }
        let err_name = || text.to_string();
        let mut wire = Vec::with_capacity(text.len() + 2);
        let mut label: Vec<u8> = Vec::with_capacity(MAX_LABEL_LEN);
        let bytes = text.as_bytes();
        let mut i = 0;
        let mut ended_with_dot = false;
        while i < bytes.len() {
            let b = bytes[i];
            ended_with_dot = false;
            match b {
                b'.' => {
                    push_label(&mut wire, &label, text)?;
                    label.clear();
                    ended_with_dot = true;
                    i += 1;
                }
                b'\\' => {
                    let rest = &bytes[i + 1..];
                    if rest.len() >= 3 && rest[..3].iter().all(u8::is_ascii_digit) {
                        let v = u32::from(rest[0] - b'0') * 100
                            + u32::from(rest[1] - b'0') * 10
                            + u32::from(rest[2] - b'0');
                        let v = u8::try_from(v)
                            .map_err(|_| NameError::BadEscape { name: err_name() })?;
                        label.push(v.to_ascii_lowercase());
                        i += 4;
                    } else if let Some(&c) = rest.first() {
                        if c.is_ascii_digit() || !c.is_ascii() {
                            return Err(NameError::BadEscape { name: err_name() });
                        }
                        label.push(c.to_ascii_lowercase());
                        i += 2;
                    } else {
                        return Err(NameError::BadEscape { name: err_name() });
                    }
                }
                _ => {
                    if !b.is_ascii() || b.is_ascii_control() || b == b' ' {
                        let ch = text[i..].chars().next().unwrap_or('?');
                        return Err(NameError::BadCharacter {
                            name: err_name(),
                            ch,
                        });
                    }
                    label.push(b.to_ascii_lowercase());
                    i += 1;
                }
            }
        }
        if !ended_with_dot {
            push_label(&mut wire, &label, text)?;
        }
        wire.push(0);
        if wire.len() > MAX_NAME_LEN {
            return Err(NameError::NameTooLong { name: err_name() });
        }
        Ok(DomainName {
            wire: wire.into_boxed_slice(),
        })
    }

    /// Parses a name the way Route53 writes them: `\ooo` escapes are *octal* (`\052` is `*`),
    /// as Route53's API documents, instead of the decimal escapes of master files.
    pub fn parse_route53(text: &str) -> Result<Self, NameError> {
        let bytes = text.as_bytes();
        let mut decimal = String::with_capacity(text.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'\\' {
                let rest = &bytes[i + 1..];
                if rest.len() >= 3 && rest[..3].iter().all(|b| (b'0'..=b'7').contains(b)) {
                    let v = u32::from(rest[0] - b'0') * 64
                        + u32::from(rest[1] - b'0') * 8
                        + u32::from(rest[2] - b'0');
                    decimal.push_str(&format!("\\{v:03}"));
                    i += 4;
                    continue;
                }
                match rest.first() {
                    Some(&c) if c.is_ascii() => {
                        decimal.push('\\');
                        decimal.push(char::from(c));
                        i += 2;
                        continue;
                    }
                    _ => {
                        return Err(NameError::BadEscape {
                            name: text.to_string(),
                        })
                    }
                }
            }
            let ch = text[i..].chars().next().unwrap_or('?');
            decimal.push(ch);
            i += ch.len_utf8();
        }
        Self::parse(&decimal).map_err(|e| match e {
            NameError::BadEscape { .. } => NameError::BadEscape {
                name: text.to_string(),
            },
            other => other,
        })
    }

    /// Parses a name relative to `origin` the way a master file does: `@` is the origin, a name
    /// ending in a dot is absolute, anything else is prefixed to the origin.
    pub fn parse_relative(text: &str, origin: &DomainName) -> Result<Self, NameError> {
        if text == "@" {
            return Ok(origin.clone());
        }
        if is_absolute(text) {
            return Self::parse(text);
        }
        let relative = Self::parse(text)?;
        relative
            .concat(origin)
            .ok_or_else(|| NameError::NameTooLong {
                name: text.to_string(),
            })
    }

    /// Builds a name from uncompressed wire bytes, folding case and checking every limit.
    pub fn from_wire(wire: &[u8]) -> Result<Self, NameError> {
        if wire.len() > MAX_NAME_LEN || wire.is_empty() {
            return Err(NameError::BadWire);
        }
        let mut pos = 0;
        loop {
            let len = usize::from(*wire.get(pos).ok_or(NameError::BadWire)?);
            if len == 0 {
                if pos + 1 != wire.len() {
                    return Err(NameError::BadWire);
                }
                break;
            }
            if len > MAX_LABEL_LEN || pos + 1 + len >= wire.len() {
                return Err(NameError::BadWire);
            }
            pos += 1 + len;
        }
        Ok(DomainName {
            wire: wire.to_ascii_lowercase().into_boxed_slice(),
        })
    }

    /// The uncompressed, lowercase wire form.
    pub fn wire(&self) -> &[u8] {
        &self.wire
    }

    /// Whether this is the root name.
    pub fn is_root(&self) -> bool {
        self.wire.len() == 1
    }

    /// The labels from the leftmost one, without the root label.
    pub fn labels(&self) -> Labels<'_> {
        Labels {
            wire: &self.wire,
            pos: 0,
        }
    }

    /// Number of labels, not counting the root.
    pub fn label_count(&self) -> usize {
        self.labels().count()
    }

    /// Whether the leftmost label is `*`.
    pub fn is_wildcard(&self) -> bool {
        self.wire.len() >= 2 && self.wire[0] == 1 && self.wire[1] == b'*'
    }

    /// The name without its leftmost label; `None` for the root.
    pub fn parent(&self) -> Option<DomainName> {
        if self.is_root() {
            return None;
        }
        let skip = 1 + usize::from(self.wire[0]);
        Some(DomainName {
            wire: self.wire[skip..].into(),
        })
    }

    /// Whether `self` equals `ancestor` or lies below it.
    pub fn is_subdomain_of(&self, ancestor: &DomainName) -> bool {
        wire_is_subdomain(&self.wire, &ancestor.wire)
    }

    /// `self` with `suffix` appended (self is taken as relative: its root label is dropped).
    pub fn concat(&self, suffix: &DomainName) -> Option<DomainName> {
        let mut wire = Vec::with_capacity(self.wire.len() + suffix.wire.len());
        wire.extend_from_slice(&self.wire[..self.wire.len() - 1]);
        wire.extend_from_slice(&suffix.wire);
        (wire.len() <= MAX_NAME_LEN).then(|| DomainName {
            wire: wire.into_boxed_slice(),
        })
    }

    /// `label.self`, if the result is a valid name.
    pub fn prepend_label(&self, label: &[u8]) -> Option<DomainName> {
        if label.is_empty() || label.len() > MAX_LABEL_LEN {
            return None;
        }
        let mut wire = Vec::with_capacity(self.wire.len() + label.len() + 1);
        wire.push(u8::try_from(label.len()).ok()?);
        wire.extend(label.iter().map(u8::to_ascii_lowercase));
        wire.extend_from_slice(&self.wire);
        (wire.len() <= MAX_NAME_LEN).then(|| DomainName {
            wire: wire.into_boxed_slice(),
        })
    }

    /// The wildcard name `*.self`.
    pub fn wildcard_child(&self) -> Option<DomainName> {
        self.prepend_label(b"*")
    }

    /// Presentation form relative to `origin`: `@` for the origin itself, the name without the
    /// origin's labels when below it, else the absolute form.
    pub fn to_relative_string(&self, origin: &DomainName) -> String {
        if self == origin {
            return "@".to_string();
        }
        if self.is_subdomain_of(origin) && !origin.is_root() {
            let keep = self.wire.len() - origin.wire.len();
            let mut s = String::new();
            write_labels(&mut s, &self.wire[..keep], false);
            return s;
        }
        self.to_string()
    }

    /// Presentation form the way Route53 returns it: lowercase, trailing dot, and every octet
    /// outside `a-z 0-9 - _ .` written as a three-digit octal escape (so `*` becomes `\052`).
    pub fn to_route53_string(&self) -> String {
        if self.is_root() {
            return ".".to_string();
        }
        let mut s = String::with_capacity(self.wire.len() + 8);
        for label in self.labels() {
            push_route53_label(&mut s, label);
            s.push('.');
        }
        s
    }

    /// The key Route53 sorts hosted zones by (ListHostedZonesByName): the labels in reverse
    /// order, each in [`DomainName::to_route53_string`]'s form and followed by a dot, compared
    /// as strings. `www.example.com` sorts as `com.example.www.`, so `a-b.com` (`com.a-b.`)
    /// comes before `a.com` (`com.a.`), unlike in DNSSEC canonical order.
    pub fn route53_sort_key(&self) -> String {
        let labels: Vec<&[u8]> = self.labels().collect();
        let mut s = String::with_capacity(self.wire.len() + 8);
        for label in labels.iter().rev() {
            push_route53_label(&mut s, label);
            s.push('.');
        }
        if s.is_empty() {
            s.push('.');
        }
        s
    }
}

/// Appends one label the way Route53 writes names: `a-z 0-9 - _` as they are, every other
/// octet as a three-digit octal escape.
fn push_route53_label(s: &mut String, label: &[u8]) {
    for &b in label {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("\\{b:03o}"));
        }
    }
}

/// Iterator over the labels of a [`DomainName`].
pub struct Labels<'a> {
    wire: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let len = usize::from(*self.wire.get(self.pos)?);
        if len == 0 {
            return None;
        }
        let label = self.wire.get(self.pos + 1..self.pos + 1 + len)?;
        self.pos += 1 + len;
        Some(label)
    }
}

/// Whether the wire name `name` equals `ancestor` or lies below it. Both must be lowercase.
pub fn wire_is_subdomain(name: &[u8], ancestor: &[u8]) -> bool {
    if ancestor.len() > name.len() {
        return false;
    }
    let mut pos = 0;
    while name.len() - pos > ancestor.len() {
        pos += 1 + usize::from(name[pos]);
    }
    name.len() - pos == ancestor.len() && &name[pos..] == ancestor
}

/// Whether a presentation-form name is absolute (ends in an unescaped dot).
pub fn is_absolute(text: &str) -> bool {
    if text == "." {
        return true;
    }
    let bytes = text.as_bytes();
    if bytes.last() != Some(&b'.') {
        return false;
    }
    // Count the backslashes before the final dot: an odd count escapes it.
    let slashes = bytes[..bytes.len() - 1]
        .iter()
        .rev()
        .take_while(|&&b| b == b'\\')
        .count();
    slashes % 2 == 0
}

fn push_label(wire: &mut Vec<u8>, label: &[u8], name: &str) -> Result<(), NameError> {
    if label.is_empty() {
        return Err(NameError::EmptyLabel {
            name: name.to_string(),
        });
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(NameError::LabelTooLong {
            name: name.to_string(),
            len: label.len(),
        });
    }
    wire.push(label.len() as u8);
    wire.extend_from_slice(label);
    Ok(())
}

fn write_labels(out: &mut String, wire: &[u8], trailing_dot: bool) {
    let mut pos = 0;
    let mut first = true;
    while pos < wire.len() {
        let len = usize::from(wire[pos]);
        if len == 0 {
            break;
        }
        if !first {
            out.push('.');
        }
        first = false;
        for &b in &wire[pos + 1..pos + 1 + len] {
            match b {
                b'.' | b'\\' | b'"' | b'(' | b')' | b';' | b'@' | b'$' => {
                    out.push('\\');
                    out.push(char::from(b));
                }
                0x21..=0x7e => out.push(char::from(b)),
                _ => out.push_str(&format!("\\{b:03}")),
            }
        }
        pos += 1 + len;
    }
    if trailing_dot {
        out.push('.');
    }
}

impl fmt::Display for DomainName {
    /// Absolute presentation form with a trailing dot.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            return f.write_str(".");
        }
        let mut s = String::with_capacity(self.wire.len());
        write_labels(&mut s, &self.wire, true);
        f.write_str(&s)
    }
}

impl fmt::Debug for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DomainName({self})")
    }
}

impl std::str::FromStr for DomainName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        Self::parse(s)
    }
}

impl Borrow<[u8]> for DomainName {
    fn borrow(&self) -> &[u8] {
        &self.wire
    }
}

impl Ord for DomainName {
    /// DNSSEC canonical order (RFC 4034 section 6.1): labels compared from the rightmost one.
    fn cmp(&self, other: &Self) -> Ordering {
        let a: Vec<&[u8]> = self.labels().collect();
        let b: Vec<&[u8]> = other.labels().collect();
        for (x, y) in a.iter().rev().zip(b.iter().rev()) {
            match x.cmp(y) {
                Ordering::Equal => continue,
                other => return other,
            }
        }
        a.len().cmp(&b.len())
    }
}

impl PartialOrd for DomainName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests;
