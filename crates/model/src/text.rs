//! Lexer for DNS presentation format (RFC 1035 section 5.1): tokens, quoted strings,
//! parentheses, comments, and the logical entries of a master file.

/// One token of presentation text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The token as written, escapes kept, quotes removed.
    pub text: String,
    /// Whether it was written inside double quotes.
    pub quoted: bool,
}

/// One logical entry of a master file: the tokens of a line, joined across parentheses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based line where the entry starts.
    pub line: usize,
    /// Whether the line started with white space (the owner is the previous one).
    pub owner_omitted: bool,
    pub tokens: Vec<Token>,
}

/// A lexical error, with the 1-based line it was found on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LexError {
    #[error("line {line}: unterminated quoted string")]
    UnterminatedQuote { line: usize },
    #[error("line {line}: unbalanced parenthesis")]
    UnbalancedParen { line: usize },
    #[error("line {line}: escape at end of input")]
    DanglingEscape { line: usize },
}

/// Splits master-file text into logical entries. Blank and comment-only lines produce none.
pub fn entries(input: &str) -> Result<Vec<Entry>, LexError> {
    let mut out = Vec::new();
    let mut line = 1usize;
    let mut chars = input.chars().peekable();
    let mut current: Option<Entry> = None;
    let mut depth = 0usize;
    let mut at_line_start = true;
    let mut paren_line = 0usize;

    while let Some(&c) = chars.peek() {
        match c {
            '\n' => {
                chars.next();
                line += 1;
                if depth == 0 {
                    if let Some(e) = current.take() {
                        if !e.tokens.is_empty() {
                            out.push(e);
                        }
                    }
                    at_line_start = true;
                }
            }
            ' ' | '\t' | '\r' => {
                chars.next();
                if at_line_start {
                    at_line_start = false;
                    current.get_or_insert(Entry {
                        line,
                        owner_omitted: true,
                        tokens: Vec::new(),
                    });
                }
            }
            ';' => {
                while let Some(&c) = chars.peek() {
                    if c == '\n' {
                        break;
                    }
                    chars.next();
                }
            }
            '(' => {
                chars.next();
                if depth == 0 {
                    paren_line = line;
                }
                depth += 1;
                at_line_start = false;
                current.get_or_insert(Entry {
                    line,
                    owner_omitted: false,
                    tokens: Vec::new(),
                });
            }
            ')' => {
                chars.next();
                if depth == 0 {
                    return Err(LexError::UnbalancedParen { line });
                }
                depth -= 1;
            }
            '"' => {
                chars.next();
                let start_line = line;
                let mut text = String::new();
                loop {
                    match chars.next() {
                        None => return Err(LexError::UnterminatedQuote { line: start_line }),
                        Some('"') => break,
                        Some('\\') => {
                            let next = chars.next().ok_or(LexError::DanglingEscape { line })?;
                            if next == '\n' {
                                line += 1;
                            }
                            text.push('\\');
                            text.push(next);
                        }
                        Some('\n') => {
                            line += 1;
                            text.push('\n');
                        }
                        Some(other) => text.push(other),
                    }
                }
                let entry = current.get_or_insert(Entry {
                    line: start_line,
                    owner_omitted: false,
                    tokens: Vec::new(),
                });
                entry.tokens.push(Token { text, quoted: true });
                at_line_start = false;
            }
            _ => {
                let mut text = String::new();
                while let Some(&c) = chars.peek() {
                    if matches!(c, ' ' | '\t' | '\r' | '\n' | ';' | '(' | ')' | '"') {
                        break;
                    }
                    chars.next();
                    if c == '\\' {
                        let next = chars.next().ok_or(LexError::DanglingEscape { line })?;
                        text.push('\\');
                        text.push(next);
                    } else {
                        text.push(c);
                    }
                }
                let entry = current.get_or_insert(Entry {
                    line,
                    owner_omitted: false,
                    tokens: Vec::new(),
                });
                entry.tokens.push(Token {
                    text,
                    quoted: false,
                });
                at_line_start = false;
            }
        }
    }
    if depth != 0 {
        return Err(LexError::UnbalancedParen { line: paren_line });
    }
    if let Some(e) = current.take() {
        if !e.tokens.is_empty() {
            out.push(e);
        }
    }
    Ok(out)
}

/// Tokenizes one record value (the text after the type), e.g. `10 mail.example.com.` or
/// `"v=spf1" "-all"`. Line breaks are treated as white space.
pub fn tokens(input: &str) -> Result<Vec<Token>, LexError> {
    let flat: String = input
        .chars()
        .map(|c| if c == '\n' { ' ' } else { c })
        .collect();
    let mut all = Vec::new();
    for e in entries(&flat)? {
        all.extend(e.tokens);
    }
    Ok(all)
}

/// Decodes the escapes of a token into raw octets (`\DDD` and `\X`).
pub fn unescape(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let rest = &bytes[i + 1..];
            if rest.len() >= 3 && rest[..3].iter().all(u8::is_ascii_digit) {
                let v = u32::from(rest[0] - b'0') * 100
                    + u32::from(rest[1] - b'0') * 10
                    + u32::from(rest[2] - b'0');
                out.push(u8::try_from(v).ok()?);
                i += 4;
            } else {
                out.push(*rest.first()?);
                i += 2;
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Writes octets as a quoted character-string, escaping `"`, `\` and non-printable octets.
pub fn quote(out: &mut String, data: &[u8]) {
    out.push('"');
    for &b in data {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(e: &Entry) -> Vec<&str> {
        e.tokens.iter().map(|t| t.text.as_str()).collect()
    }

    #[test]
    fn entries_join_parentheses_and_skip_comments() {
        let input = "$ORIGIN example.com.\n\
                     @ IN SOA ns1 host ( 1 ; serial\n  7200 900\n 1209600 86400 )\n\
                     ; a comment line\n\
                     \twww A 192.0.2.1\n\
                     txt TXT \"a b\" \"c\\\"d\"\n";
        let es = entries(input).expect("valid");
        assert_eq!(es.len(), 4);
        assert_eq!(
            texts(&es[1]),
            ["@", "IN", "SOA", "ns1", "host", "1", "7200", "900", "1209600", "86400"]
        );
        assert!(es[2].owner_omitted);
        assert_eq!(es[2].line, 6);
        assert_eq!(texts(&es[3]), ["txt", "TXT", "a b", "c\\\"d"]);
        assert!(es[3].tokens[2].quoted);
    }

    #[test]
    fn lexical_errors() {
        assert_eq!(
            entries("a \"b\n"),
            Err(LexError::UnterminatedQuote { line: 1 })
        );
        assert_eq!(
            entries("a ( b\n"),
            Err(LexError::UnbalancedParen { line: 1 })
        );
        assert_eq!(
            entries("a ) b\n"),
            Err(LexError::UnbalancedParen { line: 1 })
        );
    }

    #[test]
    fn escapes_round_trip() {
        assert_eq!(unescape("a\\\"b\\065\\\\"), Some(b"a\"bA\\".to_vec()));
        assert_eq!(unescape("\\999"), None);
        let mut s = String::new();
        quote(&mut s, b"a\"b\x01");
        assert_eq!(s, "\"a\\\"b\\001\"");
    }
}
