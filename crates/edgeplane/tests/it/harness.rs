//! Starting and stopping `edgeplane serve`, running the CLI, and querying with kdig/dig.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_edgeplane");

/// Fails the test loudly when a peer program is missing.
pub(crate) fn require(program: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{program} is not installed: run scripts/install-test-deps.sh (or scripts/test.sh)"
    );
}

/// A port free on 127.0.0.1 for both UDP and TCP at the time of the call.
pub(crate) fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().expect("addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

/// A running `edgeplane serve`, killed when dropped.
pub(crate) struct Edgeplane {
    child: Option<Child>,
    /// DNS addresses (UDP and TCP), in the order of the `--dns-listen` flags.
    pub(crate) dns: Vec<SocketAddr>,
    pub(crate) admin: SocketAddr,
    /// The Route53-compatible API.
    pub(crate) api: SocketAddr,
    /// The proxy's `web` and `websecure` entry points.
    pub(crate) web: SocketAddr,
    pub(crate) websecure: SocketAddr,
    log: mpsc::Receiver<String>,
    /// Log lines already received.
    seen: std::sync::Mutex<Vec<String>>,
}

impl Edgeplane {
    /// Starts a server on `dir` with DNS on an ephemeral IPv4 port plus `extra` arguments.
    pub(crate) fn start(dir: &Path, extra: &[&str]) -> Edgeplane {
        let mut args: Vec<String> = vec![
            "--data-dir".into(),
            dir.display().to_string(),
            "--log-format".into(),
            "json".into(),
            "serve".into(),
            "--admin-listen".into(),
            "127.0.0.1:0".into(),
            "--api-listen".into(),
            "127.0.0.1:0".into(),
        ];
        if !extra.contains(&"--manifests") {
            args.extend([
                "--manifests".into(),
                dir.join("edgeplane.d").display().to_string(),
            ]);
        }
        if !extra.contains(&"--dns-listen") {
            args.extend(["--dns-listen".into(), "127.0.0.1:0".into()]);
        }
        for flag in ["--web-listen", "--websecure-listen"] {
            if !extra.contains(&flag) {
                args.extend([flag.into(), "127.0.0.1:0".into()]);
            }
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = Command::new(BIN)
            .args(&args)
            .env("EDGEPLANE_LOG", "info,dns=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn edgeplane");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Edgeplane {
            child: Some(child),
            dns: Vec::new(),
            admin: SocketAddr::from(([0, 0, 0, 0], 0)),
            api: SocketAddr::from(([0, 0, 0, 0], 0)),
            web: SocketAddr::from(([0, 0, 0, 0], 0)),
            websecure: SocketAddr::from(([0, 0, 0, 0], 0)),
            log: rx,
            seen: std::sync::Mutex::new(Vec::new()),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut serving = false;
        while !(serving && server.admin.port() != 0 && server.api.port() != 0) {
            let line = server
                .log
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("edgeplane did not start (args {args:?})"));
            server.seen.lock().expect("lock").push(line.clone());
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let msg = v["fields"]["message"].as_str().unwrap_or("");
            let addr = v["fields"]["addr"].as_str().and_then(|a| a.parse().ok());
            match (msg, addr) {
                ("DNS listening on UDP and TCP", Some(a)) => server.dns.push(a),
                ("admin API listening", Some(a)) => server.admin = a,
                ("Route53 API listening", Some(a)) => server.api = a,
                ("proxy entry point listening", Some(a)) => {
                    if v["fields"]["entry_point"].as_str() == Some("websecure") {
                        server.websecure = a;
                    } else {
                        server.web = a;
                    }
                }
                ("edgeplane serving", _) => serving = true,
                _ => {}
            }
        }
        server
    }

    /// The first DNS address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.dns[0]
    }

    /// Waits until a log line (printed before or after this call) contains `needle`.
    pub(crate) fn wait_log(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut seen = self.seen.lock().expect("lock");
        if let Some(line) = seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        loop {
            match self
                .log
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => {
                    seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no log line containing {needle:?} within {timeout:?}"),
            }
        }
    }

    /// Kills the server with SIGKILL, without any chance to clean up.
    pub(crate) fn kill9(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server with SIGTERM and checks that it exits cleanly.
    pub(crate) fn stop(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(status)) = c.try_wait() {
                    assert!(status.success(), "edgeplane exited with {status}");
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "edgeplane did not stop on SIGTERM"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Edgeplane {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs the CLI on `dir`.
pub(crate) fn cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run edgeplane")
}

/// Runs the CLI and returns its standard output, failing the test on a non-zero exit.
pub(crate) fn cli_ok(dir: &Path, args: &[&str]) -> String {
    let out = cli(dir, args);
    assert!(
        out.status.success(),
        "edgeplane {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A response as kdig prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dig {
    pub(crate) status: String,
    pub(crate) flags: Vec<String>,
    pub(crate) answer: Vec<String>,
    pub(crate) authority: Vec<String>,
    pub(crate) additional: Vec<String>,
    pub(crate) raw: String,
}

impl Dig {
    pub(crate) fn has_flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }
}

/// Queries `server` with kdig; `args` are kdig's (name, type, +options).
pub(crate) fn kdig(server: SocketAddr, args: &[&str]) -> Dig {
    require("kdig");
    let out = Command::new("kdig")
        .arg(format!("@{}", server.ip()))
        .arg("-p")
        .arg(server.port().to_string())
        .args(["+time=2", "+retry=1", "+norecurse"])
        .args(args)
        .output()
        .expect("run kdig");
    let mut raw = String::from_utf8_lossy(&out.stdout).into_owned();
    raw.push_str(&String::from_utf8_lossy(&out.stderr));
    parse_dig(&raw)
}

/// Parses kdig's or dig's default output.
pub(crate) fn parse_dig(raw: &str) -> Dig {
    let mut d = Dig {
        status: String::new(),
        flags: Vec::new(),
        answer: Vec::new(),
        authority: Vec::new(),
        additional: Vec::new(),
        raw: raw.to_string(),
    };
    let mut section: Option<&str> = None;
    for line in raw.lines() {
        if let Some(i) = line.find("status: ") {
            d.status = line[i + 8..]
                .split([';', ','])
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
        }
        let lower = line.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix(";; flags:") {
            d.flags = rest
                .split(';')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_string)
                .collect();
        }
        if line.contains("ANSWER SECTION") {
            section = Some("answer");
            continue;
        }
        if line.contains("AUTHORITY SECTION") {
            section = Some("authority");
            continue;
        }
        if line.contains("ADDITIONAL SECTION") {
            section = Some("additional");
            continue;
        }
        if line.trim().is_empty() || line.starts_with(";;") {
            if line.trim().is_empty() || line.contains("SECTION") || line.starts_with(";; Received")
            {
                section = None;
            }
            continue;
        }
        let norm = line.split_whitespace().collect::<Vec<_>>().join(" ");
        match section {
            Some("answer") => d.answer.push(norm),
            Some("authority") => d.authority.push(norm),
            Some("additional") => d.additional.push(norm),
            _ => {}
        }
    }
    d
}

/// Sends raw bytes over UDP and returns the reply, if any arrives within `timeout`.
pub(crate) fn udp_exchange(server: SocketAddr, msg: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(timeout)).expect("timeout");
    sock.send_to(msg, server).expect("send");
    let mut buf = vec![0u8; 65535];
    match sock.recv_from(&mut buf) {
        Ok((n, _)) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

/// A minimal query message: `id`, one question, RD clear, optional EDNS with `udp_size`.
pub(crate) fn raw_query(id: u16, name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
    for label in name.trim_end_matches('.').split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    if let Some(size) = edns {
        m.push(0);
        m.extend_from_slice(&41u16.to_be_bytes());
        m.extend_from_slice(&size.to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    m
}

/// A fresh data directory with `example.com` imported from `tests/data/example.com.zone`.
pub(crate) fn data_dir_with_example() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    cli_ok(
        dir.path(),
        &[
            "zone",
            "import",
            "example.com",
            "--file",
            &fixture("example.com.zone"),
            "--create",
        ],
    );
    dir
}

/// The path of a file in `tests/data`.
pub(crate) fn fixture(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The Python interpreter of the test virtualenv (boto3 and friends), failing loudly when the
/// environment was not installed by scripts/install-test-deps.sh.
pub(crate) fn python() -> std::path::PathBuf {
    let venv = std::env::var_os("EDGEPLANE_TEST_VENV")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/edgeplane/venv")))
        .expect("HOME or EDGEPLANE_TEST_VENV");
    let py = venv.join("bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import boto3"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "boto3 is not installed in {}: run scripts/install-test-deps.sh",
        venv.display()
    );
    py
}

/// Pebble (Let's Encrypt's test CA), with an openssl-made certificate for its own listener,
/// resolving names through `dns` and validating HTTP-01 on `http_port`; stopped when dropped.
pub(crate) struct Pebble {
    child: std::process::Child,
    /// The ACME directory URL.
    pub(crate) directory: String,
    /// The CA of Pebble's listener certificate (PEM), for clients to trust.
    pub(crate) listener_cert: String,
    pub(crate) listener_cert_path: std::path::PathBuf,
    mgmt_port: u16,
}

impl Pebble {
    /// Starts Pebble in `work`; `env` adds variables (`PEBBLE_VA_NOSLEEP`, ...).
    pub(crate) fn start(
        work: &Path,
        dns: SocketAddr,
        http_port: u16,
        validity_secs: Option<u64>,
        env: &[(&str, &str)],
    ) -> Pebble {
        Pebble::start_with(work, dns, http_port, validity_secs, env, None)
    }

    /// [`Pebble::start`], requiring external account binding with one key (ID, base64url
    /// HMAC key) when `eab` is given.
    pub(crate) fn start_with(
        work: &Path,
        dns: SocketAddr,
        http_port: u16,
        validity_secs: Option<u64>,
        env: &[(&str, &str)],
        eab: Option<(&str, &str)>,
    ) -> Pebble {
        require("pebble");
        require("openssl");
        std::fs::create_dir_all(work).expect("pebble dir");
        // A CA and a leaf it signs for Pebble's listener (TLS clients refuse a CA certificate
        // used as a server's own).
        let ca = work.join("listener-ca.pem");
        let ca_key = work.join("listener-ca.key");
        let cert = work.join("pebble.pem");
        let key = work.join("pebble.key");
        let csr = work.join("pebble.csr");
        let ext = work.join("pebble.ext");
        std::fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .expect("ext file");
        let run = |args: &[&std::ffi::OsStr]| {
            let status = Command::new("openssl")
                .args(args)
                .stderr(Stdio::null())
                .stdout(Stdio::null())
                .status()
                .expect("openssl");
            assert!(status.success(), "openssl {args:?} failed");
        };
        let os = |s: &'static str| std::ffi::OsStr::new(s);
        run(&[
            os("req"),
            os("-x509"),
            os("-newkey"),
            os("ec"),
            os("-pkeyopt"),
            os("ec_paramgen_curve:prime256v1"),
            os("-nodes"),
            os("-days"),
            os("2"),
            os("-subj"),
            os("/CN=pebble listener CA"),
            os("-keyout"),
            ca_key.as_os_str(),
            os("-out"),
            ca.as_os_str(),
        ]);
        run(&[
            os("req"),
            os("-newkey"),
            os("ec"),
            os("-pkeyopt"),
            os("ec_paramgen_curve:prime256v1"),
            os("-nodes"),
            os("-subj"),
            os("/CN=localhost"),
            os("-keyout"),
            key.as_os_str(),
            os("-out"),
            csr.as_os_str(),
        ]);
        run(&[
            os("x509"),
            os("-req"),
            os("-in"),
            csr.as_os_str(),
            os("-CA"),
            ca.as_os_str(),
            os("-CAkey"),
            ca_key.as_os_str(),
            os("-CAcreateserial"),
            os("-days"),
            os("2"),
            os("-extfile"),
            ext.as_os_str(),
            os("-out"),
            cert.as_os_str(),
        ]);
        let acme_port = free_port();
        let mgmt_port = free_port();
        // Optional settings, appended to the config object.
        let mut extra = validity_secs
            .map(|v| format!(r#", "certificateValidityPeriod": {v}"#))
            .unwrap_or_default();
        let eab_required = eab.is_some();
        if let Some((kid, key)) = eab {
            extra.push_str(&format!(
                r#", "externalAccountMACKeys": {{"{kid}": "{key}"}}"#
            ));
        }
        let config = work.join("pebble.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"pebble": {{"listenAddress": "127.0.0.1:{acme_port}", "managementListenAddress": "127.0.0.1:{mgmt_port}", "certificate": "{cert}", "privateKey": "{key}", "httpPort": {http_port}, "tlsPort": {tls}, "ocspResponderURL": "", "externalAccountBindingRequired": {eab_required}{extra}}}}}"#,
                cert = cert.display(),
                key = key.display(),
                tls = free_port(),
            ),
        )
        .expect("pebble config");
        let mut cmd = Command::new("pebble");
        cmd.arg("-config")
            .arg(&config)
            .arg("-dnsserver")
            .arg(dns.to_string())
            .stdout(std::fs::File::create(work.join("pebble.log")).expect("log"))
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start pebble");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", acme_port)).is_err() {
            assert!(Instant::now() < deadline, "pebble did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Pebble {
            child,
            directory: format!("https://127.0.0.1:{acme_port}/dir"),
            listener_cert: std::fs::read_to_string(&ca).expect("pebble listener CA"),
            listener_cert_path: ca,
            mgmt_port,
        }
    }

    /// The root of the certificates Pebble issues (new at every start).
    pub(crate) fn root(&self) -> String {
        let out = Command::new("curl")
            .args(["-sSk", "--max-time", "5"])
            .arg(format!("https://127.0.0.1:{}/roots/0", self.mgmt_port))
            .output()
            .expect("curl");
        let pem = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(pem.contains("BEGIN CERTIFICATE"), "no Pebble root: {pem}");
        pem
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` every 200 ms until it gives a value, for at most `secs` seconds.
pub(crate) fn wait_until<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One key of a secret, through the CLI; `None` while it does not exist.
pub(crate) fn secret_key(data: &Path, ns: &str, name: &str, key: &str) -> Option<String> {
    let out = cli(data, &["secret", "get", name, "-n", ns, "--key", key]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
