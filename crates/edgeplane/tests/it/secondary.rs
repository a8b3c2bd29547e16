//! Real secondaries: Knot and NSD transfer zones from edgeplane after a NOTIFY and answer
//! exactly as edgeplane does.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{cli_ok, data_dir_with_example, free_port, kdig, require, Edgeplane};
use std::net::SocketAddr;

/// Queries whose answers the secondary must reproduce.
const QUERIES: &[(&str, &str)] = &[
    ("example.com", "SOA"),
    ("example.com", "NS"),
    ("example.com", "MX"),
    ("www.example.com", "A"),
    ("www.example.com", "AAAA"),
    ("www.example.com", "TXT"),
    ("nope.example.com", "A"),
    ("alias.example.com", "A"),
    ("chain.example.com", "A"),
    ("foo.wild.example.com", "TXT"),
    ("y.wild.example.com", "A"),
    ("b.c.example.com", "A"),
    ("svc.example.com", "HTTPS"),
    ("tlsa.example.com", "TLSA"),
    ("_sip._udp.example.com", "SRV"),
    ("late.example.com", "A"),
];

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_serial(addr: SocketAddr, serial: u32, who: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = kdig(addr, &["example.com", "SOA"]);
        if d.answer
            .first()
            .is_some_and(|l| l.split(' ').nth(6) == Some(&serial.to_string()))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{who} never reached serial {serial}: {}",
            d.raw
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn serial(dir: &Path) -> u32 {
    let list = cli_ok(dir, &["zone", "list"]);
    list.lines()
        .nth(1)
        .and_then(|l| l.split('\t').nth(3))
        .and_then(|s| s.parse().ok())
        .expect("serial")
}

fn compare(primary: SocketAddr, secondary: SocketAddr, who: &str) {
    for (name, rtype) in QUERIES {
        let a = kdig(primary, &[name, rtype]);
        let b = kdig(secondary, &[name, rtype]);
        let sorted = |v: &Vec<String>| {
            let mut v = v.clone();
            v.sort();
            v
        };
        assert_eq!(a.status, b.status, "{who}: {name} {rtype} status");
        assert_eq!(
            a.has_flag("aa"),
            b.has_flag("aa"),
            "{who}: {name} {rtype} AA"
        );
        assert_eq!(
            sorted(&a.answer),
            sorted(&b.answer),
            "{who}: {name} {rtype} answer\nedgeplane: {}\n{who}: {}",
            a.raw,
            b.raw
        );
        // Authority sections must agree where they carry meaning: negative answers (the SOA)
        // and referrals. On positive answers NSD adds the apex NS set and edgeplane, like Knot,
        // gives minimal responses.
        if a.answer.is_empty() || who != "nsd" {
            assert_eq!(
                sorted(&a.authority),
                sorted(&b.authority),
                "{who}: {name} {rtype} authority"
            );
        }
    }
}

/// Starts edgeplane with NOTIFY to `secondary_port`, runs `start_secondary`, checks the
/// initial transfer and the NOTIFY-driven one after a change, then compares answers.
fn secondary_follows_primary(
    who: &str,
    start_secondary: impl FnOnce(&Path, SocketAddr, u16) -> Killed,
) {
    let dir = data_dir_with_example();
    let port = free_port();
    let notify = format!("127.0.0.1:{port}");
    let server = Edgeplane::start(
        dir.path(),
        &["--allow-transfer", "127.0.0.1", "--notify", &notify],
    );
    let work = tempfile::tempdir().expect("tempdir");
    let _secondary = start_secondary(work.path(), server.addr(), port);
    let secondary = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for_serial(secondary, serial(dir.path()), who);
    // A change reaches the secondary through NOTIFY and a new transfer.
    cli_ok(
        dir.path(),
        &[
            "record",
            "upsert",
            "example.com",
            "late",
            "A",
            "203.0.113.9",
        ],
    );
    let started = Instant::now();
    wait_for_serial(secondary, serial(dir.path()), who);
    eprintln!(
        "{who}: change propagated through NOTIFY + transfer in {:?}",
        started.elapsed()
    );
    server.wait_log("NOTIFY acknowledged", Duration::from_secs(10));
    // The secondary already had the zone: it asked for IXFR and got only the difference.
    server.wait_log("\"kind\":\"Incremental\"", Duration::from_secs(10));
    compare(server.addr(), secondary, who);
}

#[test]
fn knot_secondary_transfers_and_answers_identically() {
    require("knotd");
    secondary_follows_primary("knot", |work, primary, port| {
        let conf = format!(
            "server:\n    rundir: {w}\n    listen: 127.0.0.1@{port}\n\
             database:\n    storage: {w}\n\
             log:\n  - target: stderr\n    any: info\n\
             remote:\n  - id: primary\n    address: {ip}@{pport}\n\
             acl:\n  - id: notify\n    address: 127.0.0.1\n    action: notify\n\
             template:\n  - id: default\n    storage: {w}\n    zonefile-sync: -1\n    zonefile-load: none\n    journal-content: none\n\
             zone:\n  - domain: example.com\n    master: primary\n    acl: notify\n",
            w = work.display(),
            ip = primary.ip(),
            pport = primary.port(),
        );
        let path = work.join("knot.conf");
        std::fs::write(&path, conf).expect("write knot.conf");
        let log = std::fs::File::create(work.join("knot.log")).expect("log");
        Killed(
            Command::new("knotd")
                .arg("-c")
                .arg(&path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start knotd"),
        )
    });
}

#[test]
fn nsd_secondary_transfers_and_answers_identically() {
    require("nsd");
    secondary_follows_primary("nsd", |work, primary, port| {
        let conf = format!(
            "server:\n  ip-address: 127.0.0.1@{port}\n  port: {port}\n  zonesdir: \"{w}\"\n  database: \"\"\n\
             \x20 pidfile: \"{w}/nsd.pid\"\n  xfrdfile: \"{w}/xfrd.state\"\n  zonelistfile: \"{w}/zone.list\"\n\
             \x20 xfrdir: \"{w}\"\n  username: \"\"\n  chroot: \"\"\n  verbosity: 2\n  rrl-ratelimit: 0\n\
             remote-control:\n  control-enable: no\n\
             zone:\n  name: example.com\n  zonefile: \"{w}/example.com.zone\"\n\
             \x20 allow-notify: 127.0.0.1 NOKEY\n  request-xfr: {ip}@{pport} NOKEY\n",
            w = work.display(),
            ip = primary.ip(),
            pport = primary.port(),
        );
        let path = work.join("nsd.conf");
        std::fs::write(&path, conf).expect("write nsd.conf");
        let log = std::fs::File::create(work.join("nsd.log")).expect("log");
        Killed(
            Command::new("nsd")
                .args(["-d", "-c"])
                .arg(&path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start nsd"),
        )
    });
}
