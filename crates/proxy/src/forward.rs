//! The request path: find the router, run its middlewares, pick a server, forward the request
//! with its body streamed both ways, and stream the response back. Hop-by-hop headers are
//! removed, X-Forwarded-* set (kept only from trusted sources), upgrades (WebSocket) spliced.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::body::{ClientBody, RequestBody};
use crate::config::MiddlewareConfig;
use crate::metrics::Metrics;
use crate::rule::RequestView;
use crate::runtime::{Runtime, Service, Upstream};
use crate::server::EntryPointConfig;

/// A response body: streamed from upstream or made here.
pub type Body = BoxBody<Bytes, crate::h1::BoxError>;

/// State shared by every entry point; survives reconfiguration.
pub(crate) struct Shared {
    pub(crate) runtime: ArcSwap<Runtime>,
    /// Health probes.
    pub(crate) probe: Client<HttpConnector, http_body_util::Empty<Bytes>>,
    pub(crate) metrics: Metrics,
    pub(crate) access_log: Option<crate::access_log::AccessLog>,
    /// HTTP-01 challenge answers, served on plain-HTTP entry points.
    pub(crate) acme: crate::acme::Http01Challenges,
}

impl Shared {
    pub(crate) fn new(
        metrics: Metrics,
        access_log: Option<crate::access_log::AccessLog>,
    ) -> Shared {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(10)));
        let probe = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        Shared {
            runtime: ArcSwap::from_pointee(Runtime::default()),
            probe,
            metrics,
            access_log,
            acme: crate::acme::Http01Challenges::default(),
        }
    }
}

/// What a request knows of its connection, with the header values every request forwarded
/// from it carries worked out once.
pub(crate) struct ConnInfo {
    pub(crate) peer: SocketAddr,
    pub(crate) entry: Arc<EntryPointConfig>,
    /// The entry point's request counts.
    metrics: Arc<crate::metrics::EntryMetrics>,
    /// The client's address, IPv4-mapped IPv6 ones as IPv4.
    client_ip: IpAddr,
    /// Whether the client is a trusted source of X-Forwarded-* headers.
    trusted: bool,
    /// The client's address and the entry point's port, as header values.
    ip_value: HeaderValue,
    port_value: HeaderValue,
    /// Counts the connection as open (on its entry point and its worker) for as long as
    /// anything holds this: its streams, and the tunnel of an upgrade, which outlives the
    /// HTTP exchange.
    _open: Open,
}

/// What keeps a connection counted as open.
pub(crate) type Open = (crate::metrics::OpenConnection, Option<crate::worker::Open>);

