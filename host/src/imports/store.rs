//! `store`: the tenant's records, encrypted under the tenant's prefix.
//! Durable writes commit at once and are flushed to disk before the call's
//! answer reaches the caller, after the policy's lock is released (see
//! `HostState::write_durable`); lazy ones wait for the end of the call.

use crate::backend::{BackendError, Write};
use crate::bindings::store::{Host, ScanPage};
use crate::bindings::types::StoreError;
use crate::state::HostState;
use crate::vault::VaultError;

fn store_error(e: VaultError) -> StoreError {
    match e {
        VaultError::Backend(BackendError::Unavailable(m)) => StoreError::Unavailable(m),
        VaultError::Backend(BackendError::Corrupt(m)) => StoreError::Corrupt(m),
        VaultError::Backend(BackendError::Fenced(m)) => StoreError::Unavailable(m),
        // Names the record and what failed, never its content.
        other => StoreError::Corrupt(other.to_string()),
    }
}

/// Keys are the policy's own names; bound their size so a hostile policy
/// cannot bloat the store's index.
const MAX_KEY: usize = 512;
const MAX_VALUE: usize = 1 << 20;

fn check(key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
    if key.len() > MAX_KEY || value.is_some_and(|v| v.len() > MAX_VALUE) {
        return Err(StoreError::TooLarge);
    }
    Ok(())
}

impl HostState {
    fn read_policy(&self, full: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(pending) = self.lazy.get(full) {
            return match pending {
                Some(sealed) => self.vault.open(full, sealed).map(Some).map_err(store_error),
                None => Ok(None),
            };
        }
        self.vault.get(full).map_err(store_error)
    }
}

impl Host for HostState {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, StoreError> {
        self.record("store.get", &key);
        check(&key, None)?;
        self.read_policy(&self.vault.policy_key(&key))
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), StoreError> {
        if self.recorder.is_some() {
            self.record("store.set", (&key, String::from_utf8_lossy(&value)));
        }
        check(&key, Some(&value))?;
        let full = self.vault.policy_key(&key);
        let sealed = self.vault.seal(&full, &value).map_err(store_error)?;
        self.lazy.remove(&full);
        self.write_durable(vec![Write::Put(full, sealed)])
            .map_err(|e| store_error(e.into()))
    }

    fn set_lazy(&mut self, key: String, value: Vec<u8>) -> Result<(), StoreError> {
        // Skipped unless recording: this is on the counter-flush path.
        if self.recorder.is_some() {
            self.record("store.set-lazy", (&key, String::from_utf8_lossy(&value)));
        }
        check(&key, Some(&value))?;
        let full = self.vault.policy_key(&key);
        let sealed = self.vault.seal(&full, &value).map_err(store_error)?;
        self.lazy.insert(full, Some(sealed));
        Ok(())
    }

    fn delete(&mut self, key: String) -> Result<bool, StoreError> {
        self.record("store.delete", &key);
        check(&key, None)?;
        let full = self.vault.policy_key(&key);
        let pending = self.lazy.remove(&full);
        let existed = match pending {
            Some(v) => v.is_some(),
            None => self
                .vault
                .backend()
                .get(&full)
                .map_err(|e| store_error(e.into()))?
                .is_some(),
        };
        self.write_durable(vec![Write::Delete(full)])
            .map_err(|e| store_error(e.into()))?;
        Ok(existed)
    }

    fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, StoreError> {
        self.record(
            "store.compare-and-swap",
            (
                &key,
                expected.as_deref().map(String::from_utf8_lossy),
                new.as_deref().map(String::from_utf8_lossy),
            ),
        );
        check(&key, new.as_deref())?;
        self.commit_lazy().map_err(store_error)?;
        let full = self.vault.policy_key(&key);
        let backend = self.vault.backend().clone();
        // Ciphertexts are randomised: compare plaintexts, swap on the exact
        // bytes read so a concurrent writer still makes the swap fail.
        let raw = backend.get(&full).map_err(|e| store_error(e.into()))?;
        let current = match &raw {
            Some(sealed) => Some(self.vault.open(&full, sealed).map_err(store_error)?),
            None => None,
        };
        if current != expected {
            return Ok(false);
        }
        let sealed = match &new {
            Some(v) => Some(self.vault.seal(&full, v).map_err(store_error)?),
            None => None,
        };
        backend
            .compare_and_swap(&full, raw.as_deref(), sealed.as_deref())
            .map_err(|e| store_error(e.into()))
    }

    fn scan(
        &mut self,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> Result<ScanPage, StoreError> {
        self.record("store.scan", (&prefix, &after));
        check(&prefix, None)?;
        self.commit_lazy().map_err(store_error)?;
        let base = self.vault.policy_prefix();
        let full_prefix = format!("{base}{prefix}");
        let full_after = after.as_deref().map(|a| format!("{base}{a}"));
        let limit = limit.clamp(1, 10_000) as usize;
        let rows = self
            .vault
            .backend()
            .scan(&full_prefix, full_after.as_deref(), limit + 1)
            .map_err(|e| store_error(e.into()))?;
        let more = rows.len() > limit;
        let mut entries = Vec::with_capacity(rows.len().min(limit));
        for (full, sealed) in rows.into_iter().take(limit) {
            let value = self.vault.open(&full, &sealed).map_err(store_error)?;
            entries.push((full[base.len()..].to_string(), value));
        }
        let next = if more {
            entries.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        Ok(ScanPage { entries, next })
    }
}
