use super::*;

fn build(
    fields: &[(&str, &str)],
    end_stream: bool,
) -> Result<(Request<ClientBody>, Option<u64>), &'static str> {
    let mut b = ReqBuilder::new(16 * 1024);
    for (n, v) in fields {
        let name = hpack::Name::parse_for_tests(n.as_bytes());
        b.field(&name, &Bytes::copy_from_slice(v.as_bytes()));
    }
    b.finish(end_stream)
}

const BASE: [(&str, &str); 4] = [
    (":method", "GET"),
    (":scheme", "https"),
    (":authority", "example.com"),
    (":path", "/a?b=c"),
];

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut v = BASE.to_vec();
    v.extend_from_slice(extra);
    v
}

#[test]
fn a_request_is_built_from_its_fields() {
    let (req, len) = build(
        &with(&[
            ("cookie", "a=1"),
            ("x-one", "1"),
            ("cookie", "b=2"),
            ("content-length", "0"),
        ]),
        true,
    )
    .expect("valid");
    assert_eq!(req.method(), Method::GET);
    assert_eq!(req.uri().to_string(), "https://example.com/a?b=c");
    assert_eq!(req.version(), Version::HTTP_2);
    assert_eq!(req.headers()["cookie"], "a=1; b=2");
    assert_eq!(req.headers()["x-one"], "1");
    assert_eq!(len, Some(0));
    // Without :authority the target is the path, and the host header names the server.
    let (req, _) = build(
        &[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/"),
            ("host", "h.example"),
        ],
        false,
    )
    .expect("valid");
    assert_eq!(req.uri().to_string(), "/");
    assert_eq!(req.headers()["host"], "h.example");
    let (req, _) = build(
        &[(":method", "CONNECT"), (":authority", "example.com:443")],
        false,
    )
    .expect("valid");
    assert_eq!(
        req.uri().authority().map(|a| a.as_str()),
        Some("example.com:443")
    );
}

#[test]
fn an_extended_connect_becomes_an_upgrade() {
    let fields = [
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "https"),
        (":authority", "example.com"),
        (":path", "/chat"),
        ("sec-websocket-version", "13"),
    ];
    let (req, len) = build(&fields, false).expect("valid");
    assert_eq!(req.method(), Method::GET);
    assert_eq!(req.uri().to_string(), "https://example.com/chat");
    assert_eq!(req.headers()["upgrade"], "websocket");
    assert_eq!(req.headers()["connection"], "upgrade");
    assert!(req.extensions().get::<ExtendedConnect>().is_some());
    assert_eq!(len, None);
    // A fresh key each time: 16 octets in base64.
    let key = req.headers()["sec-websocket-key"].as_bytes().to_vec();
    let (again, _) = build(&fields, false).expect("valid");
    assert_ne!(again.headers()["sec-websocket-key"].as_bytes(), &key[..]);
    assert_eq!(key.len(), 24);
    assert!(key.ends_with(b"=="));
    assert!(key[..22]
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/'));
    // The client's own key is kept, and other protocols are asked for by name.
    let mut own = fields.to_vec();
    own.push(("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="));
    let (req, _) = build(&own, false).expect("valid");
    assert_eq!(
        req.headers()["sec-websocket-key"],
        "dGhlIHNhbXBsZSBub25jZQ=="
    );
    let mut other = fields[..5].to_vec();
    other[1] = (":protocol", "connect-udp");
    let (req, _) = build(&other, false).expect("valid");
    assert_eq!(req.headers()["upgrade"], "connect-udp");
    assert!(req.headers().get("sec-websocket-key").is_none());
    // Malformed: :protocol on another method, without :path or :authority, not a token.
    for bad in [
        vec![
            BASE[0],
            (":protocol", "websocket"),
            BASE[1],
            BASE[2],
            BASE[3],
        ],
        fields[..4].to_vec(),
        vec![fields[0], fields[1], fields[2], fields[4]],
        vec![
            fields[0],
            (":protocol", "web socket"),
            fields[2],
            fields[3],
            fields[4],
        ],
        vec![
            fields[0],
            (":protocol", ""),
            fields[2],
            fields[3],
            fields[4],
        ],
    ] {
        assert!(build(&bad, false).is_err(), "{bad:?}");
    }
}

