//! Turns one received message into a response, from a snapshot. No I/O: the server loops
//! call [`handle`] and send what it returns.

use std::sync::Arc;

use model::lookup::{Answer, QueryType, Rcode as LookupRcode, RrSet, ZoneIndex};
use model::record::RecordType;
use store::Snapshot;

use crate::wire::{
    self, Header, MessageWriter, Query, Rcode, Section, CLASS_IN, OPCODE_QUERY, TYPE_AXFR,
    TYPE_IXFR, TYPE_OPT,
};

/// Largest UDP response edgeplane sends, whatever the client advertises (the DNS flag day 2020
/// value, which avoids IP fragmentation).
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// Largest response without EDNS (RFC 1035 section 4.2.1).
pub const CLASSIC_UDP_PAYLOAD: u16 = 512;

/// The transport a message arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// A zone transfer the TCP loop must stream.
#[derive(Debug, Clone)]
pub struct TransferRequest {
    pub zone: Arc<ZoneIndex>,
    pub header: Header,
    pub qname_raw: Vec<u8>,
    pub qtype: u16,
    pub ixfr_serial: Option<u32>,
    /// The zone's recent diffs, for IXFR.
    pub journal: Option<Arc<model::zone::Journal>>,
}

/// What to do with a received message.
#[derive(Debug)]
pub enum Outcome {
    /// Send this response.
    Reply(Vec<u8>),
    /// Send nothing (not a query, or too broken to answer).
    Drop,
    /// Stream a zone transfer (TCP only).
    Transfer(TransferRequest),
}

/// Why an answer was given, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Answer,
    NoData,
    NxDomain,
    Referral,
    Refused,
    FormErr,
    NotImp,
    Truncated,
}

/// Handles one message. `buf` is a buffer to reuse for the response; `random` drives weighted
/// routing choices.
pub fn handle(
    snapshot: &Snapshot,
    msg: &[u8],
    transport: Transport,
    random: u32,
    buf: Vec<u8>,
) -> (Outcome, Option<Kind>) {
    let Ok(header) = Header::parse(msg) else {
        return (Outcome::Drop, None);
    };
    if header.is_response {
        // Never answer a response: that is how reflection loops start.
        return (Outcome::Drop, None);
    }
    let query = match wire::parse_query(msg) {
        Ok(q) => q,
        Err(_) => {
            let rcode = if header.opcode == OPCODE_QUERY {
                Rcode::FormErr
            } else {
                Rcode::NotImp
            };
            let w = MessageWriter::new(buf, &header, false, rcode);
            let kind = if rcode == Rcode::FormErr {
                Kind::FormErr
            } else {
                Kind::NotImp
            };
            return (Outcome::Reply(w.finish()), Some(kind));
        }
    };
    if header.opcode != OPCODE_QUERY {
        return error_reply(buf, &query, Rcode::NotImp, Kind::NotImp);
    }
    let transfer = query.qtype == TYPE_AXFR || query.qtype == TYPE_IXFR;
    if header.ancount != 0
        || (header.nscount != 0 && !(query.qtype == TYPE_IXFR && header.nscount == 1))
        || query.duplicate_opt
        || query.qtype == TYPE_OPT
    {
        return error_reply(buf, &query, Rcode::FormErr, Kind::FormErr);
    }
    if let Some(edns) = query.edns {
        if edns.version > 0 {
            // BADVERS: extended rcode 16 = OPT high bits 1, header rcode 0.
            let mut w = MessageWriter::new(buf, &header, false, Rcode::NoError);
            w.question(query.qname_raw, query.qtype, query.qclass);
            w.opt(MAX_UDP_PAYLOAD, 1, edns.dnssec_ok);
            return (Outcome::Reply(w.finish()), Some(Kind::FormErr));
        }
    }
    if query.qclass != CLASS_IN {
        return error_reply(buf, &query, Rcode::Refused, Kind::Refused);
    }
    if matches!(query.qtype, 128..=254) && !transfer {
        // MAILA, MAILB and other meta-types edgeplane does not implement.
        return error_reply(buf, &query, Rcode::NotImp, Kind::NotImp);
    }
    let Some(mut zone) = snapshot.find_zone(query.qname.wire()) else {
        return error_reply(buf, &query, Rcode::Refused, Kind::Refused);
    };
    // DS records live on the parent side of a cut: at a zone apex, answer DS from the parent
    // zone when it is hosted here too (RFC 4035 section 3.1.4.1).
    if query.qtype == model::RecordType::DS.code() && zone.apex() == &query.qname {
        if let Some(parent) = query
            .qname
            .parent()
            .and_then(|p| snapshot.find_zone(p.wire()))
        {
            zone = parent;
        }
    }
    if transfer {
        let at_apex = zone.apex() == &query.qname;
        if !at_apex {
            return error_reply(buf, &query, Rcode::NotAuth, Kind::Refused);
        }
        match (transport, query.qtype) {
            (Transport::Tcp, _) => {
                return (
                    Outcome::Transfer(TransferRequest {
                        zone: Arc::clone(zone),
                        header,
                        qname_raw: query.qname_raw.to_vec(),
                        qtype: query.qtype,
                        ixfr_serial: query.ixfr_serial,
                        journal: snapshot.journals.get(&zone.zone().id).cloned(),
                    }),
                    None,
                )
            }
            (Transport::Udp, TYPE_IXFR) => {
                // RFC 1995 section 2: a single SOA tells the client to come back over TCP.
                let answer = zone.lookup(
                    &query.qname,
                    QueryType::Type(RecordType::SOA),
                    random,
                    &snapshot.health,
                );
                return (
                    Outcome::Reply(encode(buf, &query, &answer, transport)),
                    Some(Kind::Answer),
                );
            }
            _ => return error_reply(buf, &query, Rcode::NotImp, Kind::NotImp),
        }
    }
    let qtype = QueryType::from_code(query.qtype);
    let answer = zone.lookup(&query.qname, qtype, random, &snapshot.health);
    let kind = match (answer.rcode, answer.authoritative, answer.answer.is_empty()) {
        (LookupRcode::NxDomain, _, _) => Kind::NxDomain,
        (_, false, _) => Kind::Referral,
        (_, true, true) => Kind::NoData,
        _ => Kind::Answer,
    };
    let reply = encode(buf, &query, &answer, transport);
    let truncated = reply.get(2).is_some_and(|b| b & 0x02 != 0);
    (
        Outcome::Reply(reply),
        Some(if truncated { Kind::Truncated } else { kind }),
    )
}

