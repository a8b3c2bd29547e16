//! Authentication shared by every HTTP API: the request's SigV4 signature verified against the
//! identities, an optional per-key rate limit, and the IAM user behind the key, if any.

use axum::http::{HeaderMap, Method, Uri};
use store::identities::{IamUser, Identities, Identity};

use crate::sigv4;

/// Who signed a request.
#[derive(Debug)]
pub struct Signer {
    pub identity: Identity,
    /// The IAM user owning the key, for IAM users' keys.
    pub user: Option<IamUser>,
}

/// Why a request was not authenticated.
#[derive(Debug)]
pub enum AuthFailure {
    /// The signature or key was refused, with AWS's error code.
    Refused(sigv4::AuthError),
    /// The key's rate limit is spent.
    Throttled,
    /// The identity store failed.
    Internal,
}

impl From<sigv4::AuthError> for AuthFailure {
    fn from(e: sigv4::AuthError) -> Self {
        AuthFailure::Refused(e)
    }
}

/// A token bucket per access key: `rate` requests per second, bursts of `rate` (at least 1).
/// Idle buckets are pruned so that the table stays small.
pub struct RateLimiter {
    rate: f64,
    buckets: std::sync::Mutex<std::collections::HashMap<String, (f64, std::time::Instant)>>,
}

impl RateLimiter {
    pub fn new(rate: f64) -> Self {
        RateLimiter {
            rate: rate.max(0.001),
            buckets: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Takes one token for `key`; false when the bucket is empty.
    pub fn take(&self, key: &str) -> bool {
        let now = std::time::Instant::now();
        let burst = self.rate.max(1.0);
        let mut b = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if b.len() > 10_000 {
            b.retain(|_, (_, last)| now.duration_since(*last).as_secs() < 600);
        }
        let (tokens, last) = b.entry(key.to_string()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Verifies a request and returns who signed it.
pub async fn authenticate(
    identities: &Identities,
    limiter: Option<&RateLimiter>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Signer, AuthFailure> {
    let header_list: Vec<(&str, &str)> = headers
        .iter()
        .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str(), v)))
        .collect();
    let req = sigv4::SignedRequest {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers: header_list,
        body,
    };
    let auth = sigv4::parse_authorization(&req)?;
    if let Some(l) = limiter {
        if !l.take(&auth.access_key_id) {
            return Err(AuthFailure::Throttled);
        }
    }
    let ids = identities.clone();
    let akid = auth.access_key_id.clone();
    let (found, user) = tokio::task::spawn_blocking(move || {
        let found = ids.credentials(&akid)?;
        let user = match found.as_ref().and_then(|(i, _)| i.user.clone()) {
            Some(name) => ids.user(&name)?,
            None => None,
        };
        Ok::<_, store::secrets::SecretStoreError>((found, user))
    })
    .await
    .map_err(|_| AuthFailure::Internal)?
    .map_err(|e| {
        tracing::error!(error = %e, "identity lookup failed");
        AuthFailure::Internal
    })?;
    let Some((identity, secret)) = found else {
        tracing::warn!(access_key_id = auth.access_key_id, "unknown access key");
        return Err(sigv4::AuthError::UnknownKey.into());
    };
    if !identity.active {
        return Err(sigv4::AuthError::InactiveKey.into());
    }
    if let Err(e) = sigv4::verify(&req, &auth, &secret, crate::now()) {
        tracing::warn!(
            identity = identity.name,
            code = e.code(),
            "request authentication failed"
        );
        return Err(e.into());
    }
    Ok(Signer { identity, user })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_buckets_refill_per_key() {
        let l = RateLimiter::new(2.0);
        assert!(l.take("a") && l.take("a"));
        assert!(!l.take("a"), "burst of two spent");
        assert!(l.take("b"), "keys are independent");
        std::thread::sleep(std::time::Duration::from_millis(600));
        assert!(l.take("a"), "refilled at two per second");
    }
}
