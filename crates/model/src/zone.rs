//! Hosted zones, their identifiers, and atomic change batches with Route53's rules.

use std::collections::BTreeMap;
use std::fmt;

use crate::name::DomainName;
use crate::record::{RecordData, RecordError, RecordSet, RecordType, RoutingPolicy, Soa, Ttl};

/// A hosted zone identifier as Route53 writes them: `Z` and 1 to 31 uppercase letters or digits.
/// Input may carry the `/hostedzone/` prefix the SDKs sometimes send.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostedZoneId(String);

/// Why a hosted zone ID was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid hosted zone ID {0:?}")]
pub struct BadZoneId(pub String);

impl HostedZoneId {
    pub fn parse(text: &str) -> Result<Self, BadZoneId> {
        let bare = text.strip_prefix("/hostedzone/").unwrap_or(text);
        let ok = bare.len() >= 2
            && bare.len() <= 32
            && bare.starts_with('Z')
            && bare
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if ok {
            Ok(HostedZoneId(bare.to_string()))
        } else {
            Err(BadZoneId(text.to_string()))
        }
    }

    /// A new identifier from 64 random bits (the caller supplies the randomness).
    pub fn from_random(bits: u64) -> Self {
        const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let mut s = String::from("Z");
        let mut v = bits;
        for _ in 0..13 {
            s.push(char::from(DIGITS[(v % 36) as usize]));
            v /= 36;
        }
        HostedZoneId(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostedZoneId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifies a record set within a zone; orders by name (canonical order), type code, then
/// set identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey {
    pub name: DomainName,
    pub rtype: RecordTypeOrd,
    pub set_identifier: Option<String>,
}

/// A record type ordered by its wire code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordTypeOrd(pub RecordType);

impl Ord for RecordTypeOrd {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.code().cmp(&other.0.code())
    }
}

impl PartialOrd for RecordTypeOrd {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl RecordKey {
    pub fn of(set: &RecordSet) -> Self {
        RecordKey {
            name: set.name.clone(),
            rtype: RecordTypeOrd(set.rtype),
            set_identifier: set.set_identifier.clone(),
        }
    }
}

/// SOA timers of a new zone (Route53's defaults).
pub const DEFAULT_SOA_TTL: u32 = 900;
pub const DEFAULT_NS_TTL: u32 = 172_800;

/// A hosted zone: its identity and every record set in it, apex SOA and NS included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub id: HostedZoneId,
    pub name: DomainName,
    pub caller_reference: String,
    pub comment: Option<String>,
    pub private: bool,
    pub records: BTreeMap<RecordKey, RecordSet>,
}

/// What a change does to a record set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeAction {
    Create,
    Delete,
    Upsert,
}

impl fmt::Display for ChangeAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChangeAction::Create => "CREATE",
            ChangeAction::Delete => "DELETE",
            ChangeAction::Upsert => "UPSERT",
        })
    }
}

/// One change of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub action: ChangeAction,
    pub set: RecordSet,
}

/// Why a change batch was refused; messages follow Route53's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("RRSet with DNS name {name} is not permitted in zone {zone}")]
    NotInZone { name: DomainName, zone: DomainName },
    #[error("Tried to create resource record set [name='{name}', type='{rtype}'{}] but it already exists", set_id_suffix(.set_identifier))]
    AlreadyExists {
        name: DomainName,
        rtype: RecordType,
        set_identifier: Option<String>,
    },
    #[error("Tried to delete resource record set [name='{name}', type='{rtype}'{}] but it was not found", set_id_suffix(.set_identifier))]
    NotFound {
        name: DomainName,
        rtype: RecordType,
        set_identifier: Option<String>,
    },
    #[error("Tried to delete resource record set [name='{name}', type='{rtype}'{}] but the values provided do not match the current values", set_id_suffix(.set_identifier))]
    ValuesMismatch {
        name: DomainName,
        rtype: RecordType,
        set_identifier: Option<String>,
    },
    #[error("RRSet of type CNAME with DNS name {name} is not permitted as it conflicts with other records with the same DNS name in zone {zone}")]
    CnameConflict { name: DomainName, zone: DomainName },
    #[error("RRSet of type {rtype} with DNS name {name} is not permitted because a conflicting RRSet of type CNAME with the same DNS name already exists in zone {zone}")]
    ConflictsWithCname {
        name: DomainName,
        rtype: RecordType,
        zone: DomainName,
    },
    #[error("A HostedZone must contain exactly one SOA record and at least one NS record at its apex; {action} of the apex {rtype} is not allowed")]
    ApexProtected {
        action: ChangeAction,
        rtype: RecordType,
    },
    #[error("RRSet of type SOA with DNS name {name} is not permitted: SOA is only allowed at the zone apex")]
    SoaNotAtApex { name: DomainName },
    #[error("RRSet with DNS name {name}, type {rtype} cannot mix a simple record set with record sets that have a routing policy")]
    PolicyConflict { name: DomainName, rtype: RecordType },
    #[error(transparent)]
    Invalid(#[from] RecordError),
}

