//! DNS message wire format (RFC 1035 section 4, RFC 6891): parsing queries without trusting
//! them, and writing responses with name compression.

use model::record::{RecordData, SvcParam};
use model::DomainName;

pub const HEADER_LEN: usize = 12;
pub const TYPE_OPT: u16 = 41;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_IXFR: u16 = 251;
pub const TYPE_AXFR: u16 = 252;
pub const CLASS_IN: u16 = 1;

pub const OPCODE_QUERY: u8 = 0;
pub const OPCODE_NOTIFY: u8 = 4;

/// Response codes used by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError = 0,
    FormErr = 1,
    ServFail = 2,
    NxDomain = 3,
    NotImp = 4,
    Refused = 5,
    NotAuth = 9,
}

/// Why a message could not be parsed past its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message shorter than a header")]
    Short,
    #[error("message truncated inside a section")]
    Truncated,
    #[error("malformed name")]
    BadName,
    #[error("compression pointer loop or forward pointer")]
    BadPointer,
    #[error("section counts do not match the message")]
    BadCounts,
    #[error("malformed OPT record")]
    BadOpt,
}

/// The EDNS(0) parameters of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    pub udp_size: u16,
    pub version: u8,
    pub dnssec_ok: bool,
}

/// The parts of a message header the server looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub is_response: bool,
    pub opcode: u8,
    pub recursion_desired: bool,
    pub checking_disabled: bool,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
}

impl Header {
    pub fn parse(msg: &[u8]) -> Result<Header, WireError> {
        if msg.len() < HEADER_LEN {
            return Err(WireError::Short);
        }
        let be = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]);
        Ok(Header {
            id: be(0),
            is_response: msg[2] & 0x80 != 0,
            opcode: (msg[2] >> 3) & 0x0f,
            recursion_desired: msg[2] & 0x01 != 0,
            checking_disabled: msg[3] & 0x10 != 0,
            qdcount: be(4),
            ancount: be(6),
            nscount: be(8),
            arcount: be(10),
        })
    }
}

/// A parsed query with one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query<'a> {
    pub header: Header,
    /// The question name exactly as received (case preserved), uncompressed wire form.
    pub qname_raw: &'a [u8],
    /// The question name, lowercase.
    pub qname: DomainName,
    pub qtype: u16,
    pub qclass: u16,
    pub edns: Option<Edns>,
    /// Whether the query had more than one OPT record.
    pub duplicate_opt: bool,
    /// For IXFR: the serial of the SOA in the authority section.
    pub ixfr_serial: Option<u32>,
}

/// Parses a query: the header, exactly one question, and the additional section (OPT).
/// The header must already have passed `Header::parse`.
pub fn parse_query(msg: &[u8]) -> Result<Query<'_>, WireError> {
    let header = Header::parse(msg)?;
    if header.qdcount != 1 {
        return Err(WireError::BadCounts);
    }
    let mut pos = HEADER_LEN;
    // The question name must be uncompressed: nothing precedes it to point at.
    let start = pos;
    loop {
        let len = usize::from(*msg.get(pos).ok_or(WireError::Truncated)?);
        if len & 0xc0 != 0 {
            return Err(WireError::BadName);
        }
        pos += 1 + len;
        if pos - start > model::name::MAX_NAME_LEN {
            return Err(WireError::BadName);
        }
        if len == 0 {
            break;
        }
    }
    let qname_raw = msg.get(start..pos).ok_or(WireError::Truncated)?;
    let qname = DomainName::from_wire(qname_raw).map_err(|_| WireError::BadName)?;
    let fixed = msg.get(pos..pos + 4).ok_or(WireError::Truncated)?;
    let qtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    let qclass = u16::from_be_bytes([fixed[2], fixed[3]]);
    pos += 4;

    let mut ixfr_serial = None;
    let mut edns = None;
    let mut duplicate_opt = false;
    let total =
        usize::from(header.ancount) + usize::from(header.nscount) + usize::from(header.arcount);
    for i in 0..total {
        let section_additional = i >= usize::from(header.ancount) + usize::from(header.nscount);
        let name_start = pos;
        pos = skip_name(msg, pos)?;
        let fixed = msg.get(pos..pos + 10).ok_or(WireError::Truncated)?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let class = u16::from_be_bytes([fixed[2], fixed[3]]);
        let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
        let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        pos += 10;
        let rdata_start = pos;
        if msg.len() < pos + rdlen {
            return Err(WireError::Truncated);
        }
        pos += rdlen;
        if section_additional && rtype == TYPE_OPT {
            if msg[name_start] != 0 {
                return Err(WireError::BadOpt);
            }
            if edns.is_some() {
                duplicate_opt = true;
            }
            edns = Some(Edns {
                udp_size: class,
                version: ((ttl >> 16) & 0xff) as u8,
                dnssec_ok: ttl & 0x8000 != 0,
            });
        } else if !section_additional && rtype == TYPE_SOA && qtype == TYPE_IXFR {
            // Skip MNAME and RNAME, then read SERIAL.
            let mut p = skip_name(msg, rdata_start)?;
            p = skip_name(msg, p)?;
            let s = msg.get(p..p + 4).ok_or(WireError::Truncated)?;
            if p + 20 > pos {
                return Err(WireError::Truncated);
            }
            ixfr_serial = Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]));
        }
    }
    if pos != msg.len() {
        return Err(WireError::BadCounts);
    }
    Ok(Query {
        header,
        qname_raw,
        qname,
        qtype,
        qclass,
        edns,
        duplicate_opt,
        ixfr_serial,
    })
}

