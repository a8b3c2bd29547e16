//! The route table: routers compiled into an index (host map, wildcard suffix maps, exact-path
//! maps and prefix maps by length), so that finding the router for a request costs about the
//! same with ten routers as with a hundred thousand. Pure: built from data, queried with a
//! [`RequestView`].
//!
//! Every router is filed under each host and path its rule *requires* (a sound
//! over-approximation: a router is never missing from a bucket a matching request looks in);
//! the candidates found are then checked against their full rule in priority order, so the
//! answer is the same as a linear scan of routers sorted by priority.

use std::collections::HashMap;

use crate::rule::{HostPattern, PathKey, RequestView, Rule};

/// One router as the table sees it: a rule, a priority, and what it leads to.
#[derive(Debug, Clone)]
pub struct TableEntry<T> {
    pub name: String,
    /// Shared: a reload that keeps a rule's text keeps its parse (and compiled regexes).
    pub rule: std::sync::Arc<Rule>,
    pub priority: i64,
    pub value: T,
}

/// Routers indexed for lookup. `T` is what a match yields.
#[derive(Debug)]
pub struct RouteTable<T> {
    /// Sorted by priority (highest first), then name; a router's rank is its index here.
    entries: Vec<TableEntry<T>>,
    exact: HashMap<String, Bucket>,
    one_label: HashMap<String, Bucket>,
    any_labels: HashMap<String, Bucket>,
    /// Routers without a required host.
    any_host: Bucket,
    /// Whether any `**.` router exists (else the suffix walk is skipped).
    has_any_labels: bool,
}

/// Routers filed under one host key, indexed by path.
#[derive(Debug, Default)]
struct Bucket {
    exact_paths: HashMap<String, Vec<u32>>,
    prefixes: HashMap<String, Vec<u32>>,
    /// Distinct prefix lengths present, ascending.
    prefix_lens: Vec<usize>,
    /// Routers without a required path.
    any_path: Vec<u32>,
}

impl Bucket {
    fn insert(&mut self, path: Option<&PathKey>, rank: u32) {
        match path {
            None => self.any_path.push(rank),
            Some(PathKey::Exact(p)) => self.exact_paths.entry(p.clone()).or_default().push(rank),
            Some(PathKey::Prefix(p)) => {
                if let Err(i) = self.prefix_lens.binary_search(&p.len()) {
                    self.prefix_lens.insert(i, p.len());
                }
                self.prefixes.entry(p.clone()).or_default().push(rank);
            }
        }
    }

    fn candidates(&self, path: &str, out: &mut Vec<u32>) {
        out.extend_from_slice(&self.any_path);
        if let Some(v) = self.exact_paths.get(path) {
            out.extend_from_slice(v);
        }
        for &len in &self.prefix_lens {
            if len > path.len() {
                break;
            }
            if let Some(v) = path.get(..len).and_then(|p| self.prefixes.get(p)) {
                out.extend_from_slice(v);
            }
        }
    }
}

impl<T> RouteTable<T> {
    /// Builds the table. Ties in priority are broken by router name, so the order never
    /// depends on the order routers were given in.
    pub fn new(mut entries: Vec<TableEntry<T>>) -> RouteTable<T> {
        entries.sort_by(rank_order);
        let mut t = RouteTable {
            entries: Vec::new(),
            exact: HashMap::new(),
            one_label: HashMap::new(),
            any_labels: HashMap::new(),
            any_host: Bucket::default(),
            has_any_labels: false,
        };
        for (rank, e) in entries.iter().enumerate() {
            let rank = u32::try_from(rank).unwrap_or(u32::MAX);
            let hosts = e.rule.expr().required_hosts();
            let paths = e.rule.expr().required_paths();
            let paths: Vec<Option<&PathKey>> = match &paths {
                Some(p) => p.iter().map(Some).collect(),
                None => vec![None],
            };
            let file = |bucket: &mut Bucket| {
                for p in &paths {
                    bucket.insert(*p, rank);
                }
            };
            match hosts {
                None => file(&mut t.any_host),
                Some(hosts) => {
                    for h in hosts {
                        match h {
                            HostPattern::Exact(h) => file(t.exact.entry(h).or_default()),
                            HostPattern::OneLabel(s) => file(t.one_label.entry(s).or_default()),
                            HostPattern::AnyLabels(s) => {
                                t.has_any_labels = true;
                                file(t.any_labels.entry(s).or_default());
                            }
                        }
                    }
                }
            }
        }
        t.entries = entries;
        t
    }

