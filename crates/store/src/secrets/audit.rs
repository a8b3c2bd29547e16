//! The audit log: one JSON line per secret operation (who, what, which secret, when, outcome),
//! never a value. Appended to a file private to its owner; writes are flushed to disk.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use model::secret::Verb;
use serde::Serialize;

use super::{Caller, SecretStoreError};

pub(crate) struct AuditLog {
    file: Mutex<std::fs::File>,
}

#[derive(Serialize)]
struct Entry<'a> {
    time_ms: u128,
    identity: &'a str,
    verb: &'a str,
    secret: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
    outcome: &'a str,
}

impl AuditLog {
    pub(crate) fn open(path: &Path) -> Result<Self, SecretStoreError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| SecretStoreError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(AuditLog {
            file: Mutex::new(file),
        })
    }

    /// Appends one entry; `sync` forces it to disk (for writes, which are durable too).
    pub(crate) fn record(
        &self,
        caller: &Caller,
        verb: Verb,
        secret: &str,
        version: Option<u64>,
        outcome: &str,
        sync: bool,
    ) {
        let entry = Entry {
            time_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis()),
            identity: &caller.identity,
            verb: verb.as_str(),
            secret,
            version,
            outcome,
        };
        let Ok(mut line) = serde_json::to_vec(&entry) else {
            return;
        };
        line.push(b'\n');
        let mut f = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = f
            .write_all(&line)
            .and_then(|()| if sync { f.sync_data() } else { Ok(()) })
        {
            tracing::error!(error = %e, "cannot write the audit log");
        }
        if outcome == "denied" {
            tracing::warn!(
                identity = caller.identity,
                verb = verb.as_str(),
                secret,
                "secret access denied"
            );
        }
    }
}
