use std::net::IpAddr;

use super::*;

struct Req {
    host: &'static str,
    method: &'static str,
    path: &'static str,
    query: Option<&'static str>,
    headers: http::HeaderMap,
    ip: IpAddr,
}

fn req(host: &'static str, path: &'static str) -> Req {
    Req {
        host,
        method: "GET",
        path,
        query: None,
        headers: http::HeaderMap::new(),
        ip: "192.0.2.7".parse().expect("literal"),
    }
}

impl Req {
    fn view(&self) -> RequestView<'_> {
        RequestView {
            host: self.host,
            method: self.method,
            path: self.path,
            query: self.query,
            headers: &self.headers,
            client_ip: self.ip,
        }
    }
}

/// Checks a rule against requests: each `(request, expected)` pair.
fn check(rule: &str, cases: &[(&Req, bool)]) {
    let r = Rule::parse(rule).unwrap_or_else(|e| panic!("{rule}: {e}"));
    for (i, (req, want)) in cases.iter().enumerate() {
        assert_eq!(r.matches(&req.view()), *want, "rule {rule}, case {i}");
    }
}

fn check_err(rule: &str, position: usize, contains: &str) {
    let e = Rule::parse(rule).expect_err(rule);
    assert_eq!(e.position, position, "{rule}: {e}");
    assert!(e.message.contains(contains), "{rule}: {e}");
}

#[test]
fn hosts() {
    check(
        "Host(`example.com`)",
        &[
            (&req("example.com", "/"), true),
            (&req("www.example.com", "/"), false),
        ],
    );
    check("Host(`Example.COM.`)", &[(&req("example.com", "/"), true)]);
    check(
        "Host(`*.example.com`)",
        &[
            (&req("a.example.com", "/"), true),
            (&req("a.b.example.com", "/"), false),
            (&req("example.com", "/"), false),
            (&req("xexample.com", "/"), false),
        ],
    );
    check(
        "Host(`**.example.com`)",
        &[
            (&req("a.example.com", "/"), true),
            (&req("a.b.example.com", "/"), true),
            (&req("example.com", "/"), false),
            (&req("badexample.com", "/"), false),
        ],
    );
    check(
        r"HostRegexp(`^[a-z]+\.example\.org$`)",
        &[
            (&req("abc.example.org", "/"), true),
            (&req("a1.example.org", "/"), false),
        ],
    );
}

#[test]
fn paths() {
    check(
        "Path(`/api`)",
        &[(&req("h", "/api"), true), (&req("h", "/api/"), false)],
    );
    check(
        "PathPrefix(`/api`)",
        &[
            (&req("h", "/api"), true),
            (&req("h", "/apix"), true),
            (&req("h", "/ap"), false),
        ],
    );
    check(
        r"PathRegexp(`^/v[0-9]+/`)",
        &[(&req("h", "/v2/x"), true), (&req("h", "/vx/"), false)],
    );
}

#[test]
fn methods_headers_queries_ips() {
    let mut post = req("h", "/");
    post.method = "POST";
    check("Method(`post`)", &[(&post, true), (&req("h", "/"), false)]);

    let mut with_header = req("h", "/");
    with_header
        .headers
        .append("x-env", "canary".parse().expect("literal"));
    with_header
        .headers
        .append("x-env", "blue".parse().expect("literal"));
    check(
        "Header(`X-Env`, `blue`)",
        &[(&with_header, true), (&req("h", "/"), false)],
    );
    check(
        "HeaderRegexp(`X-Env`, `^can`)",
        &[(&with_header, true), (&req("h", "/"), false)],
    );

    let mut q = req("h", "/");
    q.query = Some("a=1&mobile=true&name=J%C3%BCrgen+K");
    check(
        "Query(`mobile`, `true`)",
        &[(&q, true), (&req("h", "/"), false)],
    );
    check("Query(`name`, `Jürgen K`)", &[(&q, true)]);
    check("QueryRegexp(`a`, `^[0-9]$`)", &[(&q, true)]);
    check("Query(`a`, `2`)", &[(&q, false)]);

    let mut v6 = req("h", "/");
    v6.ip = "2001:db8::5".parse().expect("literal");
    let mut mapped = req("h", "/");
    mapped.ip = "::ffff:192.0.2.200".parse().expect("literal");
    check(
        "ClientIP(`192.0.2.0/24`)",
        &[(&req("h", "/"), true), (&v6, false), (&mapped, true)],
    );
    check(
        "ClientIP(`2001:db8::/32`)",
        &[(&v6, true), (&req("h", "/"), false)],
    );
    check(
        "ClientIP(`192.0.2.7`)",
        &[(&req("h", "/"), true), (&mapped, false)],
    );
    check("ClientIP(`0.0.0.0/0`)", &[(&req("h", "/"), true)]);
}

