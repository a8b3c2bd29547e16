//! Fuzzes the whole DNS query path: any bytes, over UDP and TCP, against a zone exercising every
//! answer path. It must never panic, and every reply must be a well-formed response to it.
#![no_main]

use std::sync::OnceLock;

use dns::handler::{handle, Outcome, Transport};
use libfuzzer_sys::fuzz_target;
use store::Store;

const ZONE: &str = "$ORIGIN example.com.\n$TTL 300\n\
@ SOA ns1 hostmaster 1 7200 900 1209600 60\n@ NS ns1\nns1 A 192.0.2.53\n\
www A 192.0.2.1\nwww AAAA 2001:db8::1\nalias CNAME www\nloop CNAME loop\n\
*.wild TXT \"w\"\nsub NS ns.sub\nns.sub A 192.0.2.99\nbig TXT \"0123456789012345678901234567890123456789012345678901234567890123456789\" \"0123456789012345678901234567890123456789012345678901234567890123456789\" \"0123456789012345678901234567890123456789012345678901234567890123456789\" \"0123456789012345678901234567890123456789012345678901234567890123456789\" \"0123456789012345678901234567890123456789012345678901234567890123456789\" \"0123456789012345678901234567890123456789012345678901234567890123456789\" \"0123456789012345678901234567890123456789012345678901234567890123456789\" \"0123456789012345678901234567890123456789012345678901234567890123456789\"\n";

fn store() -> &'static Store {
    static STORE: OnceLock<Store> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("edgeplane-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).expect("open store");
        let origin = model::DomainName::parse("example.com").expect("name");
        let (zone, _) = store
            .create_zone(
                origin.clone(),
                "fuzz".into(),
                None,
                &[model::DomainName::parse("ns1.example.com").expect("ns")],
            )
            .expect("zone");
        let sets = model::zonefile::parse(ZONE, &origin).expect("zone file");
        store.replace_records(&zone.id, sets).expect("import");
        store
    })
}

fuzz_target!(|data: &[u8]| {
    let snapshot = store().snapshot();
    for transport in [Transport::Udp, Transport::Tcp] {
        let (outcome, _) = handle(&snapshot, data, transport, 1, Vec::new());
        match outcome {
            Outcome::Reply(reply) => {
                assert!(reply.len() >= 12, "reply shorter than a header");
                assert_eq!(&reply[..2], &data[..2], "reply keeps the query ID");
                assert!(reply[2] & 0x80 != 0, "reply has QR set");
                if transport == Transport::Udp {
                    assert!(reply.len() <= 1232, "UDP reply within the payload limit");
                }
            }
            Outcome::Transfer(req) => {
                for m in dns::transfer::messages(&req).0 {
                    assert!(m.len() <= 65_535);
                }
            }
            Outcome::Drop => {}
        }
    }
});
