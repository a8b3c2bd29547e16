//! RFC 1035 master files: parsing into record sets (zone import) and writing a zone out.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::name::DomainName;
use crate::record::{RecordData, RecordSet, RecordType, RoutingPolicy, Ttl};
use crate::text;
use crate::zone::{RecordKey, RecordTypeOrd, Zone};

/// A master-file error, with the 1-based line it was found on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ZoneFileError {
    pub line: usize,
    pub reason: String,
}

/// Parses master-file text for the zone `origin` into record sets. Records of one name and
/// type are joined into one set, whose TTL is the lowest of theirs (RFC 2181 section 5.2).
/// `$ORIGIN` and `$TTL` are understood; `$INCLUDE` and `$GENERATE` are refused.
pub fn parse(input: &str, origin: &DomainName) -> Result<Vec<RecordSet>, ZoneFileError> {
    let entries = text::entries(input).map_err(|e| ZoneFileError {
        line: match e {
            text::LexError::UnterminatedQuote { line }
            | text::LexError::UnbalancedParen { line }
            | text::LexError::DanglingEscape { line } => line,
        },
        reason: e.to_string(),
    })?;
    let mut current_origin = origin.clone();
    let mut default_ttl: Option<Ttl> = None;
    let mut last_owner: Option<DomainName> = None;
    let mut last_ttl: Option<Ttl> = None;
    let mut sets: BTreeMap<RecordKey, RecordSet> = BTreeMap::new();

    for entry in entries {
        let line = entry.line;
        let err = |reason: String| ZoneFileError { line, reason };
        let toks = &entry.tokens;
        let first = &toks[0];
        if !entry.owner_omitted && !first.quoted && first.text.starts_with('$') {
            let arg = toks
                .get(1)
                .ok_or_else(|| err(format!("{} needs an argument", first.text)))?;
            match first.text.to_ascii_uppercase().as_str() {
                "$ORIGIN" => {
                    current_origin = DomainName::parse_relative(&arg.text, &current_origin)
                        .map_err(|e| err(e.to_string()))?;
                }
                "$TTL" => {
                    default_ttl = Some(Ttl::parse(&arg.text).map_err(|e| err(e.to_string()))?);
                }
                other => return Err(err(format!("directive {other} is not supported"))),
            }
            continue;
        }
        let mut i = 0;
        let owner = if entry.owner_omitted {
            last_owner
                .clone()
                .ok_or_else(|| err("record without an owner name".to_string()))?
        } else {
            i = 1;
            DomainName::parse_relative(&first.text, &current_origin)
                .map_err(|e| err(e.to_string()))?
        };
        let mut ttl: Option<Ttl> = None;
        let mut rtype: Option<RecordType> = None;
        while let Some(tok) = toks.get(i) {
            i += 1;
            let t = tok.text.as_str();
            if t.as_bytes().first().is_some_and(u8::is_ascii_digit) && ttl.is_none() {
                ttl = Some(Ttl::parse(t).map_err(|e| err(e.to_string()))?);
            } else if t.eq_ignore_ascii_case("IN") {
                continue;
            } else if ["CH", "HS", "CS", "NONE", "ANY"]
                .iter()
                .any(|c| c.eq_ignore_ascii_case(t))
            {
                return Err(err(format!("class {t} is not supported; only IN")));
            } else {
                rtype = Some(
                    t.parse()
                        .map_err(|_| err(format!("unknown or unsupported record type {t:?}")))?,
                );
                break;
            }
        }
        let rtype = rtype.ok_or_else(|| err("missing record type".to_string()))?;
        let data = RecordData::from_tokens(rtype, &toks[i..], Some(&current_origin))
            .map_err(|reason| err(format!("{rtype}: {reason}")))?;
        let ttl = match ttl.or(default_ttl).or(last_ttl) {
            Some(t) => t,
            None => match &data {
                RecordData::Soa(soa) => {
                    Ttl::new(u64::from(soa.minimum)).map_err(|e| err(e.to_string()))?
                }
                _ => return Err(err("no TTL given and no $TTL before".to_string())),
            },
        };
        last_owner = Some(owner.clone());
        last_ttl = Some(ttl);
        let key = RecordKey {
            name: owner.clone(),
            rtype: RecordTypeOrd(rtype),
            set_identifier: None,
        };
        match sets.get_mut(&key) {
            Some(set) => {
                if rtype == RecordType::CNAME || rtype == RecordType::SOA {
                    return Err(err(format!("{owner} has more than one {rtype} record")));
                }
                if !set.records.contains(&data) {
                    set.records.push(data);
                }
                set.ttl = set.ttl.min(ttl);
            }
            None => {
                let set = RecordSet::new(owner, ttl, rtype, vec![data])
                    .map_err(|e| err(e.to_string()))?;
                sets.insert(key, set);
            }
        }
    }
    Ok(sets.into_values().collect())
}

