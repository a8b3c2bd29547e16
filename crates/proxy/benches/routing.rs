//! Criterion benchmarks of the routing hot path: finding the router for a request in tables of
//! 10, 10,000 and 100,000 routers (by host, and by path under one host), compiling a whole
//! configuration of 100,000 routers (a full build, as the background rebuild does), and
//! applying one changed router to it (a layered build). `cargo bench -p proxy`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use proxy::config::{
    DynamicConfig, LoadBalancerConfig, RouterConfig, ServerConfig, ServiceConfig, Strategy,
};
use proxy::rule::{RequestView, Rule};
use proxy::runtime::{EntryPointInfo, Runtime};
use proxy::table::{RouteTable, TableEntry};

fn table(n: usize, by_path: bool) -> RouteTable<usize> {
    let entries = (0..n)
        .map(|i| {
            let text = if by_path {
                format!("Host(`shared.example.com`) && PathPrefix(`/svc{i}/`)")
            } else {
                format!("Host(`h{i}.example.com`) && PathPrefix(`/`)")
            };
            let rule = Rule::parse(&text).expect("valid rule");
            TableEntry {
                name: format!("r{i}"),
                priority: rule.default_priority(),
                rule: std::sync::Arc::new(rule),
                value: i,
            }
        })
        .collect();
    RouteTable::new(entries)
}

fn config(n: usize) -> DynamicConfig {
    let mut c = DynamicConfig::default();
    c.services.insert(
        "s".into(),
        ServiceConfig::LoadBalancer(LoadBalancerConfig {
            servers: vec![ServerConfig {
                url: "http://127.0.0.1:8081".into(),
                weight: 1,
            }],
            strategy: Strategy::WeightedRoundRobin,
            pass_host_header: true,
            ..Default::default()
        }),
    );
    for i in 0..n {
        c.routers.insert(
            format!("r{i}"),
            RouterConfig {
                entry_points: Vec::new(),
                rule: format!("Host(`h{i}.example.com`) && PathPrefix(`/`)"),
                priority: None,
                middlewares: Vec::new(),
                service: "s".into(),
                tls: None,
            },
        );
    }
    c
}

fn bench(c: &mut Criterion) {
    let headers = http::HeaderMap::new();
    let ip = "10.0.0.1".parse().expect("literal");
    let mut g = c.benchmark_group("find");
    for n in [10usize, 10_000, 100_000] {
        let by_host = table(n, false);
        let host = format!("h{}.example.com", n / 2);
        g.bench_with_input(BenchmarkId::new("by_host", n), &n, |b, _| {
            b.iter(|| {
                let v = RequestView {
                    host: &host,
                    method: "GET",
                    path: "/index.html",
                    query: None,
                    headers: &headers,
                    client_ip: ip,
                };
                black_box(by_host.find(black_box(&v)).map(|e| e.value))
            })
        });
        let by_path = table(n, true);
        let path = format!("/svc{}/x", n / 2);
        g.bench_with_input(BenchmarkId::new("by_path", n), &n, |b, _| {
            b.iter(|| {
                let v = RequestView {
                    host: "shared.example.com",
                    method: "GET",
                    path: &path,
                    query: None,
                    headers: &headers,
                    client_ip: ip,
                };
                black_box(by_path.find(black_box(&v)).map(|e| e.value))
            })
        });
    }
    g.finish();

    let eps = [EntryPointInfo {
        name: "web".into(),
        tls: false,
    }];
    let big = config(100_000);
    let big = std::sync::Arc::new(big);
    let previous = Runtime::build_shared(big.clone(), &eps, None);
    let mut g = c.benchmark_group("build");
    g.sample_size(10);
    g.bench_function("100k_routers", |b| {
        b.iter(|| black_box(Runtime::compacted(black_box(&previous))))
    });
    let mut changed = big.as_ref().clone();
    if let Some(r) = changed.routers.get_mut("r50000") {
        r.rule = "Host(`changed.example.com`)".into();
    }
    let changed = std::sync::Arc::new(changed);
    g.bench_function("one_change_at_100k_routers", |b| {
        b.iter(|| {
            black_box(Runtime::build_shared(
                black_box(changed.clone()),
                &eps,
                Some(&previous),
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
