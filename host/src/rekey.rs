//! Key rotation: a new primary key, a rewrap of every record in batches,
//! and the retirement of old keys once nothing needs them; plus the durable
//! count of encryptions per key that triggers rotation automatically.
//!
//! The steps of `credpool rekey`, and what a crash between them leaves:
//! 1. A new key N is made; its check record `k/check/N` and the marker
//!    `k/rekey = N` are written in one transaction. (Crash: the key file
//!    still ends at N-1, which reads everything; the next rekey reuses N.)
//! 2. The key file gets N appended, atomically (temp file, fsync, rename).
//!    From here N encrypts and the old keys only decrypt.
//! 3. Every record not sealed with N is opened and sealed again with N, a
//!    batch per transaction, each record swapped only if nobody changed it
//!    meanwhile. (Crash: every record is under N or an old key, all of
//!    which are in the file; rekey again sees the marker and continues.)
//! 4. Every record is checked; if all are under N, old keys leave the key
//!    file (atomically) and their bookkeeping is deleted. Then the marker.
//!
//! Tenants' records are sealed with their own data keys, which the server
//! key wraps (see [`crate::tenant_keys`]). A rekey also gives each tenant a
//! new data key (step 3 seals its records with it; a tenant without one
//! gets its first, which migrates a store written before data keys) and
//! destroys the old data keys at step 4. A resumed rekey moves records to
//! the data keys already there, without adding more.

use crate::backend::{Backend, BackendError, Swap, Write};
use crate::crypto::{self, CryptoError, KeyError, KeyRing, KeySource, UsageLedger};
use crate::layout::{
    self, CHECK_PREFIX, CHECK_VALUE, DATA_KEY_PREFIX, MARKER_KEY, TENANT_PREFIX, check_key,
    uses_key,
};
use crate::tenant_keys::{self, ByDataKey, StoreRings};
use crate::vault::{Opened, reseal_record};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts encryptions per key in the backend, a block at a time, with a
/// compare-and-swap so pools and hosts sharing a store never reuse a block.
pub struct BackendLedger(pub Arc<dyn Backend>);

impl UsageLedger for BackendLedger {
    fn reserve(&self, key_id: u32, count: u64) -> Result<u64, String> {
        reserve_at(&*self.0, &uses_key(key_id), count)
    }
}

/// Durably adds `count` to the counter at `key`; returns the total before.
pub fn reserve_at(backend: &dyn Backend, key: &str, count: u64) -> Result<u64, String> {
    {
        loop {
            let current = backend.get(key).map_err(|e| e.to_string())?;
            let used = match &current {
                Some(v) => u64::from_be_bytes(
                    v.as_slice()
                        .try_into()
                        .map_err(|_| format!("{key} is not a counter"))?,
                ),
                None => 0,
            };
            let next = used.saturating_add(count).to_be_bytes();
            if backend
                .compare_and_swap(key, current.as_deref(), Some(&next))
                .map_err(|e| e.to_string())?
            {
                return Ok(used);
            }
        }
    }
}

/// Encryptions reserved so far with `key_id` (what the ledger holds).
pub fn uses(backend: &dyn Backend, key_id: u32) -> Result<u64, BackendError> {
    Ok(backend
        .get(&uses_key(key_id))?
        .and_then(|v| v.as_slice().try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(0))
}

/// Why a rekey stopped. Names records and keys, never a value.
#[derive(Debug)]
pub enum RekeyError {
    /// The key cannot be rotated where it is kept (environment variable).
    NotRotatable(String),
    Key(KeyError),
    Backend(BackendError),
    Crypto(CryptoError),
    /// A tenant's wrapped data keys do not open with the server key.
    DataKey {
        tenant: String,
        error: CryptoError,
    },
}

impl std::fmt::Display for RekeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RekeyError::NotRotatable(m) => f.write_str(m),
            RekeyError::Key(e) => write!(f, "{e}"),
            RekeyError::Backend(e) => write!(f, "{e}"),
            RekeyError::Crypto(e) => write!(f, "{e}"),
            RekeyError::DataKey { tenant, error } => write!(
                f,
                "the data key of tenant {tenant} does not open with the server key: {error}"
            ),
        }
    }
}

