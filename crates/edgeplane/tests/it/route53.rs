//! The Route53-compatible API driven by boto3, checked over DNS with kdig.

use std::process::Command;

use crate::harness::{cli_ok, kdig, python, Edgeplane};

#[test]
fn boto3_manages_zones_and_records_served_over_dns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Edgeplane::start(dir.path(), &[]);
    let out = Command::new(python())
        .arg(crate::harness::fixture("route53_boto3.py"))
        .arg(dir.path().join("admin-credentials"))
        .arg(format!("http://{}", server.api))
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "boto3 workflow failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = kdig(server.addr(), &["www.example.org", "A"]);
    assert!(d.has_flag("aa"));
    let mut answer = d.answer.clone();
    answer.sort();
    assert_eq!(
        answer,
        [
            "www.example.org. 60 IN A 192.0.2.10",
            "www.example.org. 60 IN A 192.0.2.11"
        ]
    );
    let d = kdig(server.addr(), &["anything.example.org", "TXT"]);
    assert_eq!(d.answer, ["anything.example.org. 60 IN TXT \"wild\""]);
    // The invalid batch applied nothing.
    assert_eq!(
        kdig(server.addr(), &["ok.example.org", "A"]).answer.len(),
        0
    );
}

#[test]
fn identities_without_full_access_are_denied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Edgeplane::start(dir.path(), &[]);
    let creds = cli_ok(
        dir.path(),
        &["identity", "create", "limited", "--allow", "get:team/*"],
    );
    let field = |k: &str| {
        creds
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k} = ")))
            .expect("field")
            .to_string()
    };
    let script = format!(
        "import boto3, botocore\nr = boto3.client('route53', endpoint_url='http://{}', region_name='us-east-1', aws_access_key_id='{}', aws_secret_access_key='{}')\ntry:\n    r.create_hosted_zone(Name='x.org', CallerReference='c')\n    raise SystemExit('accepted')\nexcept botocore.exceptions.ClientError as e:\n    assert e.response['Error']['Code'] == 'AccessDenied', e.response\n",
        server.api,
        field("aws_access_key_id"),
        field("aws_secret_access_key")
    );
    let out = Command::new(python())
        .args(["-c", &script])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        cli_ok(dir.path(), &["zone", "list"]).lines().count() == 1,
        "no zone was created"
    );
}

#[test]
fn a_scoped_iam_identity_may_only_answer_acme_challenges_in_its_zone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Edgeplane::start(dir.path(), &[]);
    let out = Command::new(python())
        .arg(crate::harness::fixture("iam_scoped_boto3.py"))
        .arg(dir.path().join("admin-credentials"))
        .arg(format!("http://{}", server.api))
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "scoped identity workflow failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = kdig(server.addr(), &["_acme-challenge.example.net", "TXT"]);
    assert_eq!(
        d.answer,
        ["_acme-challenge.example.net. 60 IN TXT \"acme-token-42\""]
    );
    assert_eq!(
        kdig(server.addr(), &["www.example.net", "A"]).answer.len(),
        0,
        "the refused change applied nothing"
    );
}
