//! Proxy resources from manifests: Traefik's `IngressRoute`, `Middleware` and
//! `TraefikService` (`traefik.io/v1alpha1`), Kubernetes `Ingress` and `IngressClass`
//! (`networking.k8s.io/v1`, see [`kube_ingress`]), Kubernetes `Service` + `EndpointSlice` for
//! backends, `Secret`s of type `kubernetes.io/tls`, and Traefik's file-provider dynamic
//! configuration (a document with top-level `http:`), translated into a
//! [`proxy::config::DynamicConfig`].
//!
//! Names follow Traefik: Kubernetes resources become `namespace-name@kubernetescrd`, file
//! provider ones `name@file`. A broken document or resource yields a diagnostic naming it and
//! is left out; everything else still applies.

use std::collections::BTreeMap;

use proxy::config::{
    CertificatePem, DynamicConfig, LoadBalancerConfig, MiddlewareConfig, RouterConfig, RouterTls,
    ServerConfig, ServiceConfig, Strategy, WeightedService,
};
use serde::Deserialize;

/// The proxy configuration read from a set of files, and what was skipped.
#[derive(Debug, Default)]
pub struct ProxyPlan {
    pub config: DynamicConfig,
    /// TLS secrets routers ask for that no `Secret` manifest provides: `(namespace, name)`,
    /// to be read from the secret store.
    pub secret_refs: Vec<(String, String)>,
    /// Client CA secrets of TLS options that no `Secret` manifest provides:
    /// `(option, namespace, name)`; their `ca.crt` (or `tls.ca`, `tls.crt`) is to be added
    /// to the option's `client_auth.ca_pems`.
    pub ca_refs: Vec<(String, String, String)>,
    /// Servers transports that need secrets no `Secret` manifest provides: kept out of
    /// `config` until every one of `transport_refs` is read from the secret store and added
    /// (a transport missing its root CA must never fall back to the system's roots).
    pub pending_transports: BTreeMap<String, proxy::config::ServersTransportConfig>,
    pub transport_refs: Vec<TransportSecretRef>,
    pub diagnostics: Vec<String>,
}

/// A secret a servers transport needs from the secret store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportSecretRef {
    /// The transport's name in the configuration.
    pub transport: String,
    pub namespace: String,
    pub name: String,
    /// A root CA (`rootCAsSecrets`: `ca.crt`, else `tls.crt`), or the client certificate
    /// (`certificatesSecrets`: `tls.crt` and `tls.key`).
    pub client_certificate: bool,
}

/// One file: its name (for diagnostics) and text.
pub struct ManifestFile<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    api_version: Option<String>,
    kind: Option<String>,
    http: Option<serde::de::IgnoredAny>,
    tls: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    metadata: Option<HeadMeta>,
}

#[derive(Deserialize)]
struct HeadMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize, Default)]
struct Meta {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    #[allow(dead_code)]
    annotations: BTreeMap<String, String>,
}

