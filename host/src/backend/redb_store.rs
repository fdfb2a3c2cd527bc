//! The embedded default: one redb file under the data directory. redb gives
//! checksummed, crash-safe transactions with no server; every `apply` is one
//! write transaction committed with immediate durability. A deferred batch
//! commits without flushing (redb's `Durability::None`), and `sync` makes
//! every such commit durable with one flushing commit, so the policy's
//! writes of several calls can share one flush.

use super::{Backend, BackendError, Swap, Write};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::ops::Bound;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");

pub struct RedbBackend {
    db: Database,
    /// Deferred commits made so far, and how many of them a flushing commit
    /// has made durable (the lock also lets one caller flush for all).
    deferred: AtomicU64,
    synced: AtomicU64,
    flushing: Mutex<()>,
}

fn unavailable(e: impl std::fmt::Display) -> BackendError {
    BackendError::Unavailable(e.to_string())
}

impl RedbBackend {
    /// Opens (or creates) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self, BackendError> {
        // Values are sealed, but ids and record kinds are not: keep the file
        // private from the start (redb initialises an empty file).
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path);
        }
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => BackendError::Unavailable(format!(
                "{} is in use by another credpool process",
                path.display()
            )),
            redb::DatabaseError::Storage(redb::StorageError::Corrupted(m)) => {
                BackendError::Corrupt(m)
            }
            other => BackendError::Unavailable(format!("{}: {other}", path.display())),
        })?;
        let txn = db.begin_write().map_err(unavailable)?;
        txn.open_table(KV).map_err(unavailable)?;
        txn.commit().map_err(unavailable)?;
        Ok(RedbBackend {
            db,
            deferred: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            flushing: Mutex::new(()),
        })
    }

    /// Sets `key` to `new` if it holds `expected`, committed with
    /// `durability`; false (nothing committed) if it does not.
    fn swap_one(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        durability: Durability,
    ) -> Result<bool, BackendError> {
        let mut txn = self.db.begin_write().map_err(unavailable)?;
        txn.set_durability(durability).map_err(unavailable)?;
        {
            let mut table = txn.open_table(KV).map_err(unavailable)?;
            let current = table
                .get(key)
                .map_err(unavailable)?
                .map(|v| v.value().to_vec());
            if current.as_deref() != expected {
                return Ok(false);
            }
            match new {
                Some(v) => {
                    table.insert(key, v).map_err(unavailable)?;
                }
                None => {
                    table.remove(key).map_err(unavailable)?;
                }
            }
        }
        txn.commit().map_err(unavailable)?;
        Ok(true)
    }

    /// One write transaction with `writes`, committed with `durability`.
    fn commit(&self, writes: &[Write], durability: Durability) -> Result<(), BackendError> {
        let mut txn = self.db.begin_write().map_err(unavailable)?;
        txn.set_durability(durability).map_err(unavailable)?;
        {
            let mut table = txn.open_table(KV).map_err(unavailable)?;
            for w in writes {
                match w {
                    Write::Put(k, v) => {
                        table
                            .insert(k.as_str(), v.as_slice())
                            .map_err(unavailable)?;
                    }
                    Write::Delete(k) => {
                        table.remove(k.as_str()).map_err(unavailable)?;
                    }
                }
            }
        }
        txn.commit().map_err(unavailable)
    }
}