impl std::error::Error for RekeyError {}

impl From<BackendError> for RekeyError {
    fn from(e: BackendError) -> Self {
        RekeyError::Backend(e)
    }
}

impl From<KeyError> for RekeyError {
    fn from(e: KeyError) -> Self {
        RekeyError::Key(e)
    }
}

/// The message for a key that lives in the environment.
pub const ENV_NOT_ROTATABLE: &str = "the key comes from CREDENTIAL_ENCRYPTION_KEY, which credpool cannot \
rotate: it never writes the environment. Rotate by moving to a key file: put `1:<the same base64>` in a \
file with mode 0600, pass it with --key-file (and unset the variable), then run `credpool rekey`";

/// Options of a rekey.
#[derive(Clone, Debug)]
pub struct RekeyOptions {
    /// Records per transaction.
    pub batch: usize,
    /// Drop old keys from the key file once every record is under the new one.
    pub retire: bool,
    /// Testing: stop (as if the process died) after this many batches.
    pub stop_after_batches: Option<usize>,
}

impl Default for RekeyOptions {
    fn default() -> Self {
        RekeyOptions {
            batch: 512,
            retire: true,
            stop_after_batches: None,
        }
    }
}

/// What a rekey did.
#[derive(Clone, Debug, Default)]
pub struct RekeyReport {
    /// The primary key now.
    pub primary: u32,
    /// Whether this run finished an interrupted one instead of adding a key.
    pub resumed: bool,
    /// Records sealed again with the primary key.
    pub rewrapped: usize,
    /// Records left because someone changed them during the rewrap (they
    /// were written with the primary key).
    pub changed_meanwhile: usize,
    /// Every record at the end, by the key it is sealed with.
    pub audit: Audit,
    /// Keys removed from the key file.
    pub retired: Vec<u32>,
    pub elapsed: Duration,
}

/// Every record of a store, by the key that seals it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Audit {
    /// Sealed records that opened, by the server key they depend on: the
    /// one that seals them, or for a record under its tenant's data key,
    /// the one that wraps that data key.
    pub by_key: BTreeMap<u32, usize>,
    /// Tenants' records under data keys, by tenant and data key id.
    pub by_data_key: ByDataKey,
    /// Wrapped data key records (one per tenant), by the server key.
    pub data_keys: BTreeMap<u32, usize>,
    /// Plain bookkeeping records.
    pub plain: usize,
    /// Key check records (one per key, each sealed with its own key).
    pub checks: usize,
    /// Records that failed to open (tampered, moved, or an absent key).
    pub unreadable: Vec<String>,
    /// Records of a kind this build cannot bind.
    pub unknown: Vec<String>,
}

impl Audit {
    pub fn sealed(&self) -> usize {
        self.by_key.values().sum()
    }
}

/// Opens every sealed record of the store (and drops the plain text at
/// once): the proof that everything is readable with the keys held.
pub fn audit(backend: &dyn Backend, ring: &KeyRing) -> Result<Audit, BackendError> {
    audit_with(backend, &mut StoreRings::new(ring))
}

/// [`audit`] with the rings given (a running pool's among them).
pub fn audit_with(backend: &dyn Backend, rings: &mut StoreRings) -> Result<Audit, BackendError> {
    rings.refresh_wraps(backend);
    let mut out = Audit::default();
    let mut after: Option<String> = None;
    loop {
        let page = backend.scan("", after.as_deref(), 1024)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (key, value) in &page {
            // Each check record stays sealed with its own key.
            if key.starts_with(CHECK_PREFIX) {
                out.checks += 1;
                continue;
            }
            let opened = match rings.open_record(backend, key, value) {
                Ok(opened) => opened,
                Err(_) => {
                    out.unreadable.push(key.clone());
                    continue;
                }
            };
            match (&opened.opened, opened.protecting()) {
                (Opened::Plain, _) => out.plain += 1,
                (Opened::Unknown, _) => out.unknown.push(key.clone()),
                (Opened::Sealed(_), Some((server, _))) if key.starts_with(DATA_KEY_PREFIX) => {
                    *out.data_keys.entry(server).or_default() += 1;
                }
                // A record counts under the oldest key it still needs.
                (Opened::Sealed(_), Some((server, data))) => {
                    *out.by_key.entry(server).or_default() += 1;
                    if let (Some(data), Some((tenant, _))) = (data, &opened.tenant) {
                        *out.by_data_key
                            .entry(tenant.clone())
                            .or_default()
                            .entry(data)
                            .or_default() += 1;
                    }
                }
                (Opened::Sealed(_), None) => out.unreadable.push(key.clone()),
            }
        }
    }
    Ok(out)
}