impl ConnInfo {
    pub(crate) fn new(
        peer: SocketAddr,
        local_port: u16,
        entry: Arc<EntryPointConfig>,
        metrics: Arc<crate::metrics::EntryMetrics>,
        open: Open,
    ) -> ConnInfo {
        let client_ip = canonical_ip(peer.ip());
        let trusted = entry.trusted_ips.iter().any(|n| n.contains(client_ip));
        let value = |text: String| {
            HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
        };
        ConnInfo {
            peer,
            entry,
            metrics,
            client_ip,
            trusted,
            ip_value: value(client_ip.to_string()),
            port_value: value(local_port.to_string()),
            _open: open,
        }
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Headers that describe one hop and are never forwarded (RFC 9110 section 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// The X-Forwarded-* headers an untrusted client may not set.
const FORWARDED: [&str; 7] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-forwarded-prefix",
    "x-real-ip",
];

pub(crate) async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    tls: bool,
    req: Request<ClientBody>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let started = Instant::now();
    let method = req.method().clone();
    let proto = proto_label(req.version());
    // What the access log needs of the request, taken before it is forwarded.
    let logged = shared.access_log.as_ref().map(|_| {
        let h = |n: header::HeaderName| {
            req.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        (
            request_host(&req).unwrap_or_default(),
            req.uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string(),
            h(header::REFERER),
            h(header::USER_AGENT),
            std::time::SystemTime::now(),
        )
    });
    let (mut resp, matched) = route(&shared, &conn, tls, req).await;
    let router = matched.as_ref().map(|r| r.router.as_str());
    let service = matched.as_ref().map(|r| r.service_name.as_str());
    let code = resp.status().as_u16();
    let took = started.elapsed();
    let method_label = method_label(&method);
    conn.metrics.request(method_label, proto, code, took);
    if let Some(r) = &matched {
        r.metrics
            .get_or_init(|| shared.metrics.route(&r.router, &r.service_name))
            .request(method_label, proto, code, took);
    }
    if let (Some(log), Some((host, path, referer, agent, wall))) = (&shared.access_log, logged) {
        let server = resp.extensions_mut().remove::<ServedBy>();
        // Known up front for local answers and upstream ones with a Content-Length.
        let size = hyper::body::Body::size_hint(resp.body()).exact();
        log.log(&crate::access_log::Entry {
            client: conn.peer,
            host: &host,
            method: method.as_str(),
            path: &path,
            proto,
            status: code,
            size,
            referer: &referer,
            user_agent: &agent,
            entry_point: &conn.entry.name,
            router,
            service,
            server: server.as_ref().map(|s| s.0.as_str()),
            started: wall,
            duration: took,
        });
    }
    Ok(resp)
}

/// The server that answered, carried to the access log.
#[derive(Clone)]
struct ServedBy(String);

async fn route(
    shared: &Shared,
    conn: &Arc<ConnInfo>,
    tls: bool,
    mut req: Request<ClientBody>,
) -> (Response<Body>, Option<Arc<crate::runtime::Route>>) {
    // Framing the proxy cannot be sure of is refused (RFC 9112 section 6.1): a
    // Transfer-Encoding whose final coding is not chunked, or one in an HTTP/1.0 request.
    // (With both Transfer-Encoding and Content-Length, hyper drops Content-Length and frames
    // by the chunked coding, as section 6.3 tells an intermediary to, so the backend sees
    // exactly the framing the proxy used.)
    if let Some(te) = req.headers().get(header::TRANSFER_ENCODING) {
        let last = te
            .to_str()
            .ok()
            .and_then(|v| v.rsplit(',').next())
            .map(|c| c.trim().to_ascii_lowercase());
        if req.version() == Version::HTTP_10 || last.as_deref() != Some("chunked") {
            let mut r = text(
                StatusCode::BAD_REQUEST,
                "400 Bad Request: unsupported Transfer-Encoding\n",
            );
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return (r, None);
        }
    }
    let host = match request_host(&req) {
        Ok(h) => h,
        Err(()) => {
            return (
                text(StatusCode::BAD_REQUEST, "400 Bad Request: invalid Host\n"),
                None,
            )
        }
    };
    // ACME HTTP-01 answers come first, before any redirection or router (as a CA expects
    // them on port 80 whatever the routes say).
    if !tls {
        if let Some(token) = req.uri().path().strip_prefix(crate::acme::HTTP01_PREFIX) {
            if let Some(answer) = shared.acme.answer(&host, token) {
                let mut r = Response::new(
                    Full::new(Bytes::from(answer))
                        .map_err(|never| match never {})
                        .boxed(),
                );
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                return (r, None);
            }
        }
    }
    if let Some(r) = &conn.entry.redirect_to {
        let location = format!(
            "{}://{}{}{}",
            r.scheme,
            host,
            port_suffix(&r.scheme, r.port),
            req.uri().path_and_query().map_or("/", |p| p.as_str())
        );
        return (redirect(&req, &location, r.permanent), None);
    }
    let runtime = shared.runtime.load();
    let Some(table) = runtime.tables.get(&conn.entry.name) else {
        return (not_found(), None);
    };
    let client_ip = conn.client_ip;
    let found = {
        let view = RequestView {
            host: &host,
            method: req.method().as_str(),
            path: req.uri().path(),
            query: req.uri().query(),
            headers: req.headers(),
            client_ip,
        };
        table.find(&view).map(|e| e.value.clone())
    };
    let Some(route) = found else {
        return (not_found(), None);
    };

    // Request middlewares, in order; any of them may answer instead of the service.
    let mut response_headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
    let mut stripped_prefix: Option<String> = None;
    for m in &route.middlewares {
        match m.as_ref() {
            MiddlewareConfig::RedirectScheme {
                scheme,
                port,
                permanent,
            } => {
                let current = if tls { "https" } else { "http" };
                if current != scheme {
                    let port = port
                        .as_deref()
                        .and_then(|p| p.parse::<u16>().ok())
                        .unwrap_or(if scheme == "https" { 443 } else { 80 });
                    let location = format!(
                        "{scheme}://{host}{}{}",
                        port_suffix(scheme, port),
                        req.uri().path_and_query().map_or("/", |p| p.as_str())
                    );
                    return (redirect(&req, &location, *permanent), Some(route.clone()));
                }
            }
            MiddlewareConfig::StripPrefix { prefixes } => {
                let path = req.uri().path().to_string();
                // The longest matching prefix wins.
                if let Some(p) = prefixes
                    .iter()
                    .filter(|p| path.starts_with(p.as_str()))
                    .max_by_key(|p| p.len())
                {
                    let mut rest = path[p.len()..].to_string();
                    if !rest.starts_with('/') {
                        rest.insert(0, '/');
                    }
                    set_path(&mut req, &rest);
                    stripped_prefix = Some(p.trim_end_matches('/').to_string());
                }
            }
            MiddlewareConfig::AddPrefix { prefix } => {
                let path = format!("{}{}", prefix.trim_end_matches('/'), req.uri().path());
                set_path(&mut req, &path);
            }
            MiddlewareConfig::Headers { request, response } => {
                for (k, v) in request {
                    if let (Ok(k), Ok(v)) = (
                        HeaderName::from_bytes(k.as_bytes()),
                        HeaderValue::from_str(v),
                    ) {
                        if v.is_empty() {
                            req.headers_mut().remove(&k);
                        } else {
                            req.headers_mut().insert(k, v);
                        }
                    }
                }
                for (k, v) in response {
                    if let (Ok(k), Ok(v)) = (
                        HeaderName::from_bytes(k.as_bytes()),
                        HeaderValue::from_str(v),
                    ) {
                        response_headers.push((k, v));
                    }
                }
            }
        }
    }

    let Some(picked) = pick(&route.service, req.headers()) else {
        return (
            text(StatusCode::SERVICE_UNAVAILABLE, "no available server\n"),
            Some(route.clone()),
        );
    };
    let req = match route.service.as_ref() {
        Service::Mirroring {
            mirrors,
            mirror_body,
            max_body_size,
            ..
        } => {
            // Boxed, as a rare path's future that would otherwise enlarge every request's.
            Box::pin(mirror(
                conn,
                tls,
                req,
                mirrors,
                *mirror_body,
                *max_body_size,
                stripped_prefix.as_deref(),
            ))
            .await
        }
        _ => req.map(RequestBody::Streamed),
    };
    let _in_flight = picked.balancer.start(picked.index);
    let (mut resp, reached) = forward(
        picked.transport,
        conn,
        tls,
        req,
        picked.upstream,
        picked.pass_host,
        stripped_prefix.as_deref(),
    )
    .await;
    if reached {
        picked.health.succeeded(picked.index);
    } else {
        picked.health.failed(picked.index);
    }
    if shared.access_log.is_some() {
        resp.extensions_mut()
            .insert(ServedBy(picked.upstream.url.clone()));
    }
    if let Some(cookie) = picked.set_cookie {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    for (k, v) in response_headers {
        if v.is_empty() {
            resp.headers_mut().remove(&k);
        } else {
            resp.headers_mut().insert(k, v);
        }
    }
    (resp, Some(route.clone()))
}

/// Copies the request to the mirrors whose turn it is, in the background (their answers are
/// read and dropped), and returns it for the main service: streamed as it came when no copy
/// is needed or its body is not copied, else buffered (up to `max_body`: a larger body is
/// not mirrored and goes on streaming to the main service).
#[allow(clippy::too_many_arguments)]
async fn mirror(
    conn: &Arc<ConnInfo>,
    tls: bool,
    req: Request<ClientBody>,
    mirrors: &[crate::runtime::Mirror],
    mirror_body: bool,
    max_body: u64,
    stripped_prefix: Option<&str>,
) -> Request<RequestBody> {
    let firing: Vec<Arc<Service>> = mirrors
        .iter()
        .filter(|m| m.fires())
        .map(|m| m.service.clone())
        .collect();
    if firing.is_empty() || upgrade_protocol(req.headers()).is_some() {
        return req.map(RequestBody::Streamed);
    }
    let (parts, body) = req.into_parts();
    let declared = hyper::body::Body::size_hint(&body).upper();
    let (main_body, copy) = if hyper::body::Body::is_end_stream(&body) || !mirror_body {
        (RequestBody::Streamed(body), Some(Bytes::new()))
    } else if declared.is_some_and(|n| n > max_body) {
        (RequestBody::Streamed(body), None)
    } else {
        match crate::body::buffer(body, max_body).await {
            Ok(Ok(all)) => (RequestBody::Buffered(Some(all.clone())), Some(all)),
            Ok(Err((head, rest))) => (
                RequestBody::Prefixed {
                    head: Some(head),
                    rest,
                },
                None,
            ),
            // The client's body broke: the main service gets nothing more either.
            Err(_) => (RequestBody::Buffered(Some(Bytes::new())), None),
        }
    };
    if let Some(copy) = copy {
        for service in firing {
            let mut r =
                Request::from_parts(parts.clone(), RequestBody::Buffered(Some(copy.clone())));
            if !mirror_body {
                r.headers_mut().remove(header::CONTENT_LENGTH);
                r.headers_mut().remove(header::TRANSFER_ENCODING);
            }
            let conn = conn.clone();
            let prefix = stripped_prefix.map(str::to_string);
            tokio::spawn(async move {
                let Some(p) = pick(&service, r.headers()) else {
                    return;
                };
                let (resp, _) = forward(
                    p.transport,
                    &conn,
                    tls,
                    r,
                    p.upstream,
                    p.pass_host,
                    prefix.as_deref(),
                )
                .await;
                // Read (and drop) the answer, so the connection can be reused; past 1 MiB
                // it is closed instead.
                let mut body = resp.into_body();
                let mut read = 0usize;
                while let Some(Ok(frame)) = body.frame().await {
                    read += frame.data_ref().map_or(0, Bytes::len);
                    if read > 1 << 20 {
                        break;
                    }
                }
            });
        }
    }
    Request::from_parts(parts, main_body)
}

/// The server a request goes to.
struct Picked<'a> {
    upstream: &'a Upstream,
    transport: &'a crate::transport::Transport,
    balancer: &'a crate::balancer::Balancer,
    index: usize,
    pass_host: bool,
    health: &'a crate::health::Health,
    /// A `Set-Cookie` value when the client is to be pinned to this server.
    set_cookie: Option<String>,
}

/// Chooses a server, descending through weighted services: the one the sticky cookie names
/// when it is usable, else the balancer's choice among usable servers.
fn pick<'a>(service: &'a Arc<Service>, headers: &HeaderMap) -> Option<Picked<'a>> {
    let mut s = service.as_ref();
    for _ in 0..16 {
        match s {
            Service::Servers {
                definition,
                transport,
                servers,
                balancer,
                health,
                cookie_values,
            } => {
                let sticky = definition.sticky.as_ref();
                let pinned = sticky.and_then(|c| {
                    let want = cookie(headers, &c.name)?;
                    cookie_values
                        .iter()
                        .position(|v| *v == want)
                        .filter(|i| health.usable(*i))
                });
                let index = match pinned {
                    Some(i) => i,
                    None => balancer.pick(|i| health.usable(i))?,
                };
                let set_cookie = match (sticky, pinned) {
                    (Some(c), None) => Some(set_cookie(c, &cookie_values[index])),
                    _ => None,
                };
                return Some(Picked {
                    upstream: servers.get(index)?,
                    transport,
                    balancer,
                    index,
                    pass_host: definition.pass_host_header,
                    health,
                    set_cookie,
                });
            }
            Service::Weighted { children, balancer } => {
                let i = balancer.pick(|i| children.get(i).is_some_and(|(_, c)| has_usable(c)))?;
                s = children.get(i)?.1.as_ref();
            }
            Service::Failover { main, fallback } => {
                s = if has_usable(&main.1) {
                    main.1.as_ref()
                } else {
                    fallback.1.as_ref()
                };
            }
            Service::Mirroring { main, .. } => s = main.1.as_ref(),
        }
    }
    None
}

