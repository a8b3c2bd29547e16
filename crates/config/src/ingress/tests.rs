use super::*;

fn plan(text: &str) -> ProxyPlan {
    load(&[ManifestFile {
        name: "test.yaml",
        text,
    }])
}

const APP: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: whoami, namespace: apps}
spec:
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: whoami-abc
  namespace: apps
  labels: {kubernetes.io/service-name: whoami}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
  - addresses: [10.0.0.2]
  - addresses: [10.0.0.1]
  - addresses: [10.0.0.3]
    conditions: {ready: false}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: strip, namespace: apps}
spec:
  stripPrefix: {prefixes: [/api]}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: web, namespace: apps}
spec:
  entryPoints: [websecure]
  routes:
    - match: Host(`app.example.com`) && PathPrefix(`/api`)
      kind: Rule
      middlewares: [{name: strip}]
      services: [{name: whoami, port: 80}]
  tls: {secretName: app-tls}
"#;

#[test]
fn ingress_route_with_service_endpoints_and_middleware() {
    let p = plan(APP);
    assert_eq!(p.diagnostics, Vec::<String>::new());
    let r = &p.config.routers["apps-web-0@kubernetescrd"];
    assert_eq!(r.rule, "Host(`app.example.com`) && PathPrefix(`/api`)");
    assert_eq!(r.entry_points, ["websecure"]);
    assert_eq!(r.middlewares, ["apps-strip@kubernetescrd"]);
    assert!(r.tls.is_some());
    let ServiceConfig::LoadBalancer(lb) = &p.config.services[&r.service] else {
        panic!("load balancer expected");
    };
    let urls: Vec<&str> = lb.servers.iter().map(|s| s.url.as_str()).collect();
    assert_eq!(urls, ["http://10.0.0.1:8080", "http://10.0.0.2:8080"]);
    assert_eq!(
        p.config.middlewares["apps-strip@kubernetescrd"],
        MiddlewareConfig::StripPrefix {
            prefixes: vec!["/api".into()]
        }
    );
    // No Secret manifest: the secret store is asked.
    assert_eq!(p.secret_refs, [("apps".to_string(), "app-tls".to_string())]);
}

#[test]
fn file_provider_dynamic_configuration() {
    let p = plan(
        r#"
http:
  routers:
    r1:
      rule: Host(`a.test`)
      service: canary
      middlewares: [hdr]
  services:
    canary:
      weighted:
        services: [{name: v1, weight: 3}, {name: v2, weight: 1}]
    v1:
      loadBalancer: {servers: [{url: "http://127.0.0.1:1/"}]}
    v2:
      loadBalancer: {servers: [{url: "http://127.0.0.1:2"}], passHostHeader: false}
  middlewares:
    hdr:
      headers: {customRequestHeaders: {X-Env: canary}}
"#,
    );
    assert_eq!(p.diagnostics, Vec::<String>::new());
    assert_eq!(p.config.routers["r1@file"].service, "canary@file");
    assert_eq!(
        p.config.services["canary@file"],
        ServiceConfig::Weighted(vec![
            WeightedService {
                service: "v1@file".into(),
                weight: 3
            },
            WeightedService {
                service: "v2@file".into(),
                weight: 1
            }
        ])
    );
    let ServiceConfig::LoadBalancer(v1) = &p.config.services["v1@file"] else {
        panic!("load balancer expected");
    };
    assert_eq!(v1.servers[0].url, "http://127.0.0.1:1");
}

#[test]
fn a_broken_document_is_reported_and_the_rest_applies() {
    let text = format!(
        "{APP}\n---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\nmetadata: {{name: bad}}\nspec:\n  routes:\n    - match: Host(`x`)\n      services: [{{name: missing, port: 80}}]\n---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\nmetadata: {{name: typo}}\nspec:\n  stripPrefixx: {{prefixes: [/a]}}\n---\n: : not yaml [\n"
    );
    let p = plan(&text);
    assert_eq!(p.diagnostics.len(), 3, "{:?}", p.diagnostics);
    assert!(
        p.diagnostics[0].contains("test.yaml:"),
        "{:?}",
        p.diagnostics
    );
    assert!(p
        .diagnostics
        .iter()
        .any(|d| d.contains("service default/missing not found")));
    assert!(p
        .diagnostics
        .iter()
        .any(|d| d.contains("Middleware default/typo")));
    assert!(p.config.routers.contains_key("apps-web-0@kubernetescrd"));
}

