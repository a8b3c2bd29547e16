//! The `edgeplane` binary: the CLI and the `serve` wiring. Business logic lives in the
//! library crates; this file parses arguments, starts components and stops them.

mod acme;
mod certificates;
mod control;
mod ingress;
mod manifests;
mod metrics;
mod providers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use control::Request;

#[derive(Parser)]
#[command(
    name = "edgeplane",
    version,
    about = "DNS zones and records, served authoritatively, from one embedded store"
)]
struct Cli {
    /// Directory of the embedded store.
    #[arg(
        long,
        global = true,
        env = "EDGEPLANE_DATA_DIR",
        default_value = "edgeplane-data"
    )]
    data_dir: PathBuf,
    /// Log format.
    #[arg(long, global = true, env = "EDGEPLANE_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// File holding the master key that seals secrets (created on first use, mode 0600).
    /// Default: master.key in the data directory.
    #[arg(long, global = true, env = "EDGEPLANE_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
    /// Shell command printing the master key (base64), instead of a file.
    #[arg(
        long,
        global = true,
        env = "EDGEPLANE_MASTER_KEY_COMMAND",
        conflicts_with = "master_key_file"
    )]
    master_key_command: Option<String>,
    /// Static configuration file (YAML: `dnsProviders`). Default: ./edgeplane.yaml when it
    /// exists. Through a running server, the server's applies.
    #[arg(long, global = true, env = "EDGEPLANE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// Where the master key comes from: `EDGEPLANE_MASTER_KEY` (base64), a command, or a file.
    fn master_key_source(&self) -> store::secrets::MasterKeySource {
        use store::secrets::MasterKeySource;
        if let Ok(v) = std::env::var("EDGEPLANE_MASTER_KEY") {
            return MasterKeySource::Value(zeroize::Zeroizing::new(v));
        }
        if let Some(cmd) = &self.master_key_command {
            return MasterKeySource::Command(cmd.clone());
        }
        MasterKeySource::File(
            self.master_key_file
                .clone()
                .unwrap_or_else(|| self.data_dir.join("master.key")),
        )
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve every hosted zone over DNS (UDP and TCP) until interrupted.
    Serve(Box<ServeArgs>),
    /// Hosted zones.
    #[command(subcommand)]
    Zone(ZoneCommand),
    /// Record sets.
    #[command(subcommand)]
    Record(RecordCommand),
    /// Secrets (encrypted at rest, versioned, audited).
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Identities: access keys for the APIs, with the rules they grant.
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// Certificates kept issued by `serve` (their status).
    #[command(subcommand)]
    Cert(CertCommand),
}

#[derive(Subcommand)]
enum CertCommand {
    /// Every Certificate: secret, Ready, revision, expiry, renewal time.
    List,
    /// One Certificate's status and conditions, by `namespace/name`.
    Get { name: String },
}

#[derive(Subcommand)]
enum IdentityCommand {
    /// Create an access key; its secret is printed once (AWS credentials-file format).
    Create {
        name: String,
        /// VERBS:NAMESPACE/NAME, e.g. `get,list:cert-manager/*`; repeat for several.
        #[arg(long = "allow")]
        rules: Vec<String>,
    },
    /// List identities (never their secrets).
    List,
    /// Delete an identity and its key.
    Delete { access_key_id: String },
    /// Stop accepting an access key.
    Deactivate { access_key_id: String },
    /// Accept an access key again.
    Activate { access_key_id: String },
}

