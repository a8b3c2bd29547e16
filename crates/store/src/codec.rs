//! How the store encodes its values: small JSON documents, converted to and from model types
//! at this boundary (record values in presentation format, names absolute).

use model::record::{AliasTarget, Failover, RecordData, RecordSet, RecordType, RoutingPolicy, Ttl};
use model::zone::RecordKey;
use model::{DomainName, HostedZoneId};
use serde::{Deserialize, Serialize};

use crate::{ChangeInfo, StoreError};

/// A hosted zone's metadata as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneMeta {
    pub name: String,
    pub caller_reference: String,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub private: bool,
    /// Creation order, used to pick the served zone among zones of one name.
    pub seq: u64,
    pub created_at: u64,
}

/// A record set as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredRecordSet {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub multivalue: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<StoredAlias>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredAlias {
    pub hosted_zone_id: String,
    pub dns_name: String,
    pub evaluate_target_health: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredChange {
    zone_id: String,
    submitted_at: u64,
    generation: u64,
}

/// The key of a record set within its zone.
pub(crate) fn record_key(key: &RecordKey) -> String {
    format!(
        "{}\t{}\t{}",
        key.name,
        key.rtype.0,
        key.set_identifier.as_deref().unwrap_or("")
    )
}

pub(crate) fn encode_meta(meta: &ZoneMeta) -> Vec<u8> {
    serde_json::to_vec(meta).unwrap_or_default()
}

pub(crate) fn decode_meta(id: &str, bytes: &[u8]) -> Result<ZoneMeta, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        what: format!("zone {id}"),
        reason: e.to_string(),
    })
}

impl From<&RecordSet> for StoredRecordSet {
    fn from(set: &RecordSet) -> Self {
        let (weight, failover, multivalue) = match set.policy {
            RoutingPolicy::Simple => (None, None, false),
            RoutingPolicy::Weighted { weight } => (Some(weight), None, false),
            RoutingPolicy::Failover(Failover::Primary) => (None, Some("PRIMARY".into()), false),
            RoutingPolicy::Failover(Failover::Secondary) => (None, Some("SECONDARY".into()), false),
            RoutingPolicy::MultiValue => (None, None, true),
        };
        StoredRecordSet {
            name: set.name.to_string(),
            rtype: set.rtype.to_string(),
            ttl: set.ttl.seconds(),
            values: set.records.iter().map(ToString::to_string).collect(),
            set_identifier: set.set_identifier.clone(),
            weight,
            failover,
            multivalue,
            health_check_id: set.health_check_id.clone(),
            alias: set.alias.as_ref().map(|a| StoredAlias {
                hosted_zone_id: a.hosted_zone_id.clone(),
                dns_name: a.dns_name.to_string(),
                evaluate_target_health: a.evaluate_target_health,
            }),
        }
    }
}

impl TryFrom<StoredRecordSet> for RecordSet {
    type Error = String;
    fn try_from(s: StoredRecordSet) -> Result<Self, String> {
        let name = DomainName::parse(&s.name).map_err(|e| e.to_string())?;
        let rtype: RecordType = s
            .rtype
            .parse()
            .map_err(|e: model::record::RecordError| e.to_string())?;
        let records = s
            .values
            .iter()
            .map(|v| RecordData::parse(rtype, v, None).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        let policy = match (s.weight, s.failover.as_deref(), s.multivalue) {
            (None, None, false) => RoutingPolicy::Simple,
            (Some(weight), None, false) => RoutingPolicy::Weighted { weight },
            (None, Some("PRIMARY"), false) => RoutingPolicy::Failover(Failover::Primary),
            (None, Some("SECONDARY"), false) => RoutingPolicy::Failover(Failover::Secondary),
            (None, None, true) => RoutingPolicy::MultiValue,
            _ => return Err("conflicting routing policy fields".to_string()),
        };
        let alias = match s.alias {
            Some(a) => Some(AliasTarget {
                hosted_zone_id: HostedZoneId::parse(&a.hosted_zone_id)
                    .map_err(|e| e.to_string())?
                    .to_string(),
                dns_name: DomainName::parse(&a.dns_name).map_err(|e| e.to_string())?,
                evaluate_target_health: a.evaluate_target_health,
            }),
            None => None,
        };
        let set = RecordSet {
            name,
            rtype,
            ttl: Ttl::new(u64::from(s.ttl)).map_err(|e| e.to_string())?,
            records,
            set_identifier: s.set_identifier,
            policy,
            health_check_id: s.health_check_id,
            alias,
        };
        set.check().map_err(|e| e.to_string())?;
        Ok(set)
    }
}

pub(crate) fn encode_set(set: &RecordSet) -> Vec<u8> {
    serde_json::to_vec(&StoredRecordSet::from(set)).unwrap_or_default()
}

pub(crate) fn decode_set(key: &str, bytes: &[u8]) -> Result<RecordSet, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        what: format!("record set {key:?}"),
        reason,
    };
    let stored: StoredRecordSet =
        serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    RecordSet::try_from(stored).map_err(corrupt)
}

pub(crate) fn encode_change(change: &ChangeInfo) -> Vec<u8> {
    serde_json::to_vec(&StoredChange {
        zone_id: change.zone_id.to_string(),
        submitted_at: change.submitted_at,
        generation: change.generation,
    })
    .unwrap_or_default()
}

pub(crate) fn decode_change(id: &str, bytes: &[u8]) -> Result<ChangeInfo, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        what: format!("change {id}"),
        reason,
    };
    let s: StoredChange = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    Ok(ChangeInfo {
        id: id.to_string(),
        zone_id: HostedZoneId::parse(&s.zone_id).map_err(|e| corrupt(e.to_string()))?,
        submitted_at: s.submitted_at,
        generation: s.generation,
    })
}
