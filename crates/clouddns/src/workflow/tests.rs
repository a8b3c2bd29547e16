//! The workflow's pure parts, as data: policy equivalence, order-free record comparison, and
//! the progress lines of a wait for INSYNC.

use super::*;

#[test]
fn policies_compare_as_iam_reads_them() {
    let wanted = acme_policy("Z1");
    let same = [
        // Reformatted, keys reordered.
        r#"{ "Statement": [
             {"Resource": "arn:aws:route53:::hostedzone/Z1", "Effect": "Allow",
              "Action": ["route53:ListResourceRecordSets", "route53:ChangeResourceRecordSets"],
              "Condition": {"ForAllValues:StringEquals": {"route53:ChangeResourceRecordSetsRecordTypes": "TXT"},
                            "ForAllValues:StringLike": {"route53:ChangeResourceRecordSetsNormalizedRecordNames": ["_acme-challenge.*"]}}},
             {"Effect": "Allow", "Action": "route53:ListHostedZonesByName", "Resource": ["*"]},
             {"Effect": "Allow", "Action": ["route53:GetChange"], "Resource": "arn:aws:route53:::change/*"}],
           "Version": "2012-10-17" }"#
            .to_string(),
        wanted.clone(),
    ];
    for doc in &same {
        assert!(same_policy(doc, &wanted), "{doc}");
    }
    let different = [
        acme_policy("Z2"),
        wanted.replace("_acme-challenge.*", "*"),
        wanted.replace(
            r#""Effect":"Allow","Action":"route53:GetChange""#,
            r#""Effect":"Deny","Action":"route53:GetChange""#,
        ),
        wanted.replace(r#","route53:ListResourceRecordSets""#, ""),
        "not json".to_string(),
        String::new(),
    ];
    for doc in &different {
        assert!(!same_policy(doc, &wanted), "{doc}");
    }
}

#[test]
fn record_sets_compare_without_value_order() {
    let zone = DomainName::parse("example.com").expect("zone");
    let network = |ips: &[&str]| Network {
        elb_eips: ips.iter().map(|s| s.to_string()).collect(),
        internal_elb_ips: vec![],
    };
    let spec = [RecordSpec {
        name: "@".into(),
        from_network: NetworkKind::Public,
        ttl: 60,
    }];
    let a = address_records(&zone, &network(&["192.0.2.1", "192.0.2.2"]), &spec).expect("a");
    let mut b = a[0].clone();
    b.records.reverse();
    assert_ne!(a[0], b, "the values are in another order");
    assert!(same_set(&a[0], &b));
    let c = address_records(&zone, &network(&["192.0.2.1", "192.0.2.3"]), &spec).expect("c");
    assert!(!same_set(&a[0], &c[0]));
    let mut d = a[0].clone();
    d.ttl = Ttl::new(61).expect("ttl");
    assert!(!same_set(&a[0], &d));
    let e = address_records(&zone, &network(&["192.0.2.1"]), &spec).expect("e");
    assert!(!same_set(&a[0], &e[0]));
}

#[test]
fn waits_report_what_they_wait_for() {
    let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for (pending, insync, ms, want) in [
        (
            ids(&["C1"]),
            ids(&[]),
            1234,
            "waiting for change C1 to be INSYNC (1.2 s)",
        ),
        (
            ids(&["C1", "C2"]),
            ids(&["C3"]),
            50,
            "waiting for changes C1, C2 to be INSYNC (0.1 s)",
        ),
        (ids(&[]), ids(&["C1"]), 1400, "change C1 is INSYNC (1.4 s)"),
        (
            ids(&[]),
            ids(&["C1", "C2"]),
            0,
            "changes C1, C2 are INSYNC (0.0 s)",
        ),
    ] {
        let p = WaitProgress {
            pending,
            insync,
            elapsed: Duration::from_millis(ms),
        };
        assert_eq!(p.to_string(), want);
    }
}

#[test]
fn plan_digests_change_with_the_plan_only() {
    let plan = ZonePlan {
        owner: "default/app".into(),
        domain: DomainName::parse("app.example.com").expect("domain"),
        parent: Some(ParentRef::Domain(
            DomainName::parse("example.com").expect("parent"),
        )),
        network: Network {
            elb_eips: vec!["192.0.2.1".into()],
            internal_elb_ips: vec![],
        },
        records: vec![RecordSpec {
            name: "@".into(),
            from_network: NetworkKind::Public,
            ttl: 60,
        }],
        acme_secret: None,
        region: "us-east-1".into(),
    };
    let digest = plan_digest(&plan);
    assert_eq!(digest, plan_digest(&plan.clone()));
    assert_eq!(digest.len(), 16);
    let mut other = plan.clone();
    other.network.elb_eips.push("192.0.2.2".into());
    let mut ttl = plan.clone();
    ttl.records[0].ttl = 61;
    let mut parent = plan.clone();
    parent.parent = Some(ParentRef::ZoneId("Z1".into()));
    for changed in [other, ttl, parent] {
        assert_ne!(plan_digest(&changed), digest, "{changed:?}");
    }
    let status = ZoneStatus {
        zone_id: Some("Z9".into()),
        name_servers: vec!["ns1.example.net".into()],
        conditions: vec![Condition {
            kind: "Ready",
            ok: true,
            reason: "all conditions hold".into(),
        }],
    };
    let record = status.to_record(&plan);
    assert_eq!(
        (
            record.owner.as_str(),
            record.domain.as_str(),
            record.zone_id.as_deref(),
            record.spec_digest.as_str()
        ),
        (
            "default/app",
            "app.example.com.",
            Some("Z9"),
            digest.as_str()
        )
    );
    assert_eq!(
        (
            record.conditions[0].kind.as_str(),
            record.conditions[0].status
        ),
        ("Ready", true)
    );
}
