//! Configuration providers: user manifests translated into the plans the components run.
//!
//! Each YAML document is parsed on its own, so one bad resource yields a diagnostic and the
//! others still apply. Wire types (`serde`, `deny_unknown_fields`) stay in this crate and are
//! converted at the boundary into model and workflow types. This crate holds no state.

pub mod certmanager;
pub mod dnszone;
pub mod ingress;
pub mod static_config;

/// Parses one YAML document of a manifest file. Manifests are the operator's own files, and a
/// Traefik file-provider document of 100,000 routers holds about 500,000 nodes, so the parser's
/// budget is raised above its defaults (250,000 nodes), still bounded: 8 million nodes and
/// events, 256 MiB of scalars, depth 64.
pub fn from_yaml<T: serde::de::DeserializeOwned>(doc: &str) -> Result<T, serde_saphyr::Error> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_nodes: 8_000_000,
            max_events: 8_000_000,
            max_total_scalar_bytes: 256 * 1024 * 1024,
        },
    };
    serde_saphyr::from_str_with_options(doc, options)
}

/// Splits a multi-document YAML stream on `---` lines, keeping each document's first line
/// number for diagnostics. Empty documents are dropped.
pub fn documents(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") {
            if !current.trim().is_empty() {
                out.push((start, std::mem::take(&mut current)));
            }
            current.clear();
            start = i + 2;
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    if !current.trim().is_empty() {
        out.push((start, current));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn splits_documents() {
        let docs = super::documents("a: 1\n---\n\n---\nb: 2\n--- # c\nc: 3\n");
        let got: Vec<(usize, &str)> = docs.iter().map(|(l, d)| (*l, d.trim())).collect();
        assert_eq!(got, [(1, "a: 1"), (5, "b: 2"), (7, "c: 3")]);
    }
}
