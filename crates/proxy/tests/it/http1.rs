//! The HTTP/1.1 entry-point side, over raw sockets on both ends: keep-alive and pipelining,
//! small bodies read with their heads, the hand-over to hyper for requests with large or
//! chunked bodies (and back-to-back on one connection),
//! response framing from every kind of backend body, head timeouts, draining, and garbage.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proxy::{EntryPointConfig, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::simple;

/// A backend that answers by path, with framings a general-purpose server would not choose.
async fn raw_backend() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(end) = find(&buf, b"\r\n\r\n") else {
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    let length = header(&head, "content-length")
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    while buf.len() < end + 4 + length {
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body = buf[end + 4..end + 4 + length].to_vec();
                    buf.drain(..end + 4 + length);
                    let line = head.lines().next().unwrap_or("").to_string();
                    let path = line.split(' ').nth(1).unwrap_or("/").to_string();
                    let answer: Vec<u8> = match path.as_str() {
                        "/len" => b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello".to_vec(),
                        "/echo-head" => {
                            let text = format!("{head}\r\n\r\n{}", String::from_utf8_lossy(&body));
                            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{text}", text.len())
                                .into_bytes()
                        }
                        "/chunked" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\nx-sum: 5\r\n\r\n".to_vec(),
                        "/nocontent" => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
                        "/head" => b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n".to_vec(),
                        "/big" => {
                            let mut out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
                            for i in 0..32u8 {
                                out.extend_from_slice(b"10000\r\n");
                                out.extend(std::iter::repeat_n(b'a' + (i % 26), 65536));
                                out.extend_from_slice(b"\r\n");
                            }
                            out.extend_from_slice(b"0\r\n\r\n");
                            out
                        }
                        "/sleep" => {
                            tokio::time::sleep(Duration::from_secs(3)).await;
                            b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nlate".to_vec()
                        }
                        "/stall" => {
                            let head = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello";
                            if s.write_all(head).await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_secs(3)).await;
                            b"world".to_vec()
                        }
                        "/close" | "/broken" => {
                            let answer: &[u8] = if path == "/close" {
                                b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nread until the end"
                            } else {
                                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel"
                            };
                            let _ = s.write_all(answer).await;
                            return;
                        }
                        _ => {
                            let text = format!("{line}\nbody={}\n", String::from_utf8_lossy(&body));
                            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{text}", text.len())
                                .into_bytes()
                        }
                    };
                    if s.write_all(&answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// The length of a body too large for edgeplane's side to read whole with its head.
const LARGE: usize = 64 * 1024 + 1;

/// A POST to `path` whose body (`LARGE` bytes of `fill`) is read by hyper.
fn large_post(path: &str, fill: char) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {LARGE}\r\n\r\n{}",
        fill.to_string().repeat(LARGE)
    )
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A header's value in a head (names compared without case).
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// One response read off `s`: its head, its body, and its trailers (chunked), framed as its
/// headers say; `buf` keeps what was read past it. `None` when the connection closed before
/// a whole response came.
async fn response(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    head_request: bool,
) -> Option<(String, Vec<u8>, String)> {
    async fn more(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
        let mut chunk = vec![0u8; 65536];
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                buf.extend_from_slice(&chunk[..n]);
                true
            }
            _ => false,
        }
    }
    let end = loop {
        if let Some(e) = find(buf, b"\r\n\r\n") {
            break e;
        }
        if !more(s, buf).await {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end + 4);
    let status: u16 = head.split(' ').nth(1).and_then(|c| c.parse().ok())?;
    if head_request || status == 204 || status == 304 {
        return Some((head, Vec::new(), String::new()));
    }
    if let Some(n) = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        while buf.len() < n {
            if !more(s, buf).await {
                return None;
            }
        }
        let body = buf.drain(..n).collect();
        return Some((head, body, String::new()));
    }
    if header(&head, "transfer-encoding").as_deref() == Some("chunked") {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(e) = find(buf, b"\r\n") {
                    break e;
                }
                if !more(s, buf).await {
                    return None;
                }
            };
            let size =
                usize::from_str_radix(String::from_utf8_lossy(&buf[..line_end]).trim(), 16).ok()?;
            buf.drain(..line_end + 2);
            if size == 0 {
                let end = loop {
                    if buf.starts_with(b"\r\n") {
                        break 0;
                    }
                    if let Some(e) = find(buf, b"\r\n\r\n") {
                        break e + 2;
                    }
                    if !more(s, buf).await {
                        return None;
                    }
                };
                let trailers = String::from_utf8_lossy(&buf[..end]).into_owned();
                buf.drain(..end + 2);
                return Some((head, body, trailers));
            }
            while buf.len() < size + 2 {
                if !more(s, buf).await {
                    return None;
                }
            }
            body.extend(buf.drain(..size));
            buf.drain(..2);
        }
    }
    // Neither: the body runs to the connection's end.
    while more(s, buf).await {}
    Some((head, std::mem::take(buf), String::new()))
}

