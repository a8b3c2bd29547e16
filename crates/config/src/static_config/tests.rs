//! The static configuration file, as data: documents and what they become or why they fail.

use super::*;

fn parse(text: &str) -> Result<StaticConfig, StaticConfigError> {
    StaticConfig::parse(text, "edgeplane.yaml", Path::new("/etc/edgeplane"))
}

#[test]
fn providers_parse_with_their_defaults() {
    let cases: &[(&str, &str, Route53Config)] = &[
        (
            "dnsProviders: {aws: {type: route53}}",
            "aws",
            Route53Config {
                endpoint: None,
                region: "us-east-1".into(),
                credentials: CredentialSource::DefaultChain,
            },
        ),
        (
            "dnsProviders:\n  lab:\n    type: route53\n    endpoint: http://127.0.0.1:5000\n    region: eu-west-1\n    credentials: {accessKeyIdFile: keys/id, secretAccessKeyFile: /run/secret}\n",
            "lab",
            Route53Config {
                endpoint: Some("http://127.0.0.1:5000".into()),
                region: "eu-west-1".into(),
                credentials: CredentialSource::Files {
                    access_key_id: "/etc/edgeplane/keys/id".into(),
                    secret_access_key: "/run/secret".into(),
                },
            },
        ),
        (
            "dnsProviders: {other: {type: route53, credentials: {secretRef: {namespace: ops, name: aws-keys}}}}",
            "other",
            Route53Config {
                endpoint: None,
                region: "us-east-1".into(),
                credentials: CredentialSource::Secret(
                    SecretRef::new("ops", "aws-keys").expect("ref"),
                ),
            },
        ),
        (
            "dnsProviders: {other: {type: route53, credentials: {secretRef: {name: aws-keys}}}}",
            "other",
            Route53Config {
                endpoint: None,
                region: "us-east-1".into(),
                credentials: CredentialSource::Secret(
                    SecretRef::new("default", "aws-keys").expect("ref"),
                ),
            },
        ),
    ];
    for (text, name, want) in cases {
        let config = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(
            config.dns_providers.get(*name),
            Some(&DnsProviderConfig::Route53(want.clone())),
            "{text}"
        );
        assert_eq!(config.provider_names(), ["embedded", name], "{text}");
    }
}

#[test]
fn an_empty_file_names_no_provider() {
    for text in ["", "\n", "dnsProviders: {}\n"] {
        let config = parse(text).expect("valid");
        assert!(config.dns_providers.is_empty());
        assert_eq!(config.provider_names(), ["embedded"]);
    }
}

#[test]
fn broken_files_are_refused_with_the_reason() {
    let cases = [
        ("dnsProvider: {}", "dnsProvider"),
        ("dnsProviders: {aws: {type: route53, regoin: x}}", "regoin"),
        ("dnsProviders: {aws: {type: cloudflare}}", "dnsProviders.aws: type \"cloudflare\""),
        ("dnsProviders: {aws: {}}", "type"),
        ("dnsProviders: {embedded: {type: route53}}", "built-in provider"),
        ("dnsProviders: {Bad_Name: {type: route53}}", "dnsProviders.Bad_Name"),
        ("dnsProviders: {aws: {type: route53, endpoint: 127.0.0.1:5000}}", "http:// or https://"),
        ("dnsProviders: {aws: {type: route53, endpoint: 'http://'}}", "no host"),
        ("dnsProviders: {aws: {type: route53, region: ''}}", "region"),
        ("dnsProviders: {aws: {type: route53, credentials: {accessKeyIdFile: a}}}", "together"),
        (
            "dnsProviders: {aws: {type: route53, credentials: {accessKeyIdFile: a, secretAccessKeyFile: b, secretRef: {name: c}}}}",
            "together",
        ),
        ("dnsProviders: {aws: {type: route53, credentials: {secretRef: {name: Not_Valid}}}}", "secretRef"),
        ("dnsProviders: {aws: {type: route53, credentials: {accessKey: AKIA}}}", "accessKey"),
        ("dnsProviders: [unclosed", "edgeplane.yaml"),
    ];
    for (text, needle) in cases {
        match parse(text) {
            Ok(c) => panic!("{text}: accepted as {c:?}"),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.starts_with("edgeplane.yaml: "), "{text}: {msg}");
                assert!(msg.contains(needle), "{text}: {needle:?} not in {msg}");
            }
        }
    }
}

#[test]
fn loading_a_missing_file_names_it() {
    let dir = std::env::temp_dir().join("edgeplane-config-test-missing/nothing.yaml");
    let err = StaticConfig::load(Some(&dir)).expect_err("missing");
    assert!(err.to_string().contains("nothing.yaml"), "{err}");
}

#[test]
fn acme_settings_and_certificate_resolvers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let text = format!(
        "acme: {{maxConcurrentOrders: 4, retryBackoff: 10s, maxRetryBackoff: 1h}}\ncertificatesResolvers:\n  le:\n    acme:\n      email: ops@example.com\n      storage: acme.json\n      keyType: RSA2048\n      caCertificates: [{}]\n      httpChallenge: {{entryPoint: web}}\n  dns:\n    acme:\n      caServer: https://ca.test/dir\n      dnsChallenge: {{provider: route53}}\n",
        ca.display()
    );
    let c = StaticConfig::parse(&text, "edgeplane.yaml", dir.path()).expect("parses");
    assert_eq!(c.acme.max_concurrent_orders, 4);
    assert_eq!(c.acme.retry_backoff.as_secs(), 10);
    assert_eq!(c.acme.max_retry_backoff.as_secs(), 3600);
    assert_eq!(c.acme.propagation_timeout.as_secs(), 120);
    let le = &c.cert_resolvers["le"];
    assert_eq!(le.key, certs::KeyAlgorithm::Rsa(2048));
    assert_eq!(
        le.issuer.server,
        "https://acme-v02.api.letsencrypt.org/directory"
    );
    assert_eq!(le.issuer.email.as_deref(), Some("ops@example.com"));
    assert!(le
        .issuer
        .ca_bundle
        .as_deref()
        .is_some_and(|b| b.contains("MIIB")));
    assert_eq!(le.issuer.private_key_secret, "le-resolver-account");
    assert_eq!(
        le.issuer.solvers[0].kind,
        crate::certmanager::SolverKind::Http01
    );
    let dns = &c.cert_resolvers["dns"];
    assert_eq!(dns.key, certs::KeyAlgorithm::Ecdsa(256));
    assert!(matches!(
        dns.issuer.solvers[0].kind,
        crate::certmanager::SolverKind::Dns01Route53(_)
    ));
    for (bad, why) in [
        ("acme: {maxConcurrentOrders: 0}", "maxConcurrentOrders"),
        ("acme: {retryBackoff: 1h, maxRetryBackoff: 1m}", "maxRetryBackoff"),
        ("acme: {retryBackoff: soon}", "retryBackoff"),
        ("certificatesResolvers: {x: {acme: {tlsChallenge: {}}}}", "tlsChallenge"),
        ("certificatesResolvers: {x: {acme: {}}}", "httpChallenge and dnsChallenge"),
        ("certificatesResolvers: {x: {acme: {dnsChallenge: {provider: cloudflare}}}}", "only route53"),
        ("certificatesResolvers: {x: {acme: {keyType: DSA, httpChallenge: {}}}}", "keyType"),
        ("certificatesResolvers: {x: {acme: {caCertificates: [/nonexistent.pem], httpChallenge: {}}}}", "nonexistent"),
    ] {
        let e = parse(bad).expect_err(bad).to_string();
        assert!(e.contains(why), "{bad}: {e}");
    }
}