fn set_id_suffix(id: &Option<String>) -> String {
    match id {
        Some(id) => format!(", set-identifier='{id}'"),
        None => String::new(),
    }
}

impl Zone {
    /// A new zone with its SOA (serial 1, Route53's timers) and apex NS set.
    pub fn new(
        id: HostedZoneId,
        name: DomainName,
        caller_reference: String,
        name_servers: &[DomainName],
    ) -> Result<Self, RecordError> {
        let mname = name_servers
            .first()
            .cloned()
            .ok_or_else(|| RecordError::EmptySet {
                name: name.clone(),
                rtype: RecordType::NS,
            })?;
        let rname = name
            .prepend_label(b"hostmaster")
            .unwrap_or_else(|| name.clone());
        let soa = RecordSet::new(
            name.clone(),
            Ttl::new(u64::from(DEFAULT_SOA_TTL))?,
            RecordType::SOA,
            vec![RecordData::Soa(Soa {
                mname,
                rname,
                serial: 1,
                refresh: 7200,
                retry: 900,
                expire: 1_209_600,
                minimum: 86_400,
            })],
        )?;
        let ns = RecordSet::new(
            name.clone(),
            Ttl::new(u64::from(DEFAULT_NS_TTL))?,
            RecordType::NS,
            name_servers.iter().cloned().map(RecordData::Ns).collect(),
        )?;
        let mut records = BTreeMap::new();
        records.insert(RecordKey::of(&soa), soa);
        records.insert(RecordKey::of(&ns), ns);
        Ok(Zone {
            id,
            name,
            caller_reference,
            comment: None,
            private: false,
            records,
        })
    }

    /// The zone's SOA fields and the SOA record set's TTL.
    pub fn soa(&self) -> Option<(&Soa, Ttl)> {
        let key = RecordKey {
            name: self.name.clone(),
            rtype: RecordTypeOrd(RecordType::SOA),
            set_identifier: None,
        };
        let set = self.records.get(&key)?;
        match set.records.first() {
            Some(RecordData::Soa(soa)) => Some((soa, set.ttl)),
            _ => None,
        }
    }

    /// The current SOA serial.
    pub fn serial(&self) -> u32 {
        self.soa().map(|(s, _)| s.serial).unwrap_or(0)
    }

