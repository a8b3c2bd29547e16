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

#[test]
fn throttled_clients_get_route53_throttling_and_retry() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One request every two seconds: slow enough that the test's own pace cannot refill it.
    let server = Edgeplane::start(dir.path(), &["--api-rate-limit", "0.5"]);
    let script = format!(
        r#"import configparser, boto3, botocore
cp = configparser.ConfigParser(); cp.read('{creds}'); c = cp['edgeplane-admin']
def client(attempts):
    return boto3.client('route53', endpoint_url='http://{api}', region_name='us-east-1',
        aws_access_key_id=c['aws_access_key_id'], aws_secret_access_key=c['aws_secret_access_key'],
        config=botocore.config.Config(retries={{'max_attempts': attempts, 'mode': 'standard'}}))
once = client(1)
codes = []
for _ in range(4):
    try:
        once.list_hosted_zones(); codes.append('ok')
    except botocore.exceptions.ClientError as e:
        codes.append(e.response['Error']['Code'])
assert 'Throttling' in codes and codes[0] == 'ok', codes
# With the SDK's standard retry mode, every call gets through.
patient = client(10)
for _ in range(2):
    patient.list_hosted_zones()
print(codes)
"#,
        creds = dir.path().join("admin-credentials").display(),
        api = server.api
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
}

#[test]
fn the_aws_cli_manages_zones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Edgeplane::start(dir.path(), &[]);
    let aws = python().with_file_name("aws");
    let run = |args: &[&str]| {
        let out = Command::new(&aws)
            .args(args)
            .args([
                "--endpoint-url",
                &format!("http://{}", server.api),
                "--output",
                "json",
            ])
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                dir.path().join("admin-credentials"),
            )
            .env("AWS_PROFILE", "edgeplane-admin")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .output()
            .expect("aws");
        assert!(
            out.status.success(),
            "aws {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or(serde_json::Value::Null)
    };
    let created = run(&[
        "route53",
        "create-hosted-zone",
        "--name",
        "cli.example",
        "--caller-reference",
        "cli-1",
    ]);
    let id = created["HostedZone"]["Id"]
        .as_str()
        .expect("id")
        .to_string();
    let batch = r#"{"Changes":[{"Action":"UPSERT","ResourceRecordSet":{"Name":"api.cli.example","Type":"AAAA","TTL":120,"ResourceRecords":[{"Value":"2001:db8::42"}]}}]}"#;
    let change = run(&[
        "route53",
        "change-resource-record-sets",
        "--hosted-zone-id",
        &id,
        "--change-batch",
        batch,
    ]);
    let change_id = change["ChangeInfo"]["Id"]
        .as_str()
        .expect("change id")
        .to_string();
    run(&[
        "route53",
        "wait",
        "resource-record-sets-changed",
        "--id",
        &change_id,
    ]);
    let sets = run(&[
        "route53",
        "list-resource-record-sets",
        "--hosted-zone-id",
        &id,
    ]);
    assert_eq!(
        sets["ResourceRecordSets"].as_array().map(Vec::len),
        Some(3),
        "{sets}"
    );
    let d = kdig(server.addr(), &["api.cli.example", "AAAA"]);
    assert_eq!(d.answer, ["api.cli.example. 120 IN AAAA 2001:db8::42"]);
    let users = run(&["iam", "list-users"]);
    assert_eq!(users["Users"].as_array().map(Vec::len), Some(0));
}

