//! Kubernetes `networking.k8s.io/v1` Ingress, the way Traefik's Kubernetes Ingress provider
//! reads it: one router per rule path (`Host` and `PathPrefix` for `Prefix` and
//! `ImplementationSpecific`, `Path` for `Exact`; a `*.` host as a one-label `HostRegexp`), the
//! default backend as a catch-all at the lowest priority, TLS routers when `spec.tls` is set
//! (or `traefik.ingress.kubernetes.io/router.tls: "true"`), and the router annotations
//! `router.entrypoints`, `router.middlewares`, `router.priority`, `router.tls.certresolver`.
//! Ingresses of another class are left alone; classes are `edgeplane`, `traefik`, and the
//! IngressClasses whose controller is `edgeplane.io/ingress-controller` or
//! `traefik.io/ingress-controller`.

use proxy::config::{DynamicConfig, RouterConfig, RouterTls};
use serde::Deserialize;

use super::{Backends, Meta, PortRef, ServiceRef};

const ANN: &str = "traefik.ingress.kubernetes.io/";

#[derive(Deserialize)]
pub(super) struct IngressDoc {
    pub(super) metadata: Meta,
    #[serde(default)]
    pub(super) spec: IngressSpec,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct IngressSpec {
    #[serde(default)]
    ingress_class_name: Option<String>,
    #[serde(default)]
    default_backend: Option<BackendDoc>,
    #[serde(default)]
    pub(super) tls: Vec<IngressTls>,
    #[serde(default)]
    rules: Vec<IngressRule>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct IngressTls {
    #[serde(default)]
    pub(super) hosts: Vec<String>,
    #[serde(default)]
    pub(super) secret_name: Option<String>,
}

#[derive(Deserialize)]
struct IngressRule {
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    http: Option<HttpRuleDoc>,
}

#[derive(Deserialize)]
struct HttpRuleDoc {
    #[serde(default)]
    paths: Vec<PathDoc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PathDoc {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    path_type: Option<String>,
    backend: BackendDoc,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BackendDoc {
    #[serde(default)]
    service: Option<ServiceBackendDoc>,
    #[serde(default)]
    resource: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct ServiceBackendDoc {
    name: String,
    port: ServicePortDoc,
}

#[derive(Deserialize)]
struct ServicePortDoc {
    #[serde(default)]
    number: Option<u16>,
    #[serde(default)]
    name: Option<String>,
}

/// An IngressClass: its name and controller.
#[derive(Deserialize)]
pub(super) struct IngressClassDoc {
    pub(super) metadata: Meta,
    #[serde(default)]
    pub(super) spec: IngressClassSpec,
}

#[derive(Deserialize, Default)]
pub(super) struct IngressClassSpec {
    #[serde(default)]
    pub(super) controller: Option<String>,
}

/// The class names this proxy serves.
pub(super) fn classes(docs: &[&IngressClassDoc]) -> Vec<String> {
    let mut out = vec!["edgeplane".to_string(), "traefik".to_string()];
    for d in docs {
        if matches!(
            d.spec.controller.as_deref(),
            Some("edgeplane.io/ingress-controller" | "traefik.io/ingress-controller")
        ) {
            out.push(d.metadata.name.clone());
        }
    }
    out
}

/// Whether an Ingress is ours: no class (the default), or one of `classes`.
pub(super) fn is_ours(d: &IngressDoc, classes: &[String]) -> bool {
    let class = d.spec.ingress_class_name.as_deref().or_else(|| {
        d.metadata
            .annotations
            .get("kubernetes.io/ingress.class")
            .map(String::as_str)
    });
    class.is_none_or(|c| classes.iter().any(|k| k == c))
}

/// The TLS secrets an Ingress names.
pub(super) fn secrets(d: &IngressDoc) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = d
        .spec
        .tls
        .iter()
        .filter_map(|t| t.secret_name.clone())
        .map(|s| (d.metadata.ns().to_string(), s))
        .collect();
    if let Some(resolver) = d
        .metadata
        .annotations
        .get(&format!("{ANN}router.tls.certresolver"))
    {
        let names = resolver_names(d);
        if !names.is_empty() {
            out.push((
                d.metadata.ns().to_string(),
                crate::certmanager::resolver_secret_name(resolver.trim(), &names),
            ));
        }
    }
    out
}

/// The names a resolver's certificate for this Ingress covers: the hosts of `spec.tls`, else
/// those of its rules.
pub(super) fn resolver_names(d: &IngressDoc) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let from_tls: Vec<&String> = d.spec.tls.iter().flat_map(|t| t.hosts.iter()).collect();
    let all: Vec<&String> = if from_tls.is_empty() {
        d.spec
            .rules
            .iter()
            .filter_map(|r| r.host.as_ref())
            .collect()
    } else {
        from_tls
    };
    for h in all {
        let h = h.trim().trim_end_matches('.').to_ascii_lowercase();
        if !h.is_empty() && !names.contains(&h) {
            names.push(h);
        }
    }
    names
}

fn host_rule(host: &str) -> Result<String, String> {
    let h = host.trim().to_ascii_lowercase();
    if let Some(rest) = h.strip_prefix("*.") {
        if rest.is_empty() || rest.contains('*') {
            return Err(format!("invalid host {host:?}"));
        }
        let escaped = rest.replace('.', "\\.");
        return Ok(format!("HostRegexp(`^[a-z0-9-]+\\.{escaped}$`)"));
    }
    if h.is_empty() || h.contains(['*', '`', ' ']) {
        return Err(format!("invalid host {host:?}"));
    }
    Ok(format!("Host(`{h}`)"))
}

fn path_rule(path: &str, path_type: &str) -> Result<Option<String>, String> {
    if !path.starts_with('/') || path.contains('`') {
        return Err(format!("path {path:?} must start with /"));
    }
    Ok(match path_type {
        "Exact" => Some(format!("Path(`{path}`)")),
        "Prefix" | "ImplementationSpecific" if path == "/" => None,
        "Prefix" => Some(format!("PathPrefix(`{}`)", path.trim_end_matches('/'))),
        "ImplementationSpecific" => Some(format!("PathPrefix(`{path}`)")),
        other => {
            return Err(format!(
                "pathType {other:?} must be Exact, Prefix or ImplementationSpecific"
            ))
        }
    })
}

fn service_ref(b: &BackendDoc) -> Result<ServiceRef, String> {
    if b.resource.is_some() {
        return Err("resource backends are not supported; use a service".into());
    }
    let s = b.service.as_ref().ok_or("a backend needs a service")?;
    let port = match (&s.port.number, &s.port.name) {
        (Some(n), _) => PortRef::Number(*n),
        (None, Some(n)) => PortRef::Name(n.clone()),
        (None, None) => {
            return Err(format!(
                "service {}: port.number or port.name is required",
                s.name
            ))
        }
    };
    Ok(ServiceRef {
        name: s.name.clone(),
        port: Some(port),
        ..ServiceRef::default()
    })
}

/// The routers of one Ingress (name, router), or why a path was skipped.
pub(super) fn routers(
    d: &IngressDoc,
    backends: &Backends<'_>,
    cfg: &mut DynamicConfig,
) -> (Vec<(String, RouterConfig)>, Vec<String>) {
    let m = &d.metadata;
    let a = &m.annotations;
    let ann = |k: &str| a.get(&format!("{ANN}{k}")).map(|v| v.trim().to_string());
    let entry_points: Vec<String> = ann("router.entrypoints")
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let middlewares: Vec<String> = ann("router.middlewares")
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let mut problems = Vec::new();
    let priority = match ann("router.priority") {
        Some(p) => match p.parse::<i64>() {
            Ok(p) => Some(p).filter(|p| *p != 0),
            Err(_) => {
                problems.push(format!("router.priority {p:?} is not a number"));
                None
            }
        },
        None => None,
    };
    let cert_resolver = ann("router.tls.certresolver");
    let tls = (!d.spec.tls.is_empty()
        || ann("router.tls").as_deref() == Some("true")
        || cert_resolver.is_some())
    .then(|| RouterTls {
        options: ann("router.tls.options"),
        cert_resolver: cert_resolver.clone(),
    });
    let base = format!("{}-{}", m.ns(), m.name);
    // (router key, rule, backend, priority)
    let mut wanted: Vec<(String, String, &BackendDoc, Option<i64>)> = Vec::new();
    for (i, r) in d.spec.rules.iter().enumerate() {
        let host = match r.host.as_deref().map(host_rule).transpose() {
            Ok(h) => h,
            Err(e) => {
                problems.push(format!("rules[{i}]: {e}"));
                continue;
            }
        };
        let Some(http) = &r.http else { continue };
        for (j, p) in http.paths.iter().enumerate() {
            let path = p.path.as_deref().unwrap_or("/");
            let path_type = p.path_type.as_deref().unwrap_or("ImplementationSpecific");
            let rule = match path_rule(path, path_type) {
                Ok(Some(pr)) => match &host {
                    Some(h) => format!("{h} && {pr}"),
                    None => pr,
                },
                Ok(None) => host
                    .clone()
                    .unwrap_or_else(|| "PathPrefix(`/`)".to_string()),
                Err(e) => {
                    problems.push(format!("rules[{i}].paths[{j}]: {e}"));
                    continue;
                }
            };
            wanted.push((format!("{base}-{i}-{j}"), rule, &p.backend, priority));
        }
    }
    if let Some(b) = &d.spec.default_backend {
        // The catch-all: below every other router.
        wanted.push((
            format!("{base}-default"),
            "PathPrefix(`/`)".to_string(),
            b,
            Some(1),
        ));
    }
    let mut out = Vec::new();
    for (key, rule, b, prio) in wanted {
        match service_ref(b).and_then(|r| backends.service(m.ns(), &r, &key, cfg)) {
            Ok(service) => out.push((
                format!("{key}@kubernetes"),
                RouterConfig {
                    entry_points: entry_points.clone(),
                    rule,
                    priority: prio,
                    middlewares: middlewares.clone(),
                    service,
                    tls: tls.clone(),
                },
            )),
            Err(e) => problems.push(format!("{key}: {e}")),
        }
    }
    (out, problems)
}
