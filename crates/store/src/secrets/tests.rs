//! Tests for the secret store: round trips, versions, access rules, plaintext never at rest,
//! wrong keys, corruption isolation and master-key rotation under concurrent writes.

use super::*;

struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
    secrets: Secrets,
}

fn key_path(dir: &Path) -> PathBuf {
    dir.join("master.key")
}

fn open(dir: &Path) -> (Store, Result<Secrets, SecretStoreError>) {
    let store = Store::open(&dir.join("data")).expect("store");
    let secrets = Secrets::open(
        &store,
        MasterKeySource::File(key_path(dir)),
        &dir.join("data/audit.log"),
    );
    (store, secrets)
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, secrets) = open(dir.path());
    Fixture {
        secrets: secrets.expect("secrets"),
        store,
        dir,
    }
}

fn r(ns: &str, name: &str) -> SecretRef {
    SecretRef::new(ns, name).expect("ref")
}

fn spec(pairs: &[(&str, &str)]) -> SecretSpec {
    SecretSpec {
        secret_type: SecretType::Opaque,
        data: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), SecretValue::new(v.as_bytes().to_vec())))
            .collect(),
        labels: BTreeMap::from([("app".to_string(), "edge".to_string())]),
        annotations: BTreeMap::new(),
    }
}

fn value(s: &Secrets, r: &SecretRef, key: &str) -> String {
    let (_, spec) = s.get(&Caller::admin(), r, None).expect("get");
    String::from_utf8(spec.data[key].expose().to_vec()).expect("utf8")
}

#[test]
fn create_get_update_versions_delete() {
    let f = fixture();
    let admin = Caller::admin();
    let db = r("default", "db");
    let info = f
        .secrets
        .create(&admin, &db, &spec(&[("password", "first-pass")]))
        .expect("create");
    assert_eq!(
        (info.version, info.keys.clone()),
        (1, vec!["password".to_string()])
    );
    assert!(matches!(
        f.secrets.create(&admin, &db, &spec(&[("password", "x")])),
        Err(SecretStoreError::AlreadyExists(_))
    ));
    for i in 2..=12 {
        f.secrets
            .update(
                &admin,
                &db,
                &spec(&[("password", &format!("pass-{i}"))]),
                None,
            )
            .expect("update");
    }
    assert_eq!(value(&f.secrets, &db, "password"), "pass-12");
    let info = f.secrets.info(&db).expect("info");
    assert_eq!(
        info.versions,
        (3..=12).collect::<Vec<_>>(),
        "the last {KEEP_VERSIONS} versions are kept"
    );
    let (old, old_spec) = f.secrets.get(&admin, &db, Some(5)).expect("old version");
    assert_eq!(
        (old.version, old_spec.data["password"].expose()),
        (5, &b"pass-5"[..])
    );
    assert!(matches!(
        f.secrets.get(&admin, &db, Some(2)),
        Err(SecretStoreError::VersionNotFound(_, 2))
    ));
    // Optimistic concurrency.
    let err = f
        .secrets
        .update(&admin, &db, &spec(&[("password", "x")]), Some(7))
        .expect_err("stale");
    assert!(
        matches!(err, SecretStoreError::Conflict { actual: 12, .. }),
        "{err}"
    );
    assert!(f
        .secrets
        .update(&admin, &db, &spec(&[("password", "x")]), Some(12))
        .is_ok());
    // TLS secrets need their keys.
    let mut tls = spec(&[("tls.crt", "CERT")]);
    tls.secret_type = SecretType::Tls;
    assert!(matches!(
        f.secrets.create(&admin, &r("default", "tls"), &tls),
        Err(SecretStoreError::Invalid(_))
    ));
    f.secrets.delete(&admin, &db).expect("delete");
    assert!(matches!(
        f.secrets.get(&admin, &db, None),
        Err(SecretStoreError::NotFound(_))
    ));
    assert!(matches!(
        f.secrets.delete(&admin, &db),
        Err(SecretStoreError::NotFound(_))
    ));
    assert!(f.secrets.list(&admin, None).expect("list").is_empty());
}

