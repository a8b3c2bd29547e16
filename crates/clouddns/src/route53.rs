//! The Route53 backend: the official AWS SDK, with the standard credential chain (environment,
//! profile, web identity / IRSA, container, IMDS) or explicit keys, any endpoint, and the SDK's
//! standard retry mode (exponential backoff with jitter on Throttling and
//! PriorRequestNotComplete).

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use aws_sdk_route53::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_route53::types as r53;
use model::record::{AliasTarget, Failover, RecordData, RecordSet, RecordType, RoutingPolicy, Ttl};
use model::zone::{Change, ChangeAction};
use model::DomainName;

use crate::{AccessKey, ChangeStatus, DnsProvider, HostedZoneInfo, ProviderError};

/// Route53's limits on one change batch (UPSERT counts twice).
pub const MAX_BATCH_RECORDS: usize = 1000;
pub const MAX_BATCH_CHARS: usize = 32_000;

/// How to reach a Route53-compatible service.
#[derive(Debug, Clone, Default)]
pub struct Route53Options {
    /// `None` for AWS itself.
    pub endpoint: Option<String>,
    /// Defaults to us-east-1 (Route53 is global).
    pub region: Option<String>,
    /// Explicit keys; `None` uses the standard credential chain.
    pub credentials: Option<(String, String)>,
    /// Attempts per call, including the first (standard retry mode).
    pub max_attempts: Option<u32>,
}

/// Route53 and IAM clients sharing one configuration.
#[derive(Clone, Debug)]
pub struct Route53Provider {
    route53: aws_sdk_route53::Client,
    iam: aws_sdk_iam::Client,
}

impl Route53Provider {
    pub async fn new(options: Route53Options) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(
                options.region.unwrap_or_else(|| "us-east-1".to_string()),
            ))
            .retry_config(
                RetryConfig::standard().with_max_attempts(options.max_attempts.unwrap_or(8)),
            );
        if let Some(url) = options.endpoint {
            loader = loader.endpoint_url(url);
        }
        if let Some((id, secret)) = options.credentials {
            loader = loader.credentials_provider(aws_sdk_route53::config::Credentials::new(
                id,
                secret,
                None,
                None,
                "edgeplane",
            ));
        }
        let config = loader.load().await;
        Route53Provider {
            route53: aws_sdk_route53::Client::new(&config),
            iam: aws_sdk_iam::Client::new(&config),
        }
    }

    /// The underlying Route53 client.
    pub fn route53(&self) -> &aws_sdk_route53::Client {
        &self.route53
    }

    /// The IAM client of the same account and endpoint.
    pub fn iam(&self) -> &aws_sdk_iam::Client {
        &self.iam
    }

    /// The simple record set of `name` and `rtype`, if there is one, read with a listing
    /// that starts there (one call, whatever the size of the zone).
    pub async fn record_set(
        &self,
        zone_id: &str,
        name: &DomainName,
        rtype: RecordType,
    ) -> Result<Option<RecordSet>, ProviderError> {
        let t = r53::RrType::from(rtype.as_str());
        let page = self
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(zone_id)
            .start_record_name(name.to_route53_string())
            .start_record_type(t)
            .max_items(1)
            .send()
            .await
            .map_err(classify)?;
        for s in page.resource_record_sets() {
            let set = from_sdk(s).map_err(ProviderError::Unavailable)?;
            if set.name == *name && set.rtype == rtype && set.set_identifier.is_none() {
                return Ok(Some(set));
            }
        }
        Ok(None)
    }
}

fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    e: SdkError<E>,
) -> ProviderError {
    let code = e.code().unwrap_or("").to_string();
    let message = e
        .message()
        .map(str::to_string)
        .unwrap_or_else(|| format!("{e}"));
    match code.as_str() {
        "" => ProviderError::Unavailable(format!(
            "{}",
            aws_sdk_route53::error::DisplayErrorContext(&e)
        )),
        "NoSuchHostedZone" | "NoSuchChange" | "NoSuchEntity" => ProviderError::NotFound(message),
        "HostedZoneAlreadyExists" | "EntityAlreadyExists" => ProviderError::AlreadyExists(message),
        "AccessDenied" | "InvalidClientTokenId" | "SignatureDoesNotMatch" => {
            ProviderError::AccessDenied(message)
        }
        "Throttling" | "PriorRequestNotComplete" | "ServiceUnavailable" | "InternalFailure" => {
            ProviderError::Unavailable(message)
        }
        _ => ProviderError::Rejected { code, message },
    }
}

fn bare(id: &str) -> String {
    id.rsplit('/').next().unwrap_or(id).to_string()
}

impl DnsProvider for Route53Provider {
    async fn create_zone(
        &self,
        name: &DomainName,
        caller_reference: &str,
        comment: Option<&str>,
    ) -> Result<HostedZoneInfo, ProviderError> {
        let mut req = self
            .route53
            .create_hosted_zone()
            .name(name.to_route53_string())
            .caller_reference(caller_reference);
        if let Some(c) = comment {
            req = req.hosted_zone_config(r53::HostedZoneConfig::builder().comment(c).build());
        }
        let out = req.send().await.map_err(classify)?;
        let zone = out
            .hosted_zone()
            .ok_or_else(|| ProviderError::Unavailable("no HostedZone in the reply".into()))?;
        Ok(HostedZoneInfo {
            id: bare(zone.id()),
            name: DomainName::parse_route53(zone.name())
                .map_err(|e| ProviderError::Unavailable(e.to_string()))?,
            caller_reference: zone.caller_reference().to_string(),
            name_servers: out
                .delegation_set()
                .map(|d| d.name_servers().to_vec())
                .unwrap_or_default(),
        })
    }

    async fn find_zones(&self, name: &DomainName) -> Result<Vec<HostedZoneInfo>, ProviderError> {
        let out = self
            .route53
            .list_hosted_zones_by_name()
            .dns_name(name.to_route53_string())
            .max_items(100)
            .send()
            .await
            .map_err(classify)?;
        let mut found = Vec::new();
        for z in out.hosted_zones() {
            let zname = DomainName::parse_route53(z.name())
                .map_err(|e| ProviderError::Unavailable(e.to_string()))?;
            if &zname != name {
                break;
            }
            found.push(HostedZoneInfo {
                id: bare(z.id()),
                name: zname,
                caller_reference: z.caller_reference().to_string(),
                name_servers: Vec::new(),
            });
        }
        Ok(found)
    }

