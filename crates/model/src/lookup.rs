//! The authoritative lookup algorithm (RFC 1034 section 4.3.2, RFC 2308, RFC 4592, RFC 8482)
//! over an indexed zone, as a pure function: the DNS server only encodes what it returns.
//! Routing policies choose among record sets by weight (a random number) and by health (a
//! [`HealthView`] of the unhealthy health checks), both given by the caller.

use std::collections::HashMap;
use std::sync::Arc;

use crate::health::HealthView;
use crate::name::DomainName;
use crate::record::{Failover, RecordData, RecordSet, RecordType, RoutingPolicy};
use crate::zone::Zone;

/// How many CNAME links are followed inside a zone before the answer stops.
pub const MAX_CNAME_CHAIN: usize = 8;
/// How many alias hops an answer follows.
pub const MAX_ALIAS_DEPTH: usize = 4;
/// Most record sets a multivalue answer combines (Route53 answers up to eight).
pub const MAX_MULTIVALUE: usize = 8;

/// What was asked: a stored type, ANY, or a type edgeplane stores nothing of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryType {
    Type(RecordType),
    Any,
    Other(u16),
}

impl QueryType {
    pub fn from_code(code: u16) -> Self {
        match code {
            255 => QueryType::Any,
            c => RecordType::from_code(c).map_or(QueryType::Other(c), QueryType::Type),
        }
    }
}

/// The response code of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError,
    NxDomain,
}

/// One RRset to put in a response section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RrSet<'a> {
    pub owner: &'a DomainName,
    pub rtype: RecordType,
    pub ttl: u32,
    pub data: Vec<&'a RecordData>,
}

/// The result of an authoritative lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer<'a> {
    pub rcode: Rcode,
    /// False for referrals.
    pub authoritative: bool,
    pub answer: Vec<RrSet<'a>>,
    pub authority: Vec<RrSet<'a>>,
    pub additional: Vec<RrSet<'a>>,
}

/// All record sets of one type at one name (several under a routing policy).
#[derive(Debug, Clone)]
struct TypeSets {
    rtype: RecordType,
    sets: Vec<RecordSet>,
}

/// The record sets at one name; empty for an empty non-terminal.
#[derive(Debug, Clone, Default)]
struct Node {
    types: Vec<TypeSets>,
}

impl Node {
    fn get(&self, rtype: RecordType) -> Option<&TypeSets> {
        self.types.iter().find(|t| t.rtype == rtype)
    }
}

/// A zone prepared for lookups: every name with data, and every empty non-terminal.
#[derive(Debug, Clone)]
pub struct ZoneIndex {
    zone: Arc<Zone>,
    nodes: HashMap<DomainName, Node>,
}

impl ZoneIndex {
    pub fn new(zone: Arc<Zone>) -> Self {
        let mut nodes: HashMap<DomainName, Node> = HashMap::new();
        for set in zone.records.values() {
            let node = nodes.entry(set.name.clone()).or_default();
            match node.types.iter_mut().find(|t| t.rtype == set.rtype) {
                Some(t) => t.sets.push(set.clone()),
                None => node.types.push(TypeSets {
                    rtype: set.rtype,
                    sets: vec![set.clone()],
                }),
            }
            // Empty non-terminals between the name and the apex.
            let mut cur = set.name.parent();
            while let Some(p) = cur {
                if !p.is_subdomain_of(&zone.name) || nodes.contains_key(&p) {
                    break;
                }
                cur = p.parent();
                nodes.insert(p, Node::default());
            }
        }
        for node in nodes.values_mut() {
            node.types.sort_by_key(|t| t.rtype.code());
        }
        ZoneIndex { zone, nodes }
    }

    pub fn zone(&self) -> &Arc<Zone> {
        &self.zone
    }

    pub fn apex(&self) -> &DomainName {
        &self.zone.name
    }