#[test]
fn no_value_is_ever_stored_in_plaintext() {
    let f = fixture();
    let admin = Caller::admin();
    let values: Vec<String> = (0..50)
        .map(|i| format!("PLAINTEXT-CANARY-{i:03}-7f3a9c"))
        .collect();
    for (i, v) in values.iter().enumerate() {
        let name = format!("s{i}");
        f.secrets
            .create(&admin, &r("team", &name), &spec(&[("token", v)]))
            .expect("create");
        f.secrets
            .update(
                &admin,
                &r("team", &name),
                &spec(&[("token", v), ("other", "CANARY-SECOND-VALUE")]),
                None,
            )
            .expect("update");
    }
    let _ = f.secrets.get(&admin, &r("team", "s1"), None).expect("get");
    drop(f.secrets);
    drop(f.store);
    let mut scanned = 0;
    for entry in walk(f.dir.path()) {
        let bytes = std::fs::read(&entry).expect("read");
        scanned += bytes.len();
        for needle in values
            .iter()
            .map(String::as_str)
            .chain(["CANARY-SECOND-VALUE", "PLAINTEXT-CANARY"])
        {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} found in {}",
                entry.display()
            );
        }
    }
    assert!(scanned > 10_000, "scanned {scanned} bytes");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn access_rules_deny_and_change_nothing() {
    let f = fixture();
    let admin = Caller::admin();
    f.secrets
        .create(&admin, &r("team-a", "api"), &spec(&[("k", "a-value")]))
        .expect("create");
    f.secrets
        .create(&admin, &r("team-b", "api"), &spec(&[("k", "b-value")]))
        .expect("create");
    let reader = Caller {
        identity: "reader-a".into(),
        rules: vec![AccessRule::parse("get,list:team-a/*").expect("rule")],
    };
    assert!(reader.rules[0].allows(Verb::Get, "team-a", Some("api")));
    assert_eq!(
        f.secrets
            .get(&reader, &r("team-a", "api"), None)
            .expect("allowed")
            .1
            .data["k"]
            .expose(),
        b"a-value"
    );
    let denied = |res: Result<(), SecretStoreError>| match res {
        Err(SecretStoreError::Denied { identity, .. }) => assert_eq!(identity, "reader-a"),
        other => panic!("expected a denial, got {other:?}"),
    };
    denied(
        f.secrets
            .get(&reader, &r("team-b", "api"), None)
            .map(|_| ()),
    );
    denied(
        f.secrets
            .update(
                &reader,
                &r("team-a", "api"),
                &spec(&[("k", "changed")]),
                None,
            )
            .map(|_| ()),
    );
    denied(
        f.secrets
            .create(&reader, &r("team-a", "new"), &spec(&[("k", "v")]))
            .map(|_| ()),
    );
    denied(f.secrets.delete(&reader, &r("team-a", "api")));
    denied(f.secrets.list(&reader, Some("team-b")).map(|_| ()));
    // Listing everything shows only what the caller may list.
    let listed: Vec<String> = f
        .secrets
        .list(&reader, None)
        .expect("list")
        .iter()
        .map(|i| i.reference.to_string())
        .collect();
    assert_eq!(listed, ["team-a/api"]);
    assert_eq!(value(&f.secrets, &r("team-a", "api"), "k"), "a-value");
    assert!(f.secrets.info(&r("team-a", "new")).is_err());
    // The audit log names who did what, with the denial, and never the value.
    let audit = std::fs::read_to_string(f.dir.path().join("data/audit.log")).expect("audit");
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"identity\":\"reader-a\"")
                && l.contains("\"verb\":\"delete\"")
                && l.contains("\"outcome\":\"denied\"")),
        "{audit}"
    );
    assert!(audit.lines().any(|l| l.contains("\"identity\":\"admin\"")
        && l.contains("\"verb\":\"create\"")
        && l.contains("team-b/api")));
    assert!(!audit.contains("a-value") && !audit.contains("b-value"));
}

