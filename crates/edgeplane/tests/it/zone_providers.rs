//! DNSZones on a provider named in the static configuration (`edgeplane.yaml`'s
//! `dnsProviders`): moto's Route53 and IAM, checked with boto3, and a second edgeplane's
//! Route53 API, so the SDK's real SigV4 signing is verified; by `zone apply -f`/`zone delete -f`
//! and by `serve`'s manifest directory.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{cli, cli_ok, kdig, python, Edgeplane};

/// moto's server, killed when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_moto() -> Moto {
    let bin = python().with_file_name("moto_server");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/install-test-deps.sh",
        bin.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let child = Command::new(bin)
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    }
}

/// What moto holds, read with boto3: every zone's record sets as `NAME TYPE VALUES` lines, and
/// every IAM user with its access key IDs.
const MOTO_STATE: &str = r#"
import boto3, json, sys
kw = dict(endpoint_url=sys.argv[1], region_name="us-east-1",
          aws_access_key_id="testing", aws_secret_access_key="testing")
r53, iam = boto3.client("route53", **kw), boto3.client("iam", **kw)
zones = {}
for z in r53.list_hosted_zones()["HostedZones"]:
    sets = r53.list_resource_record_sets(HostedZoneId=z["Id"])["ResourceRecordSets"]
    zones[z["Name"]] = {"id": z["Id"].split("/")[-1], "sets": sorted(
        "%s %s %s" % (s["Name"], s["Type"], ",".join(sorted(r["Value"] for r in s.get("ResourceRecords", []))))
        for s in sets)}
users = {u["UserName"]: [k["AccessKeyId"] for k in iam.list_access_keys(UserName=u["UserName"])["AccessKeyMetadata"]]
         for u in iam.list_users()["Users"]}
print(json.dumps({"zones": zones, "users": users}))
"#;

