//! The log's ed25519 key and its checkpoints.
//!
//! A checkpoint commits to (origin, tree size, root hash, issued time); the signed text
//! is, one per line and newline-terminated,
//!
//! ```text
//! <origin>
//! <tree size, decimal>
//! <root hash, base64>
//! <issued at, RFC 3339 with microseconds, UTC>
//! ```
//!
//! The key is the 32-byte seed, base64 in a file (`audit.signing_key_file`) or in
//! `MEDBOOK_AUDIT__SIGNING_KEY`. It is never logged: [`SigningKey`]'s `Debug` shows its
//! key id only. Checkpoints are verified against the current key and any
//! `audit.previous_public_keys` (rotation).

use crate::merkle::Hash;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer, Verifier, VerifyingKey};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::path::Path;

/// Hex of the first 8 bytes of SHA-256 of the public key.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    hex::encode(digest.get(..8).unwrap_or_default())
}

/// A base64 ed25519 public key.
pub fn parse_public_key(text: &str) -> anyhow::Result<VerifyingKey> {
    let bytes = B64
        .decode(text.trim())
        .map_err(|e| anyhow::anyhow!("not base64: {e}"))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("an ed25519 public key has 32 bytes"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| anyhow::anyhow!("not an ed25519 key: {e}"))
}

/// The log's signing key. `Debug` never shows it.
pub struct SigningKey(ed25519_dalek::SigningKey);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(key_id={})", self.key_id())
    }
}

impl SigningKey {
    pub fn generate() -> Self {
        Self(ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// From the base64 of the 32-byte seed.
    pub fn from_base64(secret: &SecretString) -> anyhow::Result<Self> {
        let bytes = B64
            .decode(secret.expose_secret().trim())
            .map_err(|_| anyhow::anyhow!("the signing key is not base64"))?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("the signing key must be 32 bytes (an ed25519 seed)"))?;
        Ok(Self(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// Reads a key file written by [`SigningKey::write_new`] (`keygen`).
    pub fn read_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        Self::from_base64(&SecretString::from(text))
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// Writes the key to a new file `path` (never over an existing one), readable by
    /// its owner only.
    pub fn write_new(&self, path: &Path) -> anyhow::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
        let text = SecretString::from(format!("{}\n", B64.encode(self.0.to_bytes())));
        file.write_all(text.expose_secret().as_bytes())?;
        file.sync_all()?;
        Ok(())
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.0.verifying_key()
    }

    pub fn public_key_base64(&self) -> String {
        B64.encode(self.verifying_key().as_bytes())
    }

    pub fn key_id(&self) -> String {
        key_id(&self.verifying_key())
    }

    fn sign(&self, message: &[u8]) -> Signature {
        self.0.sign(message)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub tree_size: u64,
    pub root: Hash,
    /// Whole microseconds.
    pub issued_at: DateTime<Utc>,
    pub signature: Vec<u8>,
    pub key_id: String,
    pub public_key: Vec<u8>,
    pub signed_text: Vec<u8>,
}

/// The bytes a checkpoint's signature covers.
pub fn signed_text(origin: &str, tree_size: u64, root: &Hash, issued_at: DateTime<Utc>) -> String {
    format!(
        "{origin}\n{tree_size}\n{}\n{}\n",
        B64.encode(root),
        issued_at.to_rfc3339_opts(SecondsFormat::Micros, true)
    )
}

impl Checkpoint {
    /// Signs (origin, size, root, issued_at).
    pub fn sign(
        key: &SigningKey,
        origin: &str,
        tree_size: u64,
        root: Hash,
        issued_at: DateTime<Utc>,
    ) -> Self {
        let issued_at = crate::record::to_micros(issued_at);
        let text = signed_text(origin, tree_size, &root, issued_at);
        let signature = key.sign(text.as_bytes());
        Self {
            origin: origin.to_owned(),
            tree_size,
            root,
            issued_at,
            signature: signature.to_bytes().to_vec(),
            key_id: key.key_id(),
            public_key: key.verifying_key().as_bytes().to_vec(),
            signed_text: text.into_bytes(),
        }
    }

    /// Checks that the signed text is this checkpoint's (origin, size, root, time) and
    /// that one of `trusted` signed it; returns that key's id.
    pub fn verify(&self, trusted: &[VerifyingKey]) -> Result<String, CheckpointError> {
        let expected = signed_text(&self.origin, self.tree_size, &self.root, self.issued_at);
        if expected.as_bytes() != self.signed_text.as_slice() {
            return Err(CheckpointError::TextMismatch);
        }
        let signature =
            Signature::from_slice(&self.signature).map_err(|_| CheckpointError::BadSignature)?;
        // The key it names first; any trusted key will do.
        let mut keys: Vec<&VerifyingKey> = trusted.iter().collect();
        keys.sort_by_key(|k| key_id(k) != self.key_id);
        keys.into_iter()
            .find(|k| k.verify(&self.signed_text, &signature).is_ok())
            .map(key_id)
            .ok_or(if trusted.is_empty() {
                CheckpointError::NoTrustedKey
            } else {
                CheckpointError::BadSignature
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("the signed text does not match the checkpoint's fields")]
    TextMismatch,
    #[error("the signature does not verify with any trusted key")]
    BadSignature,
    #[error("no trusted public key is configured")]
    NoTrustedKey,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_verifies_with_its_key_or_a_previous_one_only() {
        let key = SigningKey::generate();
        let old = SigningKey::generate();
        let cp = Checkpoint::sign(&key, "medbook-audit", 3, [7; 32], Utc::now());
        assert_eq!(cp.verify(&[key.verifying_key()]).unwrap(), key.key_id());
        assert_eq!(
            cp.verify(&[old.verifying_key(), key.verifying_key()])
                .unwrap(),
            key.key_id()
        );
        assert_eq!(
            cp.verify(&[old.verifying_key()]),
            Err(CheckpointError::BadSignature)
        );
        assert_eq!(cp.verify(&[]), Err(CheckpointError::NoTrustedKey));
        let mut forged = cp.clone();
        forged.tree_size = 4;
        assert_eq!(
            forged.verify(&[key.verifying_key()]),
            Err(CheckpointError::TextMismatch)
        );
        forged.signed_text = signed_text(&forged.origin, 4, &forged.root, forged.issued_at).into();
        assert_eq!(
            forged.verify(&[key.verifying_key()]),
            Err(CheckpointError::BadSignature)
        );
    }

    #[test]
    fn keys_round_trip_through_files_and_never_show_in_debug() {
        let dir = std::env::temp_dir().join(format!("audit-key-{}", uuid::Uuid::new_v4()));
        let path = dir.join("k");
        let key = SigningKey::generate();
        key.write_new(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(key.write_new(&path).is_err(), "never overwrites");
        let read = SigningKey::read_file(&path).unwrap();
        assert_eq!(read.key_id(), key.key_id());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!format!("{key:?}").contains(text.trim()));
        assert_eq!(
            parse_public_key(&key.public_key_base64()).unwrap(),
            key.verifying_key()
        );
        assert!(SigningKey::from_base64(&SecretString::from("c2hvcnQ=")).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