#[test]
fn tls_secrets_from_manifests() {
    let p = plan(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: app-tls, namespace: apps}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: CERT\n  tls.key: KEY\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: bad-tls}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: '!!!'\n  tls.key: 'a2V5'\n",
    );
    assert_eq!(p.config.certificates.len(), 1);
    assert_eq!(p.config.certificates[0].source, "apps/app-tls");
    assert_eq!(p.config.certificates[0].chain, b"CERT");
    assert_eq!(p.diagnostics.len(), 1);
    assert!(p.diagnostics[0].contains("tls.crt is not base64"));
}

#[test]
fn other_kinds_are_ignored() {
    let p = plan("apiVersion: edgeplane.io/v1alpha1\nkind: DNSZone\nmetadata: {name: z}\nspec: {domain: a.com}\n");
    assert!(p.diagnostics.is_empty());
    assert!(p.config.routers.is_empty());
}

#[test]
fn every_shipped_example_parses_cleanly() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let mut files = Vec::new();
    for sub in ["proxy", "zones", "certs"] {
        for e in std::fs::read_dir(format!("{dir}/{sub}")).expect("examples") {
            let path = e.expect("entry").path();
            files.push((
                path.display().to_string(),
                std::fs::read_to_string(&path).expect("read"),
            ));
        }
    }
    let inputs: Vec<ManifestFile<'_>> = files
        .iter()
        .map(|(name, text)| ManifestFile { name, text })
        .collect();
    let p = load(&inputs);
    assert_eq!(p.diagnostics, Vec::<String>::new());
    assert!(p
        .config
        .routers
        .contains_key("apps-whoami-secure-0@kubernetescrd"));
    assert!(p.config.routers.contains_key("shop@file"));
    assert_eq!(
        p.secret_refs,
        [("apps".to_string(), "whoami-tls".to_string())]
    );
    // And the proxy accepts what they describe.
    let rt = proxy::runtime::Runtime::build(
        &p.config,
        &[
            proxy::runtime::EntryPointInfo {
                name: "web".into(),
                tls: false,
            },
            proxy::runtime::EntryPointInfo {
                name: "websecure".into(),
                tls: true,
            },
        ],
        None,
    );
    assert_eq!(rt.diagnostics, vec![]);
    for text in files
        .iter()
        .filter(|(n, _)| n.contains("zones"))
        .map(|(_, t)| t)
    {
        for plan in crate::dnszone::parse(text) {
            assert!(plan.is_ok(), "{plan:?}");
        }
    }
}

#[test]
fn health_checks_sticky_cookies_and_durations() {
    let p = plan(
        r#"
http:
  services:
    s:
      loadBalancer:
        servers: [{url: "http://127.0.0.1:1"}]
        sticky: {cookie: {name: pin, httpOnly: true, sameSite: Strict}}
        healthCheck: {path: /healthz, interval: 500ms, timeout: 2s, status: 204}
        passiveHealthCheck: {maxFailedAttempts: 3, failureWindow: 1m}
    bad:
      loadBalancer:
        servers: [{url: "http://127.0.0.1:1"}]
        healthCheck: {path: /h, interval: 10 parsecs}
"#,
    );
    let ServiceConfig::LoadBalancer(lb) = &p.config.services["s@file"] else {
        panic!("load balancer expected");
    };
    let h = lb.health_check.as_ref().expect("health check");
    assert_eq!(
        (
            h.path.as_str(),
            h.interval.as_millis(),
            h.timeout.as_secs(),
            h.status
        ),
        ("/healthz", 500, 2, Some(204))
    );
    let s = lb.sticky.as_ref().expect("sticky");
    assert_eq!(
        (s.name.as_str(), s.http_only, s.same_site.as_str()),
        ("pin", true, "Strict")
    );
    let passive = lb.passive.as_ref().expect("passive");
    assert_eq!((passive.max_failures, passive.cooldown.as_secs()), (3, 60));
    assert_eq!(p.diagnostics.len(), 1, "{:?}", p.diagnostics);
    assert!(
        p.diagnostics[0].contains("invalid duration"),
        "{:?}",
        p.diagnostics
    );
}

