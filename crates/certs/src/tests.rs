use super::*;

const DAY: u64 = 86_400;
const NOW: i64 = 1_800_000_000;

fn spec(names: &[&str]) -> CertificateSpec {
    CertificateSpec {
        common_name: names.first().map(|s| s.to_string()),
        dns_names: names.iter().map(|s| s.to_string()).collect(),
        ip_addresses: vec![],
        uris: vec![],
        duration: Duration::from_secs(90 * DAY),
        renew_before: None,
        renew_before_percentage: None,
        key: KeyAlgorithm::Ecdsa(256),
        usages: vec![],
        is_ca: false,
    }
}

#[test]
fn renewal_at_two_thirds_or_as_asked() {
    let s = spec(&["a.test"]);
    let (nb, na) = (0, 90 * DAY as i64);
    assert_eq!(renewal_time(&s, nb, na), 60 * DAY as i64);
    let mut s2 = s.clone();
    s2.renew_before = Some(Duration::from_secs(10 * DAY));
    assert_eq!(renewal_time(&s2, nb, na), 80 * DAY as i64);
    let mut s3 = s.clone();
    s3.renew_before_percentage = Some(50);
    assert_eq!(renewal_time(&s3, nb, na), 45 * DAY as i64);
}

#[test]
fn invalid_specs_are_refused() {
    let mut s = spec(&[]);
    assert!(s.validate().is_err(), "no names");
    s = spec(&["bad name.test"]);
    assert!(s.validate().is_err());
    s = spec(&["a.test"]);
    s.renew_before = Some(Duration::from_secs(91 * DAY));
    assert!(s.validate().is_err());
    s = spec(&["a.test"]);
    s.key = KeyAlgorithm::Rsa(1024);
    assert!(s.validate().is_err());
    s = spec(&["a.test"]);
    s.usages = vec!["world domination".into()];
    assert!(s.validate().is_err());
    s = spec(&["*.a.test", "a.test"]);
    assert!(s.validate().is_ok());
}

#[test]
fn a_ca_issues_leaves_with_their_names_and_lifetime() {
    let mut root = spec(&[]);
    root.common_name = Some("Edgeplane Root".into());
    root.is_ca = true;
    root.duration = Duration::from_secs(3650 * DAY);
    let ca = issue(&root, &Signer::SelfSigned, NOW, None).expect("root");
    assert_eq!(ca.chain_pem, ca.ca_pem);
    let mut leaf = spec(&["app.test", "*.app.test"]);
    leaf.ip_addresses = vec!["10.0.0.1".parse().expect("literal")];
    leaf.usages = vec![
        "digital signature".into(),
        "key encipherment".into(),
        "server auth".into(),
    ];
    let issued = issue(
        &leaf,
        &Signer::Ca {
            cert_pem: &ca.chain_pem,
            key_pem: &ca.key_pem,
        },
        NOW,
        None,
    )
    .expect("leaf");
    // The chain is the leaf alone (the root is self-signed) and ca.crt is the root.
    assert_eq!(issued.chain_pem.matches("BEGIN CERTIFICATE").count(), 1);
    assert_eq!(issued.ca_pem.trim(), ca.chain_pem.trim());
    let (nb, na, names) = inspect(&issued.chain_pem).expect("parse");
    assert_eq!((nb, na), (NOW - 60, NOW + 90 * DAY as i64));
    assert_eq!(names, ["app.test", "*.app.test"]);
    // Keeping the key (rotationPolicy: Never) keeps it.
    let again = issue(
        &leaf,
        &Signer::Ca {
            cert_pem: &ca.chain_pem,
            key_pem: &ca.key_pem,
        },
        NOW + 10,
        Some(&issued.key_pem),
    )
    .expect("renewed");
    assert_eq!(*again.key_pem, *issued.key_pem);
    assert_ne!(again.serial_hex, issued.serial_hex);
}

#[test]
fn every_key_algorithm() {
    for key in [
        KeyAlgorithm::Ecdsa(256),
        KeyAlgorithm::Ecdsa(384),
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::Rsa(2048),
    ] {
        let mut s = spec(&["k.test"]);
        s.key = key;
        let issued =
            issue(&s, &Signer::SelfSigned, NOW, None).unwrap_or_else(|e| panic!("{key:?}: {e}"));
        assert!(issued.key_pem.contains("PRIVATE KEY"), "{key:?}");
    }
}

#[test]
fn a_broken_issuer_is_an_error() {
    let s = spec(&["a.test"]);
    let r = issue(
        &s,
        &Signer::Ca {
            cert_pem: "nope",
            key_pem: "nope",
        },
        NOW,
        None,
    );
    assert!(matches!(r, Err(CertError::Issuer(_))), "{r:?}");
}
