//! The embedded default: one redb file under the data directory. redb gives
//! checksummed, crash-safe transactions with no server; every `apply` is one
//! write transaction committed with immediate durability.
//!
//! Deferred writes (the policy's, during a call) wait in memory, where reads
//! see them over the file, and `sync` commits all that wait in one durable
//! transaction: writers that come while a flush runs do not wait for it,
//! and the next flush takes them all (group commit). Every commit happens
//! under one lock, in order, so an older value never lands over a newer one.
//!
//! A damaged file is an error, never a crash: the open verifies the
//! checksum of every page of the committed trees (redb's integrity check,
//! which reports damage where a plain open may panic), and every call into
//! redb runs under `catch_unwind` (a file damaged after the open may still
//! reach one of redb's `unreachable!`s): a panic there marks the store
//! damaged and every later call says so.

use super::{Backend, BackendError, Swap, Write};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new(crate::layout::REDB_TABLE);

pub struct RedbBackend {
    db: Database,
    path: PathBuf,
    /// A call into redb panicked: the file is damaged, nothing more is
    /// read from or written to it.
    broken: AtomicBool,
    /// The open found the newest commit damaged and went back to the one
    /// before it (redb's recovery after a torn write).
    rolled_back: bool,
    /// Deferred writes not yet committed.
    waiting: Mutex<Waiting>,
    /// How many deferred batches a commit has made durable.
    synced: AtomicU64,
    /// Held for every commit, so commits happen one at a time and in the
    /// order their contents were taken. Taken before `waiting`.
    committing: Mutex<()>,
    /// Flushing commits made (for tests and measurements).
    flushes: AtomicU64,
}

/// Deferred writes: the newest value of each key (none: deleted), and how
/// many batches have been deferred so far.
#[derive(Default)]
struct Waiting {
    writes: BTreeMap<String, Option<Vec<u8>>>,
    batches: u64,
}

