//! Certificate statuses, as cert-manager reports them: conditions `Ready` and `Issuing` with
//! reasons, `notBefore`/`notAfter`/`renewalTime`, the revision (issuances so far) and the
//! failed attempts since the last success; one row per Certificate keyed by `namespace/name`,
//! written by the process that owns the data directory.

use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use crate::dnszones::StatusCondition;
use crate::{Store, StoreError};

const CERTIFICATE_STATUS: TableDefinition<&str, &[u8]> = TableDefinition::new("certificate_status");

/// An unchanged status is written again after this long, for its `lastReconciled`.
const UNCHANGED_REWRITE_SECS: u64 = 300;

/// The status of one Certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    /// `namespace/name` of the Certificate.
    pub owner: String,
    pub secret_name: String,
    pub conditions: Vec<StatusCondition>,
    /// Unix seconds.
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    pub renewal_time: Option<i64>,
    /// How many times it was issued.
    pub revision: u64,
    /// Failed issuances since the last success.
    pub failed_issuance_attempts: u64,
    pub last_failure_time: Option<u64>,
    /// Seconds since the Unix epoch of the pass (set by the store).
    pub last_reconciled: u64,
}

/// What one pass found for a Certificate.
#[derive(Debug, Clone)]
pub enum CertificateOutcome {
    /// Issued now (a new revision), valid from/to, due for renewal at.
    Issued {
        not_before: i64,
        not_after: i64,
        renewal_time: i64,
    },
    /// Still valid, nothing to do.
    UpToDate {
        not_before: i64,
        not_after: i64,
        renewal_time: i64,
    },
    /// Not issued: why.
    Failed { reason: String },
    /// Being issued (an ACME order in flight, or waiting out the backoff after a failure):
    /// what it is doing. Counts no attempt.
    Pending { reason: String },
}

impl Store {
    /// Folds one pass's outcome into a Certificate's status and stores it.
    pub fn record_certificate_outcome(
        &self,
        owner: &str,
        secret_name: &str,
        outcome: &CertificateOutcome,
    ) -> Result<CertificateStatus, StoreError> {
        let _w = self.lock();
        let previous = self.certificate_status(owner)?;
        let now = crate::now();
        let mut s = previous.clone().unwrap_or(CertificateStatus {
            owner: owner.to_string(),
            secret_name: secret_name.to_string(),
            conditions: Vec::new(),
            not_before: None,
            not_after: None,
            renewal_time: None,
            revision: 0,
            failed_issuance_attempts: 0,
            last_failure_time: None,
            last_reconciled: now,
        });
        s.secret_name = secret_name.to_string();
        s.last_reconciled = now;
        let (ready, ready_reason, issuing, issuing_reason) = match outcome {
            CertificateOutcome::Issued {
                not_before,
                not_after,
                renewal_time,
            } => {
                s.revision += 1;
                s.failed_issuance_attempts = 0;
                (s.not_before, s.not_after, s.renewal_time) =
                    (Some(*not_before), Some(*not_after), Some(*renewal_time));
                (
                    true,
                    "Issued: the certificate is up to date".to_string(),
                    false,
                    "Issued".to_string(),
                )
            }
            CertificateOutcome::UpToDate {
                not_before,
                not_after,
                renewal_time,
            } => {
                (s.not_before, s.not_after, s.renewal_time) =
                    (Some(*not_before), Some(*not_after), Some(*renewal_time));
                (
                    true,
                    "Ready: the certificate is up to date".to_string(),
                    false,
                    "UpToDate".to_string(),
                )
            }
            CertificateOutcome::Failed { reason } => {
                s.failed_issuance_attempts += 1;
                s.last_failure_time = Some(now);
                let still_valid = s
                    .not_after
                    .is_some_and(|na| i64::try_from(now).unwrap_or(i64::MAX) < na);
                (
                    still_valid,
                    format!("Failed: {reason}"),
                    true,
                    format!("Failed: {reason}"),
                )
            }
            CertificateOutcome::Pending { reason } => {
                let still_valid = s
                    .not_after
                    .is_some_and(|na| i64::try_from(now).unwrap_or(i64::MAX) < na);
                let ready_reason = match previous
                    .as_ref()
                    .and_then(|p| p.conditions.iter().find(|c| c.kind == "Ready"))
                {
                    // A failure stays visible while the next attempt waits or runs.
                    Some(c) if !still_valid && c.reason.starts_with("Failed") => c.reason.clone(),
                    _ if still_valid => {
                        "Ready: the certificate is valid; a new one is being issued".to_string()
                    }
                    _ => format!("Issuing: {reason}"),
                };
                (
                    still_valid,
                    ready_reason,
                    true,
                    format!("Issuing: {reason}"),
                )
            }
        };
        let mut conditions = Vec::new();
        for (kind, status, reason) in [
            ("Ready", ready, ready_reason),
            ("Issuing", issuing, issuing_reason),
        ] {
            let since = previous
                .as_ref()
                .and_then(|p| {
                    p.conditions
                        .iter()
                        .find(|c| c.kind == kind && c.status == status)
                })
                .map_or(now, |c| c.last_transition_time);
            conditions.push(StatusCondition {
                kind: kind.to_string(),
                status,
                reason,
                last_transition_time: since,
            });
        }
        s.conditions = conditions;
        // A pass that finds nothing new writes nothing (each write is a durable commit), but
        // `lastReconciled` is refreshed at least every few minutes.
        if let Some(p) = &previous {
            let mut same = s.clone();
            same.last_reconciled = p.last_reconciled;
            if same == *p && now.saturating_sub(p.last_reconciled) < UNCHANGED_REWRITE_SECS {
                return Ok(same);
            }
        }
        self.status_put(CERTIFICATE_STATUS, "Certificate", owner, &s)?;
        Ok(s)
    }