impl Meta {
    fn ns(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Doc<S> {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    metadata: Meta,
    spec: S,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct IngressRouteSpec {
    #[serde(default)]
    entry_points: Vec<String>,
    routes: Vec<RouteDoc>,
    #[serde(default)]
    tls: Option<TlsDoc>,
    #[serde(default)]
    #[allow(dead_code)]
    parent_refs: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RouteDoc {
    #[serde(rename = "match")]
    rule: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    priority: Option<i64>,
    #[serde(default)]
    middlewares: Vec<NameRef>,
    #[serde(default)]
    services: Vec<ServiceRef>,
    #[serde(default)]
    #[allow(dead_code)]
    syntax: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    observability: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameRef {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ServiceRef {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    port: Option<PortRef>,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    pass_host_header: Option<bool>,
    #[serde(default)]
    scheme: Option<String>,
    #[serde(default)]
    strategy: Option<String>,
    #[serde(default)]
    sticky: Option<StickyDoc>,
    #[serde(default)]
    health_check: Option<HealthCheckDoc>,
    #[serde(default)]
    passive_health_check: Option<PassiveDoc>,
    #[serde(default)]
    servers_transport: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct StickyDoc {
    cookie: StickyCookieDoc,
}

#[derive(Deserialize, Clone, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StickyCookieDoc {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    secure: bool,
    #[serde(default)]
    http_only: bool,
    #[serde(default)]
    same_site: Option<String>,
    #[serde(default)]
    max_age: Option<u64>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HealthCheckDoc {
    path: String,
    #[serde(default)]
    interval: Option<DurationDoc>,
    #[serde(default)]
    timeout: Option<DurationDoc>,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    scheme: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PassiveDoc {
    #[serde(default)]
    max_failed_attempts: Option<u32>,
    #[serde(default)]
    failure_window: Option<DurationDoc>,
}

/// A Traefik duration: `10s`, `500ms`, `1m`, `1h`, or a number of seconds.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum DurationDoc {
    Seconds(u64),
    Text(String),
}

impl DurationDoc {
    fn get(&self) -> Result<std::time::Duration, String> {
        match self {
            DurationDoc::Seconds(s) => Ok(std::time::Duration::from_secs(*s)),
            DurationDoc::Text(t) => {
                let t = t.trim();
                let split = t
                    .find(|c: char| !c.is_ascii_digit() && c != '.')
                    .unwrap_or(t.len());
                let (n, unit) = t.split_at(split);
                let n: f64 = n.parse().map_err(|_| format!("invalid duration {t:?}"))?;
                let secs = match unit {
                    "" | "s" => n,
                    "ms" => n / 1000.0,
                    "m" => n * 60.0,
                    "h" => n * 3600.0,
                    _ => return Err(format!("invalid duration {t:?} (units: ms, s, m, h)")),
                };
                if !(0.0..=86_400.0 * 365.0).contains(&secs) {
                    return Err(format!("duration {t:?} out of range"));
                }
                Ok(std::time::Duration::from_secs_f64(secs))
            }
        }
    }
}

fn sticky(d: Option<&StickyDoc>, default_name: &str) -> Option<proxy::config::StickyCookie> {
    d.map(|s| proxy::config::StickyCookie {
        name: s
            .cookie
            .name
            .clone()
            .unwrap_or_else(|| default_name.to_string()),
        secure: s.cookie.secure,
        http_only: s.cookie.http_only,
        same_site: s.cookie.same_site.clone().unwrap_or_default(),
        max_age: s.cookie.max_age.unwrap_or(0),
    })
}

fn health_check(d: Option<&HealthCheckDoc>) -> Result<Option<proxy::config::HealthCheck>, String> {
    let Some(h) = d else { return Ok(None) };
    if let Some(s) = h.scheme.as_deref() {
        if s != "http" {
            return Err(format!(
                "healthCheck.scheme {s:?}: only http probes are supported"
            ));
        }
    }
    Ok(Some(proxy::config::HealthCheck {
        path: h.path.clone(),
        interval: h
            .interval
            .as_ref()
            .map_or(Ok(std::time::Duration::from_secs(30)), DurationDoc::get)?,
        timeout: h
            .timeout
            .as_ref()
            .map_or(Ok(std::time::Duration::from_secs(5)), DurationDoc::get)?,
        hostname: h.hostname.clone(),
        port: h.port,
        status: h.status,
    }))
}

fn passive(d: Option<&PassiveDoc>) -> Result<Option<proxy::config::PassiveHealthCheck>, String> {
    let Some(p) = d else { return Ok(None) };
    Ok(Some(proxy::config::PassiveHealthCheck {
        max_failures: p.max_failed_attempts.unwrap_or(1).max(1),
        cooldown: p
            .failure_window
            .as_ref()
            .map_or(Ok(std::time::Duration::from_secs(10)), DurationDoc::get)?,
    }))
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum PortRef {
    Number(u16),
    Name(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TlsDoc {
    #[serde(default)]
    secret_name: Option<String>,
    #[serde(default)]
    options: Option<NameRef>,
    #[serde(default)]
    cert_resolver: Option<String>,
    #[serde(default)]
    domains: Vec<TlsDomainDoc>,
    #[serde(default)]
    #[allow(dead_code)]
    store: Option<serde::de::IgnoredAny>,
}

/// `tls.domains`: the names a resolver's certificate covers.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TlsDomainDoc {
    main: String,
    #[serde(default)]
    sans: Vec<String>,
}

fn domain_pairs(d: &[TlsDomainDoc]) -> Vec<(String, Vec<String>)> {
    d.iter().map(|d| (d.main.clone(), d.sans.clone())).collect()
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MiddlewareSpec {
    #[serde(default)]
    redirect_scheme: Option<RedirectSchemeDoc>,
    #[serde(default)]
    strip_prefix: Option<StripPrefixDoc>,
    #[serde(default)]
    add_prefix: Option<AddPrefixDoc>,
    #[serde(default)]
    headers: Option<HeadersDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RedirectSchemeDoc {
    scheme: String,
    #[serde(default)]
    port: Option<PortRef>,
    #[serde(default)]
    permanent: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StripPrefixDoc {
    prefixes: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    force_slash: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddPrefixDoc {
    prefix: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HeadersDoc {
    #[serde(default)]
    custom_request_headers: BTreeMap<String, String>,
    #[serde(default)]
    custom_response_headers: BTreeMap<String, String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TlsOptionSpec {
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
    #[serde(default)]
    cipher_suites: Vec<String>,
    #[serde(default)]
    curve_preferences: Vec<String>,
    #[serde(default)]
    alpn_protocols: Vec<String>,
    #[serde(default)]
    sni_strict: bool,
    #[serde(default)]
    client_auth: Option<ClientAuthDoc>,
    #[serde(default)]
    #[allow(dead_code)]
    prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    disable_session_tickets: Option<bool>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClientAuthDoc {
    /// Kubernetes: names of Secrets holding the CA certificates.
    #[serde(default)]
    secret_names: Vec<String>,
    /// File provider: CA certificate files.
    #[serde(default)]
    ca_files: Vec<String>,
    #[serde(default)]
    client_auth_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TraefikServiceSpec {
    #[serde(default)]
    weighted: Option<WeightedDoc>,
    #[serde(default)]
    mirroring: Option<CrdMirroringDoc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CrdMirroringDoc {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    port: Option<PortRef>,
    #[serde(default)]
    mirror_body: Option<bool>,
    #[serde(default)]
    max_body_size: Option<i64>,
    #[serde(default)]
    mirrors: Vec<CrdMirrorDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CrdMirrorDoc {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    port: Option<PortRef>,
    #[serde(default)]
    percent: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightedDoc {
    services: Vec<ServiceRef>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct K8sServiceSpec {
    #[serde(default)]
    ports: Vec<K8sServicePort>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct K8sServicePort {
    #[serde(default)]
    name: Option<String>,
    port: u16,
    #[serde(default)]
    target_port: Option<PortRef>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EndpointSliceDoc {
    metadata: Meta,
    #[serde(default)]
    endpoints: Vec<Endpoint>,
    #[serde(default)]
    ports: Vec<EndpointPort>,
}

#[derive(Deserialize)]
struct Endpoint {
    addresses: Vec<String>,
    #[serde(default)]
    conditions: Option<Conditions>,
}

#[derive(Deserialize)]
struct Conditions {
    #[serde(default)]
    ready: Option<bool>,
}

#[derive(Deserialize)]
struct EndpointPort {
    #[serde(default)]
    name: Option<String>,
    port: u16,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretDoc {
    metadata: Meta,
    #[serde(rename = "type", default)]
    secret_type: Option<String>,
    #[serde(default)]
    data: BTreeMap<String, String>,
    #[serde(default)]
    string_data: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    http: Option<FileHttp>,
    #[serde(default)]
    tls: Option<FileTls>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileTls {
    #[serde(default)]
    options: BTreeMap<String, TlsOptionSpec>,
    #[serde(default)]
    #[allow(dead_code)]
    certificates: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    #[allow(dead_code)]
    stores: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    #[serde(default)]
    routers: BTreeMap<String, FileRouter>,
    #[serde(default)]
    services: BTreeMap<String, FileService>,
    #[serde(default)]
    middlewares: BTreeMap<String, MiddlewareSpec>,
    #[serde(default, rename = "serversTransports")]
    servers_transports: BTreeMap<String, TransportDoc>,
}

/// Traefik's `serversTransport` (file provider) and `ServersTransport` spec (Kubernetes).
#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TransportDoc {
    #[serde(default)]
    server_name: Option<String>,
    #[serde(default)]
    insecure_skip_verify: bool,
    /// File provider: CA files.
    #[serde(default, rename = "rootCAs")]
    root_cas: Vec<RootCaDoc>,
    /// Kubernetes: Secrets holding CA certificates (`ca.crt` or `tls.crt`).
    #[serde(default, rename = "rootCAsSecrets")]
    root_cas_secrets: Vec<String>,
    /// File provider: client certificate files.
    #[serde(default)]
    certificates: Vec<CertFileDoc>,
    /// Kubernetes: `kubernetes.io/tls` Secrets with the client certificate.
    #[serde(default)]
    certificates_secrets: Vec<String>,
    #[serde(default)]
    max_idle_conns_per_host: Option<usize>,
    #[serde(default)]
    forwarding_timeouts: Option<TimeoutsDoc>,
    #[serde(default, rename = "disableHTTP2")]
    disable_http2: bool,
    #[serde(default)]
    #[allow(dead_code)]
    peer_cert_uri: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum RootCaDoc {
    File(String),
    Secret { secret: String },
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CertFileDoc {
    cert_file: String,
    key_file: String,
}

#[derive(Deserialize, Clone, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TimeoutsDoc {
    #[serde(default)]
    dial_timeout: Option<DurationDoc>,
    #[serde(default)]
    response_header_timeout: Option<DurationDoc>,
    #[serde(default)]
    idle_conn_timeout: Option<DurationDoc>,
}

/// A servers transport; CA and certificate Secrets are looked up among the manifests.
fn transport(
    d: &TransportDoc,
    ns: &str,
    secrets: &BTreeMap<(String, String), CertificatePem>,
    cas: &BTreeMap<(String, String), Vec<u8>>,
    missing: &mut Vec<(String, String, bool)>,
) -> Result<proxy::config::ServersTransportConfig, String> {
    let defaults = proxy::config::ServersTransportConfig::default();
    let mut root_cas = Vec::new();
    let mut ca_secret_names: Vec<&String> = d.root_cas_secrets.iter().collect();
    for r in &d.root_cas {
        match r {
            RootCaDoc::File(f) => {
                root_cas.push(std::fs::read(f).map_err(|e| format!("rootCAs {f}: {e}"))?)
            }
            RootCaDoc::Secret { secret } => ca_secret_names.push(secret),
        }
    }
    for name in ca_secret_names {
        let key = (ns.to_string(), name.clone());
        match cas
            .get(&key)
            .cloned()
            .or_else(|| secrets.get(&key).map(|c| c.chain.clone()))
        {
            Some(pem) => root_cas.push(pem),
            None => missing.push((ns.to_string(), name.clone(), false)),
        }
    }
    let mut client_certificate = None;
    if let Some(c) = d.certificates.first() {
        client_certificate = Some(CertificatePem {
            source: c.cert_file.clone(),
            chain: std::fs::read(&c.cert_file)
                .map_err(|e| format!("certificates {}: {e}", c.cert_file))?,
            key: zeroize::Zeroizing::new(
                std::fs::read(&c.key_file)
                    .map_err(|e| format!("certificates {}: {e}", c.key_file))?,
            ),
        });
    }
    if let Some(name) = d.certificates_secrets.first() {
        match secrets.get(&(ns.to_string(), name.clone())) {
            Some(c) => client_certificate = Some(c.clone()),
            None => missing.push((ns.to_string(), name.clone(), true)),
        }
    }
    let t = d.forwarding_timeouts.clone().unwrap_or_default();
    let response_header_timeout = match &t.response_header_timeout {
        Some(v) => Some(v.get()?).filter(|d| !d.is_zero()),
        None => None,
    };
    Ok(proxy::config::ServersTransportConfig {
        server_name: d.server_name.clone(),
        insecure_skip_verify: d.insecure_skip_verify,
        root_cas,
        client_certificate,
        max_idle_per_host: d
            .max_idle_conns_per_host
            .unwrap_or(defaults.max_idle_per_host),
        dial_timeout: t
            .dial_timeout
            .as_ref()
            .map_or(Ok(defaults.dial_timeout), DurationDoc::get)?,
        response_header_timeout,
        idle_conn_timeout: t
            .idle_conn_timeout
            .as_ref()
            .map_or(Ok(defaults.idle_conn_timeout), DurationDoc::get)?,
        disable_http2: d.disable_http2,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileRouter {
    #[serde(default)]
    entry_points: Vec<String>,
    rule: String,
    #[serde(default)]
    priority: Option<i64>,
    #[serde(default)]
    middlewares: Vec<String>,
    service: String,
    #[serde(default)]
    tls: Option<FileRouterTls>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileRouterTls {
    #[serde(default)]
    options: Option<String>,
    #[serde(default)]
    cert_resolver: Option<String>,
    #[serde(default)]
    domains: Vec<TlsDomainDoc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileService {
    #[serde(default)]
    load_balancer: Option<FileLoadBalancer>,
    #[serde(default)]
    weighted: Option<FileWeighted>,
    #[serde(default)]
    failover: Option<FileFailover>,
    #[serde(default)]
    mirroring: Option<FileMirroring>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileMirroring {
    service: String,
    #[serde(default)]
    mirror_body: Option<bool>,
    #[serde(default)]
    max_body_size: Option<i64>,
    #[serde(default)]
    mirrors: Vec<FileMirror>,
    #[serde(default)]
    #[allow(dead_code)]
    health_check: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMirror {
    name: String,
    #[serde(default)]
    percent: u32,
}

/// Traefik's `maxBodySize`: absent or -1 means edgeplane's bound, not unlimited.
fn mirror_limit(v: Option<i64>) -> Result<u64, String> {
    match v {
        None | Some(-1) => Ok(proxy::config::DEFAULT_MIRROR_MAX_BODY),
        Some(n) if n >= 0 => Ok(n as u64),
        Some(n) => Err(format!("maxBodySize {n} must be -1 or at least 0")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFailover {
    service: String,
    fallback: String,
    #[serde(default, rename = "healthCheck")]
    #[allow(dead_code)]
    health_check: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileLoadBalancer {
    servers: Vec<FileServer>,
    #[serde(default)]
    pass_host_header: Option<bool>,
    #[serde(default)]
    strategy: Option<String>,
    #[serde(default)]
    sticky: Option<StickyDoc>,
    #[serde(default)]
    health_check: Option<HealthCheckDoc>,
    #[serde(default)]
    passive_health_check: Option<PassiveDoc>,
    #[serde(default)]
    servers_transport: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    url: String,
    #[serde(default)]
    weight: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWeighted {
    services: Vec<FileWeightedRef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWeightedRef {
    name: String,
    #[serde(default)]
    weight: Option<u32>,
}

/// A parsed document waiting for cross-references to be resolved.
enum Item {
    IngressRoute(Meta, IngressRouteSpec),
    Middleware(Meta, MiddlewareSpec),
    TraefikService(Meta, TraefikServiceSpec),
    Service(Meta, K8sServiceSpec),
    EndpointSlice(EndpointSliceDoc),
    Secret(SecretDoc),
    TlsOption(Meta, TlsOptionSpec),
    ServersTransport(Meta, TransportDoc),
    File(FileHttp, FileTls),
    Ingress(kube_ingress::IngressDoc),
    IngressClass(kube_ingress::IngressClassDoc),
}

/// Reads every proxy resource of these files.
pub fn load(files: &[ManifestFile<'_>]) -> ProxyPlan {
    let parsed: Vec<ParsedFile> = files.iter().map(parse_file).collect();
    load_parsed(&parsed.iter().collect::<Vec<_>>())
}

/// One file's proxy resources, parsed: what [`load_parsed`] combines. Parsing is the costly
/// part of a reload (a file of 100,000 routers takes a while), so a caller keeps the parse of
/// each file that did not change.
///
/// Its translation is kept too, for as long as the files holding the documents other files
/// refer to (Services, EndpointSlices, Secrets, IngressClasses) stay the same: a change to
/// one file translates that file alone.
pub struct ParsedFile {
    /// Unique to this parse: names it in the translation keys of every file.
    id: u64,
    items: Vec<(String, Item)>,
    diagnostics: Vec<String>,
    /// Whether it holds documents other files' translation reads.
    context: bool,
    translated: std::sync::Mutex<Option<(Vec<u64>, std::sync::Arc<Fragment>)>>,
}

impl ParsedFile {
    /// The translation for this context key: the kept one, else `make`'s (then kept).
    fn fragment(&self, key: &[u64], make: impl FnOnce() -> Fragment) -> std::sync::Arc<Fragment> {
        let mut slot = self.translated.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((k, f)) = slot.as_ref() {
            if k.as_slice() == key {
                return f.clone();
            }
        }
        let f = std::sync::Arc::new(make());
        *slot = Some((key.to_vec(), f.clone()));
        f
    }
}

/// Parses one file's documents.
pub fn parse_file(f: &ManifestFile<'_>) -> ParsedFile {
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let mut out = ParsedFile {
        id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        items: Vec::new(),
        diagnostics: Vec::new(),
        context: false,
        translated: std::sync::Mutex::new(None),
    };
    for (line, doc) in crate::documents(f.text) {
        match parse_item(&doc) {
            Ok(Some(item)) => {
                out.context |= matches!(
                    item,
                    Item::Service(..)
                        | Item::EndpointSlice(_)
                        | Item::Secret(_)
                        | Item::IngressClass(_)
                );
                out.items.push((format!("{}:{line}", f.name), item));
            }
            Ok(None) => {}
            Err(e) => out.diagnostics.push(format!("{}:{line}: {e}", f.name)),
        }
    }
    out
}

/// The proxy configuration of parsed files (cross-references resolved across all of them).
pub fn load_parsed(files: &[&ParsedFile]) -> ProxyPlan {
    let mut plan = ProxyPlan::default();
    let items: Vec<&(String, Item)> = files.iter().flat_map(|f| f.items.iter()).collect();
    for f in files {
        plan.diagnostics.extend(f.diagnostics.iter().cloned());
    }
    let mut k8s_services = BTreeMap::new();
    let mut slices: Vec<&EndpointSliceDoc> = Vec::new();
    let mut tls_secrets = BTreeMap::new();
    let mut ca_secrets: BTreeMap<(String, String), Vec<u8>> = BTreeMap::new();
    for (at, item) in items.iter() {
        match item {
            Item::Service(m, s) => {
                k8s_services.insert((m.ns().to_string(), m.name.clone()), s);
            }
            Item::EndpointSlice(e) => slices.push(e),
            Item::Secret(s)
                if ca_of(s).is_some() && s.secret_type.as_deref() != Some("kubernetes.io/tls") =>
            {
                if let Some(ca) = ca_of(s) {
                    ca_secrets.insert((s.metadata.ns().to_string(), s.metadata.name.clone()), ca);
                }
            }
            Item::Secret(s) => match tls_secret(s) {
                Ok(Some(pem)) => {
                    let key = (s.metadata.ns().to_string(), s.metadata.name.clone());
                    if let Some(ca) = ca_of(s) {
                        ca_secrets.insert(key.clone(), ca);
                    }
                    tls_secrets.insert(key, pem);
                }
                Ok(None) => {}
                Err(e) => plan.diagnostics.push(format!(
                    "{at}: Secret {}/{}: {e}",
                    s.metadata.ns(),
                    s.metadata.name
                )),
            },
            _ => {}
        }
    }
    let backends = Backends {
        services: &k8s_services,
        slices: &slices,
    };
    let class_docs: Vec<&kube_ingress::IngressClassDoc> = items
        .iter()
        .filter_map(|(_, i)| match i {
            Item::IngressClass(c) => Some(c),
            _ => None,
        })
        .collect();
    let classes = kube_ingress::classes(&class_docs);
    let context = Context {
        backends: &backends,
        classes: &classes,
        tls_secrets: &tls_secrets,
        ca_secrets: &ca_secrets,
    };
    // A file's translation depends on it and on the files holding context documents
    // (Services, EndpointSlices, Secrets, IngressClasses): kept while those stay the same.
    let key: Vec<u64> = files.iter().filter(|f| f.context).map(|f| f.id).collect();
    let mut wanted_secrets: Vec<(String, String)> = Vec::new();
    for f in files {
        let fragment = f.fragment(&key, || {
            let mut out = Fragment::default();
            translate(&f.items, &context, &mut out.plan, &mut out.wanted_secrets);
            out
        });
        merge(&mut plan, &fragment.plan);
        wanted_secrets.extend(fragment.wanted_secrets.iter().cloned());
    }
    let cfg = &mut plan.config;
    let mut tls_secrets = tls_secrets;
    wanted_secrets.sort();
    wanted_secrets.dedup();
    for (ns, name) in wanted_secrets {
        match tls_secrets.remove(&(ns.clone(), name.clone())) {
            Some(pem) => cfg.certificates.push(pem),
            None => plan.secret_refs.push((ns, name)),
        }
    }
    // Secrets in the directory that no router names are still offered by SNI.
    cfg.certificates.extend(tls_secrets.into_values());
    plan
}

/// What translating a file looks at besides its own documents.
struct Context<'a> {
    backends: &'a Backends<'a>,
    classes: &'a [String],
    tls_secrets: &'a BTreeMap<(String, String), CertificatePem>,
    ca_secrets: &'a BTreeMap<(String, String), Vec<u8>>,
}

/// One file translated: its part of the plan, and the TLS secrets its routers name.
#[derive(Default)]
struct Fragment {
    plan: ProxyPlan,
    wanted_secrets: Vec<(String, String)>,
}

/// Adds a later file's part of the plan: its resources replace same-named earlier ones.
fn merge(plan: &mut ProxyPlan, later: &ProxyPlan) {
    fn overwrite<V: Clone>(into: &mut BTreeMap<String, V>, from: &BTreeMap<String, V>) {
        into.extend(from.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let cfg = &mut plan.config;
    cfg.routers = union_later_wins(std::mem::take(&mut cfg.routers), &later.config.routers);
    cfg.services = union_later_wins(std::mem::take(&mut cfg.services), &later.config.services);
    overwrite(&mut cfg.middlewares, &later.config.middlewares);
    overwrite(&mut cfg.tls_options, &later.config.tls_options);
    overwrite(
        &mut cfg.servers_transports,
        &later.config.servers_transports,
    );
    overwrite(&mut plan.pending_transports, &later.pending_transports);
    plan.transport_refs
        .extend(later.transport_refs.iter().cloned());
    plan.ca_refs.extend(later.ca_refs.iter().cloned());
    plan.diagnostics.extend(later.diagnostics.iter().cloned());
}

/// `earlier` and `later` together, `later`'s values winning: the smaller map is walked into
/// the larger, whichever comes first, so a small file merged with a large one costs
/// O(small · log large).
fn union_later_wins<V: Clone>(
    earlier: proxy::config::SharedMap<String, V>,
    later: &proxy::config::SharedMap<String, V>,
) -> proxy::config::SharedMap<String, V> {
    if later.len() >= earlier.len() {
        let mut out = later.clone();
        for (k, v) in earlier {
            out.entry(k).or_insert(v);
        }
        out
    } else {
        let mut out = earlier;
        for (k, v) in later {
            out.insert(k.clone(), v.clone());
        }
        out
    }
}

/// Translates one file's documents into `plan` (with the TLS secrets they name).
fn translate(
    items: &[(String, Item)],
    context: &Context<'_>,
    plan: &mut ProxyPlan,
    wanted_secrets: &mut Vec<(String, String)>,
) {
    let Context {
        backends,
        classes,
        tls_secrets,
        ca_secrets,
    } = *context;
    let cfg = &mut plan.config;
    for (at, item) in items {
        match item {
            Item::Ingress(d) => {
                if !kube_ingress::is_ours(d, classes) {
                    continue;
                }
                wanted_secrets.extend(kube_ingress::secrets(d));
                let (routers, problems) = kube_ingress::routers(d, backends, cfg);
                for (name, r) in routers {
                    cfg.routers.insert(name, r);
                }
                for p in problems {
                    plan.diagnostics.push(format!(
                        "{at}: Ingress {}/{}: {p}",
                        d.metadata.ns(),
                        d.metadata.name
                    ));
                }
            }
            Item::Middleware(m, spec) => match middleware(spec) {
                Ok(mw) => {
                    cfg.middlewares.insert(crd_name(m.ns(), &m.name), mw);
                }
                Err(e) => {
                    plan.diagnostics
                        .push(format!("{at}: Middleware {}/{}: {e}", m.ns(), m.name))
                }
            },
            Item::TraefikService(m, spec) => {
                let built = traefik_service(m, spec, backends, cfg);
                match built {
                    Ok(service) => {
                        cfg.services.insert(crd_name(m.ns(), &m.name), service);
                    }
                    Err(e) => plan.diagnostics.push(format!(
                        "{at}: TraefikService {}/{}: {e}",
                        m.ns(),
                        m.name
                    )),
                }
            }
            Item::IngressRoute(m, spec) => {
                if let Some(tls) = &spec.tls {
                    if let Some(secret) = &tls.secret_name {
                        wanted_secrets.push((m.ns().to_string(), secret.clone()));
                    }
                    // The certificate a resolver keeps for this route (issued by `serve`).
                    if let Some(resolver) = &tls.cert_resolver {
                        let rules: Vec<&str> =
                            spec.routes.iter().map(|r| r.rule.as_str()).collect();
                        let names =
                            crate::certmanager::resolver_names(&domain_pairs(&tls.domains), &rules);
                        if !names.is_empty() {
                            wanted_secrets.push((
                                m.ns().to_string(),
                                crate::certmanager::resolver_secret_name(resolver, &names),
                            ));
                        }
                    }
                }
                for (i, r) in spec.routes.iter().enumerate() {
                    let router_name = format!("{}-{}-{i}@kubernetescrd", m.ns(), m.name);
                    match ingress_route(m, spec, r, i, backends, cfg) {
                        Ok(router) => {
                            cfg.routers.insert(router_name, router);
                        }
                        Err(e) => plan.diagnostics.push(format!(
                            "{at}: IngressRoute {}/{} route {i}: {e}",
                            m.ns(),
                            m.name
                        )),
                    }
                }
            }
            Item::File(http, tls) => {
                file_provider(http, cfg, &mut plan.diagnostics, at);
                for r in http.routers.values() {
                    let Some(t) = &r.tls else { continue };
                    let Some(resolver) = &t.cert_resolver else {
                        continue;
                    };
                    let names = crate::certmanager::resolver_names(
                        &domain_pairs(&t.domains),
                        &[r.rule.as_str()],
                    );
                    if !names.is_empty() {
                        wanted_secrets.push((
                            "default".to_string(),
                            crate::certmanager::resolver_secret_name(resolver, &names),
                        ));
                    }
                }
                for (name, t) in &http.servers_transports {
                    let mut missing = Vec::new();
                    match transport(t, "default", tls_secrets, ca_secrets, &mut missing) {
                        Ok(t) if missing.is_empty() => {
                            cfg.servers_transports.insert(file_name(name), t);
                        }
                        Ok(t) => {
                            plan.pending_transports.insert(file_name(name), t);
                            for (namespace, secret, client_certificate) in missing {
                                plan.transport_refs.push(TransportSecretRef {
                                    transport: file_name(name),
                                    namespace,
                                    name: secret,
                                    client_certificate,
                                });
                            }
                        }
                        Err(e) => plan
                            .diagnostics
                            .push(format!("{at}: serversTransport {name}: {e}")),
                    }
                }
                for (name, spec) in &tls.options {
                    match tls_option(spec, "default", ca_secrets) {
                        Ok((opt, missing)) => {
                            if !missing.is_empty() {
                                plan.diagnostics.push(format!("{at}: TLS option {name}: file-provider clientAuth reads caFiles; secretNames are not looked up here"));
                                continue;
                            }
                            cfg.tls_options
                                .insert(option_name(file_name(name), name), opt);
                        }
                        Err(e) => plan
                            .diagnostics
                            .push(format!("{at}: TLS option {name}: {e}")),
                    }
                }
            }
            Item::ServersTransport(m, spec) => {
                let mut missing = Vec::new();
                match transport(spec, m.ns(), tls_secrets, ca_secrets, &mut missing) {
                    Ok(t) if missing.is_empty() => {
                        cfg.servers_transports.insert(crd_name(m.ns(), &m.name), t);
                    }
                    Ok(t) => {
                        plan.pending_transports.insert(crd_name(m.ns(), &m.name), t);
                        for (namespace, secret, client_certificate) in missing {
                            plan.transport_refs.push(TransportSecretRef {
                                transport: crd_name(m.ns(), &m.name),
                                namespace,
                                name: secret,
                                client_certificate,
                            });
                        }
                    }
                    Err(e) => plan.diagnostics.push(format!(
                        "{at}: ServersTransport {}/{}: {e}",
                        m.ns(),
                        m.name
                    )),
                }
            }
            Item::TlsOption(m, spec) => match tls_option(spec, m.ns(), ca_secrets) {
                Ok((opt, missing)) => {
                    let name = option_name(crd_name(m.ns(), &m.name), &m.name);
                    for (ns, secret) in missing {
                        plan.ca_refs.push((name.clone(), ns, secret));
                    }
                    cfg.tls_options.insert(name, opt);
                }
                Err(e) => {
                    plan.diagnostics
                        .push(format!("{at}: TLSOption {}/{}: {e}", m.ns(), m.name))
                }
            },
            _ => {}
        }
    }
}

fn parse_item(doc: &str) -> Result<Option<Item>, String> {
    let head: Head = crate::from_yaml(doc).map_err(|e| e.to_string())?;
    let api = head.api_version.as_deref().unwrap_or("");
    let traefik = matches!(api, "traefik.io/v1alpha1" | "traefik.containo.us/v1alpha1");
    let what = match (&head.kind, &head.metadata) {
        (Some(kind), Some(m)) => format!(
            "{kind} {}/{}: ",
            m.namespace.as_deref().unwrap_or("default"),
            m.name.as_deref().unwrap_or("?")
        ),
        (Some(kind), None) => format!("{kind}: "),
        _ => "Traefik dynamic configuration: ".to_string(),
    };
    let parse_err = |e: serde_saphyr::Error| format!("{what}{e}");
    Ok(Some(match head.kind.as_deref() {
        Some("IngressRoute") if traefik => {
            let d: Doc<IngressRouteSpec> = crate::from_yaml(doc).map_err(parse_err)?;
            Item::IngressRoute(d.metadata, d.spec)
        }
        Some("Middleware") if traefik => {
            let d: Doc<MiddlewareSpec> = crate::from_yaml(doc).map_err(parse_err)?;
            Item::Middleware(d.metadata, d.spec)
        }
        Some("ServersTransport") if traefik => {
            let d: Doc<TransportDoc> = crate::from_yaml(doc).map_err(parse_err)?;
            Item::ServersTransport(d.metadata, d.spec)
        }
        Some("TLSOption") if traefik => {
            let d: Doc<TlsOptionSpec> = crate::from_yaml(doc).map_err(parse_err)?;
            Item::TlsOption(d.metadata, d.spec)
        }
        Some("TraefikService") if traefik => {
            let d: Doc<TraefikServiceSpec> = crate::from_yaml(doc).map_err(parse_err)?;
            Item::TraefikService(d.metadata, d.spec)
        }
        Some("Service") if api == "v1" => {
            let d: Doc<K8sServiceSpec> = crate::from_yaml(doc).map_err(parse_err)?;
            Item::Service(d.metadata, d.spec)
        }
        Some("EndpointSlice") if api == "discovery.k8s.io/v1" => {
            Item::EndpointSlice(crate::from_yaml(doc).map_err(parse_err)?)
        }
        Some("Secret") if api == "v1" => Item::Secret(crate::from_yaml(doc).map_err(parse_err)?),
        Some("Ingress") if api == "networking.k8s.io/v1" => {
            Item::Ingress(crate::from_yaml(doc).map_err(parse_err)?)
        }
        Some("IngressClass") if api == "networking.k8s.io/v1" => {
            Item::IngressClass(crate::from_yaml(doc).map_err(parse_err)?)
        }
        Some(_) => return Ok(None),
        None if head.http.is_some() || head.tls.is_some() => {
            let d: FileDoc = crate::from_yaml(doc).map_err(parse_err)?;
            Item::File(d.http.unwrap_or_default(), d.tls.unwrap_or_default())
        }
        None => return Ok(None),
    }))
}

/// A TraefikService: `weighted` or `mirroring`.
fn traefik_service(
    m: &Meta,
    spec: &TraefikServiceSpec,
    backends: &Backends<'_>,
    cfg: &mut DynamicConfig,
) -> Result<ServiceConfig, String> {
    match (&spec.weighted, &spec.mirroring) {
        (Some(w), None) => {
            let mut children = Vec::new();
            for (i, s) in w.services.iter().enumerate() {
                let name =
                    backends.service(m.ns(), s, &format!("{}-{}-w{i}", m.ns(), m.name), cfg)?;
                children.push(WeightedService {
                    service: name,
                    weight: s.weight.unwrap_or(1),
                });
            }
            Ok(ServiceConfig::Weighted(children))
        }
        (None, Some(mr)) => {
            let main = ServiceRef {
                name: mr.name.clone(),
                namespace: mr.namespace.clone(),
                kind: mr.kind.clone(),
                port: mr.port.clone(),
                ..ServiceRef::default()
            };
            let service =
                backends.service(m.ns(), &main, &format!("{}-{}-main", m.ns(), m.name), cfg)?;
            let mut mirrors = Vec::new();
            for (i, x) in mr.mirrors.iter().enumerate() {
                let r = ServiceRef {
                    name: x.name.clone(),
                    namespace: x.namespace.clone(),
                    kind: x.kind.clone(),
                    port: x.port.clone(),
                    ..ServiceRef::default()
                };
                let name =
                    backends.service(m.ns(), &r, &format!("{}-{}-m{i}", m.ns(), m.name), cfg)?;
                mirrors.push((name, x.percent));
            }
            Ok(ServiceConfig::Mirroring(proxy::config::MirroringConfig {
                service,
                mirrors,
                mirror_body: mr.mirror_body.unwrap_or(true),
                max_body_size: mirror_limit(mr.max_body_size)?,
            }))
        }
        _ => Err("exactly one of weighted and mirroring is required".to_string()),
    }
}

fn crd_name(ns: &str, name: &str) -> String {
    if name.contains('@') {
        name.to_string()
    } else {
        format!("{ns}-{name}@kubernetescrd")
    }
}

/// A TLS option named `default` is the default, whatever provider it comes from.
fn option_name(qualified: String, bare: &str) -> String {
    if bare == "default" || bare.starts_with("default@") {
        "default".to_string()
    } else {
        qualified
    }
}

fn file_name(name: &str) -> String {
    if name.contains('@') {
        name.to_string()
    } else {
        format!("{name}@file")
    }
}

struct Backends<'a> {
    services: &'a BTreeMap<(String, String), &'a K8sServiceSpec>,
    slices: &'a [&'a EndpointSliceDoc],
}

impl Backends<'_> {
    /// The proxy service name for a reference, creating the load balancer of a Kubernetes
    /// Service from its EndpointSlices.
    fn service(
        &self,
        ns: &str,
        r: &ServiceRef,
        _weighted_name: &str,
        cfg: &mut DynamicConfig,
    ) -> Result<String, String> {
        let ns = r.namespace.as_deref().unwrap_or(ns);
        match r.kind.as_deref().unwrap_or("Service") {
            "TraefikService" => return Ok(crd_name(ns, &r.name)),
            "Service" => {}
            other => {
                return Err(format!(
                    "service kind {other:?} must be Service or TraefikService"
                ))
            }
        }
        let port = r
            .port
            .clone()
            .ok_or_else(|| format!("service {ns}/{}: port is required", r.name))?;
        let svc = self
            .services
            .get(&(ns.to_string(), r.name.clone()))
            .ok_or_else(|| format!("service {ns}/{} not found", r.name))?;
        let sp = svc
            .ports
            .iter()
            .find(|p| match &port {
                PortRef::Number(n) => p.port == *n,
                PortRef::Name(n) => p.name.as_deref() == Some(n.as_str()),
            })
            .ok_or_else(|| format!("service {ns}/{} has no port {}", r.name, port_text(&port)))?;
        let scheme = match r.scheme.as_deref() {
            None | Some("http") => "http",
            Some("h2c") => "h2c",
            Some("https") => "https",
            Some(other) => {
                return Err(format!(
                    "scheme {other:?} is not supported (http, https, h2c)"
                ))
            }
        };
        let mut servers = Vec::new();
        for s in self.slices.iter().filter(|s| {
            s.metadata.ns() == ns
                && s.metadata.labels.get("kubernetes.io/service-name") == Some(&r.name)
        }) {
            let port = s
                .ports
                .iter()
                .find(|p| p.name == sp.name || s.ports.len() == 1)
                .map(|p| p.port)
                .or(match &sp.target_port {
                    Some(PortRef::Number(n)) => Some(*n),
                    _ => None,
                })
                .unwrap_or(sp.port);
            for e in &s.endpoints {
                if e.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                    continue;
                }
                for a in &e.addresses {
                    let ip: std::net::IpAddr = a.parse().map_err(|_| {
                        format!("EndpointSlice {}: invalid address {a:?}", s.metadata.name)
                    })?;
                    let host = match ip {
                        std::net::IpAddr::V6(_) => format!("[{ip}]"),
                        std::net::IpAddr::V4(_) => ip.to_string(),
                    };
                    servers.push(ServerConfig {
                        url: format!("{scheme}://{host}:{port}"),
                        weight: 1,
                    });
                }
            }
        }
        servers.sort_by(|a, b| a.url.cmp(&b.url));
        servers.dedup();
        let name = format!("{ns}-{}-{}", r.name, port_text(&port));
        let name = match scheme {
            "h2c" => format!("{name}-h2c"),
            "https" => format!("{name}-https"),
            _ => name,
        };
        let strategy = strategy(r.strategy.as_deref())?;
        let lb = LoadBalancerConfig {
            servers,
            strategy,
            pass_host_header: r.pass_host_header.unwrap_or(true),
            sticky: sticky(
                r.sticky.as_ref(),
                &format!("{ns}_{}_{}", r.name, port_text(&port)),
            ),
            health_check: health_check(r.health_check.as_ref())?,
            passive: passive(r.passive_health_check.as_ref())?,
            servers_transport: r.servers_transport.as_ref().map(|t| crd_name(ns, t)),
        };
        // Two references to the same Service with different options are two services.
        let mut name = name;
        let mut n = 1;
        while let Some(ServiceConfig::LoadBalancer(existing)) =
            cfg.services.get(&format!("{name}@kubernetescrd"))
        {
            if *existing == lb {
                break;
            }
            n += 1;
            name = format!("{ns}-{}-{}-{n}", r.name, port_text(&port));
        }
        cfg.services.insert(
            format!("{name}@kubernetescrd"),
            ServiceConfig::LoadBalancer(lb),
        );
        Ok(format!("{name}@kubernetescrd"))
    }
}

fn port_text(p: &PortRef) -> String {
    match p {
        PortRef::Number(n) => n.to_string(),
        PortRef::Name(n) => n.clone(),
    }
}

fn strategy(s: Option<&str>) -> Result<Strategy, String> {
    match s {
        None | Some("wrr") | Some("RoundRobin") => Ok(Strategy::WeightedRoundRobin),
        Some("p2c") => Ok(Strategy::PowerOfTwoChoices),
        Some(other) => Err(format!("strategy {other:?} must be wrr or p2c")),
    }
}

fn ingress_route(
    m: &Meta,
    spec: &IngressRouteSpec,
    r: &RouteDoc,
    i: usize,
    backends: &Backends<'_>,
    cfg: &mut DynamicConfig,
) -> Result<RouterConfig, String> {
    if let Some(k) = r.kind.as_deref() {
        if k != "Rule" {
            return Err(format!("kind {k:?} must be Rule"));
        }
    }
    let service = match r.services.len() {
        0 => return Err("a route needs at least one service".to_string()),
        1 => backends.service(m.ns(), &r.services[0], "", cfg)?,
        _ => {
            let mut children = Vec::new();
            for s in &r.services {
                children.push(WeightedService {
                    service: backends.service(m.ns(), s, "", cfg)?,
                    weight: s.weight.unwrap_or(1),
                });
            }
            let name = format!("{}-{}-{i}@kubernetescrd", m.ns(), m.name);
            cfg.services
                .insert(name.clone(), ServiceConfig::Weighted(children));
            name
        }
    };
    let tls = spec.tls.as_ref().map(|t| RouterTls {
        options: t.options.as_ref().map(|o| {
            option_name(
                crd_name(o.namespace.as_deref().unwrap_or(m.ns()), &o.name),
                &o.name,
            )
        }),
        cert_resolver: t.cert_resolver.clone(),
    });
    Ok(RouterConfig {
        entry_points: spec.entry_points.clone(),
        rule: r.rule.clone(),
        priority: r.priority.filter(|p| *p != 0),
        middlewares: r
            .middlewares
            .iter()
            .map(|mw| crd_name(mw.namespace.as_deref().unwrap_or(m.ns()), &mw.name))
            .collect(),
        service,
        tls,
    })
}

fn middleware(spec: &MiddlewareSpec) -> Result<MiddlewareConfig, String> {
    let mut found = Vec::new();
    if let Some(r) = &spec.redirect_scheme {
        found.push(MiddlewareConfig::RedirectScheme {
            scheme: r.scheme.clone(),
            port: r.port.as_ref().map(port_text),
            permanent: r.permanent,
        });
    }
    if let Some(s) = &spec.strip_prefix {
        found.push(MiddlewareConfig::StripPrefix {
            prefixes: s.prefixes.clone(),
        });
    }
    if let Some(a) = &spec.add_prefix {
        found.push(MiddlewareConfig::AddPrefix {
            prefix: a.prefix.clone(),
        });
    }
    if let Some(h) = &spec.headers {
        found.push(MiddlewareConfig::Headers {
            request: h.custom_request_headers.clone().into_iter().collect(),
            response: h.custom_response_headers.clone().into_iter().collect(),
        });
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(
            "no supported middleware type (redirectScheme, stripPrefix, addPrefix, headers)"
                .to_string(),
        ),
        _ => Err("a middleware has exactly one type".to_string()),
    }
}

/// The CA certificate a Secret holds (`ca.crt`, else `tls.ca`), for client authentication.
fn ca_of(s: &SecretDoc) -> Option<Vec<u8>> {
    for k in ["ca.crt", "tls.ca"] {
        if let Some(v) = s.string_data.get(k) {
            return Some(v.as_bytes().to_vec());
        }
        if let Some(v) = s.data.get(k) {
            let clean: String = v.chars().filter(|c| !c.is_whitespace()).collect();
            return model::base64::decode(clean.as_bytes());
        }
    }
    None
}

/// A TLS option, with the client CA secrets not found among the manifests.
fn tls_option(
    spec: &TlsOptionSpec,
    ns: &str,
    ca_secrets: &BTreeMap<(String, String), Vec<u8>>,
) -> Result<(proxy::config::TlsOptions, Vec<(String, String)>), String> {
    let mut missing = Vec::new();
    let client_auth = match &spec.client_auth {
        None => None,
        Some(c) => {
            let mode = c
                .client_auth_type
                .clone()
                .unwrap_or_else(|| "RequireAndVerifyClientCert".to_string());
            if mode == "NoClientCert" {
                None
            } else {
                let mut ca_pems = Vec::new();
                for name in &c.secret_names {
                    match ca_secrets.get(&(ns.to_string(), name.clone())) {
                        Some(pem) => ca_pems.push(pem.clone()),
                        None => missing.push((ns.to_string(), name.clone())),
                    }
                }
                for f in &c.ca_files {
                    ca_pems.push(
                        std::fs::read(f).map_err(|e| format!("clientAuth.caFiles {f}: {e}"))?,
                    );
                }
                Some(proxy::config::ClientAuth { mode, ca_pems })
            }
        }
    };
    Ok((
        proxy::config::TlsOptions {
            min_version: spec.min_version.clone(),
            max_version: spec.max_version.clone(),
            cipher_suites: spec.cipher_suites.clone(),
            curve_preferences: spec.curve_preferences.clone(),
            alpn_protocols: spec.alpn_protocols.clone(),
            sni_strict: spec.sni_strict,
            client_auth,
        },
        missing,
    ))
}

fn tls_secret(s: &SecretDoc) -> Result<Option<CertificatePem>, String> {
    if s.secret_type.as_deref() != Some("kubernetes.io/tls") {
        return Ok(None);
    }
    let get = |k: &str| -> Result<Vec<u8>, String> {
        if let Some(v) = s.string_data.get(k) {
            return Ok(v.as_bytes().to_vec());
        }
        let v = s.data.get(k).ok_or_else(|| format!("{k} is missing"))?;
        let clean: String = v.chars().filter(|c| !c.is_whitespace()).collect();
        model::base64::decode(clean.as_bytes()).ok_or_else(|| format!("{k} is not base64"))
    };
    Ok(Some(CertificatePem {
        source: format!("{}/{}", s.metadata.ns(), s.metadata.name),
        chain: get("tls.crt")?,
        key: zeroize::Zeroizing::new(get("tls.key")?),
    }))
}

fn file_provider(http: &FileHttp, cfg: &mut DynamicConfig, diags: &mut Vec<String>, at: &str) {
    for (name, spec) in &http.middlewares {
        match middleware(spec) {
            Ok(m) => {
                cfg.middlewares.insert(file_name(name), m);
            }
            Err(e) => diags.push(format!("{at}: middleware {name}: {e}")),
        }
    }
    for (name, s) in &http.services {
        if let Some(m) = &s.mirroring {
            let built = if s.load_balancer.is_some() || s.weighted.is_some() || s.failover.is_some()
            {
                Err(
                    "a service has exactly one of loadBalancer, weighted, failover or mirroring"
                        .to_string(),
                )
            } else {
                mirror_limit(m.max_body_size).map(|max_body_size| {
                    ServiceConfig::Mirroring(proxy::config::MirroringConfig {
                        service: file_name(&m.service),
                        mirrors: m
                            .mirrors
                            .iter()
                            .map(|x| (file_name(&x.name), x.percent))
                            .collect(),
                        mirror_body: m.mirror_body.unwrap_or(true),
                        max_body_size,
                    })
                })
            };
            match built {
                Ok(b) => {
                    cfg.services.insert(file_name(name), b);
                }
                Err(e) => diags.push(format!("{at}: service {name}: {e}")),
            }
            continue;
        }
        let built = match (&s.load_balancer, &s.weighted, &s.failover) {
            (None, None, Some(f)) => Ok(ServiceConfig::Failover {
                service: file_name(&f.service),
                fallback: file_name(&f.fallback),
            }),
            (Some(lb), None, None) => (|| {
                Ok(ServiceConfig::LoadBalancer(LoadBalancerConfig {
                    servers: lb
                        .servers
                        .iter()
                        .map(|s| ServerConfig {
                            url: s.url.trim_end_matches('/').to_string(),
                            weight: s.weight.unwrap_or(1),
                        })
                        .collect(),
                    strategy: strategy(lb.strategy.as_deref())?,
                    pass_host_header: lb.pass_host_header.unwrap_or(true),
                    sticky: sticky(lb.sticky.as_ref(), &format!("{name}_file")),
                    health_check: health_check(lb.health_check.as_ref())?,
                    passive: passive(lb.passive_health_check.as_ref())?,
                    servers_transport: lb.servers_transport.as_ref().map(|t| file_name(t)),
                }))
            })(),
            (None, Some(w), None) => Ok(ServiceConfig::Weighted(
                w.services
                    .iter()
                    .map(|c| WeightedService {
                        service: file_name(&c.name),
                        weight: c.weight.unwrap_or(1),
                    })
                    .collect(),
            )),
            _ => Err("a service has exactly one of loadBalancer, weighted or failover".to_string()),
        };
        match built {
            Ok(b) => {
                cfg.services.insert(file_name(name), b);
            }
            Err(e) => diags.push(format!("{at}: service {name}: {e}")),
        }
    }
    for (name, r) in &http.routers {
        cfg.routers.insert(
            file_name(name),
            RouterConfig {
                entry_points: r.entry_points.clone(),
                rule: r.rule.clone(),
                priority: r.priority.filter(|p| *p != 0),
                middlewares: r.middlewares.iter().map(|m| file_name(m)).collect(),
                service: file_name(&r.service),
                tls: r.tls.as_ref().map(|t| RouterTls {
                    options: t.options.as_ref().map(|o| option_name(file_name(o), o)),
                    cert_resolver: t.cert_resolver.clone(),
                }),
            },
        );
    }
}

mod kube_ingress;

#[cfg(test)]
mod tests;
