//! A data key per tenant (envelope encryption, as Vault and the cloud KMSs
//! do): each tenant's records are sealed with its own random data keys,
//! kept wrapped (sealed with the server's key) in one record,
//! `k/dk/<tenant>` (see [`crate::layout`]). So one tenant's keys open
//! nothing of another's; a tenant's data key rotates alone
//! ([`rekey_tenant`]); and removing a tenant destroys its wrapped data key
//! first ([`remove`]): its records, and any copy of them, no longer open.
//!
//! Migration: a store written before data keys existed keeps opening. A
//! tenant gets its data key when its pool first opens; its older records,
//! sealed with the server key, open with that key until a rekey (`credpool
//! rekey`, or `credpool rekey --tenant NAME`) moves them under the data key.

use crate::backend::{Backend, Swap, Write};
use crate::crypto::{self, CryptoError, DATA_KEY_BASE, KeyRing, Sealer, UsageLedger};
use crate::layout::{self, DATA_KEY_PREFIX, data_key_record, tenant_uses_key};
use crate::rekey::{RekeyError, RekeyOptions};
use crate::vault::{Opened, open_record, reseal_record};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use zeroize::Zeroizing;

/// A tenant's data keys, oldest first; the highest id seals.
pub type RawKeys = Vec<(u32, Zeroizing<[u8; 32]>)>;

const ENTRY: usize = 4 + 32;

fn encode(keys: &RawKeys) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(keys.len() * ENTRY));
    for (id, key) in keys {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(key.as_ref());
    }
    out
}

fn decode(plain: &[u8]) -> Option<RawKeys> {
    if plain.is_empty() || !plain.len().is_multiple_of(ENTRY) {
        return None;
    }
    plain
        .chunks(ENTRY)
        .map(|c| {
            let id = u32::from_be_bytes(c[..4].try_into().ok()?);
            let mut key = Zeroizing::new([0u8; 32]);
            key.copy_from_slice(&c[4..]);
            (id >= DATA_KEY_BASE).then_some((id, key))
        })
        .collect()
}

fn wrap_error(tenant: &str, error: CryptoError) -> RekeyError {
    RekeyError::DataKey {
        tenant: tenant.to_string(),
        error,
    }
}

/// The tenant's data keys and the stored bytes they came from (for a
/// compare-and-swap); none when the tenant has no data key.
pub fn read(
    backend: &dyn Backend,
    server: &KeyRing,
    tenant: &str,
) -> Result<Option<(RawKeys, Vec<u8>)>, RekeyError> {
    let record = data_key_record(tenant);
    let Some(stored) = backend.get(&record)? else {
        return Ok(None);
    };
    let plain = server
        .open(record.as_bytes(), &stored)
        .map_err(|e| wrap_error(tenant, e))?;
    let keys = decode(&plain).ok_or_else(|| wrap_error(tenant, CryptoError::Malformed))?;
    Ok(Some((keys, stored)))
}

/// Writes the wrapped data keys if the record still holds `expected`.
fn swap(
    backend: &dyn Backend,
    server: &KeyRing,
    tenant: &str,
    expected: Option<&[u8]>,
    keys: &RawKeys,
) -> Result<bool, RekeyError> {
    let record = data_key_record(tenant);
    let sealed = server
        .seal(record.as_bytes(), &encode(keys))
        .map_err(RekeyError::Crypto)?;
    Ok(backend.compare_and_swap(&record, expected, Some(&sealed))?)
}

/// Counts encryptions with a tenant's data keys, as the server key's are.
struct TenantLedger {
    backend: Arc<dyn Backend>,
    tenant: String,
}

impl UsageLedger for TenantLedger {
    fn reserve(&self, key_id: u32, count: u64) -> Result<u64, String> {
        crate::rekey::reserve_at(
            &*self.backend,
            &tenant_uses_key(&self.tenant, key_id),
            count,
        )
    }
}

fn ring_of(keys: &RawKeys) -> Result<KeyRing, RekeyError> {
    KeyRing::from_raw(keys).ok_or(RekeyError::Crypto(CryptoError::Malformed))
}