impl Backend for RedbBackend {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(KV).map_err(unavailable)?;
        Ok(table
            .get(key)
            .map_err(unavailable)?
            .map(|v| v.value().to_vec()))
    }

    fn apply(&self, writes: &[Write]) -> Result<(), BackendError> {
        self.commit(writes, Durability::Immediate)
    }

    fn apply_deferred(&self, writes: Vec<Write>) -> Result<(), BackendError> {
        self.commit(&writes, Durability::None)?;
        // Counted once committed: a sync that reads the count later begins
        // its flushing commit after this one.
        self.deferred.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    fn sync(&self) -> Result<(), BackendError> {
        if self.synced.load(Ordering::Acquire) >= self.deferred.load(Ordering::Acquire) {
            return Ok(());
        }
        let _one_flush = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        // Read before the flushing commit begins: every commit counted here
        // has finished, and redb writes one transaction at a time.
        let upto = self.deferred.load(Ordering::Acquire);
        if self.synced.load(Ordering::Acquire) >= upto {
            // Another caller flushed them while this one waited.
            return Ok(());
        }
        // An empty commit with immediate durability persists every
        // non-durable commit before it.
        self.commit(&[], Durability::Immediate)?;
        self.synced.store(upto, Ordering::Release);
        Ok(())
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, BackendError> {
        self.swap_one(key, expected, new, Durability::Immediate)
    }

    fn compare_and_swap_deferred(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, BackendError> {
        let swapped = self.swap_one(key, expected, new, Durability::None)?;
        if swapped {
            self.deferred.fetch_add(1, Ordering::AcqRel);
        }
        Ok(swapped)
    }

    fn swap_unchanged(&self, swaps: &[Swap]) -> Result<usize, BackendError> {
        let txn = self.db.begin_write().map_err(unavailable)?;
        let mut applied = 0;
        {
            let mut table = txn.open_table(KV).map_err(unavailable)?;
            for s in swaps {
                let same = table
                    .get(s.key.as_str())
                    .map_err(unavailable)?
                    .is_some_and(|v| v.value() == s.expected.as_slice());
                if same {
                    table
                        .insert(s.key.as_str(), s.new.as_slice())
                        .map_err(unavailable)?;
                    applied += 1;
                }
            }
        }
        txn.commit().map_err(unavailable)?;
        Ok(applied)
    }

    fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, BackendError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(KV).map_err(unavailable)?;
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        let mut out = Vec::new();
        for item in table
            .range::<&str>((start, Bound::Unbounded))
            .map_err(unavailable)?
        {
            let (k, v) = item.map_err(unavailable)?;
            let key = k.value();
            if !key.starts_with(prefix) || out.len() == limit {
                break;
            }
            out.push((key.to_string(), v.value().to_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &[u8]) -> Vec<Write> {
        vec![Write::Put(key.into(), value.to_vec())]
    }

    #[test]
    fn deferred_writes_are_read_at_once_and_kept_once_synced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        let db = RedbBackend::open(&path).unwrap();
        db.apply_deferred(put("a", b"1")).unwrap();
        db.apply_deferred(vec![
            Write::Delete("a".into()),
            Write::Put("b".into(), b"2".to_vec()),
        ])
        .unwrap();
        assert_eq!(db.get("a").unwrap(), None);
        assert_eq!(db.get("b").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(db.deferred.load(Ordering::Acquire), 2);
        db.sync().unwrap();
        assert_eq!(db.synced.load(Ordering::Acquire), 2);
        // Nothing new: no flushing commit, nothing counted.
        db.sync().unwrap();
        assert_eq!(db.synced.load(Ordering::Acquire), 2);
        drop(db);
        let db = RedbBackend::open(&path).unwrap();
        assert_eq!(db.get("b").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(db.get("a").unwrap(), None);
    }

    #[test]
    fn a_sync_on_any_thread_covers_the_writes_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = RedbBackend::open(&dir.path().join("t.redb")).unwrap();
        std::thread::scope(|s| {
            for t in 0..4 {
                let db = &db;
                s.spawn(move || {
                    for i in 0..25 {
                        db.apply_deferred(put(&format!("t{t}-{i}"), b"v")).unwrap();
                        let mine = db.deferred.load(Ordering::Acquire);
                        db.sync().unwrap();
                        // Its own write is covered when sync returns, by
                        // its own flush or another thread's.
                        assert!(db.synced.load(Ordering::Acquire) >= mine);
                    }
                });
            }
        });
        assert_eq!(db.deferred.load(Ordering::Acquire), 100);
        assert_eq!(db.synced.load(Ordering::Acquire), 100);
        assert_eq!(db.scan("t", None, 1000).unwrap().len(), 100);
    }
}
