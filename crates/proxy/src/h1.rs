//! Edgeplane's own HTTP/1.1 client for plain-HTTP servers, used for requests that ask for no
//! upgrade and whose body is already in memory and small (most proxied traffic): the body is
//! written with the head, in one write. The request's own task writes the
//! request and reads the response head: there is no connection task, no channel between the
//! two and no checkout future, which is where a general-purpose client spends its time.
//!
//! Connections are kept per server address, the last used first, at most
//! `maxIdleConnsPerHost` of them, and closed after `idleConnTimeout`. Responses are framed as
//! RFC 9112 section 6.3 says; a connection is reused only when its response was framed beyond
//! doubt (a length or the chunked coding, HTTP/1.1, no `Connection: close`) and read to its
//! end with nothing after it. A request that finds its reused connection closed by the
//! server before any answer is sent again on a new one when its method is idempotent; any
//! other method gets a connection checked to be open.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;
use http::{Method, Response, StatusCode, Version};
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::worker::PerWorker;

/// The error of a response body read from a server.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Largest response head (status line and headers), and largest trailer section.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;
/// Largest request body read whole with its head (by edgeplane's own HTTP/1.1 server side)
/// and sent with it (by this client). Larger bodies are streamed, through hyper.
pub(crate) const MAX_WHOLE_BODY: usize = 64 * 1024;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;
/// Longest chunk-size line (size, extensions).
const MAX_CHUNK_LINE: usize = 4096;
/// Body pieces up to this size are copied out of the read buffer, which then stays the
/// connection's own and is reused with no new allocation; larger ones are split off it.
const COPY_MAX: usize = 4096;

/// The first `n` bytes of `buf`, taken out of it.
fn take(buf: &mut BytesMut, n: usize) -> Bytes {
    if n <= COPY_MAX {
        let data = Bytes::copy_from_slice(&buf[..n]);
        buf.advance(n);
        data
    } else {
        buf.split_to(n).freeze()
    }
}

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    #[error("connecting: {0}")]
    Connect(io::Error),
    #[error("{0}")]
    Io(io::Error),
    #[error("server closed the connection before answering")]
    Closed,
    #[error("invalid response: {0}")]
    Protocol(&'static str),
    #[error("no response head in time")]
    TimedOut,
}

impl SendError {
    /// The server could not be reached at all (counts against its health).
    pub(crate) fn is_connect(&self) -> bool {
        matches!(self, SendError::Connect(_))
    }
}

/// Idle connections of one transport, by server address, kept per worker: a connection is
/// taken again by the worker whose runtime watches its socket.
#[derive(Debug)]
pub(crate) struct Pool {
    idle: PerWorker<Mutex<IdleMap>>,
    max_idle: usize,
    idle_timeout: Duration,
    dial_timeout: Duration,
    sweeping: AtomicBool,
}

type IdleMap = HashMap<Authority, VecDeque<Idle>, crate::fnv::Build>;

#[derive(Debug)]
struct Idle {
    conn: Conn,
    since: Instant,
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet consumed.
    buf: BytesMut,
}

impl Conn {
    /// Reads more bytes; 0 at the end of the stream.
    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.buf.reserve(READ_CHUNK);
        // A read future holds nothing but the two borrows: making one per poll loses nothing.
        pin!(self.stream.read_buf(&mut self.buf)).poll(cx)
    }

    /// Still open and silent, as an idle connection must be.
    fn is_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

impl Pool {
    pub(crate) fn new(max_idle: usize, idle_timeout: Duration, dial_timeout: Duration) -> Pool {
        Pool {
            idle: PerWorker::new(|| Mutex::new(HashMap::default())),
            max_idle,
            idle_timeout,
            dial_timeout,
            sweeping: AtomicBool::new(false),
        }
    }

    /// Sends a request that has no body (its head made by [`encode`]) and reads the response
    /// head, waiting at most `head_timeout` for it once the request is written
    /// (`responseHeaderTimeout`); the body streams from the returned response.
    pub(crate) async fn send(
        self: &Arc<Self>,
        server: &Authority,
        method: &Method,
        head: &[u8],
        head_timeout: Option<Duration>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let idempotent = matches!(
            *method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        );
        let mut retried = false;
        loop {
            let (mut conn, reused) = match self.take(server, !idempotent) {
                Some(c) if !retried => (c, true),
                _ => (self.connect(server).await?, false),
            };
            match exchange(&mut conn, head, head_timeout).await {
                Ok(answer) => return Ok(self.respond(server, conn, answer, method)),
                Err(Failure { error, answered }) => {
                    if reused && idempotent && !answered && !retried {
                        tracing::debug!(%server, error = %error, "kept connection was closed; sending again on a new one");
                        retried = true;
                        continue;
                    }
                    return Err(error);
                }
            }
        }
    }

