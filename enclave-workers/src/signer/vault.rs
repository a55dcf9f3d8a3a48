//! A signer's vault: what only this signer may ever read (its Paillier primes, its aux
//! info, its key shares), sealed at rest under a key bound to this signer (docs/design.md
//! §7). Dev mode: a random 256-bit key file (`vault.key`, 0600) in the signer's state
//! directory, so no other role, and not the node, can open it; a production enclave would
//! take the key from KMS, released only to this signer's measurement.
//!
//! Each item is AES-256-GCM with a fresh 96-bit nonce; the associated data names the
//! format, the role and the item, so an item moved to another name or another signer's
//! vault does not open. Writes are durable (temporary file, fsync, rename).

use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand_core::{OsRng, RngCore as _};
use zeroize::Zeroizing;

/// The vault's key file in the state directory.
pub const KEY_FILE: &str = "vault.key";
/// Where the sealed items are.
pub const DIR: &str = "vault";

/// Why the vault failed.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An item does not open with this signer's key (tampered, or another signer's).
    #[error("{0}: does not open with this signer's vault key")]
    Open(String),
}

/// A signer's vault.
pub struct Vault {
    dir: PathBuf,
    role: String,
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("dir", &self.dir)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

fn io(path: &Path, e: impl std::fmt::Display) -> VaultError {
    VaultError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

impl Vault {
    /// The vault of `role` in `state_dir`, its key made on first use.
    ///
    /// # Errors
    /// [`VaultError::Io`].
    pub fn open(state_dir: &Path, role: &str) -> Result<Self, VaultError> {
        let dir = state_dir.join(DIR);
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let key_path = state_dir.join(KEY_FILE);
        let mut key = Zeroizing::new([0u8; 32]);
        match std::fs::read(&key_path) {
            Ok(bytes) => {
                if bytes.len() != 32 {
                    return Err(io(&key_path, "not a 32-byte key"));
                }
                key.copy_from_slice(&bytes);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                OsRng.fill_bytes(key.as_mut());
                crate::durable::write_with_mode(&key_path, key.as_ref(), 0o600)
                    .map_err(|e| io(&key_path, e))?;
            }
            Err(e) => return Err(io(&key_path, e)),
        }
        Ok(Self {
            dir,
            role: role.to_string(),
            key,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.sealed"))
    }

    fn aad(&self, name: &str) -> Vec<u8> {
        format!("govern/signer-vault/v1\0{}\0{name}", self.role).into_bytes()
    }

    /// Seal `plain` as `name` (a file name: letters, digits, `-`, `_`, `.`).
    ///
    /// # Errors
    /// [`VaultError::Io`].
    pub fn put(&self, name: &str, plain: &[u8]) -> Result<(), VaultError> {
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let cipher = Aes256Gcm::new(self.key.as_ref().into());
        let aad = self.aad(name);
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .map_err(|_| io(&self.path(name), "cannot seal"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        let path = self.path(name);
        crate::durable::write_with_mode(&path, &out, 0o600).map_err(|e| io(&path, e))
    }

    /// The item `name`, opened; `None` when there is none.
    ///
    /// # Errors
    /// [`VaultError::Open`] when it does not open; [`VaultError::Io`].
    pub fn get(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, VaultError> {
        let path = self.path(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path, e)),
        };
        if bytes.len() < 12 + 16 {
            return Err(VaultError::Open(name.to_string()));
        }
        let cipher = Aes256Gcm::new(self.key.as_ref().into());
        let aad = self.aad(name);
        cipher
            .decrypt(
                Nonce::from_slice(&bytes[..12]),
                Payload {
                    msg: &bytes[12..],
                    aad: &aad,
                },
            )
            .map(|p| Some(Zeroizing::new(p)))
            .map_err(|_| VaultError::Open(name.to_string()))
    }

    /// Remove `name` (absent is fine).
    ///
    /// # Errors
    /// [`VaultError::Io`].
    pub fn remove(&self, name: &str) -> Result<(), VaultError> {
        let path = self.path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_open_only_in_their_own_vault_under_their_own_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Vault::open(&dir.path().join("a"), "signer-1").expect("vault");
        a.put("share-x", b"secret").expect("put");
        assert_eq!(
            a.get("share-x")
                .expect("get")
                .as_deref()
                .map(|v| v.as_slice()),
            Some(&b"secret"[..])
        );
        assert!(a.get("absent").expect("get").is_none());
        // Reopened: the same key file.
        let again = Vault::open(&dir.path().join("a"), "signer-1").expect("vault");
        assert!(again.get("share-x").expect("get").is_some());
        // Moved to another name, or into another signer's vault: does not open.
        std::fs::copy(a.path("share-x"), a.path("share-y")).expect("copy");
        assert!(matches!(a.get("share-y"), Err(VaultError::Open(_))));
        let b = Vault::open(&dir.path().join("b"), "signer-2").expect("vault");
        std::fs::copy(a.path("share-x"), b.path("share-x")).expect("copy");
        assert!(matches!(b.get("share-x"), Err(VaultError::Open(_))));
        // A flipped byte: does not open.
        let mut bytes = std::fs::read(a.path("share-x")).expect("read");
        bytes[20] ^= 1;
        std::fs::write(a.path("share-x"), bytes).expect("write");
        assert!(matches!(a.get("share-x"), Err(VaultError::Open(_))));
    }
}
