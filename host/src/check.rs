//! `credpool check`: verifies a store file (every page, through the
//! storage engine's integrity check) and every sealed record in it (each
//! opened with the keys held, the plain text dropped at once), and names
//! what is damaged. Never a value: records are named by their keys.

use crate::backend::{Backend, BackendError, RedbBackend};
use crate::crypto::{CryptoError, KeyRing};
use crate::layout::{CHECK_PREFIX, CHECK_VALUE};
use crate::vault::Opened;
use std::path::{Path, PathBuf};

/// What a check found.
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    pub file: PathBuf,
    /// The file's size; none for a store that is not a file (Redis),
    /// whose pages are not checked.
    pub bytes: Option<u64>,
    /// The file did not open: what the storage engine found wrong.
    pub file_damage: Option<String>,
    /// The newest commit did not verify and the one before it was used.
    pub rolled_back: bool,
    /// Keys with a check record in the file.
    pub key_ids: Vec<u32>,
    /// The keys held do not open this store.
    pub key_problem: Option<String>,
    /// Records that opened (sealed or plain bookkeeping).
    pub records: usize,
    /// Records that did not, each with why.
    pub damaged: Vec<Damage>,
}

/// One record that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    pub key: String,
    pub reason: String,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.file_damage.is_none() && self.key_problem.is_none() && self.damaged.is_empty()
    }

    /// Each problem as a line.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(m) = &self.file_damage {
            out.push(format!("{}: {m}", self.file.display()));
        }
        if let Some(m) = &self.key_problem {
            out.push(m.clone());
        }
        if self.key_problem.is_some() && !self.damaged.is_empty() {
            // With the wrong keys every record fails: one line, not one each.
            out.push(format!(
                "{} records do not open with these keys (first: {})",
                self.damaged.len(),
                self.damaged[0].key
            ));
            return out;
        }
        for d in &self.damaged {
            out.push(format!(
                "record {} ({}): {}",
                d.key,
                describe(&d.key),
                d.reason
            ));
        }
        out
    }
}

/// What a record is, from its key.
pub fn describe(key: &str) -> String {
    let Some(rest) = key.strip_prefix(crate::layout::TENANT_PREFIX) else {
        return "key bookkeeping".into();
    };
    let (tenant, rest) = rest.split_once('/').unwrap_or((rest, ""));
    if let Some(id) = rest.strip_prefix("s/") {
        format!("the secrets of credential {id}, tenant {tenant}")
    } else if let Some(id) = rest.strip_prefix("c/") {
        format!("the captcha image of credential {id}'s login, tenant {tenant}")
    } else if let Some(id) = rest.strip_prefix("p/cred/") {
        format!("credential {id}, tenant {tenant}")
    } else {
        format!("a policy record of tenant {tenant}")
    }
}

/// Checks the store file at `path` with `keys`. The file is opened as a
/// pool opens it (a rolled-back newest commit is kept so). A file that is
/// in use by another process is an error, not a finding.
pub fn check_file(path: &Path, keys: &KeyRing) -> Result<CheckReport, BackendError> {
    let mut report = CheckReport {
        file: path.to_path_buf(),
        bytes: Some(std::fs::metadata(path).map(|m| m.len()).map_err(|e| {
            BackendError::Unavailable(format!("cannot read {}: {e}", path.display()))
        })?),
        ..CheckReport::default()
    };
    let backend = match RedbBackend::open(path) {
        Ok(b) => b,
        Err(BackendError::Corrupt(m)) => {
            report.file_damage = Some(format!(
                "the integrity check failed: {}",
                engine_finding(&m)
            ));
            return Ok(report);
        }
        Err(e) => return Err(e),
    };
    report.rolled_back = backend.rolled_back();
    match check_records(&backend, keys, &mut report) {
        Ok(()) => Ok(report),
        Err(BackendError::Corrupt(m)) => {
            report.file_damage = Some(format!("reading it failed: {}", engine_finding(&m)));
            Ok(report)
        }
        Err(e) => Err(e),
    }
}

