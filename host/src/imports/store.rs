//! `store`: the tenant's records, encrypted under the tenant's prefix.
//! Durable writes commit at once and are flushed to disk before the call's
//! answer reaches the caller, after the policy's lock is released (see
//! `HostState::write_durable`); lazy ones wait for the end of the call.
//!
//! Every key is checked before it is used (no empty, absolute, `..` or
//! control-character key, none shaped like a store key of its own), every
//! value against `value_bytes`, and every write against the tenant's
//! `store_keys` and `store_bytes`: the usage is counted once when the
//! instance is made and then kept by each write's delta (a write reads the
//! size of what it replaces, a point read; never a scan). A refusal is a
//! store error to the policy and, whatever the policy makes of it, the
//! call's [`crate::Error::Limit`].

use crate::backend::{BackendError, Write};
use crate::bindings::store::{Host, ScanPage};
use crate::bindings::types::StoreError;
use crate::layout::TENANT_PREFIX;
use crate::limits::{LimitHit, MAX_KEY_BYTES, StoreUsage};
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

fn backend_error(e: BackendError) -> StoreError {
    store_error(e.into())
}

/// Why `key` is not a name a policy may use, if it is not. A scan's prefix
/// (`scan`) may be empty: it lists every record of the tenant. The answer
/// describes the key without quoting it (it may be anything).
pub(crate) fn key_problem(key: &str, scan: bool) -> Option<&'static str> {
    if key.is_empty() && !scan {
        return Some("an empty key");
    }
    if key.chars().any(char::is_control) {
        return Some("a key with a control character");
    }
    if key.starts_with('/') {
        return Some("an absolute key (starting with /)");
    }
    if key.split('/').any(|seg| seg == ".." || seg == ".") {
        return Some("a key with a `..` or `.` segment");
    }
    if key.starts_with(TENANT_PREFIX) {
        return Some("a key shaped like a tenant's store prefix (t/...)");
    }
    None
}

impl HostState {
    /// Refuses a key the policy may not use, recording the limit.
    fn check_key(&mut self, key: &str, scan: bool) -> Result<(), StoreError> {
        if key.len() > MAX_KEY_BYTES {
            self.hit(LimitHit::new(
                "store_key",
                format!("a key of {} bytes (at most {MAX_KEY_BYTES})", key.len()),
            ));
            return Err(StoreError::TooLarge);
        }
        if let Some(why) = key_problem(key, scan) {
            self.hit(LimitHit::new("store_key", format!("refused {why}")));
            return Err(StoreError::InvalidKey(why.to_string()));
        }
        Ok(())
    }

    fn check_value(&mut self, value: &[u8]) -> Result<(), StoreError> {
        let max = self.sandbox.value_bytes;
        if value.len() > max {
            self.hit(LimitHit::new(
                "value_bytes",
                format!("a value of {} bytes (at most {max})", value.len()),
            ));
            return Err(StoreError::TooLarge);
        }
        Ok(())
    }

    /// The sealed size now stored under `full` (a pending lazy write
    /// counts), for the write that replaces it.
    fn stored_size(&self, full: &str) -> Result<Option<usize>, StoreError> {
        if let Some(pending) = self.lazy.get(full) {
            return Ok(pending.as_ref().map(Vec::len));
        }
        Ok(self
            .vault
            .backend()
            .get(full)
            .map_err(backend_error)?
            .map(|v| v.len()))
    }

    /// The usage after replacing `old` sealed bytes under `full` by `new`
    /// (none: absent), or the quota it would pass. Shrinking always fits.
    fn usage_after(
        &mut self,
        full: &str,
        old: Option<usize>,
        new: Option<usize>,
    ) -> Result<StoreUsage, StoreError> {
        let size = |v: Option<usize>| v.map_or(0, |n| (n + full.len()) as u64);
        let now = self.usage;
        let after = StoreUsage {
            keys: now.keys.saturating_sub(u64::from(old.is_some())) + u64::from(new.is_some()),
            bytes: now.bytes.saturating_sub(size(old)) + size(new),
        };
        let (keys, bytes) = (self.sandbox.store_keys, self.sandbox.store_bytes);
        if after.keys > now.keys && after.keys > keys {
            self.hit(LimitHit::new(
                "store_keys",
                format!(
                    "the policy's store holds {} keys (at most {keys})",
                    now.keys
                ),
            ));
            return Err(StoreError::QuotaExceeded);
        }
        if after.bytes > now.bytes && after.bytes > bytes {
            self.hit(LimitHit::new(
                "store_bytes",
                format!(
                    "the policy's store would hold {} bytes (at most {bytes})",
                    after.bytes
                ),
            ));
            return Err(StoreError::QuotaExceeded);
        }
        Ok(after)
    }

