//! Outgoing zone transfers: AXFR (RFC 5936) and IXFR answered in AXFR form or as "up to date"
//! (RFC 1995 section 4).

use model::record::{RecordData, RecordSet, RecordType};
use model::zone::serial_gt;

use crate::handler::TransferRequest;
use crate::wire::{MessageWriter, Rcode, Section, CLASS_IN, TYPE_IXFR};

/// Target size of one transfer message; each message stays well under the 64 KiB limit.
pub const TRANSFER_MESSAGE_SIZE: usize = 16 * 1024;

/// The messages of a transfer, in order.
pub fn messages(req: &TransferRequest) -> Vec<Vec<u8>> {
    let zone = req.zone.zone();
    let Some((soa, soa_ttl)) = zone.soa() else {
        let mut w = MessageWriter::new(Vec::new(), &req.header, false, Rcode::ServFail);
        w.question(&req.qname_raw, req.qtype, CLASS_IN);
        return vec![w.finish()];
    };
    let soa_data = RecordData::Soa(soa.clone());
    let up_to_date = req.qtype == TYPE_IXFR
        && req
            .ixfr_serial
            .is_some_and(|client| !serial_gt(soa.serial, client));
    let mut out = Vec::new();
    let mut w = MessageWriter::new(
        Vec::with_capacity(TRANSFER_MESSAGE_SIZE + 512),
        &req.header,
        true,
        Rcode::NoError,
    );
    w.question(&req.qname_raw, req.qtype, CLASS_IN);
    w.record(Section::Answer, &zone.name, soa_ttl.seconds(), &soa_data);
    if up_to_date {
        return vec![w.finish()];
    }
    let sets: Vec<&RecordSet> = req
        .zone
        .transfer_order()
        .into_iter()
        .filter(|s| !(s.rtype == RecordType::SOA && s.name == zone.name))
        .collect();
    let records = sets
        .iter()
        .flat_map(|s| s.records.iter().map(move |d| (&s.name, s.ttl.seconds(), d)))
        .chain(std::iter::once((&zone.name, soa_ttl.seconds(), &soa_data)));
    let mut in_message = 1;
    for (owner, ttl, data) in records {
        if w.len() >= TRANSFER_MESSAGE_SIZE && in_message > 0 {
            out.push(w.finish());
            w = MessageWriter::new(
                Vec::with_capacity(TRANSFER_MESSAGE_SIZE + 512),
                &req.header,
                true,
                Rcode::NoError,
            );
            in_message = 0;
        }
        w.record(Section::Answer, owner, ttl, data);
        in_message += 1;
    }
    out.push(w.finish());
    out
}