/// Skips a possibly compressed name starting at `pos`, returning the position after it.
/// Pointers must point backwards, so that no loop is possible.
pub fn skip_name(msg: &[u8], mut pos: usize) -> Result<usize, WireError> {
    let mut end: Option<usize> = None;
    let mut total = 0usize;
    let mut hops = 0;
    loop {
        let len = *msg.get(pos).ok_or(WireError::Truncated)?;
        match len & 0xc0 {
            0x00 => {
                let l = usize::from(len);
                total += l + 1;
                if total > model::name::MAX_NAME_LEN {
                    return Err(WireError::BadName);
                }
                if l == 0 {
                    return Ok(end.unwrap_or(pos + 1));
                }
                if pos + 1 + l > msg.len() {
                    return Err(WireError::Truncated);
                }
                pos += 1 + l;
            }
            0xc0 => {
                let lo = *msg.get(pos + 1).ok_or(WireError::Truncated)?;
                let target = (usize::from(len & 0x3f) << 8) | usize::from(lo);
                if target >= pos || hops > 64 {
                    return Err(WireError::BadPointer);
                }
                hops += 1;
                if end.is_none() {
                    end = Some(pos + 2);
                }
                pos = target;
            }
            _ => return Err(WireError::BadName),
        }
    }
}

/// Reads a possibly compressed name at `pos` into lowercase uncompressed wire form.
pub fn read_name(msg: &[u8], mut pos: usize) -> Result<(DomainName, usize), WireError> {
    let end = skip_name(msg, pos)?;
    let mut wire = Vec::with_capacity(32);
    loop {
        let len = msg[pos];
        if len & 0xc0 == 0xc0 {
            pos = (usize::from(len & 0x3f) << 8) | usize::from(msg[pos + 1]);
            continue;
        }
        let l = usize::from(len);
        wire.extend_from_slice(&msg[pos..pos + 1 + l]);
        if l == 0 {
            break;
        }
        pos += 1 + l;
    }
    let name = DomainName::from_wire(&wire).map_err(|_| WireError::BadName)?;
    Ok((name, end))
}

/// Builds a response message. Sections must be written in order: question, answer,
/// authority, additional.
pub struct MessageWriter {
    buf: Vec<u8>,
    /// Offsets of names written so far, for compression (each entry is a full name's start).
    names: Vec<u16>,
    counts: [u16; 4],
}

/// Most name offsets remembered for compression, bounding the cost of large transfers.
const MAX_COMPRESSION_NAMES: usize = 512;

/// The section a record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Answer = 1,
    Authority = 2,
    Additional = 3,
}

