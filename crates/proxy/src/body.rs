//! The body of a request sent upstream: the client's, streamed as it comes (the usual case,
//! no allocation), or buffered because mirrors get a copy (whole, or its first bytes followed
//! by the rest of the stream when it outgrew the mirroring limit).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::h1::BoxError;

/// A client's request body: none, read whole with its head by edgeplane's own HTTP/1.1 side
/// (`None` once taken), hyper's stream, or a stream of edgeplane's own HTTP/2 side.
pub enum ClientBody {
    Empty,
    Full(Option<Bytes>),
    Hyper(Incoming),
    H2(crate::h2::H2Body),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ClientBody::Empty => Poll::Ready(None),
            ClientBody::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
            ClientBody::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            ClientBody::H2(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Empty => true,
            ClientBody::Full(b) => b.is_none(),
            ClientBody::Hyper(b) => b.is_end_stream(),
            ClientBody::H2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Empty => SizeHint::with_exact(0),
            ClientBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |d| d.len() as u64)),
            ClientBody::Hyper(b) => b.size_hint(),
            ClientBody::H2(b) => b.size_hint(),
        }
    }
}

/// A request body on its way upstream.
pub enum RequestBody {
    Streamed(ClientBody),
    /// Buffered whole; `None` once sent.
    Buffered(Option<Bytes>),
    /// Buffered bytes, then the rest of the client's stream.
    Prefixed {
        head: Option<Bytes>,
        rest: ClientBody,
    },
}

impl RequestBody {
    /// The whole body when it is already in memory and at most `max` bytes (taken out, so
    /// the body is then empty); `None`, leaving it as it was, when it is still to be read
    /// from the client or larger.
    pub(crate) fn take_whole(&mut self, max: usize) -> Option<Bytes> {
        let slot = match self {
            RequestBody::Streamed(ClientBody::Empty) => return Some(Bytes::new()),
            RequestBody::Streamed(ClientBody::Hyper(b)) => {
                return b.is_end_stream().then(Bytes::new);
            }
            RequestBody::Streamed(ClientBody::H2(b)) => return b.take_whole(max),
            RequestBody::Streamed(ClientBody::Full(b)) | RequestBody::Buffered(b) => b,
            RequestBody::Prefixed { .. } => return None,
        };
        if slot.as_ref().is_some_and(|d| d.len() > max) {
            return None;
        }
        Some(slot.take().unwrap_or_default())
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            RequestBody::Streamed(b) => Pin::new(b).poll_frame(cx),
            RequestBody::Buffered(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
            RequestBody::Prefixed { head, rest } => match head.take() {
                Some(d) => Poll::Ready(Some(Ok(Frame::data(d)))),
                None => Pin::new(rest).poll_frame(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Streamed(b) => b.is_end_stream(),
            RequestBody::Buffered(b) => b.is_none(),
            RequestBody::Prefixed { head, rest } => head.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Streamed(b) => b.size_hint(),
            RequestBody::Buffered(b) => {
                SizeHint::with_exact(b.as_ref().map_or(0, |d| d.len() as u64))
            }
            RequestBody::Prefixed { head, rest } => {
                let h = head.as_ref().map_or(0, |d| d.len() as u64);
                let r = rest.size_hint();
                let mut s = SizeHint::new();
                s.set_lower(r.lower() + h);
                if let Some(u) = r.upper() {
                    s.set_upper(u + h);
                }
                s
            }
        }
    }
}

/// Reads up to `limit` bytes of `body`: the whole body when it fits, else what was read and
/// the rest of the stream.
pub(crate) async fn buffer(
    mut body: ClientBody,
    limit: u64,
) -> Result<Result<Bytes, (Bytes, ClientBody)>, BoxError> {
    use http_body_util::BodyExt;
    let mut buf = bytes::BytesMut::new();
    loop {
        match body.frame().await {
            None => return Ok(Ok(buf.freeze())),
            Some(Err(e)) => return Err(e),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                    if buf.len() as u64 > limit {
                        return Ok(Err((buf.freeze(), body)));
                    }
                }
                // Trailers are not mirrored (and not kept for a buffered body).
            }
        }
    }
}
