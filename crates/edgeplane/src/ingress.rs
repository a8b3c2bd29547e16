//! The proxy side of `serve`: its entry points, the proxy configuration read from the
//! manifest directory (IngressRoute, Middleware, TraefikService, Service/EndpointSlice,
//! Secret, Traefik's file format) with TLS secrets resolved from the secret store, and the
//! proxy's part of the admin API (Traefik's `/api/http/...` listing, `/ping`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use model::secret::{AccessRule, SecretRef};
use proxy::config::CertificatePem;
use proxy::Proxy;
use store::secrets::{Caller, Secrets};

/// The secret store caller the proxy reads TLS secrets as: `get` on any secret, audited.
fn proxy_caller() -> Caller {
    Caller {
        identity: "proxy".to_string(),
        rules: AccessRule::parse("get:*/*")
            .map(|r| vec![r])
            .unwrap_or_default(),
    }
}

/// What the last application used from the secret store, to notice replaced certificates.
pub(crate) type SecretVersions = BTreeMap<(String, String), u64>;

/// Reads every manifest file, resolves TLS secrets from the store, and applies the result.
/// Returns the store secrets it asked for and the versions it got.
pub(crate) async fn apply(
    proxy: &Proxy,
    secrets: &Secrets,
    files: &[&config::ingress::ParsedFile],
) -> (Vec<(String, String)>, SecretVersions) {
    let started = std::time::Instant::now();
    let mut plan = config::ingress::load_parsed(files);
    let translated = started.elapsed();
    let mut versions = SecretVersions::new();
    let refs = std::mem::take(&mut plan.secret_refs);
    let ca_refs = std::mem::take(&mut plan.ca_refs);
    let transport_refs = std::mem::take(&mut plan.transport_refs);
    let mut wanted = refs.clone();
    wanted.extend(ca_refs.iter().map(|(_, ns, n)| (ns.clone(), n.clone())));
    wanted.extend(
        transport_refs
            .iter()
            .map(|r| (r.namespace.clone(), r.name.clone())),
    );
    let secrets = secrets.clone();
    let (loaded, cas, transport_secrets) = tokio::task::spawn_blocking(move || {
        (
            load_secrets(&secrets, &refs),
            load_cas(&secrets, &ca_refs),
            load_transport_secrets(&secrets, &transport_refs),
        )
    })
    .await
    .unwrap_or_default();
    // A transport is used only with every secret it names.
    let mut pending = std::mem::take(&mut plan.pending_transports);
    let mut broken: BTreeMap<String, String> = BTreeMap::new();
    for (r, version, got) in transport_secrets {
        versions.insert((r.namespace.clone(), r.name.clone()), version);
        let Some(t) = pending.get_mut(&r.transport) else {
            continue;
        };
        match got {
            Ok(TransportSecret::RootCa(pem)) => t.root_cas.push(pem),
            Ok(TransportSecret::Client(c)) => t.client_certificate = Some(c),
            Err(e) => {
                broken.entry(r.transport.clone()).or_insert(e);
            }
        }
    }
    for (name, t) in pending {
        match broken.remove(&name) {
            None => {
                plan.config.servers_transports.insert(name, t);
            }
            Some(e) => plan
                .diagnostics
                .push(format!("servers transport {name} not used: {e}")),
        }
    }
    for (option, key, version, ca) in cas {
        match ca {
            Ok(pem) => {
                versions.insert(key, version);
                if let Some(auth) = plan
                    .config
                    .tls_options
                    .get_mut(&option)
                    .and_then(|o| o.client_auth.as_mut())
                {
                    auth.ca_pems.push(pem);
                }
            }
            Err(e) => plan.diagnostics.push(e),
        }
    }
    for (key, version, cert) in loaded {
        match cert {
            Ok(c) => {
                versions.insert(key, version);
                plan.config.certificates.push(c);
            }
            Err(e) => plan.diagnostics.push(e),
        }
    }
    for d in &plan.diagnostics {
        tracing::warn!(problem = %d, "proxy manifest skipped; the rest applies");
    }
    let compile = std::time::Instant::now();
    let (routers, services, certificates) = (
        plan.config.routers.len(),
        plan.config.services.len(),
        plan.config.certificates.len(),
    );
    let skipped = proxy.apply_shared(Arc::new(plan.config));
    tracing::info!(
        translate_ms = translated.as_millis() as u64,
        compile_ms = compile.elapsed().as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        routers,
        services,
        certificates,
        skipped = skipped.len() + plan.diagnostics.len(),
        "proxy configuration applied"
    );
    (wanted, versions)
}

type Loaded = Vec<((String, String), u64, Result<CertificatePem, String>)>;

/// What a servers transport gets from a secret.
enum TransportSecret {
    RootCa(Vec<u8>),
    Client(CertificatePem),
}