impl MessageWriter {
    /// Starts a response to `header` with the given flags. The buffer is reused.
    pub fn new(mut buf: Vec<u8>, header: &Header, aa: bool, rcode: Rcode) -> Self {
        buf.clear();
        buf.extend_from_slice(&header.id.to_be_bytes());
        let mut b2 = 0x80 | (header.opcode << 3);
        if aa {
            b2 |= 0x04;
        }
        if header.recursion_desired {
            b2 |= 0x01;
        }
        let mut b3 = rcode as u8;
        if header.checking_disabled {
            b3 |= 0x10;
        }
        buf.push(b2);
        buf.push(b3);
        buf.extend_from_slice(&[0; 8]);
        MessageWriter {
            buf,
            names: Vec::with_capacity(16),
            counts: [0; 4],
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.len() <= HEADER_LEN
    }

    pub fn set_rcode(&mut self, rcode: Rcode) {
        self.buf[3] = (self.buf[3] & 0xf0) | (rcode as u8 & 0x0f);
    }

    pub fn set_truncated(&mut self) {
        self.buf[2] |= 0x02;
    }

    pub fn set_authoritative(&mut self, aa: bool) {
        if aa {
            self.buf[2] |= 0x04;
        } else {
            self.buf[2] &= !0x04;
        }
    }

    /// Writes the question, copying the name as received so its case is preserved.
    pub fn question(&mut self, qname_raw: &[u8], qtype: u16, qclass: u16) {
        let base = self.buf.len();
        let mut pos = 0;
        while pos < qname_raw.len() && qname_raw[pos] != 0 {
            self.names.push((base + pos) as u16);
            pos += 1 + usize::from(qname_raw[pos]);
        }
        self.buf.extend_from_slice(qname_raw);
        self.buf.extend_from_slice(&qtype.to_be_bytes());
        self.buf.extend_from_slice(&qclass.to_be_bytes());
        self.counts[0] = self.counts[0].saturating_add(1);
    }

    /// A mark to roll back to (length and counts).
    pub fn mark(&self) -> (usize, [u16; 4], usize) {
        (self.buf.len(), self.counts, self.names.len())
    }

    pub fn rollback(&mut self, mark: (usize, [u16; 4], usize)) {
        self.buf.truncate(mark.0);
        self.counts = mark.1;
        self.names.truncate(mark.2);
    }

    /// Writes one record.
    pub fn record(&mut self, section: Section, owner: &DomainName, ttl: u32, data: &RecordData) {
        self.name(owner.wire(), true);
        self.buf
            .extend_from_slice(&data.rtype().code().to_be_bytes());
        self.buf.extend_from_slice(&CLASS_IN.to_be_bytes());
        self.buf.extend_from_slice(&ttl.to_be_bytes());
        let len_at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.rdata(data);
        let rdlen = (self.buf.len() - len_at - 2) as u16;
        self.buf[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
        self.counts[section as usize] = self.counts[section as usize].saturating_add(1);
    }

    /// Writes the OPT record of a response.
    pub fn opt(&mut self, udp_size: u16, extended_rcode: u8, dnssec_ok: bool) {
        self.buf.push(0);
        self.buf.extend_from_slice(&TYPE_OPT.to_be_bytes());
        self.buf.extend_from_slice(&udp_size.to_be_bytes());
        self.buf.push(extended_rcode);
        self.buf.push(0); // version 0
        self.buf.push(if dnssec_ok { 0x80 } else { 0 });
        self.buf.push(0);
        self.buf.extend_from_slice(&[0, 0]);
        self.counts[3] = self.counts[3].saturating_add(1);
    }

    /// Finishes the message: writes the section counts and returns the bytes.
    pub fn finish(mut self) -> Vec<u8> {
        for (i, c) in self.counts.iter().enumerate() {
            self.buf[4 + 2 * i..6 + 2 * i].copy_from_slice(&c.to_be_bytes());
        }
        self.buf
    }

    /// Writes a name, compressed against the names already written when `compress` is set.
    fn name(&mut self, wire: &[u8], compress: bool) {
        let mut pos = 0;
        while pos < wire.len() && wire[pos] != 0 {
            let suffix = &wire[pos..];
            if compress {
                if let Some(ptr) = self.find_suffix(suffix) {
                    self.buf.extend_from_slice(&(0xc000 | ptr).to_be_bytes());
                    return;
                }
                if self.buf.len() < 0x3fff && self.names.len() < MAX_COMPRESSION_NAMES {
                    self.names.push(self.buf.len() as u16);
                }
            }
            let l = usize::from(wire[pos]);
            self.buf.extend_from_slice(&wire[pos..pos + 1 + l]);
            pos += 1 + l;
        }
        self.buf.push(0);
    }

    /// The offset of an earlier occurrence of `suffix` (lowercase wire form), if any.
    fn find_suffix(&self, suffix: &[u8]) -> Option<u16> {
        self.names
            .iter()
            .copied()
            .find(|&off| self.name_at_equals(usize::from(off), suffix))
    }

    fn name_at_equals(&self, mut pos: usize, suffix: &[u8]) -> bool {
        let mut i = 0;
        loop {
            let len = self.buf[pos];
            if len & 0xc0 == 0xc0 {
                pos = (usize::from(len & 0x3f) << 8) | usize::from(self.buf[pos + 1]);
                continue;
            }
            let l = usize::from(len);
            if suffix.get(i) != Some(&len) {
                return false;
            }
            if l == 0 {
                return true;
            }
            let ours = &self.buf[pos + 1..pos + 1 + l];
            let theirs = match suffix.get(i + 1..i + 1 + l) {
                Some(t) => t,
                None => return false,
            };
            if !ours.eq_ignore_ascii_case(theirs) {
                return false;
            }
            pos += 1 + l;
            i += 1 + l;
        }
    }

    fn rdata(&mut self, data: &RecordData) {
        let b = |w: &mut Self, bytes: &[u8]| w.buf.extend_from_slice(bytes);
        match data {
            RecordData::A(a) => b(self, &a.octets()),
            RecordData::Aaaa(a) => b(self, &a.octets()),
            RecordData::Ns(n) | RecordData::Cname(n) | RecordData::Ptr(n) => {
                self.name(n.wire(), true)
            }
            RecordData::Soa(soa) => {
                self.name(soa.mname.wire(), true);
                self.name(soa.rname.wire(), true);
                for v in [soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum] {
                    b(self, &v.to_be_bytes());
                }
            }
            RecordData::Mx {
                preference,
                exchange,
            } => {
                b(self, &preference.to_be_bytes());
                self.name(exchange.wire(), true);
            }
            RecordData::Txt(strings) | RecordData::Spf(strings) => {
                for s in strings {
                    self.buf.push(s.len() as u8);
                    b(self, s);
                }
            }
            RecordData::Srv {
                priority,
                weight,
                port,
                target,
            } => {
                for v in [priority, weight, port] {
                    b(self, &v.to_be_bytes());
                }
                self.name(target.wire(), false);
            }
            RecordData::Naptr {
                order,
                preference,
                flags,
                services,
                regexp,
                replacement,
            } => {
                b(self, &order.to_be_bytes());
                b(self, &preference.to_be_bytes());
                for s in [flags, services, regexp] {
                    self.buf.push(s.len() as u8);
                    b(self, s);
                }
                self.name(replacement.wire(), false);
            }
            RecordData::Ds {
                key_tag,
                algorithm,
                digest_type,
                digest,
            } => {
                b(self, &key_tag.to_be_bytes());
                self.buf.push(*algorithm);
                self.buf.push(*digest_type);
                b(self, digest);
            }
            RecordData::Sshfp {
                algorithm,
                fingerprint_type,
                fingerprint,
            } => {
                self.buf.push(*algorithm);
                self.buf.push(*fingerprint_type);
                b(self, fingerprint);
            }
            RecordData::Tlsa {
                usage,
                selector,
                matching_type,
                data,
            } => {
                self.buf
                    .extend_from_slice(&[*usage, *selector, *matching_type]);
                b(self, data);
            }
            RecordData::Svcb {
                priority,
                target,
                params,
            }
            | RecordData::Https {
                priority,
                target,
                params,
            } => {
                b(self, &priority.to_be_bytes());
                self.name(target.wire(), false);
                for SvcParam { key, value } in params {
                    b(self, &key.to_be_bytes());
                    b(self, &(value.len() as u16).to_be_bytes());
                    b(self, value);
                }
            }
            RecordData::Caa { flags, tag, value } => {
                self.buf.push(*flags);
                self.buf.push(tag.len() as u8);
                b(self, tag.as_bytes());
                b(self, value);
            }
        }
    }
}

#[cfg(test)]
mod tests;