thread_local! {
    /// Inside a guarded redb call: a panic here is caught and reported as
    /// damage, so the command's panic hook stays quiet.
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is inside a redb call whose panic is caught and
/// reported as a damaged store (a panic hook need not print it).
pub fn in_guarded_call() -> bool {
    GUARDED.with(Cell::get)
}

/// What to do about a damaged store, said after what is damaged.
pub const DAMAGED_ADVICE: &str = "`credpool check` says what is damaged; `credpool restore FILE` \
puts a backup (from `credpool backup`) in its place and keeps the damaged file aside";

fn damaged(path: &Path, what: &str) -> BackendError {
    BackendError::Corrupt(format!(
        "{} is damaged ({what}): {DAMAGED_ADVICE}",
        path.display()
    ))
}

/// A redb error: damage found by redb's checks, or the file unusable now.
fn failed(path: &Path, e: impl Into<redb::Error>) -> BackendError {
    match e.into() {
        redb::Error::Corrupted(m) => damaged(path, &m),
        // What redb says of a file that is not a database (its header).
        redb::Error::Io(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            damaged(path, &e.to_string())
        }
        other => BackendError::Unavailable(format!("{}: {other}", path.display())),
    }
}

/// Runs `f`, a call into redb, turning a panic into a damaged-store error.
fn guard<T>(path: &Path, f: impl FnOnce() -> Result<T, BackendError>) -> Result<T, BackendError> {
    let outer = GUARDED.with(|g| g.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(outer));
    result.unwrap_or_else(|_| Err(damaged(path, "reading it failed inside the storage engine")))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How an open that another process holds the file is said (the command
/// line adds how to reach the pool through that process).
pub const IN_USE: &str = "is in use by another credpool process";

impl RedbBackend {
    /// Opens (or creates) the database file at `path`, verifying every
    /// page of it first.
    pub fn open(path: &Path) -> Result<Self, BackendError> {
        // Values are sealed, but ids and record kinds are not: keep the file
        // private from the start (redb initialises an empty file).
        let created = {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            options.open(path).is_ok()
        };
        // redb makes a new database in an empty file: one that was there
        // before is a store cut to nothing, not a new one.
        if !created && std::fs::metadata(path).is_ok_and(|m| m.len() == 0) {
            return Err(damaged(
                path,
                "it is empty (0 bytes): cut short? If the store was never used, delete the file",
            ));
        }
        let rolled_back = Arc::new(AtomicBool::new(false));
        let db = guard(path, || {
            let seen = rolled_back.clone();
            Database::builder()
                .set_check_integrity_on_open(true)
                .set_repair_callback(move |session| {
                    // redb calls at 0.3 only when the newest commit fails to
                    // verify and it falls back to the one before.
                    if (session.progress() - 0.3).abs() < 0.05 {
                        seen.store(true, Ordering::Relaxed);
                    }
                })
                .create(path)
                .map_err(|e| match e {
                    redb::DatabaseError::DatabaseAlreadyOpen => {
                        BackendError::Unavailable(format!("{} {IN_USE}", path.display()))
                    }
                    other => failed(path, other),
                })
        })?;
        let rolled_back = rolled_back.load(Ordering::Relaxed);
        if rolled_back {
            tracing::warn!(
                "{}: the newest commit did not verify and was rolled back to the one before it \
                 (as after a crash); `credpool check` verifies every record",
                path.display()
            );
        }
        guard(path, || {
            let txn = db.begin_write().map_err(|e| failed(path, e))?;
            txn.open_table(KV).map_err(|e| failed(path, e))?;
            txn.commit().map_err(|e| failed(path, e))
        })?;
        Ok(RedbBackend {
            db,
            path: path.to_path_buf(),
            broken: AtomicBool::new(false),
            rolled_back,
            waiting: Mutex::new(Waiting::default()),
            synced: AtomicU64::new(0),
            committing: Mutex::new(()),
            flushes: AtomicU64::new(0),
        })
    }

    /// Whether the open rolled back a newest commit that did not verify.
    pub fn rolled_back(&self) -> bool {
        self.rolled_back
    }

    /// Runs a call into redb: refused once one panicked, and a panic
    /// marks the store damaged.
    fn guarded<T>(&self, f: impl FnOnce() -> Result<T, BackendError>) -> Result<T, BackendError> {
        if self.broken.load(Ordering::Acquire) {
            return Err(damaged(
                &self.path,
                "an earlier read failed inside the storage engine",
            ));
        }
        let result = guard(&self.path, f);
        if let Err(BackendError::Corrupt(_)) = &result {
            self.broken.store(true, Ordering::Release);
        }
        result
    }

    fn failed(&self, e: impl Into<redb::Error>) -> BackendError {
        failed(&self.path, e)
    }

    /// Flushing commits made so far.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Acquire)
    }

    /// The committed value of `key`, ignoring deferred writes.
    fn get_committed(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let txn = self.db.begin_read().map_err(|e| self.failed(e))?;
        let table = txn.open_table(KV).map_err(|e| self.failed(e))?;
        Ok(table
            .get(key)
            .map_err(|e| self.failed(e))?
            .map(|v| v.value().to_vec()))
    }

    /// The value of `key` as readers see it: a deferred write, else the file.
    fn current(&self, waiting: &Waiting, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        match waiting.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.get_committed(key),
        }
    }

    /// One durable transaction setting each key to its value (none:
    /// deleted), in order; the caller holds `committing`.
    fn write_durably<'a>(
        &self,
        entries: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    ) -> Result<(), BackendError> {
        let txn = self.db.begin_write().map_err(|e| self.failed(e))?;
        {
            let mut table = txn.open_table(KV).map_err(|e| self.failed(e))?;
            for (key, value) in entries {
                match value {
                    Some(v) => table.insert(key, v).map(drop),
                    None => table.remove(key).map(drop),
                }
                .map_err(|e| self.failed(e))?;
            }
        }
        txn.commit().map_err(|e| self.failed(e))?;
        self.flushes.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Commits every deferred write and then `writes` in one durable
    /// transaction; the caller holds `committing` and `waiting`.
    fn commit_all(&self, waiting: &mut Waiting, writes: &[Write]) -> Result<(), BackendError> {
        let writes = writes.iter().map(|w| match w {
            Write::Put(k, v) => (k.as_str(), Some(v.as_slice())),
            Write::Delete(k) => (k.as_str(), None),
        });
        self.write_durably(entries(&waiting.writes).chain(writes))?;
        waiting.writes.clear();
        self.synced.fetch_max(waiting.batches, Ordering::AcqRel);
        Ok(())
    }
}

/// Deferred writes as (key, value or none) pairs.
fn entries(
    writes: &BTreeMap<String, Option<Vec<u8>>>,
) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
    writes.iter().map(|(k, v)| (k.as_str(), v.as_deref()))
}

