//! Edgeplane's own HTTP/1.1 server side, for the requests most traffic is made of: HTTP/1.1,
//! an origin-form target, no upgrade, no `Expect`, and no body or a small one framed by a
//! single plain Content-Length. The connection's task reads the head (and such a body) into
//! a buffer it keeps, builds the request from slices of it, awaits the answer and writes the
//! response head and body with as few writes as it can (one for an answer that is already
//! whole). There is no dispatcher, no per-request read-buffer allocation and no per-request
//! timer: one timer per connection bounds the wait for each head and is reset only when it
//! fires early.
//!
//! Any other request, and anything this side cannot be sure of (a malformed or over-long
//! head, a chunked or larger body, HTTP/1.0, an upgrade, the HTTP/2 preface), hands the
//! connection to hyper from that request on, with the bytes already read. So errors are
//! answered as before, and streamed bodies, `100-continue`, upgrades and h2c keep hyper's
//! handling.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Body as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::body::ClientBody;
use crate::forward::{handle, Body, ConnInfo, Shared};

/// hyper's own limit on request headers, above which it answers 431 (the request is handed
/// to it, so that answer stays the same).
const MAX_HEADERS: usize = 100;
/// Room asked of the read buffer before each read.
const READ_CHUNK: usize = 8 * 1024;
/// Response bytes gathered before they are written even though more are ready.
const FLUSH_AT: usize = 64 * 1024;
/// Body pieces up to this size are copied next to the head; larger ones are written from
/// where they are, in the same vectored write.
const COPY_MAX: usize = 4096;

/// What is needed to hand a connection to hyper.
pub(crate) struct Hyper {
    pub(crate) builder: Arc<auto::Builder<TokioExecutor>>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) info: Arc<ConnInfo>,
    pub(crate) tls: bool,
}

/// A connection's keep-alive budget: requests served and time alive.
pub(crate) struct KeepAlive {
    started: Instant,
    served: AtomicU64,
    max_requests: u64,
    max_time: Option<Duration>,
}

impl KeepAlive {
    pub(crate) fn new(entry: &crate::server::EntryPointConfig) -> KeepAlive {
        KeepAlive {
            started: Instant::now(),
            served: AtomicU64::new(0),
            max_requests: entry.keep_alive_max_requests,
            max_time: entry.keep_alive_max_time,
        }
    }

    /// Counts a request; whether its answer must be the connection's last.
    fn last(&self) -> bool {
        let served = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        (self.max_requests > 0 && served >= self.max_requests)
            || self.max_time.is_some_and(|t| self.started.elapsed() >= t)
    }

    fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

/// Serves one connection until the client closes it, its head timeout passes, a drain is
/// asked for while it is idle, or a request is handed to hyper (which then serves it on).
pub(crate) async fn serve<IO>(mut io: IO, hyper: Hyper, drain: watch::Receiver<bool>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let head_timeout = hyper.info.entry.read_header_timeout;
    let idle_timeout = hyper.info.entry.idle_timeout;
    let keep = Arc::new(KeepAlive::new(&hyper.info.entry));
    let write_timeout = hyper.info.entry.write_timeout;
    let max_head = hyper.info.entry.max_header_bytes.max(8192);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    let mut scratch: Vec<(HeaderName, usize, usize)> = Vec::with_capacity(16);
    // Never later than the current deadline; when it fires early it is set to it.
    let mut timer = pin!(tokio::time::sleep(head_timeout));
    // Waits for a drain (or the entry point's end) for as long as the connection lives:
    // registered once, not at every read.
    let mut drain_wait = drain.clone();
    let mut drained = pin!(drain_wait.wait_for(|d| *d));
    let mut draining = false;
    loop {
        // The first request's head is due within the head timeout of the connection's start;
        // a kept connection waits the idle timeout for the next request's first byte (a
        // head already begun, pipelined, is due within the head timeout).
        let mut deadline = Instant::now()
            + if keep.served() == 0 || !buf.is_empty() {
                head_timeout
            } else {
                idle_timeout
            };
        if deadline < timer.deadline() {
            timer.as_mut().reset(deadline);
        }
        // A head parsed whose body is still being read (its fields stay in `scratch`).
        let mut pending: Option<Head> = None;
        let parsed = loop {
            if let Some(head) = &pending {
                if buf.len() >= head.len + head.body {
                    break pending.take();
                }
            } else if !buf.is_empty() {
                match parse(&buf, max_head, &mut scratch) {
                    Parse::Partial => {}
                    Parse::Simple(head) if buf.len() >= head.len + head.body => break Some(head),
                    Parse::Simple(head) => {
                        // The body is read into the same buffer, within the head's time.
                        buf.reserve(head.len + head.body - buf.len());
                        pending = Some(head);
                    }
                    Parse::Other => break None,
                }
            }
            if buf.is_empty() && draining {
                return;
            }
            if buf.capacity() - buf.len() < READ_CHUNK / 8 {
                // Reclaims the buffer in place once the last request's slices are gone.
                buf.reserve(READ_CHUNK);
            }
            let was_idle = buf.is_empty();
            let read = tokio::select! {
                biased;
                r = io.read_buf(&mut buf) => r,
                () = &mut timer => {
                    if Instant::now() < deadline {
                        timer.as_mut().reset(deadline);
                        continue;
                    }
                    return;
                }
                _ = &mut drained, if !draining => {
                    draining = true;
                    if buf.is_empty() {
                        return;
                    }
                    continue;
                }
            };
            match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if was_idle && keep.served() > 0 {
                // The next head has begun: it is due within the head timeout from here.
                deadline = Instant::now() + head_timeout;
                if deadline < timer.deadline() {
                    timer.as_mut().reset(deadline);
                }
            }
        };
        let Some(head) = parsed else {
            if keep.served() == 0 && buf.starts_with(b"PRI * HTTP/2.0") {
                // h2c with prior knowledge: edgeplane's own HTTP/2 side takes the connection.
                let Hyper {
                    shared, info, tls, ..
                } = hyper;
                return crate::h2::serve(io, buf.freeze(), shared, info, tls, drain).await;
            }
            return handoff(io, buf.freeze(), hyper, keep, drain).await;
        };
        let raw = buf.split_to(head.len).freeze();
        let body = buf.split_to(head.body).freeze();
        let Some(req) = build(&raw, &head, &mut scratch, &body) else {
            // Refused by `http` where the parser let it through: hyper answers it.
            let mut all = BytesMut::with_capacity(raw.len() + body.len() + buf.len());
            all.extend_from_slice(&raw);
            all.extend_from_slice(&body);
            all.extend_from_slice(&buf);
            return handoff(io, all.freeze(), hyper, keep, drain).await;
        };
        drop((raw, body));
        let is_head = head.method == Method::HEAD;
        let last = keep.last();
        let exchange = async {
            let Ok(resp) = handle(hyper.shared.clone(), hyper.info.clone(), hyper.tls, req).await;
            let keep_alive = head.keep_alive && !last && !draining && !*drain.borrow();
            respond(&mut io, &mut out, resp, is_head, keep_alive).await
        };
        let outcome = match write_timeout {
            None => exchange.await,
            // From the end of the head to the end of the response, as Go's WriteTimeout
            // (Traefik's `writeTimeout`): past it the connection is closed, answered or not.
            Some(limit) => match tokio::time::timeout(limit, exchange).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    tracing::debug!(peer = %hyper.info.peer, "response not written in time");
                    return;
                }
            },
        };
        match outcome {
            Ok(true) => {}
            Ok(false) => {
                let _ = io.shutdown().await;
                return;
            }
            Err(_) => return,
        }
    }
}

/// Serves the rest of a connection with hyper: `prefix` is what was read of it already.
/// When a drain is asked for, hyper finishes what is in flight and closes.
/// HTTP/1.x answers past the keep-alive budget say `connection: close`, which hyper obeys.
pub(crate) async fn handoff<IO>(
    io: IO,
    prefix: Bytes,
    h: Hyper,
    keep: Arc<KeepAlive>,
    mut drain: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Hyper {
        builder,
        shared,
        info,
        tls,
    } = h;
    let write_timeout = info.entry.write_timeout;
    let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let last = req.version() < Version::HTTP_2 && keep.last();
        let deadline = write_timeout.map(|t| Instant::now() + t);
        // Boxed: hyper moves the service's future into a task per HTTP/2 stream, and the
        // request path's future is kilobytes; moving a box is moving a pointer.
        let answer = Box::pin(handle(
            shared.clone(),
            info.clone(),
            tls,
            req.map(ClientBody::Hyper),
        ));
        async move {
            // Past the write deadline hyper is given an error, on which it closes the
            // connection (HTTP/1) or resets the stream (HTTP/2); a body still being written
            // fails the same way.
            let Ok(mut resp) = match deadline {
                None => answer.await,
                Some(at) => tokio::time::timeout_at(at, answer)
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timeout"))?,
            };
            if last {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            if let Some(at) = deadline {
                resp = Deadline::bound(resp, at);
            }
            Ok::<_, io::Error>(resp)
        }
    });
    let io = TokioIo::new(Prefixed { prefix, io });
    let conn = builder.serve_connection_with_upgrades(io, svc);
    let mut conn = pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = drain.wait_for(|d| *d) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// A parsed request head this side serves.
