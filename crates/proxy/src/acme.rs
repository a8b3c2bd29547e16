//! ACME HTTP-01 answers: while a challenge is presented, `GET
//! /.well-known/acme-challenge/<token>` for its host on any plain-HTTP entry point answers the
//! key authorization, ahead of redirections and routers; nothing else is served from that path
//! by this table, and a token is only answered for the host it was issued for.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The path prefix of HTTP-01 challenges (RFC 8555 section 8.3).
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// At most this many challenges at once (each is a few hundred bytes).
const MAX_CHALLENGES: usize = 10_000;

/// The challenges being answered; cheap to clone, shared with the certificate controller.
#[derive(Clone, Default)]
pub struct Http01Challenges {
    inner: Arc<RwLock<HashMap<(String, String), String>>>,
}

impl Http01Challenges {
    /// Answers `token` for `host` with `key_authorization` until [`Http01Challenges::remove`].
    pub fn insert(&self, host: &str, token: &str, key_authorization: &str) -> Result<(), String> {
        let mut m = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAX_CHALLENGES {
            return Err(format!(
                "{MAX_CHALLENGES} HTTP-01 challenges are already presented"
            ));
        }
        m.insert(
            (host.to_ascii_lowercase(), token.to_string()),
            key_authorization.to_string(),
        );
        Ok(())
    }

    pub fn remove(&self, host: &str, token: &str) {
        let mut m = self.inner.write().unwrap_or_else(|p| p.into_inner());
        m.remove(&(host.to_ascii_lowercase(), token.to_string()));
    }

    /// The answer for a request's host (without its port) and token.
    pub fn answer(&self, host: &str, token: &str) -> Option<String> {
        let m = self.inner.read().unwrap_or_else(|p| p.into_inner());
        if m.is_empty() {
            return None;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        m.get(&(host, token.to_string())).cloned()
    }

    pub fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_its_host_and_token() {
        let c = Http01Challenges::default();
        c.insert("WWW.example.com", "tok", "tok.thumb")
            .expect("insert");
        assert_eq!(
            c.answer("www.example.com", "tok").as_deref(),
            Some("tok.thumb")
        );
        assert_eq!(
            c.answer("www.example.com.", "tok").as_deref(),
            Some("tok.thumb")
        );
        assert_eq!(c.answer("other.example.com", "tok"), None);
        assert_eq!(c.answer("www.example.com", "other"), None);
        c.remove("www.example.com", "tok");
        assert!(c.is_empty());
    }
}