type LoadedTransport = Vec<(
    config::ingress::TransportSecretRef,
    u64,
    Result<TransportSecret, String>,
)>;

/// Root CAs (`ca.crt`, else `tls.crt`) and client certificates (`tls.crt` + `tls.key`) of
/// servers transports.
fn load_transport_secrets(
    secrets: &Secrets,
    refs: &[config::ingress::TransportSecretRef],
) -> LoadedTransport {
    let caller = proxy_caller();
    refs.iter()
        .map(|r| {
            let (ns, name) = (&r.namespace, &r.name);
            let got = SecretRef::new(ns, name)
                .map_err(|e| e.to_string())
                .and_then(|sr| secrets.get(&caller, &sr, None).map_err(|e| e.to_string()));
            match got {
                Err(e) => (r.clone(), 0, Err(format!("secret {ns}/{name}: {e}"))),
                Ok((info, spec)) => {
                    let value = |k: &str| spec.data.get(k).map(|v| v.expose().to_vec());
                    let item = if r.client_certificate {
                        match (value("tls.crt"), value("tls.key")) {
                            (Some(chain), Some(key)) => {
                                Ok(TransportSecret::Client(CertificatePem {
                                    source: format!("{ns}/{name}"),
                                    chain,
                                    key: zeroize::Zeroizing::new(key),
                                }))
                            }
                            _ => Err(format!("secret {ns}/{name} needs tls.crt and tls.key")),
                        }
                    } else {
                        value("ca.crt")
                            .or_else(|| value("tls.crt"))
                            .map(TransportSecret::RootCa)
                            .ok_or_else(|| format!("secret {ns}/{name} has no ca.crt or tls.crt"))
                    };
                    (r.clone(), info.version, item)
                }
            }
        })
        .collect()
}
type LoadedCas = Vec<(String, (String, String), u64, Result<Vec<u8>, String>)>;

/// Client CA certificates of TLS options: `ca.crt`, else `tls.ca`, else `tls.crt`.
fn load_cas(secrets: &Secrets, refs: &[(String, String, String)]) -> LoadedCas {
    let caller = proxy_caller();
    refs.iter()
        .map(|(option, ns, name)| {
            let key = (ns.clone(), name.clone());
            let got = SecretRef::new(ns, name)
                .map_err(|e| e.to_string())
                .and_then(|r| secrets.get(&caller, &r, None).map_err(|e| e.to_string()));
            match got {
                Err(e) => (
                    option.clone(),
                    key,
                    0,
                    Err(format!("client CA secret {ns}/{name}: {e}")),
                ),
                Ok((info, spec)) => {
                    let pem = ["ca.crt", "tls.ca", "tls.crt"]
                        .iter()
                        .find_map(|k| spec.data.get(*k))
                        .map(|v| v.expose().to_vec())
                        .ok_or_else(|| format!("client CA secret {ns}/{name} has no ca.crt"));
                    (option.clone(), key, info.version, pem)
                }
            }
        })
        .collect()
}

fn load_secrets(secrets: &Secrets, refs: &[(String, String)]) -> Loaded {
    let caller = proxy_caller();
    let mut out = Vec::new();
    for (ns, name) in refs {
        let key = (ns.clone(), name.clone());
        let r = match SecretRef::new(ns, name) {
            Ok(r) => r,
            Err(e) => {
                out.push((key, 0, Err(format!("TLS secret {ns}/{name}: {e}"))));
                continue;
            }
        };
        let got = secrets.get(&caller, &r, None);
        let item = match got {
            Err(e) => (key, 0, Err(format!("TLS secret {ns}/{name}: {e}"))),
            Ok((info, spec)) => {
                let chain = spec.data.get("tls.crt").map(|v| v.expose().to_vec());
                let k = spec
                    .data
                    .get("tls.key")
                    .map(|v| zeroize::Zeroizing::new(v.expose().to_vec()));
                match (chain, k) {
                    (Some(chain), Some(key_pem)) => (
                        key,
                        info.version,
                        Ok(CertificatePem {
                            source: format!("{ns}/{name}"),
                            chain,
                            key: key_pem,
                        }),
                    ),
                    _ => (
                        key,
                        info.version,
                        Err(format!("TLS secret {ns}/{name} needs tls.crt and tls.key")),
                    ),
                }
            }
        };
        out.push(item);
    }
    out
}

/// Whether any secret the proxy uses changed version (or appeared or went away) since
/// `used`. Reads metadata only: no decryption, no audit entry.
pub(crate) fn secrets_changed(
    secrets: &Secrets,
    used: &SecretVersions,
    wanted: &[(String, String)],
) -> bool {
    for (ns, name) in wanted {
        let current = SecretRef::new(ns, name)
            .ok()
            .and_then(|r| secrets.info(&r).ok())
            .map(|i| i.version);
        if current != used.get(&(ns.clone(), name.clone())).copied() {
            return true;
        }
    }
    false
}

