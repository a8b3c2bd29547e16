//! Tests for the store: atomic writes, durability across reopen, snapshots and generations.

use super::*;
use model::record::{RecordData, RecordType, Ttl};
use model::zone::ChangeAction;

fn n(s: &str) -> DomainName {
    DomainName::parse(s).expect("valid name")
}

fn a_change(action: ChangeAction, name: &str, ip: &str) -> Change {
    let set = RecordSet::new(
        n(name),
        Ttl::new(60).expect("ttl"),
        RecordType::A,
        vec![RecordData::A(ip.parse().expect("ip"))],
    )
    .expect("set");
    Change { action, set }
}

#[test]
fn zones_and_records_persist_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = {
        let store = Store::open(dir.path()).expect("open");
        let (zone, _) = store
            .create_zone(
                n("example.com"),
                "ref-1".into(),
                Some("hello".into()),
                &[n("ns1.example.net")],
            )
            .expect("create");
        store
            .change_records(
                &zone.id,
                &[a_change(
                    ChangeAction::Create,
                    "www.example.com",
                    "192.0.2.1",
                )],
            )
            .expect("change");
        zone.id.clone()
    };
    let store = Store::open(dir.path()).expect("reopen");
    let zone = store.zone(&id).expect("zone");
    assert_eq!(zone.records.len(), 3);
    assert_eq!(zone.serial(), 2);
    assert_eq!(zone.comment.as_deref(), Some("hello"));
    assert!(store.zone_by_name(&n("example.com")).is_ok());
    // Generations keep increasing across restarts.
    assert_eq!(store.snapshot().generation, 3);
}

#[test]
fn a_second_process_cannot_open_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _store = Store::open(dir.path()).expect("open");
    assert!(matches!(
        Store::open(dir.path()),
        Err(StoreError::Locked { .. })
    ));
}

#[test]
fn invalid_batches_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let (zone, _) = store
        .create_zone(n("example.com"), "r".into(), None, &[n("ns1.example.net")])
        .expect("create");
    let generation = store.snapshot().generation;
    let err = store
        .change_records(
            &zone.id,
            &[
                a_change(ChangeAction::Create, "ok.example.com", "192.0.2.1"),
                a_change(ChangeAction::Delete, "missing.example.com", "192.0.2.1"),
            ],
        )
        .expect_err("must fail");
    assert!(
        matches!(err, StoreError::InvalidChangeBatch(ref e) if e.len() == 1),
        "{err}"
    );
    assert_eq!(store.snapshot().generation, generation);
    assert_eq!(store.zone(&zone.id).expect("zone").records.len(), 2);
}

#[test]
fn caller_references_and_deletion_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let (zone, _) = store
        .create_zone(n("example.com"), "r".into(), None, &[n("ns1.example.net")])
        .expect("create");
    let err = store
        .create_zone(n("other.com"), "r".into(), None, &[n("ns1.example.net")])
        .expect_err("reused caller reference");
    assert!(
        matches!(err, StoreError::HostedZoneAlreadyExists { zone_id, .. } if zone_id == zone.id)
    );
    store
        .change_records(
            &zone.id,
            &[a_change(
                ChangeAction::Create,
                "www.example.com",
                "192.0.2.1",
            )],
        )
        .expect("change");
    assert!(matches!(
        store.delete_zone(&zone.id),
        Err(StoreError::HostedZoneNotEmpty(_))
    ));
    store
        .change_records(
            &zone.id,
            &[a_change(
                ChangeAction::Delete,
                "www.example.com",
                "192.0.2.1",
            )],
        )
        .expect("change");
    store.delete_zone(&zone.id).expect("delete");
    assert!(store.zone(&zone.id).is_err());
    assert!(store.snapshot().serving.is_empty());
    drop(store);
    let store = Store::open(dir.path()).expect("reopen");
    assert!(store.zone_metas().is_empty());
}

#[test]
fn snapshots_serve_the_oldest_zone_of_a_name_and_the_most_specific_zone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let (first, _) = store
        .create_zone(n("example.com"), "1".into(), None, &[n("ns1.example.net")])
        .expect("create");
    let (_second, _) = store
        .create_zone(n("example.com"), "2".into(), None, &[n("ns1.example.net")])
        .expect("create");
    let (child, _) = store
        .create_zone(
            n("sub.example.com"),
            "3".into(),
            None,
            &[n("ns1.example.net")],
        )
        .expect("create");
    let snap = store.snapshot();
    assert_eq!(snap.zones.len(), 3);
    assert_eq!(
        snap.serving
            .get(&n("example.com"))
            .map(|z| z.zone().id.clone()),
        Some(first.id.clone())
    );
    let found = |q: &str| snap.find_zone(n(q).wire()).map(|z| z.zone().id.clone());
    assert_eq!(found("a.sub.example.com"), Some(child.id.clone()));
    assert_eq!(found("www.example.com"), Some(first.id.clone()));
    assert_eq!(found("example.org"), None);
}

