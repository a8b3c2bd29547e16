//! `edgeplane zone apply`: the DNSZone workflow on the embedded backend, from the shipped
//! example, locally and through the running server.

use crate::harness::{cli, cli_ok, kdig, Edgeplane};

/// The hosted zones `zone list` prints (its first table).
fn hosted_zones(list: &str) -> Vec<String> {
    list.lines()
        .take_while(|l| !l.is_empty())
        .skip(1)
        .map(str::to_string)
        .collect()
}

/// The DNSZone rows `zone list` prints (its second table, when there is one).
fn dnszones(list: &str) -> Vec<Vec<String>> {
    list.lines()
        .skip_while(|l| !l.starts_with("DNSZONE\t"))
        .skip(1)
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

fn example() -> String {
    format!(
        "{}/../../examples/zones/app-example-com.yaml",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn zone_apply_runs_the_workflow_idempotently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let out = cli(d, &["zone", "apply", "-f", &example()]);
    let (first, progress) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{first}{progress}");
    // The waits for INSYNC are reported on standard error as they happen.
    for zone in ["default/example-com", "default/app-example-com"] {
        assert!(
            progress
                .lines()
                .any(|l| l.starts_with(&format!("{zone}: change C"))
                    && l.contains(" is INSYNC (")
                    && l.ends_with(" s)")),
            "{zone}: {progress}"
        );
    }
    assert!(
        first.contains("default/app-example-com: app.example.com. zone Z"),
        "{first}"
    );
    assert!(
        first.contains("Delegated: True (delegation updated)"),
        "{first}"
    );
    assert!(
        first.contains("RecordsSynced: True (5 upserted, 0 deleted)"),
        "{first}"
    );
    assert!(
        first.contains("CredentialsReady: True (cert-manager-app-example-com"),
        "{first}"
    );
    assert!(
        first.contains("Ready: True (all conditions hold)"),
        "{first}"
    );
    // The status is kept: `zone get` shows it after the command has ended.
    let got = cli_ok(d, &["zone", "get", "app-example-com"]);
    let zone_id = got
        .lines()
        .find_map(|l| l.strip_prefix("  zone ID: "))
        .expect("zone ID")
        .to_string();
    assert!(zone_id.starts_with('Z'), "{got}");
    assert!(
        got.starts_with("DNSZone default/app-example-com: app.example.com.\n"),
        "{got}"
    );
    assert!(
        got.contains("  name servers: ns1.edgeplane.internal, ns2.edgeplane.internal\n"),
        "{got}"
    );
    assert!(
        got.contains("  observed generation: 1 (reconciled 20"),
        "{got}"
    );
    for condition in [
        "Zone: True (hosted zone Z",
        "Delegated: True (delegation updated)",
        "RecordsSynced: True (5 upserted, 0 deleted)",
        "CredentialsReady: True",
        "Ready: True (all conditions hold) since 20",
    ] {
        assert!(got.contains(condition), "{condition}: {got}");
    }

    let server = Edgeplane::start(d, &[]);
    // Through the server now; nothing changed, so nothing is written.
    let second = cli_ok(d, &["zone", "apply", "-f", &example()]);
    assert!(
        second.contains("Delegated: True (delegation in place)"),
        "{second}"
    );
    assert!(
        second.contains("RecordsSynced: True (0 upserted, 0 deleted)"),
        "{second}"
    );
    let list = cli_ok(d, &["zone", "list"]);
    assert_eq!(
        hosted_zones(&list).len(),
        2,
        "two zones, no duplicates: {list}"
    );
    let rows = dnszones(&list);
    let summary: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str(), r[3].as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("default/app-example-com", "app.example.com.", "True"),
            ("default/example-com", "example.com.", "True")
        ],
        "{list}"
    );
    assert_eq!(rows[0][2], zone_id);
    // Through the server, the same status, now from the second apply (same spec, same
    // generation), and found by its domain too.
    let got = cli_ok(d, &["zone", "get", "app.example.com"]);
    assert!(got.contains(&format!("  zone ID: {zone_id}\n")), "{got}");
    assert!(got.contains("  observed generation: 1 "), "{got}");
    assert!(
        got.contains("Delegated: True (delegation in place)"),
        "{got}"
    );
    let missing = cli(d, &["zone", "get", "nothing-here"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("default/app-example-com, default/example-com"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );

    let mut apex = kdig(server.addr(), &["app.example.com", "A"]).answer;
    apex.sort();
    assert_eq!(
        apex,
        [
            "app.example.com. 60 IN A 34.210.12.3",
            "app.example.com. 60 IN A 54.188.92.10"
        ]
    );
    assert_eq!(
        kdig(server.addr(), &["x.app.example.com", "AAAA"]).answer,
        ["x.app.example.com. 60 IN AAAA 2600:1f18:4b2:c800::10"]
    );
    assert_eq!(
        kdig(server.addr(), &["internal.app.example.com", "A"]).answer,
        ["internal.app.example.com. 60 IN A 10.0.1.17"]
    );
    // The parent holds the delegation.
    let parent = cli_ok(d, &["record", "list", "example.com"]);
    assert!(
        parent.contains("app.example.com.\t300\tIN\tNS\tns1.edgeplane.internal."),
        "{parent}"
    );
    // The scoped identity's key is a secret.
    let zone_id = cli_ok(d, &["secret", "get", "route53", "--key", "zone-id"]);
    assert!(zone_id.starts_with('Z'), "{zone_id}");
    assert!(cli_ok(d, &["secret", "get", "route53", "--key", "access-key-id"]).starts_with("EPAK"));

    // A broken manifest is reported and changes nothing.
    let bad = d.join("bad.yaml");
    std::fs::write(&bad, "apiVersion: edgeplane.io/v1alpha1\nkind: DNSZone\nmetadata: {name: x}\nspec: {domain: x.example, recrods: []}\n").expect("write");
    let out = cli(d, &["zone", "apply", "-f", &bad.display().to_string()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `recrods`"));
    assert_eq!(hosted_zones(&cli_ok(d, &["zone", "list"])).len(), 2);

    // Deleting the DNSZones removes what they made, in order, through the server.
    let deleted = cli_ok(d, &["zone", "delete", "-f", &example()]);
    assert!(deleted.contains("default/app-example-com: deleted 5 record sets; removed the delegation; deleted identity cert-manager-app-example-com; deleted secret default/route53; deleted hosted zone Z"), "{deleted}");
    assert_eq!(
        cli_ok(d, &["zone", "list"]).lines().count(),
        1,
        "no zone left, and no DNSZone status"
    );
    assert!(!cli(d, &["zone", "get", "app-example-com"]).status.success());
    assert_eq!(
        kdig(server.addr(), &["app.example.com", "A"]).status,
        "REFUSED"
    );
    assert!(!cli(d, &["secret", "get", "route53"]).status.success());
    let again = cli_ok(d, &["zone", "delete", "-f", &example()]);
    assert!(again.contains("nothing left to delete"), "{again}");
}

/// Waits until `zone get NAME` succeeds and shows `needle` (the server writes the status right
/// after the records it serves).
fn wait_status(dir: &std::path::Path, name: &str, needle: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = cli(dir, &["zone", "get", name]);
        let got = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && got.contains(needle) {
            return got;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name}: no {needle:?} in {got}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn serve_reconciles_the_manifest_directory_as_it_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifests = dir.path().join("edgeplane.d");
    std::fs::create_dir_all(&manifests).expect("dir");
    let server = Edgeplane::start(dir.path(), &[]);
    let wait_for = |name: &str, expect: &[&str]| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let mut got = kdig(server.addr(), &[name, "A"]).answer;
            got.sort();
            if got == expect {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name}: got {got:?}, want {expect:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    std::fs::copy(example(), manifests.join("zones.yaml")).expect("copy");
    wait_for(
        "app.example.com",
        &[
            "app.example.com. 60 IN A 34.210.12.3",
            "app.example.com. 60 IN A 54.188.92.10",
        ],
    );
    server.wait_log("DNSZone reconciled", std::time::Duration::from_secs(5));
    let got = wait_status(
        dir.path(),
        "default/app-example-com",
        "  observed generation: 1 ",
    );
    assert!(got.contains("  Ready: True (all conditions hold)"), "{got}");
    // The load balancer changed: edit the file, the records follow.
    let text = std::fs::read_to_string(manifests.join("zones.yaml"))
        .expect("read")
        .replace("54.188.92.10", "54.188.92.99");
    std::fs::write(manifests.join("zones.yaml"), text).expect("write");
    wait_for(
        "app.example.com",
        &[
            "app.example.com. 60 IN A 34.210.12.3",
            "app.example.com. 60 IN A 54.188.92.99",
        ],
    );
    // A new spec is a new generation of the DNSZone's status.
    let got = wait_status(dir.path(), "app-example-com", "  observed generation: 2 ");
    assert!(
        got.contains("RecordsSynced: True (2 upserted, 0 deleted)"),
        "{got}"
    );
    // A broken file beside it is reported and harms nothing.
    std::fs::write(
        manifests.join("broken.yaml"),
        "apiVersion: edgeplane.io/v1alpha1\nkind: DNSZone\nspec: [\n",
    )
    .expect("write");
    server.wait_log("invalid manifest", std::time::Duration::from_secs(10));
    wait_for(
        "app.example.com",
        &[
            "app.example.com. 60 IN A 34.210.12.3",
            "app.example.com. 60 IN A 54.188.92.99",
        ],
    );
}

/// The delegation, followed over DNS. The DNSZone `a.b.example.com` names `b.example.com` as
/// its parent, which is not hosted, so the delegation lands in `example.com`, the longest
/// hosted suffix. The child's name servers live inside the child, with glue in the parent
/// pointing at loopback. A server holding only the parent zone (exported from the first, as a
/// registry or another provider would hold it) answers a referral with that glue; following
/// the glue to the child's server gives the authoritative answer.
#[test]
fn kdig_follows_the_delegation_from_the_parent_to_the_child() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    cli_ok(
        d,
        &[
            "zone",
            "create",
            "example.com",
            "--nameserver",
            "ns1.example.com.",
        ],
    );
    for ns in ["ns1.a.b", "ns2.a.b"] {
        cli_ok(
            d,
            &["record", "upsert", "example.com", ns, "A", "127.0.0.1"],
        );
    }
    let child_server = Edgeplane::start(
        d,
        &[
            "--zone-nameserver",
            "ns1.a.b.example.com.",
            "--zone-nameserver",
            "ns2.a.b.example.com.",
        ],
    );
    let manifest = d.join("deep.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: edgeplane.io/v1alpha1\nkind: DNSZone\nmetadata: {name: a-b-example-com}\nspec:\n  domain: a.b.example.com\n  parent: {domain: b.example.com}\n  network: {elbEips: [192.0.2.10]}\n  records:\n    - {name: \"@\", fromNetwork: public, ttl: 60}\n    - {name: www, fromNetwork: public, ttl: 60}\n",
    )
    .expect("write");
    // Through the server: its name servers, and its progress streamed back.
    let out = cli(d, &["zone", "apply", "-f", &manifest.display().to_string()]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("Delegated: True (delegation updated)"),
        "{stdout}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("default/a-b-example-com: change C")
                && l.contains(" is INSYNC (")),
        "{stderr}"
    );
    let got = cli_ok(d, &["zone", "get", "a-b-example-com"]);
    assert!(
        got.contains("  name servers: ns1.a.b.example.com, ns2.a.b.example.com\n"),
        "{got}"
    );
    assert!(got.contains("  Ready: True"), "{got}");
    let parent = cli_ok(d, &["record", "list", "example.com"]);
    assert!(
        parent.contains("a.b.example.com.\t300\tIN\tNS\tns1.a.b.example.com."),
        "the delegation is in example.com: {parent}"
    );

    let parent_dir = tempfile::tempdir().expect("tempdir");
    let zonefile = parent_dir.path().join("example.com.zone");
    std::fs::write(&zonefile, cli_ok(d, &["zone", "export", "example.com"])).expect("write");
    let pd = parent_dir.path().join("data");
    cli_ok(
        &pd,
        &[
            "zone",
            "import",
            "example.com",
            "--file",
            &zonefile.display().to_string(),
            "--create",
        ],
    );
    let parent_server = Edgeplane::start(&pd, &[]);

    // The parent refers: NS and glue, not authoritative.
    let referral = kdig(parent_server.addr(), &["www.a.b.example.com", "A"]);
    assert_eq!(referral.status, "NOERROR", "{}", referral.raw);
    assert!(
        !referral.has_flag("aa") && referral.answer.is_empty(),
        "{}",
        referral.raw
    );
    let mut ns = referral.authority.clone();
    ns.sort();
    assert_eq!(
        ns,
        [
            "a.b.example.com. 300 IN NS ns1.a.b.example.com.",
            "a.b.example.com. 300 IN NS ns2.a.b.example.com."
        ],
        "{}",
        referral.raw
    );
    let mut glue = referral.additional.clone();
    glue.sort();
    assert_eq!(
        glue,
        [
            "ns1.a.b.example.com. 300 IN A 127.0.0.1",
            "ns2.a.b.example.com. 300 IN A 127.0.0.1"
        ],
        "{}",
        referral.raw
    );
    // Follow the glue to the child's server (the test's loopback port), which answers.
    let address: std::net::IpAddr = glue[0]
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("glue address");
    let child = std::net::SocketAddr::new(address, child_server.addr().port());
    let answer = kdig(child, &["www.a.b.example.com", "A"]);
    assert!(answer.has_flag("aa"), "{}", answer.raw);
    assert_eq!(answer.answer, ["www.a.b.example.com. 60 IN A 192.0.2.10"]);
    let apex_ns = kdig(child, &["a.b.example.com", "NS"]);
    assert!(apex_ns.has_flag("aa"), "{}", apex_ns.raw);
    assert_eq!(apex_ns.answer.len(), 2, "{}", apex_ns.raw);
}
