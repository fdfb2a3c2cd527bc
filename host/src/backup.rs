//! `credpool backup` and `restore`: a consistent copy of the store, still
//! sealed (the key file is not in it and is backed up on its own), and
//! its return in place of the store, never half-written.
//!
//! A backup is a store file of its own: every entry of one read
//! transaction, written to `FILE.partial` and renamed to `FILE` once
//! durable. A restore copies the backup beside the store, checks the copy
//! as `credpool check` does (every page, every sealed record, with the keys
//! held: a backup sealed under keys the key file lacks is refused), then
//! moves the store aside (`credpool.redb.before-restore-<time>`) and
//! renames the copy into its place.

use crate::backend::{Backend, BackendError, IN_USE, RedbBackend};
use crate::check::{CheckReport, check_file};
use crate::crypto::KeyRing;
use crate::layout::DB_FILE;
use std::fs::File;
use std::path::{Path, PathBuf};

/// What a backup wrote.
#[derive(Clone, Debug)]
pub struct BackupReport {
    pub file: PathBuf,
    pub records: u64,
    pub bytes: u64,
}

/// The name a file is written under before it is complete.
pub fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    dest.with_file_name(name)
}

fn io(what: &str, path: &Path, e: impl std::fmt::Display) -> BackendError {
    BackendError::Unavailable(format!("cannot {what} {}: {e}", path.display()))
}

/// Refuses to write over an existing file (a backup is not overwritten by
/// accident).
pub fn refuse_existing(dest: &Path) -> Result<(), BackendError> {
    if dest.exists() {
        return Err(BackendError::Unavailable(format!(
            "{} exists already: give a new file name (a backup is never written over)",
            dest.display()
        )));
    }
    Ok(())
}

/// Writes a consistent copy of `backend` to `dest` (which must not exist).
pub fn write_backup(backend: &dyn Backend, dest: &Path) -> Result<BackupReport, BackendError> {
    refuse_existing(dest)?;
    let partial = partial_path(dest);
    // A partial file is what an interrupted backup left.
    let _ = std::fs::remove_file(&partial);
    let records = match backend.snapshot_to(&partial) {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    finish(&partial, dest)?;
    Ok(BackupReport {
        file: dest.to_path_buf(),
        records,
        bytes: std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0),
    })
}

/// Makes `partial` durable and renames it to `dest`.
pub fn finish(partial: &Path, dest: &Path) -> Result<(), BackendError> {
    File::open(partial)
        .and_then(|f| f.sync_all())
        .map_err(|e| io("write", partial, e))?;
    std::fs::rename(partial, dest).map_err(|e| io("rename to", dest, e))?;
    sync_dir(dest);
    Ok(())
}

/// Makes a rename in `path`'s directory durable (best effort where the
/// platform cannot open a directory).
fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Checks a store file without changing it: the check runs on a private
/// copy (opening a store file may write to it).
pub fn check_copy(file: &Path, keys: &KeyRing) -> Result<CheckReport, BackendError> {
    let dir = tempfile::tempdir().map_err(|e| io("make a temporary directory for", file, e))?;
    let copy = dir.path().join(DB_FILE);
    copy_private(file, &copy)?;
    let mut report = check_file(&copy, keys)?;
    report.file = file.to_path_buf();
    Ok(report)
}

fn copy_private(from: &Path, to: &Path) -> Result<(), BackendError> {
    let mut src = File::open(from).map_err(|e| io("read", from, e))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut dst = options.open(to).map_err(|e| io("write", to, e))?;
    std::io::copy(&mut src, &mut dst).map_err(|e| io("copy to", to, e))?;
    dst.sync_all().map_err(|e| io("write", to, e))
}

/// What a restore did.
#[derive(Clone, Debug)]
pub struct RestoreReport {
    pub check: CheckReport,
    /// Where the store that was replaced now is (none: there was none).
    pub kept_aside: Option<PathBuf>,
}

/// Why a restore refused.
#[derive(Debug)]
pub enum RestoreError {
    /// The backup is damaged or does not open with the keys held; the
    /// store was not touched.
    Refused(Box<CheckReport>),
    Backend(BackendError),
}

impl From<BackendError> for RestoreError {
    fn from(e: BackendError) -> Self {
        RestoreError::Backend(e)
    }
}

/// Puts the backup `backup` in place of `data_dir`'s store, once a copy
/// of it checks clean with `keys`. The store must not be in use.
pub fn restore(
    data_dir: &Path,
    keys: &KeyRing,
    backup: &Path,
) -> Result<RestoreReport, RestoreError> {
    if !backup.is_file() {
        return Err(
            BackendError::Unavailable(format!("no backup file at {}", backup.display())).into(),
        );
    }
    let live = data_dir.join(DB_FILE);
    let staging = data_dir.join(format!("{DB_FILE}.restoring"));
    let _ = std::fs::remove_file(&staging);
    copy_private(backup, &staging)?;
    let check = match check_file(&staging, keys) {
        Ok(c) if c.ok() => c,
        Ok(mut c) => {
            let _ = std::fs::remove_file(&staging);
            c.file = backup.to_path_buf();
            return Err(RestoreError::Refused(Box::new(c)));
        }
        Err(e) => {
            let _ = std::fs::remove_file(&staging);
            return Err(e.into());
        }
    };
    // Held open (locked) until the copy is in place, so no process opens
    // the old file meanwhile; a damaged one cannot be opened and is moved.
    let _held = if live.exists() {
        match RedbBackend::open(&live) {
            Ok(b) => Some(b),
            Err(BackendError::Unavailable(m)) if m.contains(IN_USE) => {
                let _ = std::fs::remove_file(&staging);
                return Err(BackendError::Unavailable(format!(
                    "{m} (a `credpool serve` or `credpool run`?): stop it before a restore"
                ))
                .into());
            }
            Err(_) => None,
        }
    } else {
        None
    };
    let kept_aside = if live.exists() {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let aside = data_dir.join(format!("{DB_FILE}.before-restore-{stamp}"));
        std::fs::rename(&live, &aside).map_err(|e| io("move aside", &live, e))?;
        Some(aside)
    } else {
        None
    };
    std::fs::rename(&staging, &live).map_err(|e| io("rename to", &live, e))?;
    sync_dir(&live);
    Ok(RestoreReport {
        check: CheckReport {
            file: backup.to_path_buf(),
            ..check
        },
        kept_aside,
    })
}