/// State of the proxy's admin routes.
#[derive(Clone)]
pub(crate) struct ProxyApi {
    pub(crate) proxy: Arc<Proxy>,
    pub(crate) identities: store::identities::Identities,
}

/// `/ping` (no authentication, for health checks) and Traefik's API listing, authenticated
/// with SigV4 like the rest of the admin API.
pub(crate) fn router(state: ProxyApi) -> axum::Router {
    let listing = axum::Router::new()
        .route("/api/http/routers", axum::routing::get(routers))
        .route("/api/http/services", axum::routing::get(services))
        .route("/api/overview", axum::routing::get(overview))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), signed))
        .with_state(state);
    axum::Router::new()
        .route("/ping", axum::routing::get(|| async { "OK" }))
        .merge(listing)
}

/// Lets a request through only with a valid SigV4 signature of a known, active identity.
async fn signed(
    State(s): State<ProxyApi>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = req.into_parts();
    // These routes take no body; anything beyond a small one is refused.
    let Ok(body) = axum::body::to_bytes(body, 64 * 1024).await else {
        return (axum::http::StatusCode::PAYLOAD_TOO_LARGE, "body too large").into_response();
    };
    if let Err(r) = authorized(&s, &parts.method, &parts.uri, &parts.headers, &body).await {
        return r;
    }
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(body),
    ))
    .await
}

async fn authorized(
    s: &ProxyApi,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Response> {
    match api::auth::authenticate(&s.identities, None, method, uri, headers, body).await {
        Ok(_) => Ok(()),
        Err(api::auth::AuthFailure::Refused(e)) => {
            let status = axum::http::StatusCode::from_u16(e.status())
                .unwrap_or(axum::http::StatusCode::FORBIDDEN);
            Err((
                status,
                axum::Json(
                    serde_json::json!({"error": {"code": e.code(), "message": e.to_string()}}),
                ),
            )
                .into_response())
        }
        Err(_) => Err((
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "authentication failed",
        )
            .into_response()),
    }
}

async fn routers(State(s): State<ProxyApi>) -> Response {
    let rt = s.proxy.runtime();
    let list: Vec<serde_json::Value> = rt
        .routers()
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.name,
                "rule": r.rule,
                "priority": r.priority,
                "entryPoints": r.entry_points,
                "service": r.service,
                "status": if r.error.is_some() { "disabled" } else { "enabled" },
                "error": r.error.as_ref().map(|e| vec![e.clone()]).unwrap_or_default(),
            })
        })
        .collect();
    axum::Json(list).into_response()
}

async fn services(State(s): State<ProxyApi>) -> Response {
    let rt = s.proxy.runtime();
    let mut list: Vec<serde_json::Value> = rt
        .services
        .iter()
        .map(|(name, svc)| {
            let (kind, servers): (&str, Vec<String>) = match svc.as_ref() {
                proxy::runtime::Service::Servers { servers, .. } => (
                    "loadbalancer",
                    servers.iter().map(|u| u.url.clone()).collect(),
                ),
                proxy::runtime::Service::Failover { main, fallback } => {
                    ("failover", vec![main.0.clone(), fallback.0.clone()])
                }
                proxy::runtime::Service::Weighted { children, .. } => (
                    "weighted",
                    children.iter().map(|(n, _)| n.clone()).collect(),
                ),
                proxy::runtime::Service::Mirroring { main, mirrors, .. } => (
                    "mirroring",
                    std::iter::once(main.0.clone())
                        .chain(mirrors.iter().map(|m| m.name.clone()))
                        .collect(),
                ),
            };
            serde_json::json!({"name": name, "type": kind, "servers": servers, "status": "enabled"})
        })
        .collect();
    for d in rt.diagnostics.iter().filter(|d| d.kind == "service") {
        list.push(serde_json::json!({"name": d.name, "status": "disabled", "error": [d.message]}));
    }
    axum::Json(list).into_response()
}

async fn overview(State(s): State<ProxyApi>) -> Response {
    let rt = s.proxy.runtime();
    let (total, errors) = rt.router_counts();
    let problems: Vec<String> = rt.diagnostics.iter().map(ToString::to_string).collect();
    axum::Json(serde_json::json!({
        "http": {
            "routers": {"total": total, "errors": errors},
            "services": {"total": rt.services.len()},
        },
        "problems": problems,
        "certificates": s.proxy.certificates().iter().map(|(src, names, not_after)| serde_json::json!({"source": src, "names": names, "notAfter": not_after})).collect::<Vec<_>>(),
    }))
    .into_response()
}