    /// The status of one Certificate (`namespace/name`).
    pub fn certificate_status(&self, owner: &str) -> Result<Option<CertificateStatus>, StoreError> {
        self.status_get(CERTIFICATE_STATUS, "Certificate", owner)
    }

    /// Every Certificate status; a row that does not decode is reported and left out.
    pub fn certificate_statuses(&self) -> Result<Vec<CertificateStatus>, StoreError> {
        self.status_all(CERTIFICATE_STATUS, "Certificate")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_fold_into_a_status() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let issued = CertificateOutcome::Issued {
            not_before: 100,
            not_after: i64::MAX / 2,
            renewal_time: 200,
        };
        let s = store
            .record_certificate_outcome("apps/web", "web-tls", &issued)
            .expect("record");
        assert_eq!((s.revision, s.failed_issuance_attempts), (1, 0));
        assert!(s.conditions.iter().any(|c| c.kind == "Ready" && c.status));
        let failed = CertificateOutcome::Failed {
            reason: "Issuer apps/x not found".into(),
        };
        let s = store
            .record_certificate_outcome("apps/web", "web-tls", &failed)
            .expect("record");
        assert_eq!((s.revision, s.failed_issuance_attempts), (1, 1));
        // Still valid: Ready stays true, Issuing says why it failed.
        let ready = s
            .conditions
            .iter()
            .find(|c| c.kind == "Ready")
            .expect("ready");
        assert!(ready.status);
        let issuing = s
            .conditions
            .iter()
            .find(|c| c.kind == "Issuing")
            .expect("issuing");
        assert!(issuing.status && issuing.reason.contains("not found"));
        let s = store
            .record_certificate_outcome("apps/web", "web-tls", &issued)
            .expect("record");
        assert_eq!((s.revision, s.failed_issuance_attempts), (2, 0));
        assert_eq!(store.certificate_statuses().expect("list").len(), 1);
    }

    #[test]
    fn repeated_outcomes_keep_the_status_and_changes_are_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let up = CertificateOutcome::UpToDate {
            not_before: 100,
            not_after: i64::MAX / 2,
            renewal_time: 200,
        };
        let first = store
            .record_certificate_outcome("apps/web", "web-tls", &up)
            .expect("record");
        let generation = store.certificate_status("apps/web").expect("read");
        let again = store
            .record_certificate_outcome("apps/web", "web-tls", &up)
            .expect("record");
        assert_eq!(first, again);
        assert_eq!(
            store.certificate_status("apps/web").expect("read"),
            generation
        );
        // A change is written.
        let failed = CertificateOutcome::Failed { reason: "x".into() };
        let s = store
            .record_certificate_outcome("apps/web", "web-tls", &failed)
            .expect("record");
        assert_eq!(store.certificate_status("apps/web").expect("read"), Some(s));
    }

    #[test]
    fn pending_counts_no_attempt_and_keeps_a_failure_visible() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let cond = |s: &CertificateStatus, k: &str| {
            s.conditions
                .iter()
                .find(|c| c.kind == k)
                .map(|c| (c.status, c.reason.clone()))
                .expect("condition")
        };
        let pending = CertificateOutcome::Pending {
            reason: "ACME order in progress".into(),
        };
        let s = store
            .record_certificate_outcome("apps/web", "web-tls", &pending)
            .expect("record");
        assert_eq!(s.failed_issuance_attempts, 0);
        assert_eq!(
            cond(&s, "Ready"),
            (false, "Issuing: ACME order in progress".into())
        );
        assert!(cond(&s, "Issuing").0);
        let failed = CertificateOutcome::Failed {
            reason: "the CA refused www.example.com".into(),
        };
        store
            .record_certificate_outcome("apps/web", "web-tls", &failed)
            .expect("record");
        let s = store
            .record_certificate_outcome("apps/web", "web-tls", &pending)
            .expect("record");
        // The failure counted once; the waiting pass keeps its reason on Ready.
        assert_eq!(s.failed_issuance_attempts, 1);
        let (ready, reason) = cond(&s, "Ready");
        assert!(!ready && reason.contains("the CA refused"), "{reason}");
    }
}