#[test]
fn wrong_master_key_is_refused_and_overwrites_nothing() {
    let f = fixture();
    f.secrets
        .create(&Caller::admin(), &r("default", "x"), &spec(&[("k", "v1")]))
        .expect("create");
    drop(f.secrets);
    drop(f.store);
    let right = std::fs::read(key_path(f.dir.path())).expect("key");
    let (other, bytes) = MasterKey::generate().expect("key");
    std::fs::write(
        key_path(f.dir.path()),
        format!("{}\n", model::base64::encode(&bytes)),
    )
    .expect("write");
    let (store, secrets) = open(f.dir.path());
    match secrets {
        Err(SecretStoreError::WrongMasterKey { given, .. }) => assert_eq!(given, other.id()),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a wrong key was accepted"),
    }
    drop(store);
    std::fs::write(key_path(f.dir.path()), right).expect("restore");
    let (_store, secrets) = open(f.dir.path());
    assert_eq!(
        value(&secrets.expect("right key"), &r("default", "x"), "k"),
        "v1"
    );
    // An environment-style value and a command work as sources too.
    let (_, b) = MasterKey::generate().expect("key");
    let encoded = model::base64::encode(&b);
    assert!(MasterKeySource::Value(Zeroizing::new(encoded.clone()))
        .load()
        .is_ok());
    assert!(MasterKeySource::Command(format!("echo {encoded}"))
        .load()
        .is_ok());
    assert!(MasterKeySource::Command("exit 3".into()).load().is_err());
    assert!(MasterKeySource::Value(Zeroizing::new("not base64!".into()))
        .load()
        .is_err());
}

#[test]
fn a_corrupted_version_fails_alone() {
    let f = fixture();
    let admin = Caller::admin();
    for name in ["good", "bad"] {
        f.secrets
            .create(&admin, &r("default", name), &spec(&[("k", name)]))
            .expect("create");
    }
    // Flip one byte of the sealed payload of `bad`.
    let txn = f.store.inner.db.begin_write().expect("txn");
    {
        let mut t = txn.open_table(SECRET_VERSIONS).expect("table");
        let mut bytes = t
            .get(("default", "bad", 1))
            .expect("get")
            .expect("present")
            .value()
            .to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        t.insert(("default", "bad", 1), bytes.as_slice())
            .expect("insert");
    }
    txn.commit().expect("commit");
    let err = f
        .secrets
        .get(&admin, &r("default", "bad"), None)
        .expect_err("corrupted");
    assert!(
        matches!(err, SecretStoreError::Integrity { version: 1, .. }),
        "{err}"
    );
    assert!(!err.to_string().contains("bad\""), "no value in the error");
    assert_eq!(value(&f.secrets, &r("default", "good"), "k"), "good");
    assert_eq!(f.secrets.list(&admin, None).expect("list").len(), 2);
}

/// Rewrites the stored record of one version through `damage`, as a disk fault would.
fn damage(store: &Store, ns: &str, name: &str, version: u64, damage: impl FnOnce(&mut Vec<u8>)) {
    let txn = store.inner.db.begin_write().expect("txn");
    {
        let mut t = txn.open_table(SECRET_VERSIONS).expect("table");
        let mut bytes = t
            .get((ns, name, version))
            .expect("get")
            .expect("present")
            .value()
            .to_vec();
        damage(&mut bytes);
        t.insert((ns, name, version), bytes.as_slice())
            .expect("insert");
    }
    txn.commit().expect("commit");
}

/// Damages one version's sealed data key, or its key ID, or the whole record.
fn damage_three_ways(store: &Store) {
    damage(store, "default", "wrapped", 1, |b| {
        let mut sealed = crypto::Sealed::decode(b).expect("sealed");
        let last = sealed.wrapped_key.len() - 1;
        sealed.wrapped_key[last] ^= 0x01;
        *b = sealed.encode();
    });
    damage(store, "default", "key-id", 1, |b| {
        let mut sealed = crypto::Sealed::decode(b).expect("sealed");
        sealed.key_id = "0".repeat(sealed.key_id.len());
        *b = sealed.encode();
    });
    damage(store, "default", "garbage", 1, |b| {
        *b = b"not a sealed record".to_vec()
    });
}

