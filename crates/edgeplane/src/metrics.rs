//! The Prometheus text exposition of edgeplane's gauges and counters (`GET /metrics`).

use std::sync::Arc;

use dns::stats::Stats;
use store::Store;

/// Renders every metric.
pub(crate) fn render(store: &Store, stats: &[Arc<Stats>]) -> String {
    let snapshot = store.snapshot();
    let mut out = String::new();
    out.push_str("# HELP edgeplane_store_generation Snapshot generation last published by the store.\n# TYPE edgeplane_store_generation gauge\n");
    out.push_str(&format!(
        "edgeplane_store_generation {}\n",
        snapshot.generation
    ));
    out.push_str("# HELP edgeplane_hosted_zones Hosted zones in the store.\n# TYPE edgeplane_hosted_zones gauge\n");
    out.push_str(&format!(
        "edgeplane_hosted_zones {}\n",
        snapshot.zones.len()
    ));
    let sets: usize = snapshot
        .zones
        .values()
        .map(|z| z.zone().records.len())
        .sum();
    out.push_str("# HELP edgeplane_record_sets Record sets across all hosted zones.\n# TYPE edgeplane_record_sets gauge\n");
    out.push_str(&format!("edgeplane_record_sets {sets}\n"));
    // Sum the per-listener counters into one family.
    let total = Stats::default();
    for s in stats {
        use std::sync::atomic::Ordering::Relaxed;
        for (a, b) in [
            (&total.answer, &s.answer),
            (&total.nodata, &s.nodata),
            (&total.nxdomain, &s.nxdomain),
            (&total.referral, &s.referral),
            (&total.refused, &s.refused),
            (&total.formerr, &s.formerr),
            (&total.notimp, &s.notimp),
            (&total.truncated, &s.truncated),
            (&total.dropped, &s.dropped),
            (&total.transfers, &s.transfers),
        ] {
            a.fetch_add(b.load(Relaxed), Relaxed);
        }
    }
    out.push_str(&total.render_prometheus());
    out
}
