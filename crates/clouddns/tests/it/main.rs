//! The Route53 provider, on the official AWS SDK, against edgeplane's own Route53/IAM API served
//! in-process on a loopback port (real HTTP, real SigV4); and the zone workflow on both backends.

mod counting;
mod workflow;

use std::net::SocketAddr;

use clouddns::route53::{Route53Options, Route53Provider};
use clouddns::{ChangeStatus, DnsProvider, ProviderError};
use model::record::{RecordData, RecordSet, RecordType, Ttl};
use model::zone::{Change, ChangeAction};
use model::DomainName;
use store::identities::Identities;
use store::secrets::{MasterKeySource, Secrets};
use store::Store;

struct Api {
    _dir: tempfile::TempDir,
    addr: SocketAddr,
    admin: (String, String),
}

async fn start_api() -> Api {
    start_api_limited(None).await
}

/// The API with a per-key rate limit (requests per second).
async fn start_api_limited(rate: Option<f64>) -> Api {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("data")).expect("store");
    let secrets = Secrets::open(
        &store,
        MasterKeySource::File(dir.path().join("master.key")),
        &dir.path().join("audit.log"),
    )
    .expect("secrets");
    let identities = Identities::new(secrets).expect("identities");
    let (_, creds) = identities
        .create("sdk-admin", &["*:*/*".to_string()])
        .expect("admin");
    let router = api::route53::router(api::route53::Route53State {
        store,
        identities,
        name_servers: vec![
            DomainName::parse("ns1.example.net").expect("ns"),
            DomainName::parse("ns2.example.net").expect("ns"),
        ],
        limiter: rate.map(|r| std::sync::Arc::new(api::route53::RateLimiter::new(r))),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Api {
        _dir: dir,
        addr,
        admin: (creds.access_key_id, creds.secret_access_key.to_string()),
    }
}

async fn provider(api: &Api, creds: (String, String)) -> Route53Provider {
    provider_at(api.addr, creds).await
}

/// An SDK provider for the endpoint at `addr` (the API itself, or a forwarder before it).
async fn provider_at(addr: SocketAddr, creds: (String, String)) -> Route53Provider {
    Route53Provider::new(Route53Options {
        endpoint: Some(format!("http://{addr}")),
        credentials: Some(creds),
        max_attempts: Some(2),
        ..Route53Options::default()
    })
    .await
}

fn n(s: &str) -> DomainName {
    DomainName::parse(s).expect("name")
}

fn set(name: &str, rtype: RecordType, values: &[&str]) -> RecordSet {
    let data = values
        .iter()
        .map(|v| RecordData::parse(rtype, v, None).expect("value"))
        .collect();
    RecordSet::new(n(name), Ttl::new(60).expect("ttl"), rtype, data).expect("set")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_provider_manages_zones_and_large_batches() {
    let api = start_api().await;
    let p = provider(&api, api.admin.clone()).await;
    let zone = p
        .create_zone(&n("sdk.example"), "sdk-1", Some("from the Rust SDK"))
        .await
        .expect("create");
    assert!(zone.id.starts_with('Z'));
    assert_eq!(zone.name_servers, ["ns1.example.net", "ns2.example.net"]);
    assert!(matches!(
        p.create_zone(&n("other.example"), "sdk-1", None).await,
        Err(ProviderError::AlreadyExists(_))
    ));
    let found = p.find_zones(&n("sdk.example")).await.expect("find");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, zone.id);
    assert!(p
        .find_zones(&n("nothere.example"))
        .await
        .expect("find")
        .is_empty());

    // 1,200 UPSERTs do not fit one batch (UPSERT counts twice): the provider splits them.
    let changes: Vec<Change> = (0..1200)
        .map(|i| Change {
            action: ChangeAction::Upsert,
            set: set(
                &format!("h{i}.sdk.example"),
                RecordType::A,
                &[&format!("10.1.{}.{}", i / 256, i % 256)],
            ),
        })
        .collect();
    let ids = p
        .change_record_sets(&zone.id, &changes)
        .await
        .expect("change");
    assert_eq!(ids.len(), 3);
    for id in &ids {
        assert_eq!(
            p.change_status(id).await.expect("status"),
            ChangeStatus::InSync
        );
    }
    let sets = p.list_record_sets(&zone.id).await.expect("list");
    assert_eq!(
        sets.len(),
        1202,
        "1,200 hosts plus SOA and NS, across pages of 300"
    );
    assert!(sets.iter().any(|s| s.name == n("h1199.sdk.example")
        && s.records == vec![RecordData::A("10.1.4.175".parse().expect("ip"))]));

    let err = p.delete_zone(&zone.id).await.expect_err("not empty");
    assert!(
        matches!(&err, ProviderError::Rejected { code, .. } if code == "HostedZoneNotEmpty"),
        "{err}"
    );
    assert!(matches!(
        p.list_record_sets("ZNOSUCHZONE").await,
        Err(ProviderError::NotFound(_))
    ));
    let bad = Change {
        action: ChangeAction::Delete,
        set: set("gone.sdk.example", RecordType::A, &["192.0.2.1"]),
    };
    assert!(
        matches!(p.change_record_sets(&zone.id, &[bad]).await, Err(ProviderError::Rejected { code, .. }) if code == "InvalidChangeBatch")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_through_the_sdk_scopes_a_key_to_acme_challenges() {
    let api = start_api().await;
    let admin = provider(&api, api.admin.clone()).await;
    let zone = admin
        .create_zone(&n("scoped.example"), "scoped-1", None)
        .await
        .expect("zone");
    let iam = admin.iam();
    iam.create_user()
        .user_name("acme-scoped")
        .send()
        .await
        .expect("user");
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"route53:ChangeResourceRecordSets","Resource":"arn:aws:route53:::hostedzone/{}","Condition":{{"ForAllValues:StringLike":{{"route53:ChangeResourceRecordSetsNormalizedRecordNames":["_acme-challenge.*"]}},"ForAllValues:StringEquals":{{"route53:ChangeResourceRecordSetsRecordTypes":["TXT"]}}}}}},{{"Effect":"Allow","Action":"route53:GetChange","Resource":"arn:aws:route53:::change/*"}}]}}"#,
        zone.id
    );
    iam.put_user_policy()
        .user_name("acme-scoped")
        .policy_name("dns01")
        .policy_document(policy)
        .send()
        .await
        .expect("policy");
    let key = iam
        .create_access_key()
        .user_name("acme-scoped")
        .send()
        .await
        .expect("key");
    let key = key.access_key().expect("access key");
    let scoped = provider(
        &api,
        (
            key.access_key_id().to_string(),
            key.secret_access_key().to_string(),
        ),
    )
    .await;
    let txt = Change {
        action: ChangeAction::Upsert,
        set: set(
            "_acme-challenge.scoped.example",
            RecordType::TXT,
            &["\"t0ken\""],
        ),
    };
    let ids = scoped
        .change_record_sets(&zone.id, &[txt])
        .await
        .expect("challenge allowed");
    assert_eq!(
        scoped.change_status(&ids[0]).await.expect("status"),
        ChangeStatus::InSync
    );
    let a = Change {
        action: ChangeAction::Upsert,
        set: set("www.scoped.example", RecordType::A, &["192.0.2.1"]),
    };
    assert!(matches!(
        scoped.change_record_sets(&zone.id, &[a]).await,
        Err(ProviderError::AccessDenied(_))
    ));
    assert!(matches!(
        scoped.create_zone(&n("x.example"), "x", None).await,
        Err(ProviderError::AccessDenied(_))
    ));
    let keys = iam
        .list_access_keys()
        .user_name("acme-scoped")
        .send()
        .await
        .expect("keys");
    assert_eq!(keys.access_key_metadata().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_through_the_sdk_against_edgeplane() {
    let api = start_api().await;
    // Every request passes a counting forwarder, so the suite sees what reaches the API.
    let (counted, calls) = counting::forwarder(api.addr).await;
    let p = provider_at(counted, api.admin.clone()).await;
    workflow::suite(&p).await;
    let local = local_secrets();
    workflow::reconcile_suite(&p, &local.1, &calls).await;
    let (zone, id, secret) = workflow::identity_suite(&p, &local.1).await;
    // The stored key writes its challenge and nothing else (edgeplane enforces the policy).
    let scoped = provider(&api, (id, secret)).await;
    let txt = Change {
        action: ChangeAction::Upsert,
        set: set(
            "_acme-challenge.app.example.com",
            RecordType::TXT,
            &["\"t\""],
        ),
    };
    scoped
        .change_record_sets(&zone, &[txt])
        .await
        .expect("challenge allowed");
    let a = Change {
        action: ChangeAction::Upsert,
        set: set("app.example.com", RecordType::A, &["192.0.2.1"]),
    };
    assert!(matches!(
        scoped.change_record_sets(&zone, &[a]).await,
        Err(ProviderError::AccessDenied(_))
    ));
    let parent = p.find_zones(&n("example.com")).await.expect("find")[0]
        .id
        .clone();
    let other = Change {
        action: ChangeAction::Upsert,
        set: set("_acme-challenge.example.com", RecordType::TXT, &["\"t\""]),
    };
    assert!(matches!(
        scoped.change_record_sets(&parent, &[other]).await,
        Err(ProviderError::AccessDenied(_))
    ));
    // The key may clean its challenge up too, as cert-manager does.
    let cleanup = Change {
        action: ChangeAction::Delete,
        set: set(
            "_acme-challenge.app.example.com",
            RecordType::TXT,
            &["\"t\""],
        ),
    };
    scoped
        .change_record_sets(&zone, &[cleanup])
        .await
        .expect("cleanup allowed");
    workflow::teardown_suite(&p, &local.1).await;
}

/// A secret store of its own, where the workflow keeps the identities it makes.
fn local_secrets() -> (tempfile::TempDir, Secrets) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("data")).expect("store");
    let secrets = Secrets::open(
        &store,
        MasterKeySource::File(dir.path().join("master.key")),
        &dir.path().join("audit.log"),
    )
    .expect("secrets");
    (dir, secrets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_on_the_embedded_backend_served_over_dns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("data")).expect("store");
    let secrets = Secrets::open(
        &store,
        MasterKeySource::File(dir.path().join("master.key")),
        &dir.path().join("audit.log"),
    )
    .expect("secrets");
    let p = counting::Counting::new(
        clouddns::embedded::EmbeddedProvider::new(
            store.clone(),
            vec![n("ns1.example.net"), n("ns2.example.net")],
        )
        .with_identities(Identities::new(secrets.clone()).expect("identities")),
    );
    let zone = workflow::suite(&p).await;
    workflow::identity_suite(&p, &secrets).await;
    // A slow service: the first polls answer PENDING, and the wait says what it waits for.
    p.pending_for(2);
    let progress = workflow::reconcile_suite(&p, &secrets, &p.calls).await;
    assert!(
        progress[0].starts_with("waiting for change C")
            && progress[0].ends_with("to be INSYNC (0.0 s)"),
        "{progress:?}"
    );
    assert!(
        progress
            .iter()
            .any(|l| l.starts_with("change C") && l.contains(" is INSYNC (")),
        "{progress:?}"
    );
    // What the workflow wrote is what the DNS server answers.
    let server = dns::DnsServer::start(
        dns::DnsConfig {
            listen: vec![std::net::SocketAddr::from(([127, 0, 0, 1], 0))],
            udp_workers: 1,
            ..dns::DnsConfig::default()
        },
        store.clone(),
    )
    .await
    .expect("dns");
    let addr = server.local_addrs()[0];
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut q = vec![0x42, 0x42, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["anything", "app", "example", "com"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    socket.send_to(&q, addr).await.expect("send");
    let mut buf = [0u8; 512];
    let (len, _) = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        socket.recv_from(&mut buf),
    )
    .await
    .expect("reply")
    .expect("recv");
    assert_eq!(buf[3] & 0x0f, 0, "NOERROR");
    assert_eq!(
        u16::from_be_bytes([buf[6], buf[7]]),
        2,
        "the wildcard's two public addresses"
    );
    assert!(len > q.len());
    assert!(store
        .zone(&model::HostedZoneId::parse(&zone).expect("id"))
        .is_ok());
    // Then the DNSZone is deleted, in order.
    workflow::teardown_suite(&p, &secrets).await;
    server.shutdown().await;
}

