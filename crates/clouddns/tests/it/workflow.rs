//! The zone workflow suite, run on the embedded backend and through the AWS SDK against
//! edgeplane's Route53 API: the same steps, the same expectations.

use std::time::Duration;

use clouddns::workflow::{
    address_records, apply_records, delegate, ensure_zone, wait_insync, Network, NetworkKind,
    ParentRef, RecordSpec, WorkflowError,
};
use clouddns::DnsProvider;
use model::record::{RecordData, RecordSet, RecordType, Ttl};
use model::zone::{Change, ChangeAction};
use model::DomainName;

fn n(s: &str) -> DomainName {
    DomainName::parse(s).expect("name")
}

fn specs() -> Vec<RecordSpec> {
    vec![
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
        RecordSpec {
            name: "www".into(),
            from_network: NetworkKind::Public,
            ttl: 60,
        },
    ]
}

/// The suite; returns the child zone's ID.
pub(crate) async fn suite<P: DnsProvider>(p: &P) -> String {
    let parent = ensure_zone(p, "platform", &n("example.com"))
        .await
        .expect("parent");
    let child = ensure_zone(p, "default/app", &n("app.example.com"))
        .await
        .expect("child");
    assert!(!child.name_servers.is_empty());
    // Idempotent: the same owner gets the same zone back, not a duplicate.
    let again = ensure_zone(p, "default/app", &n("app.example.com"))
        .await
        .expect("adopt");
    assert_eq!(
        (again.id.as_str(), &again.name_servers),
        (child.id.as_str(), &child.name_servers)
    );
    assert_eq!(
        p.find_zones(&n("app.example.com"))
            .await
            .expect("find")
            .len(),
        1
    );

    // Delegation from the parent, found by the longest hosted suffix; a second run changes nothing.
    assert_eq!(
        delegate(p, &ParentRef::Domain(n("example.com")), &child)
            .await
            .expect("delegate")
            .len(),
        1
    );
    let ns: Vec<RecordSet> = p
        .list_record_sets(&parent.id)
        .await
        .expect("list")
        .into_iter()
        .filter(|s| s.name == n("app.example.com") && s.rtype == RecordType::NS)
        .collect();
    assert_eq!(ns.len(), 1);
    assert_eq!(ns[0].records.len(), child.name_servers.len());
    assert!(delegate(p, &ParentRef::ZoneId(parent.id.clone()), &child)
        .await
        .expect("again")
        .is_empty());

    // A record someone else made is never touched.
    let foreign = RecordSet::new(
        n("www.app.example.com"),
        Ttl::new(300).expect("ttl"),
        RecordType::A,
        vec![RecordData::A("198.51.100.1".parse().expect("ip"))],
    )
    .expect("set");
    p.change_record_sets(
        &child.id,
        &[Change {
            action: ChangeAction::Create,
            set: foreign.clone(),
        }],
    )
    .await
    .expect("foreign");

    // Records from the network status: both lists, de-duplicated, split by family.
    let network = Network {
        elb_eips: vec![
            "34.210.12.3".into(),
            "54.188.92.10".into(),
            "34.210.12.3".into(),
            "2600:1f18::1".into(),
        ],
        internal_elb_ips: vec!["10.0.1.17".into()],
    };
    let desired = address_records(&child.name, &network, &specs()).expect("records");
    let shape: Vec<(String, RecordType, usize)> = desired
        .iter()
        .map(|s| (s.name.to_string(), s.rtype, s.records.len()))
        .collect();
    assert_eq!(
        shape,
        [
            ("app.example.com.".to_string(), RecordType::A, 2),
            ("app.example.com.".to_string(), RecordType::AAAA, 1),
            ("*.app.example.com.".to_string(), RecordType::A, 2),
            ("*.app.example.com.".to_string(), RecordType::AAAA, 1),
            ("internal.app.example.com.".to_string(), RecordType::A, 1),
            ("www.app.example.com.".to_string(), RecordType::A, 2),
            ("www.app.example.com.".to_string(), RecordType::AAAA, 1),
        ]
    );
    let report = apply_records(p, &child.id, "default/app", &desired)
        .await
        .expect("apply");
    assert_eq!(
        report.upserted, 5,
        "www is someone else's: nothing is written under it"
    );
    assert!(
        matches!(
            report.skipped.as_slice(),
            [WorkflowError::NotOwned {
                rtype: RecordType::A,
                ..
            }]
        ),
        "{report:?}"
    );
    let mut polls = 0;
    wait_insync(p, &report.change_ids, Duration::from_secs(30), |_| {
        polls += 1
    })
    .await
    .expect("insync");
    assert!(polls >= 1);

    // Nothing changed: no mutating call.
    let second = apply_records(p, &child.id, "default/app", &desired)
        .await
        .expect("apply again");
    assert!(
        second.change_ids.is_empty() && second.upserted == 0 && second.deleted == 0,
        "{second:?}"
    );

    // The internal LB went away: its record and its ownership record go, the rest stays.
    let network = Network {
        internal_elb_ips: vec![],
        ..network
    };
    let desired = address_records(&child.name, &network, &specs()).expect("records");
    let third = apply_records(p, &child.id, "default/app", &desired)
        .await
        .expect("apply");
    assert_eq!((third.upserted, third.deleted), (0, 1), "{third:?}");
    let sets = p.list_record_sets(&child.id).await.expect("list");
    assert!(!sets.iter().any(|s| s.name == n("internal.app.example.com")));
    assert!(!sets
        .iter()
        .any(|s| s.name == n("_edgeplane-owner.internal.app.example.com")));
    assert!(sets.contains(&foreign), "the foreign record is untouched");

    assert!(matches!(
        address_records(
            &child.name,
            &Network {
                elb_eips: vec!["300.1.1.1".into()],
                ..Network::default()
            },
            &specs()
        ),
        Err(WorkflowError::BadAddress(_))
    ));
    child.id
}

