//! DNSZone statuses: generations, transition times, durability, deletion.

use super::*;

fn status(owner: &str, digest: &str, conditions: &[(&str, bool)]) -> DnsZoneStatus {
    DnsZoneStatus {
        owner: owner.to_string(),
        domain: "app.example.com.".to_string(),
        zone_id: Some("Z1".to_string()),
        name_servers: vec!["ns1.example.net".to_string()],
        conditions: conditions
            .iter()
            .map(|(kind, ok)| StatusCondition {
                kind: kind.to_string(),
                status: *ok,
                reason: format!("{kind} is {ok}"),
                last_transition_time: 0,
            })
            .collect(),
        observed_generation: 0,
        spec_digest: digest.to_string(),
        last_reconciled: 0,
    }
}

/// Writes a row as it stands, times included, as an older reconcile would have left it.
fn put_raw(store: &Store, s: &DnsZoneStatus) {
    let txn = store.inner.db.begin_write().expect("txn");
    txn.open_table(DNSZONE_STATUS)
        .expect("table")
        .insert(
            s.owner.as_str(),
            serde_json::to_vec(s).expect("json").as_slice(),
        )
        .expect("insert");
    txn.commit().expect("commit");
}

#[test]
fn statuses_count_generations_and_keep_transition_times() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    assert_eq!(store.dnszone_status("default/app").expect("get"), None);
    assert!(store.dnszone_statuses().expect("list").is_empty());

    let first = store
        .record_dnszone_status(status("default/app", "d1", &[("Zone", true)]))
        .expect("record");
    assert_eq!(first.observed_generation, 1);
    assert!(first.last_reconciled > 0);
    assert_eq!(
        first.conditions[0].last_transition_time,
        first.last_reconciled
    );

    // An older row: the same spec keeps its generation; a condition that holds keeps its
    // transition time, one that flipped gets a new one.
    let mut old = status("default/app", "d1", &[("Zone", true), ("Ready", false)]);
    old.observed_generation = 4;
    old.last_reconciled = 1000;
    for c in &mut old.conditions {
        c.last_transition_time = 1000;
    }
    put_raw(&store, &old);
    let same = store
        .record_dnszone_status(status(
            "default/app",
            "d1",
            &[("Zone", true), ("Ready", true)],
        ))
        .expect("record");
    assert_eq!(same.observed_generation, 4);
    assert_eq!(same.conditions[0].last_transition_time, 1000, "Zone held");
    assert!(
        same.conditions[1].last_transition_time > 1000,
        "Ready flipped"
    );
    assert!(same.last_reconciled > 1000);

    let changed = store
        .record_dnszone_status(status("default/app", "d2", &[("Zone", true)]))
        .expect("record");
    assert_eq!(
        changed.observed_generation, 5,
        "a new spec is a new generation"
    );
    store
        .record_dnszone_status(status("other/x", "d", &[]))
        .expect("record");
    drop(store);

    // Durable: another open sees the same rows.
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(
        store.dnszone_status("default/app").expect("get"),
        Some(changed)
    );
    let owners: Vec<String> = store
        .dnszone_statuses()
        .expect("list")
        .into_iter()
        .map(|s| s.owner)
        .collect();
    assert_eq!(owners, ["default/app", "other/x"]);
    assert!(store.delete_dnszone_status("other/x").expect("delete"));
    assert!(!store.delete_dnszone_status("other/x").expect("again"));
    assert_eq!(store.dnszone_statuses().expect("list").len(), 1);
}

#[test]
fn a_corrupt_status_hides_no_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store
        .record_dnszone_status(status("default/good", "d", &[("Zone", true)]))
        .expect("record");
    let txn = store.inner.db.begin_write().expect("txn");
    txn.open_table(DNSZONE_STATUS)
        .expect("table")
        .insert("default/bad", b"{not json".as_slice())
        .expect("insert");
    txn.commit().expect("commit");
    let all = store.dnszone_statuses().expect("list");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].owner, "default/good");
    assert!(matches!(
        store.dnszone_status("default/bad"),
        Err(StoreError::Corrupt { .. })
    ));
}