    /// Counts what the policy's records take, once per instance (the scan
    /// pages through keys and sealed values without opening them).
    pub(crate) fn count_usage(&mut self) -> Result<(), BackendError> {
        let prefix = self.vault.policy_prefix();
        let backend = self.vault.backend().clone();
        let mut usage = StoreUsage::default();
        let mut after: Option<String> = None;
        loop {
            let page = backend.scan(&prefix, after.as_deref(), 10_000)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (key, value) in &page {
                usage.keys += 1;
                usage.bytes += (key.len() + value.len()) as u64;
            }
            if page.len() < 10_000 {
                break;
            }
        }
        self.usage = usage;
        Ok(())
    }

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
        self.check_key(&key, false)?;
        self.read_policy(&self.vault.policy_key(&key))
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), StoreError> {
        if self.recorder.is_some() {
            self.record("store.set", (&key, String::from_utf8_lossy(&value)));
        }
        self.check_key(&key, false)?;
        self.check_value(&value)?;
        let full = self.vault.policy_key(&key);
        let sealed = self.vault.seal(&full, &value).map_err(store_error)?;
        let old = self.stored_size(&full)?;
        let usage = self.usage_after(&full, old, Some(sealed.len()))?;
        self.lazy.remove(&full);
        self.write_durable(vec![Write::Put(full, sealed)])
            .map_err(backend_error)?;
        self.usage = usage;
        Ok(())
    }

    fn set_lazy(&mut self, key: String, value: Vec<u8>) -> Result<(), StoreError> {
        // Skipped unless recording: this is on the counter-flush path.
        if self.recorder.is_some() {
            self.record("store.set-lazy", (&key, String::from_utf8_lossy(&value)));
        }
        self.check_key(&key, false)?;
        self.check_value(&value)?;
        let full = self.vault.policy_key(&key);
        let sealed = self.vault.seal(&full, &value).map_err(store_error)?;
        let old = self.stored_size(&full)?;
        // Counted now: a call that traps or hits a limit drops its lazy
        // writes and the instance, and the next one counts afresh.
        self.usage = self.usage_after(&full, old, Some(sealed.len()))?;
        self.lazy.insert(full, Some(sealed));
        Ok(())
    }

    fn delete(&mut self, key: String) -> Result<bool, StoreError> {
        self.record("store.delete", &key);
        self.check_key(&key, false)?;
        let full = self.vault.policy_key(&key);
        let old = self.stored_size(&full)?;
        let usage = self.usage_after(&full, old, None)?;
        self.lazy.remove(&full);
        self.write_durable(vec![Write::Delete(full)])
            .map_err(backend_error)?;
        self.usage = usage;
        Ok(old.is_some())
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
        self.check_key(&key, false)?;
        if let Some(v) = &new {
            self.check_value(v)?;
        }
        self.commit_lazy().map_err(store_error)?;
        let full = self.vault.policy_key(&key);
        let backend = self.vault.backend().clone();
        // Ciphertexts are randomised: compare plaintexts, swap on the exact
        // bytes read so a concurrent writer still makes the swap fail.
        let raw = backend.get(&full).map_err(backend_error)?;
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
        let usage = self.usage_after(
            &full,
            raw.as_ref().map(Vec::len),
            sealed.as_ref().map(Vec::len),
        )?;
        let swapped = backend
            .compare_and_swap(&full, raw.as_deref(), sealed.as_deref())
            .map_err(backend_error)?;
        if swapped {
            self.usage = usage;
        }
        Ok(swapped)
    }

    fn scan(
        &mut self,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> Result<ScanPage, StoreError> {
        self.record("store.scan", (&prefix, &after));
        self.check_key(&prefix, true)?;
        if let Some(a) = &after {
            self.check_key(a, true)?;
        }
        self.commit_lazy().map_err(store_error)?;
        let base = self.vault.policy_prefix();
        let full_prefix = format!("{base}{prefix}");
        let full_after = after.as_deref().map(|a| format!("{base}{a}"));
        let limit = limit.clamp(1, 10_000) as usize;
        let rows = self
            .vault
            .backend()
            .scan(&full_prefix, full_after.as_deref(), limit + 1)
            .map_err(backend_error)?;
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

#[cfg(test)]
mod tests {
    use super::key_problem;

    #[test]
    fn keys_that_leave_the_prefix_are_named_and_ordinary_ones_pass() {
        for ok in ["cred/x", "ctr/0001", "usage", "ticket/t1", "a.b/c..d"] {
            assert_eq!(key_problem(ok, false), None, "{ok}");
        }
        assert_eq!(key_problem("", true), None);
        assert_eq!(key_problem("cred/", true), None);
        for (bad, why) in [
            ("", "empty"),
            ("../x", "`..`"),
            ("cred/../../s/x", "`..`"),
            ("./x", "`..`"),
            ("/etc/passwd", "absolute"),
            ("t/other/p/cred/x", "tenant"),
            ("cred/\u{0}", "control"),
            ("cred/\nx", "control"),
        ] {
            let got = key_problem(bad, false).unwrap_or_else(|| panic!("{bad:?} passed"));
            assert!(got.contains(why), "{bad:?}: {got}");
        }
    }
}
