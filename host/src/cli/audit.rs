//! `credpool audit`: the trail of reveals and exports (`DATA_DIR/audit.log`),
//! and the recording of the command's own reveals and exports in it.

use super::client::{Body, Remote};
use super::{EXIT_ERROR, Failed, output};
use crate::CredentialView;
use crate::audit::{AuditLog, AuditRecord};
use reqwest::Method;
use serde_json::Value;
use std::path::Path;

/// Where the command records what it reveals.
pub struct Trail {
    log: AuditLog,
    tenant: String,
}

impl Trail {
    pub fn new(data_dir: &Path, tenant: &str) -> Trail {
        Trail {
            log: AuditLog::in_dir(data_dir),
            tenant: tenant.to_string(),
        }
    }

    /// Records a reveal or export of `view`'s secrets before they are
    /// printed; when it cannot, nothing is printed.
    pub fn record(
        &self,
        action: &str,
        view: &CredentialView,
        format: Option<&str>,
    ) -> Result<(), Failed> {
        let mut record = AuditRecord::now(action, &view.id, &view.site, &self.tenant);
        if let Some(f) = format {
            record = record.with_format(f);
        }
        self.log.append(&record).map_err(|e| {
            Failed(
                EXIT_ERROR,
                format!(
                    "cannot write the audit record to {}: {e}; nothing was revealed",
                    self.log.path().display()
                ),
            )
        })
    }
}

/// Prints the trail of the local data directory.
pub fn run(data_dir: &Path, credential: Option<&str>, json: bool) -> Result<(), Failed> {
    let log = AuditLog::in_dir(data_dir);
    let (mut records, damaged) = log.read().map_err(|e| {
        Failed(
            EXIT_ERROR,
            format!("cannot read {}: {e}", log.path().display()),
        )
    })?;
    if let Some(id) = credential {
        records.retain(|r| r.credential == id);
    }
    show(
        &output::audit_json(&records, &damaged),
        &log.path().display().to_string(),
        json,
    )
}

/// Through a server: its trail, for the token's tenant (admins only).
pub fn remote(r: &Remote, credential: Option<&str>, json: bool) -> Result<(), Failed> {
    let mut got = r.call(
        Method::GET,
        &["v1", "audit"],
        &[],
        Body::None,
        "read the audit trail",
    )?;
    if let (Some(id), Some(records)) = (credential, got["records"].as_array_mut()) {
        records.retain(|r| r["credential"] == id);
    }
    show(&got, "the server's audit file", json)
}

/// Prints the trail, then fails when lines of the file are damaged.
fn show(v: &Value, file: &str, json: bool) -> Result<(), Failed> {
    output::print_audit_value(v, json);
    let damaged = v["damaged"].as_array().map_or(&[][..], Vec::as_slice);
    for d in damaged {
        eprintln!(
            "credpool: {file} line {}: {}",
            d["line"].as_u64().unwrap_or(0),
            d["message"].as_str().unwrap_or("damaged")
        );
    }
    if damaged.is_empty() {
        Ok(())
    } else if json {
        // The JSON printed holds the damaged lines: nothing more to say.
        Err(Failed(EXIT_ERROR, String::new()))
    } else {
        Err(Failed(
            EXIT_ERROR,
            format!(
                "{} damaged line(s) in {file}: the trail may have been tampered with",
                damaged.len()
            ),
        ))
    }
}