/// Whether a service has a server that may take traffic.
fn has_usable(s: &Service) -> bool {
    fn walk(s: &Service, depth: usize) -> bool {
        match s {
            Service::Servers {
                health, servers, ..
            } => (0..servers.len()).any(|i| health.usable(i)),
            Service::Weighted { children, .. } => {
                depth < 16 && children.iter().any(|(_, c)| walk(c, depth + 1))
            }
            Service::Failover { main, fallback } => {
                depth < 16 && (walk(&main.1, depth + 1) || walk(&fallback.1, depth + 1))
            }
            Service::Mirroring { main, .. } => depth < 16 && walk(&main.1, depth + 1),
        }
    }
    walk(s, 0)
}

/// The value of cookie `name` in the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

fn set_cookie(c: &crate::config::StickyCookie, value: &str) -> String {
    let mut out = format!("{}={value}; Path=/", c.name);
    if c.max_age > 0 {
        out.push_str(&format!("; Max-Age={}", c.max_age));
    }
    if c.http_only {
        out.push_str("; HttpOnly");
    }
    if c.secure {
        out.push_str("; Secure");
    }
    if !c.same_site.is_empty() {
        out.push_str(&format!("; SameSite={}", c.same_site));
    }
    out
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    transport: &crate::transport::Transport,
    conn: &Arc<ConnInfo>,
    tls: bool,
    mut req: Request<RequestBody>,
    upstream: &Upstream,
    pass_host: bool,
    stripped_prefix: Option<&str>,
) -> (Response<Body>, bool) {
    let upgrade = upgrade_protocol(req.headers());
    let client_upgrade = match upgrade {
        None => None,
        // An HTTP/2 extended CONNECT: the stream's DATA frames are the client's side of the
        // tunnel, and the request goes upstream without them.
        Some(_)
            if req
                .extensions_mut()
                .remove::<crate::h2::ExtendedConnect>()
                .is_some() =>
        {
            let body = std::mem::replace(req.body_mut(), RequestBody::Streamed(ClientBody::Empty));
            Some(ClientSide::Stream(body))
        }
        Some(_) => Some(ClientSide::Hyper(hyper::upgrade::on(&mut req))),
    };
    let original_host = req.headers().get(header::HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });

    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    // Room for the X-Forwarded-* fields and Host at once (an HTTP/2 request's map is sized
    // for what the client sent, and would grow while they are added).
    let _ = headers.try_reserve(6);
    let trusted = conn.trusted;
    if !trusted && headers.keys().any(|k| FORWARDED.contains(&k.as_str())) {
        for h in FORWARDED {
            headers.remove(h);
        }
    }
    let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if trusted => HeaderValue::from_str(&format!("{prev}, {}", conn.client_ip))
            .unwrap_or_else(|_| conn.ip_value.clone()),
        _ => conn.ip_value.clone(),
    };
    let scheme = match (tls, upgrade.is_some()) {
        (true, true) => "wss",
        (false, true) => "ws",
        (true, false) => "https",
        (false, false) => "http",
    };
    // The X-Forwarded-* fields edgeplane sets (a trusted source's own are kept, but for
    // X-Forwarded-For, which it extends).
    let keep = |name: &HeaderName| trusted && headers.contains_key(name);
    let forwarded: [Option<(&'static HeaderName, HeaderValue)>; 5] = [
        Some((&X_FORWARDED_FOR, xff)),
        (!keep(&X_FORWARDED_PROTO)).then(|| (&X_FORWARDED_PROTO, HeaderValue::from_static(scheme))),
        original_host
            .clone()
            .filter(|_| !keep(&X_FORWARDED_HOST))
            .map(|h| (&X_FORWARDED_HOST, h)),
        (!keep(&X_FORWARDED_PORT)).then(|| (&X_FORWARDED_PORT, conn.port_value.clone())),
        (!keep(&X_REAL_IP)).then(|| (&X_REAL_IP, conn.ip_value.clone())),
    ];
    let whole = if !upstream.h2c && !upstream.https && upgrade.is_none() {
        req.body_mut().take_whole(crate::h1::MAX_WHOLE_BODY)
    } else {
        None
    };
    let headers = req.headers_mut();
    // For edgeplane's own client, an untrusted client's request has none of these fields
    // left, so they are written straight after the others instead of being hashed into the
    // map; anywhere else they go into the map.
    let direct = whole.is_some() && !trusted;
    let forwarded = if direct {
        forwarded
    } else {
        for (name, value) in forwarded.into_iter().flatten() {
            headers.insert(name.clone(), value);
        }
        Default::default()
    };
    if let Some(p) = stripped_prefix {
        insert(headers, "x-forwarded-prefix", p);
    }
    if let Some(proto) = &upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, proto.clone());
    }
    if upstream.h2c {
        // gRPC needs `te: trailers` end to end.
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if pass_host {
        if let Some(h) = original_host {
            headers.insert(header::HOST, h);
        }
    } else if let Ok(h) = HeaderValue::from_str(upstream.authority.as_str()) {
        headers.insert(header::HOST, h);
    }

    if let Some(body) = whole {
        // Nothing to stream up and nothing to splice: edgeplane's own HTTP/1.1 client, which
        // needs only the request's path and query of its target.
        // The request is written out now and dropped: it holds slices of the connection's
        // read buffer, which can then be reused for the next request.
        let (parts, _) = req.into_parts();
        let head = crate::h1::encode(&parts, &upstream.authority, &body, &forwarded);
        drop(body);
        let method = parts.method.clone();
        drop(parts);
        let result = transport
            .h1
            .send(
                &upstream.authority,
                &method,
                &head,
                transport.response_header_timeout,
            )
            .await;
        return match result {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                parts.headers.remove(header::TRANSFER_ENCODING);
                (Response::from_parts(parts, body.boxed()), true)
            }
            Err(crate::h1::SendError::TimedOut) => {
                tracing::debug!(server = %upstream.url, "no response headers in time");
                (
                    text(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Timeout\n"),
                    true,
                )
            }
            Err(e) => {
                tracing::debug!(server = %upstream.url, error = %e, "upstream request failed");
                (
                    text(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n"),
                    !e.is_connect(),
                )
            }
        };
    }
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(if upstream.https {
        http::uri::Scheme::HTTPS
    } else {
        http::uri::Scheme::HTTP
    });
    parts.authority = Some(upstream.authority.clone());
    parts.path_and_query = Some(
        req.uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    );
    let uri = Uri::from_parts(parts);
    let Ok(uri) = uri else {
        return (
            text(StatusCode::BAD_REQUEST, "400 Bad Request: invalid path\n"),
            true,
        );
    };
    *req.uri_mut() = uri;
    // Boxed: this path's future is larger than the one above and less used, and every
    // request's future is moved whole (into hyper's dispatcher, or a task per h2 stream).
    Box::pin(with_hyper(transport, conn, req, upstream, client_upgrade)).await
}

/// Sends a request over hyper's pooled client (bodies, upgrades, `https://`, `h2c://`).
async fn with_hyper(
    transport: &crate::transport::Transport,
    conn: &Arc<ConnInfo>,
    mut req: Request<RequestBody>,
    upstream: &Upstream,
    client_upgrade: Option<ClientSide>,
) -> (Response<Body>, bool) {
    let client = if upstream.h2c {
        *req.version_mut() = Version::HTTP_2;
        transport.h2c.mine()
    } else {
        *req.version_mut() = Version::HTTP_11;
        transport.client.mine()
    };
    let sent = client.request(req);
    let result = match transport.response_header_timeout {
        Some(limit) => match tokio::time::timeout(limit, sent).await {
            Ok(r) => r,
            Err(_) => {
                tracing::debug!(server = %upstream.url, "no response headers in time");
                return (
                    text(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Timeout\n"),
                    true,
                );
            }
        },
        None => sent.await,
    };
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(server = %upstream.url, error = %e, "upstream request failed");
            return (
                text(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n"),
                !e.is_connect(),
            );
        }
    };
    let switched = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    match client_upgrade {
        Some(ClientSide::Hyper(client_upgrade)) if switched => {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            // The tunnel keeps the connection counted as open.
            let conn = conn.clone();
            tokio::spawn(async move {
                let _conn = conn;
                match tokio::try_join!(client_upgrade, upstream_upgrade) {
                    Ok((c, u)) => {
                        let mut c = TokioIo::new(c);
                        let mut u = TokioIo::new(u);
                        let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                }
            });
            let (parts, _) = resp.into_parts();
            return (Response::from_parts(parts, empty()), true);
        }
        Some(ClientSide::Stream(client)) if switched => {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let conn = conn.clone();
            tokio::spawn(async move {
                let _conn = conn;
                match upstream_upgrade.await {
                    Ok(u) => stream_tunnel(client, TokioIo::new(u), tx).await,
                    Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                }
            });
            // RFC 8441: the switch is a 200 on the stream, which then carries the protocol.
            let (mut parts, _) = resp.into_parts();
            parts.status = StatusCode::OK;
            strip_hop_by_hop(&mut parts.headers);
            parts.headers.remove(header::SEC_WEBSOCKET_ACCEPT);
            parts.headers.remove(header::CONTENT_LENGTH);
            return (Response::from_parts(parts, TunnelBody(rx).boxed()), true);
        }
        Some(ClientSide::Stream(_)) if resp.status().is_success() => {
            // A success that is not a switch would read as an open tunnel to the client.
            tracing::debug!(server = %upstream.url, status = %resp.status(), "upstream did not switch protocols");
            return (text(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n"), true);
        }
        _ => {}
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::TRANSFER_ENCODING);
    (
        Response::from_parts(parts, body.map_err(crate::h1::BoxError::from).boxed()),
        true,
    )
}

/// The client's side of an upgrade.
enum ClientSide {
    /// An HTTP/1.1 connection, handed over by hyper once the 101 is sent.
    Hyper(hyper::upgrade::OnUpgrade),
    /// An HTTP/2 stream (extended CONNECT): its request body in, its response body out.
    Stream(RequestBody),
}

/// Carries an HTTP/2 stream's tunnel: the client's DATA written upstream (its END_STREAM as
/// a half-close), and what the upstream sends handed to the response body through `tx`,
/// whose bound holds the upstream back while the client's window is shut. Ends when both
/// directions have, or when the stream is gone (its body dropped or reset).
async fn stream_tunnel<IO>(mut client: RequestBody, io: IO, tx: tokio::sync::mpsc::Sender<Bytes>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite,
{
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (mut rd, mut wr) = tokio::io::split(io);
    let up = async move {
        while let Some(frame) = client.frame().await {
            let Ok(frame) = frame else { return };
            if let Ok(data) = frame.into_data() {
                if wr.write_all(&data).await.is_err() {
                    return;
                }
            }
        }
        let _ = wr.shutdown().await;
    };
    // Moved in, so that the response body ends as soon as the upstream has.
    let down = async move {
        let mut buf = bytes::BytesMut::new();
        loop {
            buf.reserve(16 * 1024);
            tokio::select! {
                read = rd.read_buf(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                () = tx.closed() => return,
            }
            if tx.send(buf.split().freeze()).await.is_err() {
                return;
            }
        }
    };
    tokio::join!(up, down);
}

/// The response body of an HTTP/2 stream's tunnel: what the upstream sent, as it comes.
struct TunnelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for TunnelBody {
    type Data = Bytes;
    type Error = crate::h1::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|b| b.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// Removes hop-by-hop headers, including those the Connection header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names finds those present (most messages carry one, `connection`,
    // or none), so only they are removed: removing each of the eight by name would hash
    // them all.
    let mut present: [Option<HeaderName>; HOP_BY_HOP.len()] = Default::default();
    let mut found = 0;
    for k in headers.keys() {
        if found < present.len() && HOP_BY_HOP.contains(&k.as_str()) {
            present[found] = Some(k.clone());
            found += 1;
        }
    }
    if found == 0 {
        return;
    }
    // Fields the Connection header names, other than those already found by name.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty() && !HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(t)))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for h in present.into_iter().flatten() {
        headers.remove(h);
    }
}

/// The protocol a request asks to upgrade to (HTTP/1.1 `Connection: upgrade`). `h2c` is not
/// one of them: it would switch the client's own connection to edgeplane, which serves
/// HTTP/2 without TLS by prior knowledge only (RFC 9113 deprecates the upgrade), so that
/// offer is ignored, as the protocol allows, and never passed upstream.
fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let wants = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !wants {
        return None;
    }
    let value = headers.get(header::UPGRADE)?;
    let Ok(text) = value.to_str() else {
        return Some(value.clone());
    };
    if !text
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case("h2c"))
    {
        return Some(value.clone());
    }
    let rest: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("h2c"))
        .collect();
    HeaderValue::from_str(&rest.join(", "))
        .ok()
        .filter(|v| !v.is_empty())
}

/// The request's host: lowercase, without port or trailing dot. Errors on a malformed one.
fn request_host<B>(req: &Request<B>) -> Result<String, ()> {
    // Two Host headers make the target ambiguous (RFC 9112 section 3.2): refused.
    if req.headers().get_all(header::HOST).iter().nth(1).is_some() {
        return Err(());
    }
    let raw = match req.uri().authority() {
        Some(a) => a.host().to_string(),
        None => match req.headers().get(header::HOST) {
            None => return Ok(String::new()),
            Some(v) => {
                let s = v.to_str().map_err(|_| ())?;
                // The usual `name` or `name:port` in lower case is taken as it is; anything
                // else is parsed as an authority.
                let (name, port) = s.split_once(':').unwrap_or((s, ""));
                let plain = !name.is_empty()
                    && name.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                    })
                    && port.bytes().all(|b| b.is_ascii_digit())
                    && port.len() <= 5
                    && !name.ends_with('.');
                if plain {
                    return Ok(name.to_string());
                }
                let a: http::uri::Authority = s.parse().map_err(|_| ())?;
                a.host().to_string()
            }
        },
    };
    let h = raw.trim_end_matches('.').to_ascii_lowercase();
    let h = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .map_or(h.clone(), str::to_string);
    Ok(h)
}

