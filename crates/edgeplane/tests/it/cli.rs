//! The zone and record CLI: import/export round trips, clear errors that change nothing, and
//! the same commands through a running server's control socket.

use crate::harness::{cli, cli_ok, data_dir_with_example, fixture, kdig, Edgeplane};

#[test]
fn export_then_import_reproduces_the_zone() {
    let dir = data_dir_with_example();
    let exported = cli_ok(dir.path(), &["zone", "export", "example.com"]);
    assert!(exported.starts_with("$ORIGIN example.com.\nexample.com.\t300\tIN\tSOA\tns1.example.com. hostmaster.example.com. 2024010101 "), "{exported}");
    let other = tempfile::tempdir().expect("tempdir");
    let file = other.path().join("exported.zone");
    std::fs::write(&file, &exported).expect("write");
    cli_ok(
        other.path(),
        &[
            "zone",
            "import",
            "example.com",
            "--file",
            &file.display().to_string(),
            "--create",
        ],
    );
    let again = cli_ok(other.path(), &["zone", "export", "example.com"]);
    // Identical but for the SOA serial, which moved forward on import.
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.contains("\tSOA\t"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&exported), strip(&again));
    let list = cli_ok(dir.path(), &["record", "list", "example.com"]);
    assert!(
        list.contains("www.example.com.\t300\tIN\tA\t192.0.2.1"),
        "{list}"
    );
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let dir = data_dir_with_example();
    let before = cli_ok(dir.path(), &["zone", "export", "example.com"]);
    let bad_zone = dir.path().join("bad.zone");
    std::fs::write(&bad_zone, "$TTL 60\nok A 192.0.2.1\nbroken A 999.0.0.1\n").expect("write");
    let out = cli(
        dir.path(),
        &[
            "zone",
            "import",
            "example.com",
            "--file",
            &bad_zone.display().to_string(),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3") && err.contains("IPv4"), "{err}");
    let cases: &[&[&str]] = &[
        &["record", "upsert", "example.com", "www", "A", "not-an-ip"],
        &["record", "upsert", "example.com", "www", "BOGUS", "x"],
        &[
            "record",
            "upsert",
            "example.com",
            "www.example.org.",
            "A",
            "192.0.2.1",
        ],
        &["record", "create", "example.com", "www", "A", "192.0.2.1"],
        &["record", "upsert", "example.com", "alias", "A", "192.0.2.1"],
        &["record", "delete", "example.com", "nothere", "A"],
        &["record", "upsert", "nozone.test", "www", "A", "192.0.2.1"],
        &["zone", "delete", "example.com"],
        &["zone", "create", "bad..name"],
    ];
    for args in cases {
        let out = cli(dir.path(), args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("error: ") && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(
        cli_ok(dir.path(), &["zone", "export", "example.com"]),
        before
    );
}

#[test]
fn commands_go_through_the_running_server() {
    commands_through_the_server(&[]);
}

/// The control socket's jobs block on the runtime from their own threads; on a current-thread
/// runtime the main thread drives them.
#[test]
fn commands_go_through_a_single_threaded_server() {
    commands_through_the_server(&["--worker-threads", "1"]);
}

fn commands_through_the_server(extra: &[&str]) {
    let dir = data_dir_with_example();
    let server = Edgeplane::start(dir.path(), extra);
    let sock = dir.path().join("control.sock");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&sock)
            .expect("socket")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "control socket is private to its owner");
    }
    let created = cli_ok(
        dir.path(),
        &[
            "zone",
            "create",
            "example.net",
            "--nameserver",
            "ns1.example.com.",
        ],
    );
    assert!(created.contains("example.net."));
    cli_ok(
        dir.path(),
        &[
            "record",
            "upsert",
            "example.net",
            "@",
            "MX",
            "10 mail.example.net.",
        ],
    );
    let d = kdig(server.addr(), &["example.net", "MX"]);
    assert_eq!(d.answer, ["example.net. 300 IN MX 10 mail.example.net."]);
    let list = cli_ok(dir.path(), &["zone", "list"]);
    assert_eq!(list.lines().count(), 3, "{list}");
    // Errors travel back over the socket too.
    let out = cli(
        dir.path(),
        &["record", "delete", "example.net", "nothere", "A"],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no A record set named nothere.example.net.")
    );
    // A successful delete: the set is gone from DNS (NODATA with the SOA) and the listing.
    cli_ok(dir.path(), &["record", "delete", "example.net", "@", "MX"]);
    let d = kdig(server.addr(), &["example.net", "MX"]);
    assert_eq!((d.status.as_str(), d.answer.len()), ("NOERROR", 0));
    let records = cli_ok(dir.path(), &["record", "list", "example.net"]);
    assert!(!records.contains("MX"), "{records}");
    cli_ok(dir.path(), &["zone", "delete", "example.net", "--force"]);
    let d = kdig(server.addr(), &["example.net", "MX"]);
    assert_eq!(d.status, "REFUSED");
    // The import fixture also loads through the socket.
    cli_ok(
        dir.path(),
        &[
            "zone",
            "import",
            "example.com",
            "--file",
            &fixture("example.com.zone"),
        ],
    );
    server.stop();
    assert!(!sock.exists(), "socket removed on shutdown");
}
