//! Envelope encryption of secret versions with AES-256-GCM (aws-lc-rs).
//!
//! Each version gets its own random 256-bit data key. The payload is sealed with the data key,
//! with the secret's namespace, name and version as associated data, so a ciphertext cannot be
//! moved to another secret or version. The data key is sealed with the master key, bound to the
//! same identity and to the master key's ID. Rotating the master key re-seals data keys only.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use zeroize::Zeroizing;

use super::SecretStoreError;

const MAGIC: &[u8; 4] = b"EPS1";
pub(crate) const KEY_LEN: usize = 32;

/// A master key and its public identifier.
pub struct MasterKey {
    id: String,
    key: LessSafeKey,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

impl MasterKey {
    /// A master key from 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SecretStoreError> {
        if bytes.len() != KEY_LEN {
            return Err(SecretStoreError::BadMasterKey(format!(
                "a master key is {KEY_LEN} bytes, this one has {}",
                bytes.len()
            )));
        }
        let id_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, bytes);
        let tag = aws_lc_rs::hmac::sign(&id_key, b"edgeplane master key id v1");
        let id: String = tag.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let key = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| SecretStoreError::BadMasterKey("not an AES-256 key".to_string()))?;
        Ok(MasterKey {
            id,
            key: LessSafeKey::new(key),
        })
    }

    /// A new random master key, with its bytes (to be saved by the caller).
    pub fn generate() -> Result<(Self, Zeroizing<Vec<u8>>), SecretStoreError> {
        let mut bytes = Zeroizing::new(vec![0u8; KEY_LEN]);
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| SecretStoreError::Crypto)?;
        Ok((Self::from_bytes(&bytes)?, bytes))
    }

    /// The key's identifier: 8 bytes of an HMAC of the key, in hex. It reveals nothing of the key.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A sealed secret version as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sealed {
    pub(crate) key_id: String,
    /// Nonce, then the data key sealed with the master key, then its tag.
    pub(crate) wrapped_key: Vec<u8>,
    /// Nonce, then the payload sealed with the data key, then its tag.
    pub(crate) payload: Vec<u8>,
}

impl Sealed {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(8 + self.key_id.len() + self.wrapped_key.len() + self.payload.len());
        out.extend_from_slice(MAGIC);
        out.push(self.key_id.len() as u8);
        out.extend_from_slice(self.key_id.as_bytes());
        out.extend_from_slice(&(self.wrapped_key.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.wrapped_key);
        out.extend_from_slice(&self.payload);
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Sealed> {
        let rest = bytes.strip_prefix(MAGIC)?;
        let (&id_len, rest) = rest.split_first()?;
        let id = rest.get(..usize::from(id_len))?;
        let rest = &rest[usize::from(id_len)..];
        let wl = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
        let wrapped = rest.get(2..2 + wl)?;
        let payload = rest.get(2 + wl..)?;
        Some(Sealed {
            key_id: String::from_utf8(id.to_vec()).ok()?,
            wrapped_key: wrapped.to_vec(),
            payload: payload.to_vec(),
        })
    }
}

/// The associated data binding a payload to its secret and version.
fn payload_aad(namespace: &str, name: &str, version: u64) -> Vec<u8> {
    format!("edgeplane-secret-v1\0{namespace}\0{name}\0{version}").into_bytes()
}

fn key_aad(key_id: &str, namespace: &str, name: &str, version: u64) -> Vec<u8> {
    format!("edgeplane-data-key-v1\0{key_id}\0{namespace}\0{name}\0{version}").into_bytes()
}

fn seal_with(key: &LessSafeKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SecretStoreError> {
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| SecretStoreError::Crypto)?;
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
    out.extend_from_slice(&nonce);
    let mut body = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut body,
    )
    .map_err(|_| SecretStoreError::Crypto)?;
    out.extend_from_slice(&body);
    body.iter_mut().for_each(|b| *b = 0);
    Ok(out)
}

fn open_with(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let nonce = Nonce::try_assume_unique_for_key(sealed.get(..NONCE_LEN)?).ok()?;
    let mut body = Zeroizing::new(sealed.get(NONCE_LEN..)?.to_vec());
    let len = key
        .open_in_place(nonce, Aad::from(aad), &mut body)
        .ok()?
        .len();
    body.truncate(len);
    Some(body)
}

