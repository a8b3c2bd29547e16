//! The compiled configuration: per entry point a [`RouteTable`] of routes, each with its
//! middlewares and service resolved. Built off the serving path from a [`DynamicConfig`] and
//! swapped in whole; services whose definition did not change keep their balancer state.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::balancer::Balancer;
use crate::config::{
    Diagnostic, DynamicConfig, LoadBalancerConfig, MiddlewareConfig, RouterConfig, ServiceConfig,
    Strategy,
};
use crate::rule::Rule;
use crate::table::{LayeredTable, RouteTable, TableEntry};

/// How deep weighted services may nest.
const MAX_SERVICE_DEPTH: usize = 8;

/// One entry point as the compiler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPointInfo {
    pub name: String,
    pub tls: bool,
}

/// A router ready to serve.
#[derive(Debug)]
pub struct Route {
    pub router: String,
    pub service_name: String,
    pub middlewares: Vec<Arc<MiddlewareConfig>>,
    pub service: Arc<Service>,
    /// The router's request counts, resolved by the first request it serves.
    pub(crate) metrics: std::sync::OnceLock<crate::metrics::RouteMetrics>,
}

/// A service ready to serve.
// Always behind an `Arc`, built once per reload: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Service {
    Servers {
        definition: LoadBalancerConfig,
        transport: Arc<crate::transport::Transport>,
        servers: Vec<Upstream>,
        balancer: Balancer,
        health: crate::health::Health,
        /// Sticky cookie value of each server (a hash of its URL).
        cookie_values: Vec<String>,
    },
    Weighted {
        children: Vec<(String, Arc<Service>)>,
        balancer: Balancer,
    },
    /// The main service while it has a usable server, else the fallback.
    Failover {
        main: (String, Arc<Service>),
        fallback: (String, Arc<Service>),
    },
    /// Every request to `main`; a share copied to each mirror.
    Mirroring {
        main: (String, Arc<Service>),
        mirrors: Vec<Mirror>,
        mirror_body: bool,
        max_body_size: u64,
    },
}

/// One mirror of a mirroring service.
#[derive(Debug)]
pub struct Mirror {
    pub name: String,
    pub service: Arc<Service>,
    pub percent: u32,
    seen: std::sync::atomic::AtomicU64,
}

impl Mirror {
    pub fn new(name: String, service: Arc<Service>, percent: u32) -> Mirror {
        Mirror {
            name,
            service,
            percent: percent.min(100),
            seen: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Whether this request is copied: exactly `percent` of every hundred, spread evenly.
    pub fn fires(&self) -> bool {
        let n = self.seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = u64::from(self.percent);
        (n + 1) * p / 100 != n * p / 100
    }
}

/// A backend server.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub url: String,
    /// `h2c`: HTTP/2 without TLS.
    pub h2c: bool,
    /// `https`: TLS (HTTP/2 or HTTP/1.1 by ALPN).
    pub https: bool,
    pub authority: http::uri::Authority,
}

/// The status of one router, for the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterStatus {
    pub name: String,
    pub rule: String,
    pub priority: i64,
    pub entry_points: Vec<String>,
    pub service: String,
    pub error: Option<String>,
}

/// How many routers the overlays may hold before a build starts from scratch: a small
/// number, plus a share of the whole.
fn overlay_limit(routers: usize) -> usize {
    256 + routers / 32
}

/// The compiled configuration.
///
/// A build that changes a few routers does not rebuild the route tables: it compiles the
/// routers changed since the last full build into small overlays over the previous tables
/// (see [`LayeredTable`]). [`Runtime::is_layered`] tells when a full build would make them
/// whole again; the proxy runs one in the background.
#[derive(Debug, Default)]
pub struct Runtime {
    pub tables: HashMap<String, LayeredTable<Arc<Route>>>,
    pub services: BTreeMap<String, Arc<Service>>,
    /// Servers transports by name (`default` always present once built).
    pub transports: BTreeMap<String, Arc<crate::transport::Transport>>,
    pub diagnostics: Vec<Diagnostic>,
    /// What this runtime was compiled from.
    config: Arc<DynamicConfig>,
    entry_points: Vec<EntryPointInfo>,
    middlewares: BTreeMap<String, Arc<MiddlewareConfig>>,
    /// Why each router that is not served is not.
    router_errors: BTreeMap<String, String>,
    /// Parsed rules by text, from the last full build, for the next builds to reuse.
    rules: Arc<HashMap<String, Arc<Rule>>>,
    /// Parsed rules of the overlay routers.
    overlay_rules: HashMap<String, Arc<Rule>>,
    /// The routers in the overlays (changed since the last full build).
    layered: Arc<HashSet<String>>,
}

