//! Tests for the authoritative lookup algorithm: each case is a query and the expected answer.

use super::*;
use crate::health::HealthView;
use crate::zone::HostedZoneId;

const ZONE: &str = "$ORIGIN example.com.\n\
$TTL 300\n\
@ SOA ns1 hostmaster 1 7200 900 1209600 60\n\
@ NS ns1\n\
ns1 A 192.0.2.53\n\
www A 192.0.2.1\n\
www AAAA 2001:db8::1\n\
alias CNAME www\n\
chain CNAME alias\n\
loop1 CNAME loop2\n\
loop2 CNAME loop1\n\
out CNAME www.other.org.\n\
dangling CNAME nothere\n\
mail MX 10 mx1\n\
mx1 A 192.0.2.25\n\
a.b.c TXT \"deep\"\n\
*.wild TXT \"wildcard\"\n\
*.wild MX 5 mx1\n\
x.y.wild A 192.0.2.7\n\
*.cw CNAME www\n\
sub NS ns.sub\n\
sub NS ns.elsewhere.net.\n\
sub DS 1 5 1 ABCD\n\
ns.sub A 192.0.2.99\n\
host.sub A 192.0.2.100\n";

fn index() -> ZoneIndex {
    let origin = DomainName::parse("example.com").expect("name");
    let sets = crate::zonefile::parse(ZONE, &origin).expect("zone");
    let zone = Zone::new(
        HostedZoneId::parse("ZT").expect("id"),
        origin,
        "r".into(),
        &[DomainName::parse("ns1.example.com").expect("n")],
    )
    .expect("zone")
    .replace_all(sets)
    .expect("apply");
    ZoneIndex::new(Arc::new(zone))
}