#[test]
fn malformed_requests_are_refused() {
    let cases: Vec<Vec<(&str, &str)>> = vec![
        BASE[1..].to_vec(),                                   // no :method
        vec![BASE[0], BASE[2], BASE[3]],                      // no :scheme
        vec![BASE[0], BASE[1], BASE[2]],                      // no :path
        with(&[(":path", "/again")]),                         // repeated
        vec![BASE[0], ("x", "1"), BASE[1], BASE[2], BASE[3]], // pseudo after regular
        with(&[(":status", "200")]),
        with(&[(":protocol", "websocket")]),
        with(&[(":other", "1")]),
        with(&[("connection", "keep-alive")]),
        with(&[("transfer-encoding", "chunked")]),
        with(&[("upgrade", "h2c")]),
        with(&[("keep-alive", "5")]),
        with(&[("te", "gzip")]),
        with(&[("X-Upper", "1")]),
        with(&[("x-space", " padded")]),
        with(&[("x-nul", "a\u{0}b")]),
        with(&[("content-length", "1"), ("content-length", "2")]),
        with(&[("content-length", "-1")]),
        with(&[("content-length", "5")]), // with END_STREAM and no body
        with(&[("host", "other.example")]),
        vec![(":method", "GET"), (":scheme", "https"), (":path", "")],
        vec![(":method", "GET"), (":scheme", "https"), (":path", "*")],
        vec![
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "relative"),
        ],
        vec![
            (":method", "CONNECT"),
            (":authority", "a:1"),
            (":path", "/"),
        ],
        vec![(":method", "G E T"), (":scheme", "https"), (":path", "/")],
        vec![
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "u@h"),
            (":path", "/"),
        ],
    ];
    for c in cases {
        assert!(build(&c, true).is_err(), "{c:?}");
    }
    assert!(build(&with(&[("te", "trailers")]), true).is_ok());
    assert!(build(&with(&[("host", "EXAMPLE.com")]), true).is_ok());
    assert!(build(
        &[(":method", "OPTIONS"), (":scheme", "https"), (":path", "*")],
        true
    )
    .is_ok());
}

#[test]
fn header_lists_are_measured() {
    let mut b = ReqBuilder::new(100);
    for (n, v) in BASE {
        b.field(
            &hpack::Name::parse_for_tests(n.as_bytes()),
            &Bytes::from_static(v.as_bytes()),
        );
    }
    // 4 fields: 4 × 32 of overhead alone is over 100.
    assert!(b.size > 100);
}

#[test]
fn padding_and_priority_are_removed() {
    let framed = Bytes::from_static(&[2, b'a', b'b', 0, 0]);
    assert_eq!(
        unpad(framed, PADDED, false).ok(),
        Some(Bytes::from_static(b"ab"))
    );
    let with_priority = Bytes::from_static(&[1, 0, 0, 0, 3, 16, b'x', 0]);
    assert_eq!(
        unpad(with_priority, PADDED | PRIORITY_FLAG, true).ok(),
        Some(Bytes::from_static(b"x"))
    );
    assert!(unpad(Bytes::from_static(&[5, 1]), PADDED, false).is_err());
    assert!(unpad(Bytes::new(), PADDED, false).is_err());
    assert!(unpad(Bytes::from_static(&[0, 0]), PRIORITY_FLAG, true).is_err());
}

fn frame(ty: u8, flags: u8, id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame_head(&mut out, payload.len(), ty, flags, id);
    out.extend_from_slice(payload);
    out.to_vec()
}

/// GET / for www.example.com (RFC 7541 C.3.1), without Huffman coding.
const GET: &[u8] = &[
    0x82, 0x86, 0x84, 0x41, 0x0f, b'w', b'w', b'w', b'.', b'e', b'x', b'a', b'm', b'p', b'l', b'e',
    b'.', b'c', b'o', b'm',
];

/// A client's side of a conversation touching most frame types: two GETs (one in HEADERS
/// and CONTINUATION), a POST with a body, a PING, window updates, a priority, a reset.
fn conversation() -> Vec<u8> {
    let mut c = Vec::new();
    c.extend(frame(SETTINGS, 0, 0, &[0, 4, 0, 1, 0, 0]));
    c.extend(frame(HEADERS, END_STREAM | END_HEADERS, 1, GET));
    c.extend(frame(HEADERS, END_STREAM, 3, &GET[..5]));
    c.extend(frame(CONTINUATION, END_HEADERS, 3, &GET[5..]));
    let mut post = vec![0x83, 0x86, 0x84, 0x41, 0x0f];
    post.extend_from_slice(&GET[5..]);
    c.extend(frame(HEADERS, END_HEADERS, 5, &post));
    c.extend(frame(DATA, PADDED, 5, &[2, b'h', b'i', 0, 0]));
    c.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]));
    c.extend(frame(DATA, END_STREAM, 5, b"!"));
    c.extend(frame(PING, 0, 0, b"12345678"));
    c.extend(frame(PRIORITY, 0, 7, &[0, 0, 0, 1, 16]));
    c.extend(frame(HEADERS, END_HEADERS, 7, GET));
    c.extend(frame(RST_STREAM, 0, 7, &[0, 0, 0, 8]));
    c.extend(frame(SETTINGS, ACK, 0, &[]));
    c
}

fn run(input: &[u8], hold: u64) -> Vec<RawFrame> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let out = rt.block_on(exchange(input, Duration::from_millis(hold)));
    frames(&out).expect("well-formed frames")
}

