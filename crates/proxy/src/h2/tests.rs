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