    /// Answers `qname`/`qtype` from this zone. `qname` must be at or below the apex. `random`
    /// drives weighted and multivalue choices and `health` says which health checks fail, so
    /// the function stays pure.
    pub fn lookup<'a>(
        &'a self,
        qname: &'a DomainName,
        qtype: QueryType,
        random: u32,
        health: &HealthView,
    ) -> Answer<'a> {
        let mut out = Answer {
            rcode: Rcode::NoError,
            authoritative: true,
            answer: Vec::new(),
            authority: Vec::new(),
            additional: Vec::new(),
        };
        let mut current: &'a DomainName = qname;
        let mut visited: Vec<&DomainName> = Vec::new();
        loop {
            match self.walk(current, qtype) {
                Walk::Referral(cut, node) => {
                    if out.answer.is_empty() {
                        out.authoritative = false;
                    }
                    self.referral(&mut out, cut, node, health);
                    return out;
                }
                Walk::Found(node) => {
                    if let Some(next) =
                        self.answer_node(&mut out, current, node, qtype, random, health)
                    {
                        visited.push(current);
                        if visited.len() > MAX_CNAME_CHAIN
                            || visited.contains(&next)
                            || !next.is_subdomain_of(self.apex())
                        {
                            return out;
                        }
                        current = next;
                        continue;
                    }
                    return out;
                }
                Walk::Missing(encloser) => {
                    let wildcard = encloser.wildcard_child().and_then(|w| self.nodes.get(&w));
                    match wildcard {
                        Some(node) => {
                            if let Some(next) =
                                self.answer_node(&mut out, current, node, qtype, random, health)
                            {
                                visited.push(current);
                                if visited.len() > MAX_CNAME_CHAIN
                                    || visited.contains(&next)
                                    || !next.is_subdomain_of(self.apex())
                                {
                                    return out;
                                }
                                current = next;
                                continue;
                            }
                            return out;
                        }
                        None => {
                            out.rcode = Rcode::NxDomain;
                            self.push_soa(&mut out.authority);
                            return out;
                        }
                    }
                }
            }
        }
    }

    /// Every record set of the zone in transfer order: SOA first, then the rest in canonical
    /// order (the caller repeats the SOA at the end of an AXFR).
    pub fn transfer_order(&self) -> Vec<&RecordSet> {
        let mut out: Vec<&RecordSet> = Vec::with_capacity(self.zone.records.len());
        out.extend(
            self.zone
                .records
                .values()
                .filter(|s| s.rtype == RecordType::SOA && s.name == self.zone.name),
        );
        out.extend(
            self.zone
                .records
                .values()
                .filter(|s| !(s.rtype == RecordType::SOA && s.name == self.zone.name)),
        );
        out
    }

    fn walk<'a>(&'a self, name: &DomainName, qtype: QueryType) -> Walk<'a> {
        let wire = name.wire();
        let apex_len = self.apex().wire().len();
        // Label start offsets of `name`, so ancestors are suffix slices.
        let mut starts = Vec::with_capacity(8);
        let mut pos = 0;
        while wire.len() - pos > apex_len {
            starts.push(pos);
            pos += 1 + usize::from(wire[pos]);
        }
        let apex_node = self.nodes.get(self.apex().wire());
        let mut encloser: &DomainName = self.apex();
        // From the label just below the apex down to the name itself.
        for (i, &start) in starts.iter().enumerate().rev() {
            let (anc_name, node) = match self.nodes.get_key_value(&wire[start..]) {
                Some(kv) => kv,
                None => return Walk::Missing(encloser),
            };
            let is_target = i == 0;
            if node.get(RecordType::NS).is_some()
                && !(is_target && qtype == QueryType::Type(RecordType::DS))
            {
                return Walk::Referral(anc_name, node);
            }
            if is_target {
                return Walk::Found(node);
            }
            encloser = anc_name;
        }
        match apex_node {
            Some(node) => Walk::Found(node),
            None => Walk::Missing(encloser),
        }
    }

    /// Adds the answer for an existing node; returns a CNAME target to continue with.
    fn answer_node<'a>(
        &'a self,
        out: &mut Answer<'a>,
        owner: &'a DomainName,
        node: &'a Node,
        qtype: QueryType,
        random: u32,
        health: &HealthView,
    ) -> Option<&'a DomainName> {
        if qtype != QueryType::Type(RecordType::CNAME) {
            if let Some(cname) = node.get(RecordType::CNAME) {
                if let Some(rr) = self.select(owner, cname, random, health) {
                    let target = match rr.data.first() {
                        Some(RecordData::Cname(t)) => Some(t),
                        _ => None,
                    };
                    out.answer.push(rr);
                    return target;
                }
            }
        }
        let chosen = match qtype {
            QueryType::Any => node
                .types
                .iter()
                .find_map(|t| self.select(owner, t, random, health)),
            QueryType::Type(t) => node
                .get(t)
                .and_then(|ts| self.select(owner, ts, random, health)),
            QueryType::Other(_) => None,
        };
        match chosen {
            Some(rr) => {
                let targets: Vec<&DomainName> =
                    rr.data.iter().filter_map(|d| d.target_name()).collect();
                out.answer.push(rr);
                for t in targets {
                    self.push_addresses(&mut out.additional, t, false, health);
                }
            }
            None => self.push_soa(&mut out.authority),
        }
        None
    }

    /// Picks the records to answer from the sets of one type, following the routing policy.
    fn select<'a>(
        &'a self,
        owner: &'a DomainName,
        ts: &'a TypeSets,
        random: u32,
        health: &HealthView,
    ) -> Option<RrSet<'a>> {
        self.select_at(owner, ts, random, health, 0)
    }

    /// `select`, `depth` alias hops away from the question: aliases may point at sets that are
    /// themselves under a routing policy with aliases, and the depth bounds the recursion.
    ///
    /// Health follows Route53: a failover PRIMARY answers while its check is healthy (or it has
    /// none), else the SECONDARY, unless that is unhealthy too; weighted and multivalue sets
    /// whose checks fail are left out, and when every set of the group fails, all of them are
    /// considered healthy. A multivalue answer holds up to eight sets, starting at a position
    /// drawn from `random` when there are more.
    fn select_at<'a>(
        &'a self,
        owner: &'a DomainName,
        ts: &'a TypeSets,
        random: u32,
        health: &HealthView,
        depth: usize,
    ) -> Option<RrSet<'a>> {
        let first = ts.sets.first()?;
        let healthy = |s: &RecordSet| health.is_healthy(s.health_check_id.as_deref());
        // The healthy sets of a group, or all of them when none is.
        let candidates = || -> Vec<&'a RecordSet> {
            let up: Vec<&RecordSet> = ts.sets.iter().filter(|s| healthy(s)).collect();
            if up.is_empty() {
                ts.sets.iter().collect()
            } else {
                up
            }
        };
        let chosen: Vec<&RecordSet> = match first.policy {
            RoutingPolicy::Simple => vec![first],
            RoutingPolicy::Weighted { .. } => {
                let sets = candidates();
                let weight = |s: &RecordSet| match s.policy {
                    RoutingPolicy::Weighted { weight } => u32::from(weight),
                    _ => 0,
                };
                let total: u32 = sets.iter().map(|s| weight(s)).sum();
                if total == 0 {
                    // All weights zero: Route53 chooses among them with equal probability.
                    vec![sets[(random as usize) % sets.len()]]
                } else {
                    let mut pick = random % total;
                    let mut chosen = sets[0];
                    for &s in &sets {
                        if pick < weight(s) {
                            chosen = s;
                            break;
                        }
                        pick -= weight(s);
                    }
                    vec![chosen]
                }
            }
            RoutingPolicy::Failover(_) => {
                let role = |f: Failover| {
                    ts.sets
                        .iter()
                        .find(|s| s.policy == RoutingPolicy::Failover(f))
                };
                let chosen = match (role(Failover::Primary), role(Failover::Secondary)) {
                    (Some(p), Some(s)) if !healthy(p) && healthy(s) => s,
                    (Some(p), _) => p,
                    (None, Some(s)) => s,
                    (None, None) => first,
                };
                vec![chosen]
            }
            RoutingPolicy::MultiValue => {
                let sets = candidates();
                let start = if sets.len() > MAX_MULTIVALUE {
                    (random as usize) % sets.len()
                } else {
                    0
                };
                sets.iter()
                    .cycle()
                    .skip(start)
                    .take(sets.len().min(MAX_MULTIVALUE))
                    .copied()
                    .collect()
            }
        };
        let mut data: Vec<&RecordData> = Vec::new();
        let mut ttl = u32::MAX;
        for set in chosen {
            match &set.alias {
                Some(alias) => {
                    let (alias_ttl, alias_data) =
                        self.alias_data(&alias.dns_name, ts.rtype, random, health, depth + 1)?;
                    ttl = ttl.min(alias_ttl);
                    data.extend(alias_data);
                }
                None => {
                    ttl = ttl.min(set.ttl.seconds());
                    data.extend(set.records.iter());
                }
            }
        }
        if data.is_empty() {
            return None;
        }
        Some(RrSet {
            owner,
            rtype: ts.rtype,
            ttl,
            data,
        })
    }

    /// The data an alias points at (same zone, same type); alias chains are bounded.
    fn alias_data<'a>(
        &'a self,
        target: &DomainName,
        rtype: RecordType,
        random: u32,
        health: &HealthView,
        depth: usize,
    ) -> Option<(u32, Vec<&'a RecordData>)> {
        if depth > MAX_ALIAS_DEPTH {
            return None;
        }
        let (target_name, node) = self.nodes.get_key_value(target.wire())?;
        let ts = node.get(rtype)?;
        let rr = self.select_at(target_name, ts, random, health, depth)?;
        Some((rr.ttl, rr.data))
    }

    fn referral<'a>(
        &'a self,
        out: &mut Answer<'a>,
        cut: &'a DomainName,
        node: &'a Node,
        health: &HealthView,
    ) {
        let Some(ns) = node.get(RecordType::NS) else {
            return;
        };
        let Some(rr) = self.select(cut, ns, 0, health) else {
            return;
        };
        let targets: Vec<&DomainName> = rr.data.iter().filter_map(|d| d.target_name()).collect();
        out.authority.push(rr);
        if let Some(ds) = node
            .get(RecordType::DS)
            .and_then(|ds| self.select(cut, ds, 0, health))
        {
            out.authority.push(ds);
        }
        for t in targets {
            // Glue: addresses of name servers inside the delegated zone, even though occluded.
            if t.is_subdomain_of(cut) {
                self.push_addresses(&mut out.additional, t, true, health);
            }
        }
    }

    /// Adds the A/AAAA sets of `target`. Data below a zone cut is only glue: it is added when
    /// `glue` is set (referrals), never as authoritative additional data.
    fn push_addresses<'a>(
        &'a self,
        section: &mut Vec<RrSet<'a>>,
        target: &DomainName,
        glue: bool,
        health: &HealthView,
    ) {
        if !target.is_subdomain_of(self.apex()) {
            return;
        }
        if !glue
            && matches!(
                self.walk(target, QueryType::Type(RecordType::A)),
                Walk::Referral(..)
            )
        {
            return;
        }
        let Some((name, node)) = self.nodes.get_key_value(target.wire()) else {
            return;
        };
        for rtype in [RecordType::A, RecordType::AAAA] {
            if let Some(rr) = node
                .get(rtype)
                .and_then(|ts| self.select(name, ts, 0, health))
            {
                if !section.contains(&rr) {
                    section.push(rr);
                }
            }
        }
    }

    /// The SOA for a negative answer, its TTL the lesser of the SOA's TTL and MINIMUM (RFC 2308).
    fn push_soa<'a>(&'a self, section: &mut Vec<RrSet<'a>>) {
        let Some(node) = self.nodes.get(self.apex().wire()) else {
            return;
        };
        let Some(ts) = node.get(RecordType::SOA) else {
            return;
        };
        let Some(set) = ts.sets.first() else {
            return;
        };
        let minimum = match set.records.first() {
            Some(RecordData::Soa(soa)) => soa.minimum,
            _ => u32::MAX,
        };
        section.push(RrSet {
            owner: self.apex(),
            rtype: RecordType::SOA,
            ttl: set.ttl.seconds().min(minimum),
            data: set.records.iter().collect(),
        });
    }
}

enum Walk<'a> {
    /// The name is at or below a delegation point (the cut's name and node).
    Referral(&'a DomainName, &'a Node),
    /// The name exists (possibly as an empty non-terminal).
    Found(&'a Node),
    /// The name does not exist; the closest encloser is given.
    Missing(&'a DomainName),
}

/// The value whose key is the longest suffix of `qname` (the most specific zone).
pub fn most_specific<'m, V>(map: &'m HashMap<DomainName, V>, qname: &[u8]) -> Option<&'m V> {
    let mut pos = 0;
    loop {
        if let Some(v) = map.get(&qname[pos..]) {
            return Some(v);
        }
        let len = usize::from(*qname.get(pos)?);
        if len == 0 {
            return None;
        }
        pos += 1 + len;
        if pos >= qname.len() {
            return None;
        }
    }
}

#[cfg(test)]
mod tests;