    /// The most recently used open connection to `server`, if one is kept. With `check`, the
    /// connection is also checked to be open (for methods that are not sent twice).
    fn take(&self, server: &Authority, check: bool) -> Option<Conn> {
        let mut idle = self.idle.mine().lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(server)?;
        let now = Instant::now();
        while let Some(i) = list.pop_back() {
            if now.duration_since(i.since) >= self.idle_timeout {
                // Older ones are older still.
                list.clear();
                break;
            }
            if !check || i.conn.is_open() {
                return Some(i.conn);
            }
        }
        None
    }

    /// Keeps a connection whose exchange ended cleanly.
    fn put(self: &Arc<Self>, server: Authority, conn: Conn) {
        if self.max_idle == 0 || !conn.buf.is_empty() {
            return;
        }
        let now = Instant::now();
        {
            let mut idle = self.idle.mine().lock().unwrap_or_else(|p| p.into_inner());
            let list = idle.entry(server).or_default();
            while list.len() >= self.max_idle {
                list.pop_front();
            }
            list.push_back(Idle { conn, since: now });
        }
        if !self.sweeping.swap(true, Ordering::AcqRel) {
            self.sweep_later();
        }
    }

    /// Closes idle connections past their time, for as long as the pool lives.
    fn sweep_later(self: &Arc<Self>) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.sweeping.store(false, Ordering::Release);
            return;
        };
        let every =
            (self.idle_timeout / 2).clamp(Duration::from_millis(50), Duration::from_secs(5));
        let pool: Weak<Pool> = Arc::downgrade(self);
        handle.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(pool) = pool.upgrade() else { return };
                pool.sweep();
            }
        });
    }

    fn sweep(&self) {
        let now = Instant::now();
        for idle in self.idle.iter() {
            let mut idle = idle.lock().unwrap_or_else(|p| p.into_inner());
            idle.retain(|_, list| {
                while list
                    .front()
                    .is_some_and(|i| now.duration_since(i.since) >= self.idle_timeout)
                {
                    list.pop_front();
                }
                !list.is_empty()
            });
        }
    }

    /// How many idle connections each worker keeps (all servers), by worker slot.
    #[cfg(test)]
    pub(crate) fn idle_by_worker(&self) -> Vec<usize> {
        self.idle
            .iter()
            .map(|idle| {
                let idle = idle.lock().unwrap_or_else(|p| p.into_inner());
                idle.values().map(VecDeque::len).sum::<usize>()
            })
            .collect()
    }

    /// How many idle connections are kept (all servers).
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.idle_by_worker().iter().sum()
    }

    async fn connect(&self, server: &Authority) -> Result<Conn, SendError> {
        let addr = format!("{}:{}", server.host(), server.port_u16().unwrap_or(80));
        let dial = TcpStream::connect(addr);
        let stream = if self.dial_timeout.is_zero() {
            dial.await
        } else {
            tokio::time::timeout(self.dial_timeout, dial)
                .await
                .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")))
        }
        .map_err(SendError::Connect)?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
        })
    }

    fn respond(
        self: &Arc<Self>,
        server: &Authority,
        mut conn: Conn,
        answer: Head,
        method: &Method,
    ) -> Response<UpstreamBody> {
        let Head {
            status,
            version,
            mut headers,
            framing,
            keep_alive,
        } = answer;
        let framing = if *method == Method::HEAD
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            Framing::Length(0)
        } else {
            framing
        };
        if matches!(framing, Framing::Chunked) {
            // The chunked coding frames the body; a Content-Length beside it is not forwarded.
            headers.remove(header::CONTENT_LENGTH);
        }
        let reuse = keep_alive && !matches!(framing, Framing::Close);
        let state = match framing {
            // Whole already: the connection goes back before the body is even sent on.
            Framing::Length(n) if (conn.buf.len() as u64) >= n => {
                let data = take(&mut conn.buf, n as usize);
                if reuse {
                    self.put(server.clone(), conn);
                }
                return build(status, version, headers, UpstreamBody::whole(data));
            }
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunk::Size),
            Framing::Close => State::Close,
        };
        let body = UpstreamBody {
            conn: Some(conn),
            state,
            home: reuse.then(|| (self.clone(), server.clone())),
            whole: None,
        };
        build(status, version, headers, body)
    }
}

