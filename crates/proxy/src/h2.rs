//! Edgeplane's own HTTP/2 server side (RFC 9113), for HTTP/2 over TLS (ALPN `h2`) and h2c
//! with prior knowledge.
//!
//! One task per connection does everything: it reads frames into a buffer it keeps, decodes
//! header blocks (HPACK, [`hpack`]) into requests whose values are slices of what was read,
//! runs each stream's request path as a future it polls itself (no task per stream), and
//! writes responses, data and control frames into one buffer that goes out in one write.
//! Request bodies reach the request path through a small queue per stream, whose reader
//! gives flow-control credit back as it consumes; response bodies are polled only while the
//! peer's windows have room, so a slow client holds the upstream back instead of filling
//! memory.
//!
//! Limits: 16 KiB frames, 250 concurrent streams (more are refused with REFUSED_STREAM),
//! 1 MiB windows per stream and per connection, a header list of at most the entry point's
//! `maxHeaderBytes` (answered 431 above it) and a header block of at most twice that
//! (a connection error above it), and the entry point's timeouts: the preface within the
//! head timeout, an idle connection closed after the idle timeout, a PING after 30 s of
//! silence that must be answered within 20 s. Streams reset by the client faster than they
//! are served (half of them, past 200) end the connection with ENHANCE_YOUR_CALM.
//!
//! Extended CONNECT (RFC 8441) is announced: such a request becomes the HTTP/1.1 upgrade it
//! stands for (marked with [`ExtendedConnect`]), and its stream then carries the tunnel.

mod hpack;

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::future::{AbortHandle, Abortable};
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::task::AtomicWaker;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, Uri, Version};
use hyper::body::{Body as _, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::body::ClientBody;
use crate::forward::{handle, Body, ConnInfo, Shared};
use crate::h1::BoxError;

/// The client's connection preface (RFC 9113 section 3.4).
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;

const NO_ERROR: u32 = 0x0;
const PROTOCOL_ERROR: u32 = 0x1;
const INTERNAL_ERROR: u32 = 0x2;
const FLOW_CONTROL_ERROR: u32 = 0x3;
const STREAM_CLOSED: u32 = 0x5;
const FRAME_SIZE_ERROR: u32 = 0x6;
const REFUSED_STREAM: u32 = 0x7;
const COMPRESSION_ERROR: u32 = 0x9;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// The largest frame payload accepted (the protocol's default; edgeplane announces no other).
const MAX_FRAME: usize = 16_384;
const MAX_STREAMS: usize = 250;
/// The receive window of each stream and of the connection.
const WINDOW: u32 = 1 << 20;
const MAX_WINDOW: i64 = (1 << 31) - 1;
const TABLE_SIZE: usize = 4096;
/// Above this many bytes waiting to be written, no frame is read and no body polled.
const WRITE_HIGH: usize = 128 * 1024;
/// The most one stream's body may write in one turn.
const TURN: usize = 64 * 1024;
const PING_AFTER: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Client resets tolerated before their share of the streams is looked at.
const RESETS_ALLOWED: u64 = 200;
/// Zero-length DATA frames without END_STREAM tolerated on a connection.
const EMPTY_FRAMES_ALLOWED: u64 = 1000;

/// Header names that are specific to an HTTP/1.1 connection: a request carrying one is
/// malformed (RFC 9113 section 8.2.2), and they are dropped from responses.
fn connection_specific(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// A connection error: GOAWAY with this code, then the connection is closed.
struct ConnError(u32, &'static str);

type Handler = Pin<Box<dyn Future<Output = (u32, Option<Response<Body>>)> + Send>>;

/// A request body's queue, shared by the connection (which fills it) and the request path
/// (which drains it through [`H2Body`]).
struct Inbound {
    state: Mutex<InState>,
    conn: Arc<AtomicWaker>,
}

#[derive(Default)]
struct InState {
    chunks: VecDeque<Bytes>,
    end: Option<End>,
    reader: Option<Waker>,
    /// Bytes consumed (or discarded) since the connection last took the count.
    consumed: usize,
    dropped: bool,
}

enum End {
    /// The client ended the stream, with these trailers (taken once read).
    Done(Option<HeaderMap>),
    /// The stream was reset, by the client (with its code) or by edgeplane.
    Reset(u32),
}

impl Inbound {
    fn lock(&self) -> std::sync::MutexGuard<'_, InState> {
        // A panic elsewhere while the lock was held leaves plain data behind: keep using it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn finish(&self, end: End) {
        let mut st = self.lock();
        if st.end.is_none() {
            st.end = Some(end);
        }
        if let Some(w) = st.reader.take() {
            drop(st);
            w.wake();
        }
    }
}

/// A client's HTTP/2 request body, read from its stream's queue.
pub struct H2Body {
    inbound: Arc<Inbound>,
    length: Option<u64>,
}

impl H2Body {
    /// The whole body when the client has sent all of it and it is at most `max` bytes
    /// (taken out); `None`, leaving it as it was, otherwise.
    pub(crate) fn take_whole(&mut self, max: usize) -> Option<Bytes> {
        let mut st = self.inbound.lock();
        if !matches!(st.end, Some(End::Done(None))) {
            return None;
        }
        let total: usize = st.chunks.iter().map(Bytes::len).sum();
        if total > max {
            return None;
        }
        st.consumed += total;
        let whole = match st.chunks.len() {
            0 => Bytes::new(),
            1 => st.chunks.pop_front().unwrap_or_default(),
            _ => {
                let mut all = BytesMut::with_capacity(total);
                for c in st.chunks.drain(..) {
                    all.extend_from_slice(&c);
                }
                all.freeze()
            }
        };
        drop(st);
        self.inbound.conn.wake();
        Some(whole)
    }
}

impl hyper::body::Body for H2Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut st = self.inbound.lock();
        if let Some(c) = st.chunks.pop_front() {
            let before = st.consumed;
            st.consumed += c.len();
            // The connection hears of consumed bytes when a quarter window's worth has
            // gone by (and whenever the reader waits, below).
            let tell = before < WINDOW as usize / 4 && st.consumed >= WINDOW as usize / 4;
            drop(st);
            if tell {
                self.inbound.conn.wake();
            }
            return Poll::Ready(Some(Ok(Frame::data(c))));
        }
        match &mut st.end {
            Some(End::Done(trailers)) => {
                return Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            Some(End::Reset(code)) => {
                let e = io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    format!("stream reset (error code {code:#x})"),
                );
                return Poll::Ready(Some(Err(e.into())));
            }
            None => {}
        }
        st.reader = Some(cx.waker().clone());
        let tell = st.consumed > 0;
        drop(st);
        if tell {
            self.inbound.conn.wake();
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        let st = self.inbound.lock();
        st.chunks.is_empty() && matches!(st.end, Some(End::Done(None)))
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::new(),
        }
    }
}

