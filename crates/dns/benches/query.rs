//! Criterion benchmarks of the query path (`handler::handle`): parse, lookup and encode, without
//! sockets. `cargo bench -p dns --bench query`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use dns::handler::{handle, Outcome, Transport};
use store::Store;

fn query(name: &str, qtype: u16) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
    m
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("edgeplane-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir).expect("open");
    let origin = model::DomainName::parse("example.com").expect("name");
    let (zone, _) = store
        .create_zone(
            origin.clone(),
            "bench".into(),
            None,
            &[model::DomainName::parse("ns1.example.com").expect("ns")],
        )
        .expect("zone");
    let mut text = String::from(
        "$TTL 300\n@ NS ns1\nns1 A 192.0.2.53\nalias CNAME host7\n*.wild A 192.0.2.80\n",
    );
    for i in 0..10_000 {
        text.push_str(&format!("host{i} A 10.0.{}.{}\n", i / 256, i % 256));
    }
    store
        .replace_records(
            &zone.id,
            model::zonefile::parse(&text, &origin).expect("zone"),
        )
        .expect("import");
    let snapshot = store.snapshot();
    let mut group = c.benchmark_group("handle");
    for (label, q) in [
        ("a", query("host4242.example.com", 1)),
        ("nxdomain", query("missing.example.com", 1)),
        ("nodata", query("host1.example.com", 15)),
        ("cname", query("alias.example.com", 1)),
        ("wildcard", query("x.wild.example.com", 1)),
        ("refused", query("www.example.org", 1)),
    ] {
        let mut buf = Vec::with_capacity(1500);
        group.bench_function(label, |b| {
            b.iter(|| {
                let (out, _) = handle(
                    &snapshot,
                    black_box(&q),
                    Transport::Udp,
                    1,
                    std::mem::take(&mut buf),
                );
                if let Outcome::Reply(r) = out {
                    buf = r;
                }
            })
        });
    }
    group.finish();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