fn build(
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: UpstreamBody,
) -> Response<UpstreamBody> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.version_mut() = version;
    *resp.headers_mut() = headers;
    resp
}

/// The request as sent: request line, headers, then the `extra` fields (not in the map), and
/// `body`, framed by a Content-Length of edgeplane's own (the client's Content-Length and
/// Transfer-Encoding are not forwarded). Header values were checked when the request was
/// read (no CR, LF or NUL), so they are written as they are.
pub(crate) fn encode(
    req: &http::request::Parts,
    server: &Authority,
    body: &[u8],
    extra: &[Option<(&HeaderName, HeaderValue)>],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + 48 * req.headers.len() + body.len());
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !req.headers.contains_key(header::HOST) {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(server.as_str().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // A method that normally carries a body says plainly when this one has none, and so
    // does a request whose client said so.
    let payload_method = matches!(req.method, Method::POST | Method::PUT | Method::PATCH);
    if !body.is_empty() || payload_method || req.headers.contains_key(header::CONTENT_LENGTH) {
        out.extend_from_slice(b"content-length: ");
        decimal(&mut out, body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in &req.headers {
        if name == header::TRANSFER_ENCODING || name == header::CONTENT_LENGTH {
            continue;
        }
        field(&mut out, name, value);
    }
    for (name, value) in extra.iter().flatten() {
        field(&mut out, name, value);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// Appends `n` in decimal.
pub(crate) fn decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends one `name: value` line. Values were checked where they were read or built (no
/// CR, LF or NUL), so they are written as they are.
pub(crate) fn field(out: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Length(u64),
    Chunked,
    /// At the end of the connection.
    Close,
}

#[derive(Debug)]
struct Head {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    framing: Framing,
    /// The connection may carry another request after this response.
    keep_alive: bool,
}

struct Failure {
    error: SendError,
    /// Some bytes of an answer came back (so the request was seen).
    answered: bool,
}

impl From<SendError> for Failure {
    fn from(error: SendError) -> Failure {
        Failure {
            error,
            answered: true,
        }
    }
}

/// Writes the request and reads up to the end of the final response head (interim 1xx
/// responses are read and dropped).
async fn exchange(
    conn: &mut Conn,
    request: &[u8],
    head_timeout: Option<Duration>,
) -> Result<Head, Failure> {
    if let Err(e) = conn.stream.write_all(request).await {
        return Err(Failure {
            error: SendError::Io(e),
            answered: false,
        });
    }
    let deadline = head_timeout.map(|t| tokio::time::Instant::now() + t);
    let mut answered = false;
    loop {
        if !conn.buf.is_empty() {
            answered = true;
            if let Some((len, head)) = parse_head(&conn.buf)? {
                conn.buf.advance(len);
                match head {
                    Some(head) => return Ok(head),
                    None => continue,
                }
            }
            if conn.buf.len() > MAX_HEAD {
                return Err(SendError::Protocol("response head too large").into());
            }
        }
        let read = match deadline {
            None => conn.fill().await,
            Some(at) => tokio::time::timeout_at(at, conn.fill())
                .await
                .map_err(|_| Failure::from(SendError::TimedOut))?,
        };
        match read {
            Ok(0) if answered => return Err(SendError::Protocol("response head cut short").into()),
            Ok(0) => {
                return Err(Failure {
                    error: SendError::Closed,
                    answered: false,
                })
            }
            Ok(_) => {}
            Err(e) => {
                return Err(Failure {
                    error: SendError::Io(e),
                    answered,
                })
            }
        }
    }
}

/// A complete response head at the start of `buf`: its length, and the head (`None` for an
/// interim 1xx response). `Ok(None)` while incomplete.
#[allow(clippy::type_complexity)]
fn parse_head(buf: &[u8]) -> Result<Option<(usize, Option<Head>)>, SendError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(SendError::Protocol("too many headers"))
        }
        Err(_) => return Err(SendError::Protocol("malformed head")),
    };
    let code = parsed.code.unwrap_or(0);
    let status =
        StatusCode::from_u16(code).map_err(|_| SendError::Protocol("invalid status code"))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        // Upgrades are never asked for on this path.
        return Err(SendError::Protocol("unrequested protocol switch"));
    }
    if status.is_informational() {
        return Ok(Some((len, None)));
    }
    let version = if parsed.version == Some(1) {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    // One copy of the head, which every value is a slice of (not one allocation a value).
    let copy = Bytes::copy_from_slice(&buf[..len]);
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| SendError::Protocol("invalid header name"))?;
        // httparse's values are slices of `buf`: the same range of the copy.
        let at = (h.value.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
        let Some(end) = at.checked_add(h.value.len()).filter(|e| *e <= copy.len()) else {
            return Err(SendError::Protocol("invalid header value"));
        };
        let value = HeaderValue::from_maybe_shared(copy.slice(at..end))
            .map_err(|_| SendError::Protocol("invalid header value"))?;
        headers.append(name, value);
    }
    let (framing, clear) = framing(&headers)?;
    let close = headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| has_token(v.as_bytes(), b"close"));
    Ok(Some((
        len,
        Some(Head {
            status,
            version,
            headers,
            framing,
            keep_alive: clear && version == Version::HTTP_11 && !close,
        }),
    )))
}

/// The framing of a response body (RFC 9112 section 6.3), and whether it leaves the
/// connection usable (not when Transfer-Encoding and Content-Length both appear).
pub(crate) fn framing(headers: &HeaderMap) -> Result<(Framing, bool), SendError> {
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter().peekable();
    if codings.peek().is_some() {
        let last = codings
            .last()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(|c| c.trim().to_ascii_lowercase());
        let both = headers.contains_key(header::CONTENT_LENGTH);
        return Ok(if last.as_deref() == Some("chunked") {
            (Framing::Chunked, !both)
        } else {
            (Framing::Close, false)
        });
    }
    let mut length: Option<u64> = None;
    for v in headers.get_all(header::CONTENT_LENGTH) {
        let text = v
            .to_str()
            .map_err(|_| SendError::Protocol("invalid Content-Length"))?;
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() || part.len() > 19 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(SendError::Protocol("invalid Content-Length"));
            }
            let n: u64 = part
                .parse()
                .map_err(|_| SendError::Protocol("invalid Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(SendError::Protocol("conflicting Content-Length"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(n) => (Framing::Length(n), true),
        None => (Framing::Close, true),
    })
}

/// Whether a comma-separated header value holds `token` (compared without case).
pub(crate) fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

#[derive(Debug)]
enum State {
    Length(u64),
    Chunked(Chunk),
    Close,
    Done,
}

#[derive(Debug, Clone, Copy)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    Trailers,
}