#[test]
fn tls_options_from_crds_and_the_file_provider() {
    let p = plan(
        r#"
apiVersion: traefik.io/v1alpha1
kind: TLSOption
metadata: {name: mtls, namespace: apps}
spec:
  minVersion: VersionTLS13
  sniStrict: true
  alpnProtocols: [http/1.1]
  clientAuth:
    secretNames: [client-ca, store-ca]
    clientAuthType: VerifyClientCertIfGiven
---
apiVersion: v1
kind: Secret
metadata: {name: client-ca, namespace: apps}
stringData: {ca.crt: CA-PEM}
---
apiVersion: traefik.io/v1alpha1
kind: TLSOption
metadata: {name: default, namespace: kube-system}
spec: {cipherSuites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: r, namespace: apps}
spec:
  routes: [{match: Host(`a.test`), services: [{name: svc, kind: TraefikService}]}]
  tls: {options: {name: mtls}}
---
tls:
  options:
    modern: {minVersion: VersionTLS13}
"#,
    );
    assert_eq!(p.diagnostics, Vec::<String>::new());
    let o = &p.config.tls_options["apps-mtls@kubernetescrd"];
    assert_eq!(o.min_version.as_deref(), Some("VersionTLS13"));
    assert!(o.sni_strict);
    let auth = o.client_auth.as_ref().expect("client auth");
    assert_eq!(auth.mode, "VerifyClientCertIfGiven");
    assert_eq!(auth.ca_pems, vec![b"CA-PEM".to_vec()]);
    assert_eq!(
        p.ca_refs,
        [(
            "apps-mtls@kubernetescrd".to_string(),
            "apps".to_string(),
            "store-ca".to_string()
        )]
    );
    assert!(p.config.tls_options.contains_key("default"));
    assert!(p.config.tls_options.contains_key("modern@file"));
    let r = &p.config.routers["apps-r-0@kubernetescrd"];
    assert_eq!(
        r.tls.as_ref().and_then(|t| t.options.as_deref()),
        Some("apps-mtls@kubernetescrd")
    );
}

#[test]
fn servers_transports_from_both_providers() {
    let p = plan(
        r#"
apiVersion: traefik.io/v1alpha1
kind: ServersTransport
metadata: {name: internal, namespace: apps}
spec:
  serverName: backend.internal
  rootCAsSecrets: [backend-ca]
  forwardingTimeouts: {dialTimeout: 2s, responseHeaderTimeout: 500ms}
  maxIdleConnsPerHost: 8
---
apiVersion: v1
kind: Secret
metadata: {name: backend-ca, namespace: apps}
stringData: {ca.crt: CA}
---
apiVersion: traefik.io/v1alpha1
kind: ServersTransport
metadata: {name: broken, namespace: apps}
spec: {rootCAsSecrets: [missing]}
---
http:
  serversTransports:
    lax: {insecureSkipVerify: true, disableHTTP2: true}
  services:
    s:
      loadBalancer:
        serversTransport: lax
        servers: [{url: "https://10.0.0.1:8443"}]
"#,
    );
    let t = &p.config.servers_transports["apps-internal@kubernetescrd"];
    assert_eq!(t.server_name.as_deref(), Some("backend.internal"));
    assert_eq!(t.root_cas, vec![b"CA".to_vec()]);
    assert_eq!((t.dial_timeout.as_secs(), t.max_idle_per_host), (2, 8));
    assert_eq!(t.response_header_timeout.map(|d| d.as_millis()), Some(500));
    let lax = &p.config.servers_transports["lax@file"];
    assert!(lax.insecure_skip_verify && lax.disable_http2);
    let ServiceConfig::LoadBalancer(lb) = &p.config.services["s@file"] else {
        panic!("load balancer expected");
    };
    assert_eq!(lb.servers_transport.as_deref(), Some("lax@file"));
    // A secret not among the manifests is for the store: the transport waits for it, out of
    // the configuration (never used with the system's roots instead).
    assert_eq!(p.diagnostics, Vec::<String>::new());
    assert!(!p
        .config
        .servers_transports
        .contains_key("apps-broken@kubernetescrd"));
    assert!(p
        .pending_transports
        .contains_key("apps-broken@kubernetescrd"));
    assert_eq!(
        p.transport_refs,
        vec![TransportSecretRef {
            transport: "apps-broken@kubernetescrd".into(),
            namespace: "apps".into(),
            name: "missing".into(),
            client_certificate: false,
        }]
    );
}