fn set_path<B>(req: &mut Request<B>, path: &str) {
    let pq = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(p) = pq.parse() {
        parts.path_and_query = Some(p);
        if let Ok(u) = Uri::from_parts(parts) {
            *req.uri_mut() = u;
        }
    }
}

fn port_suffix(scheme: &str, port: u16) -> String {
    match (scheme, port) {
        ("https", 443) | ("http", 80) => String::new(),
        _ => format!(":{port}"),
    }
}

fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The method as a metric label: RFC 9110's methods by name, any other as `OTHER` (a label
/// per method a client makes up would grow the series without bound).
fn method_label(m: &http::Method) -> &'static str {
    use http::Method as M;
    match *m {
        M::GET => "GET",
        M::HEAD => "HEAD",
        M::POST => "POST",
        M::PUT => "PUT",
        M::DELETE => "DELETE",
        M::CONNECT => "CONNECT",
        M::OPTIONS => "OPTIONS",
        M::TRACE => "TRACE",
        M::PATCH => "PATCH",
        _ => "OTHER",
    }
}

fn proto_label(v: Version) -> &'static str {
    match v {
        Version::HTTP_2 => "http/2",
        Version::HTTP_10 => "http/1.0",
        _ => "http/1.1",
    }
}

fn redirect<B>(req: &Request<B>, location: &str, permanent: bool) -> Response<Body> {
    // Like Traefik: 301/302 for GET and HEAD, 308/307 (method kept) otherwise.
    let keep_method = !matches!(*req.method(), http::Method::GET | http::Method::HEAD);
    let status = match (permanent, keep_method) {
        (true, false) => StatusCode::MOVED_PERMANENTLY,
        (true, true) => StatusCode::PERMANENT_REDIRECT,
        (false, false) => StatusCode::FOUND,
        (false, true) => StatusCode::TEMPORARY_REDIRECT,
    };
    let mut r = text(status, "");
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "404 page not found\n")
}