#[test]
fn operators_and_precedence() {
    // && binds tighter than ||.
    let rule = "Host(`a`) || Host(`b`) && Path(`/x`)";
    check(
        rule,
        &[
            (&req("a", "/y"), true),
            (&req("b", "/x"), true),
            (&req("b", "/y"), false),
        ],
    );
    check(
        "(Host(`a`) || Host(`b`)) && Path(`/x`)",
        &[(&req("a", "/y"), false), (&req("a", "/x"), true)],
    );
    check(
        "Host(`a`) && !PathPrefix(`/admin`)",
        &[(&req("a", "/"), true), (&req("a", "/admin/x"), false)],
    );
    check("!!Host(`a`)", &[(&req("a", "/"), true)]);
    check(
        "Host(\"a\") && Path(\"/q\\\"uote\")",
        &[(&req("a", "/q\"uote"), true)],
    );
}

#[test]
fn errors_name_the_position() {
    check_err("Host(`a`) &&", 12, "end of the rule");
    check_err("Host(`a`) & Path(`/`)", 10, "unexpected character");
    check_err("Hots(`a`)", 0, "unknown matcher");
    check_err("Host(`a`, `b`)", 0, "takes 1 argument");
    check_err("Host('a')", 5, "single quotes");
    check_err("Path(`nope`)", 5, "must start with '/'");
    check_err("Host(`a`) Path(`/`)", 10, "unexpected name");
    check_err("(Host(`a`)", 10, "expected ')'");
    check_err("PathRegexp(`(`)", 11, "invalid regular expression");
    check_err("Host(`a", 5, "unterminated");
    check_err(
        "ClientIP(`10.0.0.0/33`)",
        9,
        "invalid IP address or network",
    );
    check_err("Host(`bad host`)", 5, "invalid host");
    check_err("HostSNI(`a`)", 0, "TCP matcher");
    check_err("", 0, "end of the rule");
    let deep = format!("{}Host(`a`){}", "(".repeat(100), ")".repeat(100));
    check_err(&deep, 64, "nested too deeply");
}

#[test]
fn index_hints() {
    let hosts = |r: &str| Rule::parse(r).expect("valid").expr().required_hosts();
    assert_eq!(
        hosts("Host(`a`) && PathPrefix(`/`)"),
        Some(vec![HostPattern::Exact("a".into())])
    );
    assert_eq!(
        hosts("Host(`a`) || Host(`*.b`)"),
        Some(vec![
            HostPattern::Exact("a".into()),
            HostPattern::OneLabel("b".into())
        ])
    );
    assert_eq!(hosts("Host(`a`) || Path(`/`)"), None);
    assert_eq!(hosts("!Host(`a`)"), None);
    let paths = |r: &str| Rule::parse(r).expect("valid").expr().required_paths();
    assert_eq!(
        paths("Host(`a`) && (Path(`/x`) || PathPrefix(`/y`))"),
        Some(vec![
            PathKey::Exact("/x".into()),
            PathKey::Prefix("/y".into())
        ])
    );
    assert_eq!(paths("Host(`a`)"), None);
}

#[test]
fn default_priority_is_the_rule_length() {
    let r = Rule::parse("Host(`a`)").expect("valid");
    assert_eq!(r.default_priority(), 9);
}