impl Runtime {
    /// Compiles `config` for these entry points, reusing what did not change in `previous`.
    pub fn build(
        config: &DynamicConfig,
        entry_points: &[EntryPointInfo],
        previous: Option<&Runtime>,
    ) -> Runtime {
        Runtime::build_shared(Arc::new(config.clone()), entry_points, previous)
    }

    /// [`Runtime::build`] of a configuration the runtime keeps (no copy).
    pub fn build_shared(
        config: Arc<DynamicConfig>,
        entry_points: &[EntryPointInfo],
        previous: Option<&Runtime>,
    ) -> Runtime {
        Runtime::build_with(config, entry_points, previous, false)
    }

    /// A full build of what `current` serves: the same routing, without overlays.
    pub fn compacted(current: &Runtime) -> Runtime {
        Runtime::build_with(
            current.config.clone(),
            &current.entry_points,
            Some(current),
            true,
        )
    }

    /// Whether some routers are served from overlays (a full build would fold them in).
    pub fn is_layered(&self) -> bool {
        !self.layered.is_empty()
    }

    /// Every router with its status, by name.
    pub fn routers(&self) -> Vec<RouterStatus> {
        self.config
            .routers
            .iter()
            .map(|(name, r)| RouterStatus {
                name: name.clone(),
                rule: r.rule.clone(),
                priority: r
                    .priority
                    .unwrap_or_else(|| i64::try_from(r.rule.len()).unwrap_or(i64::MAX)),
                entry_points: r.entry_points.clone(),
                service: r.service.clone(),
                error: self.router_errors.get(name).cloned(),
            })
            .collect()
    }

    /// How many routers are configured, and how many of them are not served.
    pub fn router_counts(&self) -> (usize, usize) {
        (self.config.routers.len(), self.router_errors.len())
    }

    fn build_with(
        config: Arc<DynamicConfig>,
        entry_points: &[EntryPointInfo],
        previous: Option<&Runtime>,
        full: bool,
    ) -> Runtime {
        let mut diags = Vec::new();
        let transports = build_transports(&config, previous, &mut diags);
        let mut services = BTreeMap::new();
        for name in config.services.keys() {
            let mut seen = HashSet::new();
            let ctx = BuildContext {
                config: &config,
                previous,
                transports: &transports,
            };
            match build_service(&ctx, name, &mut services, &mut seen, 0) {
                Ok(_) => {}
                Err(message) => diags.push(Diagnostic {
                    kind: "service",
                    name: name.clone(),
                    message,
                }),
            }
        }
        let mut middlewares = BTreeMap::new();
        for (name, m) in &config.middlewares {
            match check_middleware(m) {
                Ok(()) => {
                    let reused = previous
                        .and_then(|p| p.middlewares.get(name))
                        .filter(|p| p.as_ref() == m)
                        .cloned();
                    middlewares.insert(name.clone(), reused.unwrap_or_else(|| Arc::new(m.clone())));
                }
                Err(message) => diags.push(Diagnostic {
                    kind: "middleware",
                    name: name.clone(),
                    message,
                }),
            }
        }
        let parts = Parts {
            config: &config,
            entry_points,
            services: &services,
            middlewares: &middlewares,
        };
        let layered = previous.filter(|_| !full).and_then(|p| parts.layer_over(p));
        let RouterBuild {
            tables,
            errors: router_errors,
            rules,
            overlay_rules,
            layered,
        } = layered.unwrap_or_else(|| parts.compile_all(previous));
        for (name, message) in &router_errors {
            diags.push(Diagnostic {
                kind: "router",
                name: name.clone(),
                message: message.clone(),
            });
        }
        Runtime {
            tables,
            services,
            transports,
            diagnostics: diags,
            config,
            entry_points: entry_points.to_vec(),
            middlewares,
            router_errors,
            rules,
            overlay_rules,
            layered,
        }
    }
}

