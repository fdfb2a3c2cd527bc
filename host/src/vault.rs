//! A tenant's view of the backend: its keys (from [`crate::layout`]), and
//! encryption of every value on the way in and out. Policy records and
//! secret bundles live under separate prefixes; the policy's `store` import
//! reaches only the first.

use crate::backend::{Backend, BackendError, Write};
use crate::crypto::{CryptoError, KeyRing, Sealer};
use crate::layout::{self, Binding, open_envelope, secrets_aad, secrets_envelope, site_aad};
use crate::secrets::Secrets;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

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
    /// The tenant's data keys: they seal every record of the tenant.
    keys: Arc<KeyRing>,
    /// The server's keys: they wrap the data keys, and open records
    /// written before the tenant had a data key.
    server: Arc<KeyRing>,
    tenant: String,
    /// Decrypted bundles by credential id, for leases: reading and
    /// decrypting a bundle on every acquire cost more than the policy's
    /// decision. Every write of a bundle through the vault (a refresh on
    /// the worker thread included) drops its entry; `Secrets` zeroizes
    /// itself when the last holder lets go.
    cache: Mutex<HashMap<String, Arc<Secrets>>>,
    /// Bundle writes so far: a copy taken from the cache stays current
    /// while this has not moved (see [`Vault::secrets_written`]).
    written: AtomicU64,
}

impl Vault {
    /// A vault whose records are sealed with `keys` itself (no data key:
    /// answers sealed in files, tests).
    pub fn new(backend: Arc<dyn Backend>, keys: Arc<KeyRing>, tenant: &str) -> Self {
        Self::with_data_keys(backend, keys.clone(), keys, tenant)
    }