#[derive(Subcommand)]
enum SecretCommand {
    /// Create a secret: `secret create db --from-literal password=s3cret`.
    Create(SecretArgs),
    /// Create or replace a secret (a new version).
    Apply(SecretArgs),
    /// Print a secret as a Kubernetes Secret (JSON), or one value with --key.
    Get {
        name: String,
        #[arg(short, long, default_value = "default")]
        namespace: String,
        /// An older version still kept.
        #[arg(long)]
        version: Option<u64>,
        /// Print only this key's value, decoded.
        #[arg(long)]
        key: Option<String>,
    },
    /// List secrets (names, types, key counts; never values).
    List {
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Delete a secret and all its versions.
    Delete {
        name: String,
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
    /// Re-seal every data key with a new master key (file-backed keys).
    RotateMasterKey,
}

#[derive(Args)]
struct SecretArgs {
    name: String,
    #[arg(short, long, default_value = "default")]
    namespace: String,
    /// Secret type, e.g. Opaque or kubernetes.io/tls.
    #[arg(long = "type", default_value = "Opaque")]
    secret_type: String,
    /// KEY=VALUE; repeat for several.
    #[arg(long = "from-literal")]
    literals: Vec<String>,
    /// KEY=PATH (or PATH, keyed by its file name); repeat for several.
    #[arg(long = "from-file")]
    files: Vec<String>,
    /// Certificate file of a kubernetes.io/tls secret (tls.crt).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Private key file of a kubernetes.io/tls secret (tls.key).
    #[arg(long)]
    key: Option<PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    /// DNS listen address (UDP and TCP); repeat for several. Default: 127.0.0.1:1053 and [::1]:1053.
    #[arg(long = "dns-listen")]
    dns_listen: Vec<SocketAddr>,
    /// Network allowed to transfer zones (AXFR/IXFR), e.g. 127.0.0.1/32; repeat for several.
    #[arg(long = "allow-transfer")]
    allow_transfer: Vec<dns::IpNet>,
    /// Secondary to NOTIFY when a zone changes, e.g. 127.0.0.1:5300; repeat for several.
    #[arg(long = "notify")]
    notify: Vec<SocketAddr>,
    /// Admin API (secrets, SigV4-authenticated) and Prometheus metrics (`GET /metrics`).
    #[arg(
        long = "admin-listen",
        alias = "metrics-listen",
        default_value = "127.0.0.1:9000"
    )]
    admin_listen: SocketAddr,
    /// Route53-compatible API (SigV4, service `route53`).
    #[arg(long = "api-listen", default_value = "127.0.0.1:9053")]
    api_listen: SocketAddr,
    /// Requests per second allowed to each access key on the Route53/IAM API (Route53's
    /// `Throttling` error beyond); unlimited when absent.
    #[arg(long = "api-rate-limit")]
    api_rate_limit: Option<f64>,
    /// Seconds between probes of every Route53 health check, instead of each check's
    /// RequestInterval (10 or 30); e.g. 0.5 to see failover within a second on loopback.
    #[arg(long = "health-check-interval")]
    health_check_interval: Option<f64>,
    /// Directory of manifests (DNSZone, ...) reconciled while serving.
    #[arg(long, default_value = "edgeplane.d")]
    manifests: PathBuf,
    /// Name server of hosted zones created through the API; repeat for several.
    #[arg(long = "zone-nameserver")]
    zone_name_servers: Vec<String>,
    /// UDP worker threads per listen address (default: one per CPU).
    #[arg(long)]
    udp_workers: Option<usize>,
    /// Threads running the server's tasks (default: one per CPU the process may run on).
    /// With 1, every task runs on the main thread, without the cost of handing tasks between
    /// threads. With N > 1, the proxy has N workers of its own, each a thread serving the
    /// connections it is given (each new connection goes to the worker with the fewest),
    /// and DNS over TCP and the APIs run on N more threads.
    #[arg(long, env = "EDGEPLANE_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    worker_threads: Option<u16>,
    /// Seconds before an idle DNS TCP connection is closed.
    #[arg(long, default_value_t = 10)]
    tcp_idle_timeout: u64,
    /// Most concurrent DNS TCP connections.
    #[arg(long, default_value_t = 1024)]
    max_tcp_connections: usize,
    /// The proxy's plain HTTP entry point (`web`).
    #[arg(long = "web-listen", default_value = "127.0.0.1:8080")]
    web_listen: SocketAddr,
    /// The proxy's TLS entry point (`websecure`; HTTP/2 by ALPN, certificates by SNI).
    #[arg(long = "websecure-listen", default_value = "127.0.0.1:8443")]
    websecure_listen: SocketAddr,
    /// Redirect every request on `web` to HTTPS on the `websecure` port.
    #[arg(long)]
    redirect_to_https: bool,
    /// Network whose X-Forwarded-* headers the proxy keeps (e.g. the load balancer's);
    /// repeat for several. Others' are replaced.
    #[arg(long = "forwarded-trusted-ip")]
    forwarded_trusted_ips: Vec<String>,
    /// The port clients use for HTTPS, in redirects (default: the websecure port).
    #[arg(long)]
    https_port: Option<u16>,
    /// Network whose PROXY protocol header (v1 or v2) gives the client's address (e.g. the
    /// L4 load balancer's); repeat for several.
    #[arg(long = "proxy-protocol-trusted-ip")]
    proxy_protocol_trusted_ips: Vec<String>,
    /// Longest time to read a request's head on the proxy's entry points (Traefik's
    /// `readTimeout`), e.g. `60s`.
    #[arg(long, default_value = "60s", value_parser = flag_timeout)]
    http_read_timeout: std::time::Duration,
    /// Longest time a kept-alive proxy connection waits for its next request (Traefik's
    /// `idleTimeout`).
    #[arg(long, default_value = "180s", value_parser = flag_timeout)]
    http_idle_timeout: std::time::Duration,
    /// Longest time from a request's head to the end of its response, past which the
    /// connection is closed; `0s` for no limit (Traefik's `writeTimeout`).
    #[arg(long, default_value = "0s", value_parser = flag_duration)]
    http_write_timeout: std::time::Duration,
    /// Requests served on one HTTP/1.1 connection before it is closed; 0 for no limit
    /// (Traefik's `keepAliveMaxRequests`).
    #[arg(long, default_value_t = 0)]
    http_keep_alive_max_requests: u64,
    /// Longest life of a kept-alive HTTP/1.1 connection; `0s` for no limit (Traefik's
    /// `keepAliveMaxTime`).
    #[arg(long, default_value = "0s", value_parser = flag_duration)]
    http_keep_alive_max_time: std::time::Duration,
    /// Largest request head (request line and headers) in bytes; larger ones get 431.
    #[arg(long, default_value_t = 64 * 1024)]
    http_max_header_bytes: usize,
    /// Write the proxy's access log to this file (`-` for standard output).
    #[arg(long)]
    access_log: Option<PathBuf>,
    /// Access log format: `common` (Traefik's CLF) or `json`.
    #[arg(long, default_value = "common", value_parser = ["common", "json"])]
    access_log_format: String,
}