    /// The highest-priority router whose rule matches the request.
    pub fn find(&self, req: &RequestView<'_>) -> Option<&TableEntry<T>> {
        self.find_where(req, |_| true)
    }

    /// [`RouteTable::find`] among the routers `keep` accepts (asked before their rule).
    pub fn find_where(
        &self,
        req: &RequestView<'_>,
        keep: impl Fn(&TableEntry<T>) -> bool,
    ) -> Option<&TableEntry<T>> {
        let mut cands: Vec<u32> = Vec::new();
        self.any_host.candidates(req.path, &mut cands);
        if let Some(b) = self.exact.get(req.host) {
            b.candidates(req.path, &mut cands);
        }
        if let Some((_, parent)) = req.host.split_once('.') {
            if let Some(b) = self.one_label.get(parent) {
                b.candidates(req.path, &mut cands);
            }
            if self.has_any_labels {
                let mut rest = parent;
                loop {
                    if let Some(b) = self.any_labels.get(rest) {
                        b.candidates(req.path, &mut cands);
                    }
                    match rest.split_once('.') {
                        Some((_, r)) => rest = r,
                        None => break,
                    }
                }
            }
        }
        cands.sort_unstable();
        cands.dedup();
        cands
            .into_iter()
            .filter_map(|r| self.entries.get(r as usize))
            .find(|e| keep(e) && e.rule.matches(req))
    }

    /// Every router, highest priority first.
    pub fn entries(&self) -> &[TableEntry<T>] {
        &self.entries
    }

    /// How many routers the table holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The table's order: higher priority first, then name.
fn rank_order<T>(a: &TableEntry<T>, b: &TableEntry<T>) -> std::cmp::Ordering {
    b.priority
        .cmp(&a.priority)
        .then_with(|| a.name.cmp(&b.name))
}

/// A route table that takes a few changed routers without being rebuilt: a shared `base`
/// (the table of the last full build), the routers changed since then in a small `overlay`,
/// and the names the overlay replaces or removes `masked` in the base. Answers exactly as one
/// table holding the current routers would: the best match of the overlay and of the
/// unmasked base, whichever ranks first.
#[derive(Debug)]
pub struct LayeredTable<T> {
    base: std::sync::Arc<RouteTable<T>>,
    overlay: RouteTable<T>,
    masked: std::sync::Arc<std::collections::HashSet<String>>,
}

impl<T> LayeredTable<T> {
    /// A table with every router in `base`.
    pub fn whole(base: RouteTable<T>) -> LayeredTable<T> {
        LayeredTable {
            base: std::sync::Arc::new(base),
            overlay: RouteTable::new(Vec::new()),
            masked: Default::default(),
        }
    }

    /// `previous`'s base with `overlay` on top; base routers named in `masked` are ignored.
    pub fn over(
        previous: &LayeredTable<T>,
        overlay: Vec<TableEntry<T>>,
        masked: std::sync::Arc<std::collections::HashSet<String>>,
    ) -> LayeredTable<T> {
        LayeredTable {
            base: previous.base.clone(),
            overlay: RouteTable::new(overlay),
            masked,
        }
    }

    /// The highest-priority router whose rule matches the request.
    pub fn find(&self, req: &RequestView<'_>) -> Option<&TableEntry<T>> {
        let top = if self.overlay.is_empty() {
            None
        } else {
            self.overlay.find(req)
        };
        let bottom = if self.masked.is_empty() {
            self.base.find(req)
        } else {
            self.base
                .find_where(req, |e| !self.masked.contains(e.name.as_str()))
        };
        match (top, bottom) {
            (Some(t), Some(b)) => Some(if rank_order(b, t).is_lt() { b } else { t }),
            (t, b) => t.or(b),
        }
    }

    /// How many routers the overlay holds (0 right after a full build).
    pub fn overlay_len(&self) -> usize {
        self.overlay.len()
    }

    /// How many routers the table serves.
    pub fn len(&self) -> usize {
        let hidden = self
            .base
            .entries()
            .iter()
            .filter(|e| self.masked.contains(e.name.as_str()))
            .count();
        self.base.len() - hidden + self.overlay.len()
    }

    /// Whether the table serves no router.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
