//! The embedded default: one redb file under the data directory. redb gives
//! checksummed, crash-safe transactions with no server; every `apply` is one
//! write transaction committed with immediate durability.

use super::{Backend, BackendError, Swap, Write};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::ops::Bound;
use std::path::Path;

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");

pub struct RedbBackend {
    db: Database,
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
        Ok(RedbBackend { db })
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
        let txn = self.db.begin_write().map_err(unavailable)?;
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

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, BackendError> {
        let txn = self.db.begin_write().map_err(unavailable)?;
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
