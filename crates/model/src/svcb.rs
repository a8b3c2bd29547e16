//! SVCB/HTTPS service parameters (RFC 9460 section 7): presentation parsing and printing.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::record::SvcParam;

const NAMES: [&str; 7] = [
    "mandatory",
    "alpn",
    "no-default-alpn",
    "port",
    "ipv4hint",
    "ech",
    "ipv6hint",
];

/// The number of a parameter key written as a name or `keyNNNNN`.
pub fn key_number(name: &str) -> Result<u16, String> {
    let lower = name.to_ascii_lowercase();
    if let Some(i) = NAMES.iter().position(|n| *n == lower) {
        return Ok(i as u16);
    }
    lower
        .strip_prefix("key")
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse::<u16>().ok())
        .filter(|&n| n != 65535)
        .ok_or_else(|| format!("unknown SvcParamKey {name:?}"))
}

fn key_name(key: u16) -> String {
    NAMES
        .get(usize::from(key))
        .map(|s| (*s).to_string())
        .unwrap_or_else(|| format!("key{key}"))
}

/// Parses `key` or `key=value` into a parameter with its wire-form value.
pub fn parse_param(key: &str, value: Option<&str>) -> Result<SvcParam, String> {
    let number = key_number(key)?;
    let need = || format!("SvcParam {key} needs a value");
    let unescaped = match value {
        Some(v) => Some(crate::text::unescape(v).ok_or_else(|| format!("bad escape in {v:?}"))?),
        None => None,
    };
    let list = |v: &[u8]| -> Vec<Vec<u8>> { split_commas(v) };
    let value = match number {
        0 => {
            let v = unescaped.ok_or_else(need)?;
            let mut out = Vec::new();
            for item in list(&v) {
                let s = String::from_utf8(item).map_err(|_| "bad key".to_string())?;
                out.extend_from_slice(&key_number(&s)?.to_be_bytes());
            }
            out
        }
        1 => {
            let v = unescaped.ok_or_else(need)?;
            let mut out = Vec::new();
            for id in list(&v) {
                if id.is_empty() || id.len() > 255 {
                    return Err("alpn ids must be 1-255 octets".to_string());
                }
                out.push(id.len() as u8);
                out.extend_from_slice(&id);
            }
            out
        }
        2 => {
            if unescaped.as_ref().is_some_and(|v| !v.is_empty()) {
                return Err("no-default-alpn takes no value".to_string());
            }
            Vec::new()
        }
        3 => {
            let v = unescaped.ok_or_else(need)?;
            let port: u16 = std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| "port must be 0-65535".to_string())?;
            port.to_be_bytes().to_vec()
        }
        4 | 6 => {
            let v = unescaped.ok_or_else(need)?;
            let mut out = Vec::new();
            for item in list(&v) {
                let s = std::str::from_utf8(&item).map_err(|_| "bad address".to_string())?;
                if number == 4 {
                    let a: Ipv4Addr = s.parse().map_err(|_| format!("bad IPv4 hint {s:?}"))?;
                    out.extend_from_slice(&a.octets());
                } else {
                    let a: Ipv6Addr = s.parse().map_err(|_| format!("bad IPv6 hint {s:?}"))?;
                    out.extend_from_slice(&a.octets());
                }
            }
            out
        }
        5 => {
            let v = unescaped.ok_or_else(need)?;
            crate::base64::decode(&v).ok_or_else(|| "ech must be base64".to_string())?
        }
        _ => unescaped.unwrap_or_default(),
    };
    if value.len() > 65_535 {
        return Err("SvcParam value too long".to_string());
    }
    Ok(SvcParam { key: number, value })
}

