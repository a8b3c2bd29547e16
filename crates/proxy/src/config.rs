//! The proxy's dynamic configuration as plain data: routers, services, middlewares and TLS
//! certificates, keyed by name. Providers (the manifest directory, Traefik's file format)
//! translate into it; [`crate::Proxy::apply`] compiles it. No serde, no I/O.

use std::collections::BTreeMap;

/// A map sorted by key that is cloned in constant time and shares structure with its clones
/// (a persistent B-tree): routers and services can number a hundred thousand, and a reload
/// that changes one of them copies, compares and merges only what changed.
pub type SharedMap<K, V> = imbl::OrdMap<K, V>;

/// Everything the proxy serves. Names are provider-qualified by the provider (for manifests,
/// `namespace-name`), so two sources cannot collide.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DynamicConfig {
    pub routers: SharedMap<String, RouterConfig>,
    pub services: SharedMap<String, ServiceConfig>,
    pub middlewares: BTreeMap<String, MiddlewareConfig>,
    /// Certificates offered by SNI, in PEM; the first whose names match a handshake is used.
    pub certificates: Vec<CertificatePem>,
    /// TLS options by name; `default` applies to every handshake no router's options claim.
    pub tls_options: BTreeMap<String, TlsOptions>,
    /// How to reach servers, by name; load balancers name one (`default` otherwise).
    pub servers_transports: BTreeMap<String, ServersTransportConfig>,
}

/// Traefik's `serversTransport`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServersTransportConfig {
    /// The name sent in SNI and verified, instead of the server's host.
    pub server_name: Option<String>,
    /// Accept any server certificate (for self-signed backends; signatures still checked).
    pub insecure_skip_verify: bool,
    /// CA certificates (PEM) server certificates must chain to; the system's when empty.
    pub root_cas: Vec<Vec<u8>>,
    /// A certificate to present to servers that ask for one.
    pub client_certificate: Option<CertificatePem>,
    pub max_idle_per_host: usize,
    pub dial_timeout: std::time::Duration,
    /// Time to wait for a server's response headers (`None`: no limit).
    pub response_header_timeout: Option<std::time::Duration>,
    pub idle_conn_timeout: std::time::Duration,
    pub disable_http2: bool,
}

impl Default for ServersTransportConfig {
    fn default() -> Self {
        ServersTransportConfig {
            server_name: None,
            insecure_skip_verify: false,
            root_cas: Vec::new(),
            client_certificate: None,
            max_idle_per_host: 200,
            dial_timeout: std::time::Duration::from_secs(30),
            response_header_timeout: None,
            idle_conn_timeout: std::time::Duration::from_secs(90),
            disable_http2: false,
        }
    }
}

/// Traefik's TLSOption: what a TLS handshake may negotiate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsOptions {
    /// `VersionTLS12` or `VersionTLS13` (older versions are not offered at all).
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    /// IANA or Go names of TLS 1.2 suites (TLS 1.3 suites may be listed too).
    pub cipher_suites: Vec<String>,
    /// `CurveP256`, `CurveP384`, `X25519`, `X25519MLKEM768`.
    pub curve_preferences: Vec<String>,
    /// Default `h2`, `http/1.1`.
    pub alpn_protocols: Vec<String>,
    /// Refuse handshakes without SNI or for a name no certificate covers.
    pub sni_strict: bool,
    pub client_auth: Option<ClientAuth>,
}

/// Client certificate authentication (mTLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    /// `RequireAndVerifyClientCert` or `VerifyClientCertIfGiven`.
    pub mode: String,
    /// CA certificates (PEM) client certificates must chain to.
    pub ca_pems: Vec<Vec<u8>>,
}

/// A router: a rule over requests on some entry points, middlewares, and a service.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterConfig {
    /// Entry points this router listens on; empty means every entry point.
    pub entry_points: Vec<String>,
    pub rule: String,
    /// Explicit priority; `None` means the rule's length.
    pub priority: Option<i64>,
    pub middlewares: Vec<String>,
    pub service: String,
    /// `Some` when the router only serves TLS connections.
    pub tls: Option<RouterTls>,
}

/// A router's TLS section.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouterTls {
    pub options: Option<String>,
    pub cert_resolver: Option<String>,
}