    async fn delete_zone(&self, id: &str) -> Result<(), ProviderError> {
        self.route53
            .delete_hosted_zone()
            .id(id)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn list_record_sets(&self, zone_id: &str) -> Result<Vec<RecordSet>, ProviderError> {
        let mut out = Vec::new();
        let mut start: Option<(String, r53::RrType, Option<String>)> = None;
        loop {
            let mut req = self
                .route53
                .list_resource_record_sets()
                .hosted_zone_id(zone_id)
                .max_items(300);
            if let Some((name, rtype, ident)) = start.take() {
                req = req
                    .start_record_name(name)
                    .start_record_type(rtype)
                    .set_start_record_identifier(ident);
            }
            let page = req.send().await.map_err(classify)?;
            for s in page.resource_record_sets() {
                // One record set the service returns malformed harms only itself.
                match from_sdk(s) {
                    Ok(set) => out.push(set),
                    Err(e) => tracing::warn!(
                        zone = zone_id,
                        name = s.name(),
                        error = e,
                        "skipping a record set that does not parse"
                    ),
                }
            }
            match (
                page.is_truncated(),
                page.next_record_name(),
                page.next_record_type(),
            ) {
                (true, Some(n), Some(t)) => {
                    start = Some((
                        n.to_string(),
                        t.clone(),
                        page.next_record_identifier().map(str::to_string),
                    ))
                }
                _ => return Ok(out),
            }
        }
    }

    async fn change_record_sets(
        &self,
        zone_id: &str,
        changes: &[Change],
    ) -> Result<Vec<String>, ProviderError> {
        let mut ids = Vec::new();
        for batch in split_batches(changes) {
            let sdk: Vec<r53::Change> = batch
                .iter()
                .map(to_sdk_change)
                .collect::<Result<_, _>>()
                .map_err(|e| ProviderError::Rejected {
                code: "InvalidInput".into(),
                message: e,
            })?;
            let batch = r53::ChangeBatch::builder()
                .set_changes(Some(sdk))
                .build()
                .map_err(|e| ProviderError::Rejected {
                    code: "InvalidInput".into(),
                    message: e.to_string(),
                })?;
            let out = self
                .route53
                .change_resource_record_sets()
                .hosted_zone_id(zone_id)
                .change_batch(batch)
                .send()
                .await
                .map_err(classify)?;
            if let Some(info) = out.change_info() {
                ids.push(bare(info.id()));
            }
        }
        Ok(ids)
    }

    async fn change_status(&self, change_id: &str) -> Result<ChangeStatus, ProviderError> {
        let out = self
            .route53
            .get_change()
            .id(change_id)
            .send()
            .await
            .map_err(classify)?;
        Ok(match out.change_info().map(|c| c.status()) {
            Some(r53::ChangeStatus::Insync) => ChangeStatus::InSync,
            _ => ChangeStatus::Pending,
        })
    }

    async fn user_exists(&self, user: &str) -> Result<bool, ProviderError> {
        match self.iam.get_user().user_name(user).send().await {
            Ok(_) => Ok(true),
            Err(e) => match classify(e) {
                ProviderError::NotFound(_) => Ok(false),
                other => Err(other),
            },
        }
    }

    async fn get_user_policy(
        &self,
        user: &str,
        policy: &str,
    ) -> Result<Option<String>, ProviderError> {
        match self
            .iam
            .get_user_policy()
            .user_name(user)
            .policy_name(policy)
            .send()
            .await
        {
            Ok(out) => Ok(Some(policy_text(out.policy_document()))),
            Err(e) => match classify(e) {
                ProviderError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn ensure_user(&self, user: &str) -> Result<(), ProviderError> {
        match self
            .iam
            .create_user()
            .user_name(user)
            .send()
            .await
            .map_err(classify)
        {
            Ok(_) | Err(ProviderError::AlreadyExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn put_user_policy(
        &self,
        user: &str,
        policy: &str,
        document: &str,
    ) -> Result<(), ProviderError> {
        self.iam
            .put_user_policy()
            .user_name(user)
            .policy_name(policy)
            .policy_document(document)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn create_access_key(&self, user: &str) -> Result<AccessKey, ProviderError> {
        let out = self
            .iam
            .create_access_key()
            .user_name(user)
            .send()
            .await
            .map_err(classify)?;
        let key = out
            .access_key()
            .ok_or_else(|| ProviderError::Unavailable("no AccessKey in the reply".into()))?;
        Ok(AccessKey {
            id: key.access_key_id().to_string(),
            secret: key.secret_access_key().to_string(),
        })
    }

    async fn list_access_keys(&self, user: &str) -> Result<Vec<String>, ProviderError> {
        let out = self
            .iam
            .list_access_keys()
            .user_name(user)
            .send()
            .await
            .map_err(classify)?;
        Ok(out
            .access_key_metadata()
            .iter()
            .filter_map(|k| k.access_key_id().map(str::to_string))
            .collect())
    }

    async fn delete_access_key(
        &self,
        user: &str,
        access_key_id: &str,
    ) -> Result<(), ProviderError> {
        self.iam
            .delete_access_key()
            .user_name(user)
            .access_key_id(access_key_id)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn delete_user_policy(&self, user: &str, policy: &str) -> Result<(), ProviderError> {
        self.iam
            .delete_user_policy()
            .user_name(user)
            .policy_name(policy)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn delete_user(&self, user: &str) -> Result<(), ProviderError> {
        self.iam
            .delete_user()
            .user_name(user)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }
}

/// A policy document as GetUserPolicy returns it: IAM URL-encodes it (RFC 3986), some
/// compatible services send it as is.
fn policy_text(doc: &str) -> String {
    if doc.trim_start().starts_with('{') {
        return doc.to_string();
    }
    let mut out = Vec::with_capacity(doc.len());
    let bytes = doc.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| doc.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits changes into batches within Route53's limits, keeping their order.
pub fn split_batches(changes: &[Change]) -> Vec<&[Change]> {
    let mut out = Vec::new();
    let mut start = 0;
    let (mut records, mut chars) = (0usize, 0usize);
    for (i, c) in changes.iter().enumerate() {
        let weight = if c.action == ChangeAction::Upsert {
            2
        } else {
            1
        };
        let r = c.set.records.len().max(1) * weight;
        let ch: usize = c
            .set
            .records
            .iter()
            .map(|d| d.to_string().len())
            .sum::<usize>()
            * weight;
        if i > start && (records + r > MAX_BATCH_RECORDS || chars + ch > MAX_BATCH_CHARS) {
            out.push(&changes[start..i]);
            start = i;
            records = 0;
            chars = 0;
        }
        records += r;
        chars += ch;
    }
    if start < changes.len() {
        out.push(&changes[start..]);
    }
    out
}

fn to_sdk_change(c: &Change) -> Result<r53::Change, String> {
    let action = match c.action {
        ChangeAction::Create => r53::ChangeAction::Create,
        ChangeAction::Delete => r53::ChangeAction::Delete,
        ChangeAction::Upsert => r53::ChangeAction::Upsert,
    };
    r53::Change::builder()
        .action(action)
        .resource_record_set(to_sdk(&c.set)?)
        .build()
        .map_err(|e| e.to_string())
}

/// A model record set as the SDK sends it.
pub fn to_sdk(set: &RecordSet) -> Result<r53::ResourceRecordSet, String> {
    let mut b = r53::ResourceRecordSet::builder()
        .name(set.name.to_route53_string())
        .r#type(r53::RrType::from(set.rtype.as_str()))
        .set_set_identifier(set.set_identifier.clone())
        .set_health_check_id(set.health_check_id.clone());
    b = match set.policy {
        RoutingPolicy::Simple => b,
        RoutingPolicy::Weighted { weight } => b.weight(i64::from(weight)),
        RoutingPolicy::Failover(Failover::Primary) => {
            b.failover(r53::ResourceRecordSetFailover::Primary)
        }
        RoutingPolicy::Failover(Failover::Secondary) => {
            b.failover(r53::ResourceRecordSetFailover::Secondary)
        }
        RoutingPolicy::MultiValue => b.multi_value_answer(true),
    };
    b = match &set.alias {
        Some(a) => b.alias_target(
            r53::AliasTarget::builder()
                .hosted_zone_id(&a.hosted_zone_id)
                .dns_name(a.dns_name.to_route53_string())
                .evaluate_target_health(a.evaluate_target_health)
                .build()
                .map_err(|e| e.to_string())?,
        ),
        None => {
            let records = set
                .records
                .iter()
                .map(|d| {
                    r53::ResourceRecord::builder()
                        .value(d.to_string())
                        .build()
                        .map_err(|e| e.to_string())
                })
                .collect::<Result<Vec<_>, _>>()?;
            b.ttl(i64::from(set.ttl.seconds()))
                .set_resource_records(Some(records))
        }
    };
    b.build().map_err(|e| e.to_string())
}

/// An SDK record set as a model record set.
pub fn from_sdk(s: &r53::ResourceRecordSet) -> Result<RecordSet, String> {
    let name = DomainName::parse_route53(s.name()).map_err(|e| e.to_string())?;
    let rtype: RecordType = s
        .r#type()
        .as_str()
        .parse()
        .map_err(|e: model::record::RecordError| e.to_string())?;
    let records = s
        .resource_records()
        .iter()
        .map(|r| RecordData::parse(rtype, r.value(), None).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let policy = if let Some(w) = s.weight() {
        RoutingPolicy::Weighted {
            weight: u8::try_from(w).map_err(|_| format!("weight {w} out of range"))?,
        }
    } else if let Some(f) = s.failover() {
        RoutingPolicy::Failover(if *f == r53::ResourceRecordSetFailover::Primary {
            Failover::Primary
        } else {
            Failover::Secondary
        })
    } else if s.multi_value_answer() == Some(true) {
        RoutingPolicy::MultiValue
    } else {
        RoutingPolicy::Simple
    };
    let alias = match s.alias_target() {
        Some(a) => Some(AliasTarget {
            hosted_zone_id: a.hosted_zone_id().to_string(),
            dns_name: DomainName::parse_route53(a.dns_name()).map_err(|e| e.to_string())?,
            evaluate_target_health: a.evaluate_target_health(),
        }),
        None => None,
    };
    let ttl =
        Ttl::new(u64::try_from(s.ttl().unwrap_or(0)).map_err(|_| "negative TTL".to_string())?)
            .map_err(|e| e.to_string())?;
    Ok(RecordSet {
        name,
        rtype,
        ttl,
        records,
        set_identifier: s.set_identifier().map(str::to_string),
        policy,
        health_check_id: s.health_check_id().map(str::to_string),
        alias,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a_change(i: usize, action: ChangeAction) -> Change {
        Change {
            action,
            set: RecordSet::new(
                DomainName::parse(&format!("h{i}.example.com")).expect("name"),
                Ttl::new(60).expect("ttl"),
                RecordType::A,
                vec![RecordData::A(std::net::Ipv4Addr::new(
                    10,
                    0,
                    (i / 256) as u8,
                    (i % 256) as u8,
                ))],
            )
            .expect("set"),
        }
    }

    #[test]
    fn batches_respect_route53_limits() {
        let creates: Vec<Change> = (0..2500)
            .map(|i| a_change(i, ChangeAction::Create))
            .collect();
        let sizes: Vec<usize> = split_batches(&creates).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        let upserts: Vec<Change> = (0..1200)
            .map(|i| a_change(i, ChangeAction::Upsert))
            .collect();
        let sizes: Vec<usize> = split_batches(&upserts).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [500, 500, 200], "UPSERT counts twice");
        assert!(split_batches(&[]).is_empty());
    }

    #[test]
    fn policy_documents_are_decoded_when_url_encoded() {
        for (given, want) in [
            (r#"{"Version":"2012-10-17"}"#, r#"{"Version":"2012-10-17"}"#),
            (
                "%7B%22Version%22%3A%222012-10-17%22%7D",
                r#"{"Version":"2012-10-17"}"#,
            ),
            ("%7B%22a%22%3A%22b%20c%22%7D", r#"{"a":"b c"}"#),
            ("%7B%2", "{%2"),
            ("", ""),
        ] {
            assert_eq!(policy_text(given), want, "{given}");
        }
    }

    #[test]
    fn record_sets_convert_both_ways() {
        let set = RecordSet::new(
            DomainName::parse("*.example.com").expect("name"),
            Ttl::new(300).expect("ttl"),
            RecordType::MX,
            vec![RecordData::parse(RecordType::MX, "10 mail.example.com.", None).expect("mx")],
        )
        .expect("set");
        let sdk = to_sdk(&set).expect("to sdk");
        assert_eq!(sdk.name(), "\\052.example.com.");
        assert_eq!(from_sdk(&sdk).expect("back"), set);
    }
}