/// Sends `request` on a new connection and reads until it closes (at most 5 s): what came,
/// and how long after the request it took.
async fn until_closed(web: SocketAddr, request: &str) -> (Vec<u8>, Duration) {
    let mut s = TcpStream::connect(web).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let started = Instant::now();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    (got, started.elapsed())
}

/// The answer says `connection: close`, and the connection is then closed.
async fn said_last(head: &str, s: &mut TcpStream) {
    assert_eq!(
        header(head, "connection").as_deref(),
        Some("close"),
        "{head}"
    );
    assert!(closed_within(s, Duration::from_secs(2)).await, "{head}");
}

/// Whether the peer closed `s` within `limit` (reading and dropping what comes first).
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

/// Sends `method path` on `s` and reads the answer.
async fn ask(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    method: &str,
    path: &str,
) -> (String, Vec<u8>, String) {
    s.write_all(format!("{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("write");
    response(s, buf, method == "HEAD").await.expect("answer")
}

/// A proxy whose `web` entry point waits `timeout` for heads and for the next request, routing everything to
/// `backend`; and that entry point's address.
async fn proxy_to(backend: SocketAddr, timeout: Duration) -> (Proxy, SocketAddr) {
    proxy_with(backend, |web| {
        web.read_header_timeout = timeout;
        web.idle_timeout = timeout;
    })
    .await
}

/// A proxy whose `web` entry point is set up by `setup`, routing everything to `backend`.
async fn proxy_with(
    backend: SocketAddr,
    setup: impl FnOnce(&mut EntryPointConfig),
) -> (Proxy, SocketAddr) {
    let mut web = EntryPointConfig::new("web", "127.0.0.1:0".parse().expect("literal"));
    setup(&mut web);
    let p = Proxy::start(vec![web]).await.expect("proxy starts");
    p.apply(&simple("PathPrefix(`/`)", backend));
    let addr = p.local_addr("web").expect("web");
    (p, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_pipelining_and_hand_over_on_one_connection() {
    let backend = raw_backend().await;
    let (p, web) = proxy_to(backend, Duration::from_secs(10)).await;
    let mut s = TcpStream::connect(web).await.expect("connect");
    let mut buf = Vec::new();
    // Three requests in one write: three answers, in order.
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b?q=1 HTTP/1.1\r\nHost: x\r\n\r\nDELETE /c HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .await
        .expect("write");
    for line in [
        "GET /a HTTP/1.1",
        "GET /b?q=1 HTTP/1.1",
        "DELETE /c HTTP/1.1",
    ] {
        let (head, body, _) = response(&mut s, &mut buf, false).await.expect("answer");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            header(&head, "date").is_some_and(|d| d.ends_with(" GMT")),
            "{head}"
        );
        assert!(header(&head, "connection").is_none(), "{head}");
        let body = String::from_utf8_lossy(&body).into_owned();
        assert!(body.starts_with(line), "{body}");
    }
    // A request with a body too large to be read whole is handed to hyper, with what was
    // read after it (the next request, in the same write), and the connection goes on
    // being served.
    let mut request = large_post("/post", 'h');
    request.push_str("GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
    s.write_all(request.as_bytes()).await.expect("write");
    let (head, body, _) = response(&mut s, &mut buf, false).await.expect("answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let body = String::from_utf8_lossy(&body).into_owned();
    assert!(body.starts_with("POST /post HTTP/1.1\nbody=hhh"), "{body}");
    assert_eq!(body.len(), "POST /post HTTP/1.1\nbody=\n".len() + LARGE);
    let (_, body, _) = response(&mut s, &mut buf, false).await.expect("answer");
    assert!(body.starts_with(b"GET /after HTTP/1.1"));
    // HTTP/1.0 from the start of a connection: answered by hyper, then closed.
    let mut old = TcpStream::connect(web).await.expect("connect");
    old.write_all(b"GET /old HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut b = Vec::new();
    let (head, body, _) = response(&mut old, &mut b, false).await.expect("answer");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    assert!(
        body.starts_with(b"GET /old HTTP/1.1"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(closed_within(&mut old, Duration::from_secs(2)).await);
    // `Connection: close` from the client: said back, then the connection is closed.
    s.write_all(b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let (head, _, _) = response(&mut s, &mut buf, false).await.expect("answer");
    said_last(&head, &mut s).await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_bodies_are_read_with_their_heads() {
    let backend = raw_backend().await;
    let (p, web) = proxy_to(backend, Duration::from_millis(600)).await;
    let mut s = TcpStream::connect(web).await.expect("connect");
    let mut buf = Vec::new();
    // A body, then the next request in the same write: both answered, in order.
    s.write_all(b"POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /after HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let (head, body, _) = response(&mut s, &mut buf, false).await.expect("answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(
        String::from_utf8_lossy(&body),
        "POST /post HTTP/1.1\nbody=hello\n"
    );
    let (_, body, _) = response(&mut s, &mut buf, false).await.expect("answer");
    assert!(body.starts_with(b"GET /after HTTP/1.1"));
    // A body that comes in pieces, after its head.
    s.write_all(b"PUT /put HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n")
        .await
        .expect("write");
    for piece in [&b"hel"[..], b"lo wo", b"rld"] {
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.write_all(piece).await.expect("write");
    }
    let (_, body, _) = response(&mut s, &mut buf, false).await.expect("answer");
    assert_eq!(
        String::from_utf8_lossy(&body),
        "PUT /put HTTP/1.1\nbody=hello world\n"
    );
    // The largest body read whole, on a GET: sent on with it.
    let most = 64 * 1024;
    let request = format!(
        "GET /most HTTP/1.1\r\nHost: x\r\nContent-Length: {most}\r\n\r\n{}",
        "m".repeat(most)
    );
    s.write_all(request.as_bytes()).await.expect("write");
    let (_, body, _) = response(&mut s, &mut buf, false).await.expect("answer");
    assert_eq!(body.len(), "GET /most HTTP/1.1\nbody=\n".len() + most);
    // The server gets the body framed by one Content-Length of edgeplane's own, whatever the
    // client's looked like.
    s.write_all(b"PATCH /echo-head HTTP/1.1\r\nHost: x\r\nContent-Length:  0005 \r\n\r\nhello")
        .await
        .expect("write");
    let (_, body, _) = response(&mut s, &mut buf, false).await.expect("answer");
    let echoed = String::from_utf8_lossy(&body).into_owned();
    let lengths: Vec<&str> = echoed
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("content-length:"))
        .collect();
    assert_eq!(lengths, ["content-length: 5"], "{echoed}");
    assert!(echoed.ends_with("\r\n\r\nhello"), "{echoed}");
    // The connection is still served after all of them.
    let (_, body, _) = ask(&mut s, &mut buf, "GET", "/len").await;
    assert_eq!(body, b"hello");
    // A body must be whole within the head's time: one cut short is not sent on, and its
    // connection is closed with no answer.
    let (got, took) = until_closed(
        web,
        "POST /short HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello",
    )
    .await;
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert!(
        (Duration::from_millis(400)..Duration::from_secs(3)).contains(&took),
        "{took:?}"
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_framed_as_their_bodies_are() {
    let backend = raw_backend().await;
    let (p, web) = proxy_to(backend, Duration::from_secs(10)).await;
    let mut s = TcpStream::connect(web).await.expect("connect");
    let mut buf = Vec::new();
    // A length: kept.
    let (head, body, _) = ask(&mut s, &mut buf, "GET", "/len").await;
    assert_eq!(header(&head, "content-length").as_deref(), Some("5"));
    assert_eq!(body, b"hello");
    // Chunks: passed on chunked, trailers included.
    let (head, body, trailers) = ask(&mut s, &mut buf, "GET", "/chunked").await;
    assert_eq!(
        header(&head, "transfer-encoding").as_deref(),
        Some("chunked"),
        "{head}"
    );
    assert!(header(&head, "content-length").is_none(), "{head}");
    assert_eq!(body, b"hello");
    assert!(trailers.to_lowercase().contains("x-sum: 5"), "{trailers:?}");
    // 204 and HEAD: no body, and the connection goes on.
    let (head, _, _) = ask(&mut s, &mut buf, "GET", "/nocontent").await;
    assert!(head.starts_with("HTTP/1.1 204"), "{head}");
    assert!(header(&head, "transfer-encoding").is_none(), "{head}");
    let (head, _, _) = ask(&mut s, &mut buf, "HEAD", "/head").await;
    assert_eq!(
        header(&head, "content-length").as_deref(),
        Some("100"),
        "{head}"
    );
    // 2 MiB in 64 KiB chunks, streamed.
    let (_, body, _) = ask(&mut s, &mut buf, "GET", "/big").await;
    assert_eq!(body.len(), 32 * 65536);
    assert!(body
        .chunks(65536)
        .enumerate()
        .all(|(i, c)| c.iter().all(|b| *b == b'a' + (i % 26) as u8)));
    // A body that runs to the server's close: chunked to the client, whose connection stays.
    let (head, body, _) = ask(&mut s, &mut buf, "GET", "/close").await;
    assert_eq!(
        header(&head, "transfer-encoding").as_deref(),
        Some("chunked"),
        "{head}"
    );
    assert_eq!(body, b"read until the end");
    let (_, body, _) = ask(&mut s, &mut buf, "GET", "/len").await;
    assert_eq!(body, b"hello");
    // A body cut short by the server: the client's connection is closed before the last
    // chunk, so the client knows it is incomplete.
    s.write_all(b"GET /broken HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    assert!(response(&mut s, &mut buf, false).await.is_none());
    assert!(
        find(&buf, b"0\r\n\r\n").is_none(),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_must_come_in_time_but_busy_connections_stay() {
    let backend = raw_backend().await;
    let (p, web) = proxy_to(backend, Duration::from_millis(300)).await;
    // Idle after a request: closed once the timeout has passed, not before.
    let mut idle = TcpStream::connect(web).await.expect("connect");
    let mut buf = Vec::new();
    idle.write_all(b"GET /len HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    response(&mut idle, &mut buf, false).await.expect("answer");
    let started = Instant::now();
    assert!(closed_within(&mut idle, Duration::from_secs(3)).await);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250), "{took:?}");
    // A head that never ends: closed too.
    let mut slow = TcpStream::connect(web).await.expect("connect");
    slow.write_all(b"GET /len HTTP/1.1\r\nHo")
        .await
        .expect("write");
    assert!(closed_within(&mut slow, Duration::from_secs(3)).await);
    // A connection with a request every 100 ms lives well past the timeout.
    let mut busy = TcpStream::connect(web).await.expect("connect");
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1200) {
        busy.write_all(b"GET /len HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let answer = response(&mut busy, &mut buf, false).await;
        assert!(answer.is_some(), "closed after {:?}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_closes_idle_connections_and_finishes_requests() {
    let backend = crate::backend::start("a").await;
    let (p, web) = proxy_to(backend, Duration::from_secs(60)).await;
    let mut idle = TcpStream::connect(web).await.expect("connect");
    let mut buf = Vec::new();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    response(&mut idle, &mut buf, false).await.expect("answer");
    let mut busy = TcpStream::connect(web).await.expect("connect");
    busy.write_all(b"GET /slow?ms=600 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let stopping = tokio::spawn(async move {
        p.shutdown().await;
    });
    // The idle one is closed at once; the busy one gets its answer, told the connection
    // closes, and then it does. The drain ends with them, well before the grace period.
    assert!(closed_within(&mut idle, Duration::from_millis(400)).await);
    let mut b = Vec::new();
    let (head, _, _) = response(&mut busy, &mut b, false).await.expect("answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    said_last(&head, &mut busy).await;
    stopping.await.expect("join");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_heads_never_take_the_entry_point_down() {
    let backend = raw_backend().await;
    let (p, web) = proxy_to(backend, Duration::from_millis(500)).await;
    let good = b"GET /len HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n";
    let pieces: [&[u8]; 12] = [
        b"\r\n",
        b" ",
        b":",
        b"\x00",
        b"\xff",
        b"HTTP/1.1",
        b"\r\n\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Content-Length: 3\r\n",
        b"GET ",
        b"/",
        b"\t",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..300 {
        let mut req = good.to_vec();
        for _ in 0..(next() % 4 + 1) {
            let at = (next() as usize) % req.len();
            match next() % 3 {
                0 => {
                    let p = pieces[(next() as usize) % pieces.len()];
                    req.splice(at..at, p.iter().copied());
                }
                1 => {
                    req.remove(at);
                }
                _ => req[at] = next() as u8,
            }
        }
        let mut s = TcpStream::connect(web).await.expect("connect");
        let _ = s.write_all(&req).await;
        let _ = s.shutdown().await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
        let code = String::from_utf8_lossy(&out)
            .split(' ')
            .nth(1)
            .unwrap_or("none")
            .to_string();
        *statuses.entry(code).or_insert(0) += 1;
    }
    // Some were still good requests, some were refused; and the entry point still serves.
    assert!(
        statuses.get("200").copied().unwrap_or(0) > 0,
        "{statuses:?}"
    );
    assert!(
        statuses.get("400").copied().unwrap_or(0) > 0,
        "{statuses:?}"
    );
    let mut s = TcpStream::connect(web).await.expect("connect");
    s.write_all(good).await.expect("write");
    let mut buf = Vec::new();
    let (_, body, _) = response(&mut s, &mut buf, false).await.expect("answer");
    assert_eq!(body, b"hello");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_limits_close_connections_after_their_last_answer() {
    let backend = raw_backend().await;
    let (p, web) = proxy_with(backend, |web| web.keep_alive_max_requests = 3).await;
    // Served here throughout, then handed to hyper after the first request: the count goes
    // on across the hand-over.
    for first in [
        "GET /len HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi".to_string(),
        large_post("/p", 'x'),
    ] {
        let mut s = TcpStream::connect(web).await.expect("connect");
        let mut buf = Vec::new();
        s.write_all(first.as_bytes()).await.expect("write");
        let (head, _, _) = response(&mut s, &mut buf, false).await.expect("answer");
        assert!(header(&head, "connection").is_none(), "{head}");
        let (head, _, _) = ask(&mut s, &mut buf, "GET", "/len").await;
        assert!(header(&head, "connection").is_none(), "{head}");
        let (head, body, _) = ask(&mut s, &mut buf, "GET", "/len").await;
        assert_eq!(body, b"hello");
        said_last(&head, &mut s).await;
    }
    p.shutdown().await;

    let (p, web) = proxy_with(backend, |web| {
        web.keep_alive_max_time = Some(Duration::from_millis(300));
    })
    .await;
    let mut s = TcpStream::connect(web).await.expect("connect");
    let mut buf = Vec::new();
    let (head, _, _) = ask(&mut s, &mut buf, "GET", "/len").await;
    assert!(header(&head, "connection").is_none(), "{head}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (head, _, _) = ask(&mut s, &mut buf, "GET", "/len").await;
    said_last(&head, &mut s).await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_head_timeouts_are_apart() {
    let backend = raw_backend().await;
    // A short idle timeout closes a kept connection long before the head timeout would.
    let (p, web) = proxy_with(backend, |web| {
        web.read_header_timeout = Duration::from_secs(5);
        web.idle_timeout = Duration::from_millis(300);
    })
    .await;
    let mut s = TcpStream::connect(web).await.expect("connect");
    let mut buf = Vec::new();
    ask(&mut s, &mut buf, "GET", "/len").await;
    let started = Instant::now();
    assert!(closed_within(&mut s, Duration::from_secs(3)).await);
    let took = started.elapsed();
    assert!(
        (Duration::from_millis(250)..Duration::from_secs(2)).contains(&took),
        "{took:?}"
    );
    p.shutdown().await;
    // A long idle timeout keeps it past a short head timeout, and a head begun after the
    // idle wait still has to come whole within the head timeout.
    let (p, web) = proxy_with(backend, |web| {
        web.read_header_timeout = Duration::from_millis(300);
        web.idle_timeout = Duration::from_secs(5);
    })
    .await;
    let mut s = TcpStream::connect(web).await.expect("connect");
    ask(&mut s, &mut buf, "GET", "/len").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    ask(&mut s, &mut buf, "GET", "/len").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    s.write_all(b"GET /len HTTP/1.1\r\nHo")
        .await
        .expect("write");
    let started = Instant::now();
    assert!(closed_within(&mut s, Duration::from_secs(3)).await);
    let took = started.elapsed();
    assert!(
        (Duration::from_millis(250)..Duration::from_secs(2)).contains(&took),
        "{took:?}"
    );
    // A head begun behind a pipelined request is due within the head timeout too, not the
    // idle one.
    let mut s = TcpStream::connect(web).await.expect("connect");
    s.write_all(b"GET /len HTTP/1.1\r\nHost: x\r\n\r\nGET /len HTTP/1.1\r\nHo")
        .await
        .expect("write");
    let started = Instant::now();
    assert!(closed_within(&mut s, Duration::from_secs(3)).await);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_timeout_closes_connections_whose_answer_is_late() {
    let backend = raw_backend().await;
    let (p, web) = proxy_with(backend, |web| {
        web.write_timeout = Some(Duration::from_millis(400));
    })
    .await;
    let mut s = TcpStream::connect(web).await.expect("connect");
    let mut buf = Vec::new();
    let (_, body, _) = ask(&mut s, &mut buf, "GET", "/len").await;
    assert_eq!(body, b"hello");
    // Late answers, on edgeplane's side (a GET, a POST with a small body) and on hyper's (a
    // POST with a large body): the connection is closed with no answer, well before the
    // server's 3 s.
    for request in [
        "GET /sleep HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        "POST /sleep HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi".to_string(),
        large_post("/sleep", 's'),
    ] {
        let request = request.as_str();
        let (got, took) = until_closed(web, request).await;
        assert!(
            got.is_empty(),
            "{request}: {}",
            String::from_utf8_lossy(&got)
        );
        assert!(
            (Duration::from_millis(300)..Duration::from_secs(2)).contains(&took),
            "{request}: {took:?}"
        );
    }
    // A body that stalls, on either side: what came is passed on, then the connection closes
    // short of it.
    for request in [
        "GET /stall HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        "POST /stall HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi".to_string(),
        large_post("/stall", 's'),
    ] {
        let request = request.as_str();
        let (got, took) = until_closed(web, request).await;
        assert!(took < Duration::from_secs(2), "{request}: {took:?}");
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 200") && text.ends_with("\r\n\r\nhello"),
            "{request}: {text}"
        );
    }
    p.shutdown().await;
}
