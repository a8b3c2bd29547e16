use super::*;

use std::sync::atomic::AtomicUsize;

use http_body_util::BodyExt;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// A server that answers each request head it reads with the next canned answer (repeating
/// the last one), on connections it counts; `close_after` answers, it closes the connection.
struct Backend {
    authority: Authority,
    accepted: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

async fn backend(answers: Vec<&'static [u8]>, close_after: usize) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let (count, seen) = (accepted.clone(), heads.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let answers = answers.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut n = 0usize;
                loop {
                    let mut chunk = [0u8; 4096];
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = buf.drain(..end + 4).collect();
                        seen.lock()
                            .expect("lock")
                            .push(String::from_utf8_lossy(&head).into_owned());
                        let answer = answers[(n).min(answers.len() - 1)];
                        let _ = s.write_all(answer).await;
                        n += 1;
                        if n >= close_after {
                            return;
                        }
                    }
                }
            });
        }
    });
    Backend {
        authority: Authority::try_from(addr.to_string()).expect("authority"),
        accepted,
        heads,
    }
}

fn get(path: &str) -> http::request::Parts {
    request(Method::GET, path)
}

fn request(method: Method, path: &str) -> http::request::Parts {
    let (mut parts, ()) = http::Request::builder()
        .method(method)
        .uri(path)
        .body(())
        .expect("request")
        .into_parts();
    parts
        .headers
        .insert("x-test", HeaderValue::from_static("yes"));
    parts
}

async fn send(
    pool: &Arc<Pool>,
    server: &Authority,
    req: &http::request::Parts,
) -> Result<Response<UpstreamBody>, SendError> {
    pool.send(server, &req.method, &encode(req, server, b"", &[]), None)
        .await
}

fn pool() -> Arc<Pool> {
    Arc::new(Pool::new(
        8,
        Duration::from_secs(30),
        Duration::from_secs(2),
    ))
}

async fn body_of(resp: Response<UpstreamBody>) -> (Bytes, Option<HeaderMap>) {
    let collected = resp.into_body().collect().await.expect("body");
    let trailers = collected.trailers().cloned();
    (collected.to_bytes(), trailers)
}

#[tokio::test]
async fn lengths_and_chunks_are_read_and_the_connection_kept() {
    let b = backend(
        vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n3;ext=1\r\nabc\r\n10 \r\n0123456789abcdef\r\n0\r\nGrpc-Status: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        ],
        usize::MAX,
    )
    .await;
    let p = pool();
    let r = send(&p, &b.authority, &get("/a?q=1")).await.expect("first");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body_of(r).await.0, "hello");
    let r = send(&p, &b.authority, &get("/b")).await.expect("second");
    assert_eq!(r.headers()["x-a"], "1");
    let (body, trailers) = body_of(r).await;
    assert_eq!(body, "abc0123456789abcdef");
    assert_eq!(trailers.expect("trailers")["grpc-status"], "0");
    let r = send(&p, &b.authority, &get("/c")).await.expect("third");
    assert_eq!(body_of(r).await, (Bytes::from_static(b"hi"), None));
    assert_eq!(
        b.accepted.load(Ordering::SeqCst),
        1,
        "one connection for all three"
    );
    assert_eq!(p.idle_count(), 1);
    let heads = b.heads.lock().expect("lock").clone();
    assert!(heads[0].starts_with("GET /a?q=1 HTTP/1.1\r\n"), "{heads:?}");
    assert!(heads[0].contains(&format!("host: {}\r\n", b.authority)));
    assert!(heads[0].contains("x-test: yes\r\n"));
}

#[tokio::test]
async fn doubtful_framing_closes_the_connection() {
    // Connection: close; HTTP/1.0; read-to-close; Transfer-Encoding beside Content-Length.
    for answer in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"[..],
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    ] {
        let b = backend(vec![answer], usize::MAX).await;
        let p = pool();
        for _ in 0..2 {
            let r = send(&p, &b.authority, &get("/")).await.expect("answer");
            assert!(r.headers().get(header::CONTENT_LENGTH).is_none() || r.headers().get(header::TRANSFER_ENCODING).is_none());
            assert_eq!(body_of(r).await.0, "ok");
        }
        assert_eq!(b.accepted.load(Ordering::SeqCst), 2, "{}", String::from_utf8_lossy(answer));
        assert_eq!(p.idle_count(), 0);
    }
    // Read to the end of the connection.
    let b = backend(vec![b"HTTP/1.1 200 OK\r\n\r\nuntil close"], 1).await;
    let r = send(&pool(), &b.authority, &get("/"))
        .await
        .expect("answer");
    assert_eq!(body_of(r).await.0, "until close");
}