#[test]
fn routing_policies_are_stored_and_answered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Edgeplane::start(dir.path(), &[]);
    let out = Command::new(python())
        .arg(crate::harness::fixture("routing_boto3.py"))
        .arg(dir.path().join("admin-credentials"))
        .arg(format!("http://{}", server.api))
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Weighted 3:1 — over 400 UDP queries both answers appear, in about that proportion.
    let q = crate::harness::raw_query(1, "canary.route.example", 1, None);
    let (mut stable, mut canary) = (0, 0);
    for _ in 0..400 {
        let reply =
            crate::harness::udp_exchange(server.addr(), &q, std::time::Duration::from_secs(2))
                .expect("reply");
        match reply.last() {
            Some(1) => stable += 1,
            Some(2) => canary += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(
        (240..=360).contains(&stable) && canary > 40,
        "3:1 weights answered {stable}:{canary}"
    );
    assert_eq!(
        kdig(server.addr(), &["ha.route.example", "A"]).answer,
        ["ha.route.example. 30 IN A 192.0.2.10"],
        "failover answers PRIMARY"
    );
    let mut multi = kdig(server.addr(), &["multi.route.example", "A"]).answer;
    multi.sort();
    assert_eq!(
        multi,
        [
            "multi.route.example. 30 IN A 192.0.2.21",
            "multi.route.example. 30 IN A 192.0.2.22"
        ]
    );
    assert_eq!(
        kdig(server.addr(), &["alias.route.example", "A"]).answer,
        ["alias.route.example. 30 IN A 192.0.2.30"],
        "alias answers with its target's data"
    );
    assert_eq!(
        kdig(server.addr(), &["many.route.example", "A"])
            .answer
            .len(),
        8,
        "ten multivalue sets: eight answered"
    );
}

/// An HTTP endpoint on 127.0.0.1 answering 200 until stopped (its port then refuses).
struct Endpoint {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Endpoint {
    fn start(port: u16) -> Endpoint {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind endpoint");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(1)));
                        let mut buf = [0u8; 2048];
                        let _ = s.read(&mut buf);
                        let _ = s.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        );
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            }
        });
        Endpoint {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops listening: the port refuses connections from now on.
    fn stop(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Queries `name A` until the sorted answer's addresses are `expect`, or fails after 20 s.
fn await_answer(server: &Edgeplane, name: &str, expect: &[&str], why: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let mut got: Vec<String> = kdig(server.addr(), &[name, "A"])
            .answer
            .iter()
            .filter_map(|l| l.split_whitespace().last().map(str::to_string))
            .collect();
        got.sort();
        if got == expect {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{why}: {name} answers {got:?}, not {expect:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn health_checks_fail_over_when_the_primary_stops_listening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Edgeplane::start(dir.path(), &["--health-check-interval", "0.2"]);
    let up_port = crate::harness::free_port();
    let endpoint = Endpoint::start(up_port);
    // The endpoint holds its port, so this one differs; nothing listens on it.
    let down_port = crate::harness::free_port();
    let out = Command::new(python())
        .arg(crate::harness::fixture("health_boto3.py"))
        .arg(dir.path().join("admin-credentials"))
        .arg(format!("http://{}", server.api))
        .arg(up_port.to_string())
        .arg(down_port.to_string())
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "health check workflow failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Both endpoints probed: the one that refuses is left out of multivalue and weighted
    // answers, the primary answers.
    await_answer(
        &server,
        "multi.health.example",
        &["192.0.2.21", "192.0.2.23"],
        "m2 is down",
    );
    for _ in 0..20 {
        await_answer(
            &server,
            "w.health.example",
            &["192.0.2.32"],
            "the heavy set is down",
        );
    }
    await_answer(
        &server,
        "ha.health.example",
        &["192.0.2.10"],
        "the primary is up",
    );
    endpoint.stop();
    await_answer(
        &server,
        "ha.health.example",
        &["192.0.2.11"],
        "failover to SECONDARY",
    );
    await_answer(
        &server,
        "multi.health.example",
        &["192.0.2.23"],
        "only the unchecked set",
    );
    let endpoint = Endpoint::start(up_port);
    await_answer(
        &server,
        "ha.health.example",
        &["192.0.2.10"],
        "back to PRIMARY",
    );
    await_answer(
        &server,
        "multi.health.example",
        &["192.0.2.21", "192.0.2.23"],
        "m1 is back",
    );
    endpoint.stop();
}

#[test]
fn hosted_zones_by_name_and_batch_limits_follow_route53() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Edgeplane::start(dir.path(), &[]);
    let out = Command::new(python())
        .arg(crate::harness::fixture("listing_limits_boto3.py"))
        .arg(dir.path().join("admin-credentials"))
        .arg(format!("http://{}", server.api))
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn forged_requests_do_not_spend_the_keys_rate_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One request every two seconds: one forged request would spend the key's budget.
    let server = Edgeplane::start(dir.path(), &["--api-rate-limit", "0.5"]);
    let script = format!(
        r#"import configparser, boto3, botocore
cp = configparser.ConfigParser(); cp.read('{creds}'); c = cp['edgeplane-admin']
def client(secret):
    return boto3.client('route53', endpoint_url='http://{api}', region_name='us-east-1',
        aws_access_key_id=c['aws_access_key_id'], aws_secret_access_key=secret,
        config=botocore.config.Config(retries={{'max_attempts': 1}}))
forger = client('x' * 40)
for _ in range(5):
    try:
        forger.list_hosted_zones()
        raise SystemExit('a forged request was accepted')
    except botocore.exceptions.ClientError as e:
        assert e.response['Error']['Code'] == 'SignatureDoesNotMatch', e.response
client(c['aws_secret_access_key']).list_hosted_zones()
"#,
        creds = dir.path().join("admin-credentials").display(),
        api = server.api
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
}
