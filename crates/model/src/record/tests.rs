//! Tests for record types and values.

use super::*;

fn n(s: &str) -> DomainName {
    DomainName::parse(s).expect("valid name in test")
}

/// Parses `value` as `rtype` (origin `example.com.`) and checks its presentation form.
fn check(rtype: &str, value: &str, expect: &str) {
    let rtype: RecordType = rtype.parse().expect("known type");
    let origin = n("example.com");
    let data = RecordData::parse(rtype, value, Some(&origin))
        .unwrap_or_else(|e| panic!("{rtype} {value:?}: {e}"));
    assert_eq!(data.rtype(), rtype);
    assert_eq!(data.to_string(), expect, "{rtype} {value:?}");
    // The printed form parses back to the same data.
    assert_eq!(RecordData::parse(rtype, expect, None), Ok(data));
}

#[test]
fn every_type_round_trips() {
    check("A", "192.0.2.1", "192.0.2.1");
    check("aaaa", "2001:DB8::1", "2001:db8::1");
    check("NS", "ns1", "ns1.example.com.");
    check("CNAME", "target.other.org.", "target.other.org.");
    check("PTR", "host.example.com.", "host.example.com.");
    check(
        "SOA",
        "ns1 hostmaster 1 2h 15m 2w 1d",
        "ns1.example.com. hostmaster.example.com. 1 7200 900 1209600 86400",
    );
    check("MX", "10 mail", "10 mail.example.com.");
    check(
        "TXT",
        "\"v=spf1 -all\" \"x\\\"y\"",
        "\"v=spf1 -all\" \"x\\\"y\"",
    );
    check("TXT", "unquoted", "\"unquoted\"");
    check("SPF", "\"v=spf1 -all\"", "\"v=spf1 -all\"");
    check("SRV", "0 5 5060 sip", "0 5 5060 sip.example.com.");
    check(
        "NAPTR",
        "100 10 \"U\" \"E2U+sip\" \"!^.*$!sip:info@example.com!\" .",
        "100 10 \"U\" \"E2U+sip\" \"!^.*$!sip:info@example.com!\" .",
    );
    check(
        "DS",
        "60485 5 1 2BB183AF5F22588179A53B0A 98631FAD1A292118",
        "60485 5 1 2BB183AF5F22588179A53B0A98631FAD1A292118",
    );
    check("SSHFP", "4 2 abcdef0123", "4 2 ABCDEF0123");
    check("TLSA", "3 1 1 0D6FCE", "3 1 1 0D6FCE");
    check(
        "SVCB",
        "1 . alpn=h2,h3 port=8443",
        "1 . alpn=h2,h3 port=8443",
    );
    check("HTTPS", "0 svc", "0 svc.example.com.");
    check(
        "HTTPS",
        "1 . ipv4hint=192.0.2.1,192.0.2.2 no-default-alpn alpn=h2",
        "1 . alpn=h2 no-default-alpn ipv4hint=192.0.2.1,192.0.2.2",
    );
    check(
        "CAA",
        "0 issue \"letsencrypt.org\"",
        "0 issue \"letsencrypt.org\"",
    );
}

#[test]
fn bad_values_are_rejected() {
    let bad = |rtype: RecordType, value: &str| {
        assert!(
            RecordData::parse(rtype, value, None).is_err(),
            "{rtype} {value:?} accepted"
        )
    };
    bad(RecordType::A, "300.1.1.1");
    bad(RecordType::A, "192.0.2.1 extra");
    bad(RecordType::AAAA, "192.0.2.1");
    bad(RecordType::MX, "mail.example.com.");
    bad(RecordType::MX, "70000 mail.");
    bad(RecordType::TXT, "\"unterminated");
    bad(RecordType::TXT, &format!("\"{}\"", "a".repeat(256)));
    bad(RecordType::DS, "1 2 3 ABC");
    bad(RecordType::CAA, "0 is-sue \"x\"");
    bad(RecordType::HTTPS, "0 . alpn=h2");
    bad(RecordType::SOA, "ns1. host. 1 2 3 4");
    bad(RecordType::CNAME, "a..b.");
}

#[test]
fn types_and_ttls() {
    assert_eq!("https".parse::<RecordType>(), Ok(RecordType::HTTPS));
    assert!("ANY".parse::<RecordType>().is_err());
    for t in RecordType::ALL {
        assert_eq!(RecordType::from_code(t.code()), Some(*t));
    }
    assert_eq!(Ttl::parse("1h30m").map(Ttl::seconds), Ok(5400));
    assert_eq!(Ttl::parse("300").map(Ttl::seconds), Ok(300));
    assert!(Ttl::parse("2147483648").is_err());
    assert!(Ttl::parse("5x").is_err());
    assert!(Ttl::parse("h").is_err());
}

#[test]
fn record_set_invariants() {
    let a = |s: &str| RecordData::A(s.parse().expect("ip"));
    let ttl = Ttl::new(60).expect("ttl");
    assert!(RecordSet::new(n("x.example"), ttl, RecordType::A, vec![a("192.0.2.1")]).is_ok());
    assert!(RecordSet::new(n("x.example"), ttl, RecordType::A, vec![]).is_err());
    assert!(RecordSet::new(
        n("x.example"),
        ttl,
        RecordType::A,
        vec![a("192.0.2.1"), a("192.0.2.1")]
    )
    .is_err());
    assert!(RecordSet::new(n("x.example"), ttl, RecordType::AAAA, vec![a("192.0.2.1")]).is_err());
    let c = |s: &str| RecordData::Cname(n(s));
    assert!(RecordSet::new(
        n("x.example"),
        ttl,
        RecordType::CNAME,
        vec![c("a."), c("b.")]
    )
    .is_err());
    let mut weighted =
        RecordSet::new(n("x.example"), ttl, RecordType::A, vec![a("192.0.2.1")]).expect("valid");
    weighted.policy = RoutingPolicy::Weighted { weight: 10 };
    assert!(weighted.check().is_err());
    weighted.set_identifier = Some("blue".into());
    assert!(weighted.check().is_ok());
}

#[test]
fn alpn_ids_with_special_octets_round_trip() {
    // Ids holding a comma, a backslash, a quote and a control octet.
    let ids: [&[u8]; 4] = [b"a,b", b"c\\d", b"q\"", b"\x09x"];
    let mut wire = Vec::new();
    for id in ids {
        wire.push(id.len() as u8);
        wire.extend_from_slice(id);
    }
    let data = RecordData::Https {
        priority: 1,
        target: DomainName::root(),
        params: vec![crate::record::SvcParam {
            key: 1,
            value: wire,
        }],
    };
    let printed = data.to_string();
    assert_eq!(
        RecordData::parse(RecordType::HTTPS, &printed, None),
        Ok(data),
        "{printed}"
    );
}