/// moto's server, started for one test and killed after it.
struct Moto(std::process::Child, u16);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_moto() -> Moto {
    let venv = std::env::var_os("EDGEPLANE_TEST_VENV")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cache/edgeplane/venv"))
        })
        .expect("HOME");
    let bin = venv.join("bin/moto_server");
    assert!(
        bin.exists(),
        "moto_server is not installed in {}: run scripts/install-test-deps.sh",
        venv.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let child = std::process::Command::new(bin)
        .args(["-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start moto_server");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "moto_server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Moto(child, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_through_the_sdk_against_moto() {
    let moto = start_moto();
    let (counted, calls) =
        counting::forwarder(std::net::SocketAddr::from(([127, 0, 0, 1], moto.1))).await;
    let p = provider_at(counted, ("testing".into(), "testing".into())).await;
    workflow::suite(&p).await;
    let local = local_secrets();
    workflow::identity_suite(&p, &local.1).await;
    workflow::reconcile_suite(&p, &local.1, &calls).await;
    workflow::teardown_suite(&p, &local.1).await;
}

/// Faults: the API throttles hard in the middle of the workflow. The SDK's standard retry mode
/// backs off and the workflow converges, with no duplicate zone and nothing orphaned (the suite
/// checks both).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workflow_converges_through_throttling() {
    let api = start_api_limited(Some(5.0)).await;
    let started = std::time::Instant::now();
    let p = Route53Provider::new(Route53Options {
        endpoint: Some(format!("http://{}", api.addr)),
        credentials: Some(api.admin.clone()),
        max_attempts: Some(10),
        ..Route53Options::default()
    })
    .await;
    workflow::suite(&p).await;
    let local = local_secrets();
    workflow::identity_suite(&p, &local.1).await;
    // Some 60 calls at 5 per second: the run was throttled, and got through by backing off.
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(4),
        "not throttled? {:?}",
        started.elapsed()
    );
}