/// Writes a zone as a master file: SOA first, then every record set in canonical order, names
/// absolute. Record sets under a routing policy or aliases have no master-file form and are
/// written as comments.
pub fn write(zone: &Zone) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "$ORIGIN {}", zone.name);
    let soa_first = zone
        .records
        .values()
        .filter(|s| s.rtype == RecordType::SOA)
        .chain(zone.records.values().filter(|s| s.rtype != RecordType::SOA));
    for set in soa_first {
        let comment = if set.alias.is_some() || set.policy != RoutingPolicy::Simple {
            "; "
        } else {
            ""
        };
        if let Some(alias) = &set.alias {
            let _ = writeln!(out, "; {} ALIAS {} {}", set.name, set.rtype, alias.dns_name);
            continue;
        }
        for data in &set.records {
            let _ = writeln!(
                out,
                "{comment}{}\t{}\tIN\t{}\t{}",
                set.name, set.ttl, set.rtype, data
            );
        }
        if let Some(id) = &set.set_identifier {
            let _ = writeln!(out, "; ^ set-identifier {id:?} policy {:?}", set.policy);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> DomainName {
        DomainName::parse(s).expect("valid name")
    }

    const ZONE: &str = "$ORIGIN example.com.\n\
$TTL 1h\n\
@\tIN SOA ns1 hostmaster ( 2024010101 2h 15m 2w 1d )\n\
\tIN NS ns1\n\
\tNS ns2.other.net.\n\
ns1 300 IN A 192.0.2.53\n\
www IN 60 A 192.0.2.1\n\
www A 192.0.2.2\n\
mail MX 10 mail\n\
mail A 192.0.2.25\n\
*.wild TXT \"hello world\"\n\
$ORIGIN sub.example.com.\n\
deep CNAME www.example.com.\n";

    #[test]
    fn parses_a_master_file() {
        let sets = parse(ZONE, &n("example.com")).expect("valid zone");
        let find = |name: &str, t: RecordType| {
            sets.iter()
                .find(|s| s.name == n(name) && s.rtype == t)
                .unwrap_or_else(|| panic!("{name} {t} missing"))
        };
        assert_eq!(find("example.com", RecordType::NS).records.len(), 2);
        assert_eq!(find("example.com", RecordType::NS).ttl.seconds(), 3600);
        assert_eq!(find("ns1.example.com", RecordType::A).ttl.seconds(), 300);
        let www = find("www.example.com", RecordType::A);
        assert_eq!((www.records.len(), www.ttl.seconds()), (2, 60));
        assert_eq!(find("*.wild.example.com", RecordType::TXT).records.len(), 1);
        assert_eq!(
            find("deep.sub.example.com", RecordType::CNAME).records,
            vec![RecordData::Cname(n("www.example.com"))]
        );
        match &find("example.com", RecordType::SOA).records[0] {
            RecordData::Soa(soa) => assert_eq!((soa.serial, soa.expire), (2024010101, 1_209_600)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_name_the_line() {
        let check = |input: &str, line: usize, needle: &str| {
            let e = parse(input, &n("example.com")).expect_err("must fail");
            assert_eq!(e.line, line, "{e}");
            assert!(e.to_string().contains(needle), "{e}");
        };
        check("$TTL 60\nwww A 1.2.3.4\nbad A 999.1.1.1\n", 3, "IPv4");
        check(
            "www 60 A 1.2.3.4\n$INCLUDE /etc/passwd\n",
            2,
            "not supported",
        );
        check("www A 1.2.3.4\n", 1, "no TTL");
        check("$TTL 60\nwww CH A 1.2.3.4\n", 2, "class");
        check("$TTL 60\nwww BOGUS x\n", 2, "unknown");
        check("$TTL 60\nx TXT \"open\n", 2, "unterminated");
        check("$TTL 60\n a A 1.2.3.4\n", 2, "without an owner");
    }

    #[test]
    fn export_reimports_identically() {
        let sets = parse(ZONE, &n("example.com")).expect("valid zone");
        let zone = Zone::new(
            crate::zone::HostedZoneId::parse("ZTEST").expect("id"),
            n("example.com"),
            "ref".into(),
            &[n("ns1.example.com")],
        )
        .expect("zone")
        .replace_all(sets)
        .expect("apply");
        let text = write(&zone);
        let again = parse(&text, &n("example.com")).expect("reparse");
        let zone2 = Zone::new(zone.id.clone(), zone.name.clone(), "ref".into(), &[n("x.")])
            .expect("zone")
            .replace_all(again)
            .expect("apply");
        let a: Vec<_> = zone
            .records
            .values()
            .filter(|s| s.rtype != RecordType::SOA)
            .collect();
        let b: Vec<_> = zone2
            .records
            .values()
            .filter(|s| s.rtype != RecordType::SOA)
            .collect();
        assert_eq!(a, b);
        assert!(
            text.starts_with("$ORIGIN example.com.\nexample.com.\t3600\tIN\tSOA"),
            "{text}"
        );
    }
}