pub(crate) fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_of(values: &[&str]) -> Result<String, ()> {
        let mut req = Request::new(());
        for v in values {
            req.headers_mut().append(
                header::HOST,
                HeaderValue::from_str(v).expect("header value"),
            );
        }
        request_host(&req)
    }

    /// What any Host value gives when parsed as an authority (the way the fast path must
    /// agree with).
    fn parsed(value: &str) -> Result<String, ()> {
        let a: http::uri::Authority = value.parse().map_err(|_| ())?;
        let h = a.host().trim_end_matches('.').to_ascii_lowercase();
        Ok(h.strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .map_or(h.clone(), str::to_string))
    }

    #[test]
    fn hop_by_hop_fields_and_those_connection_names_are_removed() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("connection", "keep-alive, X-Custom, Upgrade"),
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("x-custom", "1"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic x"),
            ("proxy-authenticate", "Basic"),
            ("x-kept", "2"),
            ("content-type", "text/plain"),
        ] {
            h.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-kept", "content-type"]);
        // Nothing to remove: nothing changes.
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn hosts_are_lowercased_without_port_dot_or_brackets() {
        for (value, expected) in [
            ("example.com", Ok("example.com")),
            ("example.com:8080", Ok("example.com")),
            ("Example.COM:8080", Ok("example.com")),
            ("a.b.:80", Ok("a.b")),
            ("a.b.", Ok("a.b")),
            ("10.0.0.1:443", Ok("10.0.0.1")),
            ("[::1]:8080", Ok("::1")),
            ("[::1]", Ok("::1")),
            ("bad host", Err(())),
            ("a/b", Err(())),
        ] {
            let got = host_of(&[value]);
            assert_eq!(got, expected.map(str::to_string), "{value}");
        }
        // Every value, usual or odd, gives what parsing it as an authority gives.
        let mut rng = crate::test_util::Lcg(3);
        let alphabet = b"abZ09-.:[]_@ %";
        for _ in 0..5000 {
            let len = rng.next(10) + 1;
            let v: String = (0..len)
                .map(|_| alphabet[rng.next(alphabet.len())] as char)
                .collect();
            if HeaderValue::from_str(&v).is_ok() {
                assert_eq!(host_of(&[&v]), parsed(&v), "{v:?}");
            }
        }
        assert_eq!(host_of(&[]), Ok(String::new()));
        assert_eq!(host_of(&["a", "b"]), Err(()), "two Host headers");
    }
}
