use super::*;

fn hex(s: &str) -> Bytes {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect::<Vec<u8>>()
        .into()
}

fn show(n: &Name) -> String {
    match n {
        Name::Method => ":method".into(),
        Name::Scheme => ":scheme".into(),
        Name::Authority => ":authority".into(),
        Name::Path => ":path".into(),
        Name::Status => ":status".into(),
        Name::Protocol => ":protocol".into(),
        Name::OtherPseudo => ":?".into(),
        Name::Invalid => "!".into(),
        Name::Header(h) => h.as_str().into(),
    }
}

fn decode(d: &mut Decoder, block: &str) -> Result<Vec<(String, String)>, DecodeError> {
    let mut out = Vec::new();
    d.decode(&hex(block), |n, v| {
        out.push((show(n), String::from_utf8_lossy(v).into_owned()))
    })?;
    Ok(out)
}

fn fields(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// RFC 7541 Appendix C.3 (plain strings) and C.4 (the same requests Huffman-coded): three
/// requests on one connection, the dynamic table growing to 57, 110 and 164 octets.
#[test]
fn decodes_the_rfc_request_examples_with_and_without_huffman() {
    for blocks in [
        [
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ],
        [
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ],
    ] {
        let mut d = Decoder::new(4096);
        let first = [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ];
        assert_eq!(decode(&mut d, blocks[0]), Ok(fields(&first)));
        assert_eq!(d.size, 57);
        let mut second = first.to_vec();
        second.push(("cache-control", "no-cache"));
        assert_eq!(decode(&mut d, blocks[1]), Ok(fields(&second)));
        assert_eq!(d.size, 110);
        let third = [
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ];
        assert_eq!(decode(&mut d, blocks[2]), Ok(fields(&third)));
        assert_eq!(d.size, 164);
        assert_eq!(d.table.len(), 3);
    }
}

#[test]
fn huffman_decodes_every_octet() {
    let coded = hex("ffc7fffd8fffffe2fffffe3fffffe4fffffe5fffffe6fffffe7fffffe8ffffeafffffff3fffffa7fffffabffffffdfffffebfffffecfffffedfffffeefffffefffffff0ffffff1ffffff2fffffffbfffffcffffffd3fffffd7fffffdbfffffdffffffe3fffffe7fffffebfffffed4fe3f9ffaffcabf1febfafefe7fdfd2cbb00089969b71d79fb9f7fff20ffbff3ff50ddbd7f061c58f265cd9f469d5af66dddbf871e5f9cff7ff7fffc3ff9ffe45fff4719242cb34e6e9d68a6a3d7dac426defe3cfaf7fffbfe7ffbffdffffffcfffe6ffff4bfff9ffffa3fffd3ffff53fffd5ffffb3fffeb7fffdaffffb7ffff73fffeeffffdeffffebffffbfffffd9ffffdbfffebffffe0ffffeeffffc3ffff8bffff1ffffe4fffee7fffb1ffff97fffd9ffffcdffff9fffffbffffdafffeeffff4ffffb7fffee7fffe8ffffd3fffdeffffd5fffeeffffbdffffe1fffdfffff7fffff5ffffecffff07fff87fffe0ffff17fffedffff87ffff77fffeffffeaffff8bfffe3ffff93ffff87fffcbffff37ffff1fffff83ffffe1fffebfffe3ffff3fffff2ffffa3ffffd9fffff17ffffc7fffff27ffffdefffffbffffff2fffff8fffffb7fff97fff8fffffe6fffffc1fffff87ffffe7fffffc5ffffe5fffe4ffff2fffffd1fffff4ffffffefffffe3fffffc9fffff97fffb3ffffcffffb7fffcdffff4ffff9ffffd1ffffcffffeaffffafffffddffffeffffff4fffff5fffffabffffa7ffffd7fffff9bffffecfffffb7fffff3fffffe8fffffd3fffffabfffff5fffffff7ffffecfffffdbfffffbbfffff7ffffff0fffffbbf");
    let mut out = Vec::new();
    huffman_decode(&coded, &mut out).expect("decodes");
    assert_eq!(out, (0..=255u8).collect::<Vec<_>>());
}

#[test]
fn huffman_refuses_bad_padding_and_eos() {
    let mut out = Vec::new();
    // "a" is 00011: padded with ones it is 0x1f; padded with zeros, invalid.
    assert_eq!(huffman_decode(&[0x1f], &mut out), Ok(()));
    assert_eq!(out, b"a");
    assert!(huffman_decode(&[0x18], &mut Vec::new()).is_err());
    // Eight or more bits of padding.
    assert!(huffman_decode(&[0x1f, 0xff], &mut Vec::new()).is_err());
    // EOS itself (30 ones) in the string.
    assert!(huffman_decode(&[0xff, 0xff, 0xff, 0xfc], &mut Vec::new()).is_err());
    assert_eq!(huffman_decode(&[], &mut Vec::new()), Ok(()));
}

#[test]
fn table_size_updates_evict_and_are_bounded() {
    let mut d = Decoder::new(4096);
    decode(&mut d, "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d").expect("decodes");
    assert_eq!(d.table.len(), 1);
    // An update to 0 empties the table; the entry is then out of range.
    assert_eq!(decode(&mut d, "20 82"), Ok(fields(&[(":method", "GET")])));
    assert_eq!(d.table.len(), 0);
    assert!(decode(&mut d, "be").is_err());
    // Above the announced limit (3f e3 1f: 31 + 99 + 31 × 128 = 4098).
    assert!(decode(&mut d, "3f e3 1f").is_err());
    // After a field.
    assert!(decode(&mut d, "82 20").is_err());
}

#[test]
fn malformed_blocks_are_errors_not_panics() {
    let mut d = Decoder::new(4096);
    for bad in [
        "80",                   // index 0
        "ff 80 80 80 80 80 01", // an integer too long
        "bf",                   // index 62 with an empty table
        "41 05 61",             // a value longer than the block
        "40 ff",                // a truncated name length
        "00 01",                // a name with no value
    ] {
        assert!(decode(&mut d, bad).is_err(), "{bad}");
    }
    // Every prefix of a valid block either fails or decodes what it holds.
    let good = hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf");
    for n in 0..good.len() {
        let mut d = Decoder::new(4096);
        let _ = d.decode(&good.slice(..n), |_, _| {});
    }
}

#[test]
fn names_are_classified() {
    assert_eq!(Name::parse(b":path"), Name::Path);
    assert_eq!(Name::parse(b":foo"), Name::OtherPseudo);
    assert_eq!(Name::parse(b"Host"), Name::Invalid);
    assert_eq!(Name::parse(b"bad name"), Name::Invalid);
    assert_eq!(
        Name::parse(b"x-custom"),
        Name::Header(HeaderName::from_static("x-custom"))
    );
}

#[test]
fn an_entry_larger_than_the_table_empties_it() {
    let mut d = Decoder::new(64);
    // custom-key: custom-value (54 octets) fits; a second one would not both fit.
    let block = "400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65";
    decode(&mut d, block).expect("decodes");
    assert_eq!((d.table.len(), d.size), (1, 54));
    decode(&mut d, block).expect("decodes");
    assert_eq!((d.table.len(), d.size), (1, 54));
    // A 65-octet entry: name "k" (1) + 32-octet value + 32.
    let mut big = String::from("4001 6b20");
    big.push_str(&"61".repeat(32));
    decode(&mut d, &big).expect("decodes");
    assert_eq!((d.table.len(), d.size), (0, 0));
}

/// What the encoder writes, the decoder reads back (the pseudo-header included).
#[test]
fn encoded_responses_decode() {
    let mut out = BytesMut::new();
    encode_status(&mut out, 200);
    encode_status(&mut out, 302);
    let mut secret = HeaderValue::from_static("token");
    secret.set_sensitive(true);
    encode_field(
        &mut out,
        &http::header::CONTENT_TYPE,
        &HeaderValue::from_static("text/plain"),
    );
    encode_field(
        &mut out,
        &HeaderName::from_static("x-long"),
        &HeaderValue::from_str(&"v".repeat(300)).expect("value"),
    );
    encode_field(&mut out, &http::header::SET_COOKIE, &secret);
    let mut d = Decoder::new(4096);
    let mut got = Vec::new();
    d.decode(&out.freeze(), |n, v| {
        got.push((show(n), String::from_utf8_lossy(v).into_owned()))
    })
    .expect("decodes");
    let long = "v".repeat(300);
    assert_eq!(
        got,
        fields(&[
            (":status", "200"),
            (":status", "302"),
            ("content-type", "text/plain"),
            ("x-long", &long),
            ("set-cookie", "token"),
        ])
    );
    assert_eq!(d.table.len(), 0);
}

#[test]
fn static_name_indices_match_the_table() {
    let mut found = 0;
    for (i, (name, _)) in STATIC.iter().enumerate() {
        let Ok(h) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        if let Some(j) = static_name(&h) {
            assert_eq!(j, i + 1, "{name}");
            found += 1;
        }
    }
    assert_eq!(found, 27);
    assert_eq!(static_name(&HeaderName::from_static("x-other")), None);
}