fn moto_state(moto: &Moto) -> serde_json::Value {
    let out = Command::new(python())
        .args(["-c", MOTO_STATE, &moto.endpoint])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "boto3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

/// Two DNSZones on `provider`: `example.com`, and `app.example.com` delegated from it with
/// address records and the scoped ACME identity.
fn zones_manifest(provider: &str) -> String {
    format!(
        r#"apiVersion: edgeplane.io/v1alpha1
kind: DNSZone
metadata: {{name: example-com}}
spec:
  domain: example.com
  provider: {provider}
---
apiVersion: edgeplane.io/v1alpha1
kind: DNSZone
metadata: {{name: app-example-com}}
spec:
  domain: app.example.com
  parent: {{domain: example.com}}
  provider: {provider}
  network: {{elbEips: [192.0.2.10, 192.0.2.11], internalElbIps: [10.0.1.17]}}
  records:
    - {{name: "@", fromNetwork: public, ttl: 60}}
    - {{name: internal, fromNetwork: internal, ttl: 60}}
  acmeCredentials: {{secretName: route53}}
"#
    )
}

/// A DNSZone naming a provider nobody defined, beside one on the embedded store.
const UNKNOWN_PROVIDER: &str = r#"apiVersion: edgeplane.io/v1alpha1
kind: DNSZone
metadata: {name: lost}
spec: {domain: lost.example, provider: nope}
---
apiVersion: edgeplane.io/v1alpha1
kind: DNSZone
metadata: {name: local}
spec: {domain: local.example, provider: embedded}
"#;

fn write(path: &Path, text: &str) -> String {
    std::fs::write(path, text).expect("write");
    path.display().to_string()
}

/// Runs the CLI with `--config`; returns its standard output, standard error and success.
fn with_config(dir: &Path, config: &str, args: &[&str]) -> (String, String, bool) {
    let mut all = vec!["--config", config];
    all.extend_from_slice(args);
    let out = cli(dir, &all);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

/// Checks moto holds both zones as the manifest asks, and edgeplane's store the scoped key.
fn assert_applied_in_moto(moto: &Moto, dir: &Path) {
    let state = moto_state(moto);
    let zones = state["zones"].as_object().expect("zones");
    assert_eq!(zones.len(), 2, "no duplicate zones: {state}");
    let app = &state["zones"]["app.example.com."];
    let sets: Vec<&str> = app["sets"]
        .as_array()
        .expect("sets")
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    for want in [
        "app.example.com. A 192.0.2.10,192.0.2.11",
        "internal.app.example.com. A 10.0.1.17",
    ] {
        assert!(sets.contains(&want), "{want}: {state}");
    }
    let parent = state["zones"]["example.com."]["sets"]
        .as_array()
        .expect("parent sets");
    assert!(
        parent
            .iter()
            .filter_map(|s| s.as_str())
            .any(|s| s.starts_with("app.example.com. NS ")),
        "delegation in the parent: {state}"
    );
    // The scoped identity lives in moto's IAM; its key in edgeplane's secret store.
    let keys = state["users"]["cert-manager-app-example-com"]
        .as_array()
        .expect("identity user");
    let stored = cli_ok(dir, &["secret", "get", "route53", "--key", "access-key-id"]);
    assert!(
        keys.iter().any(|k| k.as_str() == Some(stored.as_str())),
        "stored key {stored} among {keys:?}"
    );
    assert_eq!(
        cli_ok(dir, &["secret", "get", "route53", "--key", "zone-id"]),
        app["id"].as_str().expect("id")
    );
}

fn assert_removed_from_moto(moto: &Moto, dir: &Path) {
    let state = moto_state(moto);
    assert_eq!(state["zones"], serde_json::json!({}), "{state}");
    assert_eq!(state["users"], serde_json::json!({}), "{state}");
    assert!(!cli(dir, &["secret", "get", "route53"]).status.success());
}

#[test]
fn zone_apply_and_serve_run_dnszones_on_a_route53_provider() {
    let moto = start_moto();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // The provider's keys come from a secret in edgeplane's own store.
    cli_ok(
        d,
        &[
            "secret",
            "create",
            "aws-like-keys",
            "--namespace",
            "ops",
            "--from-literal",
            "access-key-id=testing",
            "--from-literal",
            "secret-access-key=testing",
        ],
    );
    let config = write(
        &d.join("edgeplane.yaml"),
        &format!(
            "dnsProviders:\n  aws-like:\n    type: route53\n    endpoint: {}\n    credentials: {{secretRef: {{namespace: ops, name: aws-like-keys}}}}\n",
            moto.endpoint
        ),
    );
    let manifest = write(&d.join("zones.yaml"), &zones_manifest("aws-like"));

    let (first, progress, ok) = with_config(d, &config, &["zone", "apply", "-f", &manifest]);
    assert!(ok, "{first}{progress}");
    for want in [
        "default/app-example-com: app.example.com. zone ",
        "Delegated: True (delegation updated)",
        "CredentialsReady: True (cert-manager-app-example-com",
        "Ready: True (all conditions hold)",
    ] {
        assert!(first.contains(want), "{want}: {first}");
    }
    assert!(
        progress.contains("default/app-example-com: change ") && progress.contains(" is INSYNC ("),
        "{progress}"
    );
    assert_applied_in_moto(&moto, d);
    let zone_id = moto_state(&moto)["zones"]["app.example.com."]["id"]
        .as_str()
        .expect("id")
        .to_string();
    // The status is recorded as for the embedded provider.
    let got = cli_ok(d, &["zone", "get", "app-example-com"]);
    assert!(got.contains(&format!("  zone ID: {zone_id}\n")), "{got}");
    assert!(got.contains("  Ready: True"), "{got}");

    // Again: nothing to change.
    let (second, progress, ok) = with_config(d, &config, &["zone", "apply", "-f", &manifest]);
    assert!(ok, "{second}{progress}");
    for want in [
        "Delegated: True (delegation in place)",
        "RecordsSynced: True (0 upserted, 0 deleted)",
    ] {
        assert!(second.contains(want), "{want}: {second}");
    }
    assert_applied_in_moto(&moto, d);

    // A provider nobody defined: that document's error, the other one applies.
    let unknown = write(&d.join("unknown.yaml"), UNKNOWN_PROVIDER);
    let (out, err, ok) = with_config(d, &config, &["zone", "apply", "-f", &unknown]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("DNSZone default/lost: provider \"nope\" is not defined in the static configuration's dnsProviders") && err.contains("known: \"embedded\", \"aws-like\""),
        "{err}"
    );
    assert!(
        err.contains("default/local: local.example. zone Z"),
        "{err}"
    );
    assert!(cli_ok(d, &["zone", "get", "local"]).contains("  Ready: True"));

    let (deleted, err, ok) = with_config(d, &config, &["zone", "delete", "-f", &manifest]);
    assert!(ok, "{deleted}{err}");
    assert!(
        deleted.contains("default/app-example-com: deleted ")
            && deleted.contains("deleted identity cert-manager-app-example-com; deleted secret default/route53; deleted hosted zone "),
        "{deleted}"
    );
    assert_removed_from_moto(&moto, d);

    // The same from serve's manifest directory, with the unknown provider's file beside it.
    let manifests = d.join("edgeplane.d");
    std::fs::create_dir_all(&manifests).expect("dir");
    std::fs::copy(&manifest, manifests.join("zones.yaml")).expect("copy");
    std::fs::copy(&unknown, manifests.join("unknown.yaml")).expect("copy");
    let server = Edgeplane::start(d, &["--config", &config]);
    server.wait_log("DNS provider ready", Duration::from_secs(20));
    server.wait_log(
        "provider \\\"nope\\\" is not defined",
        Duration::from_secs(20),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = cli(d, &["zone", "get", "app-example-com"]);
        let text = String::from_utf8_lossy(&got.stdout);
        if got.status.success() && text.contains("  Ready: True") && !text.contains(&zone_id) {
            break;
        }
        assert!(Instant::now() < deadline, "not reconciled: {text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_applied_in_moto(&moto, d);
    // Through the server, without --config: the server's configuration applies, and the
    // provider it built is reused; nothing changed, so nothing is written.
    let again = cli_ok(d, &["zone", "apply", "-f", &manifest]);
    assert!(
        again.contains("RecordsSynced: True (0 upserted, 0 deleted)"),
        "{again}"
    );
    // The directory still holds the manifest, so serve would make it again: remove it first.
    std::fs::remove_file(manifests.join("zones.yaml")).expect("remove");
    std::thread::sleep(Duration::from_millis(1500));
    let deleted = cli_ok(d, &["zone", "delete", "-f", &manifest]);
    assert!(deleted.contains("deleted hosted zone "), "{deleted}");
    assert_removed_from_moto(&moto, d);
}

/// The `aws_access_key_id`/`aws_secret_access_key` pair of an edgeplane's admin credentials.
fn admin_keys(dir: &Path) -> (String, String) {
    let text = std::fs::read_to_string(dir.join("admin-credentials")).expect("credentials");
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim_start_matches([' ', '=']).trim().to_string())
            .expect("key")
    };
    (value("aws_access_key_id"), value("aws_secret_access_key"))
}

#[test]
fn zone_apply_runs_on_another_edgeplanes_route53_api_with_file_credentials() {
    let remote_dir = tempfile::tempdir().expect("tempdir");
    let remote = Edgeplane::start(remote_dir.path(), &[]);
    let (id, secret) = admin_keys(remote_dir.path());
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::create_dir_all(d.join("keys")).expect("dir");
    write(&d.join("keys/id"), &format!("{id}\n"));
    write(&d.join("keys/secret"), &format!("{secret}\n"));
    write(&d.join("keys/wrong"), "not-the-secret\n");
    // Relative credential files are found beside the configuration file.
    let config = write(
        &d.join("edgeplane.yaml"),
        &format!(
            "dnsProviders:\n  edge:\n    type: route53\n    endpoint: http://{api}\n    credentials: {{accessKeyIdFile: keys/id, secretAccessKeyFile: keys/secret}}\n  forged:\n    type: route53\n    endpoint: http://{api}\n    credentials: {{accessKeyIdFile: keys/id, secretAccessKeyFile: keys/wrong}}\n",
            api = remote.api
        ),
    );
    let manifest = write(&d.join("zones.yaml"), &zones_manifest("edge"));
    let (out, err, ok) = with_config(d, &config, &["zone", "apply", "-f", &manifest]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("Ready: True (all conditions hold)"), "{out}");
    // The zones are the remote edgeplane's: it serves them.
    let mut apex = kdig(remote.addr(), &["app.example.com", "A"]).answer;
    apex.sort();
    assert_eq!(
        apex,
        [
            "app.example.com. 60 IN A 192.0.2.10",
            "app.example.com. 60 IN A 192.0.2.11"
        ]
    );
    let remote_zones = cli_ok(remote_dir.path(), &["zone", "list"]);
    assert!(
        remote_zones.contains("\tapp.example.com.\t") && remote_zones.contains("\texample.com.\t"),
        "{remote_zones}"
    );
    assert!(
        cli_ok(d, &["zone", "list"])
            .lines()
            .nth(1)
            .is_some_and(|l| l.is_empty()),
        "no hosted zone locally"
    );
    // The scoped identity is the remote's, its key stored here.
    let key = cli_ok(d, &["secret", "get", "route53", "--key", "access-key-id"]);
    assert!(
        cli_ok(remote_dir.path(), &["identity", "list"]).contains(&key),
        "{key}"
    );
    let (second, err, ok) = with_config(d, &config, &["zone", "apply", "-f", &manifest]);
    assert!(ok, "{second}{err}");
    assert!(
        second.contains("RecordsSynced: True (0 upserted, 0 deleted)"),
        "{second}"
    );

    // A forged signature is refused by the remote's SigV4 check.
    let forged = write(
        &d.join("forged.yaml"),
        "apiVersion: edgeplane.io/v1alpha1\nkind: DNSZone\nmetadata: {name: forged}\nspec: {domain: forged.example, provider: forged}\n",
    );
    let (out, err, ok) = with_config(d, &config, &["zone", "apply", "-f", &forged]);
    assert!(!ok, "{out}");
    assert!(err.contains("access denied"), "{err}");

    let (deleted, err, ok) = with_config(d, &config, &["zone", "delete", "-f", &manifest]);
    assert!(ok, "{deleted}{err}");
    assert!(deleted.contains("deleted hosted zone "), "{deleted}");
    assert_eq!(
        kdig(remote.addr(), &["app.example.com", "A"]).status,
        "REFUSED"
    );
    assert!(!cli_ok(remote_dir.path(), &["zone", "list"]).contains("example.com."));
}