/// Checks every sealed record of a store that is not a file (Redis),
/// named `name` in the report (its URL without a password).
pub fn check_backend(
    backend: &dyn Backend,
    name: &str,
    keys: &KeyRing,
) -> Result<CheckReport, BackendError> {
    let mut report = CheckReport {
        file: name.into(),
        ..CheckReport::default()
    };
    check_records(backend, keys, &mut report)?;
    Ok(report)
}

/// The engine's own words from a damaged-store message (without the path
/// and the advice, which the report gives once).
fn engine_finding(message: &str) -> String {
    match (message.find("is damaged ("), message.rfind("): ")) {
        (Some(start), Some(end)) if start + 12 <= end => message[start + 12..end].to_string(),
        _ => message.to_string(),
    }
}

fn check_records(
    backend: &dyn Backend,
    keys: &KeyRing,
    report: &mut CheckReport,
) -> Result<(), BackendError> {
    let held = keys.ids();
    for (key, sealed) in backend.scan(CHECK_PREFIX, None, usize::MAX)? {
        let Some(id) = key
            .strip_prefix(CHECK_PREFIX)
            .and_then(|i| i.parse::<u32>().ok())
        else {
            report.damaged.push(Damage {
                key,
                reason: "not a key check record".into(),
            });
            continue;
        };
        report.key_ids.push(id);
        if !held.contains(&id) {
            continue;
        }
        match keys.open(key.as_bytes(), &sealed) {
            Ok(v) if v.as_slice() == CHECK_VALUE => report.records += 1,
            _ => {
                report.key_problem = Some(format!(
                    "wrong key: key {id} of the key file does not open the store's check \
                     record for key {id}: the store (or backup) was sealed with another key \
                     of that number; use the key file that was current when it was written"
                ));
                report.damaged.push(Damage {
                    key,
                    reason: format!("key {id} of the key file does not open it"),
                });
            }
        }
    }
    let primary = keys.primary_id();
    if report.key_problem.is_none()
        && !report.key_ids.contains(&primary)
        && (!report.key_ids.is_empty() || has_data(backend)?)
    {
        report.key_problem = Some(format!(
            "wrong key: the store was sealed under key(s) {:?} and the key file's primary key \
             is {primary} (it holds {held:?}); use the key file that was current when the store \
             (or backup) was written",
            report.key_ids
        ));
    }
    let mut missing = Vec::new();
    let mut rings = crate::tenant_keys::StoreRings::new(keys);
    let mut after: Option<String> = None;
    loop {
        let page = backend.scan("", after.as_deref(), 1024)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (key, value) in page {
            if key.starts_with(CHECK_PREFIX) {
                continue;
            }
            match rings.open_record(backend, &key, &value).map(|r| r.opened) {
                Ok(Opened::Sealed(_) | Opened::Plain) => report.records += 1,
                Ok(Opened::Unknown) => report.damaged.push(Damage {
                    key,
                    reason: "a record of a kind this build does not know".into(),
                }),
                // A tenant's data key that is gone: the tenant was removed
                // (crypto-shredded), not a key file to look for.
                Err(CryptoError::UnknownKey(id)) if id >= crate::crypto::DATA_KEY_BASE => {
                    report.damaged.push(Damage {
                        key,
                        reason: "sealed with a tenant's data key that is not in the store \
                                 (destroyed when the tenant was removed)"
                            .into(),
                    })
                }
                Err(e) => {
                    if let CryptoError::UnknownKey(id) = e
                        && !missing.contains(&id)
                    {
                        missing.push(id);
                    }
                    report.damaged.push(Damage {
                        key,
                        reason: e.to_string(),
                    })
                }
            }
        }
    }
    if !missing.is_empty() && report.key_problem.is_none() {
        report.key_problem = Some(format!(
            "records are sealed under key(s) {missing:?}, which the key file does not hold (it \
             holds {held:?}): use the key file that was current when the store (or backup) \
             was written"
        ));
    }
    Ok(())
}

fn has_data(backend: &dyn Backend) -> Result<bool, BackendError> {
    Ok(!backend
        .scan(crate::layout::TENANT_PREFIX, None, 1)?
        .is_empty())
}