    /// Applies a batch atomically: either every change is valid and a new zone is returned, with
    /// the SOA serial increased, or the errors of every invalid change are returned and nothing
    /// changes.
    pub fn apply(&self, changes: &[Change]) -> Result<Zone, Vec<ChangeError>> {
        let mut next = self.clone();
        let mut errors = Vec::new();
        let mut soa_upserted: Option<u32> = None;
        for change in changes {
            if let Err(e) = next.apply_one(change) {
                errors.push(e);
            } else if change.set.rtype == RecordType::SOA {
                if let Some(RecordData::Soa(soa)) = change.set.records.first() {
                    soa_upserted = Some(soa.serial);
                }
            }
        }
        if errors.is_empty() {
            errors = next.check_conflicts();
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let old = self.serial();
        let wanted = old.wrapping_add(1);
        let serial = match soa_upserted {
            // A user-supplied serial is kept when it moves forward (RFC 1982 comparison).
            Some(s) if serial_gt(s, old) => s,
            _ => wanted,
        };
        next.set_serial(serial);
        Ok(next)
    }

    /// Replaces every record set but the apex SOA with `sets` (a zone import), as one batch.
    pub fn replace_all(&self, sets: Vec<RecordSet>) -> Result<Zone, Vec<ChangeError>> {
        let mut changes: Vec<Change> = self
            .records
            .values()
            .filter(|s| {
                !(s.name == self.name && matches!(s.rtype, RecordType::SOA | RecordType::NS))
            })
            .cloned()
            .map(|set| Change {
                action: ChangeAction::Delete,
                set,
            })
            .collect();
        changes.extend(sets.into_iter().map(|set| Change {
            action: ChangeAction::Upsert,
            set,
        }));
        self.apply(&changes)
    }

    fn set_serial(&mut self, serial: u32) {
        let key = RecordKey {
            name: self.name.clone(),
            rtype: RecordTypeOrd(RecordType::SOA),
            set_identifier: None,
        };
        if let Some(set) = self.records.get_mut(&key) {
            if let Some(RecordData::Soa(soa)) = set.records.first_mut() {
                soa.serial = serial;
            }
        }
    }

    fn apply_one(&mut self, change: &Change) -> Result<(), ChangeError> {
        let set = &change.set;
        set.check()?;
        if !set.name.is_subdomain_of(&self.name) {
            return Err(ChangeError::NotInZone {
                name: set.name.clone(),
                zone: self.name.clone(),
            });
        }
        let at_apex = set.name == self.name;
        if set.rtype == RecordType::SOA && !at_apex {
            return Err(ChangeError::SoaNotAtApex {
                name: set.name.clone(),
            });
        }
        let apex_protected = at_apex && matches!(set.rtype, RecordType::SOA | RecordType::NS);
        if apex_protected && change.action != ChangeAction::Upsert {
            return Err(ChangeError::ApexProtected {
                action: change.action,
                rtype: set.rtype,
            });
        }
        let key = RecordKey::of(set);
        match change.action {
            ChangeAction::Create => {
                if self.records.contains_key(&key) {
                    return Err(ChangeError::AlreadyExists {
                        name: set.name.clone(),
                        rtype: set.rtype,
                        set_identifier: set.set_identifier.clone(),
                    });
                }
                self.records.insert(key, set.clone());
            }
            ChangeAction::Upsert => {
                self.records.insert(key, set.clone());
            }
            ChangeAction::Delete => {
                let current = self
                    .records
                    .get(&key)
                    .ok_or_else(|| ChangeError::NotFound {
                        name: set.name.clone(),
                        rtype: set.rtype,
                        set_identifier: set.set_identifier.clone(),
                    })?;
                if !same_values(current, set) {
                    return Err(ChangeError::ValuesMismatch {
                        name: set.name.clone(),
                        rtype: set.rtype,
                        set_identifier: set.set_identifier.clone(),
                    });
                }
                self.records.remove(&key);
            }
        }
        Ok(())
    }

    /// CNAME exclusivity and policy consistency over the whole zone after a batch.
    fn check_conflicts(&self) -> Vec<ChangeError> {
        let mut errors = Vec::new();
        let mut iter = self.records.values().peekable();
        while let Some(first) = iter.next() {
            let mut same_name = vec![first];
            while let Some(next) = iter.peek() {
                if next.name != first.name {
                    break;
                }
                same_name.push(next);
                iter.next();
            }
            let has_cname = same_name.iter().any(|s| s.rtype == RecordType::CNAME);
            if has_cname {
                if let Some(other) = same_name.iter().find(|s| s.rtype != RecordType::CNAME) {
                    errors.push(if first.name == self.name {
                        ChangeError::CnameConflict {
                            name: first.name.clone(),
                            zone: self.name.clone(),
                        }
                    } else {
                        ChangeError::ConflictsWithCname {
                            name: first.name.clone(),
                            rtype: other.rtype,
                            zone: self.name.clone(),
                        }
                    });
                }
            }
            for t in RecordType::ALL {
                let of_type: Vec<_> = same_name.iter().filter(|s| s.rtype == *t).collect();
                let simple = of_type
                    .iter()
                    .filter(|s| s.policy == RoutingPolicy::Simple)
                    .count();
                if simple > 0 && of_type.len() > simple {
                    errors.push(ChangeError::PolicyConflict {
                        name: first.name.clone(),
                        rtype: *t,
                    });
                }
            }
        }
        errors
    }
}

/// One record as a zone transfer carries it.
pub type TransferRecord = (DomainName, Ttl, RecordData);

/// The difference between two versions of a zone at record level, as an IXFR sends it
/// (RFC 1995): the old SOA, the records removed, the new SOA, the records added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneDiff {
    pub old_soa: (Ttl, Soa),
    pub new_soa: (Ttl, Soa),
    pub removed: Vec<TransferRecord>,
    pub added: Vec<TransferRecord>,
}