/// The tenant's data keys as a ring (encryptions counted in the store);
/// a first data key is made and stored wrapped when it has none.
pub fn open_or_create(
    backend: &Arc<dyn Backend>,
    server: &KeyRing,
    tenant: &str,
) -> Result<Arc<KeyRing>, RekeyError> {
    let ring = ring_of(&ensure(&**backend, server, tenant)?)?;
    ring.set_ledger(Arc::new(TenantLedger {
        backend: backend.clone(),
        tenant: tenant.to_string(),
    }));
    Ok(Arc::new(ring))
}

/// The tenant's data keys, a first one made and stored wrapped when it
/// has none.
fn ensure(backend: &dyn Backend, server: &KeyRing, tenant: &str) -> Result<RawKeys, RekeyError> {
    loop {
        if let Some((keys, _)) = read(backend, server, tenant)? {
            return Ok(keys);
        }
        let key = crypto::new_random_key().map_err(RekeyError::Crypto)?;
        // Two hosts opening the tenant at once: one key wins, both use it.
        if swap(
            backend,
            server,
            tenant,
            None,
            &vec![(DATA_KEY_BASE + 1, key)],
        )? {
            tracing::info!(target: "credpool::audit", "[AUDIT] tenant {tenant}: data key created");
        }
    }
}

/// A whole-store rekey meets `tenant`'s first record: a tenant without a
/// data key gets one (migration); with `new_key`, one with gets a new one.
/// A tenant whose wrapped keys do not open is left for the audit to name.
pub fn prepare_for_rekey(
    backend: &dyn Backend,
    rings: &mut StoreRings,
    tenant: &str,
    new_key: bool,
) -> Result<(), RekeyError> {
    let server = rings.server;
    let existing = match rings.tenant(backend, tenant) {
        Ok(found) => found.map(|l| l.ring.clone()),
        Err(_) => return Ok(()),
    };
    match existing {
        None => {
            ensure(backend, server, tenant)?;
            rings.forget(tenant);
        }
        Some(ring) if new_key => {
            rotate(backend, server, &ring, tenant)?;
        }
        Some(_) => {}
    }
    Ok(())
}

/// After a complete whole-store rekey: the tenant's old data keys destroyed.
pub fn retire_for_rekey(
    backend: &dyn Backend,
    rings: &mut StoreRings,
    tenant: &str,
) -> Result<Vec<u32>, RekeyError> {
    let server = rings.server;
    let Ok(Some(loaded)) = rings.tenant(backend, tenant) else {
        return Ok(Vec::new());
    };
    let ring = loaded.ring.clone();
    retire_old(backend, server, &ring, tenant)
}

/// Adds a new data key to the tenant's ring and its wrapped record (the
/// new one seals from now on; the old ones still open). Returns its id.
pub fn rotate(
    backend: &dyn Backend,
    server: &KeyRing,
    ring: &KeyRing,
    tenant: &str,
) -> Result<u32, RekeyError> {
    loop {
        let (mut keys, stored) = match read(backend, server, tenant)? {
            Some((keys, stored)) => (keys, Some(stored)),
            None => (Vec::new(), None),
        };
        let id = keys
            .iter()
            .map(|(id, _)| *id)
            .chain(ring.ids())
            .max()
            .unwrap_or(DATA_KEY_BASE)
            .max(DATA_KEY_BASE)
            + 1;
        let key = crypto::new_random_key().map_err(RekeyError::Crypto)?;
        keys.push((id, key.clone()));
        if swap(backend, server, tenant, stored.as_deref(), &keys)? {
            ring.add_primary(id, &key);
            tracing::warn!(target: "credpool::audit", "[AUDIT] tenant {tenant}: data key {id} is now primary");
            return Ok(id);
        }
    }
}