const DAMAGED: [&str; 3] = ["wrapped", "key-id", "garbage"];

fn assert_damaged_alone(s: &Secrets) {
    let admin = Caller::admin();
    for name in DAMAGED {
        let err = s
            .get(&admin, &r("default", name), None)
            .expect_err("damaged");
        assert!(
            matches!(err, SecretStoreError::Integrity { version: 1, .. }),
            "{name}: {err}"
        );
    }
    for name in ["good-a", "good-b"] {
        assert_eq!(value(s, &r("default", name), "k"), format!("{name}-value"));
    }
    assert_eq!(s.list(&admin, None).expect("list").len(), 5);
}

fn create_good_and_damaged(s: &Secrets) {
    for name in ["good-a", "good-b"].into_iter().chain(DAMAGED) {
        s.create(
            &Caller::admin(),
            &r("default", name),
            &spec(&[("k", &format!("{name}-value"))]),
        )
        .expect("create");
    }
}

#[test]
fn rotation_skips_versions_it_cannot_unwrap_and_the_store_still_opens() {
    let f = fixture();
    create_good_and_damaged(&f.secrets);
    damage_three_ways(&f.store);
    let report = f.secrets.rotate_master_key().expect("rotate past damage");
    assert_eq!(report.rewrapped, 2, "{report:?}");
    let mut skipped: Vec<(&str, u64)> = report
        .skipped
        .iter()
        .map(|s| (s.secret.as_str(), s.version))
        .collect();
    skipped.sort();
    assert_eq!(
        skipped,
        [
            ("default/garbage", 1),
            ("default/key-id", 1),
            ("default/wrapped", 1)
        ]
    );
    assert!(!master_key::next_path(&key_path(f.dir.path())).exists());
    assert_damaged_alone(&f.secrets);
    drop(f.secrets);
    drop(f.store);
    let (_store, secrets) = open(f.dir.path());
    let secrets = secrets.expect("the store opens after rotating past damage");
    assert_eq!(secrets.active_key_id(), report.new_key);
    assert_damaged_alone(&secrets);
}

#[test]
fn an_interrupted_rotation_finishes_past_corrupted_versions() {
    let f = fixture();
    create_good_and_damaged(&f.secrets);
    damage_three_ways(&f.store);
    let next = master_key::create_next_key_file(&key_path(f.dir.path())).expect("next");
    let txn = f.store.inner.db.begin_write().expect("txn");
    txn.open_table(SECRET_KEYS)
        .expect("t")
        .insert(NEXT, next.id())
        .expect("insert");
    txn.commit().expect("commit");
    drop(f.secrets);
    drop(f.store);
    let (_store, secrets) = open(f.dir.path());
    let secrets = secrets.expect("open finishes the rotation past damage");
    assert_eq!(secrets.active_key_id(), next.id());
    assert!(!master_key::next_path(&key_path(f.dir.path())).exists());
    assert_damaged_alone(&secrets);
}

#[test]
fn list_shows_only_the_names_the_rules_allow() {
    let f = fixture();
    let admin = Caller::admin();
    for (ns, name) in [
        ("team", "route53-a"),
        ("team", "route53-b"),
        ("team", "db"),
        ("other", "route53-c"),
    ] {
        f.secrets
            .create(&admin, &r(ns, name), &spec(&[("k", "v")]))
            .expect("create");
    }
    let lister = Caller {
        identity: "route53-lister".into(),
        rules: vec![AccessRule::parse("list:team/route53*").expect("rule")],
    };
    let names = |namespace: Option<&str>| -> Vec<String> {
        f.secrets
            .list(&lister, namespace)
            .expect("list")
            .iter()
            .map(|i| i.reference.to_string())
            .collect()
    };
    assert_eq!(names(None), ["team/route53-a", "team/route53-b"]);
    assert_eq!(names(Some("team")), ["team/route53-a", "team/route53-b"]);
    assert!(matches!(
        f.secrets.list(&lister, Some("other")),
        Err(SecretStoreError::Denied { .. })
    ));
}