/// A response with the question echoed, no records, and `rcode`.
fn error_reply(
    buf: Vec<u8>,
    query: &Query<'_>,
    rcode: Rcode,
    kind: Kind,
) -> (Outcome, Option<Kind>) {
    let mut w = MessageWriter::new(buf, &query.header, false, rcode);
    w.question(query.qname_raw, query.qtype, query.qclass);
    if let Some(edns) = query.edns {
        w.opt(MAX_UDP_PAYLOAD, 0, edns.dnssec_ok);
    }
    (Outcome::Reply(w.finish()), Some(kind))
}

/// The response size limit for a query on a transport.
pub fn size_limit(query: &Query<'_>, transport: Transport) -> usize {
    match (transport, query.edns) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, Some(e)) => {
            usize::from(e.udp_size.clamp(CLASSIC_UDP_PAYLOAD, MAX_UDP_PAYLOAD))
        }
        (Transport::Udp, None) => usize::from(CLASSIC_UDP_PAYLOAD),
    }
}

/// Encodes a lookup result, truncating (TC=1) when a needed RRset does not fit.
fn encode(buf: Vec<u8>, query: &Query<'_>, answer: &Answer<'_>, transport: Transport) -> Vec<u8> {
    let rcode = match answer.rcode {
        LookupRcode::NoError => Rcode::NoError,
        LookupRcode::NxDomain => Rcode::NxDomain,
    };
    let mut w = MessageWriter::new(buf, &query.header, answer.authoritative, rcode);
    w.question(query.qname_raw, query.qtype, query.qclass);
    let limit = size_limit(query, transport);
    let reserve = if query.edns.is_some() { 11 } else { 0 };
    let after_question = w.mark();
    let referral = !answer.authoritative;
    let sections: [(Section, &[RrSet<'_>]); 3] = [
        (Section::Answer, &answer.answer),
        (Section::Authority, &answer.authority),
        (Section::Additional, &answer.additional),
    ];
    'sections: for (section, rrsets) in sections {
        for rr in rrsets {
            let mark = w.mark();
            // Stop at the first record past the limit: a huge RRset costs no more than the
            // message it would not fit in.
            let mut over = false;
            for d in &rr.data {
                w.record(section, rr.owner, rr.ttl, d);
                if w.len() + reserve > limit {
                    over = true;
                    break;
                }
            }
            if over {
                w.rollback(mark);
                // Extra addresses may be left out, but a referral's glue may not (RFC 9471).
                if section == Section::Additional && !referral {
                    break 'sections;
                }
                w.rollback(after_question);
                w.set_truncated();
                break 'sections;
            }
        }
    }
    if let Some(edns) = query.edns {
        w.opt(MAX_UDP_PAYLOAD, 0, edns.dnssec_ok);
    }
    w.finish()
}

#[cfg(test)]
mod tests;
