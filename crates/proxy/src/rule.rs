//! The Traefik v3 rule language: a rule text parsed into an expression tree, and a request
//! matched against it. Pure: no I/O, no allocation on the match path beyond query decoding.
//!
//! Grammar (precedence `!` > `&&` > `||`, parentheses group):
//!
//! ```text
//! or      := and ("||" and)*
//! and     := unary ("&&" unary)*
//! unary   := "!" unary | "(" or ")" | matcher
//! matcher := Name "(" string ("," string)* ")"
//! string  := `raw` | "go-escaped"
//! ```

use std::fmt;
use std::net::IpAddr;

use model::net::form_decode;
use model::net::IpNet;
use regex::Regex;

/// The longest rule accepted, in bytes.
pub const MAX_RULE_LEN: usize = 64 * 1024;
/// The deepest nesting of parentheses and `!` accepted.
const MAX_DEPTH: usize = 64;
/// The compiled size limit of one regular expression.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A parsed rule. Matching is a pure function of the rule and a [`RequestView`].
#[derive(Debug, Clone)]
pub struct Rule {
    expr: Expr,
    text: String,
}

/// A node of a rule's expression tree.
#[derive(Debug, Clone)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Matcher(Matcher),
}

/// One matcher of the rule language.
#[derive(Debug, Clone)]
pub enum Matcher {
    Host(HostPattern),
    HostRegexp(Regex),
    Method(String),
    Path(String),
    PathPrefix(String),
    PathRegexp(Regex),
    /// Header name (lowercase) and exact value.
    Header(String, String),
    HeaderRegexp(String, Regex),
    /// Query parameter name and exact (decoded) value.
    Query(String, String),
    QueryRegexp(String, Regex),
    ClientIp(IpNet),
}

/// A `Host` value: an exact name, `*.suffix` (exactly one more label) or `**.suffix` (one or
/// more labels). Stored lowercase without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    Exact(String),
    OneLabel(String),
    AnyLabels(String),
}

/// Why a rule does not parse: the byte offset in the rule text and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at position {position}: {message}")]
pub struct RuleError {
    pub position: usize,
    pub message: String,
}

/// What a rule sees of a request. `host` is lowercase, without port or trailing dot.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub host: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
    pub client_ip: IpAddr,
}

impl Rule {
    /// Parses a rule.
    pub fn parse(text: &str) -> Result<Rule, RuleError> {
        if text.len() > MAX_RULE_LEN {
            return Err(RuleError {
                position: MAX_RULE_LEN,
                message: format!("rule longer than {MAX_RULE_LEN} bytes"),
            });
        }
        let tokens = lex(text)?;
        let mut p = Parser {
            tokens: &tokens,
            at: 0,
            end: text.len(),
            depth: 0,
        };
        let expr = p.or()?;
        if let Some(t) = p.peek() {
            return Err(RuleError {
                position: t.pos,
                message: format!("unexpected {}", t.kind),
            });
        }
        Ok(Rule {
            expr,
            text: text.to_string(),
        })
    }

    /// The rule's text as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The expression tree.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Traefik's default priority: the length of the rule.
    pub fn default_priority(&self) -> i64 {
        i64::try_from(self.text.len()).unwrap_or(i64::MAX)
    }

    /// Whether the request matches.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        self.expr.matches(req)
    }
}

impl Expr {
    /// Whether the request matches this expression.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        match self {
            Expr::And(a, b) => a.matches(req) && b.matches(req),
            Expr::Or(a, b) => a.matches(req) || b.matches(req),
            Expr::Not(a) => !a.matches(req),
            Expr::Matcher(m) => m.matches(req),
        }
    }

    /// Host patterns one of which every matching request has, if the expression requires one.
    pub fn required_hosts(&self) -> Option<Vec<HostPattern>> {
        match self {
            Expr::Matcher(Matcher::Host(h)) => Some(vec![h.clone()]),
            Expr::And(a, b) => a.required_hosts().or_else(|| b.required_hosts()),
            Expr::Or(a, b) => {
                let mut l = a.required_hosts()?;
                l.extend(b.required_hosts()?);
                Some(l)
            }
            _ => None,
        }
    }

    /// Path constraints one of which every matching request meets, if the expression has them.
    pub fn required_paths(&self) -> Option<Vec<PathKey>> {
        match self {
            Expr::Matcher(Matcher::Path(p)) => Some(vec![PathKey::Exact(p.clone())]),
            Expr::Matcher(Matcher::PathPrefix(p)) => Some(vec![PathKey::Prefix(p.clone())]),
            Expr::And(a, b) => a.required_paths().or_else(|| b.required_paths()),
            Expr::Or(a, b) => {
                let mut l = a.required_paths()?;
                l.extend(b.required_paths()?);
                Some(l)
            }
            _ => None,
        }
    }
}