impl Drop for H2Body {
    fn drop(&mut self) {
        let mut st = self.inbound.lock();
        st.dropped = true;
        let left: usize = st.chunks.drain(..).map(|c| c.len()).sum();
        st.consumed += left;
        drop(st);
        self.inbound.conn.wake();
    }
}

/// One stream, from its request's HEADERS until its response is sent and the client has
/// sent all it will.
struct Stream {
    id: u32,
    /// The request body's queue, when the request has a body.
    inbound: Option<Arc<Inbound>>,
    /// Whether the client may still send DATA.
    recv_open: bool,
    /// What the client may still send on this stream.
    recv_window: i64,
    /// Consumed bytes not yet given back with WINDOW_UPDATE.
    credit: u32,
    content_length: Option<u64>,
    received: u64,
    send_window: i64,
    /// The request path, while it runs.
    abort: Option<AbortHandle>,
    /// The response body being sent.
    body: Option<Body>,
    /// Data taken from the body and not yet sent for want of window, and whether the body
    /// ended with it.
    pending: Option<(Bytes, bool)>,
    /// END_STREAM (or RST_STREAM) sent.
    sent_end: bool,
    /// The response body failed: the stream is to be reset.
    failed: bool,
}

impl Stream {
    fn done(&self) -> bool {
        self.sent_end && !self.recv_open
    }

    /// Stops everything the stream has going: the request path and its body's reader.
    fn cancel(&mut self, code: u32) {
        if let Some(a) = self.abort.take() {
            a.abort();
        }
        if let Some(r) = &self.inbound {
            r.finish(End::Reset(code));
        }
        self.recv_open = false;
        self.body = None;
        self.pending = None;
    }
}

/// A header block being received across CONTINUATION frames.
struct Continuation {
    id: u32,
    end_stream: bool,
    block: BytesMut,
}

struct Conn<IO> {
    io: IO,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Whether `wbuf`'s bytes went out without a flush after them.
    unflushed: bool,
    decoder: hpack::Decoder,
    scratch: BytesMut,
    streams: Vec<Stream>,
    handlers: FuturesUnordered<Abortable<Handler>>,
    waker: Arc<AtomicWaker>,
    shared: Arc<Shared>,
    info: Arc<ConnInfo>,
    tls: bool,
    preface: bool,
    settings_seen: bool,
    continuation: Option<Continuation>,
    /// The highest stream the client opened.
    max_seen: u32,
    recv_window: i64,
    conn_credit: u32,
    send_window: i64,
    peer_initial_window: i64,
    peer_max_frame: usize,
    max_header_list: usize,
    max_block: usize,
    /// The last stream id sent in a GOAWAY: later streams are ignored, and the connection
    /// ends when the streams up to it are done.
    goaway: Option<u32>,
    peer_goaway: bool,
    /// A connection error was sent, or the connection cannot go on: close once written.
    closing: bool,
    opened: u64,
    /// Where the next turn of the response bodies starts.
    turn: usize,
    resets: u64,
    empty_frames: u64,
    timer: Pin<Box<tokio::time::Sleep>>,
    started: Instant,
    idle_since: Instant,
    last_read: Instant,
    ping_sent: Option<Instant>,
}

/// Serves one HTTP/2 connection until it ends; `prefix` holds bytes already read from it
/// (the preface, when it came as h2c on a plain-text entry point).
pub(crate) async fn serve<IO>(
    io: IO,
    prefix: Bytes,
    shared: Arc<Shared>,
    info: Arc<ConnInfo>,
    tls: bool,
    drain: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let now = Instant::now();
    let entry = &info.entry;
    let max_header_list = entry.max_header_bytes.max(1024);
    let mut rbuf = BytesMut::with_capacity(MAX_FRAME + 9);
    rbuf.extend_from_slice(&prefix);
    let mut conn = Conn {
        io,
        rbuf,
        wbuf: BytesMut::with_capacity(16 * 1024),
        unflushed: false,
        decoder: hpack::Decoder::new(TABLE_SIZE),
        scratch: BytesMut::with_capacity(512),
        streams: Vec::new(),
        handlers: FuturesUnordered::new(),
        waker: Arc::new(AtomicWaker::new()),
        timer: Box::pin(tokio::time::sleep_until(now + entry.read_header_timeout)),
        shared,
        tls,
        preface: false,
        settings_seen: false,
        continuation: None,
        max_seen: 0,
        recv_window: i64::from(WINDOW),
        conn_credit: 0,
        send_window: 65_535,
        peer_initial_window: 65_535,
        peer_max_frame: MAX_FRAME,
        max_header_list,
        max_block: max_header_list.saturating_mul(2).max(16 * 1024),
        goaway: None,
        peer_goaway: false,
        closing: false,
        opened: 0,
        turn: 0,
        resets: 0,
        empty_frames: 0,
        started: now,
        idle_since: now,
        last_read: now,
        ping_sent: None,
        info,
    };
    conn.send_settings();
    // What came with the preface (h2c) is handled before anything more is read.
    if let Err(e) = conn.process() {
        conn.fail(e);
    }
    let mut drain = drain;
    let mut drained = pin!(drain.wait_for(|d| *d));
    let mut draining = false;
    poll_fn(|cx| {
        if !draining && drained.as_mut().poll(cx).is_ready() {
            draining = true;
            conn.go_away(NO_ERROR);
        }
        conn.poll(cx)
    })
    .await;
    conn.cancel_all(STREAM_CLOSED);
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.io.shutdown()).await;
}

/// The length, type, flags and stream of the frame at the start of `b`, once its 9-octet
/// header is there.
fn frame_header(b: &[u8]) -> Option<(usize, u8, u8, u32)> {
    let h: &[u8; 9] = b.get(..9)?.try_into().ok()?;
    let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
    let id = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
    Some((len, h[3], h[4], id))
}

fn frame_head(out: &mut BytesMut, len: usize, ty: u8, flags: u8, id: u32) {
    out.reserve(9 + len);
    out.put_uint(len as u64, 3);
    out.put_u8(ty);
    out.put_u8(flags);
    out.put_u32(id & 0x7fff_ffff);
}

