//! AWS Signature Version 4: signing requests (for edgeplane's own clients) and verifying them
//! (for every edgeplane API), by recomputing the canonical request and comparing signatures in
//! constant time.

use aws_lc_rs::{digest, hmac};

/// How far a request's time may be from the server's, either way.
pub const MAX_SKEW_SECS: u64 = 15 * 60;

/// The parts of an HTTP request that SigV4 covers.
#[derive(Debug, Clone)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The path as sent (percent-encoded).
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    /// Header names (any case) and values.
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: &'a [u8],
}

/// Why a request failed authentication, with the AWS error code and HTTP status clients expect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Missing Authentication Token")]
    Missing,
    #[error("{0}")]
    Incomplete(String),
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    #[error("The security token included in the request is invalid.")]
    InactiveKey,
    #[error("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.")]
    BadSignature,
    #[error("Signature expired: {0} is now earlier or later than the server's time by more than 15 minutes.")]
    Expired(String),
    #[error("The security token included in the request is invalid.")]
    SessionTokenNotSupported,
}

impl AuthError {
    /// The AWS error code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "MissingAuthenticationToken",
            AuthError::Incomplete(_) => "IncompleteSignature",
            AuthError::UnknownKey
            | AuthError::InactiveKey
            | AuthError::SessionTokenNotSupported => "InvalidClientTokenId",
            AuthError::BadSignature => "SignatureDoesNotMatch",
            AuthError::Expired(_) => "RequestExpired",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Incomplete(_) | AuthError::Expired(_) => 400,
            _ => 403,
        }
    }
}

/// The parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

fn header<'a>(req: &SignedRequest<'a>, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

/// Parses the `Authorization` header of a request.
pub fn parse_authorization(req: &SignedRequest<'_>) -> Result<Authorization, AuthError> {
    let auth = header(req, "authorization").ok_or(AuthError::Missing)?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| AuthError::Incomplete("Authorization must use AWS4-HMAC-SHA256".into()))?;
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let incomplete = |what: &str| {
        AuthError::Incomplete(format!("Authorization header requires '{what}' parameter."))
    };
    let credential = credential.ok_or_else(|| incomplete("Credential"))?;
    let signed = signed.ok_or_else(|| incomplete("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| incomplete("Signature"))?;
    let parts: Vec<&str> = credential.split('/').collect();
    if parts.len() != 5 || parts[4] != "aws4_request" || parts.iter().any(|p| p.is_empty()) {
        return Err(AuthError::Incomplete(format!(
            "Credential should be scoped to a valid region and service: {credential}"
        )));
    }
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AuthError::Incomplete(
            "Signature must be 64 hexadecimal digits".into(),
        ));
    }
    Ok(Authorization {
        access_key_id: parts[0].to_string(),
        date: parts[1].to_string(),
        region: parts[2].to_string(),
        service: parts[3].to_string(),
        signed_headers: signed.split(';').map(|h| h.to_ascii_lowercase()).collect(),
        signature: signature.to_ascii_lowercase(),
    })
}

/// Verifies a request signed with `secret` (the identity's secret access key), at `now`
/// (seconds since the Unix epoch).
pub fn verify(
    req: &SignedRequest<'_>,
    auth: &Authorization,
    secret: &[u8],
    now: u64,
) -> Result<(), AuthError> {
    if header(req, "x-amz-security-token").is_some() {
        return Err(AuthError::SessionTokenNotSupported);
    }
    let amz_date = header(req, "x-amz-date")
        .ok_or_else(|| AuthError::Incomplete("X-Amz-Date header is required".into()))?;
    let time = parse_amz_date(amz_date)
        .ok_or_else(|| AuthError::Incomplete(format!("invalid X-Amz-Date {amz_date:?}")))?;
    if !amz_date.starts_with(&auth.date) || auth.date.len() != 8 {
        return Err(AuthError::Incomplete(
            "the credential date does not match X-Amz-Date".into(),
        ));
    }
    if time.abs_diff(now) > MAX_SKEW_SECS {
        return Err(AuthError::Expired(amz_date.to_string()));
    }
    if !auth.signed_headers.iter().any(|h| h == "host") {
        return Err(AuthError::Incomplete(
            "the host header must be signed".into(),
        ));
    }
    // A declared payload hash must be the body's.
    let body_hash = hex(digest::digest(&digest::SHA256, req.body).as_ref());
    let payload_hash = match header(req, "x-amz-content-sha256") {
        Some("UNSIGNED-PAYLOAD") | None => body_hash,
        Some(declared) if declared.eq_ignore_ascii_case(&body_hash) => body_hash,
        Some(_) => return Err(AuthError::BadSignature),
    };
    let expected = signature(req, auth, amz_date, &payload_hash, secret);
    let given: Vec<u8> = (0..auth.signature.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&auth.signature[i..i + 2], 16).ok())
        .collect();
    aws_lc_rs::constant_time::verify_slices_are_equal(&expected, &given)
        .map_err(|_| AuthError::BadSignature)
}

