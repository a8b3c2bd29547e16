//! Tests for query handling. Queries are built and responses decoded with hickory-proto, an
//! independent implementation of the wire format.

use super::*;
use hickory_proto::op::{
    Edns as HEdns, Message, MessageType, OpCode, Query as HQuery, ResponseCode,
};
use hickory_proto::rr::{DNSClass, Name, RecordType as HType};
use store::Store;

const ZONE: &str = "$ORIGIN example.com.\n$TTL 300\n\
@ SOA ns1 hostmaster 1 7200 900 1209600 60\n\
@ NS ns1\n\
ns1 A 192.0.2.53\n\
www A 192.0.2.1\n\
www AAAA 2001:db8::1\n\
alias CNAME www\n\
sub NS ns.sub\n\
sub DS 1 5 1 ABCD\n\
ns.sub A 192.0.2.99\n";

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let origin = model::DomainName::parse("example.com").expect("name");
    let (zone, _) = store
        .create_zone(
            origin.clone(),
            "t".into(),
            None,
            &[model::DomainName::parse("ns1.example.com").expect("n")],
        )
        .expect("zone");
    let mut sets = model::zonefile::parse(ZONE, &origin).expect("zone file");
    let big: Vec<String> = (0..30)
        .map(|i| format!("\"{i:02}-{}\"", "x".repeat(30)))
        .collect();
    sets.extend(
        model::zonefile::parse(
            &format!("$TTL 60\nbig.example.com. TXT {}\n", big.join(" ")),
            &origin,
        )
        .expect("big"),
    );
    store.replace_records(&zone.id, sets).expect("import");
    Fixture { _dir: dir, store }
}