#[derive(Subcommand)]
enum ZoneCommand {
    /// Create a hosted zone; prints its ID and name.
    Create {
        name: String,
        #[arg(long)]
        comment: Option<String>,
        /// Idempotency token: a second create with the same reference fails.
        #[arg(long)]
        caller_reference: Option<String>,
        /// Name server of the zone (apex NS and SOA MNAME); repeat for several.
        #[arg(long = "nameserver")]
        name_servers: Vec<String>,
    },
    /// List hosted zones, and the status of every DNSZone reconciled here.
    List,
    /// Show a DNSZone's status: zone ID, name servers, conditions (by namespace/name, name or
    /// domain).
    Get { name: String },
    /// Delete a hosted zone (by ID or name), or with -f everything DNSZone manifests made
    /// (records, delegation, identity and secret, zone), in that order.
    Delete {
        #[arg(required_unless_present = "file")]
        zone: Option<String>,
        /// DNSZone manifests whose resources to remove.
        #[arg(short = 'f', long = "file", conflicts_with = "zone")]
        file: Option<PathBuf>,
        /// Delete its record sets first.
        #[arg(long)]
        force: bool,
    },
    /// Replace a zone's records with an RFC 1035 master file.
    Import {
        zone: String,
        /// The master file ("-" for standard input).
        #[arg(long)]
        file: PathBuf,
        /// Create the zone when it does not exist.
        #[arg(long)]
        create: bool,
    },
    /// Print a zone as an RFC 1035 master file.
    Export { zone: String },
    /// Reconcile DNSZone manifests: zone, delegation, records from the network, scoped identity.
    Apply {
        /// Manifest file ("-" for standard input).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum RecordCommand {
    /// Create or replace a record set: `record upsert example.com www A 192.0.2.1 192.0.2.2`.
    Upsert(RecordArgs),
    /// Create a record set that must not exist yet.
    Create(RecordArgs),
    /// Delete a record set (all its values).
    Delete {
        zone: String,
        name: String,
        #[arg(value_name = "TYPE")]
        rtype: String,
    },
    /// List a zone's records.
    List { zone: String },
}

#[derive(Args)]
struct RecordArgs {
    /// Zone ID or name.
    zone: String,
    /// Record name: `@`, relative to the zone, or absolute with a trailing dot.
    name: String,
    #[arg(value_name = "TYPE")]
    rtype: String,
    /// Values in presentation format, e.g. `"10 mail.example.com."` for MX.
    #[arg(required = true)]
    values: Vec<String>,
    #[arg(long, default_value_t = 300)]
    ttl: u32,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_format, matches!(cli.command, Command::Serve(_)));
    let workers = match &cli.command {
        Command::Serve(args) => args.worker_threads.map(usize::from),
        _ => None,
    };
    let runtime = match build_runtime(workers) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The runtime: `workers` threads (default: the CPUs this process may use). One worker is a
/// current-thread runtime, since a multi-thread one with a single worker still pays for
/// cross-thread queues and wake-ups on every task switch.
fn build_runtime(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let workers = worker_count(workers);
    let mut builder = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    builder.enable_all().build()
}

/// `--worker-threads`, or the CPUs this process may use.
fn worker_count(asked: Option<usize>) -> usize {
    asked.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

fn init_logging(format: &str, serving: bool) {
    let default = if serving { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGEPLANE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let key_source = cli.master_key_source();
    let request = match cli.command {
        Command::Serve(args) => {
            let config = config::static_config::StaticConfig::load(cli.config.as_deref())?;
            return serve(cli.data_dir, key_source, config, *args).await;
        }
        Command::Secret(cmd) => secret_request(cmd)?,
        Command::Identity(cmd) => match cmd {
            IdentityCommand::Create { name, rules } => Request::IdentityCreate { name, rules },
            IdentityCommand::List => Request::IdentityList,
            IdentityCommand::Delete { access_key_id } => Request::IdentityDelete { access_key_id },
            IdentityCommand::Deactivate { access_key_id } => Request::IdentitySetActive {
                access_key_id,
                active: false,
            },
            IdentityCommand::Activate { access_key_id } => Request::IdentitySetActive {
                access_key_id,
                active: true,
            },
        },
        Command::Cert(cmd) => match cmd {
            CertCommand::List => Request::CertList,
            CertCommand::Get { name } => Request::CertGet { name },
        },
        Command::Zone(cmd) => match cmd {
            ZoneCommand::Create {
                name,
                comment,
                caller_reference,
                name_servers,
            } => Request::ZoneCreate {
                name,
                caller_reference,
                comment,
                name_servers,
            },
            ZoneCommand::List => Request::ZoneList,
            ZoneCommand::Get { name } => Request::ZoneGet { name },
            ZoneCommand::Delete { zone, file, force } => match (zone, file) {
                (_, Some(file)) => Request::ZoneTeardown {
                    text: std::fs::read_to_string(&file)
                        .with_context(|| format!("reading {}", file.display()))?,
                },
                (Some(zone), None) => Request::ZoneDelete { zone, force },
                (None, None) => anyhow::bail!("give a zone or -f FILE"),
            },
            ZoneCommand::Import { zone, file, create } => {
                let text = if file.as_os_str() == "-" {
                    std::io::read_to_string(std::io::stdin()).context("reading standard input")?
                } else {
                    std::fs::read_to_string(&file)
                        .with_context(|| format!("reading {}", file.display()))?
                };
                Request::ZoneImport { zone, text, create }
            }
            ZoneCommand::Export { zone } => Request::ZoneExport { zone },
            ZoneCommand::Apply { file } => {
                let text = if file.as_os_str() == "-" {
                    std::io::read_to_string(std::io::stdin()).context("reading standard input")?
                } else {
                    std::fs::read_to_string(&file)
                        .with_context(|| format!("reading {}", file.display()))?
                };
                Request::ZoneApply { text }
            }
        },
        Command::Record(cmd) => match cmd {
            RecordCommand::Upsert(a) => record_change("upsert", a),
            RecordCommand::Create(a) => record_change("create", a),
            RecordCommand::Delete { zone, name, rtype } => {
                Request::RecordDelete { zone, name, rtype }
            }
            RecordCommand::List { zone } => Request::RecordList { zone },
        },
    };
    // Only DNSZones need the static configuration: a broken file leaves other commands alone.
    let static_config = if request.needs_dns_providers() {
        config::static_config::StaticConfig::load(cli.config.as_deref())?
    } else {
        config::static_config::StaticConfig::default()
    };
    let providers = std::sync::Arc::new(providers::DnsProviders::new(static_config));
    let output = control::connect(&cli.data_dir, &request, &key_source, providers)?
        .run(request)
        .await?;
    print!("{output}");
    Ok(())
}

fn secret_request(cmd: SecretCommand) -> anyhow::Result<Request> {
    Ok(match cmd {
        SecretCommand::Create(a) => secret_put(a, false)?,
        SecretCommand::Apply(a) => secret_put(a, true)?,
        SecretCommand::Get {
            name,
            namespace,
            version,
            key,
        } => Request::SecretGet {
            namespace,
            name,
            version,
            key,
        },
        SecretCommand::List { namespace } => Request::SecretList { namespace },
        SecretCommand::Delete { name, namespace } => Request::SecretDelete { namespace, name },
        SecretCommand::RotateMasterKey => Request::SecretRotateMasterKey,
    })
}

/// Reads literal and file values on the client side; they travel base64-encoded.
fn secret_put(a: SecretArgs, update: bool) -> anyhow::Result<Request> {
    let mut data = std::collections::BTreeMap::new();
    for lit in &a.literals {
        let (k, v) = lit
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--from-literal takes KEY=VALUE"))?;
        data.insert(k.to_string(), model::base64::encode(v.as_bytes()));
    }
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for f in &a.files {
        match f.split_once('=') {
            Some((k, p)) => files.push((k.to_string(), PathBuf::from(p))),
            None => {
                let p = PathBuf::from(f);
                let k = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .ok_or_else(|| anyhow::anyhow!("--from-file {f}: no file name"))?;
                files.push((k, p));
            }
        }
    }
    let mut secret_type = a.secret_type;
    if let Some(cert) = a.cert {
        files.push(("tls.crt".to_string(), cert));
        secret_type = "kubernetes.io/tls".to_string();
    }
    if let Some(key) = a.key {
        files.push(("tls.key".to_string(), key));
        secret_type = "kubernetes.io/tls".to_string();
    }
    for (k, p) in files {
        let bytes = zeroize::Zeroizing::new(
            std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
        );
        data.insert(k, model::base64::encode(&bytes));
    }
    Ok(Request::SecretPut {
        namespace: a.namespace,
        name: a.name,
        secret_type,
        data: control::RedactedData(data),
        update,
    })
}

fn record_change(action: &str, a: RecordArgs) -> Request {
    Request::RecordChange {
        zone: a.zone,
        action: action.to_string(),
        name: a.name,
        rtype: a.rtype,
        ttl: a.ttl,
        values: a.values,
    }
}

/// An address this process can dial for a listener bound to `addr` (the loopback for a
/// wildcard bind).
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], addr.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

async fn serve(
    data_dir: PathBuf,
    key_source: store::secrets::MasterKeySource,
    static_config: config::static_config::StaticConfig,
    args: ServeArgs,
) -> anyhow::Result<()> {
    if let Some(origin) = &static_config.origin {
        // Names only: credentials are read when a provider is first used, and never logged.
        tracing::info!(
            file = %origin.display(),
            dns_providers = static_config.provider_names().join(","),
            "static configuration read"
        );
    }
    let providers = std::sync::Arc::new(providers::DnsProviders::new(static_config));
    let store = store::Store::open(&data_dir)?;
    let secrets =
        store::secrets::Secrets::open(&store, key_source, &data_dir.join(control::AUDIT_FILE))
            .context("opening the secret store")?;
    let defaults = args.dns_listen.is_empty();
    let listen = if defaults {
        vec![
            SocketAddr::from(([127, 0, 0, 1], 1053)),
            SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], 1053)),
        ]
    } else {
        args.dns_listen.clone()
    };
    let mut config = dns::DnsConfig {
        listen: Vec::new(),
        allow_transfer: args.allow_transfer.clone(),
        notify: args.notify.clone(),
        tcp_idle_timeout: Duration::from_secs(args.tcp_idle_timeout),
        max_tcp_connections: args.max_tcp_connections,
        ..dns::DnsConfig::default()
    };
    if let Some(n) = args.udp_workers {
        config.udp_workers = n;
    }
    let mut servers = Vec::new();
    for addr in listen {
        let mut c = config.clone();
        c.listen = vec![addr];
        match dns::DnsServer::start(c, store.clone()).await {
            Ok(s) => servers.push(s),
            // The IPv6 loopback of the defaults may be missing (IPv6 disabled): go on without it.
            Err(e) if defaults && addr.is_ipv6() => {
                tracing::warn!(%addr, error = %e, "IPv6 loopback unavailable; serving IPv4 only");
            }
            Err(e) => return Err(e).with_context(|| format!("binding DNS on {addr}")),
        }
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stats: Vec<_> = servers.iter().map(|s| s.stats()).collect();
    let identities = store::identities::Identities::new(secrets.clone())?;
    if let Some(path) = identities.ensure_admin(&data_dir)? {
        println!(
            "created the admin access key; its credentials are in {} (mode 0600)",
            path.display()
        );
    }
    if certificates::ensure_root_ca(&secrets).context("creating the internal root CA")? {
        tracing::info!(
            secret = %format!("{}/{}", certificates::CLUSTER_NAMESPACE, certificates::ROOT_SECRET),
            issuer = certificates::DEFAULT_ISSUER,
            "created the internal root CA"
        );
    }
    let admin_listener = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("binding the admin API on {}", args.admin_listen))?;
    tracing::info!(addr = %admin_listener.local_addr()?, "admin API listening");
    let control_listener = control::bind_socket(&data_dir)?;
    let proxy = std::sync::Arc::new(start_proxy(&args).await?);
    let router = {
        let store = store.clone();
        let proxy_metrics = proxy.metrics().clone();
        axum::Router::new()
            .route(
                "/metrics",
                axum::routing::get(move || {
                    let mut body = metrics::render(&store, &stats);
                    body.push_str(&proxy_metrics.render());
                    async move { ([("content-type", "text/plain; version=0.0.4")], body) }
                }),
            )
            .merge(ingress::router(ingress::ProxyApi {
                proxy: proxy.clone(),
                identities: store::identities::Identities::new(secrets.clone())?,
            }))
            .merge(api::admin::router(api::admin::AdminState {
                secrets: secrets.clone(),
                identities,
            }))
    };
    let name_servers: Vec<model::DomainName> = if args.zone_name_servers.is_empty() {
        control::DEFAULT_NAME_SERVERS
            .iter()
            .map(|s| model::DomainName::parse(s))
            .collect::<Result<_, _>>()?
    } else {
        args.zone_name_servers
            .iter()
            .map(|s| model::DomainName::parse(s))
            .collect::<Result<_, _>>()?
    };
    let api_listener = tokio::net::TcpListener::bind(args.api_listen)
        .await
        .with_context(|| format!("binding the Route53 API on {}", args.api_listen))?;
    let api_addr = api_listener.local_addr()?;
    tracing::info!(addr = %api_addr, "Route53 API listening");
    let api_router = api::route53::router(api::route53::Route53State {
        store: store.clone(),
        identities: store::identities::Identities::new(secrets.clone())?,
        name_servers: name_servers.clone(),
        limiter: args
            .api_rate_limit
            .map(|r| std::sync::Arc::new(api::route53::RateLimiter::new(r))),
    });
    let api = tokio::spawn({
        let mut stop = stop_rx.clone();
        async move {
            axum::serve(api_listener, api_router)
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await
        }
    });
    let health_interval = match args.health_check_interval {
        Some(secs) => Some(
            Duration::try_from_secs_f64(secs)
                .ok()
                .filter(|d| !d.is_zero())
                .context("--health-check-interval must be a positive number of seconds")?,
        ),
        None => None,
    };
    let prober = tokio::spawn(dns::health::run(
        store.clone(),
        dns::health::ProberConfig {
            interval: health_interval,
        },
        stop_rx.clone(),
    ));
    let acme = acme::Acme::new(
        acme::Env {
            api_endpoint: Some(format!("http://{}", reachable(api_addr))),
            dns_addrs: servers
                .iter()
                .flat_map(|s| s.local_addrs().to_vec())
                .map(reachable)
                .collect(),
            http01: Some((
                proxy.http01_challenges(),
                proxy.local_addr("web").map(reachable),
            )),
            providers: providers.clone(),
            store: store.clone(),
            settings: acme::Settings::from(&providers.config().acme),
        },
        tokio::runtime::Handle::current(),
    );
    let manifests = tokio::spawn(manifests::watch(
        args.manifests.clone(),
        store.clone(),
        secrets.clone(),
        name_servers.clone(),
        providers.clone(),
        manifests::Planes {
            proxy: Some(proxy.clone()),
            acme: Some(acme),
        },
        stop_rx.clone(),
    ));
    let admin = tokio::spawn({
        let mut stop = stop_rx.clone();
        async move {
            axum::serve(admin_listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await
        }
    });
    let control = tokio::spawn({
        let data_dir = data_dir.clone();
        let ctx = control::Context {
            store: store.clone(),
            secrets: Some(secrets),
            name_servers: name_servers.clone(),
            providers,
        };
        async move { control::serve_socket(control_listener, &data_dir, ctx, stop_rx).await }
    });
    tracing::info!(
        data_dir = %data_dir.display(),
        dns = ?servers.iter().flat_map(|s| s.local_addrs().to_vec()).collect::<Vec<_>>(),
        zones = store.snapshot().zones.len(),
        workers = tokio::runtime::Handle::current().metrics().num_workers(),
        runtime = ?tokio::runtime::Handle::current().runtime_flavor(),
        "edgeplane serving"
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    proxy.shutdown().await;
    for s in servers {
        s.shutdown().await;
    }
    let _ = manifests.await;
    let _ = prober.await;
    if let Ok(Err(e)) = api.await {
        tracing::warn!(error = %e, "Route53 API failed");
    }
    if let Ok(Err(e)) = admin.await {
        tracing::warn!(error = %e, "admin API failed");
    }
    if let Ok(Err(e)) = control.await {
        tracing::warn!(error = %e, "control socket failed");
    }
    Ok(())
}

/// A duration flag in Go's notation (`60s`, `1m30s`, `500ms`), as Traefik writes them.
fn flag_duration(text: &str) -> Result<std::time::Duration, String> {
    config::certmanager::go_duration(text)
}

/// A timeout flag: a duration, not zero (which would close every connection at once).
fn flag_timeout(text: &str) -> Result<std::time::Duration, String> {
    let d = flag_duration(text)?;
    if d.is_zero() {
        return Err("a timeout must be longer than zero".to_string());
    }
    Ok(d)
}

/// Binds the proxy's entry points (`web`, `websecure`).
async fn start_proxy(args: &ServeArgs) -> anyhow::Result<proxy::Proxy> {
    let trusted = args
        .forwarded_trusted_ips
        .iter()
        .map(|t| {
            model::net::IpNet::parse(t).map_err(|e| anyhow::anyhow!("--forwarded-trusted-ip: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let entry_point = |name: &str, listen: SocketAddr| {
        let mut e = proxy::EntryPointConfig::new(name, listen);
        e.read_header_timeout = args.http_read_timeout;
        e.idle_timeout = args.http_idle_timeout;
        e.write_timeout = (!args.http_write_timeout.is_zero()).then_some(args.http_write_timeout);
        e.keep_alive_max_requests = args.http_keep_alive_max_requests;
        e.keep_alive_max_time =
            (!args.http_keep_alive_max_time.is_zero()).then_some(args.http_keep_alive_max_time);
        e.max_header_bytes = args.http_max_header_bytes;
        e
    };
    let mut web = entry_point("web", args.web_listen);
    web.trusted_ips = trusted.clone();
    if args.redirect_to_https {
        web.redirect_to = Some(proxy::Redirect {
            scheme: "https".to_string(),
            port: args.https_port.unwrap_or(args.websecure_listen.port()),
            permanent: true,
        });
    }
    let proxy_protocol = args
        .proxy_protocol_trusted_ips
        .iter()
        .map(|t| {
            model::net::IpNet::parse(t)
                .map_err(|e| anyhow::anyhow!("--proxy-protocol-trusted-ip: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    web.proxy_protocol_trusted = proxy_protocol.clone();
    let mut websecure = entry_point("websecure", args.websecure_listen);
    websecure.tls = true;
    websecure.trusted_ips = trusted;
    websecure.proxy_protocol_trusted = proxy_protocol;
    let access_log = args
        .access_log
        .as_ref()
        .map(|p| proxy::access_log::AccessLogConfig {
            path: (p.as_os_str() != "-").then(|| p.clone()),
            format: if args.access_log_format == "json" {
                proxy::access_log::AccessLogFormat::Json
            } else {
                proxy::access_log::AccessLogFormat::Common
            },
        });
    let options = proxy::ProxyOptions {
        access_log,
        workers: worker_count(args.worker_threads.map(usize::from)),
    };
    Ok(proxy::Proxy::start_with(vec![web, websecure], options).await?)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