/// Removes a frame's padding (and a HEADERS frame's priority fields).
fn unpad(payload: Bytes, flags: u8, priority: bool) -> Result<Bytes, ConnError> {
    let mut p = payload;
    let mut pad = 0;
    if flags & PADDED != 0 {
        if p.is_empty() {
            return Err(ConnError(
                FRAME_SIZE_ERROR,
                "padded frame without its pad length",
            ));
        }
        pad = usize::from(p[0]);
        p.advance(1);
    }
    if priority && flags & PRIORITY_FLAG != 0 {
        if p.len() < 5 {
            return Err(ConnError(
                FRAME_SIZE_ERROR,
                "HEADERS too short for its priority",
            ));
        }
        p.advance(5);
    }
    if pad > p.len() {
        return Err(ConnError(PROTOCOL_ERROR, "padding longer than the frame"));
    }
    p.truncate(p.len() - pad);
    Ok(p)
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Conn<IO> {
    fn send_settings(&mut self) {
        let settings: [(u16, u32); 4] = [
            (0x3, MAX_STREAMS as u32),
            (0x4, WINDOW),
            (0x6, u32::try_from(self.max_header_list).unwrap_or(u32::MAX)),
            // SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441): WebSocket and other upgrades.
            (0x8, 1),
        ];
        frame_head(&mut self.wbuf, 6 * settings.len(), SETTINGS, 0, 0);
        for (k, v) in settings {
            self.wbuf.put_u16(k);
            self.wbuf.put_u32(v);
        }
        // The connection's window, from the protocol's 65,535 to edgeplane's.
        frame_head(&mut self.wbuf, 4, WINDOW_UPDATE, 0, 0);
        self.wbuf.put_u32(WINDOW - 65_535);
    }

    fn go_away(&mut self, code: u32) {
        if self.goaway.is_some() && code == NO_ERROR {
            return;
        }
        frame_head(&mut self.wbuf, 8, GOAWAY, 0, 0);
        self.wbuf.put_u32(self.max_seen);
        self.wbuf.put_u32(code);
        self.goaway = Some(self.max_seen);
    }

    fn fail(&mut self, e: ConnError) {
        tracing::debug!(peer = %self.info.peer, code = e.0, error = e.1, "HTTP/2 connection error");
        self.go_away(e.0);
        self.closing = true;
        self.cancel_all(e.0);
    }

    fn cancel_all(&mut self, code: u32) {
        for mut s in self.streams.drain(..) {
            s.cancel(code);
        }
    }

    fn rst(&mut self, id: u32, code: u32) {
        frame_head(&mut self.wbuf, 4, RST_STREAM, 0, id);
        self.wbuf.put_u32(code);
    }

    /// A stream error: RST_STREAM, and the stream is gone.
    fn reset(&mut self, id: u32, code: u32) {
        self.rst(id, code);
        if let Some(i) = self.find(id) {
            self.remove(i).cancel(code);
        }
    }

    /// Takes a stream out; whatever of its request body the connection's window still
    /// counts is given back.
    fn remove(&mut self, i: usize) -> Stream {
        let s = self.streams.swap_remove(i);
        if let Some(inbound) = &s.inbound {
            let mut st = inbound.lock();
            let queued: usize = st.chunks.iter().map(Bytes::len).sum();
            let n = std::mem::take(&mut st.consumed) + queued;
            drop(st);
            self.conn_credit += n as u32;
        }
        if self.streams.is_empty() {
            self.idle_since = Instant::now();
        }
        s
    }

    fn find(&self, id: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.id == id)
    }

    fn finished(&self) -> bool {
        let over = self.closing
            || ((self.goaway.is_some() || self.peer_goaway)
                && self.streams.is_empty()
                && self.continuation.is_none());
        over && self.wbuf.is_empty() && !self.unflushed
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.waker.register(cx.waker());
        loop {
            let mut progress = false;
            if self.timer.as_mut().poll(cx).is_ready() {
                self.on_timer();
                progress = true;
            }
            if !self.closing && self.wbuf.len() < WRITE_HIGH {
                if self.rbuf.capacity() - self.rbuf.len() < 4096 {
                    self.rbuf.reserve(MAX_FRAME + 9);
                }
                let read = pin!(self.io.read_buf(&mut self.rbuf)).poll(cx);
                match read {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        // The client is gone: nothing it asked for can be answered.
                        self.cancel_all(STREAM_CLOSED);
                        return Poll::Ready(());
                    }
                    Poll::Ready(Ok(_)) => {
                        progress = true;
                        self.last_read = Instant::now();
                        self.ping_sent = None;
                        if let Err(e) = self.process() {
                            self.fail(e);
                        }
                    }
                    Poll::Pending => {}
                }
            }
            while let Poll::Ready(Some(done)) = self.handlers.poll_next_unpin(cx) {
                progress = true;
                if let Ok((id, resp)) = done {
                    self.respond(id, resp);
                }
            }
            self.credit();
            if !self.closing && self.wbuf.len() < WRITE_HIGH {
                progress |= self.send_bodies(cx);
            }
            let waiting = self.wbuf.len();
            match self.poll_write(cx) {
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(())) => {}
                Poll::Pending => {}
            }
            // Room made in the write buffer lets the reads and bodies held back go on.
            progress |= waiting >= WRITE_HIGH && self.wbuf.len() < WRITE_HIGH;
            if self.finished() {
                return Poll::Ready(());
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }

    /// Writes what is waiting; `Ready(Ok)` once all of it is written and flushed.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.wbuf.is_empty() {
            match pin!(self.io.write(&self.wbuf)).poll(cx) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.wbuf.advance(n);
                    self.unflushed = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.unflushed {
            match pin!(self.io.flush()).poll(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        let info = self.info.clone();
        let entry = &info.entry;
        if !self.settings_seen {
            if now >= self.started + entry.read_header_timeout {
                self.closing = true;
                return;
            }
        } else if self.streams.is_empty() && now >= self.idle_since + entry.idle_timeout {
            self.go_away(NO_ERROR);
        } else if let Some(sent) = self.ping_sent {
            if now >= sent + PING_TIMEOUT {
                tracing::debug!(peer = %self.info.peer, "HTTP/2 PING not answered; closing");
                self.closing = true;
                return;
            }
        } else if now >= self.last_read + PING_AFTER {
            frame_head(&mut self.wbuf, 8, PING, 0, 0);
            self.wbuf.put_u64(0x6564_6765_706c_616e);
            self.ping_sent = Some(now);
        }
        let next = if !self.settings_seen {
            self.started + entry.read_header_timeout
        } else {
            let ping = match self.ping_sent {
                Some(sent) => sent + PING_TIMEOUT,
                None => self.last_read + PING_AFTER,
            };
            if self.streams.is_empty() {
                ping.min(self.idle_since + entry.idle_timeout)
            } else {
                ping
            }
        };
        // Never in the past: a deadline already gone comes back in a second.
        self.timer
            .as_mut()
            .reset(next.max(now + Duration::from_millis(1000).min(entry.idle_timeout)));
    }

    /// Handles every whole frame in the read buffer.
    fn process(&mut self) -> Result<(), ConnError> {
        if !self.preface {
            let n = self.rbuf.len().min(PREFACE.len());
            if self.rbuf[..n] != PREFACE[..n] {
                return Err(ConnError(
                    PROTOCOL_ERROR,
                    "not the HTTP/2 connection preface",
                ));
            }
            if n < PREFACE.len() {
                return Ok(());
            }
            self.rbuf.advance(PREFACE.len());
            self.preface = true;
        }
        while let Some((len, ty, flags, id)) = frame_header(&self.rbuf).filter(|_| !self.closing) {
            if len > MAX_FRAME {
                return Err(ConnError(FRAME_SIZE_ERROR, "frame larger than 16 KiB"));
            }
            if self.rbuf.len() < 9 + len {
                self.rbuf.reserve(9 + len - self.rbuf.len());
                break;
            }
            self.rbuf.advance(9);
            let payload = self.rbuf.split_to(len).freeze();
            if !self.settings_seen && (ty != SETTINGS || flags & ACK != 0) {
                return Err(ConnError(
                    PROTOCOL_ERROR,
                    "the preface's SETTINGS frame is missing",
                ));
            }
            self.frame(ty, flags, id, payload)?;
        }
        Ok(())
    }

    fn frame(&mut self, ty: u8, flags: u8, id: u32, payload: Bytes) -> Result<(), ConnError> {
        if let Some(c) = &self.continuation {
            if ty != CONTINUATION || id != c.id {
                return Err(ConnError(PROTOCOL_ERROR, "a header block was interrupted"));
            }
        }
        match ty {
            DATA => self.on_data(flags, id, payload),
            HEADERS => {
                if id == 0 || id.is_multiple_of(2) {
                    return Err(ConnError(
                        PROTOCOL_ERROR,
                        "HEADERS on a stream a client cannot open",
                    ));
                }
                let fragment = unpad(payload, flags, true)?;
                if flags & END_HEADERS == 0 {
                    if fragment.len() > self.max_block {
                        return Err(ConnError(ENHANCE_YOUR_CALM, "header block too large"));
                    }
                    self.continuation = Some(Continuation {
                        id,
                        end_stream: flags & END_STREAM != 0,
                        block: BytesMut::from(&fragment[..]),
                    });
                    return Ok(());
                }
                self.on_header_block(id, flags & END_STREAM != 0, fragment)
            }
            CONTINUATION => {
                let Some(c) = self.continuation.as_mut() else {
                    return Err(ConnError(PROTOCOL_ERROR, "CONTINUATION without HEADERS"));
                };
                if c.block.len() + payload.len() > self.max_block {
                    return Err(ConnError(ENHANCE_YOUR_CALM, "header block too large"));
                }
                c.block.extend_from_slice(&payload);
                if flags & END_HEADERS == 0 {
                    return Ok(());
                }
                let Some(c) = self.continuation.take() else {
                    return Ok(());
                };
                self.on_header_block(c.id, c.end_stream, c.block.freeze())
            }
            PRIORITY => {
                if id == 0 {
                    return Err(ConnError(PROTOCOL_ERROR, "PRIORITY on stream 0"));
                }
                if payload.len() != 5 {
                    self.reset(id, FRAME_SIZE_ERROR);
                }
                Ok(())
            }
            RST_STREAM => {
                if id == 0 {
                    return Err(ConnError(PROTOCOL_ERROR, "RST_STREAM on stream 0"));
                }
                if payload.len() != 4 {
                    return Err(ConnError(FRAME_SIZE_ERROR, "RST_STREAM of the wrong size"));
                }
                let code = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                match self.find(id) {
                    Some(i) => {
                        let mut s = self.remove(i);
                        if !s.sent_end {
                            self.resets += 1;
                        }
                        s.cancel(code);
                        if self.resets > RESETS_ALLOWED && self.resets * 2 > self.opened {
                            return Err(ConnError(ENHANCE_YOUR_CALM, "too many streams reset"));
                        }
                        Ok(())
                    }
                    None if id > self.max_seen => {
                        Err(ConnError(PROTOCOL_ERROR, "RST_STREAM on an idle stream"))
                    }
                    None => Ok(()),
                }
            }
            SETTINGS => self.on_settings(flags, id, &payload),
            PUSH_PROMISE => Err(ConnError(PROTOCOL_ERROR, "PUSH_PROMISE from a client")),
            PING => {
                if id != 0 {
                    return Err(ConnError(PROTOCOL_ERROR, "PING on a stream"));
                }
                if payload.len() != 8 {
                    return Err(ConnError(FRAME_SIZE_ERROR, "PING of the wrong size"));
                }
                if flags & ACK == 0 {
                    frame_head(&mut self.wbuf, 8, PING, ACK, 0);
                    self.wbuf.extend_from_slice(&payload);
                }
                Ok(())
            }
            GOAWAY => {
                if id != 0 {
                    return Err(ConnError(PROTOCOL_ERROR, "GOAWAY on a stream"));
                }
                if payload.len() < 8 {
                    return Err(ConnError(FRAME_SIZE_ERROR, "GOAWAY too short"));
                }
                self.peer_goaway = true;
                Ok(())
            }
            WINDOW_UPDATE => self.on_window_update(id, &payload),
            // Unknown frame types are ignored (RFC 9113 section 4.1).
            _ => Ok(()),
        }
    }

    fn on_settings(&mut self, flags: u8, id: u32, payload: &[u8]) -> Result<(), ConnError> {
        if id != 0 {
            return Err(ConnError(PROTOCOL_ERROR, "SETTINGS on a stream"));
        }
        if flags & ACK != 0 {
            if !payload.is_empty() {
                return Err(ConnError(FRAME_SIZE_ERROR, "SETTINGS ACK with a payload"));
            }
            return Ok(());
        }
        if !payload.len().is_multiple_of(6) {
            return Err(ConnError(FRAME_SIZE_ERROR, "SETTINGS of the wrong size"));
        }
        for p in payload.chunks_exact(6) {
            let key = u16::from_be_bytes([p[0], p[1]]);
            let value = u32::from_be_bytes([p[2], p[3], p[4], p[5]]);
            match key {
                0x2 if value > 1 => {
                    return Err(ConnError(PROTOCOL_ERROR, "SETTINGS_ENABLE_PUSH above 1"));
                }
                0x8 if value > 1 => {
                    return Err(ConnError(
                        PROTOCOL_ERROR,
                        "SETTINGS_ENABLE_CONNECT_PROTOCOL above 1",
                    ));
                }
                0x4 => {
                    let value = i64::from(value);
                    if value > MAX_WINDOW {
                        return Err(ConnError(FLOW_CONTROL_ERROR, "initial window too large"));
                    }
                    let delta = value - self.peer_initial_window;
                    for s in &mut self.streams {
                        s.send_window += delta;
                        if s.send_window > MAX_WINDOW {
                            return Err(ConnError(FLOW_CONTROL_ERROR, "stream window too large"));
                        }
                    }
                    self.peer_initial_window = value;
                }
                0x5 => {
                    if !(16_384..=16_777_215).contains(&value) {
                        return Err(ConnError(
                            PROTOCOL_ERROR,
                            "SETTINGS_MAX_FRAME_SIZE out of range",
                        ));
                    }
                    self.peer_max_frame = value as usize;
                }
                // The header table size is not needed (the encoder indexes nothing), and
                // neither are the others here.
                _ => {}
            }
        }
        self.settings_seen = true;
        frame_head(&mut self.wbuf, 0, SETTINGS, ACK, 0);
        Ok(())
    }

    fn on_window_update(&mut self, id: u32, payload: &[u8]) -> Result<(), ConnError> {
        if payload.len() != 4 {
            return Err(ConnError(
                FRAME_SIZE_ERROR,
                "WINDOW_UPDATE of the wrong size",
            ));
        }
        let inc = i64::from(
            u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & 0x7fff_ffff,
        );
        if id == 0 {
            if inc == 0 {
                return Err(ConnError(PROTOCOL_ERROR, "WINDOW_UPDATE of 0"));
            }
            self.send_window += inc;
            if self.send_window > MAX_WINDOW {
                return Err(ConnError(FLOW_CONTROL_ERROR, "connection window too large"));
            }
            return Ok(());
        }
        match self.find(id) {
            None if id > self.max_seen => {
                Err(ConnError(PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream"))
            }
            None => Ok(()),
            Some(i) => {
                if inc == 0 {
                    self.reset(id, PROTOCOL_ERROR);
                    return Ok(());
                }
                let s = &mut self.streams[i];
                s.send_window += inc;
                if s.send_window > MAX_WINDOW {
                    self.reset(id, FLOW_CONTROL_ERROR);
                }
                Ok(())
            }
        }
    }

    fn on_data(&mut self, flags: u8, id: u32, payload: Bytes) -> Result<(), ConnError> {
        if id == 0 {
            return Err(ConnError(PROTOCOL_ERROR, "DATA on stream 0"));
        }
        let len = payload.len();
        self.recv_window -= len as i64;
        if self.recv_window < 0 {
            return Err(ConnError(
                FLOW_CONTROL_ERROR,
                "DATA beyond the connection window",
            ));
        }
        let end = flags & END_STREAM != 0;
        if len == 0 && !end {
            self.empty_frames += 1;
            if self.empty_frames > EMPTY_FRAMES_ALLOWED {
                return Err(ConnError(ENHANCE_YOUR_CALM, "too many empty DATA frames"));
            }
        }
        let data = unpad(payload, flags, false)?;
        let Some(i) = self.find(id) else {
            if id > self.max_seen {
                return Err(ConnError(PROTOCOL_ERROR, "DATA on an idle stream"));
            }
            // A stream already closed (reset, or answered): its data is dropped, and the
            // connection's window given back.
            self.conn_credit += len as u32;
            return Ok(());
        };
        let s = &mut self.streams[i];
        let Some(inbound) = s.inbound.clone().filter(|_| s.recv_open) else {
            self.conn_credit += len as u32;
            self.reset(id, STREAM_CLOSED);
            return Ok(());
        };
        s.recv_window -= len as i64;
        if s.recv_window < 0 {
            self.conn_credit += len as u32;
            self.reset(id, FLOW_CONTROL_ERROR);
            return Ok(());
        }
        // Padding is given back at once.
        let padding = (len - data.len()) as u32;
        s.credit += padding;
        s.received += data.len() as u64;
        self.conn_credit += padding;
        let too_long = s.content_length.is_some_and(|n| s.received > n);
        let short = end && s.content_length.is_some_and(|n| s.received != n);
        if too_long || short {
            self.conn_credit += data.len() as u32;
            self.reset(id, PROTOCOL_ERROR);
            return Ok(());
        }
        if !data.is_empty() {
            let mut st = inbound.lock();
            if st.dropped {
                // Nobody reads the body any more: its data is discarded and given back.
                drop(st);
                self.conn_credit += data.len() as u32;
                s.credit += data.len() as u32;
            } else {
                st.chunks.push_back(data);
                if let Some(w) = st.reader.take() {
                    drop(st);
                    w.wake();
                }
            }
        }
        if end {
            s.recv_open = false;
            inbound.finish(End::Done(None));
            if s.done() {
                self.remove(i);
            }
        }
        Ok(())
    }

    fn on_header_block(
        &mut self,
        id: u32,
        end_stream: bool,
        block: Bytes,
    ) -> Result<(), ConnError> {
        if let Some(i) = self.find(id) {
            return self.on_trailers(i, end_stream, &block);
        }
        let mut req = ReqBuilder::new(self.max_header_list);
        self.decoder
            .decode(&block, |n, v| req.field(n, v))
            .map_err(|e| ConnError(COMPRESSION_ERROR, e.0))?;
        if id <= self.max_seen {
            // A stream already closed: the block was decoded only to keep the table in step.
            return Ok(());
        }
        self.max_seen = id;
        if self.goaway.is_some() || self.peer_goaway {
            return Ok(());
        }
        if self.streams.len() >= MAX_STREAMS {
            self.rst(id, REFUSED_STREAM);
            return Ok(());
        }
        self.opened += 1;
        if req.size > self.max_header_list {
            let mut block = BytesMut::with_capacity(4);
            hpack::encode_status(&mut block, 431);
            self.write_headers(id, &block, true);
            if !end_stream {
                self.rst(id, NO_ERROR);
            }
            return Ok(());
        }
        let (mut request, length) = match req.finish(end_stream) {
            Ok(r) => r,
            Err(why) => {
                tracing::debug!(peer = %self.info.peer, stream = id, error = why, "malformed HTTP/2 request");
                self.rst(id, PROTOCOL_ERROR);
                return Ok(());
            }
        };
        let inbound = (!end_stream).then(|| {
            Arc::new(Inbound {
                state: Mutex::new(InState::default()),
                conn: self.waker.clone(),
            })
        });
        if let Some(inbound) = &inbound {
            *request.body_mut() = ClientBody::H2(H2Body {
                inbound: inbound.clone(),
                length,
            });
        }
        let entry = &self.info.entry;
        let deadline = entry.write_timeout.map(|t| Instant::now() + t);
        // A tunnel lives as long as both sides want: the write timeout bounds its head only.
        let tunnel = request.extensions().get::<ExtendedConnect>().is_some();
        let answer = handle(self.shared.clone(), self.info.clone(), self.tls, request);
        let handler: Handler = Box::pin(async move {
            let resp = match deadline {
                None => answer.await.ok(),
                Some(at) => match tokio::time::timeout_at(at, answer).await {
                    Ok(Ok(resp)) if tunnel => Some(resp),
                    Ok(Ok(resp)) => Some(crate::h1_server::Deadline::bound(resp, at)),
                    _ => None,
                },
            };
            (id, resp)
        });
        let (abort, registration) = AbortHandle::new_pair();
        self.handlers.push(Abortable::new(handler, registration));
        self.streams.push(Stream {
            id,
            inbound,
            recv_open: !end_stream,
            recv_window: i64::from(WINDOW),
            credit: 0,
            content_length: length,
            received: 0,
            send_window: self.peer_initial_window,
            abort: Some(abort),
            body: None,
            pending: None,
            sent_end: false,
            failed: false,
        });
        // Keep-alive budgets end an HTTP/2 connection with GOAWAY once its streams are done.
        if (entry.keep_alive_max_requests > 0 && self.opened >= entry.keep_alive_max_requests)
            || entry
                .keep_alive_max_time
                .is_some_and(|t| self.started.elapsed() >= t)
        {
            self.go_away(NO_ERROR);
        }
        Ok(())
    }

    fn on_trailers(&mut self, i: usize, end_stream: bool, block: &Bytes) -> Result<(), ConnError> {
        let mut trailers = HeaderMap::new();
        let mut bad = false;
        let mut size = 0;
        self.decoder
            .decode(block, |n, v| {
                size += v.len() + 32;
                match n {
                    hpack::Name::Header(h) if !connection_specific(h) => {
                        size += h.as_str().len();
                        match HeaderValue::from_maybe_shared(v.clone()) {
                            Ok(v) => {
                                trailers.append(h.clone(), v);
                            }
                            Err(_) => bad = true,
                        }
                    }
                    _ => bad = true,
                }
            })
            .map_err(|e| ConnError(COMPRESSION_ERROR, e.0))?;
        let s = &mut self.streams[i];
        let id = s.id;
        let Some(inbound) = s.inbound.clone().filter(|_| s.recv_open) else {
            self.reset(id, STREAM_CLOSED);
            return Ok(());
        };
        if bad
            || !end_stream
            || size > self.max_header_list
            || s.content_length.is_some_and(|n| s.received != n)
        {
            self.reset(id, PROTOCOL_ERROR);
            return Ok(());
        }
        s.recv_open = false;
        inbound.finish(End::Done(Some(trailers)));
        if s.done() {
            self.remove(i);
        }
        Ok(())
    }

    /// Writes a header block as HEADERS and as many CONTINUATION frames as it takes.
    fn write_headers(&mut self, id: u32, block: &[u8], end_stream: bool) {
        let max = self.peer_max_frame;
        let mut chunks = block.chunks(max);
        let first = chunks.next().unwrap_or(&[]);
        let more = block.len() > max;
        let flags = if more { 0 } else { END_HEADERS } | if end_stream { END_STREAM } else { 0 };
        frame_head(&mut self.wbuf, first.len(), HEADERS, flags, id);
        self.wbuf.extend_from_slice(first);
        let mut rest = chunks.peekable();
        while let Some(c) = rest.next() {
            let last = rest.peek().is_none();
            frame_head(
                &mut self.wbuf,
                c.len(),
                CONTINUATION,
                if last { END_HEADERS } else { 0 },
                id,
            );
            self.wbuf.extend_from_slice(c);
        }
    }

    /// Sends a stream's response head (or resets it when the request path failed).
    fn respond(&mut self, id: u32, resp: Option<Response<Body>>) {
        let Some(i) = self.find(id) else { return };
        self.streams[i].abort = None;
        let Some(resp) = resp else {
            self.reset(id, INTERNAL_ERROR);
            return;
        };
        let (parts, body) = resp.into_parts();
        let mut block = std::mem::take(&mut self.scratch);
        block.clear();
        hpack::encode_status(&mut block, parts.status.as_u16());
        for (name, value) in &parts.headers {
            if !connection_specific(name) && name != header::TE {
                hpack::encode_field(&mut block, name, value);
            }
        }
        let end = body.is_end_stream();
        self.write_headers(id, &block, end);
        self.scratch = block;
        let s = &mut self.streams[i];
        if end {
            s.sent_end = true;
            self.finish_sent(i);
        } else {
            s.body = Some(body);
        }
    }

    /// After a stream's END_STREAM went out: it is gone if the client is done too; if the
    /// client is still sending, it is asked to stop (RST_STREAM with NO_ERROR).
    fn finish_sent(&mut self, i: usize) {
        let s = &self.streams[i];
        if s.recv_open {
            let id = s.id;
            self.rst(id, NO_ERROR);
            self.remove(i).cancel(NO_ERROR);
        } else {
            self.remove(i);
        }
    }

    /// Gives back the window of consumed request bodies.
    fn credit(&mut self) {
        for s in &mut self.streams {
            let Some(inbound) = &s.inbound else { continue };
            let mut st = inbound.lock();
            let n = std::mem::take(&mut st.consumed) as u32;
            drop(st);
            s.credit += n;
            self.conn_credit += n;
            if s.recv_open && s.credit >= WINDOW / 2 {
                frame_head(&mut self.wbuf, 4, WINDOW_UPDATE, 0, s.id);
                self.wbuf.put_u32(s.credit);
                s.recv_window += i64::from(s.credit);
                s.credit = 0;
            }
        }
        if self.conn_credit >= WINDOW / 2 {
            frame_head(&mut self.wbuf, 4, WINDOW_UPDATE, 0, 0);
            self.wbuf.put_u32(self.conn_credit);
            self.recv_window += i64::from(self.conn_credit);
            self.conn_credit = 0;
        }
    }

    /// Sends what the response bodies have, as far as the windows allow; whether anything
    /// happened.
    fn send_bodies(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        let count = self.streams.len();
        if count == 0 {
            return false;
        }
        // Streams take turns: each call starts one stream further on and gives each at most
        // `TURN` bytes, so one fast body cannot starve the others.
        let start = self.turn % count;
        self.turn = self.turn.wrapping_add(1);
        let mut ended = false;
        for k in 0..count {
            if self.wbuf.len() >= WRITE_HIGH {
                break;
            }
            let i = (start + k) % count;
            let s = &mut self.streams[i];
            let Some(body) = s.body.as_mut() else {
                continue;
            };
            let mut sent = 0;
            loop {
                if let Some((data, last)) = &mut s.pending {
                    let room = s.send_window.min(self.send_window).max(0) as usize;
                    let n = data.len().min(room).min(self.peer_max_frame);
                    if n == 0 && !data.is_empty() {
                        break;
                    }
                    let chunk = data.split_to(n);
                    let end = data.is_empty() && *last;
                    frame_head(
                        &mut self.wbuf,
                        n,
                        DATA,
                        if end { END_STREAM } else { 0 },
                        s.id,
                    );
                    self.wbuf.extend_from_slice(&chunk);
                    s.send_window -= n as i64;
                    self.send_window -= n as i64;
                    sent += n;
                    progress = true;
                    if data.is_empty() {
                        s.pending = None;
                        if end {
                            s.sent_end = true;
                            break;
                        }
                    }
                    if self.wbuf.len() >= WRITE_HIGH || sent >= TURN {
                        break;
                    }
                    continue;
                }
                if s.send_window <= 0 || self.send_window <= 0 {
                    break;
                }
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Pending => break,
                    Poll::Ready(None) => {
                        frame_head(&mut self.wbuf, 0, DATA, END_STREAM, s.id);
                        s.sent_end = true;
                        progress = true;
                        break;
                    }
                    Poll::Ready(Some(Err(e))) => {
                        tracing::debug!(peer = %self.info.peer, stream = s.id, error = %e, "response body failed");
                        s.failed = true;
                        break;
                    }
                    Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => {
                            let last = body.is_end_stream();
                            if !data.is_empty() || last {
                                s.pending = Some((data, last));
                            }
                        }
                        Err(frame) => {
                            if let Ok(trailers) = frame.into_trailers() {
                                let mut block = std::mem::take(&mut self.scratch);
                                block.clear();
                                for (name, value) in &trailers {
                                    if !connection_specific(name) {
                                        hpack::encode_field(&mut block, name, value);
                                    }
                                }
                                let id = s.id;
                                s.sent_end = true;
                                self.write_headers(id, &block, true);
                                self.scratch = block;
                                progress = true;
                                break;
                            }
                        }
                    },
                }
            }
            let s = &self.streams[i];
            ended |= s.failed || s.sent_end;
        }
        if ended {
            // Streams that ended or failed go, now that the turn is over.
            let mut i = 0;
            while i < self.streams.len() {
                let s = &mut self.streams[i];
                if s.failed {
                    let id = s.id;
                    self.reset(id, INTERNAL_ERROR);
                } else if s.sent_end && s.body.is_some() {
                    s.body = None;
                    self.finish_sent(i);
                } else {
                    i += 1;
                }
            }
            progress = true;
        }
        progress
    }
}

/// Marks a request that came as an extended CONNECT (RFC 8441): the upstream is asked to
/// switch protocols, and the stream's DATA frames then carry the tunnel both ways.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ExtendedConnect;

/// A token character (RFC 9110 section 5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A fresh `Sec-WebSocket-Key`: 16 random octets in base64 (RFC 6455 section 4.1).
fn websocket_key() -> Result<HeaderValue, &'static str> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut raw = [0u8; 18];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut raw[..16])
        .map_err(|_| "no random octets for a WebSocket key")?;
    let mut key = [0u8; 24];
    for (i, c) in raw.chunks_exact(3).enumerate() {
        let n = u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]);
        for j in 0..4 {
            key[i * 4 + j] = ALPHABET[((n >> (18 - 6 * j)) & 63) as usize];
        }
    }
    // 16 octets end with one of padding's two forms: two characters and "==".
    key[22] = b'=';
    key[23] = b'=';
    HeaderValue::from_bytes(&key).map_err(|_| "an invalid WebSocket key")
}