/// Keeps only the ring's primary data key, in the ring and the store.
/// Returns the ids dropped.
fn retire_old(
    backend: &dyn Backend,
    server: &KeyRing,
    ring: &KeyRing,
    tenant: &str,
) -> Result<Vec<u32>, RekeyError> {
    let primary = ring.primary_id();
    loop {
        let Some((keys, stored)) = read(backend, server, tenant)? else {
            return Ok(Vec::new());
        };
        let (keep, old): (RawKeys, RawKeys) = keys.into_iter().partition(|(id, _)| *id == primary);
        if old.is_empty() || keep.is_empty() {
            return Ok(Vec::new());
        }
        if swap(backend, server, tenant, Some(&stored), &keep)? {
            ring.retire_old();
            let old: Vec<u32> = old.into_iter().map(|(id, _)| id).collect();
            let counters: Vec<Write> = old
                .iter()
                .map(|id| Write::Delete(tenant_uses_key(tenant, *id)))
                .collect();
            backend.apply(&counters)?;
            return Ok(old);
        }
    }
}

/// What a rotation of one tenant's data key did.
#[derive(Clone, Debug, Default)]
pub struct TenantRekeyReport {
    pub tenant: String,
    /// The data key that seals the tenant's records now.
    pub primary: u32,
    /// Records sealed again with it.
    pub rewrapped: usize,
    /// Records someone changed during the rewrap (written with the new key).
    pub changed_meanwhile: usize,
    /// Records that do not open (left as they are).
    pub unreadable: Vec<String>,
    /// Data keys destroyed because nothing needs them any more.
    pub retired: Vec<u32>,
}

/// Rotates one tenant's data key: a new one, every record of the tenant
/// sealed again with it (records written with the server key before the
/// tenant had a data key move too), and the old data keys destroyed once
/// nothing needs them. Other tenants are not read.
pub fn rekey_tenant(
    backend: &dyn Backend,
    server: &KeyRing,
    ring: &KeyRing,
    tenant: &str,
    options: &RekeyOptions,
) -> Result<TenantRekeyReport, RekeyError> {
    let mut report = TenantRekeyReport {
        tenant: tenant.to_string(),
        ..Default::default()
    };
    report.primary = rotate(backend, server, ring, tenant)?;
    let sealer = Sealer {
        data: ring,
        legacy: Some(server),
    };
    let prefix = layout::redis_keys::tenant_prefix(tenant);
    let mut after: Option<String> = None;
    loop {
        let page = backend.scan(&prefix, after.as_deref(), options.batch.max(1))?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        let mut swaps = Vec::new();
        for (key, value) in page {
            match reseal_record(sealer, &key, &value) {
                Ok(Some(new)) => swaps.push(Swap {
                    key,
                    expected: value,
                    new,
                }),
                Ok(None) => {}
                Err(_) => report.unreadable.push(key),
            }
        }
        if !swaps.is_empty() {
            let applied = backend.swap_unchanged(&swaps)?;
            report.rewrapped += applied;
            report.changed_meanwhile += swaps.len() - applied;
        }
    }
    if report.unreadable.is_empty() && all_under(backend, sealer, &prefix)? {
        report.retired = retire_old(backend, server, ring, tenant)?;
    }
    Ok(report)
}

/// Whether every sealed record under `prefix` is under the sealer's primary.
fn all_under(backend: &dyn Backend, sealer: Sealer<'_>, prefix: &str) -> Result<bool, RekeyError> {
    let primary = sealer.primary_id();
    let mut after: Option<String> = None;
    loop {
        let page = backend.scan(prefix, after.as_deref(), 1024)?;
        let Some((last, _)) = page.last() else {
            return Ok(true);
        };
        after = Some(last.clone());
        for (key, value) in &page {
            match open_record(sealer, key, value) {
                Ok(Opened::Sealed(ids)) if ids.iter().all(|id| *id == primary) => {}
                Ok(Opened::Plain) => {}
                _ => return Ok(false),
            }
        }
    }
}

/// What removing a tenant did.
#[derive(Clone, Debug, Default)]
pub struct RemoveReport {
    /// Whether the tenant had a wrapped data key (now destroyed).
    pub data_key_destroyed: bool,
    /// Records deleted after it.
    pub records_deleted: usize,
}

