//! Tests for health check configurations and the threshold rule, as data.

use super::*;

fn text<'a>(pairs: &[(&str, &'a str)]) -> ConfigText<'a> {
    let mut t = ConfigText::default();
    for &(k, v) in pairs {
        let slot = match k {
            "Type" => &mut t.check_type,
            "IPAddress" => &mut t.ip_address,
            "Port" => &mut t.port,
            "ResourcePath" => &mut t.resource_path,
            "FullyQualifiedDomainName" => &mut t.fqdn,
            "RequestInterval" => &mut t.request_interval,
            "FailureThreshold" => &mut t.failure_threshold,
            "MeasureLatency" => &mut t.measure_latency,
            "Inverted" => &mut t.inverted,
            "Disabled" => &mut t.disabled,
            "EnableSNI" => &mut t.enable_sni,
            other => panic!("unknown field {other}"),
        };
        *slot = Some(v);
    }
    t
}

#[test]
fn defaults_are_route53s() {
    let http = HealthCheckConfig::from_text(&text(&[("Type", "HTTP"), ("IPAddress", "127.0.0.1")]))
        .expect("valid");
    assert_eq!(
        (
            http.port,
            http.request_interval,
            http.failure_threshold,
            http.enable_sni
        ),
        (80, 30, 3, false)
    );
    let https = HealthCheckConfig::from_text(&text(&[
        ("Type", "HTTPS"),
        ("FullyQualifiedDomainName", "www.example.com"),
    ]))
    .expect("valid");
    assert_eq!((https.port, https.enable_sni), (443, true));
    let tcp = HealthCheckConfig::from_text(&text(&[
        ("Type", "TCP"),
        ("IPAddress", "::1"),
        ("Port", "5432"),
        ("RequestInterval", "10"),
        ("FailureThreshold", "1"),
        ("Inverted", "true"),
    ]))
    .expect("valid");
    assert_eq!(
        (tcp.port, tcp.request_interval, tcp.failure_threshold),
        (5432, 10, 1)
    );
    assert!(tcp.inverted && !tcp.counts_as_healthy(true) && tcp.counts_as_healthy(false));
}

#[test]
fn invalid_configurations_are_refused() {
    let cases: &[&[(&str, &str)]] = &[
        &[("IPAddress", "127.0.0.1")],
        &[("Type", "PING"), ("IPAddress", "127.0.0.1")],
        &[("Type", "HTTP")],
        &[("Type", "HTTP"), ("IPAddress", "localhost")],
        &[("Type", "HTTP"), ("IPAddress", "0.0.0.0")],
        &[("Type", "HTTP"), ("IPAddress", "224.0.0.1")],
        &[("Type", "TCP"), ("IPAddress", "127.0.0.1")],
        &[("Type", "TCP"), ("IPAddress", "127.0.0.1"), ("Port", "0")],
        &[
            ("Type", "TCP"),
            ("IPAddress", "127.0.0.1"),
            ("Port", "70000"),
        ],
        &[
            ("Type", "HTTP"),
            ("IPAddress", "127.0.0.1"),
            ("RequestInterval", "5"),
        ],
        &[
            ("Type", "HTTP"),
            ("IPAddress", "127.0.0.1"),
            ("FailureThreshold", "0"),
        ],
        &[
            ("Type", "HTTP"),
            ("IPAddress", "127.0.0.1"),
            ("FailureThreshold", "11"),
        ],
        &[
            ("Type", "HTTP"),
            ("IPAddress", "127.0.0.1"),
            ("Inverted", "yes"),
        ],
        &[
            ("Type", "HTTP"),
            ("IPAddress", "127.0.0.1"),
            ("MeasureLatency", "true"),
        ],
        // No header injection through the path or the host name.
        &[
            ("Type", "HTTP"),
            ("IPAddress", "127.0.0.1"),
            ("ResourcePath", "/a b"),
        ],
        &[
            ("Type", "HTTP"),
            ("IPAddress", "127.0.0.1"),
            ("ResourcePath", "/\r\nX: y"),
        ],
        &[
            ("Type", "HTTP"),
            ("FullyQualifiedDomainName", "a.example\r\nX: y"),
        ],
        &[("Type", "HTTP"), ("FullyQualifiedDomainName", "")],
    ];
    for case in cases {
        assert!(
            HealthCheckConfig::from_text(&text(case)).is_err(),
            "{case:?}"
        );
    }
    assert!(matches!(
        HealthCheckConfig::from_text(&text(&[("Type", "CALCULATED"), ("IPAddress", "127.0.0.1")])),
        Err(HealthCheckError::Unsupported(_))
    ));
}

/// Configuration fields, then the Host header and request target they give.
type HostCase<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);

#[test]
fn host_header_and_path_follow_route53() {
    let cases: &[HostCase<'_>] = &[
        (
            &[("Type", "HTTP"), ("IPAddress", "192.0.2.1")],
            "192.0.2.1",
            "/",
        ),
        (
            &[
                ("Type", "HTTP"),
                ("IPAddress", "192.0.2.1"),
                ("Port", "8080"),
                ("ResourcePath", "health?x=1"),
            ],
            "192.0.2.1:8080",
            "/health?x=1",
        ),
        (
            &[
                ("Type", "HTTPS"),
                ("IPAddress", "2001:db8::1"),
                ("FullyQualifiedDomainName", "www.example.com"),
            ],
            "www.example.com",
            "/",
        ),
        (
            &[
                ("Type", "HTTPS"),
                ("IPAddress", "2001:db8::1"),
                ("Port", "8443"),
            ],
            "[2001:db8::1]:8443",
            "/",
        ),
    ];
    for (fields, host, path) in cases {
        let c = HealthCheckConfig::from_text(&text(fields)).expect("valid");
        assert_eq!(c.host_header(), *host, "{fields:?}");
        assert_eq!(c.request_path(), *path, "{fields:?}");
    }
}

#[test]
fn the_status_flips_after_threshold_consecutive_results() {
    // (threshold, results, status after each result)
    let cases: &[(u32, &str, &str)] = &[
        (1, "FFSS", "UUHH"),
        (3, "FFSFFF", "HHHHHU"),
        (2, "FFSFFSSS", "HUUUUUHH"),
        (3, "SSSS", "HHHH"),
    ];
    for &(threshold, results, expect) in cases {
        let mut t = Tracker::default();
        let got: String = results
            .chars()
            .map(|r| {
                t.record(r == 'S', threshold);
                if t.healthy() {
                    'H'
                } else {
                    'U'
                }
            })
            .collect();
        assert_eq!(got, expect, "threshold {threshold}, results {results}");
    }
}

#[test]
fn the_view_knows_only_unhealthy_checks() {
    let v = HealthView::with_unhealthy(["down"]);
    assert!(v.is_healthy(None));
    assert!(v.is_healthy(Some("up")));
    assert!(!v.is_healthy(Some("down")));
    assert!(HealthView::all_healthy().is_healthy(Some("down")));
}