#[test]
fn a_conversation_is_answered_frame_by_frame() {
    let got = run(&conversation(), 300);
    // Settings first, then the connection window, the ACK of the client's settings.
    assert_eq!((got[0].0, got[0].1), (SETTINGS, 0));
    assert_eq!(got[1].0, WINDOW_UPDATE);
    assert!(got.iter().any(|f| f.0 == SETTINGS && f.1 == ACK));
    assert!(got
        .iter()
        .any(|f| f.0 == PING && f.1 == ACK && f.3 == b"12345678"));
    // Streams 1, 3 and 5 are answered 404 (no routes) and ended; 7 was reset by the client.
    for id in [1, 3, 5] {
        let head = got
            .iter()
            .find(|f| f.0 == HEADERS && f.2 == id)
            .unwrap_or_else(|| panic!("stream {id} answered: {got:?}"));
        let mut d = hpack::Decoder::new(4096);
        let mut status = None;
        d.decode(&Bytes::from(head.3.clone()), |n, v| {
            if *n == hpack::Name::Status {
                status = Some(v.clone());
            }
        })
        .expect("decodes");
        assert_eq!(status.as_deref(), Some(&b"404"[..]));
        assert!(got.iter().any(|f| f.2 == id && f.1 & END_STREAM != 0));
    }
    assert!(!got.iter().any(|f| f.2 == 7 && f.0 == HEADERS));
    assert!(!got
        .iter()
        .any(|f| f.0 == GOAWAY && f.3[4..] != [0, 0, 0, 0]));
}

#[test]
fn protocol_errors_end_the_connection_with_their_code() {
    let settings = frame(SETTINGS, 0, 0, &[]);
    let goaway_code = |input: Vec<u8>| {
        let got = run(&input, 0);
        got.iter()
            .find(|f| f.0 == GOAWAY)
            .map(|f| u32::from_be_bytes([f.3[4], f.3[5], f.3[6], f.3[7]]))
    };
    let with = |extra: Vec<u8>| {
        let mut v = settings.clone();
        v.extend(extra);
        v
    };
    // Not SETTINGS first.
    assert_eq!(
        goaway_code(frame(PING, 0, 0, b"12345678")),
        Some(PROTOCOL_ERROR)
    );
    // A frame over 16 KiB.
    assert_eq!(
        goaway_code(with(frame(DATA, 0, 1, &vec![0; 16_385]))),
        Some(FRAME_SIZE_ERROR)
    );
    // HEADERS on an even stream; DATA on an idle one; a bad HPACK block.
    assert_eq!(
        goaway_code(with(frame(HEADERS, END_HEADERS, 2, GET))),
        Some(PROTOCOL_ERROR)
    );
    assert_eq!(
        goaway_code(with(frame(DATA, 0, 9, b"x"))),
        Some(PROTOCOL_ERROR)
    );
    assert_eq!(
        goaway_code(with(frame(HEADERS, END_HEADERS, 1, &[0x80]))),
        Some(COMPRESSION_ERROR)
    );
    // A header block interrupted by another frame.
    let mut v = frame(HEADERS, 0, 1, &GET[..5]);
    v.extend(frame(PING, 0, 0, b"12345678"));
    assert_eq!(goaway_code(with(v)), Some(PROTOCOL_ERROR));
    // A window pushed past 2^31-1; a window update of 0.
    let big = frame(WINDOW_UPDATE, 0, 0, &[0x7f, 0xff, 0xff, 0xff]);
    assert_eq!(goaway_code(with(big)), Some(FLOW_CONTROL_ERROR));
    assert_eq!(
        goaway_code(with(frame(WINDOW_UPDATE, 0, 0, &[0, 0, 0, 0]))),
        Some(PROTOCOL_ERROR)
    );
    // PUSH_PROMISE from a client; a bad SETTINGS value.
    assert_eq!(
        goaway_code(with(frame(PUSH_PROMISE, END_HEADERS, 1, &[0, 0, 0, 2]))),
        Some(PROTOCOL_ERROR)
    );
    assert_eq!(
        goaway_code(frame(SETTINGS, 0, 0, &[0, 5, 0, 0, 0, 1])),
        Some(PROTOCOL_ERROR)
    );
    assert_eq!(
        goaway_code(frame(SETTINGS, 0, 0, &[0, 4])),
        Some(FRAME_SIZE_ERROR)
    );
}

/// Random damage to a valid conversation never panics, and whatever edgeplane writes back
/// is a well-formed sequence of frames (`run` checks it).
#[test]
fn damaged_conversations_never_panic() {
    let good = conversation();
    let mut rng = crate::test_util::Lcg(0x6832);
    for _ in 0..400 {
        let mut v = good.clone();
        for _ in 0..1 + rng.next(4) {
            if v.is_empty() {
                break;
            }
            match rng.next(4) {
                0 => {
                    let i = rng.next(v.len());
                    v[i] = rng.next(256) as u8;
                }
                1 => v.truncate(rng.next(v.len() + 1)),
                2 => {
                    let i = rng.next(v.len());
                    let j = (i + rng.next(32)).min(v.len());
                    let piece = v[i..j].to_vec();
                    let at = rng.next(v.len());
                    v.splice(at..at, piece);
                }
                _ => {
                    let i = rng.next(v.len());
                    v[i] ^= 1 << rng.next(8);
                }
            }
        }
        run(&v, 0);
    }
}