/// A path constraint used to index routers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathKey {
    Exact(String),
    Prefix(String),
}

impl Matcher {
    fn matches(&self, req: &RequestView<'_>) -> bool {
        match self {
            Matcher::Host(h) => h.matches(req.host),
            Matcher::HostRegexp(r) => r.is_match(req.host),
            Matcher::Method(m) => req.method == m,
            Matcher::Path(p) => req.path == p,
            Matcher::PathPrefix(p) => req.path.starts_with(p.as_str()),
            Matcher::PathRegexp(r) => r.is_match(req.path),
            Matcher::Header(k, v) => req
                .headers
                .get_all(k.as_str())
                .iter()
                .any(|h| h.as_bytes() == v.as_bytes()),
            Matcher::HeaderRegexp(k, r) => req
                .headers
                .get_all(k.as_str())
                .iter()
                .any(|h| h.to_str().is_ok_and(|s| r.is_match(s))),
            Matcher::Query(k, v) => query_values(req.query, k).any(|got| got == *v),
            Matcher::QueryRegexp(k, r) => query_values(req.query, k).any(|got| r.is_match(&got)),
            Matcher::ClientIp(net) => net.contains(req.client_ip),
        }
    }
}

impl HostPattern {
    /// Parses a `Host` value.
    pub fn parse(value: &str) -> Result<HostPattern, String> {
        let v = value.trim_end_matches('.').to_ascii_lowercase();
        let (kind, rest): (fn(String) -> HostPattern, &str) =
            if let Some(rest) = v.strip_prefix("**.") {
                (HostPattern::AnyLabels, rest)
            } else if let Some(rest) = v.strip_prefix("*.") {
                (HostPattern::OneLabel, rest)
            } else {
                (HostPattern::Exact, v.as_str())
            };
        if rest.is_empty() || rest.len() > 253 {
            return Err(format!("invalid host {value:?}"));
        }
        for label in rest.split('.') {
            let ok = !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(format!("invalid host {value:?}"));
            }
        }
        Ok(kind(rest.to_string()))
    }

    /// Whether a (lowercase, port-less) host matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => host == h,
            HostPattern::OneLabel(suffix) => host
                .split_once('.')
                .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
            HostPattern::AnyLabels(suffix) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::OneLabel(h) => write!(f, "*.{h}"),
            HostPattern::AnyLabels(h) => write!(f, "**.{h}"),
        }
    }
}

/// The decoded values of query parameter `key`.
fn query_values<'a>(query: Option<&'a str>, key: &'a str) -> impl Iterator<Item = String> + 'a {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(move |pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(k) == key).then(|| form_decode(v))
        })
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Ident(String),
    Str(String),
    LParen,
    RParen,
    Comma,
    And,
    Or,
    Not,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Ident(s) => write!(f, "name {s:?}"),
            Kind::Str(_) => f.write_str("a string"),
            Kind::LParen => f.write_str("'('"),
            Kind::RParen => f.write_str("')'"),
            Kind::Comma => f.write_str("','"),
            Kind::And => f.write_str("'&&'"),
            Kind::Or => f.write_str("'||'"),
            Kind::Not => f.write_str("'!'"),
        }
    }
}

#[derive(Debug)]
struct Token {
    kind: Kind,
    pos: usize,
}