#[test]
fn a_file_of_sixty_thousand_routers_is_within_the_parser_budget() {
    let mut text = String::from("http:\n  services:\n    s:\n      loadBalancer:\n        servers: [{url: 'http://127.0.0.1:1'}]\n  routers:\n");
    for i in 0..60_000 {
        text.push_str(&format!(
            "    r{i}:\n      rule: Host(`h{i}.test`)\n      service: s\n"
        ));
    }
    let p = plan(&text);
    assert_eq!(p.diagnostics, Vec::<String>::new());
    assert_eq!(p.config.routers.len(), 60_000);
}

#[test]
fn failover_services_in_the_file_format() {
    let p = plan("http:\n  services:\n    ha:\n      failover: {service: main, fallback: spare, healthCheck: {}}\n    both:\n      failover: {service: a, fallback: b}\n      weighted: {services: [{name: a}]}\n");
    assert_eq!(
        p.config.services["ha@file"],
        ServiceConfig::Failover {
            service: "main@file".into(),
            fallback: "spare@file".into()
        }
    );
    assert_eq!(p.diagnostics.len(), 1, "{:?}", p.diagnostics);
    assert!(p.diagnostics[0].contains("exactly one of loadBalancer, weighted or failover"));
}

#[test]
fn kubernetes_ingresses_become_routers_the_traefik_way() {
    let text = r#"
apiVersion: v1
kind: Service
metadata: {name: whoami, namespace: apps}
spec:
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: whoami-1, namespace: apps, labels: {kubernetes.io/service-name: whoami}}
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.0.0.1]}]
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: edge}
spec: {controller: edgeplane.io/ingress-controller}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: shop
  namespace: apps
  annotations:
    traefik.ingress.kubernetes.io/router.entrypoints: websecure
    traefik.ingress.kubernetes.io/router.middlewares: apps-strip@kubernetescrd
spec:
  ingressClassName: edge
  tls: [{hosts: [shop.example.com], secretName: shop-tls}]
  defaultBackend: {service: {name: whoami, port: {name: http}}}
  rules:
    - host: shop.example.com
      http:
        paths:
          - {path: /api/, pathType: Prefix, backend: {service: {name: whoami, port: {number: 80}}}}
          - {path: /exact, pathType: Exact, backend: {service: {name: whoami, port: {number: 80}}}}
          - {path: /, pathType: Prefix, backend: {service: {name: whoami, port: {number: 80}}}}
    - host: "*.shop.example.com"
      http:
        paths: [{path: /, pathType: ImplementationSpecific, backend: {service: {name: whoami, port: {number: 80}}}}]
    - host: bad.example.com
      http:
        paths: [{path: /x, pathType: Regex, backend: {service: {name: whoami, port: {number: 80}}}}]
    - host: missing.example.com
      http:
        paths: [{path: /, pathType: Prefix, backend: {service: {name: nope, port: {number: 80}}}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: plain, namespace: apps}
spec:
  rules: [{host: plain.example.com, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: whoami, port: {number: 80}}}}]}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: theirs, namespace: apps}
spec:
  ingressClassName: nginx
  rules: [{host: theirs.example.com, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: whoami, port: {number: 80}}}}]}}]
