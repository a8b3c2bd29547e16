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
use crate::table::{RouteTable, TableEntry};

/// How deep weighted services may nest.
const MAX_SERVICE_DEPTH: usize = 8;

/// One entry point as the compiler sees it.
#[derive(Debug, Clone)]
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

/// The compiled configuration.
#[derive(Debug, Default)]
pub struct Runtime {
    pub tables: HashMap<String, RouteTable<Arc<Route>>>,
    pub services: BTreeMap<String, Arc<Service>>,
    /// Servers transports by name (`default` always present once built).
    pub transports: BTreeMap<String, Arc<crate::transport::Transport>>,
    pub routers: Vec<RouterStatus>,
    pub diagnostics: Vec<Diagnostic>,
    /// Parsed rules by text, for the next build to reuse.
    rules: HashMap<String, Arc<Rule>>,
}

impl Runtime {
    /// Compiles `config` for these entry points, reusing unchanged services of `previous`.
    pub fn build(
        config: &DynamicConfig,
        entry_points: &[EntryPointInfo],
        previous: Option<&Runtime>,
    ) -> Runtime {
        let mut diags = Vec::new();
        let transports = build_transports(config, previous, &mut diags);
        let mut services = BTreeMap::new();
        for name in config.services.keys() {
            let mut seen = HashSet::new();
            let ctx = BuildContext {
                config,
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
        let mut middlewares = HashMap::new();
        for (name, m) in &config.middlewares {
            match check_middleware(m) {
                Ok(()) => {
                    middlewares.insert(name.clone(), Arc::new(m.clone()));
                }
                Err(message) => diags.push(Diagnostic {
                    kind: "middleware",
                    name: name.clone(),
                    message,
                }),
            }
        }
        let mut per_entry: HashMap<String, Vec<TableEntry<Arc<Route>>>> = entry_points
            .iter()
            .map(|e| (e.name.clone(), Vec::new()))
            .collect();
        let mut routers = Vec::new();
        let mut rules: HashMap<String, Arc<Rule>> = HashMap::with_capacity(config.routers.len());
        for (name, r) in &config.routers {
            let parsed = match rules
                .get(&r.rule)
                .or_else(|| previous.and_then(|p| p.rules.get(&r.rule)))
            {
                Some(rule) => Ok(rule.clone()),
                None => Rule::parse(&r.rule)
                    .map(Arc::new)
                    .map_err(|e| format!("rule {:?}: {e}", r.rule)),
            };
            if let Ok(rule) = &parsed {
                rules.insert(r.rule.clone(), rule.clone());
            }
            let compiled = parsed.and_then(|rule| {
                compile_router(name, r, rule, &services, &middlewares, entry_points)
            });
            let (status_err, priority) = match &compiled {
                Ok((entry, eps)) => {
                    for ep in eps {
                        if let Some(list) = per_entry.get_mut(ep) {
                            list.push(entry.clone());
                        }
                    }
                    (None, entry.priority)
                }
                Err(message) => {
                    diags.push(Diagnostic {
                        kind: "router",
                        name: name.clone(),
                        message: message.clone(),
                    });
                    (Some(message.clone()), r.priority.unwrap_or(0))
                }
            };
            routers.push(RouterStatus {
                name: name.clone(),
                rule: r.rule.clone(),
                priority,
                entry_points: r.entry_points.clone(),
                service: r.service.clone(),
                error: status_err,
            });
        }
        let tables = per_entry
            .into_iter()
            .map(|(ep, list)| (ep, RouteTable::new(list)))
            .collect();
        Runtime {
            tables,
            services,
            transports,
            routers,
            diagnostics: diags,
            rules,
        }
    }
}

type Compiled = (TableEntry<Arc<Route>>, Vec<String>);

fn compile_router(
    name: &str,
    r: &RouterConfig,
    rule: Arc<Rule>,
    services: &BTreeMap<String, Arc<Service>>,
    middlewares: &HashMap<String, Arc<MiddlewareConfig>>,
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
