use std::net::IpAddr;

use super::*;
use crate::test_util::Lcg;

fn entry(name: &str, rule: &str, priority: Option<i64>) -> TableEntry<String> {
    let rule = Rule::parse(rule).unwrap_or_else(|e| panic!("{rule}: {e}"));
    TableEntry {
        name: name.to_string(),
        priority: priority.unwrap_or_else(|| rule.default_priority()),
        rule: std::sync::Arc::new(rule),
        value: name.to_string(),
    }
}

fn find<'a>(t: &'a RouteTable<String>, host: &str, path: &str, method: &str) -> Option<&'a str> {
    let headers = http::HeaderMap::new();
    let ip: IpAddr = "10.1.2.3".parse().expect("literal");
    let v = RequestView {
        host,
        method,
        path,
        query: None,
        headers: &headers,
        client_ip: ip,
    };
    t.find(&v).map(|e| e.value.as_str())
}

#[test]
fn priority_then_name() {
    let t = RouteTable::new(vec![
        entry("short", "PathPrefix(`/`)", None),
        entry("longer", "Host(`a.com`) && PathPrefix(`/api`)", None),
        entry("explicit", "PathPrefix(`/`)", Some(1000)),
        entry("b-tie", "Path(`/tie`)", Some(5000)),
        entry("a-tie", "Path(`/tie`)", Some(5000)),
    ]);
    assert_eq!(find(&t, "a.com", "/api/x", "GET"), Some("explicit"));
    assert_eq!(find(&t, "a.com", "/tie", "GET"), Some("a-tie"));
    let t = RouteTable::new(vec![
        entry("short", "PathPrefix(`/`)", None),
        entry("longer", "Host(`a.com`) && PathPrefix(`/api`)", None),
    ]);
    assert_eq!(find(&t, "a.com", "/api/x", "GET"), Some("longer"));
    assert_eq!(find(&t, "b.com", "/api/x", "GET"), Some("short"));
}

#[test]
fn wildcards_and_fallbacks() {
    let t = RouteTable::new(vec![
        entry("one", "Host(`*.example.com`)", None),
        entry("many", "Host(`**.example.org`)", None),
        entry("exact", "Host(`www.example.com`) && Method(`POST`)", None),
        entry("regex", r"HostRegexp(`^api\.`)", None),
    ]);
    assert_eq!(find(&t, "www.example.com", "/", "POST"), Some("exact"));
    assert_eq!(find(&t, "www.example.com", "/", "GET"), Some("one"));
    assert_eq!(find(&t, "a.b.example.com", "/", "GET"), None);
    assert_eq!(find(&t, "a.b.example.org", "/", "GET"), Some("many"));
    assert_eq!(find(&t, "api.other.net", "/", "GET"), Some("regex"));
    assert_eq!(find(&t, "example.org", "/", "GET"), None);
}

#[test]
fn many_routers_by_host_and_path() {
    let mut routers = Vec::new();
    for i in 0..2000 {
        routers.push(entry(
            &format!("h{i}"),
            &format!("Host(`h{i}.example.com`)"),
            None,
        ));
        routers.push(entry(
            &format!("p{i}"),
            &format!("Host(`shared.example.com`) && PathPrefix(`/svc{i}/`)"),
            None,
        ));
    }
    let t = RouteTable::new(routers);
    assert_eq!(t.len(), 4000);
    assert_eq!(find(&t, "h1234.example.com", "/", "GET"), Some("h1234"));
    assert_eq!(
        find(&t, "shared.example.com", "/svc77/x", "GET"),
        Some("p77")
    );
    assert_eq!(find(&t, "shared.example.com", "/svc77", "GET"), None);
}

#[test]
fn the_index_answers_like_a_linear_scan() {
    let hosts = ["a.com", "b.com", "x.a.com", "y.x.a.com"];
    let host_pats = [
        "Host(`a.com`)",
        "Host(`*.a.com`)",
        "Host(`**.a.com`)",
        "Host(`b.com`)",
        "HostRegexp(`com$`)",
    ];
    let path_pats = [
        "Path(`/`)",
        "PathPrefix(`/a`)",
        "PathPrefix(`/ab`)",
        "Path(`/abc`)",
        "PathRegexp(`c$`)",
        "Method(`GET`)",
    ];
    let paths = ["/", "/a", "/ab", "/abc", "/b", "/abcd"];
    let mut g = Lcg(7);
    for round in 0..200 {
        let mut routers = Vec::new();
        for i in 0..12 {
            let h = host_pats[g.next(host_pats.len())];
            let p = path_pats[g.next(path_pats.len())];
            let rule = match g.next(5) {
                0 => format!("{h} && {p}"),
                1 => format!("{h} || {p}"),
                2 => format!("!{h} && {p}"),
                3 => format!("({h} || Host(`b.com`)) && ({p} || Path(`/b`))"),
                _ => h.to_string(),
            };
            let prio = if g.next(3) == 0 {
                Some(g.next(4) as i64)
            } else {
                None
            };
            routers.push(entry(&format!("r{i}"), &rule, prio));
        }
        let mut sorted = routers.clone();
        sorted.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then_with(|| a.name.cmp(&b.name))
        });
        let t = RouteTable::new(routers);
        for host in hosts {
            for path in paths {
                let headers = http::HeaderMap::new();
                let v = RequestView {
                    host,
                    method: "GET",
                    path,
                    query: None,
                    headers: &headers,
                    client_ip: "10.0.0.1".parse().expect("literal"),
                };
                let want = sorted
                    .iter()
                    .find(|e| e.rule.matches(&v))
                    .map(|e| e.name.as_str());
                let got = t.find(&v).map(|e| e.name.as_str());
                assert_eq!(got, want, "round {round}, {host}{path}");
            }
        }
    }
}
