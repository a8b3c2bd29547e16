//! The Route53-compatible REST API (2013-04-01) on the embedded store: hosted zones, change
//! batches, record listing and change status, with Route53's XML documents and error codes, so
//! the AWS SDKs, the aws CLI and boto3 work against edgeplane with one endpoint setting.
//!
//! Every request is SigV4-verified (service `route53`). Until IAM policies exist, only identities
//! with full access (`*:*/*`) may call it; everyone else is implicitly denied.

mod health;
pub mod xml;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use model::record::{AliasTarget, Failover, RecordData, RecordSet, RecordType, RoutingPolicy, Ttl};
use model::zone::{Change, ChangeAction, ChangeError};
use model::{DomainName, HostedZoneId, Zone};
use serde::Deserialize;
use store::identities::Identities;
use store::{ChangeInfo, Store, StoreError};

use std::collections::BTreeMap;

pub use crate::auth::RateLimiter;
use crate::policy::{self, Decision, Policy, RequestContext};
use crate::sigv4;
use store::identities::IamUser;

const NS: &str = "https://route53.amazonaws.com/doc/2013-04-01/";
/// Most ResourceRecord elements in one change batch (UPSERT counted twice).
const MAX_RECORDS_PER_BATCH: usize = 1000;
/// Most characters of record values in one change batch (UPSERT counted twice).
const MAX_VALUE_CHARS_PER_BATCH: usize = 32_000;

/// What the Route53 API works with.
#[derive(Clone)]
pub struct Route53State {
    pub store: Store,
    pub identities: Identities,
    /// The name servers of new hosted zones (their delegation set).
    pub name_servers: Vec<DomainName>,
    /// Requests per second and access key, if throttled.
    pub limiter: Option<Arc<RateLimiter>>,
}

/// The API's routes, under `/2013-04-01/`.
pub fn router(state: Route53State) -> Router {
    Router::new()
        .route("/2013-04-01/hostedzone", get(list_zones).post(create_zone))
        .route("/2013-04-01/hostedzone/", get(list_zones).post(create_zone))
        .route("/2013-04-01/hostedzonesbyname", get(list_zones_by_name))
        .route("/2013-04-01/hostedzonecount", get(zone_count))
        .route(
            "/2013-04-01/hostedzone/{id}",
            get(get_zone).delete(delete_zone).post(update_comment),
        )
        .route(
            "/2013-04-01/tags/{kind}/{id}",
            get(list_tags).post(change_tags),
        )
        .route(
            "/2013-04-01/tags/{kind}",
            axum::routing::post(list_tags_for_resources),
        )
        .route(
            "/2013-04-01/hostedzone/{id}/rrset",
            get(list_records).post(change_records),
        )
        .route(
            "/2013-04-01/hostedzone/{id}/rrset/",
            get(list_records).post(change_records),
        )
        .route("/2013-04-01/change/{id}", get(get_change))
        .route(
            "/2013-04-01/healthcheck",
            get(health::list).post(health::create),
        )
        .route(
            "/2013-04-01/healthcheck/{id}",
            get(health::get).delete(health::delete),
        )
        .route("/2013-04-01/healthcheck/{id}/status", get(health::status))
        .route("/", axum::routing::post(iam_query))
        .layer(axum::extract::DefaultBodyLimit::max(xml::MAX_BODY))
        .with_state(Arc::new(state))
}

/// A Route53 error: code, message, HTTP status, and the messages of an invalid change batch.
#[derive(Debug)]
pub struct R53Error {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl R53Error {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        R53Error {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            code,
            message: message.into(),
        }
    }

    fn invalid_input(message: impl Into<String>) -> Self {
        R53Error::new(400, "InvalidInput", message)
    }
}

impl IntoResponse for R53Error {
    fn into_response(self) -> Response {
        let kind = if self.status.is_server_error() {
            "Receiver"
        } else {
            "Sender"
        };
        let body = format!(
            "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"{NS}\"><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
            self.code,
            xml::escape(&self.message),
            request_id()
        );
        (self.status, [("content-type", "text/xml")], body).into_response()
    }
}

impl From<sigv4::AuthError> for R53Error {
    fn from(e: sigv4::AuthError) -> Self {
        R53Error::new(e.status(), e.code(), e.to_string())
    }
}

impl From<StoreError> for R53Error {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::NoSuchHostedZone(_) | StoreError::NoSuchZoneName(_) => {
                R53Error::new(404, "NoSuchHostedZone", e.to_string())
            }
            StoreError::HostedZoneAlreadyExists { .. } => {
                R53Error::new(409, "HostedZoneAlreadyExists", e.to_string())
            }
            StoreError::HostedZoneNotEmpty(_) => R53Error::new(
                400,
                "HostedZoneNotEmpty",
                "The hosted zone contains resource records that are not SOA or NS records.",
            ),
            StoreError::InvalidChangeBatch(errors) => {
                R53Error::new(400, "InvalidChangeBatch", batch_messages(errors))
            }
            StoreError::Invalid(_) => R53Error::invalid_input(e.to_string()),
            StoreError::TooManyTags(_) => R53Error::invalid_input(e.to_string()),
            StoreError::NoSuchHealthCheck(_) => {
                R53Error::new(404, "NoSuchHealthCheck", e.to_string())
            }
            StoreError::HealthCheckAlreadyExists(_) => {
                R53Error::new(409, "HealthCheckAlreadyExists", e.to_string())
            }
            StoreError::TooManyHealthChecks(_) => {
                R53Error::new(400, "TooManyHealthChecks", e.to_string())
            }
            _ => {
                tracing::error!(error = %e, "Route53 API request failed");
                R53Error::new(500, "InternalFailure", "internal error")
            }
        }
    }
}