#[test]
fn subscribers_see_each_commit_and_changes_are_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let mut rx = store.subscribe();
    let (_, change) = store
        .create_zone(n("example.com"), "1".into(), None, &[n("ns1.example.net")])
        .expect("create");
    assert!(rx.has_changed().expect("open channel"));
    assert_eq!(*rx.borrow_and_update(), change.generation);
    let stored = store.change(&change.id).expect("read").expect("present");
    assert_eq!(stored, change);
    assert!(store.change("Cnope").expect("read").is_none());
}

#[test]
fn health_checks_persist_and_caller_references_are_used_once() {
    use model::health::{ConfigText, HealthCheckConfig};
    let cfg = |port: &str| {
        HealthCheckConfig::from_text(&ConfigText {
            check_type: Some("TCP"),
            ip_address: Some("127.0.0.1"),
            port: Some(port),
            ..ConfigText::default()
        })
        .expect("config")
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let id = {
        let store = Store::open(dir.path()).expect("open");
        let (hc, created) = store
            .create_health_check("ref-1", &cfg("80"))
            .expect("create");
        assert!(created);
        let (again, created) = store
            .create_health_check("ref-1", &cfg("80"))
            .expect("again");
        assert!(
            !created,
            "the same reference and configuration return the check"
        );
        assert_eq!(again, hc);
        assert!(matches!(
            store.create_health_check("ref-1", &cfg("81")),
            Err(StoreError::HealthCheckAlreadyExists(_))
        ));
        hc.id
    };
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.health_check(&id).expect("kept").config, cfg("80"));
    assert_eq!(store.health_checks().expect("list").len(), 1);
    store.delete_health_check(&id).expect("delete");
    assert!(matches!(
        store.health_check(&id),
        Err(StoreError::NoSuchHealthCheck(_))
    ));
    assert!(matches!(
        store.delete_health_check(&id),
        Err(StoreError::NoSuchHealthCheck(_))
    ));
    assert!(
        matches!(
            store.create_health_check("ref-1", &cfg("80")),
            Err(StoreError::HealthCheckAlreadyExists(_))
        ),
        "a deleted check's reference is not reused"
    );
}

#[test]
fn health_changes_publish_the_same_generation() {
    use model::health::HealthStatus;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store
        .create_zone(n("example.com"), "r".into(), None, &[n("ns1.example.net")])
        .expect("create");
    let before = store.snapshot();
    let status = |healthy| HealthStatus {
        healthy,
        last: None,
    };
    use model::health::{ConfigText, HealthCheckConfig};
    let cfg = HealthCheckConfig::from_text(&ConfigText {
        check_type: Some("TCP"),
        ip_address: Some("127.0.0.1"),
        port: Some("1"),
        ..ConfigText::default()
    })
    .expect("config");
    let (up, _) = store.create_health_check("up", &cfg).expect("create");
    let (down, _) = store.create_health_check("down", &cfg).expect("create");
    let (up, down) = (up.id, down.id);
    store
        .publish_health(BTreeMap::from([(up.clone(), status(true))]))
        .expect("publish");
    assert!(
        Arc::ptr_eq(&before, &store.snapshot()),
        "no change of health, no new snapshot"
    );
    store
        .publish_health(BTreeMap::from([
            (up.clone(), status(true)),
            (down.clone(), status(false)),
            ("deleted-or-unknown".to_string(), status(false)),
        ]))
        .expect("publish");
    let after = store.snapshot();
    assert_eq!(after.generation, before.generation);
    assert_eq!(after.zones.len(), 1);
    assert!(!after.health.is_healthy(Some(&down)) && after.health.is_healthy(Some(&up)));
    assert_eq!(store.health_status(&down), Some(status(false)));
    assert_eq!(
        store.health_status("deleted-or-unknown"),
        None,
        "only existing checks are published"
    );
    // A zone change keeps the health view.
    let zone = store.zone_by_name(&n("example.com")).expect("zone");
    store
        .change_records(
            &zone.id,
            &[a_change(
                ChangeAction::Create,
                "www.example.com",
                "192.0.2.1",
            )],
        )
        .expect("change");
    assert!(!store.snapshot().health.is_healthy(Some(&down)));
    store.delete_health_check(&down).expect("delete");
    assert!(store.snapshot().health.is_healthy(Some(&down)));
}