fn err(position: usize, message: impl Into<String>) -> RuleError {
    RuleError {
        position,
        message: message.into(),
    }
}

fn lex(text: &str) -> Result<Vec<Token>, RuleError> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let pos = i;
        let kind = match b[i] {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => Kind::LParen,
            b')' => Kind::RParen,
            b',' => Kind::Comma,
            b'!' => Kind::Not,
            b'&' if b.get(i + 1) == Some(&b'&') => {
                i += 1;
                Kind::And
            }
            b'|' if b.get(i + 1) == Some(&b'|') => {
                i += 1;
                Kind::Or
            }
            b'`' => {
                let end = text[i + 1..]
                    .find('`')
                    .ok_or_else(|| err(pos, "unterminated `string`"))?;
                let s = text[i + 1..i + 1 + end].to_string();
                i += end + 1;
                Kind::Str(s)
            }
            b'"' => {
                let (s, len) = go_string(&text[i..]).map_err(|(off, m)| err(pos + off, m))?;
                i += len - 1;
                Kind::Str(s)
            }
            c if c.is_ascii_alphabetic() => {
                let len = b[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .count();
                let s = text[i..i + len].to_string();
                i += len - 1;
                Kind::Ident(s)
            }
            b'\'' => {
                return Err(err(
                    pos,
                    "single quotes are not accepted; use `backticks` or \"double quotes\"",
                ))
            }
            _ => {
                let c = text[i..].chars().next().unwrap_or('?');
                return Err(err(pos, format!("unexpected character {c:?}")));
            }
        };
        out.push(Token { kind, pos });
        i += 1;
    }
    Ok(out)
}

/// Reads a double-quoted string with Go's escapes; returns it and the bytes consumed.
fn go_string(s: &str) -> Result<(String, usize), (usize, String)> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            '\\' => {
                let (j, e) = chars.next().ok_or((i, "unterminated escape".to_string()))?;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    '\'' => out.push('\''),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let mut v: u32 = 0;
                        for _ in 0..n {
                            let (_, h) = chars.next().ok_or((j, "short escape".to_string()))?;
                            let d = h.to_digit(16).ok_or((j, "bad hex escape".to_string()))?;
                            v = v * 16 + d;
                        }
                        out.push(char::from_u32(v).ok_or((j, "invalid code point".to_string()))?);
                    }
                    other => return Err((j, format!("unknown escape \\{other}"))),
                }
            }
            c => out.push(c),
        }
    }
    Err((0, "unterminated \"string\"".to_string()))
}