type Tables = HashMap<String, LayeredTable<Arc<Route>>>;

/// Compiled routers: the tables, the routers left out and why, and the rule caches.
struct RouterBuild {
    tables: Tables,
    errors: BTreeMap<String, String>,
    rules: Arc<HashMap<String, Arc<Rule>>>,
    overlay_rules: HashMap<String, Arc<Rule>>,
    layered: Arc<HashSet<String>>,
}

/// What compiling routers looks at.
struct Parts<'a> {
    config: &'a DynamicConfig,
    entry_points: &'a [EntryPointInfo],
    services: &'a BTreeMap<String, Arc<Service>>,
    middlewares: &'a BTreeMap<String, Arc<MiddlewareConfig>>,
}

/// Routers compiled so far: per entry point, and those left out with why.
struct Filed {
    per_entry: HashMap<String, Vec<TableEntry<Arc<Route>>>>,
    errors: BTreeMap<String, String>,
}

impl Parts<'_> {
    /// Nothing filed yet, starting from these router errors.
    fn filed(&self, errors: BTreeMap<String, String>) -> Filed {
        Filed {
            per_entry: self
                .entry_points
                .iter()
                .map(|e| (e.name.clone(), Vec::new()))
                .collect(),
            errors,
        }
    }

    /// Compiles one router (its rule from `cached` when that text was seen before) and files
    /// it in the tables of its entry points, or with its error; returns the parsed rule.
    fn compile(
        &self,
        name: &str,
        r: &RouterConfig,
        cached: impl Fn(&str) -> Option<Arc<Rule>>,
        into: &mut Filed,
    ) -> Option<Arc<Rule>> {
        let parsed = match cached(&r.rule) {
            Some(rule) => Ok(rule),
            None => Rule::parse(&r.rule)
                .map(Arc::new)
                .map_err(|e| format!("rule {:?}: {e}", r.rule)),
        };
        let rule = parsed.as_ref().ok().cloned();
        let compiled = parsed.and_then(|rule| {
            compile_router(
                name,
                r,
                rule,
                self.services,
                self.middlewares,
                self.entry_points,
            )
        });
        match compiled {
            Ok((entry, eps)) => file_entry(&mut into.per_entry, entry, eps),
            Err(message) => {
                into.errors.insert(name.to_string(), message);
            }
        }
        rule
    }

    /// Every router compiled into new tables.
    fn compile_all(&self, previous: Option<&Runtime>) -> RouterBuild {
        let mut filed = self.filed(BTreeMap::new());
        let mut rules: HashMap<String, Arc<Rule>> =
            HashMap::with_capacity(self.config.routers.len());
        for (name, r) in &self.config.routers {
            let cached = |text: &str| {
                rules.get(text).cloned().or_else(|| {
                    previous.and_then(|p| {
                        p.rules
                            .get(text)
                            .or_else(|| p.overlay_rules.get(text))
                            .cloned()
                    })
                })
            };
            if let Some(rule) = self.compile(name, r, cached, &mut filed) {
                rules.insert(r.rule.clone(), rule);
            }
        }
        let tables = filed
            .per_entry
            .into_iter()
            .map(|(ep, list)| (ep, LayeredTable::whole(RouteTable::new(list))))
            .collect();
        RouterBuild {
            tables,
            errors: filed.errors,
            rules: Arc::new(rules),
            overlay_rules: HashMap::new(),
            layered: Arc::default(),
        }
    }

    /// The routers changed since `previous` (and since its last full build) compiled into
    /// overlays over its tables; `None` when too many changed, or `previous` was built for
    /// other entry points.
    fn layer_over(&self, previous: &Runtime) -> Option<RouterBuild> {
        if previous.entry_points != self.entry_points {
            return None;
        }
        let limit = overlay_limit(previous.config.routers.len().max(self.config.routers.len()));
        let mut layered: HashSet<String> = previous.layered.as_ref().clone();
        // Shared structure is skipped: this walks only what changed.
        for d in previous.config.routers.diff(&self.config.routers) {
            let name = match d {
                imbl::ordmap::DiffItem::Add(k, _) | imbl::ordmap::DiffItem::Remove(k, _) => k,
                imbl::ordmap::DiffItem::Update { new: (k, _), .. } => k,
            };
            layered.insert(name.clone());
            if layered.len() > limit {
                return None;
            }
        }
        // Routers whose service or middleware changed (or appeared, or went away).
        let services = changed_keys(&previous.services, self.services, Arc::ptr_eq);
        let middlewares = changed_keys(&previous.middlewares, self.middlewares, Arc::ptr_eq);
        if !services.is_empty() || !middlewares.is_empty() {
            let services: HashSet<&str> = services.iter().map(String::as_str).collect();
            let middlewares: HashSet<&str> = middlewares.iter().map(String::as_str).collect();
            for (name, r) in &self.config.routers {
                if services.contains(r.service.as_str())
                    || r.middlewares
                        .iter()
                        .any(|m| middlewares.contains(m.as_str()))
                {
                    layered.insert(name.clone());
                    if layered.len() > limit {
                        return None;
                    }
                }
            }
        }
        let mut filed = self.filed(previous.router_errors.clone());
        let mut overlay_rules = HashMap::new();
        for name in &layered {
            filed.errors.remove(name);
            let Some(r) = self.config.routers.get(name) else {
                continue;
            };
            let cached = |text: &str| {
                overlay_rules
                    .get(text)
                    .or_else(|| previous.overlay_rules.get(text))
                    .or_else(|| previous.rules.get(text))
                    .cloned()
            };
            if let Some(rule) = self.compile(name, r, cached, &mut filed) {
                overlay_rules.insert(r.rule.clone(), rule);
            }
        }
        let layered = Arc::new(layered);
        let mut tables = HashMap::new();
        for (ep, table) in &previous.tables {
            let overlay = filed.per_entry.remove(ep).unwrap_or_default();
            tables.insert(
                ep.clone(),
                LayeredTable::over(table, overlay, layered.clone()),
            );
        }
        Some(RouterBuild {
            tables,
            errors: filed.errors,
            rules: previous.rules.clone(),
            overlay_rules,
            layered,
        })
    }
}