"#;
    let p = plan(text);
    let r = |name: &str| {
        p.config.routers.get(name).unwrap_or_else(|| {
            panic!(
                "no router {name}: {:?}",
                p.config.routers.keys().collect::<Vec<_>>()
            )
        })
    };
    assert_eq!(
        r("apps-shop-0-0@kubernetes").rule,
        "Host(`shop.example.com`) && PathPrefix(`/api`)"
    );
    assert_eq!(
        r("apps-shop-0-1@kubernetes").rule,
        "Host(`shop.example.com`) && Path(`/exact`)"
    );
    assert_eq!(
        r("apps-shop-0-2@kubernetes").rule,
        "Host(`shop.example.com`)"
    );
    assert_eq!(
        r("apps-shop-1-0@kubernetes").rule,
        r"HostRegexp(`^[a-z0-9-]+\.shop\.example\.com$`)"
    );
    let shop = r("apps-shop-0-0@kubernetes");
    assert_eq!(shop.entry_points, vec!["websecure".to_string()]);
    assert_eq!(
        shop.middlewares,
        vec!["apps-strip@kubernetescrd".to_string()]
    );
    assert!(shop.tls.is_some(), "spec.tls makes TLS routers");
    let default = r("apps-shop-default@kubernetes");
    assert_eq!(
        (default.rule.as_str(), default.priority),
        ("PathPrefix(`/`)", Some(1))
    );
    // The backend is the Service's load balancer, as for IngressRoutes.
    match &p.config.services[&shop.service] {
        ServiceConfig::LoadBalancer(lb) => {
            assert_eq!(lb.servers[0].url, "http://10.0.0.1:8080")
        }
        other => panic!("{other:?}"),
    }
    // No class: the default, served, without TLS and on every entry point.
    let plain = r("apps-plain-0-0@kubernetes");
    assert!(plain.tls.is_none() && plain.entry_points.is_empty());
    // Another controller's class is left alone.
    assert!(!p.config.routers.keys().any(|k| k.contains("theirs")));
    assert!(p
        .secret_refs
        .contains(&("apps".to_string(), "shop-tls".to_string())));
    let diags = p.diagnostics.join("\n");
    assert!(
        diags.contains("Ingress apps/shop") && diags.contains("pathType \"Regex\""),
        "{diags}"
    );
    assert!(diags.contains("service apps/nope not found"), "{diags}");
}

#[test]
fn ingress_annotations_ask_cert_manager_and_resolvers_for_certificates() {
    let text = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: shop
  namespace: apps
  annotations: {cert-manager.io/cluster-issuer: edgeplane-ca, cert-manager.io/private-key-algorithm: ECDSA}
spec:
  tls:
    - {hosts: [shop.example.com, www.shop.example.com], secretName: shop-tls}
    - {hosts: ["*.img.example.com"], secretName: img-tls}
  rules: [{host: shop.example.com}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: api
  namespace: apps
  annotations: {traefik.ingress.kubernetes.io/router.tls.certresolver: le}
spec:
  rules: [{host: api.example.com, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: s, port: {number: 80}}}}]}}]