/// Adds a new primary key: check record and marker first, then the key
/// file, then the ring. Returns its id.
pub fn rotate_primary(
    backend: &dyn Backend,
    ring: &KeyRing,
    source: &KeySource,
) -> Result<u32, RekeyError> {
    let (id, key) = match source {
        KeySource::File(path) => crypto::next_key(path)?,
        KeySource::Env => return Err(RekeyError::NotRotatable(ENV_NOT_ROTATABLE.into())),
        KeySource::Ephemeral => {
            let id = ring.ids().into_iter().max().unwrap_or(0) + 1;
            let mut key = zeroize::Zeroizing::new([0u8; 32]);
            getrandom::fill(key.as_mut()).map_err(|_| RekeyError::Crypto(CryptoError::Random))?;
            (id, key)
        }
    };
    let record = check_key(id);
    let check = crypto::seal_with_raw(id, &key, record.as_bytes(), CHECK_VALUE)
        .map_err(RekeyError::Crypto)?;
    backend.apply(&[
        Write::Put(record, check),
        Write::Put(MARKER_KEY.into(), id.to_be_bytes().to_vec()),
    ])?;
    if let KeySource::File(path) = source {
        crypto::append_key(path, id, &key)?;
    }
    ring.add_primary(id, &key);
    tracing::warn!(target: "credpool::audit", "[AUDIT] key rotated: key {id} is now primary");
    Ok(id)
}

const WRONG_KEY: &str = "wrong key: this data directory was encrypted with a different key";

/// Refuses a key that is not the one the store was written with, so a wrong
/// key fails with "wrong key" instead of every record failing to decrypt.
/// A store with no check record and no data gets one for the primary key.
pub fn verify_key(backend: &dyn Backend, keys: &KeyRing) -> Result<(), RekeyError> {
    let wrong_key = || RekeyError::Key(KeyError(WRONG_KEY.into()));
    let record = check_key(keys.primary_id());
    if let Some(sealed) = backend.get(&record)? {
        return match keys.open(record.as_bytes(), &sealed) {
            Ok(v) if v.as_slice() == CHECK_VALUE => Ok(()),
            _ => Err(wrong_key()),
        };
    }
    let others = !backend.scan(CHECK_PREFIX, None, 1)?.is_empty();
    let has_data = !backend.scan(TENANT_PREFIX, None, 1)?.is_empty();
    if others || has_data {
        return Err(wrong_key());
    }
    let sealed = keys
        .seal(record.as_bytes(), CHECK_VALUE)
        .map_err(RekeyError::Crypto)?;
    Ok(backend.apply(&[Write::Put(record, sealed)])?)
}

fn marker(backend: &dyn Backend) -> Result<Option<u32>, BackendError> {
    Ok(backend
        .get(MARKER_KEY)?
        .and_then(|v| v.as_slice().try_into().ok().map(u32::from_be_bytes)))
}

/// Whether a rewrap to the current primary was started and not finished.
pub fn unfinished(backend: &dyn Backend, ring: &KeyRing) -> Result<bool, BackendError> {
    Ok(marker(backend)? == Some(ring.primary_id()))
}

/// `credpool rekey`: adds a key (or resumes an interrupted rekey), rewraps
/// every record, and retires old keys when nothing uses them.
pub fn run(
    backend: &dyn Backend,
    ring: &KeyRing,
    source: &KeySource,
    options: &RekeyOptions,
) -> Result<RekeyReport, RekeyError> {
    run_with(backend, StoreRings::new(ring), source, options)
}