#[test]
fn a_corrupt_metadata_row_is_left_out_of_listings() {
    let f = fixture();
    let admin = Caller::admin();
    for name in ["a", "not-json", "bad-type", "d"] {
        f.secrets
            .create(&admin, &r("default", name), &spec(&[("k", "v")]))
            .expect("create");
    }
    let txn = f.store.inner.db.begin_write().expect("txn");
    {
        let mut t = txn.open_table(SECRET_META).expect("table");
        t.insert(("default", "not-json"), &b"{not json"[..])
            .expect("insert");
        let bad_type = t
            .get(("default", "bad-type"))
            .expect("get")
            .expect("present")
            .value()
            .to_vec();
        let bad_type = String::from_utf8(bad_type)
            .expect("utf8")
            .replace("\"Opaque\"", "\"not a type!\"");
        t.insert(("default", "bad-type"), bad_type.as_bytes())
            .expect("insert");
        // A key no secret could have.
        t.insert(("Not A Namespace", "x"), &b"{}"[..])
            .expect("insert");
    }
    txn.commit().expect("commit");
    let listed: Vec<String> = f
        .secrets
        .list(&admin, None)
        .expect("list despite corrupt rows")
        .iter()
        .map(|i| i.reference.to_string())
        .collect();
    assert_eq!(listed, ["default/a", "default/d"]);
    assert_eq!(
        f.secrets.list(&admin, Some("default")).expect("list").len(),
        2
    );
    assert!(matches!(
        f.secrets.get(&admin, &r("default", "not-json"), None),
        Err(SecretStoreError::Corrupt(_))
    ));
    assert_eq!(value(&f.secrets, &r("default", "d"), "k"), "v");
}

#[test]
fn rotation_rewraps_every_key_while_writes_go_on() {
    let f = fixture();
    let admin = Caller::admin();
    for i in 0..600 {
        f.secrets
            .create(
                &admin,
                &r("bulk", &format!("s{i}")),
                &spec(&[("k", &format!("v{i}"))]),
            )
            .expect("create");
    }
    let old_key = std::fs::read(key_path(f.dir.path())).expect("key");
    let old_id = f.secrets.active_key_id();
    let writer = {
        let secrets = f.secrets.clone();
        std::thread::spawn(move || {
            let admin = Caller::admin();
            for i in 0..200 {
                secrets
                    .create(
                        &admin,
                        &r("during", &format!("w{i}")),
                        &spec(&[("k", &format!("w{i}"))]),
                    )
                    .expect("write during rotation");
                secrets
                    .update(
                        &admin,
                        &r("bulk", &format!("s{i}")),
                        &spec(&[("k", &format!("u{i}"))]),
                        None,
                    )
                    .expect("update during rotation");
            }
        })
    };
    let report = f.secrets.rotate_master_key().expect("rotate");
    writer.join().expect("writer");
    assert_eq!(report.old_key, old_id);
    assert_ne!(report.new_key, old_id);
    assert!(report.rewrapped >= 400, "{report:?}");
    assert_eq!(f.secrets.active_key_id(), report.new_key);
    assert!(!master_key::next_path(&key_path(f.dir.path())).exists());
    for i in 0..200 {
        assert_eq!(
            value(&f.secrets, &r("during", &format!("w{i}")), "k"),
            format!("w{i}")
        );
        assert_eq!(
            value(&f.secrets, &r("bulk", &format!("s{i}")), "k"),
            format!("u{i}")
        );
    }
    assert_eq!(value(&f.secrets, &r("bulk", "s599"), "k"), "v599");
    drop(f.secrets);
    drop(f.store);
    // The new key file opens everything; the old key alone no longer does.
    let (store, secrets) = open(f.dir.path());
    let secrets = secrets.expect("reopen with the new key");
    assert_eq!(value(&secrets, &r("bulk", "s10"), "k"), "u10");
    let (_, old_version) = secrets
        .get(&Caller::admin(), &r("bulk", "s10"), Some(1))
        .expect("old version still readable");
    assert_eq!(old_version.data["k"].expose(), b"v10");
    drop(secrets);
    drop(store);
    std::fs::write(key_path(f.dir.path()), old_key).expect("old key");
    assert!(matches!(
        open(f.dir.path()).1,
        Err(SecretStoreError::WrongMasterKey { .. })
    ));
}