"#;
    let resolvers = std::collections::BTreeMap::from([(
        "le".to_string(),
        crate::certmanager::CertResolver {
            issuer: crate::certmanager::AcmeIssuer {
                server: "https://acme.test/dir".into(),
                email: None,
                private_key_secret: "le-resolver-account".into(),
                ca_bundle: None,
                skip_tls_verify: false,
                external_account_binding: None,
                solvers: vec![crate::certmanager::AcmeSolver {
                    selector: Default::default(),
                    kind: crate::certmanager::SolverKind::Http01,
                }],
            },
            key: certs::KeyAlgorithm::Ecdsa(256),
        },
    )]);
    let c = crate::certmanager::load_with(&[("t.yaml".to_string(), text.to_string())], &resolvers);
    assert!(c.diagnostics.is_empty(), "{:?}", c.diagnostics);
    let got: Vec<(&str, &str, Vec<String>)> = c
        .certificates
        .iter()
        .map(|x| {
            (
                x.secret_name.as_str(),
                x.issuer_kind.as_str(),
                x.spec.dns_names.clone(),
            )
        })
        .collect();
    assert_eq!(
        got[0],
        (
            "shop-tls",
            "ClusterIssuer",
            vec![
                "shop.example.com".to_string(),
                "www.shop.example.com".to_string()
            ]
        )
    );
    assert_eq!(
        got[1],
        (
            "img-tls",
            "ClusterIssuer",
            vec!["*.img.example.com".to_string()]
        )
    );
    assert_eq!(got[2].1, crate::certmanager::RESOLVER_KIND);
    assert_eq!(got[2].2, vec!["api.example.com".to_string()]);
    assert_eq!(c.certificates[0].spec.key, certs::KeyAlgorithm::Ecdsa(256));
    // The proxy asks for the resolver's secret under the same name.
    let p = plan(text);
    assert!(
        p.secret_refs
            .contains(&("apps".to_string(), got[2].0.to_string())),
        "{:?}",
        p.secret_refs
    );
    let api = &p.config.routers.get("apps-api-0-0@kubernetes");
    assert!(
        api.is_none_or(|r| r.tls.as_ref().and_then(|t| t.cert_resolver.as_deref()) == Some("le"))
    );
}

#[test]
fn the_seed_example_parses_cleanly() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/seed");
    let mut files = Vec::new();
    for sub in ["", "/alternatives"] {
        for e in std::fs::read_dir(format!("{dir}{sub}")).expect("examples") {
            let path = e.expect("entry").path();
            if path.extension().and_then(|e| e.to_str()) == Some("yaml") {
                files.push((
                    path.display().to_string(),
                    std::fs::read_to_string(&path).expect("read"),
                ));
            }
        }
    }
    assert_eq!(
        files.len(),
        5,
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    let inputs: Vec<ManifestFile<'_>> = files
        .iter()
        .map(|(name, text)| ManifestFile { name, text })
        .collect();
    let p = load(&inputs);
    assert_eq!(p.diagnostics, Vec::<String>::new());
    assert_eq!(
        p.secret_refs,
        [("default".to_string(), "app-tls".to_string())]
    );
    let c = crate::certmanager::load(&files);
    assert_eq!(c.diagnostics, Vec::<String>::new());
    // The internal-CA issuer and its ACME alternative (same name), and the one Certificate.
    assert_eq!(c.issuers.len(), 2);
    assert!(c
        .issuers
        .iter()
        .any(|i| matches!(i.kind, crate::certmanager::IssuerType::Acme(_))));
    assert_eq!(c.certificates.len(), 1);
    for (name, text) in &files {
        for plan in crate::dnszone::parse(text) {
            if let Err(e) = &plan {
                assert!(
                    matches!(e, crate::dnszone::ManifestError::OtherKind { .. }),
                    "{name}: {e}"
                );
            }
        }
    }
}

#[test]
fn mirroring_services_from_the_file_provider_and_traefik_services() {
    let text = format!(
        r#"{APP}
---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {{name: shadow, namespace: apps}}
spec:
  mirroring:
    name: whoami
    port: 80
    maxBodySize: 2048
    mirrors: [{{name: whoami, port: 80, percent: 10}}]
---
http:
  services:
    m:
      mirroring:
        service: main
        mirrorBody: false
        mirrors: [{{name: copy, percent: 50}}]
    both:
      mirroring: {{service: main}}
      weighted: {{services: [{{name: main}}]}}
    neg:
      mirroring: {{service: main, maxBodySize: -7}}
"#
    );
    let p = plan(&text);
    match &p.config.services["apps-shadow@kubernetescrd"] {
        ServiceConfig::Mirroring(m) => {
            assert_eq!(m.service, "apps-whoami-80@kubernetescrd");
            assert_eq!(
                m.mirrors,
                vec![("apps-whoami-80@kubernetescrd".to_string(), 10)]
            );
            assert!(m.mirror_body);
            assert_eq!(m.max_body_size, 2048);
        }
        other => panic!("{other:?}"),
    }
    match &p.config.services["m@file"] {
        ServiceConfig::Mirroring(m) => {
            assert_eq!(m.service, "main@file");
            assert_eq!(m.mirrors, vec![("copy@file".to_string(), 50)]);
            assert!(!m.mirror_body);
            assert_eq!(m.max_body_size, proxy::config::DEFAULT_MIRROR_MAX_BODY);
        }
        other => panic!("{other:?}"),
    }
    let d = p.diagnostics.join("\n");
    assert!(
        d.contains("service both") && d.contains("exactly one"),
        "{d}"
    );
    assert!(
        d.contains("service neg") && d.contains("maxBodySize -7"),
        "{d}"
    );
}

