//! HPACK (RFC 7541): the decoder for request header blocks, with its dynamic table and
//! Huffman decoding, and the encoder for response header blocks.
//!
//! Decoded values are slices of the block (`Bytes`, no copy) unless Huffman-coded; names
//! are resolved once to a [`Name`] (a pseudo-header or an `http::HeaderName`) and kept so in
//! the dynamic table, so a field taken from the table costs a reference-count increment.
//! The encoder writes no dynamic-table entries (so it keeps no state and needs no table-size
//! update whatever the peer allows): `:status` and known names come from the static table,
//! values are written as they are.

use std::collections::VecDeque;
use std::sync::LazyLock;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};

/// A decoding failure: a connection error of type COMPRESSION_ERROR.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DecodeError(pub(crate) &'static str);

/// A field name: one of the request or response pseudo-headers, another name starting
/// with `:` (malformed in a request, kept so the request can be refused), or a header name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Name {
    Method,
    Scheme,
    Authority,
    Path,
    Status,
    Protocol,
    OtherPseudo,
    Header(HeaderName),
    /// Not a valid lower-case field name: the request that carries it is malformed.
    Invalid,
}

impl Name {
    #[cfg(test)]
    pub(crate) fn parse_for_tests(raw: &[u8]) -> Name {
        Name::parse(raw)
    }

    fn parse(raw: &[u8]) -> Name {
        match raw {
            b":method" => Name::Method,
            b":scheme" => Name::Scheme,
            b":authority" => Name::Authority,
            b":path" => Name::Path,
            b":status" => Name::Status,
            b":protocol" => Name::Protocol,
            [b':', ..] => Name::OtherPseudo,
            // HTTP/2 field names are lower case (RFC 9113 section 8.2.1); `HeaderName` would
            // lower-case them silently.
            _ if raw.iter().any(u8::is_ascii_uppercase) => Name::Invalid,
            _ => HeaderName::from_bytes(raw).map_or(Name::Invalid, Name::Header),
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    name: Name,
    value: Bytes,
    /// RFC 7541 section 4.1: name and value lengths plus 32.
    size: usize,
}

/// The static table (RFC 7541 Appendix A).
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

static STATIC_ENTRIES: LazyLock<Vec<Entry>> = LazyLock::new(|| {
    STATIC
        .iter()
        .map(|(n, v)| Entry {
            name: Name::parse(n.as_bytes()),
            value: Bytes::from_static(v.as_bytes()),
            size: n.len() + v.len() + 32,
        })
        .collect()
});

/// Huffman code lengths of the 256 octets and EOS (RFC 7541 Appendix B). The code is
/// canonical: codes are assigned in order of length, then of symbol, so the lengths are
/// all it takes to rebuild it.
const HUFFMAN_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];

const EOS: u16 = 256;

/// The canonical code rebuilt for decoding: for each length, the first code of that length,
/// how many codes have it, and where its symbols start in `symbols`.
struct Huffman {
    first: [u32; 31],
    count: [u32; 31],
    offset: [u32; 31],
    symbols: [u16; 257],
    /// For each 8-bit prefix of a code at most 8 bits long: (symbol, length); length 0 when
    /// the prefix starts a longer code.
    fast: [(u16, u8); 256],
}

static HUFFMAN: LazyLock<Huffman> = LazyLock::new(|| {
    let mut h = Huffman {
        first: [0; 31],
        count: [0; 31],
        offset: [0; 31],
        symbols: [0; 257],
        fast: [(0, 0); 256],
    };
    for &l in &HUFFMAN_LENGTHS {
        h.count[usize::from(l)] += 1;
    }
    let mut order: Vec<u16> = (0..=EOS).collect();
    order.sort_by_key(|&s| (HUFFMAN_LENGTHS[usize::from(s)], s));
    h.symbols.copy_from_slice(&order);
    let (mut code, mut at) = (0u32, 0u32);
    for len in 1..31 {
        h.first[len] = code;
        h.offset[len] = at;
        code = (code + h.count[len]) << 1;
        at += h.count[len];
    }
    for len in 1..=8usize {
        for i in 0..h.count[len] {
            let sym = h.symbols[(h.offset[len] + i) as usize];
            let c = (h.first[len] + i) << (8 - len);
            for low in 0..(1u32 << (8 - len)) {
                h.fast[(c | low) as usize] = (sym, len as u8);
            }
        }
    }
    h
});

/// Decodes a Huffman-coded string (RFC 7541 section 5.2).
pub(crate) fn huffman_decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let h = &*HUFFMAN;
    // Bits not yet decoded, most significant first: `bits` of them in `acc`.
    let (mut acc, mut bits) = (0u64, 0u32);
    let mut input = src.iter();
    loop {
        while bits <= 56 {
            match input.next() {
                Some(&b) => {
                    acc |= u64::from(b) << (56 - bits);
                    bits += 8;
                }
                None => break,
            }
        }
        if bits == 0 {
            return Ok(());
        }
        let (sym, len) = h.fast[(acc >> 56) as usize];
        if len != 0 && u32::from(len) <= bits {
            out.push(sym as u8);
            acc <<= len;
            bits -= u32::from(len);
            continue;
        }
        // A longer code: walk the lengths.
        let mut found = None;
        for len in 9..=30u32.min(bits) {
            let code = (acc >> (64 - len)) as u32;
            let l = len as usize;
            let i = code.wrapping_sub(h.first[l]);
            if code >= h.first[l] && i < h.count[l] {
                found = Some((h.symbols[(h.offset[l] + i) as usize], len));
                break;
            }
        }
        match found {
            Some((EOS, _)) => return Err(DecodeError("EOS in a Huffman string")),
            Some((sym, len)) => {
                out.push(sym as u8);
                acc <<= len;
                bits -= len;
            }
            None => {
                // What is left must be padding: fewer than 8 bits, all ones (section 5.2).
                let ones = if bits == 0 { 0 } else { acc >> (64 - bits) };
                if bits < 8 && ones == (1u64 << bits) - 1 {
                    return Ok(());
                }
                return Err(DecodeError("invalid Huffman padding"));
            }
        }
    }
}