/// Faults mid-workflow, against edgeplane's API and moto: calls that fail outright and calls
/// that take effect but whose reply is lost (CreateHostedZone, CreateUser, CreateAccessKey,
/// ChangeResourceRecordSets), with the SDK not retrying. Reconciling again converges: one
/// zone, one user with the stored key among at most two, records in place, nothing orphaned
/// after teardown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workflow_converges_after_failed_and_lost_calls() {
    use counting::Fault::{Error, LoseReply};
    let api = start_api().await;
    let moto = start_moto();
    let targets = [
        (api.addr, api.admin.clone()),
        (
            std::net::SocketAddr::from(([127, 0, 0, 1], moto.1)),
            ("testing".to_string(), "testing".to_string()),
        ),
    ];
    for (upstream, creds) in targets {
        let faults = vec![
            ("CreateHostedZone", LoseReply),
            ("ChangeResourceRecordSets", Error),
            ("CreateUser", LoseReply),
            ("PutUserPolicy", Error),
            ("CreateAccessKey", LoseReply),
            ("ChangeResourceRecordSets", LoseReply),
        ];
        // The parent exists before the faults start.
        ensure_parent(&provider_at(upstream, creds.clone()).await).await;
        let (addr, _calls, left) = counting::faulty_forwarder(upstream, faults).await;
        let p = Route53Provider::new(Route53Options {
            endpoint: Some(format!("http://{addr}")),
            credentials: Some(creds.clone()),
            max_attempts: Some(1),
            ..Route53Options::default()
        })
        .await;
        let local = local_secrets();
        let plan = workflow::fault_plan();
        let mut last = None;
        for _ in 0..10 {
            let status = clouddns::workflow::reconcile(&p, &plan, Some(&local.1), |_| {}).await;
            let ready = status.ready();
            last = Some(status);
            if ready {
                break;
            }
        }
        let status = last.expect("reconciled");
        assert!(status.ready(), "{upstream}: {status:?}");
        assert!(
            left.lock().expect("faults").is_empty(),
            "every fault was hit"
        );
        workflow::check_converged(&p, &plan, &local.1).await;
        // Teardown leaves nothing behind, even after the faults.
        clouddns::workflow::teardown(&p, &plan, Some(&local.1))
            .await
            .expect("teardown");
        assert!(p.find_zones(&plan.domain).await.expect("find").is_empty());
        let user = clouddns::workflow::identity_user(&plan.domain);
        assert!(
            !p.user_exists(&user).await.expect("user"),
            "{upstream}: user orphaned"
        );
    }
}

/// The parent zone the fault plan delegates from.
async fn ensure_parent<P: DnsProvider>(p: &P) {
    clouddns::workflow::ensure_zone(p, "platform", &n("example.org"))
        .await
        .expect("parent");
}
