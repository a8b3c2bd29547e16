//! The admin API: secrets as Kubernetes-shaped JSON over HTTP, every request authenticated with
//! SigV4 (service `edgeplane`) against the identities, and authorized by their access rules.
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | /api/v1/whoami | the caller's identity |
//! | GET | /api/v1/secrets | list secrets in every namespace the caller may list |
//! | GET, POST | /api/v1/namespaces/{ns}/secrets | list; create |
//! | GET, PUT, DELETE | /api/v1/namespaces/{ns}/secrets/{name} | read (`?version=N`); replace; delete |
//! | POST | /api/v1/master-key/rotate | rotate the master key (needs every verb on every secret) |

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use model::secret::{SecretRef, SecretSpec, SecretType, SecretValue, Verb};
use serde::Deserialize;
use store::identities::Identities;
use store::secrets::{Caller, SecretInfo, SecretStoreError, Secrets};

use crate::sigv4;

/// Largest request body (a 1 MiB secret in base64 with room to spare).
pub const MAX_BODY: usize = 2 * 1024 * 1024;

/// What the admin API works with.
#[derive(Clone)]
pub struct AdminState {
    pub secrets: Secrets,
    pub identities: Identities,
}

/// The admin API's routes, to be merged into the admin listener's router.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/secrets", get(list_all))
        .route("/api/v1/namespaces/{ns}/secrets", get(list_ns).post(create))
        .route(
            "/api/v1/namespaces/{ns}/secrets/{name}",
            get(read).put(replace).delete(remove),
        )
        .route("/api/v1/master-key/rotate", post(rotate))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(Arc::new(state))
}

/// An error as the admin API returns it: an AWS-style code and a message, never a value.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<sigv4::AuthError> for ApiError {
    fn from(e: sigv4::AuthError) -> Self {
        ApiError::new(e.status(), e.code(), e.to_string())
    }
}

impl From<SecretStoreError> for ApiError {
    fn from(e: SecretStoreError) -> Self {
        let (status, code) = match &e {
            SecretStoreError::NotFound(_) | SecretStoreError::VersionNotFound(..) => {
                (404, "NotFound")
            }
            SecretStoreError::AlreadyExists(_) => (409, "AlreadyExists"),
            SecretStoreError::Conflict { .. } => (409, "Conflict"),
            SecretStoreError::Denied { .. } => (403, "AccessDenied"),
            SecretStoreError::Invalid(_) | SecretStoreError::BadIdentity(_) => {
                (400, "InvalidInput")
            }
            SecretStoreError::Integrity { .. } => (500, "IntegrityError"),
            SecretStoreError::RotationNeedsFile => (400, "InvalidInput"),
            _ => (500, "InternalError"),
        };
        if status == 500 {
            tracing::error!(error = %e, "admin API request failed");
        }
        ApiError::new(status, code, e.to_string())
    }
}

impl From<model::secret::SecretError> for ApiError {
    fn from(e: model::secret::SecretError) -> Self {
        ApiError::new(400, "InvalidInput", e.to_string())
    }
}

type Shared = State<Arc<AdminState>>;