/// The scoped-identity step: created once, idempotent, rotated with at most two keys alive, and
/// stored as a secret. Returns the zone ID and the stored key.
pub(crate) async fn identity_suite<P: DnsProvider>(
    p: &P,
    secrets: &store::secrets::Secrets,
) -> (String, String, String) {
    use clouddns::workflow::ensure_identity;
    use store::secrets::Caller;
    let zone = ensure_zone(p, "default/app", &n("app.example.com"))
        .await
        .expect("zone");
    let r = model::secret::SecretRef::new("cert-manager", "route53").expect("ref");
    let first = ensure_identity(p, &zone, "us-east-1", secrets, &r, false)
        .await
        .expect("identity");
    assert!(
        first.created && first.user == "cert-manager-app-example-com",
        "{first:?}"
    );
    let again = ensure_identity(p, &zone, "us-east-1", secrets, &r, false)
        .await
        .expect("again");
    assert!(
        !again.created && again.access_key_id == first.access_key_id,
        "idempotent: {again:?}"
    );
    let rotated = ensure_identity(p, &zone, "us-east-1", secrets, &r, true)
        .await
        .expect("rotate");
    assert!(rotated.created && rotated.access_key_id != first.access_key_id);
    assert_eq!(
        rotated.retired.as_slice(),
        std::slice::from_ref(&first.access_key_id),
        "the old key is retired after the new one is stored"
    );
    assert_eq!(
        p.list_access_keys(&rotated.user)
            .await
            .expect("keys")
            .as_slice(),
        std::slice::from_ref(&rotated.access_key_id)
    );
    let (_, spec) = secrets.get(&Caller::admin(), &r, None).expect("secret");
    let get = |k: &str| String::from_utf8_lossy(spec.data[k].expose()).into_owned();
    assert_eq!(
        (get("access-key-id"), get("zone-id"), get("region")),
        (
            rotated.access_key_id.clone(),
            zone.id.clone(),
            "us-east-1".to_string()
        )
    );
    (zone.id, get("access-key-id"), get("secret-access-key"))
}