/// Files a compiled router in the tables of its entry points.
fn file_entry(
    per_entry: &mut HashMap<String, Vec<TableEntry<Arc<Route>>>>,
    entry: TableEntry<Arc<Route>>,
    eps: Vec<String>,
) {
    let mut eps = eps.into_iter().peekable();
    while let Some(ep) = eps.next() {
        if let Some(list) = per_entry.get_mut(&ep) {
            if eps.peek().is_none() {
                list.push(entry);
                return;
            }
            list.push(entry.clone());
        }
    }
}

/// The keys whose values differ between two maps (present in one only, or not `same`).
fn changed_keys<V>(
    old: &BTreeMap<String, V>,
    new: &BTreeMap<String, V>,
    same: impl Fn(&V, &V) -> bool,
) -> Vec<String> {
    new.iter()
        .filter(|(k, v)| old.get(*k).is_none_or(|o| !same(o, v)))
        .map(|(k, _)| k)
        .chain(old.keys().filter(|k| !new.contains_key(*k)))
        .cloned()
        .collect()
}

type Compiled = (TableEntry<Arc<Route>>, Vec<String>);

fn compile_router(
    name: &str,
    r: &RouterConfig,
    rule: Arc<Rule>,
    services: &BTreeMap<String, Arc<Service>>,
    middlewares: &BTreeMap<String, Arc<MiddlewareConfig>>,
    entry_points: &[EntryPointInfo],
) -> Result<Compiled, String> {
    let service = services
        .get(&r.service)
        .ok_or_else(|| format!("service {:?} does not exist or is invalid", r.service))?
        .clone();
    let mut mws = Vec::new();
    for m in &r.middlewares {
        mws.push(
            middlewares
                .get(m)
                .ok_or_else(|| format!("middleware {m:?} does not exist or is invalid"))?
                .clone(),
        );
    }
    let mut eps = Vec::new();
    for ep in &r.entry_points {
        if !entry_points.iter().any(|e| &e.name == ep) {
            return Err(format!("entry point {ep:?} does not exist"));
        }
    }
    for ep in entry_points {
        let listed = r.entry_points.is_empty() || r.entry_points.contains(&ep.name);
        // Like Traefik: a router with a TLS section serves TLS connections only, one
        // without serves plain connections only.
        if listed && ep.tls == r.tls.is_some() {
            eps.push(ep.name.clone());
        }
    }
    let priority = r.priority.unwrap_or_else(|| rule.default_priority());
    let route = Arc::new(Route {
        router: name.to_string(),
        service_name: r.service.clone(),
        middlewares: mws,
        service,
        metrics: std::sync::OnceLock::new(),
    });
    Ok((
        TableEntry {
            name: name.to_string(),
            rule,
            priority,
            value: route,
        },
        eps,
    ))
}

