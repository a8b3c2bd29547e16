//! Where the master key comes from: a file (created on first start, mode 0600), a value taken
//! from the environment, or the output of a command. The key is never stored with the data.

use std::io::Write;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::crypto::MasterKey;
use super::SecretStoreError;

/// A source of the master key.
#[derive(Clone)]
pub enum MasterKeySource {
    /// A file holding the key in base64; created with a new random key when missing.
    File(PathBuf),
    /// The key in base64, as read from an environment variable.
    Value(Zeroizing<String>),
    /// A shell command whose standard output is the key in base64.
    Command(String),
}

impl std::fmt::Debug for MasterKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MasterKeySource::File(p) => write!(f, "File({})", p.display()),
            MasterKeySource::Value(_) => f.write_str("Value(<redacted>)"),
            MasterKeySource::Command(c) => write!(f, "Command({c:?})"),
        }
    }
}

/// The keys a store opens with: the current one and, during a master-key rotation that was
/// interrupted, the next one.
#[derive(Debug)]
pub struct LoadedKeys {
    pub current: MasterKey,
    pub next: Option<MasterKey>,
}

impl MasterKeySource {
    /// Loads the key (and a pending next key, for a file source).
    pub fn load(&self) -> Result<LoadedKeys, SecretStoreError> {
        match self {
            MasterKeySource::File(path) => {
                let current = match read_key_file(path)? {
                    Some(k) => k,
                    None => create_key_file(path)?,
                };
                let next = read_key_file(&next_path(path))?;
                Ok(LoadedKeys { current, next })
            }
            MasterKeySource::Value(v) => Ok(LoadedKeys {
                current: decode_key(v, "the master key value")?,
                next: None,
            }),
            MasterKeySource::Command(cmd) => {
                let out = std::process::Command::new("sh")
                    .args(["-c", cmd])
                    .stderr(std::process::Stdio::inherit())
                    .output()
                    .map_err(|e| {
                        SecretStoreError::BadMasterKey(format!(
                            "cannot run the master key command: {e}"
                        ))
                    })?;
                if !out.status.success() {
                    return Err(SecretStoreError::BadMasterKey(format!(
                        "the master key command exited with {}",
                        out.status
                    )));
                }
                let text = Zeroizing::new(String::from_utf8_lossy(&out.stdout).into_owned());
                Ok(LoadedKeys {
                    current: decode_key(&text, "the master key command's output")?,
                    next: None,
                })
            }
        }
    }
}

/// The file holding the next key while a rotation runs.
pub fn next_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".next");
    PathBuf::from(p)
}

/// Generates the next key and saves it beside `path` (durably) before a rotation starts.
pub fn create_next_key_file(path: &Path) -> Result<MasterKey, SecretStoreError> {
    let next = next_path(path);
    if let Some(k) = read_key_file(&next)? {
        return Ok(k);
    }
    create_key_file(&next)
}

/// Makes the next key the current one once a rotation finished (atomic rename).
pub fn promote_next_key_file(path: &Path) -> Result<(), SecretStoreError> {
    let next = next_path(path);
    std::fs::rename(&next, path).map_err(|e| io_err(path, e))?;
    sync_dir(path);
    Ok(())
}

fn decode_key(text: &str, what: &str) -> Result<MasterKey, SecretStoreError> {
    let bytes = Zeroizing::new(
        model::base64::decode(text.trim().as_bytes())
            .ok_or_else(|| SecretStoreError::BadMasterKey(format!("{what} is not base64")))?,
    );
    MasterKey::from_bytes(&bytes)
}

fn read_key_file(path: &Path) -> Result<Option<MasterKey>, SecretStoreError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let text = Zeroizing::new(text);
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(path)
                    .map_err(|e| io_err(path, e))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "master key file is readable by others; chmod 600 it");
                }
            }
            decode_key(&text, &format!("master key file {}", path.display())).map(Some)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, e)),
    }
}

fn create_key_file(path: &Path) -> Result<MasterKey, SecretStoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
    }
    let (key, bytes) = MasterKey::generate()?;
    let text = Zeroizing::new(format!("{}\n", model::base64::encode(&bytes)));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    f.write_all(text.as_bytes()).map_err(|e| io_err(path, e))?;
    f.sync_all().map_err(|e| io_err(path, e))?;
    sync_dir(path);
    tracing::info!(path = %path.display(), key_id = key.id(), "created a new master key");
    Ok(key)
}

fn sync_dir(path: &Path) {
    if let Some(parent) = path.parent() {
        if let Ok(d) = std::fs::File::open(parent) {
            let _ = d.sync_all();
        }
    }
}

fn io_err(path: &Path, e: std::io::Error) -> SecretStoreError {
    SecretStoreError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}
