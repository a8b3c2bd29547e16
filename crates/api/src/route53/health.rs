//! Route53 health checks: CreateHealthCheck (CallerReference idempotency), GetHealthCheck,
//! ListHealthChecks, DeleteHealthCheck and GetHealthCheckStatus, for HTTP, HTTPS and TCP
//! checks. The checks are probed by the DNS server's health checker (`dns::health`); this
//! module stores them and reports what the checker saw.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use model::health::{ConfigText, HealthCheck, HealthCheckConfig, HealthCheckError};
use serde::Deserialize;

use super::{allow, blocking, max_items, timestamp, xml, xml_response, R53Error, Shared, NS};

/// Longest CallerReference of a health check (Route53's limit).
const MAX_CALLER_REFERENCE: usize = 64;
/// Elements of HealthCheckConfig that only unsupported check types use.
const UNSUPPORTED_ELEMENTS: &[&str] = &[
    "SearchString",
    "HealthThreshold",
    "ChildHealthChecks",
    "Regions",
    "AlarmIdentifier",
    "InsufficientDataHealthStatus",
    "RoutingControlArn",
];

impl From<HealthCheckError> for R53Error {
    fn from(e: HealthCheckError) -> Self {
        R53Error::invalid_input(e.to_string())
    }
}

fn arn(id: &str) -> String {
    format!("arn:aws:route53:::healthcheck/{id}")
}

fn config_xml(c: &HealthCheckConfig) -> String {
    let mut out = String::from("<HealthCheckConfig>");
    if let Some(ip) = c.ip_address {
        out.push_str(&format!("<IPAddress>{ip}</IPAddress>"));
    }
    out.push_str(&format!(
        "<Port>{}</Port><Type>{}</Type>",
        c.port,
        c.check_type.as_str()
    ));
    if let Some(p) = &c.resource_path {
        out.push_str(&format!("<ResourcePath>{}</ResourcePath>", xml::escape(p)));
    }
    if let Some(f) = &c.fqdn {
        out.push_str(&format!(
            "<FullyQualifiedDomainName>{}</FullyQualifiedDomainName>",
            xml::escape(f)
        ));
    }
    out.push_str(&format!(
        "<RequestInterval>{}</RequestInterval><FailureThreshold>{}</FailureThreshold><MeasureLatency>false</MeasureLatency><Inverted>{}</Inverted><Disabled>{}</Disabled><EnableSNI>{}</EnableSNI></HealthCheckConfig>",
        c.request_interval, c.failure_threshold, c.inverted, c.disabled, c.enable_sni
    ));
    out
}

fn check_xml(h: &HealthCheck) -> String {
    format!(
        "<HealthCheck><Id>{}</Id><CallerReference>{}</CallerReference>{}<HealthCheckVersion>1</HealthCheckVersion></HealthCheck>",
        xml::escape(&h.id),
        xml::escape(&h.caller_reference),
        config_xml(&h.config)
    )
}