impl ZoneDiff {
    /// The diff from `old` to `new`, if both have an SOA and the serial moved.
    pub fn between(old: &Zone, new: &Zone) -> Option<ZoneDiff> {
        let (os, ot) = old.soa()?;
        let (ns, nt) = new.soa()?;
        if os.serial == ns.serial {
            return None;
        }
        let a = old.transfer_records();
        let b = new.transfer_records();
        let a_set: std::collections::HashSet<&TransferRecord> = a.iter().collect();
        let b_set: std::collections::HashSet<&TransferRecord> = b.iter().collect();
        Some(ZoneDiff {
            old_soa: (ot, os.clone()),
            new_soa: (nt, ns.clone()),
            removed: a.iter().filter(|r| !b_set.contains(r)).cloned().collect(),
            added: b.iter().filter(|r| !a_set.contains(r)).cloned().collect(),
        })
    }

    /// Records this diff carries (for bounding a journal).
    pub fn len(&self) -> usize {
        self.removed.len() + self.added.len()
    }

    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.added.is_empty()
    }
}

/// The recent diffs of one zone, oldest first, bounded in count and records.
#[derive(Debug, Clone, Default)]
pub struct Journal {
    diffs: std::collections::VecDeque<std::sync::Arc<ZoneDiff>>,
    records: usize,
}

impl Journal {
    /// Most diffs kept per zone.
    pub const MAX_DIFFS: usize = 100;
    /// Most records kept across a zone's diffs; older diffs are dropped first.
    pub const MAX_RECORDS: usize = 20_000;

    /// Appends a diff, dropping the oldest ones beyond the bounds. A diff that does not
    /// continue the last one (or is larger than the bound) clears the journal.
    pub fn push(&mut self, diff: ZoneDiff) {
        let continues = self
            .diffs
            .back()
            .is_none_or(|last| last.new_soa.1.serial == diff.old_soa.1.serial);
        if !continues || diff.len() > Self::MAX_RECORDS {
            self.diffs.clear();
            self.records = 0;
            if diff.len() > Self::MAX_RECORDS {
                return;
            }
        }
        self.records += diff.len();
        self.diffs.push_back(std::sync::Arc::new(diff));
        while self.diffs.len() > Self::MAX_DIFFS || self.records > Self::MAX_RECORDS {
            if let Some(old) = self.diffs.pop_front() {
                self.records -= old.len();
            }
        }
    }

    /// The diffs leading from serial `from` to the newest version, if the journal reaches back
    /// that far.
    pub fn since(&self, from: u32) -> Option<Vec<std::sync::Arc<ZoneDiff>>> {
        let start = self.diffs.iter().position(|d| d.old_soa.1.serial == from)?;
        Some(self.diffs.iter().skip(start).cloned().collect())
    }

    pub fn len(&self) -> usize {
        self.diffs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.diffs.is_empty()
    }
}

impl Zone {
    /// Every record but the apex SOA, in canonical order, as a transfer carries them: one RRset
    /// per name and type, so record sets under a routing policy are merged (values
    /// de-duplicated, the lowest TTL) and aliases are replaced by their targets' records, as a
    /// secondary cannot apply either.
    pub fn transfer_records(&self) -> Vec<TransferRecord> {
        let mut out = Vec::new();
        let mut iter = self.records.values().peekable();
        while let Some(first) = iter.next() {
            let mut group = vec![first];
            while let Some(next) = iter.next_if(|n| n.name == first.name && n.rtype == first.rtype)
            {
                group.push(next);
            }
            if first.rtype == RecordType::SOA && first.name == self.name {
                continue;
            }
            let mut ttl: Option<Ttl> = None;
            let mut data: Vec<&RecordData> = Vec::new();
            for set in group {
                let sources: Vec<&RecordSet> = match &set.alias {
                    None => vec![set],
                    Some(alias) => self
                        .records
                        .values()
                        .filter(|t| {
                            t.name == alias.dns_name && t.rtype == set.rtype && t.alias.is_none()
                        })
                        .collect(),
                };
                for src in sources {
                    ttl = Some(ttl.map_or(src.ttl, |t| t.min(src.ttl)));
                    for d in &src.records {
                        if !data.contains(&d) {
                            data.push(d);
                        }
                    }
                }
            }
            if let Some(ttl) = ttl {
                out.extend(
                    data.into_iter()
                        .map(|d| (first.name.clone(), ttl, d.clone())),
                );
            }
        }
        out
    }
}

/// Whether a DELETE's record set matches the stored one (TTL, values in any order, policy).
fn same_values(current: &RecordSet, wanted: &RecordSet) -> bool {
    current.ttl == wanted.ttl
        && current.policy == wanted.policy
        && current.alias == wanted.alias
        && current.records.len() == wanted.records.len()
        && wanted.records.iter().all(|r| current.records.contains(r))
}

/// RFC 1982 serial number comparison: `a > b`.
pub fn serial_gt(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < (1 << 31)
}

#[cfg(test)]
mod tests;
