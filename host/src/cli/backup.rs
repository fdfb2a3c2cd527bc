//! `credpool backup FILE` and `credpool restore FILE`: a consistent copy
//! of the store, still encrypted, and its return in the store's place.

use super::client::Remote;
use super::{Cli, EXIT_ERROR, Failed, key_source};
use crate::backend::{Backend, BackendError, IN_USE, RedbBackend};
use crate::backup::{self, RestoreError};
use crate::crypto::load_keys;
use crate::error::Error;
use crate::layout::{DB_FILE, KEY_FILE};
use serde_json::json;
use std::path::Path;

fn store_error(e: BackendError) -> Failed {
    Failed::from(Error::Store(e.into()))
}

/// Backup files are copies of the embedded store: a Redis store is backed
/// up by Redis (its RDB snapshot or AOF), still sealed.
fn not_on_redis(cli: &Cli, what: &str) -> Result<(), Failed> {
    match super::store_url(cli)? {
        Some(url) => Err(Failed(
            EXIT_ERROR,
            format!(
                "the store is Redis ({url}): `credpool {what}` works on the embedded store file; \
                 back Redis up with its own persistence (BGSAVE's RDB file or the AOF: the \
                 records in it stay sealed) and keep the key file apart"
            ),
        )),
        None => Ok(()),
    }
}

/// A backup of the local store (no process may hold it).
pub fn run(cli: &Cli, file: &Path, json: bool) -> Result<(), Failed> {
    not_on_redis(cli, "backup")?;
    let path = cli.data_dir.join(DB_FILE);
    if !path.is_file() {
        return Err(Failed(
            EXIT_ERROR,
            format!("no store at {}: nothing to back up", path.display()),
        ));
    }
    backup::refuse_existing(file).map_err(store_error)?;
    let backend = RedbBackend::open(&path).map_err(|e| match e {
        BackendError::Unavailable(m) if m.contains(IN_USE) => super::in_use_failure(format!(
            "{m} (a `credpool serve`?): take the backup through it: set \
                 CREDPOOL_ADDR=http://ADDR (its --listen address) and CREDPOOL_TOKEN=<an admin \
                 token of its tenant>, then run `credpool backup FILE` again"
        )),
        other => store_error(other),
    })?;
    let report = backup::write_backup(&backend, file).map_err(store_error)?;
    said(
        file,
        report.records,
        report.bytes,
        &cli.data_dir.join(KEY_FILE),
        json,
    );
    Ok(())
}

/// A backup taken by a running server: its snapshot, checked to be a
/// whole store file before it gets its name.
pub fn remote(r: &Remote, cli: &Cli, file: &Path, json: bool) -> Result<(), Failed> {
    backup::refuse_existing(file).map_err(store_error)?;
    let bytes = r.download(&["v1", "backup"], "take a backup")?;
    let partial = backup::partial_path(file);
    let _ = std::fs::remove_file(&partial);
    write_new_private(&partial, &bytes).map_err(|e| {
        Failed(
            EXIT_ERROR,
            format!("cannot write {}: {e}", partial.display()),
        )
    })?;
    let records = RedbBackend::open(&partial)
        .and_then(|b| b.scan("", None, usize::MAX).map(|all| all.len() as u64));
    let records = match records {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(Failed(
                EXIT_ERROR,
                format!("the server's backup did not arrive whole, nothing written: {e}"),
            ));
        }
    };
    backup::finish(&partial, file).map_err(store_error)?;
    let key_file = cli.key_file.clone();
    let key_hint = key_file.unwrap_or_else(|| Path::new("<the server's data dir>").join(KEY_FILE));
    said(file, records, bytes.len() as u64, &key_hint, json);
    Ok(())
}

fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn said(file: &Path, records: u64, bytes: u64, key_file: &Path, json: bool) {
    if json {
        println!(
            "{}",
            json!({"file": file.display().to_string(), "records": records, "bytes": bytes})
        );
    } else {
        println!(
            "wrote {} ({records} records, {bytes} bytes), still encrypted; it cannot be read \
             without the key file ({}): back that up too, somewhere else",
            file.display(),
            key_file.display()
        );
    }
}

/// Puts a backup in the store's place once it checks clean.
pub fn restore(cli: &Cli, file: &Path, json: bool) -> Result<(), Failed> {
    not_on_redis(cli, "restore")?;
    if !cli.data_dir.is_dir() {
        return Err(Failed(
            EXIT_ERROR,
            format!(
                "data directory {} does not exist; create it with `credpool init` (then put the \
                 key file the backup was sealed with in place of the new one)",
                cli.data_dir.display()
            ),
        ));
    }
    let keys = load_keys(&key_source(cli)).map_err(Error::from)?;
    let report = match backup::restore(&cli.data_dir, &keys, file) {
        Ok(r) => r,
        Err(RestoreError::Backend(e)) => return Err(store_error(e)),
        Err(RestoreError::Refused(check)) => {
            let problems = check.problems();
            let what = if check.file_damage.is_some() || check.key_problem.is_none() {
                "it is damaged"
            } else {
                "it was sealed under keys the key file does not hold"
            };
            let message = format!(
                "refused to restore {}: {what} ({} problem(s)); the store was not changed",
                file.display(),
                problems.len()
            );
            if json {
                println!(
                    "{}",
                    json!({
                        "restored": false,
                        "file": file.display().to_string(),
                        "problems": problems,
                        "error": {"code": "restore_refused", "message": message},
                    })
                );
                // The JSON answer above holds the failure.
                return Err(Failed(EXIT_ERROR, String::new()));
            }
            for p in &problems {
                eprintln!("  {p}");
            }
            return Err(Failed(EXIT_ERROR, message));
        }
    };
    let aside = report.kept_aside.as_ref().map(|p| p.display().to_string());
    if json {
        println!(
            "{}",
            json!({
                "restored": true,
                "file": file.display().to_string(),
                "records": report.check.records,
                "key_ids": report.check.key_ids,
                "kept_aside": aside,
            })
        );
    } else {
        println!(
            "restored {} ({} records, sealed under key(s) {:?})",
            file.display(),
            report.check.records,
            report.check.key_ids
        );
        if let Some(a) = aside {
            println!("the store it replaced is kept at {a}");
        }
    }
    Ok(())
}