/// A service: servers behind a load balancer, or a weighted choice of other services.
#[derive(Debug, Clone, PartialEq)]
// Configuration data, built once per reload: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum ServiceConfig {
    LoadBalancer(LoadBalancerConfig),
    Weighted(Vec<WeightedService>),
    /// Traefik's `failover`: `service` while it has a usable server, else `fallback`.
    Failover {
        service: String,
        fallback: String,
    },
    /// Traefik's `mirroring`: every request to `service`, and a share of them copied to
    /// each mirror (their answers discarded).
    Mirroring(MirroringConfig),
}

/// A mirroring service.
#[derive(Debug, Clone, PartialEq)]
pub struct MirroringConfig {
    pub service: String,
    /// (service, percent of requests)
    pub mirrors: Vec<(String, u32)>,
    /// Copy request bodies (else mirrors get the headers and an empty body).
    pub mirror_body: bool,
    /// A request whose body is larger is not mirrored (its body is buffered up to this).
    pub max_body_size: u64,
}

/// Bodies above this are not mirrored unless `maxBodySize` says otherwise (Traefik buffers
/// without limit by default; edgeplane does not hold unbounded bodies in memory).
pub const DEFAULT_MIRROR_MAX_BODY: u64 = 4 * 1024 * 1024;

/// One child of a weighted service.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedService {
    pub service: String,
    pub weight: u32,
}

/// Servers with a balancing strategy.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadBalancerConfig {
    pub servers: Vec<ServerConfig>,
    pub strategy: Strategy,
    /// Forward the client's Host header (Traefik's default), else the server's authority.
    pub pass_host_header: bool,
    /// Pin a client to a server with a cookie.
    pub sticky: Option<StickyCookie>,
    /// Probe every server; failing ones get no traffic until they pass again.
    pub health_check: Option<HealthCheck>,
    /// Take a server out after this many consecutive failed connections, for `cooldown`.
    pub passive: Option<PassiveHealthCheck>,
    /// The servers transport to use (`None`: the default one).
    pub servers_transport: Option<String>,
}

impl Default for LoadBalancerConfig {
    fn default() -> Self {
        LoadBalancerConfig {
            servers: Vec::new(),
            strategy: Strategy::WeightedRoundRobin,
            pass_host_header: true,
            sticky: None,
            health_check: None,
            passive: None,
            servers_transport: None,
        }
    }
}

/// Traefik's `sticky.cookie`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyCookie {
    pub name: String,
    pub secure: bool,
    pub http_only: bool,
    /// `None`, `Lax`, `Strict` or empty (not sent).
    pub same_site: String,
    /// Seconds; 0 means a session cookie.
    pub max_age: u64,
}

/// Traefik's `healthCheck`: an HTTP GET to every server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub path: String,
    pub interval: std::time::Duration,
    pub timeout: std::time::Duration,
    /// Host header of the probe (default: the server's authority).
    pub hostname: Option<String>,
    /// Port to probe instead of the server's.
    pub port: Option<u16>,
    /// Expected status (default: any 2xx or 3xx).
    pub status: Option<u16>,
}

/// Passive ejection on failed connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassiveHealthCheck {
    pub max_failures: u32,
    pub cooldown: std::time::Duration,
}

/// One backend server: `http://host:port`, `https://host:port`, or `h2c://host:port` for
/// HTTP/2 without TLS (gRPC).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub url: String,
    pub weight: u32,
}

/// How a load balancer picks a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Smooth weighted round robin.
    WeightedRoundRobin,
    /// Power of two random choices by requests in flight.
    PowerOfTwoChoices,
}

/// A middleware (the kinds implemented so far).
#[derive(Debug, Clone, PartialEq)]
pub enum MiddlewareConfig {
    RedirectScheme {
        scheme: String,
        port: Option<String>,
        permanent: bool,
    },
    StripPrefix {
        prefixes: Vec<String>,
    },
    AddPrefix {
        prefix: String,
    },
    Headers {
        request: Vec<(String, String)>,
        response: Vec<(String, String)>,
    },
}

/// A certificate chain and its private key, in PEM.
#[derive(Clone, PartialEq)]
pub struct CertificatePem {
    /// Where it came from (a secret's `namespace/name`), for diagnostics.
    pub source: String,
    pub chain: Vec<u8>,
    pub key: zeroize::Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for CertificatePem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificatePem")
            .field("source", &self.source)
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// A problem with one resource: it was skipped, the rest applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// `router`, `service`, `middleware` or `certificate`.
    pub kind: &'static str,
    pub name: String,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}: {}", self.kind, self.name, self.message)
    }
}