impl From<xml::XmlError> for R53Error {
    fn from(e: xml::XmlError) -> Self {
        R53Error::invalid_input(e.to_string())
    }
}

fn batch_messages(errors: &[ChangeError]) -> String {
    let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
    format!("[{}]", list.join(", "))
}

type Shared = State<Arc<Route53State>>;

/// Who signed a request.
pub enum Principal {
    /// An identity with full access (the bootstrap admin).
    Admin(String),
    /// An IAM user: its inline policies decide.
    User(IamUser),
    /// An identity with neither full access nor IAM policies: implicitly denied.
    Other(String),
}

impl Principal {
    fn name(&self) -> &str {
        match self {
            Principal::Admin(n) | Principal::Other(n) => n,
            Principal::User(u) => &u.name,
        }
    }

    /// Allows or denies `action` on `resource` with condition keys `keys`.
    pub fn authorize(
        &self,
        action: &str,
        resource: &str,
        keys: BTreeMap<String, Vec<String>>,
    ) -> Result<(), R53Error> {
        let decision = match self {
            Principal::Admin(_) => Decision::Allow,
            Principal::Other(_) => Decision::ImplicitDeny,
            Principal::User(u) => {
                let policies: Vec<Policy> = u
                    .policies
                    .values()
                    .filter_map(|d| Policy::parse(d).ok())
                    .collect();
                policy::evaluate(
                    &policies,
                    &RequestContext {
                        action: action.to_string(),
                        resource: resource.to_string(),
                        keys,
                    },
                )
            }
        };
        if decision == Decision::Allow {
            return Ok(());
        }
        tracing::warn!(
            principal = self.name(),
            action,
            resource,
            ?decision,
            "request denied"
        );
        let reason = if decision == Decision::ExplicitDeny {
            "with an explicit deny"
        } else {
            "because no identity-based policy allows the action"
        };
        Err(R53Error::new(
            403,
            "AccessDenied",
            format!(
                "User: {} is not authorized to perform: {action} on resource: {resource} {reason}",
                self.name()
            ),
        ))
    }
}

/// Verifies a request's SigV4 signature and returns who signed it.
pub(crate) async fn authenticate(
    state: &Route53State,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Principal, R53Error> {
    let signer = crate::auth::authenticate(
        &state.identities,
        state.limiter.as_deref(),
        method,
        uri,
        headers,
        body,
    )
    .await
    .map_err(|e| match e {
        crate::auth::AuthFailure::Refused(e) => R53Error::from(e),
        crate::auth::AuthFailure::Throttled => R53Error::new(400, "Throttling", "Rate exceeded"),
        crate::auth::AuthFailure::Internal => {
            R53Error::new(500, "InternalFailure", "authentication failed")
        }
    })?;
    Ok(if signer.identity.rules.iter().any(|r| r == "*:*/*") {
        Principal::Admin(signer.identity.name)
    } else if let Some(u) = signer.user {
        Principal::User(u)
    } else {
        Principal::Other(signer.identity.name)
    })
}

/// Authenticates and authorizes a Route53 action on a resource.
async fn allow(
    s: &Route53State,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    action: &str,
    resource: &str,
) -> Result<Principal, R53Error> {
    let p = authenticate(s, method, uri, headers, body).await?;
    p.authorize(&format!("route53:{action}"), resource, BTreeMap::new())?;
    Ok(p)
}

fn zone_arn(id: &str) -> String {
    format!(
        "arn:aws:route53:::hostedzone/{}",
        id.trim_start_matches("/hostedzone/")
    )
}

fn xml_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [("content-type", "text/xml")],
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}"),
    )
        .into_response()
}

