//! Secret store throughput: put and get operations per second, and the cost of a master-key
//! rotation over 10,000 secrets. A report, not a test: `cargo bench -p store --bench secrets`.

use std::collections::BTreeMap;
use std::time::Instant;

use model::secret::{SecretRef, SecretSpec, SecretType, SecretValue};
use store::secrets::{Caller, MasterKeySource, Secrets};
use store::Store;

const SECRETS: usize = 10_000;

fn spec(i: usize) -> SecretSpec {
    SecretSpec {
        secret_type: SecretType::Opaque,
        data: BTreeMap::from([
            (
                "access-key-id".to_string(),
                SecretValue::new(format!("EPAKIA{i:014}").into_bytes()),
            ),
            (
                "secret-access-key".to_string(),
                SecretValue::new(vec![b'k'; 40]),
            ),
        ]),
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would pass nothing: run only on bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("data")).expect("store");
    let secrets = Secrets::open(
        &store,
        MasterKeySource::File(dir.path().join("master.key")),
        &dir.path().join("audit.log"),
    )
    .expect("secrets");
    let admin = Caller::admin();
    let refs: Vec<SecretRef> = (0..SECRETS)
        .map(|i| SecretRef::new("bench", &format!("s{i}")).expect("ref"))
        .collect();

    let started = Instant::now();
    for (i, r) in refs.iter().enumerate() {
        secrets.create(&admin, r, &spec(i)).expect("create");
    }
    let put = started.elapsed().as_secs_f64();

    let started = Instant::now();
    for r in &refs {
        let (_, s) = secrets.get(&admin, r, None).expect("get");
        assert_eq!(s.data.len(), 2);
    }
    let get = started.elapsed().as_secs_f64();

    let report = secrets.rotate_master_key().expect("rotate");
    assert_eq!(report.rewrapped, SECRETS);

    println!("secrets: {SECRETS}");
    println!(
        "put (create, durable commit each): {:.0} ops/s ({:.1} s)",
        SECRETS as f64 / put,
        put
    );
    println!(
        "get (decrypt, audit): {:.0} ops/s ({:.2} s)",
        SECRETS as f64 / get,
        get
    );
    println!(
        "master-key rotation: {} data keys re-sealed in {:.2} s ({:.0} keys/s)",
        report.rewrapped,
        report.seconds,
        report.rewrapped as f64 / report.seconds
    );
}
