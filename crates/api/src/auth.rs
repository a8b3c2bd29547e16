//! Authentication shared by every HTTP API: the request's SigV4 signature verified against the
//! identities, an optional per-key rate limit, and the IAM user behind the key, if any.
//!
//! The order keeps floods cheap and keys' budgets their own: a request without a well-formed
//! Authorization header is refused before any lookup; a signed one is verified (one identity
//! lookup, a few HMACs) before its key's bucket is charged, so a forged request never spends
//! the budget of the key it names. Failed authentications share one global bucket: beyond it
//! they are answered with `Throttling` and no longer logged one by one.

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

/// Failed authentications per second (all keys together) answered with their own error before
/// they are answered with `Throttling`, at least; more when the per-key rate is higher.
pub const FAILED_AUTH_RATE: f64 = 10.0;

/// A token bucket per access key: `rate` requests per second, bursts of `rate` (at least 1).
/// Idle buckets are pruned so that the table stays small. One more bucket, shared by all keys,
/// counts failed authentications.
pub struct RateLimiter {
    rate: f64,
    buckets: std::sync::Mutex<std::collections::HashMap<String, (f64, std::time::Instant)>>,
    failures: std::sync::Mutex<(f64, std::time::Instant)>,
}

impl RateLimiter {
    pub fn new(rate: f64) -> Self {
        let rate = rate.max(0.001);
        RateLimiter {
            rate,
            buckets: std::sync::Mutex::new(std::collections::HashMap::new()),
            failures: std::sync::Mutex::new((
                rate.max(FAILED_AUTH_RATE),
                std::time::Instant::now(),
            )),
        }
    }

    /// Counts one failed authentication; false when failures exceed their shared budget.
    pub fn fail(&self) -> bool {
        let now = std::time::Instant::now();
        let rate = self.rate.max(FAILED_AUTH_RATE);
        let mut f = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, last) = &mut *f;
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
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
    // No I/O before this point: unsigned and malformed requests stay cheap.
    let auth = sigv4::parse_authorization(&req)?;
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
    // A refusal, or Throttling once failures exceed their shared budget.
    let refuse = |e: sigv4::AuthError, identity: Option<&str>| {
        if limiter.is_some_and(|l| !l.fail()) {
            tracing::debug!(
                access_key_id = auth.access_key_id,
                code = e.code(),
                "authentication failed"
            );
            return AuthFailure::Throttled;
        }
        tracing::warn!(
            access_key_id = auth.access_key_id,
            identity,
            code = e.code(),
            "request authentication failed"
        );
        AuthFailure::Refused(e)
    };
    let Some((identity, secret)) = found else {
        return Err(refuse(sigv4::AuthError::UnknownKey, None));
    };
    if !identity.active {
        return Err(refuse(sigv4::AuthError::InactiveKey, Some(&identity.name)));
    }
    if let Err(e) = sigv4::verify(&req, &auth, &secret, crate::now()) {
        return Err(refuse(e, Some(&identity.name)));
    }
    // Only a verified request spends its key's budget.
    if let Some(l) = limiter {
        if !l.take(&auth.access_key_id) {
            return Err(AuthFailure::Throttled);
        }
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

    /// Authenticates a GET signed with `secret` for `akid`.
    async fn attempt(
        ids: &Identities,
        limiter: &RateLimiter,
        akid: &str,
        secret: &str,
    ) -> Result<Signer, AuthFailure> {
        let signed = sigv4::sign(
            &sigv4::SignedRequest {
                method: "GET",
                path: "/2013-04-01/hostedzone",
                query: "",
                headers: vec![("host", "127.0.0.1")],
                body: b"",
            },
            akid,
            secret.as_bytes(),
            "us-east-1",
            "route53",
            crate::now(),
        );
        let mut headers = HeaderMap::new();
        headers.insert("host", axum::http::HeaderValue::from_static("127.0.0.1"));
        for (name, value) in signed {
            let name = axum::http::HeaderName::from_bytes(name.as_bytes()).expect("name");
            headers.insert(name, value.parse().expect("value"));
        }
        let uri: Uri = "/2013-04-01/hostedzone".parse().expect("uri");
        authenticate(ids, Some(limiter), &Method::GET, &uri, &headers, b"").await
    }

    #[tokio::test]
    async fn forged_requests_do_not_spend_the_keys_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store::Store::open(&dir.path().join("data")).expect("store");
        let secrets = store::secrets::Secrets::open(
            &store,
            store::secrets::MasterKeySource::File(dir.path().join("master.key")),
            &dir.path().join("data/audit.log"),
        )
        .expect("secrets");
        let ids = Identities::new(secrets).expect("identities");
        let (_, creds) = ids
            .create("tester", &["*:*/*".to_string()])
            .expect("identity");
        let akid = creds.access_key_id.clone();
        let secret = creds.secret_access_key.as_str().to_owned();
        // One request per key every two seconds: a single forged request would spend it.
        let limiter = RateLimiter::new(0.5);
        for _ in 0..3 {
            let forged = attempt(&ids, &limiter, &akid, "not-the-secret").await;
            assert!(
                matches!(
                    forged,
                    Err(AuthFailure::Refused(sigv4::AuthError::BadSignature))
                ),
                "{forged:?}"
            );
        }
        let genuine = attempt(&ids, &limiter, &akid, &secret).await;
        assert!(
            genuine.is_ok(),
            "the key's own request gets through: {genuine:?}"
        );
        assert!(
            matches!(
                attempt(&ids, &limiter, &akid, &secret).await,
                Err(AuthFailure::Throttled)
            ),
            "verified requests spend the key's budget"
        );
        // A flood of forgeries is answered with Throttling once failures exceed their budget.
        let mut throttled = 0;
        for _ in 0..(FAILED_AUTH_RATE as usize + 5) {
            if matches!(
                attempt(&ids, &limiter, &akid, "not-the-secret").await,
                Err(AuthFailure::Throttled)
            ) {
                throttled += 1;
            }
        }
        assert!(throttled >= 5, "{throttled} forged requests throttled");
    }

    #[test]
    fn failures_share_one_bucket_apart_from_the_keys() {
        let l = RateLimiter::new(0.5);
        let budget = FAILED_AUTH_RATE as usize;
        assert!(
            (0..budget).all(|_| l.fail()),
            "a burst of failures is answered"
        );
        assert!(!l.fail(), "beyond it, failures are throttled");
        assert!(l.take("a"), "failures do not spend a key's bucket");
    }
}