struct Head {
    len: usize,
    /// The length of the body that follows the head.
    body: usize,
    method: Method,
    target: (usize, usize),
    keep_alive: bool,
}

enum Parse {
    Partial,
    Simple(Head),
    /// Anything to be handed to hyper.
    Other,
}

/// Parses the head at the start of `buf`; header names go to `scratch` with where their
/// values are in `buf`.
fn parse(buf: &[u8], max_head: usize, scratch: &mut Vec<(HeaderName, usize, usize)>) -> Parse {
    scratch.clear();
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= max_head => n,
        Ok(httparse::Status::Partial) if buf.len() < max_head => return Parse::Partial,
        _ => return Parse::Other,
    };
    if req.version != Some(1) {
        return Parse::Other;
    }
    let (Some(method), Some(path)) = (req.method, req.path) else {
        return Parse::Other;
    };
    if !path.starts_with('/') || method == "CONNECT" || method == "PRI" {
        return Parse::Other;
    }
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parse::Other;
    };
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| (s.as_ptr() as usize).wrapping_sub(base);
    let target = (at(path.as_bytes()), at(path.as_bytes()) + path.len());
    let mut keep_alive = true;
    let mut body = None;
    for h in req.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
            return Parse::Other;
        };
        if name == header::TRANSFER_ENCODING || name == header::UPGRADE || name == header::EXPECT {
            return Parse::Other;
        }
        if name == header::CONTENT_LENGTH {
            // Only one field with nothing but digits frames a body beyond doubt; any other
            // form (a list, a sign, a second field) is left to hyper, which answers it.
            let digits = h.value.trim_ascii();
            if body.is_some()
                || digits.is_empty()
                || digits.len() > 7
                || !digits.iter().all(u8::is_ascii_digit)
            {
                return Parse::Other;
            }
            let n = digits
                .iter()
                .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
            if n > crate::h1::MAX_WHOLE_BODY {
                return Parse::Other;
            }
            body = Some(n);
        }
        if name == header::CONNECTION && crate::h1::has_token(h.value, b"close") {
            keep_alive = false;
        }
        let start = at(h.value);
        scratch.push((name, start, start + h.value.len()));
    }
    Parse::Simple(Head {
        len,
        body: body.unwrap_or(0),
        method,
        target,
        keep_alive,
    })
}

/// The request, its target and values slices of `raw` (which starts where the parsed buffer
/// did), with `body` (the bytes after the head). `None` when `http` refuses a part.
fn build(
    raw: &Bytes,
    head: &Head,
    scratch: &mut Vec<(HeaderName, usize, usize)>,
    body: &Bytes,
) -> Option<Request<ClientBody>> {
    let uri = Uri::from_maybe_shared(raw.slice(head.target.0..head.target.1)).ok()?;
    // Room for the X-Forwarded-* headers added on the way, so the map is not grown.
    let mut headers = HeaderMap::with_capacity(scratch.len() + 8);
    for (name, start, end) in scratch.drain(..) {
        let value = HeaderValue::from_maybe_shared(raw.slice(start..end)).ok()?;
        headers.append(name, value);
    }
    let mut req = Request::new(if body.is_empty() {
        ClientBody::Empty
    } else {
        ClientBody::Full(Some(body.clone()))
    });
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    Some(req)
}

/// How the response body is framed.
#[derive(Clone, Copy)]
enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// What one round of gathering the body asks for.
enum Step {
    /// Write what is gathered, then this piece.
    Write(Option<Bytes>),
    End,
    Failed,
}