/// Reads an integer with an `n`-bit prefix (RFC 7541 section 5.1).
fn integer(buf: &[u8], at: &mut usize, n: u8) -> Result<usize, DecodeError> {
    let first = *buf.get(*at).ok_or(DecodeError("truncated integer"))?;
    *at += 1;
    let max = (1usize << n) - 1;
    let mut value = usize::from(first) & max;
    if value < max {
        return Ok(value);
    }
    let mut shift = 0;
    loop {
        let b = *buf.get(*at).ok_or(DecodeError("truncated integer"))?;
        *at += 1;
        // Nothing here needs more than 2^28 or so; five continuation octets are plenty.
        if shift > 28 {
            return Err(DecodeError("integer too large"));
        }
        value += (usize::from(b) & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
}

/// The decoder of one connection's request header blocks.
pub(crate) struct Decoder {
    table: VecDeque<Entry>,
    size: usize,
    /// The table's current limit, as set by the last size update.
    max: usize,
    /// The limit edgeplane announced (SETTINGS_HEADER_TABLE_SIZE): no update may exceed it.
    allowed: usize,
    scratch: Vec<u8>,
}

impl Decoder {
    pub(crate) fn new(allowed: usize) -> Decoder {
        Decoder {
            table: VecDeque::new(),
            size: 0,
            max: allowed,
            allowed,
            scratch: Vec::new(),
        }
    }

    fn get(&self, index: usize) -> Result<&Entry, DecodeError> {
        match index {
            0 => Err(DecodeError("index 0")),
            1..=61 => Ok(&STATIC_ENTRIES[index - 1]),
            _ => self
                .table
                .get(index - 62)
                .ok_or(DecodeError("index beyond the table")),
        }
    }

    fn evict_to(&mut self, max: usize) {
        while self.size > max {
            match self.table.pop_back() {
                Some(e) => self.size -= e.size,
                None => break,
            }
        }
    }

    fn insert(&mut self, e: Entry) {
        if e.size > self.max {
            // An entry larger than the table empties it and is not kept (section 4.4).
            self.table.clear();
            self.size = 0;
            return;
        }
        self.evict_to(self.max - e.size);
        self.size += e.size;
        self.table.push_front(e);
    }

    fn string(&mut self, block: &Bytes, at: &mut usize) -> Result<(Bytes, usize), DecodeError> {
        let huffman = block.get(*at).is_some_and(|b| b & 0x80 != 0);
        let len = integer(block, at, 7)?;
        let end = at
            .checked_add(len)
            .filter(|&e| e <= block.len())
            .ok_or(DecodeError("string beyond the block"))?;
        let raw = block.slice(*at..end);
        *at = end;
        if !huffman {
            return Ok((raw, len));
        }
        self.scratch.clear();
        huffman_decode(&raw, &mut self.scratch)?;
        let n = self.scratch.len();
        Ok((Bytes::copy_from_slice(&self.scratch), n))
    }

    /// Decodes a whole header block, calling `field` for each field in order.
    pub(crate) fn decode(
        &mut self,
        block: &Bytes,
        mut field: impl FnMut(&Name, &Bytes),
    ) -> Result<(), DecodeError> {
        let mut at = 0;
        let mut fields_seen = false;
        while at < block.len() {
            let b = block[at];
            if b & 0x80 != 0 {
                let i = integer(block, &mut at, 7)?;
                let e = self.get(i)?;
                field(&e.name, &e.value);
            } else if b & 0xe0 == 0x20 {
                // A dynamic table size update: only before the block's first field.
                if fields_seen {
                    return Err(DecodeError("table size update after a field"));
                }
                let max = integer(block, &mut at, 5)?;
                if max > self.allowed {
                    return Err(DecodeError("table size above the announced limit"));
                }
                self.max = max;
                self.evict_to(max);
                continue;
            } else {
                let indexing = b & 0x40 != 0;
                let i = integer(block, &mut at, if indexing { 6 } else { 4 })?;
                let (name, name_len) = if i == 0 {
                    let (raw, n) = self.string(block, &mut at)?;
                    (Name::parse(&raw), n)
                } else {
                    let e = self.get(i)?;
                    (e.name.clone(), e.size - e.value.len() - 32)
                };
                let (value, value_len) = self.string(block, &mut at)?;
                field(&name, &value);
                if indexing {
                    self.insert(Entry {
                        name,
                        value,
                        size: name_len + value_len + 32,
                    });
                }
            }
            fields_seen = true;
        }
        Ok(())
    }
}

/// Writes an integer with an `n`-bit prefix, the prefix's other bits being `flags`.
fn put_integer(out: &mut BytesMut, value: usize, n: u8, flags: u8) {
    let max = (1usize << n) - 1;
    if value < max {
        out.put_u8(flags | value as u8);
        return;
    }
    out.put_u8(flags | max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        out.put_u8((rest as u8 & 0x7f) | 0x80);
        rest >>= 7;
    }
    out.put_u8(rest as u8);
}

fn put_string(out: &mut BytesMut, s: &[u8]) {
    put_integer(out, s.len(), 7, 0);
    out.put_slice(s);
}

/// The static-table index of a header name, for the names a response carries.
fn static_name(name: &HeaderName) -> Option<usize> {
    Some(match name.as_str() {
        "accept-ranges" => 18,
        "access-control-allow-origin" => 20,
        "age" => 21,
        "allow" => 22,
        "cache-control" => 24,
        "content-disposition" => 25,
        "content-encoding" => 26,
        "content-language" => 27,
        "content-length" => 28,
        "content-location" => 29,
        "content-range" => 30,
        "content-type" => 31,
        "date" => 33,
        "etag" => 34,
        "expires" => 36,
        "last-modified" => 44,
        "link" => 45,
        "location" => 46,
        "proxy-authenticate" => 48,
        "refresh" => 52,
        "retry-after" => 53,
        "server" => 54,
        "set-cookie" => 55,
        "strict-transport-security" => 56,
        "vary" => 59,
        "via" => 60,
        "www-authenticate" => 61,
        _ => return None,
    })
}

/// Writes a response's `:status`.
pub(crate) fn encode_status(out: &mut BytesMut, status: u16) {
    let indexed = match status {
        200 => 8,
        204 => 9,
        206 => 10,
        304 => 11,
        400 => 12,
        404 => 13,
        500 => 14,
        _ => 0,
    };
    if indexed != 0 {
        put_integer(out, indexed, 7, 0x80);
        return;
    }
    // A literal without indexing, with `:status`'s name from the static table.
    put_integer(out, 8, 4, 0);
    let digits = [
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ];
    put_string(out, &digits);
}

/// Writes a header field as a literal that is not indexed (or never indexed, for a value
/// marked sensitive, so intermediaries keep it out of their tables too).
pub(crate) fn encode_field(out: &mut BytesMut, name: &HeaderName, value: &HeaderValue) {
    let flags = if value.is_sensitive() { 0x10 } else { 0 };
    match static_name(name) {
        Some(i) => put_integer(out, i, 4, flags),
        None => {
            put_integer(out, 0, 4, flags);
            put_string(out, name.as_str().as_bytes());
        }
    }
    put_string(out, value.as_bytes());
}

#[cfg(test)]
mod tests;