/// Signs a request: returns the `x-amz-date`, `x-amz-content-sha256` and `authorization`
/// headers to add. `headers` must include `host`.
pub fn sign(
    req: &SignedRequest<'_>,
    access_key_id: &str,
    secret: &[u8],
    region: &str,
    service: &str,
    now: u64,
) -> Vec<(String, String)> {
    let amz_date = format_amz_date(now);
    let payload_hash = hex(digest::digest(&digest::SHA256, req.body).as_ref());
    let mut headers: Vec<(&str, &str)> = req.headers.clone();
    headers.push(("x-amz-date", &amz_date));
    headers.push(("x-amz-content-sha256", &payload_hash));
    let mut signed: Vec<String> = headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    signed.sort();
    signed.dedup();
    let auth = Authorization {
        access_key_id: access_key_id.to_string(),
        date: amz_date[..8].to_string(),
        region: region.to_string(),
        service: service.to_string(),
        signed_headers: signed,
        signature: String::new(),
    };
    let full = SignedRequest {
        headers,
        ..req.clone()
    };
    let sig = hex(&signature(&full, &auth, &amz_date, &payload_hash, secret));
    vec![
        ("x-amz-date".to_string(), amz_date.clone()),
        ("x-amz-content-sha256".to_string(), payload_hash.clone()),
        (
            "authorization".to_string(),
            format!(
                "AWS4-HMAC-SHA256 Credential={access_key_id}/{}/{region}/{service}/aws4_request, SignedHeaders={}, Signature={sig}",
                &amz_date[..8],
                auth.signed_headers.join(";")
            ),
        ),
    ]
}

/// The canonical request (exposed for tests and debugging).
pub fn canonical_request(
    req: &SignedRequest<'_>,
    signed_headers: &[String],
    payload_hash: &str,
) -> String {
    let mut out = String::new();
    out.push_str(req.method);
    out.push('\n');
    out.push_str(&canonical_uri(req.path));
    out.push('\n');
    out.push_str(&canonical_query(req.query));
    out.push('\n');
    for name in signed_headers {
        let values: Vec<String> = req
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_headers.join(";"));
    out.push('\n');
    out.push_str(payload_hash);
    out
}

fn signature(
    req: &SignedRequest<'_>,
    auth: &Authorization,
    amz_date: &str,
    payload_hash: &str,
    secret: &[u8],
) -> Vec<u8> {
    let canonical = canonical_request(req, &auth.signed_headers, payload_hash);
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    );
    let mut k = zeroize::Zeroizing::new(b"AWS4".to_vec());
    k.extend_from_slice(secret);
    let mut key = hmac_sha256(&k, auth.date.as_bytes());
    for part in [
        auth.region.as_bytes(),
        auth.service.as_bytes(),
        b"aws4_request",
    ] {
        key = hmac_sha256(&key, part);
    }
    hmac_sha256(&key, to_sign.as_bytes())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 3986 encoding of everything but unreserved characters (and `/` when `keep_slash`).