/// Deleting a DNSZone: records, delegation, identity and secret, zone; resumable, idempotent.
pub(crate) async fn teardown_suite<P: DnsProvider>(p: &P, secrets: &store::secrets::Secrets) {
    use clouddns::workflow::{teardown, ZonePlan};
    let plan = ZonePlan {
        owner: "default/app".into(),
        domain: n("app.example.com"),
        parent: Some(ParentRef::Domain(n("example.com"))),
        network: Network::default(),
        records: specs(),
        acme_secret: Some(model::secret::SecretRef::new("cert-manager", "route53").expect("ref")),
        region: "us-east-1".into(),
    };
    let zone = p.find_zones(&n("app.example.com")).await.expect("find")[0]
        .id
        .clone();
    // The foreign record blocks deleting the zone, but every other step is done.
    let err = teardown(p, &plan, Some(secrets))
        .await
        .expect_err("zone not empty");
    assert!(
        err.to_string().contains("HostedZoneNotEmpty")
            || err.to_string().contains("not SOA or NS")
            || err.to_string().contains("NotEmpty"),
        "{err}"
    );
    let left = p.list_record_sets(&zone).await.expect("list");
    assert!(
        left.iter().all(|s| s.name == n("app.example.com")
            && matches!(s.rtype, RecordType::SOA | RecordType::NS)
            || s.name == n("www.app.example.com")),
        "only the apex and the foreign record remain: {left:?}"
    );
    let parent = p.find_zones(&n("example.com")).await.expect("find")[0]
        .id
        .clone();
    assert!(
        !p.list_record_sets(&parent)
            .await
            .expect("list")
            .iter()
            .any(|s| s.name == n("app.example.com")),
        "delegation removed"
    );
    assert!(
        p.list_access_keys("cert-manager-app-example-com")
            .await
            .is_err(),
        "identity removed"
    );
    assert!(
        secrets
            .info(&plan.acme_secret.clone().expect("ref"))
            .is_err(),
        "secret removed"
    );
    // Resume after the owner of the foreign record removes it.
    let foreign = left
        .into_iter()
        .find(|s| s.name == n("www.app.example.com"))
        .expect("foreign");
    p.change_record_sets(
        &zone,
        &[Change {
            action: ChangeAction::Delete,
            set: foreign,
        }],
    )
    .await
    .expect("delete foreign");
    let done = teardown(p, &plan, Some(secrets)).await.expect("finish");
    assert_eq!(done, [format!("deleted hosted zone {zone}")]);
    assert!(teardown(p, &plan, Some(secrets))
        .await
        .expect("idempotent")
        .is_empty());
    assert!(p
        .find_zones(&n("app.example.com"))
        .await
        .expect("find")
        .is_empty());
}

/// A DNSZone below a name that is not hosted: `a.b.example.com` with parent `b.example.com`,
/// whose delegation lands in `example.com`, the longest hosted suffix.
fn deep_plan() -> clouddns::workflow::ZonePlan {
    clouddns::workflow::ZonePlan {
        owner: "default/deep".into(),
        domain: n("a.b.example.com"),
        parent: Some(ParentRef::Domain(n("b.example.com"))),
        network: Network {
            elb_eips: vec![
                "203.0.113.9".into(),
                "203.0.113.1".into(),
                "2001:db8::9".into(),
                "2001:db8::1".into(),
            ],
            internal_elb_ips: vec![],
        },
        records: vec![
            RecordSpec {
                name: "@".into(),
                from_network: NetworkKind::Public,
                ttl: 60,
            },
            RecordSpec {
                name: "www".into(),
                from_network: NetworkKind::Public,
                ttl: 60,
            },
        ],
        acme_secret: Some(model::secret::SecretRef::new("default", "route53-deep").expect("ref")),
        region: "us-east-1".into(),
    }
}

