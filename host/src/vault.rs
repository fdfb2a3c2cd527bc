//! A tenant's view of the backend: its key prefixes, and encryption of
//! every value on the way in and out. Policy records and secret bundles
//! live under separate prefixes; the policy's `store` import reaches only
//! the first.

use crate::backend::{Backend, BackendError, Write};
use crate::crypto::{CryptoError, KeyRing};
use crate::secrets::Secrets;
use std::fmt;
use std::sync::Arc;

/// Why a vault operation failed. Names the record, never a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VaultError {
    Backend(BackendError),
    /// A stored value failed decryption: tampered, moved, or another key.
    Crypto {
        key: String,
        error: CryptoError,
    },
    /// Encryption failed; nothing was written.
    Seal(CryptoError),
    /// A decrypted value did not parse.
    Format {
        key: String,
    },
}

impl fmt::Display for VaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VaultError::Backend(e) => write!(f, "{e}"),
            VaultError::Crypto { key, error } => write!(f, "stored record {key}: {error}"),
            VaultError::Seal(e) => write!(f, "encryption failed, nothing stored: {e}"),
            VaultError::Format { key } => {
                write!(f, "stored record {key} is not in the expected format")
            }
        }
    }
}

impl std::error::Error for VaultError {}

impl From<BackendError> for VaultError {
    fn from(e: BackendError) -> Self {
        VaultError::Backend(e)
    }
}

/// One tenant's encrypted slice of a backend.
pub struct Vault {
    backend: Arc<dyn Backend>,
    keys: Arc<KeyRing>,
    tenant: String,
}

impl Vault {
    pub fn new(backend: Arc<dyn Backend>, keys: Arc<KeyRing>, tenant: &str) -> Self {
        Vault {
            backend,
            keys,
            tenant: tenant.to_string(),
        }
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The backend key of a policy record.
    pub fn policy_key(&self, key: &str) -> String {
        format!("t/{}/p/{key}", self.tenant)
    }

    /// The prefix of every policy record of this tenant.
    pub fn policy_prefix(&self) -> String {
        self.policy_key("")
    }

    fn secrets_key(&self, id: &str) -> String {
        format!("t/{}/s/{id}", self.tenant)
    }

    /// Encrypts a value bound to its backend key.
    pub fn seal(&self, full_key: &str, value: &[u8]) -> Result<Vec<u8>, VaultError> {
        self.keys
            .seal(full_key.as_bytes(), value)
            .map_err(VaultError::Seal)
    }

    /// Decrypts a value read from its backend key.
    pub fn open(&self, full_key: &str, sealed: &[u8]) -> Result<Vec<u8>, VaultError> {
        self.keys
            .open(full_key.as_bytes(), sealed)
            .map(|v| v.to_vec())
            .map_err(|error| VaultError::Crypto {
                key: full_key.to_string(),
                error,
            })
    }

    /// Reads and decrypts a backend key.
    pub fn get(&self, full_key: &str) -> Result<Option<Vec<u8>>, VaultError> {
        match self.backend.get(full_key)? {
            Some(sealed) => self.open(full_key, &sealed).map(Some),
            None => Ok(None),
        }
    }

    /// Encrypts and stores a credential's secrets, bound to tenant, site and id.
    pub fn put_secrets(&self, site: &str, id: &str, secrets: &Secrets) -> Result<(), VaultError> {
        let key = self.secrets_key(id);
        let plain =
            zeroize::Zeroizing::new(serde_json::to_vec(secrets).expect("secrets serialise"));
        let sealed = self
            .keys
            .seal(secrets_aad(&key, site).as_bytes(), &plain)
            .map_err(VaultError::Seal)?;
        self.backend.apply(&[Write::Put(key, sealed)])?;
        Ok(())
    }

    /// Reads a credential's secrets.
    pub fn get_secrets(&self, site: &str, id: &str) -> Result<Option<Secrets>, VaultError> {
        let key = self.secrets_key(id);
        let Some(sealed) = self.backend.get(&key)? else {
            return Ok(None);
        };
        let plain = self
            .keys
            .open(secrets_aad(&key, site).as_bytes(), &sealed)
            .map_err(|error| VaultError::Crypto {
                key: key.clone(),
                error,
            })?;
        serde_json::from_slice(&plain)
            .map(Some)
            .map_err(|_| VaultError::Format { key })
    }

    pub fn delete_secrets(&self, id: &str) -> Result<(), VaultError> {
        self.backend.apply(&[Write::Delete(self.secrets_key(id))])?;
        Ok(())
    }
}

/// Secrets are bound to their record: key (tenant, id), site and kind.
fn secrets_aad(key: &str, site: &str) -> String {
    format!("{key}|site={site}|secrets")
}
