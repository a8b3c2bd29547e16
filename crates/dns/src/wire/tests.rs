//! Tests for the wire codec.

use super::*;
use model::record::RecordType;

fn n(s: &str) -> DomainName {
    DomainName::parse(s).expect("valid")
}

#[test]
fn skip_name_rejects_loops_and_forward_pointers() {
    // Header padding then a name pointing at itself.
    let mut msg = vec![0u8; 12];
    msg.extend_from_slice(&[0xc0, 12]);
    assert_eq!(skip_name(&msg, 12), Err(WireError::BadPointer));
    let mut msg = vec![0u8; 12];
    msg.extend_from_slice(&[0xc0, 20, 0]);
    assert_eq!(skip_name(&msg, 12), Err(WireError::BadPointer));
    let mut msg = vec![0u8; 12];
    msg.extend_from_slice(&[1, b'a', 0, 1, b'b', 0xc0, 12]);
    assert_eq!(skip_name(&msg, 15), Ok(19));
    let (name, end) = read_name(&msg, 15).expect("valid");
    assert_eq!((name, end), (n("b.a"), 19));
    assert_eq!(skip_name(&[0x40], 0), Err(WireError::BadName));
    assert_eq!(skip_name(&[5, b'a'], 0), Err(WireError::Truncated));
}

#[test]
fn writer_compresses_names_case_insensitively() {
    let header = Header::parse(&[0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]).expect("header");
    let mut w = MessageWriter::new(Vec::new(), &header, true, Rcode::NoError);
    let raw = b"\x03WWW\x07Example\x03com\x00";
    w.question(raw, 1, 1);
    let data = RecordData::Cname(n("mail.example.com"));
    w.record(Section::Answer, &n("www.example.com"), 60, &data);
    let msg = w.finish();
    // Owner fully compressed to the question (2 octets); target "mail" + pointer.
    let answer_start = 12 + raw.len() + 4;
    assert_eq!(&msg[answer_start..answer_start + 2], &[0xc0, 12]);
    assert_eq!(&msg[answer_start + 12..], b"\x04mail\xc0\x10");
    assert_eq!(msg[2] & 0x84, 0x84, "QR and AA set");
    assert_eq!(&msg[6..8], &[0, 1]);
    assert_eq!(RecordType::CNAME.code(), 5);
}