/// What building services needs to look at.
struct BuildContext<'a> {
    config: &'a DynamicConfig,
    previous: Option<&'a Runtime>,
    transports: &'a BTreeMap<String, Arc<crate::transport::Transport>>,
}

/// Every servers transport of the configuration plus `default`, reusing unchanged ones (and
/// so their connection pools).
fn build_transports(
    config: &DynamicConfig,
    previous: Option<&Runtime>,
    diags: &mut Vec<Diagnostic>,
) -> BTreeMap<String, Arc<crate::transport::Transport>> {
    let mut defs = config.servers_transports.clone();
    defs.entry("default".to_string()).or_default();
    let mut out = BTreeMap::new();
    for (name, def) in defs {
        if let Some(p) = previous.and_then(|p| p.transports.get(&name)) {
            if p.definition == def {
                out.insert(name, p.clone());
                continue;
            }
        }
        match crate::transport::Transport::build(&def) {
            Ok(t) => {
                out.insert(name, Arc::new(t));
            }
            Err(message) => diags.push(Diagnostic {
                kind: "serversTransport",
                name,
                message,
            }),
        }
    }
    out
}

fn build_service(
    ctx: &BuildContext<'_>,
    name: &str,
    done: &mut BTreeMap<String, Arc<Service>>,
    seen: &mut HashSet<String>,
    depth: usize,
) -> Result<Arc<Service>, String> {
    if let Some(s) = done.get(name) {
        return Ok(s.clone());
    }
    if depth > MAX_SERVICE_DEPTH || !seen.insert(name.to_string()) {
        return Err(format!(
            "service {name:?} refers to itself or nests deeper than {MAX_SERVICE_DEPTH}"
        ));
    }
    let def = ctx
        .config
        .services
        .get(name)
        .ok_or_else(|| format!("service {name:?} does not exist"))?;
    let prev = ctx.previous.and_then(|p| p.services.get(name));
    let built = match def {
        ServiceConfig::LoadBalancer(lb) => {
            let transport_name = lb.servers_transport.as_deref().unwrap_or("default");
            let transport = ctx
                .transports
                .get(transport_name)
                .ok_or_else(|| {
                    format!("servers transport {transport_name:?} does not exist or is invalid")
                })?
                .clone();
            if let Some(p) = prev {
                if let Service::Servers {
                    definition,
                    transport: t,
                    ..
                } = p.as_ref()
                {
                    if definition == lb && Arc::ptr_eq(t, &transport) {
                        done.insert(name.to_string(), p.clone());
                        return Ok(p.clone());
                    }
                }
            }
            if lb.servers.is_empty() {
                return Err("no servers".to_string());
            }
            let servers = lb
                .servers
                .iter()
                .map(|s| parse_upstream(&s.url))
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(h) = &lb.health_check {
                if h.interval < crate::health::MIN_INTERVAL || !h.path.starts_with('/') {
                    return Err(format!(
                        "healthCheck needs a path starting with '/' and an interval of at least {} ms",
                        crate::health::MIN_INTERVAL.as_millis()
                    ));
                }
            }
            if let Some(s) = &lb.sticky {
                if s.name.is_empty() || http::HeaderName::from_bytes(s.name.as_bytes()).is_err() {
                    return Err(format!("sticky cookie name {:?} is invalid", s.name));
                }
            }
            let weights: Vec<u32> = lb.servers.iter().map(|s| s.weight).collect();
            let cookie_values = servers.iter().map(|u| cookie_value(&u.url)).collect();
            Arc::new(Service::Servers {
                transport,
                definition: lb.clone(),
                health: crate::health::Health::new(servers.len(), lb.passive.clone()),
                servers,
                balancer: Balancer::new(&weights, lb.strategy),
                cookie_values,
            })
        }
        ServiceConfig::Weighted(children) => {
            if children.is_empty() {
                return Err("a weighted service needs at least one service".to_string());
            }
            let mut built = Vec::new();
            for c in children {
                let s = build_service(ctx, &c.service, done, seen, depth + 1)?;
                built.push((c.service.clone(), s));
            }
            let weights: Vec<u32> = children.iter().map(|c| c.weight).collect();
            let reuse = prev.and_then(|p| match p.as_ref() {
                Service::Weighted {
                    children: pc,
                    balancer,
                } => {
                    let same = pc.len() == built.len()
                        && pc
                            .iter()
                            .zip(&built)
                            .all(|((n1, s1), (n2, s2))| n1 == n2 && Arc::ptr_eq(s1, s2))
                        && balancer.same_weights(&weights);
                    same.then(|| p.clone())
                }
                Service::Servers { .. } | Service::Failover { .. } | Service::Mirroring { .. } => {
                    None
                }
            });
            reuse.unwrap_or_else(|| {
                Arc::new(Service::Weighted {
                    children: built,
                    balancer: Balancer::new(&weights, Strategy::WeightedRoundRobin),
                })
            })
        }
        ServiceConfig::Mirroring(m) => {
            let main = build_service(ctx, &m.service, done, seen, depth + 1)?;
            let mut mirrors = Vec::new();
            for (name, percent) in &m.mirrors {
                if *percent > 100 {
                    return Err(format!("mirror {name}: percent {percent} is above 100"));
                }
                let s = build_service(ctx, name, done, seen, depth + 1)?;
                mirrors.push(Mirror::new(name.clone(), s, *percent));
            }
            Arc::new(Service::Mirroring {
                main: (m.service.clone(), main),
                mirrors,
                mirror_body: m.mirror_body,
                max_body_size: m.max_body_size,
            })
        }
        ServiceConfig::Failover { service, fallback } => {
            let main = build_service(ctx, service, done, seen, depth + 1)?;
            let back = build_service(ctx, fallback, done, seen, depth + 1)?;
            Arc::new(Service::Failover {
                main: (service.clone(), main),
                fallback: (fallback.clone(), back),
            })
        }
    };
    seen.remove(name);
    done.insert(name.to_string(), built.clone());
    Ok(built)
}