/// A request being built from its decoded header fields.
struct ReqBuilder {
    method: Option<Bytes>,
    scheme: Option<Bytes>,
    authority: Option<Bytes>,
    path: Option<Bytes>,
    protocol: Option<Bytes>,
    headers: HeaderMap,
    cookies: Option<BytesMut>,
    malformed: Option<&'static str>,
    regular_seen: bool,
    size: usize,
    max: usize,
}

impl ReqBuilder {
    fn new(max: usize) -> ReqBuilder {
        ReqBuilder {
            method: None,
            scheme: None,
            authority: None,
            path: None,
            protocol: None,
            headers: HeaderMap::with_capacity(12),
            cookies: None,
            malformed: None,
            regular_seen: false,
            size: 0,
            max,
        }
    }

    fn bad(&mut self, why: &'static str) {
        self.malformed.get_or_insert(why);
    }

    fn field(&mut self, name: &hpack::Name, value: &Bytes) {
        use hpack::Name;
        self.size += value.len() + 32;
        if self.size > self.max {
            // Only the size matters now: the answer is 431.
            return;
        }
        let pseudo = match name {
            Name::Method => Some(&mut self.method),
            Name::Scheme => Some(&mut self.scheme),
            Name::Authority => Some(&mut self.authority),
            Name::Path => Some(&mut self.path),
            Name::Protocol => Some(&mut self.protocol),
            Name::Status | Name::OtherPseudo => {
                self.bad("a pseudo-header a request cannot carry");
                return;
            }
            Name::Invalid => {
                self.bad("an invalid or upper-case field name");
                return;
            }
            Name::Header(_) => None,
        };
        if let Some(slot) = pseudo {
            if self.regular_seen {
                self.bad("a pseudo-header after a regular field");
            } else if slot.is_some() {
                self.bad("a repeated pseudo-header");
            } else {
                *slot = Some(value.clone());
            }
            return;
        }
        let Name::Header(h) = name else { return };
        self.regular_seen = true;
        self.size += h.as_str().len();
        if connection_specific(h) {
            return self.bad("a connection-specific header field");
        }
        if h == header::TE && value.as_ref() != b"trailers" {
            return self.bad("te other than trailers");
        }
        let edge = |b: &u8| *b == b' ' || *b == b'\t';
        if value.first().is_some_and(edge) || value.last().is_some_and(edge) {
            return self.bad("a field value with surrounding whitespace");
        }
        let Ok(v) = HeaderValue::from_maybe_shared(value.clone()) else {
            return self.bad("a field value with invalid bytes");
        };
        if h == header::COOKIE {
            // Cookie crumbs are joined into one field (RFC 9113 section 8.2.3).
            match &mut self.cookies {
                None => self.cookies = Some(BytesMut::from(value.as_ref())),
                Some(c) => {
                    c.extend_from_slice(b"; ");
                    c.extend_from_slice(value);
                }
            }
            return;
        }
        self.headers.append(h.clone(), v);
    }