fn uri_encode(s: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// The path, each segment decoded then encoded once (the form AWS SDKs and curl sign).
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    path.split('/')
        .map(|seg| uri_encode(&percent_decode(seg), false))
        .collect::<Vec<_>>()
        .join("/")
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), false),
                uri_encode(&percent_decode(v), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Parses `YYYYMMDDTHHMMSSZ` into seconds since the Unix epoch.
pub fn parse_amz_date(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u64>().ok();
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 || y < 1970
    {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se)
}

/// Formats seconds since the Unix epoch as `YYYYMMDDTHHMMSSZ`.
pub fn format_amz_date(t: u64) -> String {
    let days = t / 86_400;
    let rem = t % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

// Howard Hinnant's civil-date algorithms, for dates from 1970 on.
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: u64) -> (u64, u64, u64) {
    let z = z + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    /// The `get-vanilla` case of AWS's published SigV4 test suite.
    #[test]
    fn aws_test_suite_get_vanilla() {
        let req = SignedRequest {
            method: "GET",
            path: "/",
            query: "",
            headers: vec![
                ("Host", "example.amazonaws.com"),
                ("X-Amz-Date", "20150830T123600Z"),
            ],
            body: b"",
        };
        let signed = vec!["host".to_string(), "x-amz-date".to_string()];
        let empty = hex(digest::digest(&digest::SHA256, b"").as_ref());
        let canonical = canonical_request(&req, &signed, &empty);
        assert_eq!(
            hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref()),
            "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
        let auth = Authorization {
            access_key_id: "AKIDEXAMPLE".into(),
            date: "20150830".into(),
            region: "us-east-1".into(),
            service: "service".into(),
            signed_headers: signed,
            signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31".into(),
        };
        let now = parse_amz_date("20150830T123600Z").expect("date");
        assert_eq!(verify(&req, &auth, SECRET, now), Ok(()));
        assert_eq!(
            verify(&req, &auth, b"wrong", now),
            Err(AuthError::BadSignature)
        );
        assert!(matches!(
            verify(&req, &auth, SECRET, now + 16 * 60),
            Err(AuthError::Expired(_))
        ));
    }

    #[test]
    fn sign_then_verify_and_tampering() {
        let now = 1_795_000_000;
        let body = br#"{"metadata":{"name":"db"}}"#;
        let base = SignedRequest {
            method: "POST",
            path: "/api/v1/namespaces/default/secrets",
            query: "b=2&a=1",
            headers: vec![
                ("host", "127.0.0.1:9000"),
                ("content-type", "application/json"),
            ],
            body,
        };
        let added = sign(&base, "EPAKTEST", b"secret", "us-east-1", "edgeplane", now);
        let mut headers = base.headers.clone();
        headers.extend(added.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let req = SignedRequest {
            headers,
            ..base.clone()
        };
        let auth = parse_authorization(&req).expect("parse");
        assert_eq!(
            (auth.access_key_id.as_str(), auth.service.as_str()),
            ("EPAKTEST", "edgeplane")
        );
        assert_eq!(verify(&req, &auth, b"secret", now + 60), Ok(()));
        let tampered_body = SignedRequest {
            body: br#"{"metadata":{"name":"dc"}}"#,
            ..req.clone()
        };
        assert_eq!(
            verify(&tampered_body, &auth, b"secret", now),
            Err(AuthError::BadSignature)
        );
        let tampered_path = SignedRequest {
            path: "/api/v1/namespaces/other/secrets",
            ..req.clone()
        };
        assert_eq!(
            verify(&tampered_path, &auth, b"secret", now),
            Err(AuthError::BadSignature)
        );
        let tampered_query = SignedRequest {
            query: "a=1&b=3",
            ..req.clone()
        };
        assert_eq!(
            verify(&tampered_query, &auth, b"secret", now),
            Err(AuthError::BadSignature)
        );
        let mut with_token = req.clone();
        with_token.headers.push(("X-Amz-Security-Token", "abc"));
        assert_eq!(
            verify(&with_token, &auth, b"secret", now),
            Err(AuthError::SessionTokenNotSupported)
        );
        let no_auth = SignedRequest {
            headers: vec![("host", "x")],
            ..base
        };
        assert_eq!(parse_authorization(&no_auth), Err(AuthError::Missing));
    }

    #[test]
    fn malformed_authorization_headers() {
        for bad in [
            "Basic abc",
            "AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request, SignedHeaders=host",
            "AWS4-HMAC-SHA256 Credential=a/b/c, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request, SignedHeaders=host, Signature=zz",
            "AWS4-HMAC-SHA256 ",
        ] {
            let req = SignedRequest {
                method: "GET",
                path: "/",
                query: "",
                headers: vec![("authorization", bad)],
                body: b"",
            };
            assert!(
                matches!(parse_authorization(&req), Err(AuthError::Incomplete(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn dates_round_trip() {
        for t in [0, 1_440_938_160, 1_795_583_180, 4_102_444_800] {
            assert_eq!(parse_amz_date(&format_amz_date(t)), Some(t));
        }
        assert_eq!(format_amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(parse_amz_date("20151330T123600Z"), None);
        assert_eq!(parse_amz_date("garbage"), None);
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canonical_query("b=2&a=1&a=0&c"), "a=0&a=1&b=2&c=");
        assert_eq!(canonical_query("k=a%20b"), "k=a%20b");
        assert_eq!(canonical_uri("/a b/%41"), "/a%20b/A");
    }
}
