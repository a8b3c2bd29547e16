//! Tests for hosted zones and change batches.

use super::*;

fn n(s: &str) -> DomainName {
    DomainName::parse(s).expect("valid name in test")
}

fn zone() -> Zone {
    Zone::new(
        HostedZoneId::parse("Z1TEST").expect("id"),
        n("example.com"),
        "ref-1".into(),
        &[n("ns1.example.net"), n("ns2.example.net")],
    )
    .expect("zone")
}

fn set(name: &str, rtype: RecordType, ttl: u64, values: &[&str]) -> RecordSet {
    let data = values
        .iter()
        .map(|v| RecordData::parse(rtype, v, None).expect("valid value"))
        .collect();
    RecordSet::new(n(name), Ttl::new(ttl).expect("ttl"), rtype, data).expect("valid set")
}

fn change(action: ChangeAction, set: RecordSet) -> Change {
    Change { action, set }
}

#[test]
fn zone_ids() {
    assert_eq!(
        HostedZoneId::parse("/hostedzone/Z123ABC").map(|z| z.to_string()),
        Ok("Z123ABC".into())
    );
    assert!(HostedZoneId::parse("z123").is_err());
    assert!(HostedZoneId::parse("Z").is_err());
    assert!(HostedZoneId::parse("Z12-3").is_err());
    let id = HostedZoneId::from_random(u64::MAX);
    assert!(HostedZoneId::parse(id.as_str()).is_ok());
}

#[test]
fn new_zone_has_soa_and_ns() {
    let z = zone();
    let (soa, ttl) = z.soa().expect("soa");
    assert_eq!((soa.serial, ttl.seconds(), soa.minimum), (1, 900, 86_400));
    assert_eq!(soa.mname, n("ns1.example.net"));
    assert_eq!(z.records.len(), 2);
}

#[test]
fn batches_are_atomic_and_bump_the_serial() {
    use ChangeAction::*;
    let z = zone();
    let a = set("www.example.com", RecordType::A, 60, &["192.0.2.1"]);
    let z1 = z.apply(&[change(Create, a.clone())]).expect("create");
    assert_eq!(z1.serial(), 2);
    // A batch with one bad change applies nothing.
    let b = set("api.example.com", RecordType::A, 60, &["192.0.2.2"]);
    let errs = z1
        .apply(&[change(Create, b), change(Create, a.clone())])
        .expect_err("duplicate create");
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].to_string().contains("but it already exists"),
        "{}",
        errs[0]
    );
    // Delete must match the values and TTL.
    let wrong = set("www.example.com", RecordType::A, 60, &["192.0.2.9"]);
    let errs = z1.apply(&[change(Delete, wrong)]).expect_err("mismatch");
    assert!(matches!(errs[0], ChangeError::ValuesMismatch { .. }));
    let z2 = z1.apply(&[change(Delete, a.clone())]).expect("delete");
    assert_eq!((z2.records.len(), z2.serial()), (2, 3));
    let errs = z2.apply(&[change(Delete, a)]).expect_err("gone");
    assert!(errs[0].to_string().contains("but it was not found"));
}

#[test]
fn route53_rules() {
    use ChangeAction::*;
    let z = zone();
    let check_err = |changes: Vec<Change>, needle: &str| {
        let errs = z.apply(&changes).expect_err("must fail");
        assert!(
            errs.iter().any(|e| e.to_string().contains(needle)),
            "{errs:?}"
        );
    };
    check_err(
        vec![change(
            Create,
            set("www.other.org", RecordType::A, 60, &["192.0.2.1"]),
        )],
        "is not permitted in zone",
    );
    check_err(
        vec![change(
            Create,
            set("example.com", RecordType::CNAME, 60, &["x.org."]),
        )],
        "conflicts with other records",
    );
    check_err(
        vec![
            change(
                Create,
                set("w.example.com", RecordType::CNAME, 60, &["x.org."]),
            ),
            change(
                Create,
                set("w.example.com", RecordType::TXT, 60, &["\"t\""]),
            ),
        ],
        "conflicting RRSet of type CNAME",
    );
    let ns = z
        .records
        .values()
        .find(|s| s.rtype == RecordType::NS)
        .cloned()
        .expect("ns");
    check_err(vec![change(Delete, ns.clone())], "apex NS is not allowed");
    check_err(
        vec![change(
            Create,
            set("x.example.com", RecordType::SOA, 60, &["a. b. 1 2 3 4 5"]),
        )],
        "only allowed at the zone apex",
    );
    // Apex NS may be replaced with UPSERT.
    let mut ns2 = ns;
    ns2.records = vec![RecordData::Ns(n("ns9.example.org"))];
    let z1 = z.apply(&[change(Upsert, ns2)]).expect("upsert apex ns");
    assert_eq!(z1.records.len(), 2);
    // Mixing a simple set and a weighted set of the same name and type is refused.
    let mut w = set("m.example.com", RecordType::A, 60, &["192.0.2.1"]);
    w.policy = RoutingPolicy::Weighted { weight: 1 };
    w.set_identifier = Some("blue".into());
    check_err(
        vec![
            change(Create, w),
            change(
                Create,
                set("m.example.com", RecordType::A, 60, &["192.0.2.2"]),
            ),
        ],
        "cannot mix",
    );
}

#[test]
fn upserted_soa_serial_moves_forward_only() {
    let z = zone();
    let soa = |serial: u32| {
        set(
            "example.com",
            RecordType::SOA,
            900,
            &[&format!(
                "ns1.example.net. hostmaster.example.com. {serial} 7200 900 1209600 86400"
            )],
        )
    };
    let z1 = z
        .apply(&[change(ChangeAction::Upsert, soa(1000))])
        .expect("upsert");
    assert_eq!(z1.serial(), 1000);
    let z2 = z1
        .apply(&[change(ChangeAction::Upsert, soa(5))])
        .expect("upsert");
    assert_eq!(z2.serial(), 1001);
    assert!(serial_gt(1, u32::MAX));
    assert!(!serial_gt(u32::MAX, 1));
}

#[test]
fn diffs_carry_removed_and_added_records() {
    use ChangeAction::*;
    let z0 = zone();
    let z1 = z0
        .apply(&[
            change(
                Create,
                set(
                    "a.example.com",
                    RecordType::A,
                    60,
                    &["192.0.2.1", "192.0.2.2"],
                ),
            ),
            change(
                Create,
                set("b.example.com", RecordType::TXT, 60, &["\"x\""]),
            ),
        ])
        .expect("apply");
    let z2 = z1
        .apply(&[
            change(
                Upsert,
                set(
                    "a.example.com",
                    RecordType::A,
                    60,
                    &["192.0.2.2", "192.0.2.3"],
                ),
            ),
            change(
                Delete,
                set("b.example.com", RecordType::TXT, 60, &["\"x\""]),
            ),
        ])
        .expect("apply");
    let d = ZoneDiff::between(&z1, &z2).expect("serial moved");
    assert_eq!((d.old_soa.1.serial, d.new_soa.1.serial), (2, 3));
    let show = |rs: &[TransferRecord]| {
        rs.iter()
            .map(|(n, t, d)| format!("{n} {t} {d}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        show(&d.removed),
        ["a.example.com. 60 192.0.2.1", "b.example.com. 60 \"x\""]
    );
    assert_eq!(show(&d.added), ["a.example.com. 60 192.0.2.3"]);
    assert!(ZoneDiff::between(&z2, &z2).is_none());
}