fn query(name: &str, qtype: HType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
    m.add_query(HQuery::query(Name::from_ascii(name).expect("name"), qtype));
    m.metadata.recursion_desired = true;
    if let Some(size) = edns {
        let mut e = HEdns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().expect("encode")
}

fn run(f: &Fixture, msg: &[u8], transport: Transport) -> (Outcome, Option<Kind>) {
    handle(&f.store.snapshot(), msg, transport, 7, Vec::new())
}

fn reply(f: &Fixture, msg: &[u8], transport: Transport) -> Message {
    match run(f, msg, transport).0 {
        Outcome::Reply(bytes) => Message::from_vec(&bytes).expect("response decodes"),
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn records(rs: &[hickory_proto::rr::Record]) -> Vec<String> {
    rs.iter().map(ToString::to_string).collect()
}

#[test]
fn authoritative_answer_preserves_question_case() {
    let f = fixture();
    let m = reply(
        &f,
        &query("WwW.Example.COM.", HType::A, None),
        Transport::Udp,
    );
    assert_eq!(m.metadata.id, 0x1234);
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert!(m.metadata.authoritative);
    assert!(m.metadata.recursion_desired);
    assert!(!m.metadata.recursion_available);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.queries[0].name().to_string(), "WwW.Example.COM.");
    assert_eq!(records(&m.answers), ["WwW.Example.COM. 300 IN A 192.0.2.1"]);
}

#[test]
fn negative_answers_and_refusals() {
    let f = fixture();
    let m = reply(
        &f,
        &query("nope.example.com.", HType::A, None),
        Transport::Udp,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.metadata.authoritative);
    assert_eq!(m.authorities.len(), 1);
    assert_eq!(m.authorities[0].record_type(), HType::SOA);
    assert_eq!(m.authorities[0].ttl, 60);
    let m = reply(
        &f,
        &query("www.example.com.", HType::MX, None),
        Transport::Udp,
    );
    assert_eq!(
        (
            m.metadata.response_code,
            m.answers.len(),
            m.authorities.len()
        ),
        (ResponseCode::NoError, 0, 1)
    );
    let m = reply(
        &f,
        &query("www.example.org.", HType::A, None),
        Transport::Udp,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(!m.metadata.authoritative);
    let mut q = Message::from_vec(&query("www.example.com.", HType::A, None)).expect("q");
    q.queries[0].set_query_class(DNSClass::CH);
    let m = reply(&f, &q.to_vec().expect("enc"), Transport::Udp);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn referral_with_glue_is_not_authoritative() {
    let f = fixture();
    let m = reply(
        &f,
        &query("host.sub.example.com.", HType::A, None),
        Transport::Udp,
    );
    assert!(!m.metadata.authoritative);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        records(&m.authorities[..1]),
        ["sub.example.com. 300 IN NS ns.sub.example.com."]
    );
    assert_eq!(
        m.authorities[1].record_type(),
        HType::DS,
        "the cut's DS follows its NS"
    );
    assert_eq!(
        records(&m.additionals),
        ["ns.sub.example.com. 300 IN A 192.0.2.99"]
    );
}

#[test]
fn cname_chain_and_any() {
    let f = fixture();
    let m = reply(
        &f,
        &query("alias.example.com.", HType::A, None),
        Transport::Udp,
    );
    assert_eq!(
        records(&m.answers),
        [
            "alias.example.com. 300 IN CNAME www.example.com.",
            "www.example.com. 300 IN A 192.0.2.1"
        ]
    );
    let m = reply(
        &f,
        &query("www.example.com.", HType::ANY, None),
        Transport::Udp,
    );
    assert_eq!(m.answers.len(), 1, "RFC 8482 minimal ANY");
}

#[test]
fn edns_truncation_and_tcp() {
    let f = fixture();
    let m = reply(
        &f,
        &query("big.example.com.", HType::TXT, None),
        Transport::Udp,
    );
    assert!(m.metadata.truncation, "over 512 octets without EDNS");
    assert!(m.answers.is_empty());
    let m = reply(
        &f,
        &query("big.example.com.", HType::TXT, Some(4096)),
        Transport::Udp,
    );
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 1);
    let edns = m.edns.expect("OPT in response");
    assert_eq!(edns.max_payload(), MAX_UDP_PAYLOAD);
    let m = reply(
        &f,
        &query("big.example.com.", HType::TXT, Some(512)),
        Transport::Udp,
    );
    assert!(m.metadata.truncation);
    let m = reply(
        &f,
        &query("big.example.com.", HType::TXT, None),
        Transport::Tcp,
    );
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 1);
}

#[test]
fn edns_version_and_duplicate_opt() {
    let f = fixture();
    let mut bytes = query("www.example.com.", HType::A, Some(1232));
    // OPT is the last record: TTL octets are at len-6..len-2 (ext-rcode, version, flags).
    let n = bytes.len();
    bytes[n - 5] = 1; // version 1
    let m = reply(&f, &bytes, Transport::Udp);
    assert_eq!(u16::from(m.metadata.response_code), 16, "BADVERS");
    let opt: Vec<u8> = query("www.example.com.", HType::A, Some(1232))[n - 11..].to_vec();
    let mut dup = query("www.example.com.", HType::A, Some(1232));
    dup.extend_from_slice(&opt);
    dup[11] = 2;
    let m = reply(&f, &dup, Transport::Udp);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn malformed_and_unsupported_messages() {
    let f = fixture();
    let q = query("www.example.com.", HType::A, None);
    // Too short for a header, or a response: dropped.
    assert!(matches!(run(&f, &q[..11], Transport::Udp).0, Outcome::Drop));
    let mut resp = q.clone();
    resp[2] |= 0x80;
    assert!(matches!(run(&f, &resp, Transport::Udp).0, Outcome::Drop));
    // Truncated question, two questions, trailing garbage, answer records in a query: FORMERR.
    for bad in [
        q[..q.len() - 2].to_vec(),
        {
            let mut b = q.clone();
            b[5] = 2;
            b
        },
        {
            let mut b = q.clone();
            b.push(0);
            b
        },
        {
            let mut b = q.clone();
            b[7] = 1;
            b
        },
    ] {
        let m = reply(&f, &bad, Transport::Udp);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr, "{bad:?}");
        assert_eq!(m.metadata.id, 0x1234);
    }
    // A compression loop in the additional section.
    let mut looped = q.clone();
    looped[11] = 1;
    let at = looped.len() as u16;
    looped.extend_from_slice(&(0xc000 | at).to_be_bytes());
    looped.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        reply(&f, &looped, Transport::Udp).metadata.response_code,
        ResponseCode::FormErr
    );
    // UPDATE and MAILB are not implemented.
    let mut update = q.clone();
    update[2] = 5 << 3;
    assert_eq!(
        reply(&f, &update, Transport::Udp).metadata.response_code,
        ResponseCode::NotImp
    );
    let m = reply(
        &f,
        &query("www.example.com.", HType::Unknown(253), None),
        Transport::Udp,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
    let m = reply(
        &f,
        &query("www.example.com.", HType::OPT, None),
        Transport::Udp,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn every_mutation_of_a_query_is_survived() {
    let f = fixture();
    for q in [
        query("www.example.com.", HType::A, Some(1232)),
        query("alias.example.com.", HType::A, None),
    ] {
        for i in 0..q.len() {
            for v in [0u8, 1, 0x3f, 0x40, 0xc0, 0xc1, 0xff] {
                let mut m = q.clone();
                m[i] = v;
                let _ = run(&f, &m, Transport::Udp);
                let _ = run(&f, &m, Transport::Tcp);
            }
            let _ = run(&f, &q[..i], Transport::Udp);
        }
    }
}

#[test]
fn zone_transfers() {
    let f = fixture();
    let axfr = query("example.com.", HType::AXFR, None);
    assert_eq!(
        reply(&f, &axfr, Transport::Udp).metadata.response_code,
        ResponseCode::NotImp
    );
    let Outcome::Transfer(req) = run(&f, &axfr, Transport::Tcp).0 else {
        panic!("expected a transfer")
    };
    let (msgs, kind) = crate::transfer::messages(&req);
    assert_eq!(kind, crate::transfer::TransferKind::Full);
    let all = answers(&msgs);
    // Not at an apex: NOTAUTH.
    let m = reply(
        &f,
        &query("www.example.com.", HType::AXFR, None),
        Transport::Tcp,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NotAuth);
    // IXFR over UDP answers with the current SOA.
    let m = reply(
        &f,
        &query("example.com.", HType::IXFR, None),
        Transport::Udp,
    );
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].record_type(), HType::SOA);
    // A change, then IXFR requests from various serials over TCP.
    let zone_id = f
        .store
        .snapshot()
        .zones
        .keys()
        .next()
        .cloned()
        .expect("zone");
    let before = f.store.zone(&zone_id).expect("zone").serial();
    let set = model::RecordSet::new(
        model::DomainName::parse("new.example.com").expect("n"),
        model::Ttl::new(60).expect("ttl"),
        model::RecordType::A,
        vec![model::RecordData::A("192.0.2.200".parse().expect("ip"))],
    )
    .expect("set");
    f.store
        .change_records(
            &zone_id,
            &[model::zone::Change {
                action: model::zone::ChangeAction::Create,
                set,
            }],
        )
        .expect("change");
    let current = before + 1;
    let ixfr = |from: u32| {
        let mut q = Message::from_vec(&query("example.com.", HType::IXFR, None)).expect("q");
        q.authorities.push(hickory_proto::rr::Record::from_rdata(
            Name::from_ascii("example.com.").expect("n"),
            60,
            hickory_proto::rr::RData::SOA(hickory_proto::rr::rdata::SOA::new(
                Name::from_ascii("ns1.example.com.").expect("n"),
                Name::from_ascii("hostmaster.example.com.").expect("n"),
                from,
                7200,
                900,
                1_209_600,
                60,
            )),
        ));
        match run(&f, &q.to_vec().expect("encode"), Transport::Tcp).0 {
            Outcome::Transfer(req) => crate::transfer::messages(&req),
            other => panic!("expected a transfer, got {other:?}"),
        }
    };
    // Current: one SOA.
    let (m, kind) = ixfr(current);
    assert_eq!(
        (kind, answers(&m).len()),
        (crate::transfer::TransferKind::UpToDate, 1)
    );
    // One change behind: SOA(new), SOA(old), SOA(new), the added A, SOA(new).
    let (m, kind) = ixfr(before);
    assert_eq!(kind, crate::transfer::TransferKind::Incremental);
    let got: Vec<String> = answers(&m)
        .iter()
        .map(|r| match &r.data {
            hickory_proto::rr::RData::SOA(soa) => format!("SOA {}", soa.serial),
            d => d.to_string(),
        })
        .collect();
    let expect = [
        format!("SOA {current}"),
        format!("SOA {before}"),
        format!("SOA {current}"),
        "192.0.2.200".to_string(),
        format!("SOA {current}"),
    ];
    assert_eq!(got, expect);
    // A serial the journal does not reach: the whole zone.
    let (m, kind) = ixfr(before.wrapping_sub(50));
    assert_eq!(
        (kind, answers(&m).len()),
        (crate::transfer::TransferKind::Full, all.len() + 1)
    );
}

fn answers(msgs: &[Vec<u8>]) -> Vec<hickory_proto::rr::Record> {
    msgs.iter()
        .flat_map(|m| Message::from_vec(m).expect("decode").answers)
        .collect()
}

#[test]
fn ds_at_a_hosted_child_apex_comes_from_the_parent() {
    let f = fixture();
    f.store
        .create_zone(
            model::DomainName::parse("sub.example.com").expect("n"),
            "child".into(),
            None,
            &[model::DomainName::parse("ns.sub.example.com").expect("n")],
        )
        .expect("child zone");
    let m = reply(
        &f,
        &query("sub.example.com.", HType::DS, None),
        Transport::Udp,
    );
    assert!(m.metadata.authoritative);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].record_type(), HType::DS);
    assert_eq!(m.answers[0].name.to_string(), "sub.example.com.");
    // Other types at the child apex come from the child.
    let m = reply(
        &f,
        &query("sub.example.com.", HType::SOA, None),
        Transport::Udp,
    );
    assert!(
        records(&m.answers)[0].contains("ns.sub.example.com."),
        "{:?}",
        records(&m.answers)
    );
}
