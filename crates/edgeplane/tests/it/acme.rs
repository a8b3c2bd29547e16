//! A real certificate through edgeplane's Route53 API and DNS: certbot with the
//! certbot-dns-route53 plugin, against Pebble (Let's Encrypt's test CA) resolving through
//! edgeplane's DNS server, using a scoped identity that may only touch `_acme-challenge` TXT
//! records of its zone.

use std::process::Command;

use crate::harness::{python, require, Edgeplane};

#[test]
fn certbot_gets_a_certificate_from_pebble_through_a_scoped_identity() {
    require("pebble");
    require("openssl");
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    let server = Edgeplane::start(&dir.path().join("data"), &[]);

    // The zone and the scoped identity, made by the admin through the API.
    let setup = format!(
        r#"import configparser, json, boto3
cp = configparser.ConfigParser(); cp.read('{creds}'); c = cp['edgeplane-admin']
kw = dict(endpoint_url='http://{api}', region_name='us-east-1', aws_access_key_id=c['aws_access_key_id'], aws_secret_access_key=c['aws_secret_access_key'])
r53, iam = boto3.client('route53', **kw), boto3.client('iam', **kw)
zone = r53.create_hosted_zone(Name='example.com', CallerReference='acme')['HostedZone']['Id'].split('/')[-1]
iam.create_user(UserName='certbot')
iam.put_user_policy(UserName='certbot', PolicyName='dns01', PolicyDocument=json.dumps({{'Version': '2012-10-17', 'Statement': [
  {{'Effect': 'Allow', 'Action': 'route53:ChangeResourceRecordSets', 'Resource': 'arn:aws:route53:::hostedzone/' + zone,
   'Condition': {{'ForAllValues:StringLike': {{'route53:ChangeResourceRecordSetsNormalizedRecordNames': ['_acme-challenge.*']}},
                 'ForAllValues:StringEquals': {{'route53:ChangeResourceRecordSetsRecordTypes': ['TXT']}}}}}},
  {{'Effect': 'Allow', 'Action': ['route53:ListHostedZones', 'route53:ListHostedZonesByName'], 'Resource': '*'}},
  {{'Effect': 'Allow', 'Action': 'route53:GetChange', 'Resource': 'arn:aws:route53:::change/*'}}]}}))
k = iam.create_access_key(UserName='certbot')['AccessKey']
other = r53.create_hosted_zone(Name='other.com', CallerReference='acme-other')['HostedZone']['Id'].split('/')[-1]
print(k['AccessKeyId'], k['SecretAccessKey'], other)
"#,
        creds = dir.path().join("data/admin-credentials").display(),
        api = server.api
    );
    let out = Command::new(python())
        .args(["-c", &setup])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "setup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut parts = keys.split(' ');
    let (key_id, secret, other_zone) = (
        parts.next().expect("key id"),
        parts.next().expect("secret"),
        parts.next().expect("other zone"),
    );

    // Pebble, with a TLS certificate for its own listener, resolving through edgeplane.
    let pebble = crate::harness::Pebble::start(
        &work.join("pebble"),
        server.addr(),
        crate::harness::free_port(),
        None,
        &[("PEBBLE_VA_NOSLEEP", "1"), ("PEBBLE_WFE_NONCEREJECT", "0")],
    );
    let cert = pebble.listener_cert_path.clone();

    let certbot = python().with_file_name("certbot");
    let out = Command::new(&certbot)
        .args([
            "certonly",
            "--non-interactive",
            "--agree-tos",
            "--register-unsafely-without-email",
            "--dns-route53",
        ])
        .args([
            "-d",
            "www.example.com",
            "-d",
            "example.com",
            "--server",
            &pebble.directory,
        ])
        .arg("--config-dir")
        .arg(work.join("config"))
        .arg("--work-dir")
        .arg(work.join("work"))
        .arg("--logs-dir")
        .arg(work.join("logs"))
        .env("REQUESTS_CA_BUNDLE", &cert)
        .env("AWS_ACCESS_KEY_ID", key_id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_ENDPOINT_URL", format!("http://{}", server.api))
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .expect("certbot");
    let log = std::fs::read_to_string(work.join("logs/letsencrypt.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "certbot failed:\n{}\n{}\n--- log tail ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        log.lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let chain = std::fs::read_to_string(work.join("config/live/www.example.com/fullchain.pem"))
        .expect("certificate issued");
    assert!(chain.contains("BEGIN CERTIFICATE"));
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(work.join("config/live/www.example.com/cert.pem"))
        .output()
        .expect("openssl x509");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("DNS:www.example.com") && text.contains("DNS:example.com"),
        "{text}"
    );
    // The same key may not change anything else: an A record, or another zone.
    let refusal = format!(
        r#"import boto3, botocore
r = boto3.client('route53', endpoint_url='http://{api}', region_name='us-east-1', aws_access_key_id='{key_id}', aws_secret_access_key='{secret}', config=botocore.config.Config(retries={{'max_attempts': 1}}))
admin_zone = r.list_hosted_zones_by_name(DNSName='example.com')['HostedZones'][0]['Id']
def code(zone, name, rtype, value):
    try:
        r.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={{'Changes': [{{'Action': 'UPSERT', 'ResourceRecordSet': {{'Name': name, 'Type': rtype, 'TTL': 60, 'ResourceRecords': [{{'Value': value}}]}}}}]}})
        return 'ok'
    except botocore.exceptions.ClientError as e:
        return e.response['Error']['Code']
assert code(admin_zone, 'www.example.com', 'A', '192.0.2.66') == 'AccessDenied'
assert code('{other}', '_acme-challenge.other.com', 'TXT', '"x"') == 'AccessDenied'
"#,
        api = server.api,
        other = other_zone,
    );
    let out = Command::new(python())
        .args(["-c", &refusal])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "scoped key not confined: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // certbot cleaned up its challenge records.
    let d = crate::harness::kdig(server.addr(), &["_acme-challenge.www.example.com", "TXT"]);
    assert!(d.answer.is_empty(), "challenge left behind: {}", d.raw);
}