/// Seals a payload for `namespace/name` at `version` under `master`.
pub(crate) fn seal(
    master: &MasterKey,
    namespace: &str,
    name: &str,
    version: u64,
    plaintext: &[u8],
) -> Result<Sealed, SecretStoreError> {
    let mut dk = Zeroizing::new([0u8; KEY_LEN]);
    aws_lc_rs::rand::fill(dk.as_mut()).map_err(|_| SecretStoreError::Crypto)?;
    let data_key = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, dk.as_ref()).map_err(|_| SecretStoreError::Crypto)?,
    );
    let payload = seal_with(&data_key, &payload_aad(namespace, name, version), plaintext)?;
    let wrapped_key = seal_with(
        &master.key,
        &key_aad(&master.id, namespace, name, version),
        dk.as_ref(),
    )?;
    Ok(Sealed {
        key_id: master.id.clone(),
        wrapped_key,
        payload,
    })
}

/// Opens a sealed version with `master` (whose ID must match the record's).
pub(crate) fn open(
    master: &MasterKey,
    sealed: &Sealed,
    namespace: &str,
    name: &str,
    version: u64,
) -> Option<Zeroizing<Vec<u8>>> {
    let dk = open_with(
        &master.key,
        &key_aad(&master.id, namespace, name, version),
        &sealed.wrapped_key,
    )?;
    let data_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &dk).ok()?);
    open_with(
        &data_key,
        &payload_aad(namespace, name, version),
        &sealed.payload,
    )
}

/// Re-seals the data key of a version from `old` to `new`, leaving the payload untouched.
pub(crate) fn rewrap(
    old: &MasterKey,
    new: &MasterKey,
    sealed: &Sealed,
    namespace: &str,
    name: &str,
    version: u64,
) -> Option<Sealed> {
    let dk = open_with(
        &old.key,
        &key_aad(&old.id, namespace, name, version),
        &sealed.wrapped_key,
    )?;
    let wrapped_key = seal_with(&new.key, &key_aad(&new.id, namespace, name, version), &dk).ok()?;
    Some(Sealed {
        key_id: new.id.clone(),
        wrapped_key,
        payload: sealed.payload.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_rewrap() {
        let (k1, _) = MasterKey::generate().expect("key");
        let (k2, _) = MasterKey::generate().expect("key");
        assert_ne!(k1.id(), k2.id());
        let sealed = seal(&k1, "ns", "db", 3, b"s3cret-value").expect("seal");
        assert!(!sealed.payload.windows(12).any(|w| w == b"s3cret-value"));
        let decoded = Sealed::decode(&sealed.encode()).expect("decode");
        assert_eq!(decoded, sealed);
        assert_eq!(
            open(&k1, &sealed, "ns", "db", 3)
                .as_deref()
                .map(|v| v.as_slice()),
            Some(&b"s3cret-value"[..])
        );
        // Bound to its identity: another name, namespace or version does not open it.
        assert!(open(&k1, &sealed, "ns", "other", 3).is_none());
        assert!(open(&k1, &sealed, "other", "db", 3).is_none());
        assert!(open(&k1, &sealed, "ns", "db", 4).is_none());
        assert!(open(&k2, &sealed, "ns", "db", 3).is_none());
        let moved = rewrap(&k1, &k2, &sealed, "ns", "db", 3).expect("rewrap");
        assert_eq!(moved.payload, sealed.payload, "payload not re-encrypted");
        assert_eq!(moved.key_id, k2.id());
        assert!(open(&k2, &moved, "ns", "db", 3).is_some());
        assert!(open(&k1, &moved, "ns", "db", 3).is_none());
        // A flipped bit is detected.
        let mut bad = sealed.clone();
        let last = bad.payload.len() - 1;
        bad.payload[last] ^= 1;
        assert!(open(&k1, &bad, "ns", "db", 3).is_none());
        assert!(Sealed::decode(b"junk").is_none());
        assert!(MasterKey::from_bytes(&[0u8; 16]).is_err());
    }
}
