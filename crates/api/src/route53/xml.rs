//! A small, bounded XML tree for Route53 request bodies, and an escaping writer for responses.
//!
//! Request documents are small (a change batch is at most 32,000 characters of values and 1,000
//! records), so a tree is simpler than streaming; depth and size are bounded so that hostile
//! input is refused before it costs memory.

use quick_xml::events::Event;
use quick_xml::Reader;

/// Largest request body accepted.
pub const MAX_BODY: usize = 2 * 1024 * 1024;
/// Deepest nesting accepted (Route53 documents need 6).
const MAX_DEPTH: usize = 16;
/// Most elements in one document.
const MAX_ELEMENTS: usize = 100_000;

/// An element: its local name (namespace prefix dropped), text and children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child named `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The trimmed text of the first child named `name`.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("malformed XML: {0}")]
    Malformed(String),
    #[error("XML document nested too deeply")]
    TooDeep,
    #[error("XML document has too many elements")]
    TooLarge,
    #[error("XML document has no root element")]
    Empty,
}

/// Parses a document into its root element. DTDs and processing instructions are ignored;
/// entities other than the five predefined ones and character references are refused.
pub fn parse(body: &[u8]) -> Result<Element, XmlError> {
    if body.len() > MAX_BODY {
        return Err(XmlError::TooLarge);
    }
    let mut reader = Reader::from_reader(body);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| XmlError::Malformed(e.to_string()))?;
        match event {
            Event::Start(e) => {
                count += 1;
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                if count > MAX_ELEMENTS {
                    return Err(XmlError::TooLarge);
                }
                stack.push(Element {
                    name: local_name(e.name().as_ref()),
                    ..Element::default()
                });
            }
            Event::Empty(e) => {
                count += 1;
                let el = Element {
                    name: local_name(e.name().as_ref()),
                    ..Element::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None if root.is_none() => root = Some(el),
                    None => return Err(XmlError::Malformed("more than one root element".into())),
                }
            }
            Event::End(_) => {
                let el = stack
                    .pop()
                    .ok_or_else(|| XmlError::Malformed("unbalanced end tag".into()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None if root.is_none() => root = Some(el),
                    None => return Err(XmlError::Malformed("more than one root element".into())),
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    let raw = std::str::from_utf8(t.as_ref())
                        .map_err(|_| XmlError::Malformed("text is not UTF-8".into()))?;
                    top.text.push_str(&unescape(raw)?);
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(t.as_ref()));
                }
            }
            Event::GeneralRef(r) => {
                if let Some(top) = stack.last_mut() {
                    let name = std::str::from_utf8(r.as_ref())
                        .map_err(|_| XmlError::Malformed("bad reference".into()))?;
                    top.text.push_str(&unescape(&format!("&{name};"))?);
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !stack.is_empty() {
        return Err(XmlError::Malformed("unclosed element".into()));
    }
    root.ok_or(XmlError::Empty)
}

fn local_name(qname: &[u8]) -> String {
    let s = String::from_utf8_lossy(qname);
    match s.rsplit_once(':') {
        Some((_, local)) => local.to_string(),
        None => s.into_owned(),
    }
}

fn unescape(raw: &str) -> Result<String, XmlError> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after
            .find(';')
            .ok_or_else(|| XmlError::Malformed("unterminated entity".into()))?;
        let name = &after[..end];
        let ch = match name {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            n if n.starts_with("#x") => u32::from_str_radix(&n[2..], 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| XmlError::Malformed(format!("bad character reference &{n};")))?,
            n if n.starts_with('#') => n[1..]
                .parse::<u32>()
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| XmlError::Malformed(format!("bad character reference &{n};")))?,
            n => return Err(XmlError::Malformed(format!("unknown entity &{n};"))),
        };
        out.push(ch);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Escapes text for an XML element.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_change_batch() {
        let doc = br#"<?xml version="1.0" encoding="UTF-8"?>
<ChangeResourceRecordSetsRequest xmlns="https://route53.amazonaws.com/doc/2013-04-01/">
  <ChangeBatch><Changes><Change><Action>UPSERT</Action>
    <ResourceRecordSet><Name>a.example.com</Name><Type>TXT</Type><TTL>60</TTL>
      <ResourceRecords><ResourceRecord><Value>"x &amp; y &#65;"</Value></ResourceRecord></ResourceRecords>
    </ResourceRecordSet></Change></Changes></ChangeBatch>
</ChangeResourceRecordSetsRequest>"#;
        let root = parse(doc).expect("valid");
        assert_eq!(root.name, "ChangeResourceRecordSetsRequest");
        let rrs = root
            .child("ChangeBatch")
            .and_then(|b| b.child("Changes"))
            .and_then(|c| c.child("Change"))
            .and_then(|c| c.child("ResourceRecordSet"))
            .expect("path");
        assert_eq!(rrs.text_of("Type"), Some("TXT"));
        let value = rrs
            .child("ResourceRecords")
            .and_then(|r| r.child("ResourceRecord"))
            .and_then(|r| r.text_of("Value"));
        assert_eq!(value, Some("\"x & y A\""));
    }

    #[test]
    fn refuses_hostile_documents() {
        assert!(parse(b"<a><b></a>").is_err());
        assert!(parse(b"").is_err());
        assert!(parse(b"<a>&xxe;</a>").is_err());
        assert!(parse(b"<a/><b/>").is_err());
        let deep = "<a>".repeat(40) + &"</a>".repeat(40);
        assert_eq!(parse(deep.as_bytes()), Err(XmlError::TooDeep));
        assert_eq!(escape("<a&\"b>"), "&lt;a&amp;&quot;b&gt;");
    }
}
