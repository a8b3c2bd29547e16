//! Counting what the workflow asks of a service, so a test can assert that an unchanged apply
//! makes no mutating call: an HTTP forwarder between the AWS SDK and the service (edgeplane's
//! API or moto) that names every request it passes on, and a wrapper around the
//! [`DnsProvider`] trait that names every call for the embedded backend. Both use the API's
//! operation names (CreateHostedZone, ChangeResourceRecordSets, CreateUser, ...).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use clouddns::{AccessKey, ChangeStatus, DnsProvider, HostedZoneInfo, ProviderError};
use model::record::RecordSet;
use model::zone::Change;
use model::DomainName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The operations seen, in order.
#[derive(Clone, Default)]
pub(crate) struct Calls(Arc<Mutex<Vec<String>>>);

impl Calls {
    fn push(&self, op: String) {
        self.0.lock().expect("calls").push(op);
    }

    /// The operations seen since the last call, which only read.
    pub(crate) fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().expect("calls"))
    }

    /// The mutating operations seen since the last call (reads are dropped).
    pub(crate) fn take_mutating(&self) -> Vec<String> {
        self.take()
            .into_iter()
            .filter(|op| is_mutating(op))
            .collect()
    }
}

/// Whether an operation changes anything: every IAM and Route53 action that is not a Get or
/// a List (and any unrecognised request that is not a GET).
pub(crate) fn is_mutating(op: &str) -> bool {
    !(op.starts_with("Get") || op.starts_with("List") || op.starts_with("GET "))
}

/// The operation an HTTP request to the Route53/IAM endpoint asks for.
fn operation(method: &str, target: &str, body: &[u8]) -> String {
    let path = target.split('?').next().unwrap_or(target);
    if method == "POST" && path == "/" {
        // IAM's Query API: the action is a form field.
        let body = String::from_utf8_lossy(body);
        return body
            .split('&')
            .find_map(|kv| kv.strip_prefix("Action="))
            .map_or_else(|| "POST /".to_string(), str::to_string);
    }
    let parts: Vec<&str> = path
        .trim_start_matches("/2013-04-01/")
        .trim_end_matches('/')
        .split('/')
        .collect();
    let op = match (method, parts.as_slice()) {
        ("POST", ["hostedzone"]) => "CreateHostedZone",
        ("GET", ["hostedzone"]) => "ListHostedZones",
        ("GET", ["hostedzonesbyname"]) => "ListHostedZonesByName",
        ("GET", ["hostedzonecount"]) => "GetHostedZoneCount",
        ("GET", ["hostedzone", _]) => "GetHostedZone",
        ("POST", ["hostedzone", _]) => "UpdateHostedZoneComment",
        ("DELETE", ["hostedzone", _]) => "DeleteHostedZone",
        ("POST", ["hostedzone", _, "rrset"]) => "ChangeResourceRecordSets",
        ("GET", ["hostedzone", _, "rrset"]) => "ListResourceRecordSets",
        ("GET", ["change", _]) => "GetChange",
        ("GET", ["tags", ..]) => "ListTagsForResource",
        ("POST", ["tags", ..]) => "ChangeTagsForResource",
        _ => return format!("{method} {path}"),
    };
    op.to_string()
}

/// Starts a forwarder to `upstream` on a loopback port; returns its address and what it sees.
/// Requests pass through unchanged (their SigV4 signature stays valid); each is named before it
/// is forwarded, so a call is counted by the time its reply arrives.
pub(crate) async fn forwarder(upstream: SocketAddr) -> (SocketAddr, Calls) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind forwarder");
    let addr = listener.local_addr().expect("addr");
    let calls = Calls::default();
    let seen = calls.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut client_r, mut client_w) = client.into_split();
                let (mut server_r, mut server_w) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_r, &mut client_w).await;
                    let _ = client_w.shutdown().await;
                });
                let mut buf = Vec::new();
                loop {
                    let Some(request) = read_request(&mut client_r, &mut buf).await else {
                        let _ = server_w.shutdown().await;
                        return;
                    };
                    seen.push(request.0);
                    if server_w.write_all(&request.1).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, calls)
}