/// [`run`] with the rings given (a running pool's data keys among them, so
/// it learns its tenant's new data key).
pub fn run_with(
    backend: &dyn Backend,
    mut rings: StoreRings,
    source: &KeySource,
    options: &RekeyOptions,
) -> Result<RekeyReport, RekeyError> {
    let ring = rings.server;
    let started = Instant::now();
    if matches!(source, KeySource::Env) {
        return Err(RekeyError::NotRotatable(ENV_NOT_ROTATABLE.into()));
    }
    let mut report = RekeyReport::default();
    if unfinished(backend, ring)? {
        report.resumed = true;
    } else {
        rotate_primary(backend, ring, source)?;
    }
    let primary = ring.primary_id();
    report.primary = primary;
    let mut after: Option<String> = None;
    let mut batches = 0;
    let mut seen_tenants = std::collections::HashSet::new();
    loop {
        let page = backend.scan("", after.as_deref(), options.batch.max(1))?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        let mut swaps = Vec::new();
        let mut seals: BTreeMap<String, u64> = BTreeMap::new();
        for (key, value) in page {
            if key.starts_with(CHECK_PREFIX) {
                continue;
            }
            let resealed = match layout::tenant_of(&key) {
                None => reseal_record(crypto::Sealer::single(ring), &key, &value),
                Some(tenant) => {
                    if seen_tenants.insert(tenant.to_string()) {
                        tenant_keys::prepare_for_rekey(
                            backend,
                            &mut rings,
                            tenant,
                            !report.resumed,
                        )?;
                    }
                    let Ok(Some(loaded)) = rings.tenant(backend, tenant) else {
                        continue;
                    };
                    *seals.entry(tenant.to_string()).or_default() += 2;
                    reseal_record(
                        crypto::Sealer {
                            data: &loaded.ring,
                            legacy: Some(ring),
                        },
                        &key,
                        &value,
                    )
                }
            };
            // A record that does not open is left as it is; the audit names it.
            let Ok(Some(new)) = resealed else {
                continue;
            };
            swaps.push(Swap {
                key,
                expected: value,
                new,
            });
        }
        if !swaps.is_empty() {
            let applied = backend.swap_unchanged(&swaps)?;
            report.rewrapped += applied;
            report.changed_meanwhile += swaps.len() - applied;
        }
        // Encryptions with the tenants' data keys, counted as pools count
        // them (an over-count at most).
        for (tenant, n) in seals {
            if let Ok(Some(loaded)) = rings.tenant(backend, &tenant) {
                let key = layout::tenant_uses_key(&tenant, loaded.ring.primary_id());
                reserve_at(backend, &key, n)
                    .map_err(|e| RekeyError::Crypto(CryptoError::Ledger(e)))?;
            }
        }
        batches += 1;
        if options.stop_after_batches.is_some_and(|n| batches >= n) {
            report.audit = audit_with(backend, &mut rings)?;
            report.elapsed = started.elapsed();
            return Ok(report);
        }
    }
    report.audit = audit_with(backend, &mut rings)?;
    let all_primary = report.audit.unreadable.is_empty()
        && report.audit.unknown.is_empty()
        && report.audit.by_key.keys().all(|id| *id == primary)
        && report.audit.data_keys.keys().all(|id| *id == primary)
        && report.audit.by_data_key.values().all(|ids| ids.len() == 1);
    if options.retire && all_primary {
        for tenant in report.audit.by_data_key.keys() {
            tenant_keys::retire_for_rekey(backend, &mut rings, tenant)?;
        }
        if let KeySource::File(path) = source {
            crypto::retain_keys(path, &[primary])?;
        }
        let old = ring.retire_old();
        let mut writes = Vec::new();
        for id in &old {
            writes.push(Write::Delete(check_key(*id)));
            writes.push(Write::Delete(uses_key(*id)));
        }
        backend.apply(&writes)?;
        report.retired = old;
    }
    if all_primary {
        backend.apply(&[Write::Delete(MARKER_KEY.into())])?;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}