/// The whole reconcile, twice, counting what it asks of the service: the first run creates
/// the zone, delegates it from the longest hosted suffix of its parent, writes its records and
/// its identity; the second, with nothing changed (and the service holding the values in
/// another order), makes no mutating call at all. Then the DNSZone is torn down. Returns the
/// progress the first run reported.
pub(crate) async fn reconcile_suite<P: DnsProvider>(
    p: &P,
    secrets: &store::secrets::Secrets,
    calls: &crate::counting::Calls,
) -> Vec<String> {
    use clouddns::workflow::{reconcile, teardown};
    let parent = ensure_zone(p, "platform", &n("example.com"))
        .await
        .expect("parent");
    assert!(
        p.find_zones(&n("b.example.com"))
            .await
            .expect("find")
            .is_empty(),
        "b.example.com is not hosted"
    );
    let plan = deep_plan();
    calls.take();
    let mut progress = Vec::new();
    let first = reconcile(p, &plan, Some(secrets), |w| progress.push(w.to_string())).await;
    let kinds: Vec<(&str, bool)> = first.conditions.iter().map(|c| (c.kind, c.ok)).collect();
    assert_eq!(
        kinds,
        [
            ("Zone", true),
            ("Delegated", true),
            ("RecordsSynced", true),
            ("CredentialsReady", true),
            ("Ready", true)
        ],
        "{first:?}"
    );
    let made = calls.take_mutating();
    for op in [
        "CreateHostedZone",
        "ChangeResourceRecordSets",
        "CreateUser",
        "PutUserPolicy",
        "CreateAccessKey",
    ] {
        assert!(made.iter().any(|m| m == op), "{op} not seen in {made:?}");
    }
    assert!(
        progress
            .iter()
            .any(|l| l.ends_with(" s)") && l.contains("INSYNC")),
        "{progress:?}"
    );
    // The delegation is in example.com, found by walking up from b.example.com.
    let zone = first.zone_id.clone().expect("zone id");
    let parent_sets = p.list_record_sets(&parent.id).await.expect("list");
    let delegation = parent_sets
        .iter()
        .find(|s| s.name == n("a.b.example.com") && s.rtype == RecordType::NS)
        .expect("delegation in example.com")
        .clone();
    assert_eq!(delegation.records.len(), first.name_servers.len());

    // The service may hand values back in any order: store every multi-valued set this
    // workflow wrote in reverse, and it must still see nothing to change.
    let mut reversed = Vec::new();
    for s in p.list_record_sets(&zone).await.expect("list") {
        if matches!(s.rtype, RecordType::A | RecordType::AAAA) && s.records.len() > 1 {
            reversed.push(s);
        }
    }
    assert_eq!(reversed.len(), 4, "apex and www, A and AAAA: {reversed:?}");
    let reverse = |mut s: RecordSet| {
        s.records.reverse();
        Change {
            action: ChangeAction::Upsert,
            set: s,
        }
    };
    p.change_record_sets(
        &zone,
        &reversed.into_iter().map(reverse).collect::<Vec<_>>(),
    )
    .await
    .expect("reverse records");
    if delegation.records.len() > 1 {
        p.change_record_sets(&parent.id, &[reverse(delegation)])
            .await
            .expect("reverse delegation");
    }

    calls.take();
    let second = reconcile(p, &plan, Some(secrets), |_| {}).await;
    assert!(second.ready(), "{second:?}");
    let reasons: Vec<&str> = second
        .conditions
        .iter()
        .map(|c| c.reason.as_str())
        .collect();
    assert_eq!(
        reasons[1..3],
        ["delegation in place", "0 upserted, 0 deleted"]
    );
    let made = calls.take_mutating();
    assert!(
        made.is_empty(),
        "a second apply made mutating calls: {made:?}"
    );

    let done = teardown(p, &plan, Some(secrets)).await.expect("teardown");
    assert_eq!(done.len(), 5, "{done:?}");
    assert!(p
        .find_zones(&n("a.b.example.com"))
        .await
        .expect("find")
        .is_empty());
    assert!(!p
        .list_record_sets(&parent.id)
        .await
        .expect("list")
        .iter()
        .any(|s| s.name == n("a.b.example.com")));
    progress
}

/// A zone delegated from example.org, with records and an ACME identity, for fault tests.
pub(crate) fn fault_plan() -> clouddns::workflow::ZonePlan {
    let mut plan = deep_plan();
    plan.owner = "default/faults".into();
    plan.domain = n("faults.example.org");
    plan.parent = Some(ParentRef::Domain(n("example.org")));
    plan.acme_secret =
        Some(model::secret::SecretRef::new("default", "route53-faults").expect("ref"));
    plan
}

/// After faults: exactly one zone, the records, the delegation, one user whose keys (at most
/// two) include the stored one.
pub(crate) async fn check_converged<P: DnsProvider>(
    p: &P,
    plan: &clouddns::workflow::ZonePlan,
    secrets: &store::secrets::Secrets,
) {
    let zones = p.find_zones(&plan.domain).await.expect("find");
    assert_eq!(zones.len(), 1, "one zone, not a duplicate: {zones:?}");
    let sets = p.list_record_sets(&zones[0].id).await.expect("list");
    assert!(sets
        .iter()
        .any(|s| s.name == plan.domain && s.rtype == RecordType::A));
    let parent = &p.find_zones(&n("example.org")).await.expect("find")[0];
    let parent_sets = p.list_record_sets(&parent.id).await.expect("list");
    assert!(parent_sets
        .iter()
        .any(|s| s.name == plan.domain && s.rtype == RecordType::NS));
    let user = clouddns::workflow::identity_user(&plan.domain);
    let keys = p.list_access_keys(&user).await.expect("keys");
    assert!(!keys.is_empty() && keys.len() <= 2, "{keys:?}");
    let r = plan.acme_secret.as_ref().expect("secret ref");
    let (_, spec) = secrets
        .get(&store::secrets::Caller::admin(), r, None)
        .expect("stored identity");
    let id = String::from_utf8(spec.data["access-key-id"].expose().to_vec()).expect("utf8");
    assert!(keys.contains(&id), "stored key {id} among {keys:?}");
}