/// A stable, opaque cookie value for a server: FNV-1a of its URL, in hex.
fn cookie_value(url: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in url.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Parses `http://`, `https://` or `h2c://` `host:port` (a path is not allowed).
pub fn parse_upstream(url: &str) -> Result<Upstream, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("invalid server URL {url:?}"))?;
    let (h2c, https) = match uri.scheme_str() {
        Some("http") => (false, false),
        Some("https") => (false, true),
        Some("h2c") => (true, false),
        _ => {
            return Err(format!(
                "server URL {url:?} must start with http://, https:// or h2c://"
            ))
        }
    };
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("server URL {url:?} has no host"))?;
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("server URL {url:?} must not have a path"));
    }
    Ok(Upstream {
        url: url.to_string(),
        h2c,
        https,
        authority,
    })
}

fn check_middleware(m: &MiddlewareConfig) -> Result<(), String> {
    match m {
        MiddlewareConfig::RedirectScheme { scheme, port, .. } => {
            if !matches!(scheme.as_str(), "http" | "https") {
                return Err(format!(
                    "redirectScheme.scheme {scheme:?} must be http or https"
                ));
            }
            if let Some(p) = port {
                p.parse::<u16>()
                    .map_err(|_| format!("redirectScheme.port {p:?} is not a port"))?;
            }
            Ok(())
        }
        MiddlewareConfig::StripPrefix { prefixes } => {
            if prefixes.iter().any(|p| !p.starts_with('/')) {
                return Err("stripPrefix.prefixes must start with '/'".to_string());
            }
            Ok(())
        }
        MiddlewareConfig::AddPrefix { prefix } => {
            if !prefix.starts_with('/') {
                return Err("addPrefix.prefix must start with '/'".to_string());
            }
            Ok(())
        }
        MiddlewareConfig::Headers { request, response } => {
            for (k, v) in request.iter().chain(response) {
                http::HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| format!("invalid header name {k:?}"))?;
                http::HeaderValue::from_str(v)
                    .map_err(|_| format!("invalid value for header {k:?}"))?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
