//! Counters of the DNS server, rendered in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::handler::Kind;

/// Query counters by outcome, plus transfers and NOTIFYs.
#[derive(Debug, Default)]
pub struct Stats {
    pub answer: AtomicU64,
    pub nodata: AtomicU64,
    pub nxdomain: AtomicU64,
    pub referral: AtomicU64,
    pub refused: AtomicU64,
    pub formerr: AtomicU64,
    pub notimp: AtomicU64,
    pub truncated: AtomicU64,
    pub dropped: AtomicU64,
    pub transfers: AtomicU64,
}

impl Stats {
    pub fn record(&self, kind: Option<Kind>) {
        let c = match kind {
            Some(Kind::Answer) => &self.answer,
            Some(Kind::NoData) => &self.nodata,
            Some(Kind::NxDomain) => &self.nxdomain,
            Some(Kind::Referral) => &self.referral,
            Some(Kind::Refused) => &self.refused,
            Some(Kind::FormErr) => &self.formerr,
            Some(Kind::NotImp) => &self.notimp,
            Some(Kind::Truncated) => &self.truncated,
            None => &self.dropped,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters in Prometheus exposition format.
    pub fn render_prometheus(&self) -> String {
        let mut s = String::new();
        s.push_str("# HELP edgeplane_dns_responses_total DNS messages handled, by outcome.\n");
        s.push_str("# TYPE edgeplane_dns_responses_total counter\n");
        for (label, c) in [
            ("answer", &self.answer),
            ("nodata", &self.nodata),
            ("nxdomain", &self.nxdomain),
            ("referral", &self.referral),
            ("refused", &self.refused),
            ("formerr", &self.formerr),
            ("notimp", &self.notimp),
            ("truncated", &self.truncated),
            ("dropped", &self.dropped),
        ] {
            let _ = writeln!(
                s,
                "edgeplane_dns_responses_total{{outcome=\"{label}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        s.push_str("# HELP edgeplane_dns_transfers_total Zone transfers served.\n");
        s.push_str("# TYPE edgeplane_dns_transfers_total counter\n");
        let _ = writeln!(
            s,
            "edgeplane_dns_transfers_total {}",
            self.transfers.load(Ordering::Relaxed)
        );
        s
    }
}