    /// The request, and its declared body length.
    fn finish(
        mut self,
        end_stream: bool,
    ) -> Result<(Request<ClientBody>, Option<u64>), &'static str> {
        if let Some(why) = self.malformed {
            return Err(why);
        }
        let method = self.method.take().ok_or("no :method")?;
        let method = Method::from_bytes(&method).map_err(|_| "an invalid :method")?;
        let mut parts = http::uri::Parts::default();
        if let Some(a) = self.authority.take() {
            let a = Authority::from_maybe_shared(a).map_err(|_| "an invalid :authority")?;
            if a.as_str().contains('@') {
                return Err("userinfo in :authority");
            }
            if let Some(host) = self.headers.get(header::HOST) {
                if !host.as_bytes().eq_ignore_ascii_case(a.as_str().as_bytes()) {
                    return Err(":authority and host differ");
                }
            }
            parts.authority = Some(a);
        }
        let protocol = self.protocol.take();
        if protocol.is_some() && (method != Method::CONNECT || parts.authority.is_none()) {
            return Err(":protocol other than on a CONNECT with :authority");
        }
        if method == Method::CONNECT && protocol.is_none() {
            if self.scheme.is_some() || self.path.is_some() || parts.authority.is_none() {
                return Err("a CONNECT request not of the authority form");
            }
        } else {
            let scheme = self.scheme.take().ok_or("no :scheme")?;
            let path = self.path.take().ok_or("no :path")?;
            if path.is_empty() {
                return Err("an empty :path");
            }
            if path.as_ref() == b"*" && method != Method::OPTIONS {
                return Err(":path * for a method other than OPTIONS");
            }
            if path[0] != b'/' && path.as_ref() != b"*" {
                return Err("a :path that is not absolute");
            }
            parts.path_and_query =
                Some(PathAndQuery::from_maybe_shared(path).map_err(|_| "an invalid :path")?);
            if parts.authority.is_some() {
                parts.scheme =
                    Some(Scheme::try_from(&scheme[..]).map_err(|_| "an invalid :scheme")?);
            }
        }
        let uri = Uri::from_parts(parts).map_err(|_| "an invalid target")?;
        if let Some(c) = self.cookies.take() {
            let v = HeaderValue::from_maybe_shared(c.freeze()).map_err(|_| "an invalid cookie")?;
            self.headers.append(header::COOKIE, v);
        }
        let mut length = None;
        for v in self.headers.get_all(header::CONTENT_LENGTH) {
            let n = std::str::from_utf8(v.as_bytes())
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or("an invalid content-length")?;
            if length.is_some_and(|l| l != n) {
                return Err("content-length values that differ");
            }
            length = Some(n);
        }
        if end_stream && length.is_some_and(|n| n != 0) {
            return Err("content-length without a body");
        }
        let mut req = Request::new(ClientBody::Empty);
        *req.method_mut() = method;
        if let Some(protocol) = protocol {
            // An extended CONNECT (RFC 8441) goes upstream as the HTTP/1.1 upgrade it stands
            // for: a GET asking to switch to the protocol; its stream is then the tunnel.
            let Ok(upgrade) = HeaderValue::from_maybe_shared(protocol) else {
                return Err("an invalid :protocol");
            };
            if upgrade.is_empty() || !upgrade.as_bytes().iter().all(|b| is_tchar(*b)) {
                return Err("an invalid :protocol");
            }
            let websocket = upgrade.as_bytes().eq_ignore_ascii_case(b"websocket");
            if websocket && !self.headers.contains_key(header::SEC_WEBSOCKET_KEY) {
                // HTTP/2 WebSocket clients send no key; an HTTP/1.1 server needs one.
                self.headers
                    .insert(header::SEC_WEBSOCKET_KEY, websocket_key()?);
            }
            self.headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            self.headers.insert(header::UPGRADE, upgrade);
            *req.method_mut() = Method::GET;
            req.extensions_mut().insert(ExtendedConnect);
        }
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_2;
        *req.headers_mut() = self.headers;
        Ok((req, length))
    }
}