/// Removes a tenant: its wrapped data key first (crypto-shredding: from
/// then on none of its records opens, wherever a copy of them is), then
/// its records and its key-use counters. The caller closes the tenant's
/// pool first.
pub fn remove(backend: &dyn Backend, tenant: &str) -> Result<RemoveReport, RekeyError> {
    let mut report = RemoveReport::default();
    let record = data_key_record(tenant);
    report.data_key_destroyed = backend.get(&record)?.is_some();
    backend.apply(&[Write::Delete(record)])?;
    tracing::warn!(target: "credpool::audit", "[AUDIT] tenant {tenant}: data key destroyed");
    for prefix in [
        layout::redis_keys::tenant_prefix(tenant),
        format!("{}t/{tenant}/", layout::USES_PREFIX),
    ] {
        loop {
            let page = backend.scan(&prefix, None, 512)?;
            if page.is_empty() {
                break;
            }
            let deletes: Vec<Write> = page.into_iter().map(|(k, _)| Write::Delete(k)).collect();
            if prefix.starts_with(layout::TENANT_PREFIX) {
                report.records_deleted += deletes.len();
            }
            backend.apply(&deletes)?;
        }
    }
    tracing::warn!(target: "credpool::audit", "[AUDIT] tenant {tenant} removed: {} records deleted", report.records_deleted);
    Ok(report)
}

/// The tenants that have a wrapped data key.
pub fn tenants_with_keys(backend: &dyn Backend) -> Result<Vec<String>, RekeyError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = backend.scan(DATA_KEY_PREFIX, after.as_deref(), 512)?;
        let Some((last, _)) = page.last() else {
            return Ok(out);
        };
        after = Some(last.clone());
        out.extend(
            page.iter()
                .filter_map(|(k, _)| k.strip_prefix(DATA_KEY_PREFIX).map(str::to_string)),
        );
    }
}

/// One tenant's ring as a store-wide scan sees it.
pub struct Loaded {
    pub ring: Arc<KeyRing>,
    /// The server key its wrapped record is sealed with.
    pub wrapped_by: u32,
}

/// The rings that open each record of a whole store (check, backup, audit,
/// rekey): the server's, and each tenant's data keys unwrapped once.
pub struct StoreRings<'a> {
    pub server: &'a KeyRing,
    tenants: HashMap<String, Result<Option<Loaded>, CryptoError>>,
}

impl<'a> StoreRings<'a> {
    pub fn new(server: &'a KeyRing) -> Self {
        StoreRings {
            server,
            tenants: HashMap::new(),
        }
    }

    /// Uses `ring` (a running pool's, so it learns any new key) for `tenant`.
    pub fn with_live(mut self, tenant: &str, ring: Arc<KeyRing>, wrapped_by: u32) -> Self {
        self.tenants
            .insert(tenant.to_string(), Ok(Some(Loaded { ring, wrapped_by })));
        self
    }

    /// The tenant's data keys: none when it has none yet; an error when
    /// its wrapped record does not open with the server key.
    pub fn tenant(
        &mut self,
        backend: &dyn Backend,
        tenant: &str,
    ) -> Result<Option<&Loaded>, CryptoError> {
        if !self.tenants.contains_key(tenant) {
            let loaded = match read(backend, self.server, tenant) {
                Ok(None) => Ok(None),
                Ok(Some((keys, stored))) => match KeyRing::from_raw(&keys) {
                    Some(ring) => Ok(Some(Loaded {
                        ring: Arc::new(ring),
                        wrapped_by: crypto::sealed_key_id(&stored).unwrap_or_default(),
                    })),
                    None => Err(CryptoError::Malformed),
                },
                Err(RekeyError::DataKey { error, .. }) | Err(RekeyError::Crypto(error)) => {
                    Err(error)
                }
                Err(_) => Err(CryptoError::Malformed),
            };
            self.tenants.insert(tenant.to_string(), loaded);
        }
        self.tenants[tenant]
            .as_ref()
            .map(Option::as_ref)
            .map_err(Clone::clone)
    }

    /// Reads again which server key wraps each loaded tenant's data keys.
    pub fn refresh_wraps(&mut self, backend: &dyn Backend) {
        for (tenant, loaded) in self.tenants.iter_mut() {
            if let Ok(Some(loaded)) = loaded
                && let Ok(Some(stored)) = backend.get(&data_key_record(tenant))
            {
                loaded.wrapped_by = crypto::sealed_key_id(&stored).unwrap_or_default();
            }
        }
    }

