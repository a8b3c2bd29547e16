//! Outgoing zone transfers: AXFR (RFC 5936), and IXFR (RFC 1995) from the store's journal of
//! recent diffs, falling back to the whole zone in AXFR form when the journal does not reach
//! the secondary's serial, or to a single SOA when the secondary is current.

use model::record::{RecordData, Ttl};
use model::zone::{serial_gt, TransferRecord};
use model::DomainName;

use crate::handler::TransferRequest;
use crate::wire::{MessageWriter, Rcode, Section, CLASS_IN, TYPE_IXFR};

/// Target size of one transfer message; each message stays well under the 64 KiB limit.
pub const TRANSFER_MESSAGE_SIZE: usize = 16 * 1024;
/// Largest DNS message over TCP.
const MAX_MESSAGE: usize = 65_535;

/// How a transfer was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferKind {
    /// The whole zone.
    Full,
    /// Only the differences since the secondary's serial.
    Incremental,
    /// The secondary is current: one SOA.
    UpToDate,
}

/// The messages of a transfer, in order, and how it was answered.
pub fn messages(req: &TransferRequest) -> (Vec<Vec<u8>>, TransferKind) {
    let zone = req.zone.zone();
    let Some((soa, soa_ttl)) = zone.soa() else {
        let mut w = MessageWriter::new(Vec::new(), &req.header, false, Rcode::ServFail);
        w.question(&req.qname_raw, req.qtype, CLASS_IN);
        return (vec![w.finish()], TransferKind::Full);
    };
    let soa_data = RecordData::Soa(soa.clone());
    let apex = &zone.name;
    let current = (apex, soa_ttl, &soa_data);
    if req.qtype == TYPE_IXFR {
        if let Some(client) = req.ixfr_serial {
            if !serial_gt(soa.serial, client) {
                return (write(req, std::iter::once(current)), TransferKind::UpToDate);
            }
            if let Some(diffs) = req.journal.as_ref().and_then(|j| j.since(client)) {
                let soas: Vec<(RecordData, Ttl, RecordData, Ttl)> = diffs
                    .iter()
                    .map(|d| {
                        (
                            RecordData::Soa(d.old_soa.1.clone()),
                            d.old_soa.0,
                            RecordData::Soa(d.new_soa.1.clone()),
                            d.new_soa.0,
                        )
                    })
                    .collect();
                let body = diffs
                    .iter()
                    .zip(&soas)
                    .flat_map(|(d, (old, old_ttl, new, new_ttl))| {
                        std::iter::once((apex, *old_ttl, old))
                            .chain(d.removed.iter().map(as_ref))
                            .chain(std::iter::once((apex, *new_ttl, new)))
                            .chain(d.added.iter().map(as_ref))
                    });
                let records = std::iter::once(current)
                    .chain(body)
                    .chain(std::iter::once(current));
                return (write(req, records), TransferKind::Incremental);
            }
        }
    }
    let all = zone.transfer_records();
    let records = std::iter::once(current)
        .chain(all.iter().map(as_ref))
        .chain(std::iter::once(current));
    (write(req, records), TransferKind::Full)
}

fn as_ref(r: &TransferRecord) -> (&DomainName, Ttl, &RecordData) {
    (&r.0, r.1, &r.2)
}

/// Packs records into messages of about [`TRANSFER_MESSAGE_SIZE`]; the question goes in the
/// first message only.
fn write<'a>(
    req: &TransferRequest,
    records: impl Iterator<Item = (&'a DomainName, Ttl, &'a RecordData)>,
) -> Vec<Vec<u8>> {
    let new_writer = || {
        MessageWriter::new(
            Vec::with_capacity(TRANSFER_MESSAGE_SIZE + 512),
            &req.header,
            true,
            Rcode::NoError,
        )
    };
    let mut out = Vec::new();
    let mut w = new_writer();
    w.question(&req.qname_raw, req.qtype, CLASS_IN);
    let mut in_message = 0;
    for (owner, ttl, data) in records {
        if w.len() >= TRANSFER_MESSAGE_SIZE && in_message > 0 {
            out.push(w.finish());
            w = new_writer();
            in_message = 0;
        }
        let mark = w.mark();
        w.record(Section::Answer, owner, ttl.seconds(), data);
        if w.len() > MAX_MESSAGE && in_message > 0 {
            // A large record that does not fit after the others starts its own message.
            w.rollback(mark);
            out.push(w.finish());
            w = new_writer();
            w.record(Section::Answer, owner, ttl.seconds(), data);
            in_message = 0;
        }
        in_message += 1;
    }
    out.push(w.finish());
    out
}