/// Sorts parameters by key and rejects duplicates and unsatisfied `mandatory` lists.
pub fn check_params(params: &mut [SvcParam]) -> Result<(), String> {
    params.sort_by_key(|p| p.key);
    if params.windows(2).any(|w| w[0].key == w[1].key) {
        return Err("duplicate SvcParamKey".to_string());
    }
    if let Some(m) = params.iter().find(|p| p.key == 0) {
        for k in m.value.chunks(2) {
            let k = u16::from_be_bytes([k[0], *k.get(1).unwrap_or(&0)]);
            if k == 0 || !params.iter().any(|p| p.key == k) {
                return Err(format!("mandatory key {} is missing", key_name(k)));
            }
        }
    }
    Ok(())
}

/// Writes one parameter in presentation format.
pub fn write_param(out: &mut String, p: &SvcParam) {
    out.push_str(&key_name(p.key));
    let v = &p.value;
    let text: Option<String> = match p.key {
        0 => Some(
            v.chunks(2)
                .map(|c| key_name(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
                .collect::<Vec<_>>()
                .join(","),
        ),
        1 => {
            // Two levels, undone in reverse by the parser: the value list escapes ',' and '\\'
            // inside an id, then the presentation format escapes what the lexer would split on.
            let mut list = Vec::new();
            let mut i = 0;
            while i < v.len() {
                let len = usize::from(v[i]);
                if i > 0 {
                    list.push(b',');
                }
                for &b in v.get(i + 1..i + 1 + len).unwrap_or(&[]) {
                    if b == b',' || b == b'\\' {
                        list.push(b'\\');
                    }
                    list.push(b);
                }
                i += 1 + len;
            }
            Some(escape_presentation(&list))
        }
        2 => None,
        3 if v.len() == 2 => Some(u16::from_be_bytes([v[0], v[1]]).to_string()),
        4 => Some(
            v.chunks_exact(4)
                .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]).to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
        6 => Some(
            v.chunks_exact(16)
                .map(|c| {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(c);
                    Ipv6Addr::from(o).to_string()
                })
                .collect::<Vec<_>>()
                .join(","),
        ),
        5 => Some(crate::base64::encode(v)),
        _ => {
            let mut s = String::new();
            crate::text::quote(&mut s, v);
            out.push('=');
            out.push_str(&s);
            return;
        }
    };
    if let Some(t) = text {
        out.push('=');
        out.push_str(&t);
    }
}

/// Presentation-format escaping of an unquoted value: `\\X` for characters the lexer treats
/// specially, `\\DDD` for octets outside printable ASCII.
fn escape_presentation(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' | b'"' | b';' | b'(' | b')' => {
                s.push('\\');
                s.push(char::from(b));
            }
            0x21..=0x7e => s.push(char::from(b)),
            _ => {
                let _ = write!(s, "\\{b:03}");
            }
        }
    }
    s
}

/// Splits on commas not preceded by a backslash (RFC 9460 appendix A.1 value lists), after the
/// first level of escapes was already removed: `\,` has become `\,` -> kept as a literal comma.
fn split_commas(v: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![Vec::new()];
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'\\' if i + 1 < v.len() => {
                if let Some(last) = out.last_mut() {
                    last.push(v[i + 1]);
                }
                i += 2;
            }
            b',' => {
                out.push(Vec::new());
                i += 1;
            }
            b => {
                if let Some(last) = out.last_mut() {
                    last.push(b);
                }
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_and_print() {
        let p = parse_param("alpn", Some("h2,h3")).expect("valid");
        assert_eq!(p.value, b"\x02h2\x02h3");
        let mut s = String::new();
        write_param(&mut s, &p);
        assert_eq!(s, "alpn=h2,h3");
        let p = parse_param("ipv6hint", Some("2001:db8::1")).expect("valid");
        assert_eq!(p.value.len(), 16);
        assert!(parse_param("port", Some("70000")).is_err());
        assert!(parse_param("bogus", None).is_err());
        let mut ps = vec![
            parse_param("port", Some("8443")).expect("valid"),
            parse_param("mandatory", Some("alpn")).expect("valid"),
        ];
        assert!(check_params(&mut ps).is_err());
    }
}