/// A response body read from a server; the connection goes back to its pool when the body
/// has been read to its end and the exchange allows reuse. Dropped early, it closes the
/// connection.
#[derive(Debug)]
pub(crate) struct UpstreamBody {
    conn: Option<Conn>,
    state: State,
    /// Where the connection goes when done (`None`: closed instead).
    home: Option<(Arc<Pool>, Authority)>,
    /// A body read whole with its head.
    whole: Option<Bytes>,
}

impl UpstreamBody {
    fn whole(data: Bytes) -> UpstreamBody {
        UpstreamBody {
            conn: None,
            state: State::Done,
            home: None,
            whole: (!data.is_empty()).then_some(data),
        }
    }

    /// The body has ended: the connection goes home or is closed.
    fn finish(&mut self) {
        self.state = State::Done;
        if let (Some(conn), Some((pool, server))) = (self.conn.take(), self.home.take()) {
            pool.put(server, conn);
        }
    }

    fn step(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match self.state {
                State::Done => {
                    self.finish();
                    return Poll::Ready(None);
                }
                State::Length(remaining) => {
                    if conn.buf.is_empty() && ready!(conn.poll_fill(cx))? == 0 {
                        return Poll::Ready(Some(
                            Err("server closed before the body ended".into()),
                        ));
                    }
                    let taken = remaining.min(conn.buf.len() as u64);
                    let data = take(&mut conn.buf, taken as usize);
                    self.state = State::Length(remaining - taken);
                    if remaining == taken {
                        self.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::Close => {
                    if conn.buf.is_empty() && ready!(conn.poll_fill(cx))? == 0 {
                        self.conn = None;
                        self.state = State::Done;
                        return Poll::Ready(None);
                    }
                    let all = conn.buf.len();
                    let data = take(&mut conn.buf, all);
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::Chunked(chunk) => match chunked(conn, chunk).map_err(BoxError::from)? {
                    Decoded::More => {
                        if ready!(conn.poll_fill(cx))? == 0 {
                            return Poll::Ready(Some(Err(
                                "server closed inside the chunked body".into()
                            )));
                        }
                    }
                    Decoded::Next(next) => self.state = State::Chunked(next),
                    Decoded::Data(data, next) => {
                        self.state = State::Chunked(next);
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Decoded::End(trailers) => {
                        self.finish();
                        return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
                    }
                },
            }
        }
    }
}

enum Decoded {
    /// More bytes are needed.
    More,
    Next(Chunk),
    Data(Bytes, Chunk),
    /// The last chunk and the trailer section (when not empty).
    End(Option<HeaderMap>),
}

/// One step of the chunked decoder over the bytes read so far.
fn chunked(conn: &mut Conn, chunk: Chunk) -> Result<Decoded, &'static str> {
    let buf = &mut conn.buf;
    Ok(match chunk {
        Chunk::Size => {
            let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
                return if buf.len() > MAX_CHUNK_LINE {
                    Err("chunk-size line too long")
                } else {
                    Ok(Decoded::More)
                };
            };
            let line = &buf[..end];
            let size = line.split(|b| *b == b';').next().unwrap_or(b"");
            let size = size.trim_ascii_end();
            if size.is_empty() || size.len() > 15 || !size.iter().all(u8::is_ascii_hexdigit) {
                return Err("invalid chunk size");
            }
            let text = std::str::from_utf8(size).map_err(|_| "invalid chunk size")?;
            let n = u64::from_str_radix(text, 16).map_err(|_| "invalid chunk size")?;
            buf.advance(end + 2);
            Decoded::Next(if n == 0 {
                Chunk::Trailers
            } else {
                Chunk::Data(n)
            })
        }
        Chunk::Data(remaining) => {
            if buf.is_empty() {
                return Ok(Decoded::More);
            }
            let taken = remaining.min(buf.len() as u64);
            let data = take(buf, taken as usize);
            let next = if taken == remaining {
                Chunk::DataEnd
            } else {
                Chunk::Data(remaining - taken)
            };
            Decoded::Data(data, next)
        }
        Chunk::DataEnd => {
            if buf.len() < 2 {
                return Ok(Decoded::More);
            }
            if &buf[..2] != b"\r\n" {
                return Err("chunk data not followed by CRLF");
            }
            buf.advance(2);
            Decoded::Next(Chunk::Size)
        }
        Chunk::Trailers => {
            if buf.starts_with(b"\r\n") {
                buf.advance(2);
                return Ok(Decoded::End(None));
            }
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                return if buf.len() > MAX_HEAD {
                    Err("trailer section too large")
                } else {
                    Ok(Decoded::More)
                };
            };
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let section = &buf[..end + 4];
            let fields = match httparse::parse_headers(section, &mut slots) {
                Ok(httparse::Status::Complete((_, fields))) => fields,
                _ => return Err("malformed trailer section"),
            };
            let mut trailers = HeaderMap::with_capacity(fields.len());
            for f in fields {
                let name = HeaderName::from_bytes(f.name.as_bytes())
                    .map_err(|_| "invalid trailer name")?;
                let value =
                    HeaderValue::from_bytes(f.value).map_err(|_| "invalid trailer value")?;
                trailers.append(name, value);
            }
            buf.advance(end + 4);
            Decoded::End(Some(trailers))
        }
    })
}

impl hyper::body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(data) = this.whole.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        this.step(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.whole.is_none() && matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.whole, &self.state) {
            (Some(d), _) => SizeHint::with_exact(d.len() as u64),
            (None, State::Length(n)) => SizeHint::with_exact(*n),
            (None, State::Done) => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests;