#[test]
fn kept_translations_give_what_a_fresh_load_gives() {
    let (backends, routes) = APP.split_at(APP.find("---\napiVersion: traefik.io").expect("split"));
    let moved = backends.replace("10.0.0.2", "10.0.0.9");
    let file = "http:\n  routers:\n    a: {rule: Host(`a.test`), service: s}\n    c: {rule: Host(`c.test`), service: s}\n    apps-web-0@kubernetescrd: {rule: Host(`dup.test`), service: s}\n  services:\n    s: {loadBalancer: {servers: [{url: 'http://127.0.0.1:1'}]}}\n";
    // Smaller than what comes before it, and redefining one of its routers.
    let other = "http:\n  routers:\n    b: {rule: Host(`b.test`), service: s}\n    a: {rule: Host(`other-a.test`), service: s}\n";
    // States of a directory; between two states only some files change.
    let states: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("1-backends.yaml", backends),
            ("2-routes.yaml", routes),
            ("3-file.yaml", file),
        ],
        vec![
            ("1-backends.yaml", backends),
            ("2-routes.yaml", routes),
            ("3-file.yaml", file),
            ("4-other.yaml", other),
        ],
        // A context file changes: every translation that reads it is redone.
        vec![
            ("1-backends.yaml", &moved),
            ("2-routes.yaml", routes),
            ("3-file.yaml", file),
            ("4-other.yaml", other),
        ],
        vec![
            ("2-routes.yaml", routes),
            ("3-file.yaml", file),
            ("4-other.yaml", other),
        ],
        vec![
            ("0-backends.yaml", backends),
            ("2-routes.yaml", routes),
            ("4-other.yaml", other),
        ],
    ];
    let mut kept: Vec<(String, String, ParsedFile)> = Vec::new();
    for (step, state) in states.iter().enumerate() {
        let mut next = Vec::new();
        for (name, text) in state {
            let i = kept.iter().position(|(n, t, _)| n == name && t == text);
            let parsed = match i {
                Some(i) => kept.remove(i).2,
                None => parse_file(&ManifestFile { name, text }),
            };
            next.push((name.to_string(), text.to_string(), parsed));
        }
        kept = next;
        let files: Vec<&ParsedFile> = kept.iter().map(|(_, _, p)| p).collect();
        let got = load_parsed(&files);
        let inputs: Vec<ManifestFile<'_>> = state
            .iter()
            .map(|(name, text)| ManifestFile { name, text })
            .collect();
        let fresh = load(&inputs);
        assert_eq!(got.config, fresh.config, "step {step}");
        assert_eq!(got.diagnostics, fresh.diagnostics, "step {step}");
        assert_eq!(got.secret_refs, fresh.secret_refs, "step {step}");
        // Loading again from the kept translations changes nothing.
        assert_eq!(load_parsed(&files).config, got.config, "step {step}");
        if step == 1 {
            assert_eq!(got.config.routers["a@file"].rule, "Host(`other-a.test`)");
        }
        if step == 2 {
            let r = &got.config.routers["apps-web-0@kubernetescrd"];
            assert_eq!(r.rule, "Host(`dup.test`)", "the later file wins");
            let ServiceConfig::LoadBalancer(lb) =
                &got.config.services["apps-whoami-80@kubernetescrd"]
            else {
                panic!("load balancer expected: {:?}", got.config.services);
            };
            assert!(lb.servers.iter().any(|s| s.url == "http://10.0.0.9:8080"));
        }
    }
}
