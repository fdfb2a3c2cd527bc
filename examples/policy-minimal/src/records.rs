//! What this policy remembers of a credential, and how it keeps it in the
//! host's `store` import (one JSON value per credential, per open lease and
//! per site's round-robin cursor). The host seals and scopes what is
//! stored; the policy only sees its own tenant's keys. Its keys start with
//! `minimal/`: another policy's records (the built-in one uses `cred/`) in
//! the same tenant are never read as this one's.

use crate::credpool::policy::store;
use crate::credpool::policy::types::{CredentialKind, PoolError, Status, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt::Debug;

/// Store key prefix of credential records.
pub const CRED_PREFIX: &str = "minimal/cred/";
/// Store key prefix of each site's last handed-out credential id.
pub const CURSOR_PREFIX: &str = "minimal/cursor/";
/// Store key prefix of open leases (by sequence number, in hex).
pub const LEASE_PREFIX: &str = "minimal/lease/";

/// One credential, as this policy keeps it: no secret value ever reaches a
/// policy, and this one keeps no names or personal data either.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub site: String,
    /// The kind's WIT name in Rust (`Session`, `Account`, ...).
    pub kind: String,
    pub tags: Vec<String>,
    pub created_at: Timestamp,
    /// Set after a block: the credential rests until then.
    pub rest_until: Option<Timestamp>,
    /// `Init` until its first reported success, then `Active`.
    pub used_ok: bool,
    pub use_count: u64,
    pub success_count: u64,
    pub fail_count: u64,
    pub last_used_at: Option<Timestamp>,
}

impl Record {
    pub fn kind(&self) -> CredentialKind {
        parse(&ALL_KINDS, &self.kind).unwrap_or(CredentialKind::Account)
    }

    /// Its status at `now`: suspended while it rests.
    pub fn status(&self, now: Timestamp) -> Status {
        match self.rest_until {
            Some(until) if until > now => Status::Suspended,
            _ if self.used_ok => Status::Active,
            _ => Status::Init,
        }
    }
}

/// A lease out now. Stored, so a lease granted by one host process can be
/// reported to the next (the CLI runs one process per command).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OpenLease {
    pub seq: u64,
    pub nonce: u64,
    pub id: String,
    pub expires_at: Timestamp,
}

const ALL_KINDS: [CredentialKind; 5] = [
    CredentialKind::Account,
    CredentialKind::Session,
    CredentialKind::Token,
    CredentialKind::ApiKey,
    CredentialKind::Device,
];

/// An enum's name as stored (its Debug form).
pub fn name<T: Debug>(value: T) -> String {
    format!("{value:?}")
}

fn parse<T: Debug + Copy>(all: &[T], stored: &str) -> Option<T> {
    all.iter().copied().find(|v| name(v) == stored)
}

/// Writes a credential's record durably.
pub fn save(record: &Record) -> Result<(), PoolError> {
    let bytes = serde_json::to_vec(record).expect("a record always serialises");
    store::set(&format!("{CRED_PREFIX}{}", record.id), &bytes).map_err(PoolError::Storage)
}

/// Deletes a credential's record.
pub fn forget(id: &str) -> Result<(), PoolError> {
    store::delete(&format!("{CRED_PREFIX}{id}"))
        .map(|_| ())
        .map_err(PoolError::Storage)
}

/// Remembers the id last handed out on `site`, so the rotation goes on
/// where it stopped after the host restarts.
pub fn save_cursor(site: &str, id: &str) -> Result<(), PoolError> {
    store::set(&format!("{CURSOR_PREFIX}{site}"), id.as_bytes()).map_err(PoolError::Storage)
}

/// Writes an open lease durably.
pub fn save_lease(lease: &OpenLease) -> Result<(), PoolError> {
    let bytes = serde_json::to_vec(lease).expect("a lease always serialises");
    store::set(&format!("{LEASE_PREFIX}{:016x}", lease.seq), &bytes).map_err(PoolError::Storage)
}

/// Deletes an ended lease.
pub fn end_lease(seq: u64) -> Result<(), PoolError> {
    store::delete(&format!("{LEASE_PREFIX}{seq:016x}"))
        .map(|_| ())
        .map_err(PoolError::Storage)
}

/// Every stored value under `prefix`, page by page.
pub fn load_all(prefix: &str) -> Result<Vec<(String, Vec<u8>)>, PoolError> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = store::scan(prefix, after.as_deref(), 500).map_err(PoolError::Storage)?;
        all.extend(page.entries);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(all),
        }
    }
}