struct Parser<'a> {
    tokens: &'a [Token],
    at: usize,
    end: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn pos(&self) -> usize {
        self.peek().map_or(self.end, |t| t.pos)
    }

    fn next(&mut self) -> Option<&Token> {
        let t = self.tokens.get(self.at);
        self.at += 1;
        t
    }

    fn expect(&mut self, kind: &Kind, what: &str) -> Result<(), RuleError> {
        let pos = self.pos();
        match self.next() {
            Some(t) if t.kind == *kind => Ok(()),
            Some(t) => Err(err(pos, format!("expected {what}, found {}", t.kind))),
            None => Err(err(
                pos,
                format!("expected {what}, found the end of the rule"),
            )),
        }
    }

    fn or(&mut self) -> Result<Expr, RuleError> {
        let mut left = self.and()?;
        while self.peek().is_some_and(|t| t.kind == Kind::Or) {
            self.at += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, RuleError> {
        let mut left = self.unary()?;
        while self.peek().is_some_and(|t| t.kind == Kind::And) {
            self.at += 1;
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, RuleError> {
        let pos = self.pos();
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(err(pos, "rule nested too deeply"));
        }
        let result = match self.peek().map(|t| &t.kind) {
            Some(Kind::Not) => {
                self.at += 1;
                self.unary().map(|e| Expr::Not(Box::new(e)))
            }
            Some(Kind::LParen) => {
                self.at += 1;
                let e = self.or()?;
                self.expect(&Kind::RParen, "')'")?;
                Ok(e)
            }
            Some(Kind::Ident(_)) => self.matcher(),
            Some(k) => Err(err(pos, format!("expected a matcher, found {k}"))),
            None => Err(err(pos, "expected a matcher, found the end of the rule")),
        };
        self.depth -= 1;
        result
    }

    fn matcher(&mut self) -> Result<Expr, RuleError> {
        let pos = self.pos();
        let name = match self.next().map(|t| &t.kind) {
            Some(Kind::Ident(n)) => n.clone(),
            _ => return Err(err(pos, "expected a matcher")),
        };
        self.expect(&Kind::LParen, "'(' after the matcher name")?;
        let mut args = Vec::new();
        loop {
            let apos = self.pos();
            match self.next().map(|t| t.kind.clone()) {
                Some(Kind::Str(s)) => args.push((apos, s)),
                Some(Kind::RParen) if args.is_empty() => break,
                Some(k) => return Err(err(apos, format!("expected a string, found {k}"))),
                None => return Err(err(apos, "expected a string, found the end of the rule")),
            }
            let cpos = self.pos();
            match self.next().map(|t| &t.kind) {
                Some(Kind::Comma) => continue,
                Some(Kind::RParen) => break,
                Some(k) => return Err(err(cpos, format!("expected ',' or ')', found {k}"))),
                None => return Err(err(cpos, "expected ')', found the end of the rule")),
            }
        }
        build_matcher(&name, pos, &args).map(Expr::Matcher)
    }
}

fn build_matcher(name: &str, pos: usize, args: &[(usize, String)]) -> Result<Matcher, RuleError> {
    let arity = match name {
        "Host" | "HostRegexp" | "Method" | "Path" | "PathPrefix" | "PathRegexp" | "ClientIP" => 1,
        "Header" | "HeaderRegexp" | "Query" | "QueryRegexp" => 2,
        "HostSNI" | "HostSNIRegexp" | "ALPN" => {
            return Err(err(
                pos,
                format!("{name} is a TCP matcher; HTTP routers use Host"),
            ))
        }
        _ => return Err(err(pos, format!("unknown matcher {name:?}"))),
    };
    if args.len() != arity {
        return Err(err(
            pos,
            format!("{name} takes {arity} argument(s), got {}", args.len()),
        ));
    }
    let (apos, a) = (args[0].0, args[0].1.as_str());
    let re = |p: usize, s: &str| {
        regex::RegexBuilder::new(s)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| err(p, format!("invalid regular expression: {e}")))
    };
    let header_name = |p: usize, s: &str| {
        http::HeaderName::from_bytes(s.as_bytes())
            .map(|h| h.as_str().to_string())
            .map_err(|_| err(p, format!("invalid header name {s:?}")))
    };
    Ok(match name {
        "Host" => Matcher::Host(HostPattern::parse(a).map_err(|m| err(apos, m))?),
        "HostRegexp" => Matcher::HostRegexp(re(apos, a)?),
        "Method" => {
            if a.is_empty() || !a.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-') {
                return Err(err(apos, format!("invalid method {a:?}")));
            }
            Matcher::Method(a.to_ascii_uppercase())
        }
        "Path" | "PathPrefix" => {
            if !a.starts_with('/') {
                return Err(err(apos, format!("path {a:?} must start with '/'")));
            }
            if name == "Path" {
                Matcher::Path(a.to_string())
            } else {
                Matcher::PathPrefix(a.to_string())
            }
        }
        "PathRegexp" => Matcher::PathRegexp(re(apos, a)?),
        "ClientIP" => Matcher::ClientIp(
            IpNet::parse(a)
                .map_err(|_| err(apos, format!("invalid IP address or network {a:?}")))?,
        ),
        "Header" => Matcher::Header(header_name(apos, a)?, args[1].1.clone()),
        "HeaderRegexp" => Matcher::HeaderRegexp(header_name(apos, a)?, re(args[1].0, &args[1].1)?),
        "Query" => Matcher::Query(a.to_string(), args[1].1.clone()),
        _ => Matcher::QueryRegexp(a.to_string(), re(args[1].0, &args[1].1)?),
    })
}

#[cfg(test)]
mod tests;