#[test]
fn an_interrupted_rotation_finishes_at_the_next_open() {
    let f = fixture();
    let admin = Caller::admin();
    for i in 0..20 {
        f.secrets
            .create(&admin, &r("x", &format!("s{i}")), &spec(&[("k", "v")]))
            .expect("create");
    }
    // Simulate a crash after the next key was saved and recorded, before any re-wrap.
    let next = master_key::create_next_key_file(&key_path(f.dir.path())).expect("next");
    let txn = f.store.inner.db.begin_write().expect("txn");
    txn.open_table(SECRET_KEYS)
        .expect("t")
        .insert(NEXT, next.id())
        .expect("insert");
    txn.commit().expect("commit");
    drop(f.secrets);
    drop(f.store);
    let (_store, secrets) = open(f.dir.path());
    let secrets = secrets.expect("open finishes the rotation");
    assert_eq!(secrets.active_key_id(), next.id());
    assert!(!master_key::next_path(&key_path(f.dir.path())).exists());
    assert_eq!(value(&secrets, &r("x", "s7"), "k"), "v");
}

/// A write that sealed with the old key just before the key ring switched, and committed only
/// after the re-seal pass had looked, is re-sealed before the old key is retired.
#[test]
fn a_write_sealed_with_the_old_key_during_rotation_is_not_lost() {
    let f = fixture();
    let admin = Caller::admin();
    let a = r("team", "late");
    f.secrets
        .create(&admin, &a, &spec(&[("k", "v1")]))
        .expect("create");
    let path = key_path(f.dir.path());
    // The first half of a rotation: the next key saved and recorded, the ring switched.
    let next = Arc::new(master_key::create_next_key_file(&path).expect("next key"));
    {
        let txn = f.store.inner.db.begin_write().expect("txn");
        txn.open_table(SECRET_KEYS)
            .expect("table")
            .insert(NEXT, next.id())
            .expect("insert");
        txn.commit().expect("commit");
    }
    let old = {
        let mut ring = f.secrets.keys.write().expect("ring");
        let old = Arc::clone(&ring.active);
        ring.active = Arc::clone(&next);
        ring.others = vec![Arc::clone(&old)];
        old
    };
    let first = f.secrets.rewrap_all().expect("rewrap");
    assert_eq!(first.rewrapped, 1);
    // The racing writer: it read the ring before the switch, so it seals with the old key,
    // and it commits after the pass above.
    {
        let mut ring = f.secrets.keys.write().expect("ring");
        ring.active = Arc::clone(&old);
        ring.others = vec![Arc::clone(&next)];
    }
    f.secrets
        .update(&admin, &a, &spec(&[("k", "v2")]), None)
        .expect("late write");
    {
        let mut ring = f.secrets.keys.write().expect("ring");
        ring.active = Arc::clone(&next);
        ring.others = vec![Arc::clone(&old)];
    }
    // Finishing now would strand version 2: it refuses, and the loop re-seals it.
    assert!(!f.secrets.finish_rotation(&[]).expect("finish"));
    let done = f.secrets.rewrap_until_finished().expect("finish");
    assert_eq!(done.rewrapped, 1);
    master_key::promote_next_key_file(&path).expect("promote");
    assert_eq!(value(&f.secrets, &a, "k"), "v2");
    // And it reads with the new key alone, after a restart.
    drop(f.secrets);
    drop(f.store);
    let (_store, reopened) = open(f.dir.path());
    let reopened = reopened.expect("reopen with the new key only");
    assert_eq!(value(&reopened, &a, "k"), "v2");
}
