//! Where bytes live. One small trait, several engines: in memory (tests,
//! demo), redb on disk (the embedded default) and Redis (shared by
//! several servers). The host encrypts before
//! it writes, so a backend only ever sees ciphertext and plain keys.

mod memory;
mod redb_store;
mod redis_fence;
mod redis_store;

pub use memory::MemoryBackend;
pub use redb_store::{DAMAGED_ADVICE, IN_USE, RedbBackend, in_guarded_call};
pub use redis_fence::{FencedBackend, Holder};
pub use redis_store::{RedisBackend, StoreUrl};

/// Leadership of a tenant over Redis: its lock, taken, renewed, let go.
pub mod fence {
    pub use super::redis_fence::{epoch_key, lock_key, release, take};
}

use std::fmt;
use std::path::Path;
use std::time::Duration;

/// One change in an atomic batch.
#[derive(Clone)]
pub enum Write {
    Put(String, Vec<u8>),
    Delete(String),
}

/// A conditional replacement: `key` becomes `new` only if it still holds
/// exactly `expected` (a rewrap must not undo a concurrent write).
#[derive(Clone)]
pub struct Swap {
    pub key: String,
    pub expected: Vec<u8>,
    pub new: Vec<u8>,
}

/// Why a backend call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendError {
    /// The engine cannot be used now (I/O error, locked, full disk).
    Unavailable(String),
    /// Stored bytes failed the engine's own integrity checks.
    Corrupt(String),
    /// A write refused because this server no longer leads the tenant
    /// (Redis holds a newer epoch or another server's lock).
    Fenced(String),
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::Unavailable(m) => write!(f, "store unavailable: {m}"),
            BackendError::Corrupt(m) => write!(f, "store corrupt: {m}"),
            BackendError::Fenced(m) => write!(f, "not the leader: {m}"),
        }
    }
}

impl std::error::Error for BackendError {}

/// A sorted key/value engine with atomic, durable batches (durable on
/// return, or at the next sync for deferred ones).
pub trait Backend: Send + Sync {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError>;
    /// Applies every write or none; durable when it returns.
    fn apply(&self, writes: &[Write]) -> Result<(), BackendError>;
    /// [`Backend::apply`] taking the writes by value, so an engine that
    /// keeps values in memory moves them instead of copying (the counter
    /// pages of every flush pass through here).
    fn apply_owned(&self, writes: Vec<Write>) -> Result<(), BackendError> {
        self.apply(&writes)
    }
    /// [`Backend::apply_owned`] that may return before the writes are
    /// durable: they are once a later [`Backend::sync`] returns. A caller
    /// commits under its own lock and waits for the disk outside it, and
    /// writes made meanwhile share that one wait. Engines without a cheaper
    /// way apply durably at once.
    fn apply_deferred(&self, writes: Vec<Write>) -> Result<(), BackendError> {
        self.apply_owned(writes)
    }
    /// [`Backend::compare_and_swap`], durable at the next
    /// [`Backend::sync`] (as [`Backend::apply_deferred`]).
    fn compare_and_swap_deferred(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, BackendError> {
        self.compare_and_swap(key, expected, new)
    }
    /// Makes every write applied so far durable.
    fn sync(&self) -> Result<(), BackendError> {
        Ok(())
    }
    /// Sets `key` to `new` (None deletes) only if it holds exactly `expected`.
    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, BackendError>;
    /// Up to `limit` entries with keys starting with `prefix`, after `after`.
    fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, BackendError>;
    /// Writes a consistent copy of every committed entry (deferred writes
    /// made durable first) to a new database file at `dest`, still sealed;
    /// returns how many entries it holds. Engines without a file of their
    /// own refuse.
    fn snapshot_to(&self, dest: &Path) -> Result<u64, BackendError> {
        let _ = dest;
        Err(BackendError::Unavailable(
            "this storage engine cannot write a backup file".into(),
        ))
    }
    /// Whether [`Backend::put_expiring`] keeps anything: callers need not
    /// prepare (seal) a value an engine would drop.
    fn keeps_expiring(&self) -> bool {
        false
    }
    /// Keeps `value` under `name` for `ttl`, outside the sorted records
    /// (answers of closed leases, for a repeat); `false` when the engine
    /// keeps no such values (the caller remembers in memory only).
    fn put_expiring(&self, name: &str, value: &[u8], ttl: Duration) -> Result<bool, BackendError> {
        let _ = (name, value, ttl);
        Ok(false)
    }
    /// What [`Backend::put_expiring`] left under `name`, if not expired.
    fn get_expiring(&self, name: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let _ = name;
        Ok(None)
    }
    /// Applies each swap whose key still holds its expected bytes; returns
    /// how many were applied. Engines that can should do it in one durable
    /// transaction; the default swaps one by one.
    fn swap_unchanged(&self, swaps: &[Swap]) -> Result<usize, BackendError> {
        let mut applied = 0;
        for s in swaps {
            if self.compare_and_swap(&s.key, Some(&s.expected), Some(&s.new))? {
                applied += 1;
            }
        }
        Ok(applied)
    }
}
