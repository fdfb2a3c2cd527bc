//! `credpool check`: the store file and every sealed record verified with
//! the keys held; what is damaged named, by record key, never a value.

use super::{Cli, EXIT_ERROR, Failed, key_source};
use crate::backend::{BackendError, IN_USE, RedisBackend};
use crate::check::{CheckReport, check_backend, describe};
use crate::crypto::load_keys;
use crate::error::Error;
use crate::layout::DB_FILE;
use serde_json::json;
use std::path::Path;

pub fn run(cli: &Cli, file: Option<&Path>, json: bool) -> Result<(), Failed> {
    let keys = load_keys(&key_source(cli)).map_err(Error::from)?;
    let report = match file {
        Some(f) => crate::backup::check_copy(f, &keys),
        None if let Some(url) = super::store_url(cli)? => {
            RedisBackend::open(&url).and_then(|b| check_backend(&b, &url.to_string(), &keys))
        }
        None => {
            let path = cli.data_dir.join(DB_FILE);
            if !path.is_file() {
                return Err(Failed(
                    EXIT_ERROR,
                    format!(
                        "no store at {}: nothing to check (`credpool init`, then add credentials)",
                        path.display()
                    ),
                ));
            }
            crate::check::check_file(&path, &keys)
        }
    }
    .map_err(|e| match e {
        BackendError::Unavailable(m) if m.contains(IN_USE) => super::in_use_failure(format!(
            "{m} (a `credpool serve`, or `credpool run`?): check needs the file itself; \
                 stop that process, or take a backup through it (`credpool backup FILE` with \
                 CREDPOOL_ADDR and an admin CREDPOOL_TOKEN) and run `credpool check --file FILE`"
        )),
        other => Failed::from(Error::Store(other.into())),
    })?;
    print(&report, json);
    if report.ok() {
        return Ok(());
    }
    let message = if json {
        // The JSON answer above holds the failure.
        String::new()
    } else {
        format!(
            "{} is damaged ({} problem(s) above): {}",
            report.file.display(),
            report.problems().len(),
            crate::backend::DAMAGED_ADVICE
        )
    };
    Err(Failed(EXIT_ERROR, message))
}

fn print(report: &CheckReport, json: bool) {
    if json {
        let damaged: Vec<_> = report
            .damaged
            .iter()
            .map(|d| json!({"key": d.key, "what": describe(&d.key), "reason": d.reason}))
            .collect();
        println!(
            "{}",
            json!({
                "ok": report.ok(),
                "file": report.file.display().to_string(),
                "bytes": report.bytes,
                "file_damage": report.file_damage,
                "rolled_back": report.rolled_back,
                "key_ids": report.key_ids,
                "key_problem": report.key_problem,
                "records": report.records,
                "damaged": damaged,
                "problems": report.problems(),
            })
        );
        return;
    }
    if report.ok() {
        let pages = match report.bytes {
            Some(n) => format!(" ({n} bytes): every page verifies and"),
            None => ":".to_string(),
        };
        println!(
            "{}{pages} all {} records open with key(s) {:?}",
            report.file.display(),
            report.records,
            report.key_ids
        );
    } else {
        match report.bytes {
            Some(n) => println!("{} ({n} bytes): DAMAGED", report.file.display()),
            None => println!("{}: DAMAGED", report.file.display()),
        }
        for p in report.problems() {
            println!("  {p}");
        }
        if report.file_damage.is_none() {
            println!(
                "  {} other records open with key(s) {:?}",
                report.records, report.key_ids
            );
        }
    }
    if report.rolled_back {
        println!(
            "  note: the newest commit did not verify and the one before it is in use \
             (as after a crash)"
        );
    }
}
