//! Secrets through the CLI: locally and through the running server, values never in plaintext
//! on disk, and every acknowledged write surviving `kill -9`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::{cli, cli_ok, Edgeplane};

#[test]
fn secrets_through_the_cli_and_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    cli_ok(
        d,
        &[
            "secret",
            "create",
            "db",
            "-n",
            "prod",
            "--from-literal",
            "password=CANARY-ONE-9d2f",
        ],
    );
    // A value from a file, byte for byte (binary, a trailing newline kept).
    let file = d.join("blob.bin");
    std::fs::write(&file, b"\x00\xffCANARY-FILE-77c1\n").expect("write");
    cli_ok(
        d,
        &[
            "secret",
            "create",
            "blob",
            "-n",
            "prod",
            "--from-file",
            &format!("payload={}", file.display()),
        ],
    );
    let json = cli_ok(d, &["secret", "get", "blob", "-n", "prod"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["data"]["payload"], "AP9DQU5BUlktRklMRS03N2MxCg==");
    let server = Edgeplane::start(d, &[]);
    // Through the control socket now.
    assert_eq!(
        cli_ok(
            d,
            &["secret", "get", "db", "-n", "prod", "--key", "password"]
        ),
        "CANARY-ONE-9d2f"
    );
    let out = cli_ok(
        d,
        &[
            "secret",
            "apply",
            "db",
            "-n",
            "prod",
            "--from-literal",
            "password=CANARY-TWO-51ab",
        ],
    );
    assert!(out.contains("version 2"), "{out}");
    let json = cli_ok(d, &["secret", "get", "db", "-n", "prod"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["kind"], "Secret");
    assert_eq!(v["metadata"]["resourceVersion"], "2");
    assert_eq!(v["data"]["password"], "Q0FOQVJZLVRXTy01MWFi");
    assert_eq!(
        cli_ok(
            d,
            &[
                "secret",
                "get",
                "db",
                "-n",
                "prod",
                "--version",
                "1",
                "--key",
                "password"
            ]
        ),
        "CANARY-ONE-9d2f"
    );
    let list = cli_ok(d, &["secret", "list"]);
    assert!(list.contains("prod\tdb\tOpaque\t1\t2"), "{list}");
    assert!(!list.contains("CANARY"));
    let out = cli(
        d,
        &[
            "secret",
            "create",
            "db",
            "-n",
            "prod",
            "--from-literal",
            "password=x",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = cli(
        d,
        &["secret", "create", "Bad_Name", "--from-literal", "a=b"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("DNS-1123"));
    let rotated = cli_ok(d, &["secret", "rotate-master-key"]);
    assert!(
        rotated.contains("5 data keys re-sealed"),
        "two versions of db, blob, the admin key and the internal root CA: {rotated}"
    );
    assert_eq!(
        cli_ok(
            d,
            &["secret", "get", "db", "-n", "prod", "--key", "password"]
        ),
        "CANARY-TWO-51ab"
    );
    server.stop();
    // Nothing on disk holds a value in clear: database, audit log, key file.
    for entry in std::fs::read_dir(d).expect("dir").flatten() {
        let bytes = std::fs::read(entry.path()).unwrap_or_default();
        for needle in [&b"CANARY-ONE-9d2f"[..], b"CANARY-TWO-51ab"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "value found in {}",
                entry.path().display()
            );
        }
    }
    cli_ok(d, &["secret", "delete", "db", "-n", "prod"]);
    assert!(!cli(d, &["secret", "get", "db", "-n", "prod"])
        .status
        .success());
}

#[test]
fn a_wrong_master_key_stops_the_server_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    cli_ok(d, &["secret", "create", "x", "--from-literal", "a=b"]);
    let out = std::process::Command::new(crate::harness::BIN)
        .arg("--data-dir")
        .arg(d)
        .args([
            "serve",
            "--dns-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .env(
            "EDGEPLANE_MASTER_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        )
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wrong master key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        cli_ok(d, &["secret", "get", "x", "--key", "a"]),
        "b",
        "nothing was overwritten"
    );
}

#[test]
fn acknowledged_secret_writes_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Edgeplane::start(dir.path(), &[]);
    let acked: Arc<Mutex<Vec<u32>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3u32)
        .map(|w| {
            let acked = Arc::clone(&acked);
            let stop = Arc::clone(&stop);
            let path = dir.path().to_path_buf();
            std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let n = w * 10_000 + i;
                    let out = cli(
                        &path,
                        &[
                            "secret",
                            "create",
                            &format!("s{n}"),
                            "--from-literal",
                            &format!("v=value-{n}"),
                        ],
                    );
                    if out.status.success() {
                        acked.lock().expect("lock").push(n);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() >= 10, "only {} acknowledged", acked.len());
    for n in &acked {
        assert_eq!(
            cli_ok(
                dir.path(),
                &["secret", "get", &format!("s{n}"), "--key", "v"]
            ),
            format!("value-{n}"),
            "acknowledged secret s{n} lost"
        );
    }
    eprintln!(
        "{} acknowledged secret writes, all readable after kill -9",
        acked.len()
    );
}