#[tokio::test]
async fn bodiless_answers_and_interim_ones() {
    let b = backend(
        vec![
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ],
        usize::MAX,
    )
    .await;
    let p = pool();
    let r = send(&p, &b.authority, &get("/")).await.expect("204");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(hyper::body::Body::is_end_stream(r.body()));
    let r = send(&p, &b.authority, &request(Method::HEAD, "/"))
        .await
        .expect("HEAD");
    assert_eq!(r.headers()[header::CONTENT_LENGTH], "7");
    assert_eq!(body_of(r).await.0, "");
    let r = send(&p, &b.authority, &get("/")).await.expect("304");
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let r = send(&p, &b.authority, &request(Method::POST, "/"))
        .await
        .expect("POST");
    assert_eq!(body_of(r).await.0, "");
    assert_eq!(b.accepted.load(Ordering::SeqCst), 1);
    let heads = b.heads.lock().expect("lock").clone();
    assert!(
        heads[3].starts_with("POST / HTTP/1.1\r\n") && heads[3].contains("content-length: 0\r\n"),
        "{heads:?}"
    );
}

#[tokio::test]
async fn a_kept_connection_closed_by_the_server_is_replaced() {
    // Each connection answers once and closes: the second GET finds its kept connection
    // closed and is sent again on a new one; a POST checks the connection before using it.
    let b = backend(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"], 1).await;
    let p = pool();
    for method in [Method::GET, Method::GET, Method::POST, Method::DELETE] {
        let r = send(&p, &b.authority, &request(method.clone(), "/"))
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        assert_eq!(body_of(r).await.0, "ok");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(b.accepted.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn bad_answers_are_errors() {
    let cases: [&'static [u8]; 9] = [
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"NOT HTTP\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nFolded: a\r\n b\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Le",
        b"",
    ];
    for answer in cases {
        let b = backend(vec![answer], 1).await;
        let r = send(&pool(), &b.authority, &get("/")).await;
        assert!(r.is_err(), "{}", String::from_utf8_lossy(answer));
    }
    // Bodies that break off or are mis-chunked fail while streaming.
    for answer in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    ] {
        let b = backend(vec![answer], 1).await;
        let r = send(&pool(), &b.authority, &get("/")).await.expect("head");
        assert!(
            r.into_body().collect().await.is_err(),
            "{}",
            String::from_utf8_lossy(answer)
        );
    }
    // Too large a head.
    let huge: &'static [u8] = Box::leak(
        format!("HTTP/1.1 200 OK\r\nX: {}\r\n", "a".repeat(MAX_HEAD + 10))
            .into_bytes()
            .into_boxed_slice(),
    );
    let b = backend(vec![huge], usize::MAX).await;
    assert!(send(&pool(), &b.authority, &get("/")).await.is_err());
    // Nobody listening: a connect error.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let server = Authority::try_from(addr.to_string()).expect("authority");
    let e = send(&pool(), &server, &get("/"))
        .await
        .expect_err("refused");
    assert!(e.is_connect());
}

#[tokio::test]
async fn random_answers_never_panic() {
    let mut rng = crate::test_util::Lcg(7);
    let pieces: [&[u8]; 12] = [
        b"HTTP/1.1 200 OK\r\n",
        b"Content-Length: 3\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"\r\n",
        b"3\r\nabc\r\n",
        b"0\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"Connection: close\r\n",
        b"ff\r\n",
        b"\xff\x00",
        b"X: y\r\n",
        b"abc",
    ];
    for _ in 0..200 {
        let mut answer = Vec::new();
        for _ in 0..rng.next(8) + 1 {
            answer.extend_from_slice(pieces[rng.next(pieces.len())]);
        }
        let answer: &'static [u8] = Box::leak(answer.into_boxed_slice());
        let b = backend(vec![answer], 1).await;
        if let Ok(r) = send(&pool(), &b.authority, &get("/")).await {
            let _ = tokio::time::timeout(Duration::from_secs(2), r.into_body().collect()).await;
        }
    }
}

#[tokio::test]
async fn idle_connections_are_capped_and_expire() {
    let b = backend(
        vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"],
        usize::MAX,
    )
    .await;
    let p = Arc::new(Pool::new(
        2,
        Duration::from_millis(200),
        Duration::from_secs(2),
    ));
    // Four at once: four connections, two kept.
    let all = (0..4).map(|_| {
        let p = p.clone();
        let a = b.authority.clone();
        async move {
            let r = send(&p, &a, &get("/")).await.expect("answer");
            r.into_body().collect().await.expect("body");
        }
    });
    let started: Vec<_> = all.map(tokio::spawn).collect();
    for t in started {
        t.await.expect("task");
    }
    assert_eq!(p.idle_count(), 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(p.idle_count(), 0, "swept after the idle timeout");
    let p = Arc::new(Pool::new(
        0,
        Duration::from_secs(30),
        Duration::from_secs(2),
    ));
    let r = send(&p, &b.authority, &get("/")).await.expect("answer");
    r.into_body().collect().await.expect("body");
    assert_eq!(p.idle_count(), 0, "none kept with a limit of 0");
}

#[tokio::test]
async fn servers_are_reached_by_name_too() {
    let b = backend(
        vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"],
        usize::MAX,
    )
    .await;
    let port = b.authority.port_u16().expect("port");
    let named = Authority::try_from(format!("localhost:{port}")).expect("authority");
    let r = send(&pool(), &named, &get("/")).await.expect("answer");
    assert_eq!(body_of(r).await.0, "ok");
    let heads = b.heads.lock().expect("lock").clone();
    assert!(
        heads[0].contains(&format!("host: localhost:{port}\r\n")),
        "{heads:?}"
    );
}

#[tokio::test]
async fn a_silent_server_times_out_once_the_request_is_written() {
    // Reads the request and never answers.
    let b = backend(vec![b""], usize::MAX).await;
    let started = Instant::now();
    let r = pool()
        .send(
            &b.authority,
            &Method::GET,
            &encode(&get("/"), &b.authority, b"", &[]),
            Some(Duration::from_millis(200)),
        )
        .await;
    assert!(matches!(r, Err(SendError::TimedOut)), "{r:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[test]
fn requests_are_framed_by_a_length_of_their_own() {
    let server: Authority = "backend:8080".parse().expect("authority");
    let text = |parts: &http::request::Parts, body: &[u8]| {
        String::from_utf8(encode(parts, &server, body, &[])).expect("text")
    };
    // No body: a GET says nothing, a POST says it has none.
    let got = text(&get("/a?b=c"), b"");
    assert_eq!(
        got,
        "GET /a?b=c HTTP/1.1\r\nhost: backend:8080\r\nx-test: yes\r\n\r\n"
    );
    let got = text(&request(Method::POST, "/"), b"");
    assert!(got.contains("\r\ncontent-length: 0\r\n"), "{got}");
    // Fields not in the map come after those in it.
    let xff = HeaderName::from_static("x-forwarded-for");
    let got = String::from_utf8(encode(
        &get("/"),
        &server,
        b"",
        &[None, Some((&xff, HeaderValue::from_static("192.0.2.1")))],
    ))
    .expect("text");
    assert_eq!(
        got,
        "GET / HTTP/1.1\r\nhost: backend:8080\r\nx-test: yes\r\nx-forwarded-for: 192.0.2.1\r\n\r\n"
    );
    // A body: one length, the body's, whatever the client's headers said; no chunked coding.
    let mut parts = request(Method::PUT, "/p");
    for (name, value) in [
        ("content-length", "0005"),
        ("content-length", "7"),
        ("transfer-encoding", "chunked"),
    ] {
        parts.headers.append(name, HeaderValue::from_static(value));
    }
    let got = text(&parts, b"hello, world");
    assert_eq!(
        got,
        "PUT /p HTTP/1.1\r\nhost: backend:8080\r\ncontent-length: 12\r\nx-test: yes\r\n\r\nhello, world"
    );
    // A client's zero length on a method without a payload is kept as it was said.
    let mut parts = request(Method::DELETE, "/d");
    parts
        .headers
        .insert("content-length", HeaderValue::from_static("0"));
    assert!(text(&parts, b"").contains("\r\ncontent-length: 0\r\n"));
    let mut out = Vec::new();
    for n in [0u64, 7, 10, 65536, u64::MAX] {
        out.clear();
        decimal(&mut out, n);
        assert_eq!(out, n.to_string().as_bytes());
    }
}