    /// A tenant's vault: records sealed with its data keys `data`, which
    /// `server` wraps (see [`crate::tenant_keys::open_or_create`]).
    pub fn with_data_keys(
        backend: Arc<dyn Backend>,
        data: Arc<KeyRing>,
        server: Arc<KeyRing>,
        tenant: &str,
    ) -> Self {
        Vault {
            backend,
            keys: data,
            server,
            tenant: tenant.to_string(),
            cache: Mutex::new(HashMap::new()),
            written: AtomicU64::new(0),
        }
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The tenant's data keys.
    pub fn keys(&self) -> &Arc<KeyRing> {
        &self.keys
    }

    /// The server's keys (they wrap the data keys).
    pub fn server_keys(&self) -> &Arc<KeyRing> {
        &self.server
    }

    /// Seals with the data keys; opens with them or, for a record written
    /// before the tenant had one, with the server's keys.
    pub fn sealer(&self) -> Sealer<'_> {
        Sealer {
            data: &self.keys,
            legacy: (!Arc::ptr_eq(&self.keys, &self.server)).then_some(&*self.server),
        }
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The backend key of a policy record.
    pub fn policy_key(&self, key: &str) -> String {
        layout::policy_key(&self.tenant, key)
    }

    /// The prefix of every policy record of this tenant.
    pub fn policy_prefix(&self) -> String {
        self.policy_key("")
    }

    fn secrets_key(&self, id: &str) -> String {
        layout::secrets_key(&self.tenant, id)
    }

    /// Encrypts a value bound to its backend key.
    pub fn seal(&self, full_key: &str, value: &[u8]) -> Result<Vec<u8>, VaultError> {
        self.keys
            .seal(full_key.as_bytes(), value)
            .map_err(VaultError::Seal)
    }

    /// Decrypts a value read from its backend key.
    pub fn open(&self, full_key: &str, sealed: &[u8]) -> Result<Vec<u8>, VaultError> {
        self.sealer()
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
        let stored = self.seal_secrets(site, id, secrets)?;
        self.backend
            .apply(&[Write::Put(self.secrets_key(id), stored)])?;
        self.forget(id);
        Ok(())
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<String, Arc<Secrets>>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A credential's secrets, decrypted once and then shared (a lease
    /// costs no read, decryption or copy of them). The read happens under
    /// the cache's lock, so a writer's drop, which follows its write,
    /// cannot slip between the read and the insert and leave old secrets
    /// behind. An absent bundle is not cached.
    pub fn cached_secrets(&self, site: &str, id: &str) -> Result<Option<Arc<Secrets>>, VaultError> {
        let mut cache = self.cache();
        if let Some(s) = cache.get(id) {
            return Ok(Some(s.clone()));
        }
        let Some(secrets) = self.get_secrets(site, id)? else {
            return Ok(None);
        };
        let secrets = Arc::new(secrets);
        cache.insert(id.to_string(), secrets.clone());
        Ok(Some(secrets))
    }

    /// Drops `id`'s decrypted copy after its bundle changed.
    fn forget(&self, id: &str) {
        let mut cache = self.cache();
        cache.remove(id);
        self.written.fetch_add(1, Ordering::Release);
    }

    /// How many bundle writes went through this vault. A caller that keeps
    /// secrets from [`Vault::cached_secrets`] beside this number (read
    /// before the call) may reuse them while it is unchanged: the number
    /// moves after each write drops its cache entry.
    pub fn secrets_written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    fn seal_secrets(&self, site: &str, id: &str, secrets: &Secrets) -> Result<Vec<u8>, VaultError> {
        let key = self.secrets_key(id);
        let plain =
            zeroize::Zeroizing::new(serde_json::to_vec(secrets).expect("secrets serialise"));
        let sealed = self
            .keys
            .seal(secrets_aad(&key, site).as_bytes(), &plain)
            .map_err(VaultError::Seal)?;
        let sealed_site = self
            .keys
            .seal(site_aad(&key).as_bytes(), site.as_bytes())
            .map_err(VaultError::Seal)?;
        Ok(secrets_envelope(&sealed_site, &sealed))
    }

    /// The stored bytes of a credential's secret bundle, if any.
    pub fn secrets_raw(&self, id: &str) -> Result<Option<Vec<u8>>, VaultError> {
        Ok(self.backend.get(&self.secrets_key(id))?)
    }

    /// Stores a credential's secrets only if the stored bundle is still
    /// `expected` (None: absent). Returns the bytes written, or None when
    /// another writer got there first. Durable at the backend's next sync.
    pub fn put_secrets_if(
        &self,
        site: &str,
        id: &str,
        secrets: &Secrets,
        expected: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, VaultError> {
        // Flushed with the record the add writes next (one sync for both).
        self.swap_secrets(site, id, secrets, expected, false)
    }

    /// Stores a credential's secrets durably only if the stored bundle is
    /// still the bytes `expected` (read before); false when another writer
    /// changed it meanwhile.
    pub fn replace_secrets_if(
        &self,
        site: &str,
        id: &str,
        secrets: &Secrets,
        expected: &[u8],
    ) -> Result<bool, VaultError> {
        Ok(self
            .swap_secrets(site, id, secrets, Some(expected), true)?
            .is_some())
    }

    /// Seals `secrets` and writes them if the stored bundle is `expected`;
    /// the bytes written, or None when another writer got there first.
    fn swap_secrets(
        &self,
        site: &str,
        id: &str,
        secrets: &Secrets,
        expected: Option<&[u8]>,
        durable: bool,
    ) -> Result<Option<Vec<u8>>, VaultError> {
        let stored = self.seal_secrets(site, id, secrets)?;
        let key = self.secrets_key(id);
        let swapped = if durable {
            self.backend
                .compare_and_swap(&key, expected, Some(&stored))?
        } else {
            self.backend
                .compare_and_swap_deferred(&key, expected, Some(&stored))?
        };
        if swapped {
            self.forget(id);
        }
        Ok(swapped.then_some(stored))
    }

    /// Deletes a secret bundle only if it still holds `expected`.
    pub fn delete_secrets_if(&self, id: &str, expected: &[u8]) -> Result<(), VaultError> {
        if self
            .backend
            .compare_and_swap(&self.secrets_key(id), Some(expected), None)?
        {
            self.forget(id);
        }
        Ok(())
    }

    /// Reads a credential's secrets.
    pub fn get_secrets(&self, site: &str, id: &str) -> Result<Option<Secrets>, VaultError> {
        Ok(self.get_secrets_versioned(site, id)?.map(|(s, _)| s))
    }

    /// Reads a credential's secrets with the stored bytes they were opened
    /// from, for a later [`Self::replace_secrets_if`]: one read, so the two
    /// always agree.
    pub fn get_secrets_versioned(
        &self,
        site: &str,
        id: &str,
    ) -> Result<Option<(Secrets, Vec<u8>)>, VaultError> {
        let key = self.secrets_key(id);
        let Some(stored) = self.backend.get(&key)? else {
            return Ok(None);
        };
        let secrets = self.open_secrets(&key, site, &stored)?;
        Ok(Some((secrets, stored)))
    }

    /// Opens the stored bundle `stored` of `key`, which must be `site`'s.
    fn open_secrets(&self, key: &str, site: &str, stored: &[u8]) -> Result<Secrets, VaultError> {
        let crypto = |error| VaultError::Crypto {
            key: key.to_string(),
            error,
        };
        let (sealed_site, sealed) =
            open_envelope(stored).ok_or_else(|| crypto(CryptoError::Malformed))?;
        let stored_site = self
            .sealer()
            .open(site_aad(key).as_bytes(), sealed_site)
            .map_err(crypto)?;
        // The bundle is bound to the site it was stored for; it must also be
        // the one the caller asked for, by the site's one name (a bundle
        // stored as `JD.COM` before names were normalised is `jd.com`'s).
        let stored_site =
            std::str::from_utf8(&stored_site).map_err(|_| crypto(CryptoError::Tampered))?;
        if stored_site != site
            && crate::names::site_key(stored_site) != crate::names::site_key(site)
        {
            return Err(crypto(CryptoError::Tampered));
        }
        let plain = self
            .sealer()
            .open(secrets_aad(key, stored_site).as_bytes(), sealed)
            .map_err(crypto)?;
        serde_json::from_slice(&plain).map_err(|_| VaultError::Format {
            key: key.to_string(),
        })
    }

    pub fn delete_secrets(&self, id: &str) -> Result<(), VaultError> {
        self.backend.apply(&[Write::Delete(self.secrets_key(id))])?;
        self.forget(id);
        Ok(())
    }
}

/// What opening a stored record found.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// Every sealed part opened; the key ids that seal them.
    Sealed(Vec<u32>),
    Plain,
    Unknown,
}

/// Opens every sealed part of a stored record (the plain text is dropped
/// at once): proof that it is readable and which keys it needs.
pub fn open_record(ring: Sealer<'_>, key: &str, value: &[u8]) -> Result<Opened, CryptoError> {
    match layout::binding(key) {
        Binding::Plain => Ok(Opened::Plain),
        Binding::Unknown => Ok(Opened::Unknown),
        Binding::Sealed(aad) => {
            ring.open(&aad, value)?;
            Ok(Opened::Sealed(vec![
                crate::crypto::sealed_key_id(value).expect("opened"),
            ]))
        }
        Binding::Secrets => {
            let (sealed_site, sealed) = open_envelope(value).ok_or(CryptoError::Malformed)?;
            let site = ring.open(site_aad(key).as_bytes(), sealed_site)?;
            let site = std::str::from_utf8(&site).map_err(|_| CryptoError::Malformed)?;
            ring.open(secrets_aad(key, site).as_bytes(), sealed)?;
            let id = crate::crypto::sealed_key_id;
            Ok(Opened::Sealed(vec![
                id(sealed_site).expect("opened"),
                id(sealed).expect("opened"),
            ]))
        }
    }
}

/// The record sealed again with the primary key, or None when it already
/// is (or is not a sealed record).
pub fn reseal_record(
    ring: Sealer<'_>,
    key: &str,
    value: &[u8],
) -> Result<Option<Vec<u8>>, CryptoError> {
    let primary = ring.primary_id();
    let under_primary = |v: &[u8]| crate::crypto::sealed_key_id(v) == Some(primary);
    match layout::binding(key) {
        Binding::Plain | Binding::Unknown => Ok(None),
        Binding::Sealed(aad) => {
            if under_primary(value) {
                return Ok(None);
            }
            let plain = ring.open(&aad, value)?;
            ring.seal(&aad, &plain).map(Some)
        }
        Binding::Secrets => {
            let (sealed_site, sealed) = open_envelope(value).ok_or(CryptoError::Malformed)?;
            if under_primary(sealed_site) && under_primary(sealed) {
                return Ok(None);
            }
            let site_aad = site_aad(key);
            let site = ring.open(site_aad.as_bytes(), sealed_site)?;
            let site_str = std::str::from_utf8(&site).map_err(|_| CryptoError::Malformed)?;
            let aad = secrets_aad(key, site_str);
            let plain = ring.open(aad.as_bytes(), sealed)?;
            let new_site = ring.seal(site_aad.as_bytes(), &site)?;
            let new = ring.seal(aad.as_bytes(), &plain)?;
            Ok(Some(secrets_envelope(&new_site, &new)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Vault;
    use crate::backend::MemoryBackend;
    use crate::crypto::KeyRing;
    use crate::secrets::Secrets;
    use std::sync::Arc;

    /// A bundle stored under an older spelling of its site (before names
    /// were normalised) is read under the site's one name; another site's
    /// name is still refused.
    #[test]
    fn a_bundle_is_read_by_its_sites_one_name() {
        let vault = Vault::new(
            Arc::new(MemoryBackend::new()),
            Arc::new(KeyRing::single(1, &[7; 32])),
            "default",
        );
        let mut s = Secrets::default();
        s.password = Some("pw".into());
        vault
            .put_secrets_if("WWW.JD.COM", "a1", &s, None)
            .unwrap()
            .unwrap();
        let got = vault.get_secrets("jd.com", "a1").unwrap().unwrap();
        assert_eq!(got.password.as_deref(), Some("pw"));
        assert!(vault.get_secrets("taobao.com", "a1").is_err());
    }
}