/// Writes the response; `Ok(true)` when the connection can serve another request.
async fn respond<IO>(
    io: &mut IO,
    out: &mut Vec<u8>,
    resp: Response<Body>,
    is_head: bool,
    mut keep_alive: bool,
) -> io::Result<bool>
where
    IO: AsyncWrite + Unpin,
{
    let (parts, mut body) = resp.into_parts();
    let status = parts.status;
    let says_close = parts
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| crate::h1::has_token(v.as_bytes(), b"close"));
    keep_alive &= !says_close;
    let bodiless = is_head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut framing = if bodiless {
        Framing::None
    } else if let Some(n) = body.size_hint().exact() {
        Framing::Length(n)
    } else if let Ok((crate::h1::Framing::Length(n), _)) = crate::h1::framing(&parts.headers) {
        // A valid Content-Length, read as the upstream client reads one.
        Framing::Length(n)
    } else {
        Framing::Chunked
    };

    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut dated = false;
    for (name, value) in &parts.headers {
        if name == header::TRANSFER_ENCODING || (name == header::CONTENT_LENGTH && !bodiless) {
            continue;
        }
        dated |= name == header::DATE;
        crate::h1::field(out, name, value);
    }
    match framing {
        Framing::None => {}
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            crate::h1::decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    if !dated {
        out.extend_from_slice(b"date: ");
        date(out);
        out.extend_from_slice(b"\r\n");
    }
    if !keep_alive && !says_close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    drop(parts);

    if matches!(framing, Framing::None) {
        drop(body);
        write(io, out, None).await?;
        return Ok(keep_alive);
    }
    let mut trailers: Option<HeaderMap> = None;
    loop {
        let step = poll_fn(|cx| gather(cx, &mut body, out, &mut framing, &mut trailers)).await;
        match step {
            Step::Write(piece) => {
                let chunked = matches!(framing, Framing::Chunked);
                write(io, out, piece.as_ref()).await?;
                out.clear();
                if chunked && piece.is_some() {
                    out.extend_from_slice(b"\r\n");
                }
            }
            Step::End => {
                let complete = match framing {
                    Framing::Length(left) => left == 0,
                    Framing::Chunked => {
                        out.extend_from_slice(b"0\r\n");
                        for (name, value) in trailers.iter().flatten() {
                            crate::h1::field(out, name, value);
                        }
                        out.extend_from_slice(b"\r\n");
                        true
                    }
                    Framing::None => true,
                };
                write(io, out, None).await?;
                return Ok(keep_alive && complete);
            }
            Step::Failed => {
                // The client sees the body cut short: the connection closes unfinished.
                write(io, out, None).await?;
                return Ok(false);
            }
        }
    }
}

/// Gathers the body's ready frames after what `out` holds.
fn gather(
    cx: &mut Context<'_>,
    body: &mut Body,
    out: &mut Vec<u8>,
    framing: &mut Framing,
    trailers: &mut Option<HeaderMap>,
) -> Poll<Step> {
    loop {
        if out.len() >= FLUSH_AT {
            return Poll::Ready(Step::Write(None));
        }
        let frame = match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Pending if out.is_empty() => return Poll::Pending,
            Poll::Pending => return Poll::Ready(Step::Write(None)),
            Poll::Ready(None) => return Poll::Ready(Step::End),
            Poll::Ready(Some(Err(e))) => {
                tracing::debug!(error = %e, "response body failed");
                return Poll::Ready(Step::Failed);
            }
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        let mut data = match frame.into_data() {
            Ok(d) => d,
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers.get_or_insert_with(HeaderMap::new).extend(t);
                }
                continue;
            }
        };
        if data.is_empty() {
            continue;
        }
        match framing {
            Framing::Length(left) => {
                if data.len() as u64 > *left {
                    // More than was announced: what fits is sent, and the connection closed.
                    data.truncate(usize::try_from(*left).unwrap_or(usize::MAX));
                    *left = 0;
                    out.extend_from_slice(&data);
                    return Poll::Ready(Step::Failed);
                }
                *left -= data.len() as u64;
            }
            Framing::Chunked => {
                out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            }
            Framing::None => {}
        }
        if data.len() > COPY_MAX {
            return Poll::Ready(Step::Write(Some(data)));
        }
        out.extend_from_slice(&data);
        if matches!(framing, Framing::Chunked) {
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Writes `out` then `piece`, in one vectored write where the stream allows it.
async fn write<IO>(io: &mut IO, out: &[u8], piece: Option<&Bytes>) -> io::Result<()>
where
    IO: AsyncWrite + Unpin,
{
    match piece {
        None => io.write_all(out).await?,
        Some(p) => {
            let mut both = Buf::chain(out, &p[..]);
            io.write_all_buf(&mut both).await?;
        }
    }
    io.flush().await
}

/// Appends the current IMF-fixdate, formatted once a second per thread.
fn date(out: &mut Vec<u8>) {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static NOW: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    NOW.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != second {
            *cached = (second, httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(cached.1.as_bytes());
    });
}

/// A response body that fails once its deadline has passed.
pub(crate) struct Deadline {
    body: Body,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Deadline {
    /// The response with its body failing once `at` has passed.
    pub(crate) fn bound(resp: Response<Body>, at: Instant) -> Response<Body> {
        resp.map(|body| {
            http_body_util::BodyExt::boxed(Deadline {
                body,
                sleep: Box::pin(tokio::time::sleep_until(at)),
            })
        })
    }
}

impl hyper::body::Body for Deadline {
    type Data = Bytes;
    type Error = crate::h1::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if self.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err("write timeout".into())));
        }
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// A stream whose first bytes were already read: they are read again first.
struct Prefixed<IO> {
    prefix: Bytes,
    io: IO,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