pub(crate) fn request_id() -> String {
    let a = store::random_u64();
    let b = store::random_u64();
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

pub(crate) fn timestamp(secs: u64) -> String {
    let d = sigv4::format_amz_date(secs);
    format!(
        "{}-{}-{}T{}:{}:{}.000Z",
        &d[0..4],
        &d[4..6],
        &d[6..8],
        &d[9..11],
        &d[11..13],
        &d[13..15]
    )
}

fn change_info_xml(store: &Store, c: &ChangeInfo) -> String {
    let status = if store.snapshot().generation >= c.generation {
        "INSYNC"
    } else {
        "PENDING"
    };
    format!(
        "<ChangeInfo><Id>/change/{}</Id><Status>{status}</Status><SubmittedAt>{}</SubmittedAt></ChangeInfo>",
        c.id,
        timestamp(c.submitted_at)
    )
}

fn zone_xml(z: &Zone) -> String {
    let comment = z
        .comment
        .as_deref()
        .map(|c| format!("<Comment>{}</Comment>", xml::escape(c)))
        .unwrap_or_default();
    format!(
        "<HostedZone><Id>/hostedzone/{}</Id><Name>{}</Name><CallerReference>{}</CallerReference><Config>{comment}<PrivateZone>{}</PrivateZone></Config><ResourceRecordSetCount>{}</ResourceRecordSetCount></HostedZone>",
        z.id,
        xml::escape(&z.name.to_route53_string()),
        xml::escape(&z.caller_reference),
        z.private,
        z.records.len()
    )
}

fn delegation_set_xml(z: &Zone) -> String {
    let servers: String = z
        .records
        .values()
        .filter(|s| s.name == z.name && s.rtype == RecordType::NS)
        .flat_map(|s| s.records.iter())
        .filter_map(|r| match r {
            RecordData::Ns(n) => Some(format!(
                "<NameServer>{}</NameServer>",
                xml::escape(n.to_string().trim_end_matches('.'))
            )),
            _ => None,
        })
        .collect();
    format!("<DelegationSet><NameServers>{servers}</NameServers></DelegationSet>")
}

fn zone_id(raw: &str) -> Result<HostedZoneId, R53Error> {
    HostedZoneId::parse(raw).map_err(|_| {
        R53Error::new(
            404,
            "NoSuchHostedZone",
            format!("No hosted zone found with ID: {raw}"),
        )
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, R53Error> + Send + 'static,
) -> Result<T, R53Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| R53Error::new(500, "InternalFailure", "request task failed"))?
}

async fn create_zone(
    State(s): Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, R53Error> {
    allow(&s, &method, &uri, &headers, &body, "CreateHostedZone", "*").await?;
    let doc = xml::parse(&body)?;
    if doc.name != "CreateHostedZoneRequest" {
        return Err(R53Error::invalid_input(
            "expected a CreateHostedZoneRequest document",
        ));
    }
    let name = doc
        .text_of("Name")
        .ok_or_else(|| R53Error::invalid_input("Name is required"))?;
    let name = DomainName::parse_route53(name)
        .map_err(|e| R53Error::new(400, "InvalidDomainName", e.to_string()))?;
    let caller = doc
        .text_of("CallerReference")
        .ok_or_else(|| R53Error::invalid_input("CallerReference is required"))?
        .to_string();
    if caller.is_empty() || caller.len() > 128 {
        return Err(R53Error::invalid_input(
            "CallerReference must be 1 to 128 characters",
        ));
    }
    let config = doc.child("HostedZoneConfig");
    if config.and_then(|c| c.text_of("PrivateZone")) == Some("true") || doc.child("VPC").is_some() {
        return Err(R53Error::invalid_input(
            "private hosted zones (VPC) are not supported",
        ));
    }
    let comment = config
        .and_then(|c| c.text_of("Comment"))
        .map(str::to_string);
    if comment.as_ref().is_some_and(|c| c.len() > 256) {
        return Err(R53Error::invalid_input(
            "Comment is longer than 256 characters",
        ));
    }
    let state = Arc::clone(&s);
    let (zone, change) = blocking(move || {
        Ok(state
            .store
            .create_zone(name, caller, comment, &state.name_servers)?)
    })
    .await?;
    let body = format!(
        "<CreateHostedZoneResponse xmlns=\"{NS}\">{}{}{}</CreateHostedZoneResponse>",
        zone_xml(&zone),
        change_info_xml(&s.store, &change),
        delegation_set_xml(&zone)
    );
    let mut resp = xml_response(StatusCode::CREATED, body);
    if let Ok(v) = format!("/2013-04-01/hostedzone/{}", zone.id).parse() {
        resp.headers_mut().insert("location", v);
    }
    Ok(resp)
}

async fn get_zone(
    State(s): Shared,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, R53Error> {
    allow(
        &s,
        &method,
        &uri,
        &headers,
        &body,
        "GetHostedZone",
        &zone_arn(&id),
    )
    .await?;
    let zone = s.store.zone(&zone_id(&id)?)?;
    Ok(xml_response(
        StatusCode::OK,
        format!(
            "<GetHostedZoneResponse xmlns=\"{NS}\">{}{}</GetHostedZoneResponse>",
            zone_xml(&zone),
            delegation_set_xml(&zone)
        ),
    ))
}

async fn delete_zone(
    State(s): Shared,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, R53Error> {
    allow(
        &s,
        &method,
        &uri,
        &headers,
        &body,
        "DeleteHostedZone",
        &zone_arn(&id),
    )
    .await?;
    let id = zone_id(&id)?;
    let state = Arc::clone(&s);
    let change = blocking(move || Ok(state.store.delete_zone(&id)?)).await?;
    Ok(xml_response(
        StatusCode::OK,
        format!(
            "<DeleteHostedZoneResponse xmlns=\"{NS}\">{}</DeleteHostedZoneResponse>",
            change_info_xml(&s.store, &change)
        ),
    ))
}

#[derive(Deserialize)]
struct ListZonesQuery {
    marker: Option<String>,
    maxitems: Option<String>,
    dnsname: Option<String>,
    hostedzoneid: Option<String>,
}

fn max_items(raw: Option<&str>, default: usize, max: usize) -> Result<usize, R53Error> {
    match raw {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|&n| n >= 1)
            .map(|n| n.min(max))
            .ok_or_else(|| {
                R53Error::invalid_input(format!("MaxItems {v:?} is not a positive number"))
            }),
    }
}

async fn list_zones(
    State(s): Shared,
    Query(q): Query<ListZonesQuery>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, R53Error> {
    allow(&s, &method, &uri, &headers, &body, "ListHostedZones", "*").await?;
    let max = max_items(q.maxitems.as_deref(), 100, 100)?;
    let snapshot = s.store.snapshot();
    let zones: Vec<_> = snapshot
        .zones
        .iter()
        .filter(|(id, _)| {
            q.marker
                .as_deref()
                .is_none_or(|m| id.as_str() >= m.trim_start_matches("/hostedzone/"))
        })
        .collect();
    let truncated = zones.len() > max;
    let items: String = zones
        .iter()
        .take(max)
        .map(|(_, z)| zone_xml(z.zone()))
        .collect();
    let marker = q
        .marker
        .as_deref()
        .map(|m| format!("<Marker>{}</Marker>", xml::escape(m)))
        .unwrap_or_default();
    let next = if truncated {
        format!("<NextMarker>{}</NextMarker>", zones[max].0)
    } else {
        String::new()
    };
    Ok(xml_response(
        StatusCode::OK,
        format!("<ListHostedZonesResponse xmlns=\"{NS}\"><HostedZones>{items}</HostedZones>{marker}<IsTruncated>{truncated}</IsTruncated>{next}<MaxItems>{max}</MaxItems></ListHostedZonesResponse>"),
    ))
}

async fn list_zones_by_name(
    State(s): Shared,
    Query(q): Query<ListZonesQuery>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, R53Error> {
    allow(
        &s,
        &method,
        &uri,
        &headers,
        &body,
        "ListHostedZonesByName",
        "*",
    )
    .await?;
    let max = max_items(q.maxitems.as_deref(), 100, 100)?;
    let start = match q.dnsname.as_deref() {
        Some(n) => Some(
            DomainName::parse_route53(n)
                .map_err(|e| R53Error::new(400, "InvalidDomainName", e.to_string()))?,
        ),
        None => None,
    };
    if q.hostedzoneid.is_some() && start.is_none() {
        return Err(R53Error::invalid_input("HostedZoneId requires DNSName"));
    }
    let start_id = q
        .hostedzoneid
        .as_deref()
        .map(|i| i.trim_start_matches("/hostedzone/").to_string());
    let snapshot = s.store.snapshot();
    // Route53's order: the names with their labels reversed, as strings (`com.example.www.`),
    // then the ID.
    let mut zones: Vec<_> = snapshot
        .zones
        .values()
        .map(|z| (z.zone().name.route53_sort_key(), z.zone().clone()))
        .collect();
    zones.sort_by(|(ka, a), (kb, b)| ka.cmp(kb).then_with(|| a.id.cmp(&b.id)));
    let start_key = start.as_ref().map(DomainName::route53_sort_key);
    let zones: Vec<_> = zones
        .into_iter()
        .filter(|(key, z)| match &start_key {
            None => true,
            Some(k) => {
                key > k || (key == k && start_id.as_deref().is_none_or(|i| z.id.as_str() >= i))
            }
        })
        .map(|(_, z)| z)
        .collect();
    let truncated = zones.len() > max;
    let items: String = zones.iter().take(max).map(|z| zone_xml(z)).collect();
    let mut extra = String::new();
    if let Some(n) = &start {
        extra.push_str(&format!(
            "<DNSName>{}</DNSName>",
            xml::escape(&n.to_route53_string())
        ));
    }
    if let Some(i) = &start_id {
        extra.push_str(&format!("<HostedZoneId>{}</HostedZoneId>", xml::escape(i)));
    }
    if truncated {
        extra.push_str(&format!(
            "<NextDNSName>{}</NextDNSName><NextHostedZoneId>{}</NextHostedZoneId>",
            xml::escape(&zones[max].name.to_route53_string()),
            zones[max].id
        ));
    }
    Ok(xml_response(
        StatusCode::OK,
        format!("<ListHostedZonesByNameResponse xmlns=\"{NS}\"><HostedZones>{items}</HostedZones>{extra}<IsTruncated>{truncated}</IsTruncated><MaxItems>{max}</MaxItems></ListHostedZonesByNameResponse>"),
    ))
}

async fn zone_count(
    State(s): Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, R53Error> {
    allow(
        &s,
        &method,
        &uri,
        &headers,
        &body,
        "GetHostedZoneCount",
        "*",
    )
    .await?;
    let n = s.store.snapshot().zones.len();
    Ok(xml_response(StatusCode::OK, format!("<GetHostedZoneCountResponse xmlns=\"{NS}\"><HostedZoneCount>{n}</HostedZoneCount></GetHostedZoneCountResponse>")))
}

async fn get_change(
    State(s): Shared,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, R53Error> {
    allow(
        &s,
        &method,
        &uri,
        &headers,
        &body,
        "GetChange",
        &format!(
            "arn:aws:route53:::change/{}",
            id.trim_start_matches("/change/")
        ),
    )
    .await?;
    let id = id.trim_start_matches("/change/").to_string();
    let state = Arc::clone(&s);
    let lookup = id.clone();
    let change = blocking(move || Ok(state.store.change(&lookup)?)).await?;
    let change = change.ok_or_else(|| {
        R53Error::new(
            404,
            "NoSuchChange",
            format!("A change with the specified change ID does not exist: {id}"),
        )
    })?;
    Ok(xml_response(
        StatusCode::OK,
        format!(
            "<GetChangeResponse xmlns=\"{NS}\">{}</GetChangeResponse>",
            change_info_xml(&s.store, &change)
        ),
    ))
}

async fn change_records(
    State(s): Shared,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, R53Error> {
    let principal = authenticate(&s, &method, &uri, &headers, &body).await?;
    let id = zone_id(&id)?;
    let doc = xml::parse(&body)?;
    if doc.name != "ChangeResourceRecordSetsRequest" {
        return Err(R53Error::invalid_input(
            "expected a ChangeResourceRecordSetsRequest document",
        ));
    }
    let changes = parse_changes(&doc)?;
    principal.authorize(
        "route53:ChangeResourceRecordSets",
        &zone_arn(id.as_str()),
        change_keys(&changes),
    )?;
    let zone = s.store.zone(&id)?;
    let state = Arc::clone(&s);
    let change = blocking(move || {
        // Created and upserted sets must name existing health checks.
        for c in changes.iter().filter(|c| c.action != ChangeAction::Delete) {
            if let Some(check) = &c.set.health_check_id {
                state.store.health_check(check)?;
            }
        }
        Ok(state.store.change_records(&zone.id, &changes)?)
    })
    .await?;
    Ok(xml_response(
        StatusCode::OK,
        format!("<ChangeResourceRecordSetsResponse xmlns=\"{NS}\">{}</ChangeResourceRecordSetsResponse>", change_info_xml(&s.store, &change)),
    ))
}

/// The condition keys of a change batch: normalized names (lowercase, no trailing dot), types
/// and actions.
fn change_keys(changes: &[Change]) -> BTreeMap<String, Vec<String>> {
    let mut names: Vec<String> = changes
        .iter()
        .map(|c| {
            c.set
                .name
                .to_route53_string()
                .trim_end_matches('.')
                .to_string()
        })
        .collect();
    let mut types: Vec<String> = changes.iter().map(|c| c.set.rtype.to_string()).collect();
    let mut actions: Vec<String> = changes.iter().map(|c| c.action.to_string()).collect();
    for v in [&mut names, &mut types, &mut actions] {
        v.sort();
        v.dedup();
    }
    BTreeMap::from([
        (
            "route53:changeresourcerecordsetsnormalizedrecordnames".to_string(),
            names,
        ),
        (
            "route53:changeresourcerecordsetsrecordtypes".to_string(),
            types,
        ),
        (
            "route53:changeresourcerecordsetsactions".to_string(),
            actions,
        ),
    ])
}

/// Converts a ChangeBatch into model changes, enforcing Route53's batch limits.
fn parse_changes(doc: &xml::Element) -> Result<Vec<Change>, R53Error> {
    let batch = doc
        .child("ChangeBatch")
        .ok_or_else(|| R53Error::invalid_input("ChangeBatch is required"))?;
    let list = batch
        .child("Changes")
        .ok_or_else(|| R53Error::invalid_input("Changes is required"))?;
    let mut changes = Vec::new();
    let mut records = 0usize;
    let mut chars = 0usize;
    let mut messages = Vec::new();
    for (i, c) in list.children_named("Change").enumerate() {
        let action = match c.text_of("Action") {
            Some("CREATE") => ChangeAction::Create,
            Some("DELETE") => ChangeAction::Delete,
            Some("UPSERT") => ChangeAction::Upsert,
            other => return Err(R53Error::invalid_input(format!("Invalid request: Expected exactly one of [CREATE, DELETE, UPSERT], but found {other:?} in Change {}", i + 1))),
        };
        let rrs = c
            .child("ResourceRecordSet")
            .ok_or_else(|| R53Error::invalid_input("ResourceRecordSet is required"))?;
        let values: Vec<&str> = rrs
            .child("ResourceRecords")
            .map(|r| {
                r.children_named("ResourceRecord")
                    .filter_map(|rr| rr.text_of("Value"))
                    .collect()
            })
            .unwrap_or_default();
        let weight = if action == ChangeAction::Upsert { 2 } else { 1 };
        records += values.len() * weight;
        chars += values.iter().map(|v| v.chars().count()).sum::<usize>() * weight;
        match record_set(rrs, &values) {
            Ok(set) => changes.push(Change { action, set }),
            Err(m) => messages.push(m),
        }
    }
    if changes.is_empty() && messages.is_empty() {
        return Err(R53Error::invalid_input(
            "Changes must contain at least one Change",
        ));
    }
    // Route53 refuses both as invalid change batches, the first in its message-list form.
    if records > MAX_RECORDS_PER_BATCH {
        return Err(R53Error::new(
            400,
            "InvalidChangeBatch",
            format!("[Number of records limit of {MAX_RECORDS_PER_BATCH} exceeded.]"),
        ));
    }
    if chars > MAX_VALUE_CHARS_PER_BATCH {
        return Err(R53Error::new(
            400,
            "InvalidChangeBatch",
            format!("RDATA character limit of {MAX_VALUE_CHARS_PER_BATCH} exceeded."),
        ));
    }
    if !messages.is_empty() {
        return Err(R53Error::new(
            400,
            "InvalidChangeBatch",
            format!("[{}]", messages.join(", ")),
        ));
    }
    Ok(changes)
}

fn record_set(rrs: &xml::Element, values: &[&str]) -> Result<RecordSet, String> {
    let name_text = rrs.text_of("Name").ok_or("Name is required")?;
    let name = DomainName::parse_route53(name_text).map_err(|e| e.to_string())?;
    let type_text = rrs.text_of("Type").ok_or("Type is required")?;
    let rtype: RecordType = type_text
        .parse()
        .map_err(|_| format!("Invalid type {type_text:?}"))?;
    let alias = match rrs.child("AliasTarget") {
        Some(a) => Some(AliasTarget {
            hosted_zone_id: a
                .text_of("HostedZoneId")
                .ok_or("AliasTarget.HostedZoneId is required")?
                .trim_start_matches("/hostedzone/")
                .to_string(),
            dns_name: DomainName::parse_route53(
                a.text_of("DNSName")
                    .ok_or("AliasTarget.DNSName is required")?,
            )
            .map_err(|e| e.to_string())?,
            evaluate_target_health: a.text_of("EvaluateTargetHealth") == Some("true"),
        }),
        None => None,
    };
    let ttl = match (rrs.text_of("TTL"), &alias) {
        (Some(t), None) => Ttl::new(t.parse::<u64>().map_err(|_| format!("Invalid TTL {t:?}"))?).map_err(|e| e.to_string())?,
        (None, Some(_)) => Ttl::new(0).map_err(|e| e.to_string())?,
        (None, None) => return Err(format!("Invalid request: Expected exactly one of [AliasTarget, all of [TTL, and ResourceRecords]], but found none in Change with [Name={name_text}, Type={type_text}]")),
        (Some(_), Some(_)) => return Err("an alias record set has no TTL".to_string()),
    };
    let records = values
        .iter()
        .map(|v| RecordData::parse(rtype, v, None).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let policy = if let Some(w) = rrs.text_of("Weight") {
        RoutingPolicy::Weighted {
            weight: w.parse().map_err(|_| format!("Invalid Weight {w:?}"))?,
        }
    } else if let Some(f) = rrs.text_of("Failover") {
        RoutingPolicy::Failover(match f {
            "PRIMARY" => Failover::Primary,
            "SECONDARY" => Failover::Secondary,
            _ => return Err(format!("Invalid Failover {f:?}")),
        })
    } else if rrs.text_of("MultiValueAnswer") == Some("true") {
        RoutingPolicy::MultiValue
    } else {
        RoutingPolicy::Simple
    };
    let set = RecordSet {
        name,
        rtype,
        ttl,
        records,
        set_identifier: rrs.text_of("SetIdentifier").map(str::to_string),
        policy,
        health_check_id: rrs.text_of("HealthCheckId").map(str::to_string),
        alias,
    };
    set.check().map_err(|e| e.to_string())?;
    Ok(set)
}

#[derive(Deserialize)]
struct ListRecordsQuery {
    name: Option<String>,
    #[serde(rename = "type")]
    rtype: Option<String>,
    identifier: Option<String>,
    maxitems: Option<String>,
}

async fn list_records(
    State(s): Shared,
    Path(id): Path<String>,
    Query(q): Query<ListRecordsQuery>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, R53Error> {
    allow(
        &s,
        &method,
        &uri,
        &headers,
        &body,
        "ListResourceRecordSets",
        &zone_arn(&id),
    )
    .await?;
    let zone = s.store.zone(&zone_id(&id)?)?;
    let max = max_items(q.maxitems.as_deref(), 300, 300)?;
    if q.rtype.is_some() && q.name.is_none() {
        return Err(R53Error::invalid_input(
            "The input is not valid: type requires name",
        ));
    }
    let start_name = match q.name.as_deref() {
        Some(n) => Some(
            DomainName::parse_route53(n)
                .map_err(|e| R53Error::new(400, "InvalidInput", e.to_string()))?,
        ),
        None => None,
    };
    // Route53's order: name in label-reversed order, then type mnemonic, then set identifier.
    let mut sets: Vec<&RecordSet> = zone.records.values().collect();
    sets.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then_with(|| a.rtype.as_str().cmp(b.rtype.as_str()))
            .then_with(|| a.set_identifier.cmp(&b.set_identifier))
    });
    let start_type = q.rtype.as_deref();
    let sets: Vec<&RecordSet> = sets
        .into_iter()
        .filter(|set| match &start_name {
            None => true,
            Some(n) => {
                set.name > *n
                    || (set.name == *n
                        && start_type.is_none_or(|t| {
                            set.rtype.as_str() > t
                                || (set.rtype.as_str() == t
                                    && q.identifier.as_deref().is_none_or(|i| {
                                        set.set_identifier.as_deref().unwrap_or("") >= i
                                    }))
                        }))
            }
        })
        .collect();
    let truncated = sets.len() > max;
    let items: String = sets
        .iter()
        .take(max)
        .map(|set| record_set_xml(set))
        .collect();
    let mut next = String::new();
    if truncated {
        let n = sets[max];
        next.push_str(&format!(
            "<NextRecordName>{}</NextRecordName><NextRecordType>{}</NextRecordType>",
            xml::escape(&n.name.to_route53_string()),
            n.rtype
        ));
        if let Some(i) = &n.set_identifier {
            next.push_str(&format!(
                "<NextRecordIdentifier>{}</NextRecordIdentifier>",
                xml::escape(i)
            ));
        }
    }
    Ok(xml_response(
        StatusCode::OK,
        format!("<ListResourceRecordSetsResponse xmlns=\"{NS}\"><ResourceRecordSets>{items}</ResourceRecordSets><IsTruncated>{truncated}</IsTruncated>{next}<MaxItems>{max}</MaxItems></ListResourceRecordSetsResponse>"),
    ))
}

fn record_set_xml(set: &RecordSet) -> String {
    let mut out = format!(
        "<ResourceRecordSet><Name>{}</Name><Type>{}</Type>",
        xml::escape(&set.name.to_route53_string()),
        set.rtype
    );
    if let Some(id) = &set.set_identifier {
        out.push_str(&format!(
            "<SetIdentifier>{}</SetIdentifier>",
            xml::escape(id)
        ));
    }
    match &set.policy {
        RoutingPolicy::Weighted { weight } => out.push_str(&format!("<Weight>{weight}</Weight>")),
        RoutingPolicy::Failover(Failover::Primary) => out.push_str("<Failover>PRIMARY</Failover>"),
        RoutingPolicy::Failover(Failover::Secondary) => {
            out.push_str("<Failover>SECONDARY</Failover>")
        }
        RoutingPolicy::MultiValue => out.push_str("<MultiValueAnswer>true</MultiValueAnswer>"),
        RoutingPolicy::Simple => {}
    }
    match &set.alias {
        Some(a) => out.push_str(&format!(
            "<AliasTarget><HostedZoneId>{}</HostedZoneId><DNSName>{}</DNSName><EvaluateTargetHealth>{}</EvaluateTargetHealth></AliasTarget>",
            xml::escape(&a.hosted_zone_id),
            xml::escape(&a.dns_name.to_route53_string()),
            a.evaluate_target_health
        )),
        None => {
            out.push_str(&format!("<TTL>{}</TTL><ResourceRecords>", set.ttl));
            for r in &set.records {
                out.push_str(&format!("<ResourceRecord><Value>{}</Value></ResourceRecord>", xml::escape(&r.to_string())));
            }
            out.push_str("</ResourceRecords>");
        }
    }
    if let Some(h) = &set.health_check_id {
        out.push_str(&format!(
            "<HealthCheckId>{}</HealthCheckId>",
            xml::escape(h)
        ));
    }
    out.push_str("</ResourceRecordSet>");
    out
}

/// The IAM Query API at `POST /`.
async fn iam_query(
    State(s): Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let principal = match authenticate(&s, &method, &uri, &headers, &body).await {
        Ok(p) => p,
        Err(e) => return e.into_iam().into_response(),
    };
    let form = crate::iam::parse_form(&body);
    let action = crate::iam::action_of(&form).unwrap_or("").to_string();
    let resource = match form.get("UserName") {
        Some(u) => format!("arn:aws:iam::{}:user/{u}", crate::iam::ACCOUNT_ID),
        None => "*".to_string(),
    };
    if let Err(e) = principal.authorize(&format!("iam:{action}"), &resource, BTreeMap::new()) {
        return e.into_iam().into_response();
    }
    let ids = s.identities.clone();
    match tokio::task::spawn_blocking(move || crate::iam::execute(&ids, &form)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => e.into_response(),
        Err(_) => crate::iam::IamApiError::new(500, "ServiceFailure", "request task failed")
            .into_response(),
    }
}

impl R53Error {
    /// The same error in IAM's error document.
    fn into_iam(self) -> crate::iam::IamApiError {
        crate::iam::IamApiError::new(self.status.as_u16(), self.code, self.message)
    }
}

async fn update_comment(
    State(s): Shared,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, R53Error> {
    allow(
        &s,
        &method,
        &uri,
        &headers,
        &body,
        "UpdateHostedZoneComment",
        &zone_arn(&id),
    )
    .await?;
    let id = zone_id(&id)?;
    let doc = xml::parse(&body)?;
    if doc.name != "UpdateHostedZoneCommentRequest" {
        return Err(R53Error::invalid_input(
            "expected an UpdateHostedZoneCommentRequest document",
        ));
    }
    let comment = doc
        .text_of("Comment")
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    if comment.as_ref().is_some_and(|c| c.len() > 256) {
        return Err(R53Error::invalid_input(
            "Comment is longer than 256 characters",
        ));
    }
    let state = Arc::clone(&s);
    let zone = blocking(move || Ok(state.store.update_comment(&id, comment)?)).await?;
    Ok(xml_response(
        StatusCode::OK,
        format!(
            "<UpdateHostedZoneCommentResponse xmlns=\"{NS}\">{}</UpdateHostedZoneCommentResponse>",
            zone_xml(&zone)
        ),
    ))
}

/// The store key of a taggable resource; only hosted zones are.
fn tag_resource(kind: &str, id: &str) -> Result<(HostedZoneId, String), R53Error> {
    if kind != "hostedzone" {
        return Err(R53Error::invalid_input(format!(
            "tags on {kind} resources are not supported"
        )));
    }
    let zid = zone_id(id)?;
    let key = format!("hostedzone/{zid}");
    Ok((zid, key))
}

fn tag_set_xml(id: &HostedZoneId, tags: &std::collections::BTreeMap<String, String>) -> String {
    let items: String = tags
        .iter()
        .map(|(k, v)| {
            format!(
                "<Tag><Key>{}</Key><Value>{}</Value></Tag>",
                xml::escape(k),
                xml::escape(v)
            )
        })
        .collect();
    format!("<ResourceTagSet><ResourceType>hostedzone</ResourceType><ResourceId>{id}</ResourceId><Tags>{items}</Tags></ResourceTagSet>")
}

async fn list_tags(
    State(s): Shared,
    Path((kind, id)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, R53Error> {
    allow(
        &s,
        &method,
        &uri,
        &headers,
        &body,
        "ListTagsForResource",
        &zone_arn(&id),
    )
    .await?;
    let (zid, key) = tag_resource(&kind, &id)?;
    s.store.zone(&zid)?;
    let tags = s.store.tags(&key)?;
    Ok(xml_response(
        StatusCode::OK,
        format!(
            "<ListTagsForResourceResponse xmlns=\"{NS}\">{}</ListTagsForResourceResponse>",
            tag_set_xml(&zid, &tags)
        ),
    ))
}

async fn change_tags(
    State(s): Shared,
    Path((kind, id)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, R53Error> {
    allow(
        &s,
        &method,
        &uri,
        &headers,
        &body,
        "ChangeTagsForResource",
        &zone_arn(&id),
    )
    .await?;
    let (zid, key) = tag_resource(&kind, &id)?;
    s.store.zone(&zid)?;
    let doc = xml::parse(&body)?;
    let mut add = std::collections::BTreeMap::new();
    for t in doc
        .child("AddTags")
        .map(|a| a.children_named("Tag").collect::<Vec<_>>())
        .unwrap_or_default()
    {
        let k = t
            .text_of("Key")
            .filter(|k| !k.is_empty() && k.len() <= 128)
            .ok_or_else(|| R53Error::invalid_input("a tag key must be 1 to 128 characters"))?;
        let v = t.text_of("Value").unwrap_or("");
        if v.len() > 256 {
            return Err(R53Error::invalid_input(
                "a tag value is at most 256 characters",
            ));
        }
        add.insert(k.to_string(), v.to_string());
    }
    let remove: Vec<String> = doc
        .child("RemoveTagKeys")
        .map(|r| {
            r.children_named("Key")
                .map(|k| k.text.trim().to_string())
                .collect()
        })
        .unwrap_or_default();
    let state = Arc::clone(&s);
    blocking(move || Ok(state.store.change_tags(&key, &add, &remove)?)).await?;
    Ok(xml_response(
        StatusCode::OK,
        format!("<ChangeTagsForResourceResponse xmlns=\"{NS}\"></ChangeTagsForResourceResponse>"),
    ))
}

async fn list_tags_for_resources(
    State(s): Shared,
    Path(kind): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, R53Error> {
    let principal = authenticate(&s, &method, &uri, &headers, &body).await?;
    let doc = xml::parse(&body)?;
    let ids: Vec<String> = doc
        .child("ResourceIds")
        .map(|r| {
            r.children_named("ResourceId")
                .map(|k| k.text.trim().to_string())
                .collect()
        })
        .unwrap_or_default();
    if ids.is_empty() || ids.len() > 10 {
        return Err(R53Error::invalid_input("ResourceIds must hold 1 to 10 IDs"));
    }
    let mut sets = String::new();
    for id in ids {
        principal.authorize(
            "route53:ListTagsForResources",
            &zone_arn(&id),
            std::collections::BTreeMap::new(),
        )?;
        let (zid, key) = tag_resource(&kind, &id)?;
        s.store.zone(&zid)?;
        sets.push_str(&tag_set_xml(&zid, &s.store.tags(&key)?));
    }
    Ok(xml_response(StatusCode::OK, format!("<ListTagsForResourcesResponse xmlns=\"{NS}\"><ResourceTagSets>{sets}</ResourceTagSets></ListTagsForResourcesResponse>")))
}

#[cfg(test)]
mod tests;