pub(super) async fn create(
    State(s): Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, R53Error> {
    allow(&s, &method, &uri, &headers, &body, "CreateHealthCheck", "*").await?;
    let doc = xml::parse(&body)?;
    if doc.name != "CreateHealthCheckRequest" {
        return Err(R53Error::invalid_input(
            "expected a CreateHealthCheckRequest document",
        ));
    }
    let caller = doc
        .text_of("CallerReference")
        .filter(|c| !c.is_empty() && c.len() <= MAX_CALLER_REFERENCE)
        .ok_or_else(|| {
            R53Error::invalid_input(format!(
                "CallerReference must be 1 to {MAX_CALLER_REFERENCE} characters"
            ))
        })?
        .to_string();
    let c = doc
        .child("HealthCheckConfig")
        .ok_or_else(|| R53Error::invalid_input("HealthCheckConfig is required"))?;
    if let Some(e) = UNSUPPORTED_ELEMENTS.iter().find(|e| c.child(e).is_some()) {
        return Err(R53Error::invalid_input(format!("{e} is not supported")));
    }
    let config = HealthCheckConfig::from_text(&ConfigText {
        check_type: c.text_of("Type"),
        ip_address: c.text_of("IPAddress"),
        port: c.text_of("Port"),
        resource_path: c.text_of("ResourcePath"),
        fqdn: c.text_of("FullyQualifiedDomainName"),
        request_interval: c.text_of("RequestInterval"),
        failure_threshold: c.text_of("FailureThreshold"),
        measure_latency: c.text_of("MeasureLatency"),
        inverted: c.text_of("Inverted"),
        disabled: c.text_of("Disabled"),
        enable_sni: c.text_of("EnableSNI"),
    })?;
    let state = Arc::clone(&s);
    let (check, _created) =
        blocking(move || Ok(state.store.create_health_check(&caller, &config)?)).await?;
    let mut resp = xml_response(
        StatusCode::CREATED,
        format!(
            "<CreateHealthCheckResponse xmlns=\"{NS}\">{}</CreateHealthCheckResponse>",
            check_xml(&check)
        ),
    );
    if let Ok(v) = format!("/2013-04-01/healthcheck/{}", check.id).parse() {
        resp.headers_mut().insert("location", v);
    }
    Ok(resp)
}

pub(super) async fn get(
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
        "GetHealthCheck",
        &arn(&id),
    )
    .await?;
    let state = Arc::clone(&s);
    let check = blocking(move || Ok(state.store.health_check(&id)?)).await?;
    Ok(xml_response(
        StatusCode::OK,
        format!(
            "<GetHealthCheckResponse xmlns=\"{NS}\">{}</GetHealthCheckResponse>",
            check_xml(&check)
        ),
    ))
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    marker: Option<String>,
    maxitems: Option<String>,
}

pub(super) async fn list(
    State(s): Shared,
    Query(q): Query<ListQuery>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, R53Error> {
    allow(&s, &method, &uri, &headers, &body, "ListHealthChecks", "*").await?;
    let max = max_items(q.maxitems.as_deref(), 100, 1000)?;
    let state = Arc::clone(&s);
    let checks = blocking(move || Ok(state.store.health_checks()?)).await?;
    let from: Vec<&HealthCheck> = checks
        .iter()
        .filter(|c| q.marker.as_deref().is_none_or(|m| c.id.as_str() >= m))
        .collect();
    let truncated = from.len() > max;
    let items: String = from.iter().take(max).map(|c| check_xml(c)).collect();
    let next = match from.get(max) {
        Some(c) if truncated => format!("<NextMarker>{}</NextMarker>", xml::escape(&c.id)),
        _ => String::new(),
    };
    Ok(xml_response(
        StatusCode::OK,
        format!(
            "<ListHealthChecksResponse xmlns=\"{NS}\"><HealthChecks>{items}</HealthChecks><Marker>{}</Marker><IsTruncated>{truncated}</IsTruncated>{next}<MaxItems>{max}</MaxItems></ListHealthChecksResponse>",
            xml::escape(q.marker.as_deref().unwrap_or(""))
        ),
    ))
}

pub(super) async fn delete(
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
        "DeleteHealthCheck",
        &arn(&id),
    )
    .await?;
    let state = Arc::clone(&s);
    blocking(move || Ok(state.store.delete_health_check(&id)?)).await?;
    Ok(xml_response(
        StatusCode::OK,
        format!("<DeleteHealthCheckResponse xmlns=\"{NS}\"></DeleteHealthCheckResponse>"),
    ))
}

pub(super) async fn status(
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
        "GetHealthCheckStatus",
        &arn(&id),
    )
    .await?;
    let state = Arc::clone(&s);
    let lookup = id.clone();
    blocking(move || Ok(state.store.health_check(&lookup)?)).await?;
    // One observation: edgeplane's own checker, where it runs (no checker regions).
    let observations = match s.store.health_status(&id).and_then(|st| st.last) {
        Some(o) => format!(
            "<HealthCheckObservation><StatusReport><Status>{}</Status><CheckedTime>{}</CheckedTime></StatusReport></HealthCheckObservation>",
            xml::escape(&o.report),
            timestamp(o.checked_at)
        ),
        None => String::new(),
    };
    Ok(xml_response(
        StatusCode::OK,
        format!("<GetHealthCheckStatusResponse xmlns=\"{NS}\"><HealthCheckObservations>{observations}</HealthCheckObservations></GetHealthCheckStatusResponse>"),
    ))
}