/// Reads one HTTP/1.1 request (head and Content-Length body) from `r`, keeping what follows
/// it in `buf`; returns its operation name and its bytes.
async fn read_request(
    r: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut Vec<u8>,
) -> Option<(String, Vec<u8>)> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 8192];
        let n = r.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_string(), first.next()?.to_string());
    let mut length = 0;
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let name = name.trim().to_ascii_lowercase();
        assert!(
            !(name == "transfer-encoding" && value.to_ascii_lowercase().contains("chunked")),
            "the counting forwarder reads Content-Length bodies only"
        );
        if name == "content-length" {
            length = value.trim().parse().ok()?;
        }
    }
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 8192];
        let n = r.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let bytes: Vec<u8> = buf.drain(..head_end + length).collect();
    let op = operation(&method, &target, &bytes[head_end..]);
    Some((op, bytes))
}

/// A provider that names every call it passes on to `inner`; `change_status` can be made to
/// answer PENDING a number of times first, as a slow service does.
pub(crate) struct Counting<P> {
    pub(crate) inner: P,
    pub(crate) calls: Calls,
    pending_polls: AtomicUsize,
}

impl<P> Counting<P> {
    pub(crate) fn new(inner: P) -> Self {
        Counting {
            inner,
            calls: Calls::default(),
            pending_polls: AtomicUsize::new(0),
        }
    }

    /// The next `n` change-status polls answer PENDING.
    pub(crate) fn pending_for(&self, n: usize) {
        self.pending_polls.store(n, Ordering::SeqCst);
    }

    fn note(&self, op: &str) {
        self.calls.push(op.to_string());
    }
}

impl<P: DnsProvider> DnsProvider for Counting<P> {
    async fn create_zone(
        &self,
        name: &DomainName,
        caller_reference: &str,
        comment: Option<&str>,
    ) -> Result<HostedZoneInfo, ProviderError> {
        self.note("CreateHostedZone");
        self.inner
            .create_zone(name, caller_reference, comment)
            .await
    }
    async fn find_zones(&self, name: &DomainName) -> Result<Vec<HostedZoneInfo>, ProviderError> {
        self.note("ListHostedZonesByName");
        self.inner.find_zones(name).await
    }
    async fn delete_zone(&self, id: &str) -> Result<(), ProviderError> {
        self.note("DeleteHostedZone");
        self.inner.delete_zone(id).await
    }
    async fn list_record_sets(&self, zone_id: &str) -> Result<Vec<RecordSet>, ProviderError> {
        self.note("ListResourceRecordSets");
        self.inner.list_record_sets(zone_id).await
    }
    async fn change_record_sets(
        &self,
        zone_id: &str,
        changes: &[Change],
    ) -> Result<Vec<String>, ProviderError> {
        self.note("ChangeResourceRecordSets");
        self.inner.change_record_sets(zone_id, changes).await
    }
    async fn change_status(&self, change_id: &str) -> Result<ChangeStatus, ProviderError> {
        self.note("GetChange");
        let status = self.inner.change_status(change_id).await?;
        let slow = self
            .pending_polls
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        Ok(if slow { ChangeStatus::Pending } else { status })
    }
    async fn user_exists(&self, user: &str) -> Result<bool, ProviderError> {
        self.note("GetUser");
        self.inner.user_exists(user).await
    }
    async fn ensure_user(&self, user: &str) -> Result<(), ProviderError> {
        self.note("CreateUser");
        self.inner.ensure_user(user).await
    }
    async fn get_user_policy(
        &self,
        user: &str,
        policy: &str,
    ) -> Result<Option<String>, ProviderError> {
        self.note("GetUserPolicy");
        self.inner.get_user_policy(user, policy).await
    }
    async fn put_user_policy(
        &self,
        user: &str,
        policy: &str,
        document: &str,
    ) -> Result<(), ProviderError> {
        self.note("PutUserPolicy");
        self.inner.put_user_policy(user, policy, document).await
    }
    async fn create_access_key(&self, user: &str) -> Result<AccessKey, ProviderError> {
        self.note("CreateAccessKey");
        self.inner.create_access_key(user).await
    }
    async fn list_access_keys(&self, user: &str) -> Result<Vec<String>, ProviderError> {
        self.note("ListAccessKeys");
        self.inner.list_access_keys(user).await
    }
    async fn delete_access_key(
        &self,
        user: &str,
        access_key_id: &str,
    ) -> Result<(), ProviderError> {
        self.note("DeleteAccessKey");
        self.inner.delete_access_key(user, access_key_id).await
    }
    async fn delete_user_policy(&self, user: &str, policy: &str) -> Result<(), ProviderError> {
        self.note("DeleteUserPolicy");
        self.inner.delete_user_policy(user, policy).await
    }
    async fn delete_user(&self, user: &str) -> Result<(), ProviderError> {
        self.note("DeleteUser");
        self.inner.delete_user(user).await
    }
}