fn render(a: &Answer<'_>) -> String {
    let section = |rrs: &[RrSet<'_>]| {
        rrs.iter()
            .flat_map(|rr| {
                rr.data
                    .iter()
                    .map(move |d| format!("{} {} {} {}", rr.owner, rr.ttl, rr.rtype, d))
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    format!(
        "{:?}{} | {} | {} | {}",
        a.rcode,
        if a.authoritative { " aa" } else { "" },
        section(&a.answer),
        section(&a.authority),
        section(&a.additional)
    )
}

fn check(qname: &str, qtype: &str, expect: &str) {
    let idx = index();
    let name = DomainName::parse(qname).expect("name");
    let qt = match qtype {
        "ANY" => QueryType::Any,
        "HINFO" => QueryType::Other(13),
        t => QueryType::Type(t.parse().expect("type")),
    };
    assert_eq!(
        render(&idx.lookup(&name, qt, 0, &HealthView::all_healthy())),
        expect,
        "{qname} {qtype}"
    );
}

const SOA: &str =
    "example.com. 60 SOA ns1.example.com. hostmaster.example.com. 2 7200 900 1209600 60";

#[test]
fn positive_answers() {
    check(
        "www.example.com",
        "A",
        "NoError aa | www.example.com. 300 A 192.0.2.1 |  | ",
    );
    check(
        "WWW.Example.COM",
        "AAAA",
        "NoError aa | www.example.com. 300 AAAA 2001:db8::1 |  | ",
    );
    check(
        "example.com",
        "NS",
        "NoError aa | example.com. 300 NS ns1.example.com. |  | ns1.example.com. 300 A 192.0.2.53",
    );
    check("mail.example.com", "MX", "NoError aa | mail.example.com. 300 MX 10 mx1.example.com. |  | mx1.example.com. 300 A 192.0.2.25");
}

#[test]
fn negative_answers_carry_the_soa() {
    check(
        "nope.example.com",
        "A",
        &format!("NxDomain aa |  | {SOA} | "),
    );
    check(
        "www.example.com",
        "TXT",
        &format!("NoError aa |  | {SOA} | "),
    );
    check(
        "www.example.com",
        "HINFO",
        &format!("NoError aa |  | {SOA} | "),
    );
    // Empty non-terminals exist: NODATA, not NXDOMAIN.
    check("b.c.example.com", "A", &format!("NoError aa |  | {SOA} | "));
    check("c.example.com", "TXT", &format!("NoError aa |  | {SOA} | "));
    check(
        "x.b.c.example.com",
        "A",
        &format!("NxDomain aa |  | {SOA} | "),
    );
}

#[test]
fn cname_chains() {
    check("alias.example.com", "A", "NoError aa | alias.example.com. 300 CNAME www.example.com.; www.example.com. 300 A 192.0.2.1 |  | ");
    check("chain.example.com", "A", "NoError aa | chain.example.com. 300 CNAME alias.example.com.; alias.example.com. 300 CNAME www.example.com.; www.example.com. 300 A 192.0.2.1 |  | ");
    check(
        "alias.example.com",
        "CNAME",
        "NoError aa | alias.example.com. 300 CNAME www.example.com. |  | ",
    );
    check(
        "out.example.com",
        "A",
        "NoError aa | out.example.com. 300 CNAME www.other.org. |  | ",
    );
    check("loop1.example.com", "A", "NoError aa | loop1.example.com. 300 CNAME loop2.example.com.; loop2.example.com. 300 CNAME loop1.example.com. |  | ");
    check(
        "dangling.example.com",
        "A",
        &format!("NxDomain aa | dangling.example.com. 300 CNAME nothere.example.com. | {SOA} | "),
    );
    check(
        "alias.example.com",
        "TXT",
        &format!("NoError aa | alias.example.com. 300 CNAME www.example.com. | {SOA} | "),
    );
}

#[test]
fn wildcards() {
    check(
        "foo.wild.example.com",
        "TXT",
        "NoError aa | foo.wild.example.com. 300 TXT \"wildcard\" |  | ",
    );
    check(
        "a.b.wild.example.com",
        "TXT",
        "NoError aa | a.b.wild.example.com. 300 TXT \"wildcard\" |  | ",
    );
    check("foo.wild.example.com", "MX", "NoError aa | foo.wild.example.com. 300 MX 5 mx1.example.com. |  | mx1.example.com. 300 A 192.0.2.25");
    check(
        "foo.wild.example.com",
        "A",
        &format!("NoError aa |  | {SOA} | "),
    );
    // `y.wild` exists as an empty non-terminal, so the wildcard does not apply to it (RFC 4592).
    check(
        "y.wild.example.com",
        "TXT",
        &format!("NoError aa |  | {SOA} | "),
    );
    // Below an existing name the wildcard of that name applies, not `*.wild`.
    check(
        "z.y.wild.example.com",
        "TXT",
        &format!("NxDomain aa |  | {SOA} | "),
    );
    check(
        "*.wild.example.com",
        "TXT",
        "NoError aa | *.wild.example.com. 300 TXT \"wildcard\" |  | ",
    );
    check("q.cw.example.com", "A", "NoError aa | q.cw.example.com. 300 CNAME www.example.com.; www.example.com. 300 A 192.0.2.1 |  | ");
}

#[test]
fn referrals_and_glue() {
    let referral = "NoError | | sub.example.com. 300 NS ns.sub.example.com.; sub.example.com. 300 NS ns.elsewhere.net.; sub.example.com. 300 DS 1 5 1 ABCD | ns.sub.example.com. 300 A 192.0.2.99";
    let referral = referral.replacen(" | |", " |  |", 1);
    check("sub.example.com", "A", &referral);
    check("host.sub.example.com", "A", &referral);
    check("deep.host.sub.example.com", "TXT", &referral);
    // DS is answered by the parent side of the cut.
    check(
        "sub.example.com",
        "DS",
        "NoError aa | sub.example.com. 300 DS 1 5 1 ABCD |  | ",
    );
}

#[test]
fn any_is_minimal() {
    check(
        "www.example.com",
        "ANY",
        "NoError aa | www.example.com. 300 A 192.0.2.1 |  | ",
    );
}

#[test]
fn routing_policies() {
    use crate::record::{Failover, RecordSet, RoutingPolicy, Ttl};
    use crate::zone::{Change, ChangeAction};
    let base = index();
    let mk = |id: &str, policy: RoutingPolicy, ip: &str| {
        let mut s = RecordSet::new(
            DomainName::parse("lb.example.com").expect("n"),
            Ttl::new(30).expect("ttl"),
            RecordType::A,
            vec![RecordData::A(ip.parse().expect("ip"))],
        )
        .expect("set");
        s.policy = policy;
        s.set_identifier = Some(id.into());
        Change {
            action: ChangeAction::Create,
            set: s,
        }
    };
    let apply =
        |changes: &[Change]| ZoneIndex::new(Arc::new(base.zone().apply(changes).expect("apply")));
    let q = DomainName::parse("lb.example.com").expect("n");
    let ips = |idx: &ZoneIndex, random: u32| -> Vec<String> {
        idx.lookup(
            &q,
            QueryType::Type(RecordType::A),
            random,
            &HealthView::all_healthy(),
        )
        .answer
        .iter()
        .flat_map(|rr| rr.data.iter().map(|d| d.to_string()))
        .collect()
    };
    let w = apply(&[
        mk("a", RoutingPolicy::Weighted { weight: 1 }, "192.0.2.1"),
        mk("b", RoutingPolicy::Weighted { weight: 3 }, "192.0.2.2"),
    ]);
    let picks: Vec<_> = (0..4).map(|r| ips(&w, r).join(",")).collect();
    assert_eq!(picks, ["192.0.2.1", "192.0.2.2", "192.0.2.2", "192.0.2.2"]);
    let f = apply(&[
        mk(
            "s",
            RoutingPolicy::Failover(Failover::Secondary),
            "192.0.2.9",
        ),
        mk("p", RoutingPolicy::Failover(Failover::Primary), "192.0.2.8"),
    ]);
    assert_eq!(ips(&f, 0), ["192.0.2.8"]);
    let m = apply(&[
        mk("1", RoutingPolicy::MultiValue, "192.0.2.1"),
        mk("2", RoutingPolicy::MultiValue, "192.0.2.2"),
    ]);
    assert_eq!(ips(&m, 0).len(), 2);
}

#[test]
fn most_specific_zone() {
    let mut map = HashMap::new();
    map.insert(DomainName::parse("example.com").expect("n"), 1);
    map.insert(DomainName::parse("sub.example.com").expect("n"), 2);
    let find = |q: &str| most_specific(&map, DomainName::parse(q).expect("n").wire()).copied();
    assert_eq!(find("a.sub.example.com"), Some(2));
    assert_eq!(find("sub.example.com"), Some(2));
    assert_eq!(find("www.example.com"), Some(1));
    assert_eq!(find("example.org"), None);
    assert_eq!(find("com"), None);
}

#[test]
fn self_referencing_aliases_terminate() {
    use crate::record::{AliasTarget, RecordSet, RoutingPolicy, Ttl};
    use crate::zone::{Change, ChangeAction};
    let base = index();
    let name = DomainName::parse("www.example.com").expect("n");
    let mut plain = RecordSet::new(
        name.clone(),
        Ttl::new(30).expect("ttl"),
        RecordType::A,
        vec![RecordData::A("192.0.2.9".parse().expect("ip"))],
    )
    .expect("set");
    plain.policy = RoutingPolicy::MultiValue;
    plain.set_identifier = Some("plain".into());
    let mut alias = plain.clone();
    alias.records.clear();
    alias.set_identifier = Some("loop".into());
    alias.alias = Some(AliasTarget {
        hosted_zone_id: "ZT".into(),
        dns_name: name.clone(),
        evaluate_target_health: false,
    });
    let old = base
        .zone()
        .records
        .values()
        .find(|s| s.name == name && s.rtype == RecordType::A)
        .cloned()
        .expect("www A");
    let zone = base
        .zone()
        .apply(&[
            Change {
                action: ChangeAction::Delete,
                set: old,
            },
            Change {
                action: ChangeAction::Create,
                set: plain,
            },
            Change {
                action: ChangeAction::Create,
                set: alias,
            },
        ])
        .expect("apply");
    let idx = ZoneIndex::new(Arc::new(zone.clone()));
    // Terminates (the alias depth is bounded) instead of recursing forever.
    let _ = idx.lookup(
        &name,
        QueryType::Type(RecordType::A),
        0,
        &HealthView::all_healthy(),
    );
    // Transfers carry one RRset per name and type, values de-duplicated.
    let www: Vec<_> = zone
        .transfer_records()
        .into_iter()
        .filter(|(n, _, d)| n == &name && d.rtype() == RecordType::A)
        .collect();
    assert_eq!(www.len(), 1, "{www:?}");
}

#[test]
fn occluded_addresses_are_not_additional_data() {
    use crate::record::{RecordSet, Ttl};
    use crate::zone::{Change, ChangeAction};
    let base = index();
    let mx = RecordSet::new(
        DomainName::parse("occ.example.com").expect("n"),
        Ttl::new(60).expect("ttl"),
        RecordType::MX,
        vec![RecordData::Mx {
            preference: 1,
            exchange: DomainName::parse("ns.sub.example.com").expect("n"),
        }],
    )
    .expect("set");
    let idx = ZoneIndex::new(Arc::new(
        base.zone()
            .apply(&[Change {
                action: ChangeAction::Create,
                set: mx,
            }])
            .expect("apply"),
    ));
    let q = DomainName::parse("occ.example.com").expect("n");
    let a = idx.lookup(
        &q,
        QueryType::Type(RecordType::MX),
        0,
        &HealthView::all_healthy(),
    );
    assert_eq!(a.answer.len(), 1);
    assert!(
        a.additional.is_empty(),
        "glue below a cut is not authoritative additional data"
    );
}

/// A zone with `lb.example.com A` record sets: (set identifier, policy, address, health check).
fn routed(sets: &[(&str, crate::record::RoutingPolicy, &str, Option<&str>)]) -> ZoneIndex {
    use crate::record::{RecordSet, Ttl};
    use crate::zone::{Change, ChangeAction};
    let changes: Vec<Change> = sets
        .iter()
        .map(|(id, policy, ip, check)| {
            let mut s = RecordSet::new(
                DomainName::parse("lb.example.com").expect("n"),
                Ttl::new(30).expect("ttl"),
                RecordType::A,
                vec![RecordData::A(ip.parse().expect("ip"))],
            )
            .expect("set");
            s.policy = policy.clone();
            s.set_identifier = Some(id.to_string());
            s.health_check_id = check.map(str::to_string);
            Change {
                action: ChangeAction::Create,
                set: s,
            }
        })
        .collect();
    ZoneIndex::new(Arc::new(index().zone().apply(&changes).expect("apply")))
}

/// The addresses answered for `lb.example.com A`, sorted.
fn answered(idx: &ZoneIndex, random: u32, unhealthy: &[&str]) -> Vec<String> {
    let q = DomainName::parse("lb.example.com").expect("n");
    let health = HealthView::with_unhealthy(unhealthy.iter().copied());
    let mut ips: Vec<String> = idx
        .lookup(&q, QueryType::Type(RecordType::A), random, &health)
        .answer
        .iter()
        .flat_map(|rr| rr.data.iter().map(|d| d.to_string()))
        .collect();
    ips.sort();
    ips
}

#[test]
fn failover_follows_health() {
    use crate::record::{Failover, RoutingPolicy};
    let p = RoutingPolicy::Failover(Failover::Primary);
    let s = RoutingPolicy::Failover(Failover::Secondary);
    // (primary's check, secondary's check, unhealthy checks, answer)
    type Case<'a> = (Option<&'a str>, Option<&'a str>, &'a [&'a str], &'a str);
    let cases: &[Case<'_>] = &[
        (Some("hp"), Some("hs"), &[], "192.0.2.1"),
        (Some("hp"), Some("hs"), &["hp"], "192.0.2.2"),
        (Some("hp"), None, &["hp"], "192.0.2.2"),
        // Both unhealthy: Route53 answers the primary.
        (Some("hp"), Some("hs"), &["hp", "hs"], "192.0.2.1"),
        (Some("hp"), Some("hs"), &["hs"], "192.0.2.1"),
        // A primary without a check is always healthy.
        (None, Some("hs"), &["hp"], "192.0.2.1"),
    ];
    for &(pc, sc, down, expect) in cases {
        let idx = routed(&[
            ("s", s.clone(), "192.0.2.2", sc),
            ("p", p.clone(), "192.0.2.1", pc),
        ]);
        assert_eq!(
            answered(&idx, 0, down),
            [expect],
            "{pc:?} {sc:?} down {down:?}"
        );
    }
}

#[test]
fn weighted_sets_with_failing_checks_are_left_out() {
    use crate::record::RoutingPolicy;
    let w = |weight| RoutingPolicy::Weighted { weight };
    let idx = routed(&[
        ("a", w(100), "192.0.2.1", Some("ha")),
        ("b", w(1), "192.0.2.2", Some("hb")),
        ("z", w(0), "192.0.2.3", None),
    ]);
    let picks = |down: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = (0..202).flat_map(|r| answered(&idx, r, down)).collect();
        all.sort();
        all.dedup();
        all
    };
    assert_eq!(
        picks(&[]),
        ["192.0.2.1", "192.0.2.2"],
        "weight 0 is not answered"
    );
    assert_eq!(picks(&["ha"]), ["192.0.2.2"]);
    // Only the zero-weight set is healthy: it answers.
    assert_eq!(picks(&["ha", "hb"]), ["192.0.2.3"]);
    let both = routed(&[
        ("a", w(1), "192.0.2.1", Some("ha")),
        ("b", w(1), "192.0.2.2", Some("hb")),
    ]);
    let mut seen: Vec<String> = (0..4)
        .flat_map(|r| answered(&both, r, &["ha", "hb"]))
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen,
        ["192.0.2.1", "192.0.2.2"],
        "all unhealthy: all considered healthy"
    );
}

#[test]
fn multivalue_answers_up_to_eight_healthy_sets() {
    use crate::record::RoutingPolicy;
    let ids: Vec<String> = (1..=10).map(|i| format!("m{i}")).collect();
    let ips: Vec<String> = (1..=10).map(|i| format!("192.0.2.{i}")).collect();
    let checks: Vec<String> = (1..=10).map(|i| format!("h{i}")).collect();
    let sets: Vec<_> = (0..10)
        .map(|i| {
            (
                ids[i].as_str(),
                RoutingPolicy::MultiValue,
                ips[i].as_str(),
                Some(checks[i].as_str()),
            )
        })
        .collect();
    let idx = routed(&sets);
    // Ten healthy sets: eight answered, and which eight depends on the random number.
    assert_eq!(answered(&idx, 0, &[]).len(), MAX_MULTIVALUE);
    assert_ne!(answered(&idx, 0, &[]), answered(&idx, 5, &[]));
    for r in 0..10 {
        let a = answered(&idx, r, &["h2", "h4", "h6", "h8", "h10"]);
        assert_eq!(
            a,
            [
                "192.0.2.1",
                "192.0.2.3",
                "192.0.2.5",
                "192.0.2.7",
                "192.0.2.9"
            ],
            "only healthy sets"
        );
    }
    let all: Vec<&str> = checks.iter().map(String::as_str).collect();
    assert_eq!(
        answered(&idx, 3, &all).len(),
        MAX_MULTIVALUE,
        "all unhealthy: up to eight of them"
    );
}