#[cfg(test)]
mod tests;

/// Runs one connection on an in-memory pipe: `input` is everything the client sends after
/// the preface, and the client stops sending (but keeps reading) once it is written. The
/// proxy has no routes, so each request is answered 404 by the request path. What edgeplane
/// wrote comes back when it closes the connection (or after 5 s). For fuzzing and tests.
#[doc(hidden)]
pub async fn exchange(input: &[u8], hold_open: std::time::Duration) -> Vec<u8> {
    use tokio::io::AsyncReadExt as _;
    let shared = Arc::new(Shared::new(crate::metrics::Metrics::default(), None));
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let entry = Arc::new(crate::server::EntryPointConfig::new("fuzz", any));
    let metrics = shared.metrics.entry_point("fuzz");
    let open = (metrics.open_connection(), None);
    let info = Arc::new(ConnInfo::new(any, 80, entry, metrics, open));
    let (client, server) = tokio::io::duplex(64 * 1024);
    let (_drain, drain_rx) = watch::channel(false);
    let conn = tokio::spawn(serve(server, Bytes::new(), shared, info, false, drain_rx));
    let (mut rd, mut wr) = tokio::io::split(client);
    let send = async {
        let _ = wr.write_all(PREFACE).await;
        let _ = wr.write_all(input).await;
        tokio::time::sleep(hold_open).await;
        let _ = wr.shutdown().await;
    };
    let mut out = Vec::new();
    let recv = rd.read_to_end(&mut out);
    let _ = tokio::time::timeout(Duration::from_secs(5), async { tokio::join!(send, recv) }).await;
    let mut conn = conn;
    if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(1), &mut conn).await {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    conn.abort();
    out
}

/// A frame's type, flags, stream and payload.
#[doc(hidden)]
pub type RawFrame = (u8, u8, u32, Vec<u8>);

/// Splits what a server wrote into frames (type, flags, stream, payload); `None` when it is
/// not a well-formed sequence of frames no larger than the protocol's default.
#[doc(hidden)]
pub fn frames(mut out: &[u8]) -> Option<Vec<RawFrame>> {
    let mut all = Vec::new();
    while !out.is_empty() {
        let (len, ty, flags, id) = frame_header(out)?;
        if len > MAX_FRAME || out.len() < 9 + len {
            return None;
        }
        all.push((ty, flags, id, out[9..9 + len].to_vec()));
        out = &out[9 + len..];
    }
    Some(all)
}