#[test]
fn requests_are_named_by_operation() {
    for (method, target, body, want) in [
        ("POST", "/2013-04-01/hostedzone", "", "CreateHostedZone"),
        (
            "GET",
            "/2013-04-01/hostedzonesbyname?dnsname=example.com.&maxitems=100",
            "",
            "ListHostedZonesByName",
        ),
        (
            "POST",
            "/2013-04-01/hostedzone/Z1/rrset/",
            "<x/>",
            "ChangeResourceRecordSets",
        ),
        (
            "GET",
            "/2013-04-01/hostedzone/Z1/rrset?maxitems=300",
            "",
            "ListResourceRecordSets",
        ),
        ("GET", "/2013-04-01/change/C1", "", "GetChange"),
        (
            "DELETE",
            "/2013-04-01/hostedzone/Z1",
            "",
            "DeleteHostedZone",
        ),
        (
            "POST",
            "/",
            "Action=PutUserPolicy&Version=2010-05-08",
            "PutUserPolicy",
        ),
        ("POST", "/", "Version=2010-05-08&Action=GetUser", "GetUser"),
        ("PUT", "/2013-04-01/other", "", "PUT /2013-04-01/other"),
    ] {
        let op = operation(method, target, body.as_bytes());
        assert_eq!(op, want, "{method} {target}");
    }
    assert!(is_mutating("CreateUser") && is_mutating("PUT /x") && is_mutating("PutUserPolicy"));
    assert!(
        !is_mutating("GetUserPolicy") && !is_mutating("ListAccessKeys") && !is_mutating("GET /x")
    );
}

/// What the faulty forwarder does to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Answer 500 InternalFailure without passing the request on.
    Error,
    /// Pass the request on (the service acts on it), then close the connection instead of
    /// relaying the reply: the client cannot tell whether it happened.
    LoseReply,
}

/// A forwarder that applies `faults` to the first requests of the named operations, one fault
/// per planned entry, in order; everything else passes unchanged. Returns its address, what
/// it saw, and the faults not yet used.
pub(crate) async fn faulty_forwarder(
    upstream: SocketAddr,
    faults: Vec<(&'static str, Fault)>,
) -> (SocketAddr, Calls, Arc<Mutex<Vec<(&'static str, Fault)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind forwarder");
    let addr = listener.local_addr().expect("addr");
    let calls = Calls::default();
    let plan = Arc::new(Mutex::new(faults));
    let (seen, left) = (calls.clone(), plan.clone());
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (seen, left) = (seen.clone(), left.clone());
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut client_r, mut client_w) = client.into_split();
                let (mut server_r, mut server_w) = server.into_split();
                let (mut cbuf, mut sbuf) = (Vec::new(), Vec::new());
                // One request at a time: request, reply, next request.
                loop {
                    let Some((op, bytes)) = read_request(&mut client_r, &mut cbuf).await else {
                        return;
                    };
                    seen.push(op.clone());
                    let fault = {
                        let mut left = left.lock().expect("faults");
                        left.iter()
                            .position(|(o, _)| *o == op)
                            .map(|i| left.remove(i).1)
                    };
                    if fault == Some(Fault::Error) {
                        let body = "<ErrorResponse><Error><Type>Receiver</Type><Code>InternalFailure</Code><Message>injected</Message></Error><RequestId>x</RequestId></ErrorResponse>";
                        let reply = format!("HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/xml\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                        if client_w.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    if server_w.write_all(&bytes).await.is_err() {
                        return;
                    }
                    let Some(reply) = read_reply(&mut server_r, &mut sbuf).await else {
                        return;
                    };
                    if fault == Some(Fault::LoseReply) {
                        return;
                    }
                    if client_w.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, calls, plan)
}

/// Reads one HTTP/1.1 reply with a Content-Length body.
async fn read_reply(r: &mut tokio::net::tcp::OwnedReadHalf, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 8192];
        let n = r.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    assert!(
        !head.contains("transfer-encoding: chunked"),
        "replies with Content-Length only"
    );
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 8192];
        let n = r.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf.drain(..head_end + length).collect())
}
