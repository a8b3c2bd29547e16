//! The admin API through a real SigV4 client (curl's `--aws-sigv4`): authentication errors as
//! AWS clients expect them, and access rules enforced per identity.

use std::path::Path;
use std::process::Command;

use crate::harness::{cli_ok, require, Edgeplane};

struct Creds {
    id: String,
    secret: String,
}

fn parse_creds(text: &str) -> Creds {
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k} = ")))
            .unwrap_or_else(|| panic!("{k} missing in {text}"))
            .to_string()
    };
    Creds {
        id: get("aws_access_key_id"),
        secret: get("aws_secret_access_key"),
    }
}

/// Runs curl; returns (status, body).
fn call(
    server: &Edgeplane,
    creds: Option<&Creds>,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    require("curl");
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-w", "\n%{http_code}", "-X", method]);
    if let Some(c) = creds {
        cmd.args([
            "--aws-sigv4",
            "aws:amz:us-east-1:edgeplane",
            "--user",
            &format!("{}:{}", c.id, c.secret),
        ]);
    }
    if let Some(b) = body {
        cmd.args(["-H", "content-type: application/json", "--data-binary", b]);
    }
    cmd.arg(format!("http://{}{path}", server.admin));
    let out = cmd.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("status line");
    let json = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.to_string()))
    };
    (status.parse().expect("status"), json)
}

fn admin_creds(dir: &Path) -> Creds {
    parse_creds(&std::fs::read_to_string(dir.join("admin-credentials")).expect("admin credentials"))
}

#[test]
fn admin_api_authenticates_every_request_and_enforces_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Edgeplane::start(dir.path(), &[]);
    let admin = admin_creds(dir.path());
    let (status, body) = call(&server, Some(&admin), "GET", "/api/v1/whoami", None);
    assert_eq!(
        (status, body["identity"].as_str()),
        (200, Some("admin")),
        "{body}"
    );

    let doc = r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"route53","labels":{"zone":"example"}},"stringData":{"secret-access-key":"API-CANARY-31f0"}}"#;
    let (status, body) = call(
        &server,
        Some(&admin),
        "POST",
        "/api/v1/namespaces/team/secrets",
        Some(doc),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["metadata"]["resourceVersion"], "1");
    let (status, body) = call(
        &server,
        Some(&admin),
        "GET",
        "/api/v1/namespaces/team/secrets/route53",
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(body["data"]["secret-access-key"], "QVBJLUNBTkFSWS0zMWYw");
    let (status, _) = call(
        &server,
        Some(&admin),
        "POST",
        "/api/v1/namespaces/other/secrets",
        Some(r#"{"metadata":{"name":"x"},"stringData":{"k":"v"}}"#),
    );
    assert_eq!(status, 201);
    // Optimistic concurrency on replace.
    let stale = r#"{"metadata":{"name":"route53","resourceVersion":"7"},"stringData":{"k":"v"}}"#;
    let (status, body) = call(
        &server,
        Some(&admin),
        "PUT",
        "/api/v1/namespaces/team/secrets/route53",
        Some(stale),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("Conflict"))
    );
    // Bad input gets a clear error.
    let (status, body) = call(
        &server,
        Some(&admin),
        "POST",
        "/api/v1/namespaces/team/secrets",
        Some("{not json"),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("InvalidInput"))
    );

    // A reader limited to team/*.
    let reader = parse_creds(&cli_ok(
        dir.path(),
        &["identity", "create", "reader", "--allow", "get,list:team/*"],
    ));
    let (status, body) = call(
        &server,
        Some(&reader),
        "GET",
        "/api/v1/namespaces/team/secrets/route53",
        None,
    );
    assert_eq!(status, 200, "{body}");
    for (method, path, body) in [
        ("GET", "/api/v1/namespaces/other/secrets/x", None),
        ("DELETE", "/api/v1/namespaces/team/secrets/route53", None),
        (
            "PUT",
            "/api/v1/namespaces/team/secrets/route53",
            Some(r#"{"stringData":{"k":"v"}}"#),
        ),
        ("GET", "/api/v1/namespaces/other/secrets", None),
        ("POST", "/api/v1/master-key/rotate", None),
    ] {
        let (status, resp) = call(&server, Some(&reader), method, path, body);
        assert_eq!(
            (status, resp["error"]["code"].as_str()),
            (403, Some("AccessDenied")),
            "{method} {path}: {resp}"
        );
    }
    let (_, list) = call(&server, Some(&reader), "GET", "/api/v1/secrets", None);
    assert_eq!(
        list["items"].as_array().map(Vec::len),
        Some(1),
        "only team secrets listed: {list}"
    );
    let (_, still) = call(
        &server,
        Some(&admin),
        "GET",
        "/api/v1/namespaces/team/secrets/route53",
        None,
    );
    assert_eq!(
        still["metadata"]["resourceVersion"], "1",
        "denied requests changed nothing"
    );

    // Authentication failures, with AWS's codes.
    let wrong = Creds {
        id: admin.id.clone(),
        secret: "x".repeat(40),
    };
    let unknown = Creds {
        id: "EPAKUNKNOWNUNKNOWN00".into(),
        secret: admin.secret.clone(),
    };
    for (creds, code) in [
        (Some(&wrong), "SignatureDoesNotMatch"),
        (Some(&unknown), "InvalidClientTokenId"),
        (None, "MissingAuthenticationToken"),
    ] {
        let (status, body) = call(
            &server,
            creds,
            "GET",
            "/api/v1/namespaces/team/secrets/route53",
            None,
        );
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some(code)),
            "{body}"
        );
        assert!(!body.to_string().contains("API-CANARY"));
    }
    cli_ok(dir.path(), &["identity", "deactivate", &reader.id]);
    let (status, body) = call(
        &server,
        Some(&reader),
        "GET",
        "/api/v1/namespaces/team/secrets/route53",
        None,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("InvalidClientTokenId"))
    );

    let (status, body) = call(
        &server,
        Some(&admin),
        "POST",
        "/api/v1/master-key/rotate",
        None,
    );
    assert_eq!(status, 200, "{body}");
    let (status, _) = call(
        &server,
        Some(&admin),
        "DELETE",
        "/api/v1/namespaces/team/secrets/route53",
        None,
    );
    assert_eq!(status, 204);
    let audit = std::fs::read_to_string(dir.path().join("audit.log")).expect("audit");
    assert!(audit.contains("\"identity\":\"reader\"") && audit.contains("\"outcome\":\"denied\""));
    assert!(!audit.contains("API-CANARY"));
}