    /// Forgets a tenant's cached ring (after its wrapped record changed).
    pub fn forget(&mut self, tenant: &str) {
        self.tenants.remove(tenant);
    }

    /// Opens every sealed part of a stored record with the ring it needs.
    /// The ids are the keys that seal it; `data_keys` says whether they
    /// are a tenant's data keys (wrapped by `wrapped_by`).
    pub fn open_record(
        &mut self,
        backend: &dyn Backend,
        key: &str,
        value: &[u8],
    ) -> Result<RecordKeys, CryptoError> {
        let server = self.server;
        let Some(tenant) = layout::tenant_of(key) else {
            return Ok(RecordKeys::of(
                open_record(Sealer::single(server), key, value)?,
                None,
            ));
        };
        let tenant = tenant.to_string();
        match self.tenant(backend, &tenant)? {
            None => Ok(RecordKeys::of(
                open_record(Sealer::single(server), key, value)?,
                None,
            )),
            Some(loaded) => {
                let sealer = Sealer {
                    data: &loaded.ring,
                    legacy: Some(server),
                };
                Ok(RecordKeys::of(
                    open_record(sealer, key, value)?,
                    Some((tenant, loaded.wrapped_by)),
                ))
            }
        }
    }
}

/// What opening a record with [`StoreRings::open_record`] found.
#[derive(Debug)]
pub struct RecordKeys {
    pub opened: Opened,
    /// The tenant and the server key that wraps its data keys, when the
    /// record is a tenant's and it has data keys.
    pub tenant: Option<(String, u32)>,
}

impl RecordKeys {
    fn of(opened: Opened, tenant: Option<(String, u32)>) -> Self {
        RecordKeys { opened, tenant }
    }

    /// The server key this record finally depends on, and the data key (if
    /// any) under it: the oldest key it still needs.
    pub fn protecting(&self) -> Option<(u32, Option<u32>)> {
        let Opened::Sealed(ids) = &self.opened else {
            return None;
        };
        let oldest = *ids.iter().min()?;
        match &self.tenant {
            Some((_, wrapped_by)) if oldest >= DATA_KEY_BASE => Some((*wrapped_by, Some(oldest))),
            _ => Some((oldest, None)),
        }
    }
}

/// Records of each tenant by the data key that seals them (for audits).
pub type ByDataKey = BTreeMap<String, BTreeMap<u32, usize>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;

    #[test]
    fn wrapped_keys_round_trip_and_a_cut_record_is_refused() {
        let keys: RawKeys = vec![
            (DATA_KEY_BASE + 1, Zeroizing::new([1; 32])),
            (DATA_KEY_BASE + 2, Zeroizing::new([2; 32])),
        ];
        let plain = encode(&keys);
        let back = decode(&plain).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].0, DATA_KEY_BASE + 2);
        assert!(decode(&plain[..40]).is_none());
        // A server-range id is not a data key.
        let mut bad = plain.to_vec();
        bad[..4].copy_from_slice(&7u32.to_be_bytes());
        assert!(decode(&bad).is_none());
    }

    #[test]
    fn two_tenants_get_different_keys_and_removal_destroys_one() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let server = KeyRing::single(1, &[9; 32]);
        let a = open_or_create(&backend, &server, "a").unwrap();
        let b = open_or_create(&backend, &server, "b").unwrap();
        let sealed = a.seal(b"x", b"secret").unwrap();
        assert!(b.open(b"x", &sealed).is_err(), "b's key opened a's record");
        assert!(server.open(b"x", &sealed).is_err());
        // Reopening finds the same key.
        let again = open_or_create(&backend, &server, "a").unwrap();
        assert_eq!(again.open(b"x", &sealed).unwrap().as_slice(), b"secret");
        remove(&*backend, "a").unwrap();
        assert!(read(&*backend, &server, "a").unwrap().is_none());
        let fresh = open_or_create(&backend, &server, "a").unwrap();
        assert!(
            fresh.open(b"x", &sealed).is_err(),
            "a shredded key came back"
        );
        assert_eq!(tenants_with_keys(&*backend).unwrap(), vec!["a", "b"]);
    }
}
