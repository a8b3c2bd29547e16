//! The zone workflow as a library, end to end, on the embedded backend (no cloud account, no
//! server): a parent zone, a delegated child pointed at a load balancer, its scoped ACME
//! identity, then the deletion. Point a `Route53Provider` at AWS, edgeplane or moto instead to
//! run the same steps there.
//!
//!     cargo run -p clouddns --example zone_workflow

use clouddns::embedded::EmbeddedProvider;
use clouddns::workflow::{
    reconcile, teardown, Network, NetworkKind, ParentRef, RecordSpec, ZonePlan,
};
use clouddns::DnsProvider;
use model::secret::SecretRef;
use model::DomainName;
use store::identities::Identities;
use store::secrets::{MasterKeySource, Secrets};
use store::Store;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("edgeplane-example-{}", std::process::id()));
    let store = Store::open(&dir.join("data"))?;
    let secrets = Secrets::open(
        &store,
        MasterKeySource::File(dir.join("master.key")),
        &dir.join("audit.log"),
    )?;
    let provider = EmbeddedProvider::new(
        store.clone(),
        vec![
            DomainName::parse("ns1.example.net")?,
            DomainName::parse("ns2.example.net")?,
        ],
    )
    .with_identities(Identities::new(secrets.clone())?);

    let parent = ZonePlan {
        owner: "default/example-com".into(),
        domain: DomainName::parse("example.com")?,
        parent: None,
        network: Network::default(),
        records: Vec::new(),
        acme_secret: None,
        region: "us-east-1".into(),
    };
    let child = ZonePlan {
        owner: "default/app-example-com".into(),
        domain: DomainName::parse("app.example.com")?,
        parent: Some(ParentRef::Domain(DomainName::parse("example.com")?)),
        network: Network {
            elb_eips: vec!["34.210.12.3".into(), "2600:1f18::10".into()],
            internal_elb_ips: vec!["10.0.1.17".into()],
        },
        records: vec![
            RecordSpec {
                name: "@".into(),
                from_network: NetworkKind::Public,
                ttl: 60,
            },
            RecordSpec {
                name: "*".into(),
                from_network: NetworkKind::Public,
                ttl: 60,
            },
            RecordSpec {
                name: "internal".into(),
                from_network: NetworkKind::Internal,
                ttl: 60,
            },
        ],
        acme_secret: Some(SecretRef::new("default", "route53")?),
        region: "us-east-1".into(),
    };
    for plan in [&parent, &child] {
        let status = reconcile(&provider, plan, Some(&secrets), |w| println!("  {w}")).await;
        println!(
            "{} ({}): ready={}",
            plan.domain,
            status.zone_id.as_deref().unwrap_or("-"),
            status.ready()
        );
        for c in &status.conditions {
            println!("  {}: {} ({})", c.kind, c.ok, c.reason);
        }
    }
    let zone = provider.find_zones(&child.domain).await?.remove(0);
    for set in provider.list_record_sets(&zone.id).await? {
        for r in &set.records {
            println!("  {} {} {} {}", set.name, set.ttl, set.rtype, r);
        }
    }
    for plan in [&child, &parent] {
        println!(
            "deleting {}: {:?}",
            plan.domain,
            teardown(&provider, plan, Some(&secrets)).await?
        );
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
