//! A runtime built on a previous one (overlays over its tables) must route exactly as one
//! built from scratch.

use std::net::IpAddr;

use super::*;
use crate::config::ServerConfig;
use crate::rule::RequestView;
use crate::test_util::Lcg;

fn eps() -> Vec<EntryPointInfo> {
    vec![
        EntryPointInfo {
            name: "web".into(),
            tls: false,
        },
        EntryPointInfo {
            name: "websecure".into(),
            tls: true,
        },
    ]
}

fn service(port: u16) -> ServiceConfig {
    ServiceConfig::LoadBalancer(LoadBalancerConfig {
        servers: vec![ServerConfig {
            url: format!("http://127.0.0.1:{port}"),
            weight: 1,
        }],
        ..Default::default()
    })
}

fn router(rule: &str, service: &str, priority: Option<i64>) -> RouterConfig {
    RouterConfig {
        entry_points: Vec::new(),
        rule: rule.to_string(),
        priority,
        middlewares: Vec::new(),
        service: service.to_string(),
        tls: None,
    }
}

fn random_router(g: &mut Lcg) -> RouterConfig {
    let host = g.next(20);
    let rule = match g.next(6) {
        0 => format!("Host(`h{host}.test`)"),
        1 => format!("Host(`h{host}.test`) && PathPrefix(`/a`)"),
        2 => "PathPrefix(`/a`)".to_string(),
        3 => format!("Host(`h{host}.test`) && Path(`/a/b`)"),
        4 => "Host(`*.test`)".to_string(),
        _ => "Path(`/broken`".to_string(),
    };
    let priority = (g.next(4) == 0).then(|| i64::try_from(g.next(50)).unwrap_or(0));
    let service = ["s1", "s2", "s3", "missing"][g.next(4)];
    let mut r = router(&rule, service, priority);
    if g.next(5) == 0 {
        r.middlewares.push("m".into());
    }
    if g.next(6) == 0 {
        r.tls = Some(Default::default());
    }
    r
}

/// What each probe request is routed to: `(router, service=backend)` per entry point.
fn routing(rt: &Runtime) -> Vec<Option<(String, String)>> {
    let headers = http::HeaderMap::new();
    let ip: IpAddr = "10.0.0.1".parse().expect("literal");
    let mut out = Vec::new();
    for ep in ["web", "websecure"] {
        let table = rt.tables.get(ep).expect("entry point table");
        for host in 0..21 {
            for path in ["/", "/a", "/a/b", "/c"] {
                let h = format!("h{host}.test");
                let v = RequestView {
                    host: &h,
                    method: "GET",
                    path,
                    query: None,
                    headers: &headers,
                    client_ip: ip,
                };
                out.push(table.find(&v).map(|e| {
                    let backend = match e.value.service.as_ref() {
                        Service::Servers { servers, .. } => servers[0].url.clone(),
                        _ => String::new(),
                    };
                    let mws = e.value.middlewares.len();
                    (
                        e.name.clone(),
                        format!("{}={backend} mws={mws}", e.value.service_name),
                    )
                }));
            }
        }
    }
    out
}

#[test]
fn layered_builds_route_as_full_builds() {
    let mut g = Lcg(7);
    let mut cfg = DynamicConfig::default();
    for (name, port) in [("s1", 1), ("s2", 2), ("s3", 3)] {
        cfg.services.insert(name.into(), service(port));
    }
    cfg.middlewares.insert(
        "m".into(),
        MiddlewareConfig::AddPrefix {
            prefix: "/x".into(),
        },
    );
    for i in 0..300 {
        cfg.routers.insert(format!("r{i}"), random_router(&mut g));
    }
    let mut current = Runtime::build(&cfg, &eps(), None);
    assert!(!current.is_layered());
    let mut layered_builds = 0;
    for step in 0..120 {
        match g.next(10) {
            0..=3 => {
                let i = g.next(400);
                cfg.routers.insert(format!("r{i}"), random_router(&mut g));
            }
            4..=5 => {
                let i = g.next(400);
                cfg.routers.remove(&format!("r{i}"));
            }
            6 => {
                let port = u16::try_from(g.next(100)).unwrap_or(0) + 10;
                cfg.services.insert("s2".into(), service(port));
            }
            7 => {
                if cfg.services.remove("s3").is_none() {
                    cfg.services.insert("s3".into(), service(3));
                }
            }
            8 => {
                if cfg.middlewares.remove("m").is_none() {
                    cfg.middlewares.insert(
                        "m".into(),
                        MiddlewareConfig::StripPrefix {
                            prefixes: vec!["/a".into()],
                        },
                    );
                }
            }
            _ => {
                // Every so often, what the background rebuild does.
                current = Runtime::compacted(&current);
                assert!(!current.is_layered());
            }
        }
        let next = Runtime::build(&cfg, &eps(), Some(&current));
        let scratch = Runtime::build(&cfg, &eps(), None);
        if next.is_layered() {
            layered_builds += 1;
        }
        assert_eq!(routing(&next), routing(&scratch), "step {step}");
        assert_eq!(next.routers(), scratch.routers(), "step {step}");
        assert_eq!(next.diagnostics, scratch.diagnostics, "step {step}");
        assert_eq!(next.router_counts(), scratch.router_counts());
        let compact = Runtime::compacted(&next);
        assert_eq!(
            routing(&compact),
            routing(&scratch),
            "step {step} compacted"
        );
        current = next;
    }
    assert!(layered_builds > 60, "only {layered_builds} layered builds");
}

#[test]
fn too_many_changes_build_whole_and_service_changes_reach_routes() {
    let mut cfg = DynamicConfig::default();
    cfg.services.insert("s".into(), service(1));
    for i in 0..1000 {
        cfg.routers.insert(
            format!("r{i}"),
            router(&format!("Host(`h{i}.test`)"), "s", None),
        );
    }
    let first = Runtime::build(&cfg, &eps(), None);
    cfg.routers
        .insert("new".into(), router("Host(`new.test`)", "s", None));
    let second = Runtime::build(&cfg, &eps(), Some(&first));
    assert!(second.is_layered());
    let web = |rt: &Runtime| {
        let t = rt.tables.get("web").expect("web");
        (t.len(), t.overlay_len())
    };
    assert_eq!(web(&second), (1001, 1));
    // Changing more routers than the overlays take rebuilds the tables.
    for i in 0..overlay_limit(1001) {
        cfg.routers.insert(
            format!("r{i}"),
            router(&format!("Host(`h{i}.test`) && Path(`/`)"), "s", None),
        );
    }
    let third = Runtime::build(&cfg, &eps(), Some(&second));
    assert!(!third.is_layered());
    assert_eq!(web(&third), (1001, 0));
    // A service change reaches the routers using it.
    cfg.services.insert("s".into(), service(2));
    let fourth = Runtime::build(&cfg, &eps(), Some(&third));
    let headers = http::HeaderMap::new();
    let v = RequestView {
        host: "h999.test",
        method: "GET",
        path: "/",
        query: None,
        headers: &headers,
        client_ip: "10.0.0.1".parse().expect("literal"),
    };
    let found = fourth
        .tables
        .get("web")
        .and_then(|t| t.find(&v))
        .expect("routed");
    assert!(Arc::ptr_eq(
        &found.value.service,
        fourth.services.get("s").expect("service")
    ));
}