impl Backend for RedbBackend {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.guarded(|| {
            // The waiting writes' lock is not held while the file is read.
            let waiting = lock(&self.waiting).writes.get(key).cloned();
            match waiting {
                Some(v) => Ok(v),
                None => self.get_committed(key),
            }
        })
    }

    fn apply(&self, writes: &[Write]) -> Result<(), BackendError> {
        self.guarded(|| {
            let _one = lock(&self.committing);
            let mut waiting = lock(&self.waiting);
            self.commit_all(&mut waiting, writes)
        })
    }

    fn apply_deferred(&self, writes: Vec<Write>) -> Result<(), BackendError> {
        let mut waiting = lock(&self.waiting);
        for w in writes {
            match w {
                Write::Put(k, v) => waiting.writes.insert(k, Some(v)),
                Write::Delete(k) => waiting.writes.insert(k, None),
            };
        }
        waiting.batches += 1;
        Ok(())
    }

    fn sync(&self) -> Result<(), BackendError> {
        self.guarded(|| {
            let target = lock(&self.waiting).batches;
            if self.synced.load(Ordering::Acquire) >= target {
                return Ok(());
            }
            let _one = lock(&self.committing);
            if self.synced.load(Ordering::Acquire) >= target {
                // Another caller's flush took them while this one waited.
                return Ok(());
            }
            // Taken now, with everything deferred while the previous flush ran;
            // writers go on deferring while this one is written.
            let (batch, upto) = {
                let waiting = lock(&self.waiting);
                (waiting.writes.clone(), waiting.batches)
            };
            self.write_durably(entries(&batch))?;
            // What was written is now read from the file, unless it changed
            // meanwhile (then the newer value waits for the next flush).
            let mut waiting = lock(&self.waiting);
            for (k, v) in batch {
                if waiting.writes.get(&k) == Some(&v) {
                    waiting.writes.remove(&k);
                }
            }
            self.synced.fetch_max(upto, Ordering::AcqRel);
            Ok(())
        })
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, BackendError> {
        self.guarded(|| {
            let _one = lock(&self.committing);
            let mut waiting = lock(&self.waiting);
            if self.current(&waiting, key)?.as_deref() != expected {
                return Ok(false);
            }
            let write = match new {
                Some(v) => Write::Put(key.to_string(), v.to_vec()),
                None => Write::Delete(key.to_string()),
            };
            self.commit_all(&mut waiting, &[write])?;
            Ok(true)
        })
    }

    fn compare_and_swap_deferred(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, BackendError> {
        self.guarded(|| {
            let mut waiting = lock(&self.waiting);
            if self.current(&waiting, key)?.as_deref() != expected {
                return Ok(false);
            }
            waiting
                .writes
                .insert(key.to_string(), new.map(<[u8]>::to_vec));
            waiting.batches += 1;
            Ok(true)
        })
    }

    fn swap_unchanged(&self, swaps: &[Swap]) -> Result<usize, BackendError> {
        self.guarded(|| {
            let _one = lock(&self.committing);
            let mut waiting = lock(&self.waiting);
            let mut writes = Vec::new();
            for s in swaps {
                if self.current(&waiting, &s.key)?.as_deref() == Some(s.expected.as_slice()) {
                    writes.push(Write::Put(s.key.clone(), s.new.clone()));
                }
            }
            let applied = writes.len();
            self.commit_all(&mut waiting, &writes)?;
            Ok(applied)
        })
    }

    fn snapshot_to(&self, dest: &Path) -> Result<u64, BackendError> {
        self.sync()?;
        let cannot = |e: &dyn std::fmt::Display| {
            BackendError::Unavailable(format!("cannot write {}: {e}", dest.display()))
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        options.open(dest).map_err(|e| cannot(&e))?;
        let copy = Database::create(dest).map_err(|e| cannot(&e))?;
        let out = copy.begin_write().map_err(|e| cannot(&e))?;
        let copied = {
            let mut into = out.open_table(KV).map_err(|e| cannot(&e))?;
            // One read transaction: the copy is the store at one instant.
            self.guarded(|| {
                let txn = self.db.begin_read().map_err(|e| self.failed(e))?;
                let table = txn.open_table(KV).map_err(|e| self.failed(e))?;
                let mut copied = 0;
                for item in table.iter().map_err(|e| self.failed(e))? {
                    let (k, v) = item.map_err(|e| self.failed(e))?;
                    into.insert(k.value(), v.value()).map_err(|e| cannot(&e))?;
                    copied += 1;
                }
                Ok(copied)
            })?
        };
        out.commit().map_err(|e| cannot(&e))?;
        Ok(copied)
    }

    fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, BackendError> {
        self.guarded(|| {
            let start = match after {
                Some(a) if a >= prefix => Bound::Excluded(a),
                _ => Bound::Included(prefix),
            };
            // Deferred writes in range, merged over the file's entries in order.
            let waiting: Vec<(String, Option<Vec<u8>>)> = lock(&self.waiting)
                .writes
                .range::<str, _>((start, Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let mut waiting = waiting.into_iter().peekable();
            let txn = self.db.begin_read().map_err(|e| self.failed(e))?;
            let table = txn.open_table(KV).map_err(|e| self.failed(e))?;
            let mut out = Vec::new();
            let mut file = table
                .range::<&str>((start, Bound::Unbounded))
                .map_err(|e| self.failed(e))?;
            let mut next_file = || -> Result<Option<(String, Vec<u8>)>, BackendError> {
                match file.next() {
                    Some(item) => {
                        let (k, v) = item.map_err(|e| self.failed(e))?;
                        let key = k.value();
                        Ok(key
                            .starts_with(prefix)
                            .then(|| (key.to_string(), v.value().to_vec())))
                    }
                    None => Ok(None),
                }
            };
            let mut from_file = next_file()?;
            while out.len() < limit {
                let take_waiting = match (&from_file, waiting.peek()) {
                    (None, None) => break,
                    (Some(_), None) => false,
                    (None, Some(_)) => true,
                    (Some((fk, _)), Some((wk, _))) => wk <= fk,
                };
                if take_waiting {
                    let (k, v) = waiting.next().expect("peeked");
                    if from_file.as_ref().is_some_and(|(fk, _)| *fk == k) {
                        // The deferred write replaces the file's entry.
                        from_file = next_file()?;
                    }
                    if let Some(v) = v {
                        out.push((k, v));
                    }
                } else {
                    out.push(from_file.take().expect("matched"));
                    from_file = next_file()?;
                }
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &[u8]) -> Vec<Write> {
        vec![Write::Put(key.into(), value.to_vec())]
    }

    fn open(dir: &tempfile::TempDir) -> RedbBackend {
        RedbBackend::open(&dir.path().join("t.redb")).unwrap()
    }

    #[test]
    fn a_panic_inside_redb_is_a_damaged_store_from_then_on() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        db.apply(&put("a", b"1")).unwrap();
        let caught = db.guarded(|| -> Result<(), BackendError> {
            assert!(in_guarded_call());
            panic!("inside redb")
        });
        assert!(!in_guarded_call());
        let Err(BackendError::Corrupt(m)) = caught else {
            panic!("{caught:?}")
        };
        assert!(
            m.contains("is damaged") && m.contains("credpool check"),
            "{m}"
        );
        // Nothing more is read from or written to it.
        assert!(matches!(db.get("a"), Err(BackendError::Corrupt(_))));
        assert!(matches!(
            db.apply(&put("b", b"2")),
            Err(BackendError::Corrupt(_))
        ));
    }

    /// Pages overwritten under an open store (another program): redb
    /// reaches an `unreachable!` reading them; the guard makes that a
    /// damaged-store error, never a panic that escapes.
    #[test]
    fn pages_damaged_under_an_open_store_are_an_error_or_the_right_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        {
            let db = RedbBackend::open(&path).unwrap();
            let writes: Vec<Write> = (0..2000)
                .map(|i| Write::Put(format!("k{i:05}"), vec![i as u8; 64]))
                .collect();
            db.apply(&writes).unwrap();
        }
        let db = RedbBackend::open(&path).unwrap();
        let len = std::fs::metadata(&path).unwrap().len() as usize;
        std::fs::write(&path, {
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[4096..len].fill(0xff);
            bytes
        })
        .unwrap();
        let mut damaged = 0;
        for i in (0..2000).step_by(97) {
            match db.get(&format!("k{i:05}")) {
                Ok(v) => assert_eq!(v, Some(vec![i as u8; 64])),
                Err(BackendError::Corrupt(_)) => damaged += 1,
                Err(e) => panic!("{e}"),
            }
        }
        // The whole file but its header is overwritten: the first read
        // finds it, and every later one is refused.
        assert_eq!(damaged, 21);
    }

    #[test]
    fn deferred_writes_are_read_at_once_and_kept_once_synced() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        db.apply_deferred(put("a", b"1")).unwrap();
        db.apply_deferred(vec![
            Write::Delete("a".into()),
            Write::Put("b".into(), b"2".to_vec()),
        ])
        .unwrap();
        assert_eq!(db.get("a").unwrap(), None);
        assert_eq!(db.get("b").unwrap().as_deref(), Some(&b"2"[..]));
        // Waiting in memory, not in the file yet.
        assert_eq!(db.get_committed("b").unwrap(), None);
        assert_eq!(lock(&db.waiting).batches, 2);
        db.sync().unwrap();
        assert_eq!((db.synced.load(Ordering::Acquire), db.flushes()), (2, 1));
        assert_eq!(db.get_committed("b").unwrap().as_deref(), Some(&b"2"[..]));
        assert!(lock(&db.waiting).writes.is_empty());
        // Nothing new: no flush.
        db.sync().unwrap();
        assert_eq!(db.flushes(), 1);
        drop(db);
        let db = open(&dir);
        assert_eq!(db.get("b").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(db.get("a").unwrap(), None);
    }

    #[test]
    fn one_flush_takes_every_batch_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        for i in 0..5 {
            db.apply_deferred(put(&format!("k{i}"), b"v")).unwrap();
        }
        db.sync().unwrap();
        assert_eq!(db.flushes(), 1);
        assert_eq!(db.scan("k", None, 10).unwrap().len(), 5);
    }

    #[test]
    fn a_sync_on_any_thread_covers_the_writes_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        std::thread::scope(|s| {
            for t in 0..4 {
                let db = &db;
                s.spawn(move || {
                    for i in 0..25 {
                        db.apply_deferred(put(&format!("t{t}-{i}"), b"v")).unwrap();
                        let mine = lock(&db.waiting).batches;
                        db.sync().unwrap();
                        // Its own write is durable when sync returns, by its
                        // own flush or another thread's.
                        assert!(db.synced.load(Ordering::Acquire) >= mine);
                        let key = format!("t{t}-{i}");
                        assert!(db.get_committed(&key).unwrap().is_some(), "{key}");
                    }
                });
            }
        });
        assert_eq!(db.synced.load(Ordering::Acquire), 100);
        assert!(db.flushes() <= 100);
        assert_eq!(db.scan("t", None, 1000).unwrap().len(), 100);
    }

    #[test]
    fn scans_merge_waiting_writes_over_the_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        for k in ["a1", "a2", "a3", "b1"] {
            db.apply(&put(k, k.as_bytes())).unwrap();
        }
        db.apply_deferred(vec![
            Write::Delete("a2".into()),
            Write::Put("a25".into(), b"new".to_vec()),
            Write::Put("a4".into(), b"new".to_vec()),
            Write::Put("a0".into(), b"new".to_vec()),
            Write::Put("a3".into(), b"changed".to_vec()),
        ])
        .unwrap();
        let keys = |prefix: &str, after: Option<&str>, limit: usize| -> Vec<String> {
            db.scan(prefix, after, limit)
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(keys("a", None, 10), ["a0", "a1", "a25", "a3", "a4"]);
        assert_eq!(keys("a", Some("a1"), 2), ["a25", "a3"]);
        assert_eq!(keys("a", Some("a3"), 10), ["a4"]);
        assert_eq!(keys("b", None, 10), ["b1"]);
        assert_eq!(db.scan("a3", None, 1).unwrap()[0].1, b"changed");
        // After the flush the file alone answers the same.
        db.sync().unwrap();
        assert!(lock(&db.waiting).writes.is_empty());
        assert_eq!(keys("a", None, 10), ["a0", "a1", "a25", "a3", "a4"]);
    }

    #[test]
    fn swaps_compare_with_waiting_writes_and_an_immediate_one_commits_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        db.apply_deferred(put("k", b"waiting")).unwrap();
        assert!(!db.compare_and_swap_deferred("k", None, Some(b"x")).unwrap());
        assert!(
            db.compare_and_swap_deferred("k", Some(b"waiting"), Some(b"second"))
                .unwrap()
        );
        db.apply_deferred(put("other", b"o")).unwrap();
        assert_eq!(db.get_committed("k").unwrap(), None);
        // An immediate swap sees the waiting value and commits everything.
        assert!(db.compare_and_swap("k", Some(b"second"), None).unwrap());
        assert_eq!(db.get_committed("k").unwrap(), None);
        assert_eq!(
            db.get_committed("other").unwrap().as_deref(),
            Some(&b"o"[..])
        );
        assert_eq!(db.synced.load(Ordering::Acquire), 3);
        let swaps = [Swap {
            key: "other".into(),
            expected: b"o".to_vec(),
            new: b"p".to_vec(),
        }];
        db.apply_deferred(put("z", b"1")).unwrap();
        assert_eq!(db.swap_unchanged(&swaps).unwrap(), 1);
        assert_eq!(db.get_committed("z").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(db.get("other").unwrap().as_deref(), Some(&b"p"[..]));
    }
}