/// Verifies the request's signature and returns the identity it acts as.
async fn authenticate(
    state: &AdminState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Caller, ApiError> {
    match crate::auth::authenticate(&state.identities, None, method, uri, headers, body).await {
        Ok(signer) => Ok(signer.identity.caller()),
        Err(crate::auth::AuthFailure::Refused(e)) => Err(e.into()),
        Err(crate::auth::AuthFailure::Throttled) => {
            Err(ApiError::new(429, "Throttling", "Rate exceeded"))
        }
        Err(crate::auth::AuthFailure::Internal) => {
            Err(ApiError::new(500, "InternalError", "authentication failed"))
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SecretStoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::new(500, "InternalError", "request task failed"))?
        .map_err(ApiError::from)
}

async fn whoami(
    State(s): Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authenticate(&s, &method, &uri, &headers, &body).await?;
    let rules: Vec<String> = caller.rules.iter().map(ToString::to_string).collect();
    Ok(
        axum::Json(serde_json::json!({"identity": caller.identity, "rules": rules}))
            .into_response(),
    )
}

async fn list_all(
    State(s): Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authenticate(&s, &method, &uri, &headers, &body).await?;
    let secrets = s.secrets.clone();
    let list = blocking(move || secrets.list(&caller, None)).await?;
    Ok(axum::Json(secret_list(&list)).into_response())
}

async fn list_ns(
    State(s): Shared,
    Path(ns): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authenticate(&s, &method, &uri, &headers, &body).await?;
    let secrets = s.secrets.clone();
    let list = blocking(move || secrets.list(&caller, Some(&ns))).await?;
    Ok(axum::Json(secret_list(&list)).into_response())
}

#[derive(Deserialize)]
struct VersionQuery {
    version: Option<u64>,
}

async fn read(
    State(s): Shared,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<VersionQuery>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authenticate(&s, &method, &uri, &headers, &body).await?;
    let r = SecretRef::new(&ns, &name)?;
    let secrets = s.secrets.clone();
    let (info, spec) = blocking(move || secrets.get(&caller, &r, q.version)).await?;
    Ok(axum::Json(secret_document(&info, &spec)).into_response())
}

async fn create(
    State(s): Shared,
    Path(ns): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authenticate(&s, &method, &uri, &headers, &body).await?;
    let (name, spec, _) = parse_secret(&body, &ns, None)?;
    let r = SecretRef::new(&ns, &name)?;
    let secrets = s.secrets.clone();
    let info = blocking(move || {
        let info = secrets.create(&caller, &r, &spec)?;
        Ok((info, spec))
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(secret_document(&info.0, &info.1)),
    )
        .into_response())
}

async fn replace(
    State(s): Shared,
    Path((ns, name)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authenticate(&s, &method, &uri, &headers, &body).await?;
    let (_, spec, expected) = parse_secret(&body, &ns, Some(&name))?;
    let r = SecretRef::new(&ns, &name)?;
    let secrets = s.secrets.clone();
    let (info, spec) = blocking(move || {
        let info = secrets.update(&caller, &r, &spec, expected)?;
        Ok((info, spec))
    })
    .await?;
    Ok(axum::Json(secret_document(&info, &spec)).into_response())
}

async fn remove(
    State(s): Shared,
    Path((ns, name)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authenticate(&s, &method, &uri, &headers, &body).await?;
    let r = SecretRef::new(&ns, &name)?;
    let secrets = s.secrets.clone();
    blocking(move || secrets.delete(&caller, &r)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn rotate(
    State(s): Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authenticate(&s, &method, &uri, &headers, &body).await?;
    let everything = Verb::ALL
        .iter()
        .all(|v| caller.rules.iter().any(|r| r.allows(*v, "*", Some("*"))));
    if !everything {
        return Err(ApiError::new(
            403,
            "AccessDenied",
            format!("{} may not rotate the master key", caller.identity),
        ));
    }
    let secrets = s.secrets.clone();
    let report = blocking(move || secrets.rotate_master_key()).await?;
    Ok(axum::Json(serde_json::json!({
        "oldKey": report.old_key,
        "newKey": report.new_key,
        "rewrapped": report.rewrapped,
        "skipped": report
            .skipped
            .iter()
            .map(|v| serde_json::json!({"secret": v.secret, "version": v.version}))
            .collect::<Vec<_>>(),
        "seconds": report.seconds,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretBody {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: SecretMetadata,
    #[serde(default, rename = "type")]
    secret_type: Option<String>,
    #[serde(default)]
    data: BTreeMap<String, String>,
    #[serde(default)]
    string_data: BTreeMap<String, String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretMetadata {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Parses a Kubernetes Secret document; `data` is base64, `stringData` plain and wins.
fn parse_secret(
    body: &[u8],
    ns: &str,
    path_name: Option<&str>,
) -> Result<(String, SecretSpec, Option<u64>), ApiError> {
    let doc: SecretBody = serde_json::from_slice(body).map_err(malformed)?;
    if doc.api_version.as_deref().is_some_and(|v| v != "v1")
        || doc.kind.as_deref().is_some_and(|k| k != "Secret")
    {
        return Err(ApiError::new(
            400,
            "InvalidInput",
            "expected apiVersion v1, kind Secret",
        ));
    }
    if doc.metadata.namespace.as_deref().is_some_and(|n| n != ns) {
        return Err(ApiError::new(
            400,
            "InvalidInput",
            "metadata.namespace does not match the path",
        ));
    }
    let name = match (doc.metadata.name, path_name) {
        (Some(n), Some(p)) if n != p => {
            return Err(ApiError::new(
                400,
                "InvalidInput",
                "metadata.name does not match the path",
            ))
        }
        (Some(n), _) => n,
        (None, Some(p)) => p.to_string(),
        (None, None) => {
            return Err(ApiError::new(
                400,
                "InvalidInput",
                "metadata.name is required",
            ))
        }
    };
    let mut data = BTreeMap::new();
    for (k, v) in doc.data {
        let bytes = model::base64::decode(v.as_bytes())
            .ok_or_else(|| ApiError::new(400, "InvalidInput", format!("data.{k} is not base64")))?;
        data.insert(k, SecretValue::new(bytes));
    }
    for (k, v) in doc.string_data {
        data.insert(k, SecretValue::new(v.into_bytes()));
    }
    let expected = match doc.metadata.resource_version {
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            ApiError::new(
                400,
                "InvalidInput",
                "metadata.resourceVersion must be a number",
            )
        })?),
        None => None,
    };
    let spec = SecretSpec {
        secret_type: SecretType::parse(doc.secret_type.as_deref().unwrap_or("Opaque"))?,
        data,
        labels: doc.metadata.labels,
        annotations: doc.metadata.annotations,
    };
    Ok((name, spec, expected))
}

/// The error for a document that is not a Secret. serde_json's own message can quote the
/// offending value (a secret, perhaps), so only the kind of fault and its place are told.
fn malformed(e: serde_json::Error) -> ApiError {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "unreadable input",
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Data => "a field of the wrong type or shape",
        serde_json::error::Category::Eof => "unexpected end of input",
    };
    ApiError::new(
        400,
        "InvalidInput",
        format!(
            "malformed Secret document: {kind} at line {} column {}",
            e.line(),
            e.column()
        ),
    )
}

/// A secret as a Kubernetes Secret document: metadata, type, and data in base64.
pub fn secret_document(info: &SecretInfo, spec: &SecretSpec) -> serde_json::Value {
    let data: BTreeMap<&str, String> = spec
        .data
        .iter()
        .map(|(k, v)| (k.as_str(), model::base64::encode(v.expose())))
        .collect();
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "namespace": info.reference.namespace(),
            "name": info.reference.name(),
            "resourceVersion": info.version.to_string(),
            "labels": spec.labels,
            "annotations": spec.annotations,
        },
        "type": info.secret_type.as_str(),
        "data": data,
    })
}

fn secret_list(list: &[SecretInfo]) -> serde_json::Value {
    let items: Vec<serde_json::Value> = list
        .iter()
        .map(|i| {
            serde_json::json!({
                "metadata": {
                    "namespace": i.reference.namespace(),
                    "name": i.reference.name(),
                    "resourceVersion": i.version.to_string(),
                    "labels": i.labels,
                },
                "type": i.secret_type.as_str(),
                "keys": i.keys,
                "versions": i.versions,
            })
        })
        .collect();
    serde_json::json!({"apiVersion": "v1", "kind": "SecretList", "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The admin API on a loopback port, with one identity allowed everything.
    struct Server {
        _dir: tempfile::TempDir,
        addr: std::net::SocketAddr,
        access_key_id: String,
        secret: String,
    }

    async fn serve() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store::Store::open(&dir.path().join("data")).expect("store");
        let secrets = Secrets::open(
            &store,
            store::secrets::MasterKeySource::File(dir.path().join("master.key")),
            &dir.path().join("data/audit.log"),
        )
        .expect("secrets");
        let identities = Identities::new(secrets.clone()).expect("identities");
        let (_, creds) = identities
            .create("tester", &["*:*/*".to_string()])
            .expect("identity");
        let app = router(AdminState {
            secrets,
            identities,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Server {
            _dir: dir,
            addr,
            access_key_id: creds.access_key_id,
            secret: creds.secret_access_key.as_str().to_owned(),
        }
    }

    /// Sends a signed POST and returns the whole response, head and body.
    async fn post(server: &Server, path: &str, body: &[u8]) -> String {
        let host = server.addr.to_string();
        let signed = sigv4::sign(
            &sigv4::SignedRequest {
                method: "POST",
                path,
                query: "",
                headers: vec![("host", &host)],
                body,
            },
            &server.access_key_id,
            server.secret.as_bytes(),
            "us-east-1",
            "edgeplane",
            crate::now(),
        );
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-length: {}\r\nconnection: close\r\n",
            body.len()
        );
        for (name, value) in signed {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let mut stream = tokio::net::TcpStream::connect(server.addr)
            .await
            .expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        stream.write_all(body).await.expect("write");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.expect("read");
        String::from_utf8_lossy(&response).into_owned()
    }

    #[tokio::test]
    async fn a_malformed_document_is_refused_without_echoing_its_values() {
        let server = serve().await;
        let path = "/api/v1/namespaces/default/secrets";
        let canary = "ECHO-CANARY-5f1e";
        for body in [
            // serde_json quotes a string of the wrong type in its message.
            format!(r#"{{"metadata":{{"name":"db"}},"stringData":"{canary}"}}"#),
            format!(
                r#"{{"metadata":{{"name":"db"}},"type":"Opaque","data":{{"k":["{canary}"]}}}}"#
            ),
            format!(r#"{{"metadata":{{"name":"db"}},"stringData":{{"password":"{canary}\q"}}}}"#),
            format!(r#"{{"metadata":{{"name":"db"}},"stringData":{{"password":"{canary}"#),
        ] {
            let response = post(&server, path, body.as_bytes()).await;
            assert!(response.starts_with("HTTP/1.1 400"), "{response}");
            assert!(response.contains("InvalidInput"), "{response}");
            assert!(response.contains("malformed Secret document"), "{response}");
            assert!(response.contains("at line 1 column"), "{response}");
            assert!(!response.contains("CANARY"), "{response}");
        }
        // The same listener accepts a well-formed document.
        let good =
            format!(r#"{{"metadata":{{"name":"db"}},"stringData":{{"password":"{canary}"}}}}"#);
        let response = post(&server, path, good.as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    }
}
