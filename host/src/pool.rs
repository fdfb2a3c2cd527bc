//! The Rust API crawler engines use: a [`Pool`] for one tenant, backed by a
//! sandboxed instance of the policy component. Calls are synchronous and
//! cheap; a `Pool` is `Send + Sync` and serialises calls internally.

use crate::backend::{Backend, MemoryBackend, RedbBackend};
use crate::bindings::Policy;
use crate::bindings::pool::{
    AcquireRequest, AcquireResponse, AcquireStatus, CredentialView, ListFilter, ReportEffect,
    SiteStats, TickSummary, UnavailableReason,
};
use crate::bindings::types::{
    self, AccessLevel, CredentialKind, CredentialMeta, LeaseId, Outcome, PoolError,
};
use crate::clock::ManualClock;
use crate::crypto::{KeyRing, KeySource, load_keys};
use crate::error::{Error, Result};
use crate::events::{EventSink, TracingSink};
use crate::runtime::{EPOCH_TICK, Runtime};
use crate::secrets::Secrets;
use crate::state::{HostState, Recorder};
use crate::vault::Vault;
use smol_str::SmolStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use wasmtime::Store;

/// Counters and health are written at most this long after they change.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
const FLUSH_TICKS: u64 = (FLUSH_INTERVAL.as_millis() / EPOCH_TICK.as_millis()) as u64;

/// Where the records live.
#[derive(Clone)]
pub enum Storage {
    /// `credpool.redb` under the data directory (the embedded default).
    Disk(PathBuf),
    /// In memory, gone with the process (tests, the demo).
    Memory,
    /// A backend the caller built (e.g. shared between tenants).
    Shared(Arc<dyn Backend>),
}

/// How to open a pool.
#[derive(Clone)]
pub struct PoolOptions {
    pub storage: Storage,
    pub key: KeySource,
    pub tenant: String,
    /// The policy's configuration as JSON (the `[policy]` table).
    pub policy_config: String,
    /// Another policy component instead of the built-in one.
    pub component: Option<PathBuf>,
    /// A wall clock the test or simulation controls, instead of the system's.
    pub clock: Option<ManualClock>,
    pub events: Arc<dyn EventSink>,
    pub memory_limit: usize,
    pub call_deadline: Duration,
    /// Record every value crossing the boundary (tests).
    pub recorder: Option<Recorder>,
    /// Rotate the primary key after this many encryptions with it
    /// (default [`crate::crypto::ROTATE_AFTER`]; tests lower it).
    pub rotate_after: u64,
}

impl PoolOptions {
    /// A pool on disk under `data_dir`, keyed by `data_dir/credpool.key`.
    pub fn on_disk(data_dir: &Path) -> Self {
        PoolOptions {
            storage: Storage::Disk(data_dir.to_path_buf()),
            key: KeySource::File(data_dir.join(KEY_FILE)),
            ..Self::in_memory()
        }
    }

    /// A pool in memory with a key that lives as long as the process.
    pub fn in_memory() -> Self {
        PoolOptions {
            storage: Storage::Memory,
            key: KeySource::Ephemeral,
            tenant: "default".into(),
            policy_config: String::new(),
            component: None,
            clock: None,
            events: Arc::new(TracingSink),
            memory_limit: 512 << 20,
            call_deadline: Duration::from_secs(5),
            recorder: None,
            rotate_after: crate::crypto::ROTATE_AFTER,
        }
    }
}

/// The key file's name in a data directory.
pub const KEY_FILE: &str = "credpool.key";
/// The database file's name in a data directory.
pub const DB_FILE: &str = "credpool.redb";

/// A credential to add: its metadata and its secrets.
#[derive(Clone, Debug)]
pub struct NewCredential {
    pub id: Option<String>,
    pub site: String,
    pub kind: CredentialKind,
    /// Milliseconds since the epoch.
    pub expires_at: Option<i64>,
    pub tags: Vec<String>,
    pub username: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub token_scope: Vec<String>,
    pub source_account: Option<String>,
    pub max_concurrent: Option<u32>,
    pub rate_per_minute: Option<u32>,
    pub labels: Vec<(String, String)>,
    pub secrets: Secrets,
}

impl NewCredential {
    pub fn new(site: &str, kind: CredentialKind) -> Self {
        NewCredential {
            id: None,
            site: site.to_string(),
            kind,
            expires_at: None,
            tags: Vec::new(),
            username: None,
            phone: None,
            email: None,
            token_scope: Vec::new(),
            source_account: None,
            max_concurrent: None,
            rate_per_minute: None,
            labels: Vec::new(),
            secrets: Secrets::default(),
        }
    }

    pub fn with_id(mut self, id: &str) -> Self {
        self.id = Some(id.to_string());
        self
    }
}

impl AcquireRequest {
    /// Any credential of `site`.
    pub fn site(site: &str) -> Self {
        AcquireRequest {
            site: site.to_string(),
            kind: None,
            purpose: None,
            tags: Vec::new(),
            lease_ttl_ms: None,
        }
    }
}

impl ListFilter {
    /// Every credential.
    pub fn all() -> Self {
        ListFilter {
            site: None,
            kind: None,
            status: None,
            tag: None,
            after: None,
            limit: None,
        }
    }
}

/// A granted lease: which credential and, for the caller to use, its
/// secrets. [`Pool::view`] has the rest of the credential.
#[derive(Clone, Debug)]
pub struct Lease {
    pub id: LeaseId,
    pub credential: LeasedCredential,
    pub granted_at: i64,
    pub expires_at: i64,
    /// Shared with the pool's cache of decrypted secrets (read-only).
    pub secrets: Arc<Secrets>,
}

/// Shown as the policy shows it: `l<seq in hex>.<nonce in 16 hex digits>`.
impl std::fmt::Display for LeaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "l{:x}.{:016x}", self.seq, self.nonce)
    }
}

impl std::str::FromStr for LeaseId {
    type Err = Error;

    /// Reads the shown form (what `credpool acquire` printed).
    fn from_str(s: &str) -> Result<LeaseId> {
        let hex = |part: &str| {
            (!part.is_empty() && part.len() <= 16)
                .then(|| u64::from_str_radix(part, 16).ok())
                .flatten()
        };
        let parsed = s.trim().strip_prefix('l').and_then(|rest| {
            let (seq, nonce) = rest.split_once('.')?;
            Some(LeaseId {
                seq: hex(seq)?,
                nonce: hex(nonce)?,
            })
        });
        parsed.ok_or_else(|| Error::Input {
            field: "lease id".into(),
            reason: "expected the form l<hex>.<hex> that acquire printed".into(),
        })
    }
}

impl PartialEq for LeaseId {
    fn eq(&self, other: &LeaseId) -> bool {
        (self.seq, self.nonce) == (other.seq, other.nonce)
    }
}

impl Eq for LeaseId {}

impl std::hash::Hash for LeaseId {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (self.seq, self.nonce).hash(h);
    }
}

impl serde::Serialize for LeaseId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The credential of a lease, as it was when handed out. Its id is kept
/// inline when short (23 bytes or fewer), else shared, and its site is
/// shared with the pool's tables: a lease allocates no string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeasedCredential {
    pub id: SmolStr,
    pub site: Arc<str>,
    pub kind: CredentialKind,
    pub status: crate::Status,
    pub health: u8,
}

/// The answer to an acquire, as the card's GetCredentialResponse.
#[derive(Clone, Debug)]
pub struct Acquired {
    pub status: AcquireStatus,
    pub lease: Option<Lease>,
    pub reason: Option<UnavailableReason>,
    pub next_free_at: Option<i64>,
    pub alternatives: Vec<String>,
    pub warnings: Vec<String>,
}

struct Instance {
    store: Store<HostState>,
    policy: Policy,
    /// A trap leaves a component instance unusable: make a new one.
    poisoned: bool,
    /// When counters were last flushed, in [`crate::runtime::ticks`].
    last_flush: u64,
}

/// A credential pool for one tenant.
pub struct Pool {
    runtime: Arc<Runtime>,
    vault: Arc<Vault>,
    options: PoolOptions,
    instance: Mutex<Instance>,
    /// The HTTP side of refreshes, once attached.
    refresher: OnceLock<Arc<crate::lifecycle::Refresher>>,
}

impl Pool {
    /// Opens the pool: storage, key, policy instance, and the tenant's records.
    pub fn open(options: PoolOptions) -> Result<Pool> {
        let keys = Arc::new(load_keys(&options.key)?);
        let backend: Arc<dyn Backend> = match &options.storage {
            Storage::Disk(dir) => {
                if !dir.is_dir() {
                    return Err(Error::Config(format!(
                        "data directory {} does not exist; create it with `credpool init`",
                        dir.display()
                    )));
                }
                crate::private_fs::ensure_private_dir(dir).map_err(Error::Config)?;
                Arc::new(RedbBackend::open(&dir.join(DB_FILE)).map_err(|e| Error::Store(e.into()))?)
            }
            Storage::Memory => Arc::new(MemoryBackend::new()),
            Storage::Shared(b) => b.clone(),
        };
        check_key(&backend, &keys)?;
        keys.set_ledger(Arc::new(crate::rekey::BackendLedger(backend.clone())));
        keys.set_rotate_after(options.rotate_after);
        let runtime = match &options.component {
            Some(path) => Runtime::from_file(path),
            None => match &options.storage {
                // Keep the compiled policy beside the data it serves.
                Storage::Disk(dir) => Runtime::builtin_cached(Some(&dir.join("cache"))),
                _ => Runtime::builtin(),
            },
        }
        .map_err(|e| Error::Policy(format!("{e:#}")))?;
        let vault = Arc::new(Vault::new(backend, keys, &options.tenant));
        let instance = Self::instantiate(&runtime, &vault, &options)?;
        Ok(Pool {
            runtime,
            vault,
            options,
            instance: Mutex::new(instance),
            refresher: OnceLock::new(),
        })
    }

    fn instantiate(
        runtime: &Runtime,
        vault: &Arc<Vault>,
        options: &PoolOptions,
    ) -> Result<Instance> {
        let mut wasi = wasmtime_wasi::WasiCtx::builder();
        if let Some(clock) = &options.clock {
            wasi.wall_clock(clock.clone());
        }
        let state = HostState::new(
            vault.clone(),
            options.events.clone(),
            wasi.build(),
            options.memory_limit,
            options.recorder.clone(),
        );
        let (mut store, policy) = runtime.instantiate(state).map_err(|e| {
            Error::Policy(format!("cannot instantiate {}: {e:#}", runtime.source()))
        })?;
        // Loading every record may take longer than an ordinary call.
        store.set_epoch_deadline(deadline_ticks(
            options.call_deadline.max(Duration::from_secs(120)),
        ));
        let configured = policy
            .credpool_policy_pool()
            .call_configure(&mut store, &options.policy_config)
            .map_err(|e| Error::Policy(format!("{e:#}")))?;
        store.data_mut().commit_lazy().map_err(Error::Store)?;
        configured?;
        // Loading may write (a stale hold dropped): flushed here, once per
        // instance.
        if std::mem::take(&mut store.data_mut().unsynced) {
            vault.backend().sync().map_err(|e| Error::Store(e.into()))?;
        }
        Ok(Instance {
            store,
            policy,
            poisoned: false,
            last_flush: crate::runtime::ticks(),
        })
    }

    /// Runs one call into the policy under the deadline, commits the lazy
    /// writes it made, flushes counters when they are due, and flushes to
    /// disk what it wrote once the policy's lock is released.
    fn call<R>(
        &self,
        f: impl FnOnce(&Policy, &mut Store<HostState>) -> wasmtime::Result<Result<R, PoolError>>,
    ) -> Result<R> {
        self.call_then(Flush::Now, f)
    }

    /// [`Pool::call`], leaving the flush to disk to the caller with
    /// `Flush::Later` (several adds, one flush).
    fn call_then<R>(
        &self,
        flush: Flush,
        f: impl FnOnce(&Policy, &mut Store<HostState>) -> wasmtime::Result<Result<R, PoolError>>,
    ) -> Result<R> {
        let mut guard = self.instance.lock().unwrap_or_else(|p| p.into_inner());
        if guard.poisoned {
            *guard = Self::instantiate(&self.runtime, &self.vault, &self.options)?;
            guard.store.data_mut().refresher = self.refresher.get().cloned();
        }
        let inst = &mut *guard;
        inst.store
            .set_epoch_deadline(deadline_ticks(self.options.call_deadline));
        let result = f(&inst.policy, &mut inst.store);
        let result = match result {
            Ok(r) => r,
            Err(trap) => {
                inst.poisoned = true;
                inst.store.data_mut().lazy.clear();
                return Err(Error::Policy(format!("{trap:#}")));
            }
        };
        inst.store.data_mut().commit_lazy()?;
        self.maybe_rotate();
        let now = crate::runtime::ticks();
        if now.saturating_sub(inst.last_flush) >= FLUSH_TICKS {
            inst.last_flush = now;
            Self::flush_instance(inst)?;
        }
        match flush {
            Flush::Now => self.sync_after(guard)?,
            Flush::Later => guard.store.data_mut().unsynced = false,
        }
        Ok(result?)
    }

    /// Releases the policy's lock, then flushes to disk what the call
    /// committed, before its answer is returned: an acknowledged write
    /// survives a crash, and other calls need not wait for this flush
    /// unless they wrote too (then one flush serves them all).
    fn sync_after(&self, mut guard: std::sync::MutexGuard<'_, Instance>) -> Result<()> {
        let unsynced = std::mem::take(&mut guard.store.data_mut().unsynced);
        drop(guard);
        if !unsynced {
            return Ok(());
        }
        self.flush_to_disk()
    }

    fn flush_instance(inst: &mut Instance) -> Result<u32> {
        let written = inst
            .policy
            .credpool_policy_pool()
            .call_flush(&mut inst.store)
            .map_err(|e| {
                inst.poisoned = true;
                Error::Policy(format!("{e:#}"))
            })?;
        inst.store.data_mut().commit_lazy()?;
        Ok(written?)
    }

    fn record(&self, what: &str, value: impl std::fmt::Debug) {
        if let Some(r) = &self.options.recorder {
            r.lock().unwrap().push(format!("{what} {value:?}"));
        }
    }

    /// Adds a credential; its secrets are encrypted before they are stored.
    /// If anything fails, nothing is stored. The secrets are written first
    /// and the record second, so a crash between the two leaves at most an
    /// unreachable secret bundle (replaced by the next add of that id), never
    /// a credential without its secrets.
    pub fn add(&self, new: NewCredential) -> Result<CredentialMeta> {
        let added = self.add_unflushed(new);
        self.flush_to_disk()?;
        added
    }

    /// Adds credentials in order as [`Pool::add`] does, with one flush to
    /// disk for all of them (an import: a flush per add would be most of
    /// its time). Stops at the first that fails: the error comes with the
    /// credentials added before it, which are kept (and flushed).
    pub fn add_all(
        &self,
        news: impl IntoIterator<Item = NewCredential>,
    ) -> std::result::Result<Vec<CredentialMeta>, AddAllError> {
        let mut added = Vec::new();
        // How many of `added` a flush has made durable: only those count
        // when a flush fails.
        let mut flushed = 0;
        let flush_failed = |mut added: Vec<CredentialMeta>, flushed, error| {
            added.truncate(flushed);
            AddAllError {
                added,
                at: None,
                error,
            }
        };
        let mut failed = None;
        for new in news {
            match self.add_unflushed(new) {
                Ok(meta) => added.push(meta),
                Err(e) => {
                    failed = Some((added.len(), e));
                    break;
                }
            }
            // Unflushed writes wait in memory: bound them in a large import.
            if added.len() - flushed == ADD_ALL_FLUSH_EVERY {
                if let Err(error) = self.flush_to_disk() {
                    return Err(flush_failed(added, flushed, error));
                }
                flushed = added.len();
            }
        }
        if let Err(error) = self.flush_to_disk() {
            return Err(flush_failed(added, flushed, error));
        }
        match failed {
            None => Ok(added),
            Some((at, error)) => Err(AddAllError {
                added,
                at: Some(at),
                error,
            }),
        }
    }

    /// Makes every write so far durable.
    fn flush_to_disk(&self) -> Result<()> {
        self.vault.backend().sync().map_err(|e| {
            // The policy's memory holds what the disk may not: it reloads
            // from the store on the next call.
            self.instance
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .poisoned = true;
            Error::Store(e.into())
        })
    }

    /// [`Pool::add`] without the flush to disk.
    fn add_unflushed(&self, mut new: NewCredential) -> Result<CredentialMeta> {
        new.secrets
            .validate()
            .map_err(|(field, reason)| Error::Input { field, reason })?;
        new.site = new.site.trim().to_string();
        let id = match &new.id {
            Some(id) => id.trim().to_string(),
            None => fresh_id(new.kind)?,
        };
        new.id = Some(id.clone());
        // A re-login submits the login name; it is not secret, but the host
        // needs it without asking the policy.
        if new.secrets.username.is_none() {
            new.secrets.username = new.username.clone();
        }
        let meta_in = types::NewCredential {
            id: new.id.clone(),
            site: new.site.clone(),
            kind: new.kind,
            expires_at: new.expires_at,
            tags: new.tags.clone(),
            username: new.username.clone(),
            phone: new.phone.clone(),
            email: new.email.clone(),
            cookie_names: new.secrets.cookie_names(),
            header_names: new.secrets.header_names(),
            secret_fields: new.secrets.fields(),
            token_scope: new.token_scope.clone(),
            source_account: new.source_account.clone(),
            max_concurrent: new.max_concurrent,
            rate_per_minute: new.rate_per_minute,
            labels: new.labels.clone(),
        };
        self.record("export.add", &meta_in);
        // A bundle under this id with no record is left from an add that
        // crashed: it may be replaced. With a record, the id is taken.
        let existing = self.vault.secrets_raw(&id)?;
        if existing.is_some() && self.view(&id, AccessLevel::Public).is_ok() {
            return Err(Error::Pool(PoolError::AlreadyExists(id)));
        }
        let Some(written) =
            self.vault
                .put_secrets_if(&new.site, &id, &new.secrets, existing.as_deref())?
        else {
            return Err(Error::Pool(PoolError::AlreadyExists(id)));
        };
        match self.call_then(Flush::Later, |p, s| {
            p.credpool_policy_pool().call_add(s, &meta_in)
        }) {
            Ok(meta) => Ok(meta),
            Err(e) => {
                // Undo the bundle so nothing half-stored remains.
                let _ = self.vault.delete_secrets_if(&id, &written);
                Err(e)
            }
        }
    }

    /// Removes a credential, its leases and its secrets.
    pub fn remove(&self, id: &str) -> Result<()> {
        self.record("export.remove", id);
        self.call(|p, s| p.credpool_policy_pool().call_remove(s, id))?;
        self.vault.delete_secrets(id)?;
        Ok(())
    }

    /// Hands out a credential with its secrets, or says why not.
    pub fn acquire(&self, request: &AcquireRequest) -> Result<Acquired> {
        self.record("export.acquire", request);
        let (resp, grant) = self.call(|p, s| {
            let pool = p.credpool_policy_pool();
            let (resp, site) = match request_handle(p, s, request)? {
                Ok(Some((handle, site))) => (pool.call_acquire_prepared(&mut *s, handle)?, site),
                Ok(None) => (
                    pool.call_acquire(&mut *s, request)?,
                    request.site.as_str().into(),
                ),
                Err(e) => return Ok(Err(e)),
            };
            Ok(resolve_grant(p, s, resp)?.map(|(resp, grant)| (resp, (site, grant))))
        })?;
        self.acquired(resp, grant)
    }

    /// Reports how a use went and acquires the next credential, in one call
    /// into the policy (a crawler's loop: half the sandbox crossings of a
    /// `report` and an `acquire`). A refused report is the error, and
    /// nothing is acquired.
    pub fn report_and_acquire(
        &self,
        lease: LeaseId,
        outcome: Outcome,
        next: &AcquireRequest,
    ) -> Result<(ReportEffect, Acquired)> {
        self.record("export.report-and-acquire", (lease, outcome, next));
        let (effect, (resp, grant)) = self.call(|p, s| {
            let pool = p.credpool_policy_pool();
            let (answer, site) = match request_handle(p, s, next)? {
                Ok(Some((handle, site))) => (
                    pool.call_report_and_acquire(&mut *s, lease, outcome, handle)?,
                    site,
                ),
                // Past the prepared requests this host keeps: two calls.
                Ok(None) => {
                    let answer = match pool.call_report(&mut *s, lease, outcome)? {
                        Ok(effect) => pool.call_acquire(&mut *s, next)?.map(|resp| (effect, resp)),
                        Err(e) => Err(e),
                    };
                    (answer, next.site.as_str().into())
                }
                Err(e) => return Ok(Err(e)),
            };
            Ok(match answer {
                Ok((effect, resp)) => resolve_grant(p, s, Ok(resp))?
                    .map(|(resp, grant)| (effect, (resp, (site, grant)))),
                Err(e) => Err(e),
            })
        })?;
        Ok((effect, self.acquired(resp, grant)?))
    }

    /// The caller's answer: the policy's, with the credential's id and
    /// secrets joined to the lease.
    fn acquired(
        &self,
        resp: AcquireResponse,
        (site, grant): (Arc<str>, Option<Granted>),
    ) -> Result<Acquired> {
        let lease = match (resp.lease, grant) {
            (Some(l), Some(grant)) => {
                let secrets = match grant.secrets {
                    Some(secrets) => secrets,
                    None => match self.fetch_secrets(&site, l.credential, &grant.id) {
                        Ok(secrets) => secrets,
                        Err(e) => {
                            let _ = self.release(l.id);
                            return Err(e);
                        }
                    },
                };
                Some(Lease {
                    id: l.id,
                    credential: LeasedCredential {
                        id: grant.id,
                        site,
                        kind: l.kind,
                        status: l.status,
                        health: l.health,
                    },
                    granted_at: l.granted_at,
                    expires_at: l.expires_at,
                    secrets,
                })
            }
            _ => None,
        };
        Ok(Acquired {
            status: resp.status,
            lease,
            reason: resp.reason,
            next_free_at: resp.next_free_at,
            alternatives: resp.alternatives,
            warnings: resp.warnings,
        })
    }

    /// A credential's secrets from the vault's cache (none stored is an
    /// empty bundle), kept beside its handle for the next lease. Outside
    /// the policy's lock: a first use may decrypt.
    fn fetch_secrets(&self, site: &str, handle: u32, id: &str) -> Result<Arc<Secrets>> {
        let written = self.vault.secrets_written();
        let secrets = self
            .vault
            .cached_secrets(site, id)?
            .unwrap_or_else(|| Arc::new(Secrets::default()));
        let mut guard = self.instance.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .store
            .data_mut()
            .handles
            .keep_secrets(handle, id, written, secrets.clone());
        Ok(secrets)
    }

    /// Bytes of linear memory the policy instance has grown to.
    pub fn guest_memory_bytes(&self) -> usize {
        let guard = self.instance.lock().unwrap_or_else(|p| p.into_inner());
        guard.store.data().limits.memory_bytes
    }

    /// Reports how a use went; ends the lease.
    pub fn report(&self, lease: LeaseId, outcome: Outcome) -> Result<ReportEffect> {
        self.record("export.report", (lease, outcome));
        self.call(|p, s| p.credpool_policy_pool().call_report(s, lease, outcome))
    }

    /// Ends a lease without a result.
    pub fn release(&self, lease: LeaseId) -> Result<()> {
        self.record("export.release", lease);
        self.call(|p, s| p.credpool_policy_pool().call_release(s, lease))
    }

    /// One credential at an access level (secrets are never in a view; use
    /// [`Pool::reveal`]).
    pub fn view(&self, id: &str, level: AccessLevel) -> Result<CredentialView> {
        self.call(|p, s| p.credpool_policy_pool().call_view(s, id, level))
    }

    /// A credential's secrets, for an explicit reveal by a person.
    pub fn reveal(&self, id: &str) -> Result<(CredentialView, Secrets)> {
        let view = self.view(id, AccessLevel::Secret)?;
        let secrets = self.vault.get_secrets(&view.site, id)?.unwrap_or_default();
        tracing::info!(target: "credpool::audit", "[AUDIT] secrets revealed credential={id}");
        Ok((view, secrets))
    }

    /// Credentials matching a filter at an access level.
    pub fn list(&self, filter: &ListFilter, level: AccessLevel) -> Result<Vec<CredentialView>> {
        self.call(|p, s| p.credpool_policy_pool().call_list(s, filter, level))
    }

    /// Per-site state; one site or all.
    pub fn stats(&self, site: Option<&str>) -> Result<Vec<SiteStats>> {
        self.call(|p, s| p.credpool_policy_pool().call_stats(s, site))
    }

    /// Moves time-driven state along: call it every second or so (the
    /// summary says when next it has work).
    ///
    /// A result the policy refuses (e.g. for a credential removed while it
    /// refreshed) is logged by [`Pool::deliver_refresh_results`] and does
    /// not hold the tick back.
    pub fn tick(&self) -> Result<TickSummary> {
        let _ = self.deliver_refresh_results();
        self.call(|p, s| p.credpool_policy_pool().call_tick(s))
    }

    /// Attaches the HTTP side of refreshes (once): from now on the policy's
    /// `refresh.start` queues real work, and [`Pool::tick`] hands finished
    /// results back to the policy.
    pub fn attach_refresher(
        &self,
        mut options: crate::lifecycle::RefresherOptions,
    ) -> Result<Arc<crate::lifecycle::Refresher>> {
        if let Some(r) = self.refresher.get() {
            return Ok(r.clone());
        }
        if options.clock.is_none() {
            options.clock = self.options.clock.clone();
        }
        let r = crate::lifecycle::Refresher::new(self.vault.clone(), options)
            .map_err(|e| Error::Config(format!("cannot start the refresh worker: {e}")))?;
        let r = self.refresher.get_or_init(|| r).clone();
        // Handed to the live instance once here (and to a fresh one after a
        // trap), not checked on every call.
        {
            let mut guard = self.instance.lock().unwrap_or_else(|p| p.into_inner());
            guard.store.data_mut().refresher = Some(r.clone());
        }
        // Two-factor tickets opened before a restart: the host answers
        // those it holds a TOTP seed for, as if they had just opened.
        for ticket in self.tickets()? {
            r.auto_answer(&ticket);
        }
        Ok(r)
    }

    /// The attached refresher, if any.
    pub fn refresher(&self) -> Option<&Arc<crate::lifecycle::Refresher>> {
        self.refresher.get()
    }

    /// This pool's encrypted store of secrets (host side only).
    pub fn vault(&self) -> &Arc<Vault> {
        &self.vault
    }

    /// Hands every finished refresh to the policy (`refresh-completed`),
    /// then answers the two-factor tickets the host can answer from a TOTP
    /// seed (queued when the policy opened them); returns how many results
    /// and answers. [`Pool::tick`] calls it first.
    pub fn deliver_refresh_results(&self) -> Result<u32> {
        let Some(r) = self.refresher.get() else {
            return Ok(0);
        };
        let mut n = 0;
        let mut first_error = None;
        for done in r.take_completed() {
            self.record("export.refresh-completed", &done);
            // One refused result does not hold back the others.
            match self.call(|p, s| p.credpool_policy_pool().call_refresh_completed(s, &done)) {
                Ok(_) => n += 1,
                Err(e) => {
                    tracing::error!(
                        target: "credpool::refresh",
                        "the policy refused the result of refresh {} for {}: {e}",
                        done.request_id,
                        done.credential_id
                    );
                    first_error.get_or_insert(e);
                }
            }
        }
        // Two-factor tickets the host answers from a TOTP seed, by the same
        // path as a person's answer.
        for (ticket, code) in r.take_totp_answers() {
            match self.answer_challenge(&ticket, code) {
                Ok(_) => {
                    tracing::info!(
                        target: "credpool::refresh",
                        "[CRED] challenge ticket={ticket} two-factor answered by the host from the TOTP seed"
                    );
                    n += 1;
                }
                Err(e) => {
                    tracing::error!(
                        target: "credpool::refresh",
                        "the TOTP answer to ticket {ticket} was refused: {e}"
                    );
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }

    /// Open challenge tickets, from the policy.
    pub fn tickets(&self) -> Result<Vec<crate::bindings::notify::Ticket>> {
        self.call(|p, s| p.credpool_policy_pool().call_tickets(s))
    }

    /// Settles a challenge ticket in the policy.
    pub fn resolve_challenge(
        &self,
        ticket_id: &str,
        resolution: crate::bindings::pool::ChallengeResolution,
    ) -> Result<crate::Status> {
        self.record("export.resolve-challenge", (ticket_id, resolution));
        self.call(|p, s| {
            p.credpool_policy_pool()
                .call_resolve_challenge(s, ticket_id, resolution)
        })
    }

    /// Answers a challenge ticket: the host holds the answer (a secret,
    /// never logged) for the resumed login, and the policy is told to
    /// resume it.
    pub fn answer_challenge(
        &self,
        ticket_id: &str,
        answer: zeroize::Zeroizing<String>,
    ) -> Result<crate::Status> {
        let r = self.refresher.get().ok_or_else(|| {
            Error::Config("no refresher attached: nothing can resume a login".into())
        })?;
        r.answer(ticket_id, answer).map_err(|reason| Error::Input {
            field: "answer".into(),
            reason,
        })?;
        self.resolve_challenge(
            ticket_id,
            crate::bindings::pool::ChallengeResolution::Answered,
        )
    }

    /// Writes counters and lease changes now.
    pub fn flush(&self) -> Result<u32> {
        let mut guard = self.instance.lock().unwrap_or_else(|p| p.into_inner());
        if guard.poisoned {
            return Ok(0);
        }
        guard.last_flush = crate::runtime::ticks();
        let written = Self::flush_instance(&mut guard)?;
        self.sync_after(guard)?;
        Ok(written)
    }

    /// A person's decision for a credential left `challenged` after its
    /// ticket closed unanswered: back to `expired`, due for a fresh login.
    pub fn reset_challenge(&self, id: &str) -> Result<CredentialMeta> {
        self.record("export.reset-challenge", id);
        self.call(|p, s| p.credpool_policy_pool().call_reset_challenge(s, id))
    }

    /// Lifts a ban.
    pub fn unban(&self, id: &str) -> Result<CredentialMeta> {
        self.record("export.unban", id);
        self.call(|p, s| p.credpool_policy_pool().call_unban(s, id))
    }

    /// Rotates the key (a new primary) and re-encrypts every record with it,
    /// in batches, while the pool stays usable; see [`crate::rekey`].
    pub fn rekey(&self, options: &crate::rekey::RekeyOptions) -> Result<crate::rekey::RekeyReport> {
        Ok(crate::rekey::run(
            &**self.vault.backend(),
            self.vault.keys(),
            &self.options.key,
            options,
        )?)
    }

    /// Opens every record of the store: which key seals how many, and any
    /// that fail.
    pub fn audit(&self) -> Result<crate::rekey::Audit> {
        crate::rekey::audit(&**self.vault.backend(), self.vault.keys())
            .map_err(|e| Error::Store(e.into()))
    }

    /// Automatic rotation when the primary key nears its safe number of
    /// encryptions: a new primary; old records move on the next rekey.
    fn maybe_rotate(&self) {
        let keys = self.vault.keys();
        if !keys.take_rotation_due() {
            return;
        }
        match crate::rekey::rotate_primary(&**self.vault.backend(), keys, &self.options.key) {
            Ok(id) => tracing::warn!(
                "key {id} is now the primary key (the old one neared its safe number of \
                 encryptions); run `credpool rekey` to re-encrypt old records and retire it"
            ),
            Err(e) => tracing::error!("the encryption key is due for rotation: {e}"),
        }
    }

    /// The tenant this pool serves.
    pub fn tenant(&self) -> &str {
        self.vault.tenant()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::error!("could not write counters on close: {e}");
        }
    }
}

/// [`Pool::add_all`] flushes to disk after this many adds, so an import's
/// unflushed writes stay a few MB however large the file.
const ADD_ALL_FLUSH_EVERY: usize = 4096;

/// Why [`Pool::add_all`] stopped.
#[derive(Debug)]
pub struct AddAllError {
    /// Added and on disk.
    pub added: Vec<CredentialMeta>,
    /// The place of the credential that failed; none when a flush to disk
    /// failed (then only those flushed before it count as added).
    pub at: Option<usize>,
    pub error: Error,
}

/// When a call's writes reach the disk: before it returns, or at a flush
/// the caller makes later.
#[derive(Clone, Copy)]
enum Flush {
    Now,
    Later,
}

/// What the host knows of a granted credential: its id, and its secrets
/// when the kept copy is current.
struct Granted {
    id: SmolStr,
    secrets: Option<Arc<Secrets>>,
}

/// A request's handle in the policy and its site, shared with its leases.
type PreparedRequest = (u32, Arc<str>);

/// The policy's handle for `request` and its site, preparing it the first
/// time; none once this host keeps as many as it will (the caller sends
/// the request).
fn request_handle(
    policy: &Policy,
    store: &mut Store<HostState>,
    request: &AcquireRequest,
) -> wasmtime::Result<Result<Option<PreparedRequest>, PoolError>> {
    let requests = &mut store.data_mut().requests;
    if let Some(found) = requests.get(request) {
        return Ok(Ok(Some(found)));
    }
    if requests.is_full() {
        return Ok(Ok(None));
    }
    let prepared = policy
        .credpool_policy_pool()
        .call_prepare(&mut *store, request)?;
    Ok(prepared.map(|handle| Some(store.data_mut().requests.insert(request, handle))))
}

/// Joins a grant's credential handle to what the host knows of it, asking
/// the policy for the id the first time this instance hands the handle out.
fn resolve_grant(
    policy: &Policy,
    store: &mut Store<HostState>,
    resp: Result<AcquireResponse, PoolError>,
) -> wasmtime::Result<Result<(AcquireResponse, Option<Granted>), PoolError>> {
    let resp = match resp {
        Ok(resp) => resp,
        Err(e) => return Ok(Err(e)),
    };
    let Some(handle) = resp.lease.as_ref().map(|l| l.credential) else {
        return Ok(Ok((resp, None)));
    };
    let state = store.data();
    if let Some((id, secrets)) = state.handles.known(handle, state.vault.secrets_written()) {
        return Ok(Ok((resp, Some(Granted { id, secrets }))));
    }
    let Some(id) = policy
        .credpool_policy_pool()
        .call_credential_id(&mut *store, handle)?
    else {
        // A policy that cannot name what it just handed out is broken:
        // a trap, so the instance is replaced.
        wasmtime::bail!("the policy granted credential handle {handle} and cannot name it");
    };
    let id = SmolStr::from(id);
    store.data_mut().handles.learn(handle, id.clone());
    Ok(Ok((resp, Some(Granted { id, secrets: None }))))
}

/// An id for a credential added without one, in the policy's own style
/// (`sess-` and 12 hex digits), made here so the secrets can be stored
/// before the record.
fn fresh_id(kind: CredentialKind) -> Result<String> {
    let prefix = match kind {
        CredentialKind::Account => "acct",
        CredentialKind::Session => "sess",
        CredentialKind::Token => "tok",
        CredentialKind::ApiKey => "key",
        CredentialKind::Device => "dev",
    };
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|_| {
        Error::Store(crate::vault::VaultError::Seal(
            crate::crypto::CryptoError::Random,
        ))
    })?;
    Ok(format!("{prefix}-{:012x}", u64::from_le_bytes(b) >> 16))
}

fn deadline_ticks(d: Duration) -> u64 {
    (d.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
}

const KEY_CHECK: &[u8] = b"credpool key check v1";

/// Refuses a key that is not the one the store was written with, so a wrong
/// key fails with "wrong key" instead of every record failing to decrypt.
fn check_key(backend: &Arc<dyn Backend>, keys: &KeyRing) -> Result<()> {
    let key = format!("k/check/{}", keys.primary_id());
    match backend.get(&key).map_err(|e| Error::Store(e.into()))? {
        Some(sealed) => match keys.open(key.as_bytes(), &sealed) {
            Ok(v) if v.as_slice() == KEY_CHECK => Ok(()),
            _ => Err(Error::Key(crate::crypto::KeyError(
                "wrong key: this data directory was encrypted with a different key".into(),
            ))),
        },
        None => {
            let others = backend
                .scan("k/check/", None, 1)
                .map_err(|e| Error::Store(e.into()))?;
            let has_data = !backend
                .scan("t/", None, 1)
                .map_err(|e| Error::Store(e.into()))?
                .is_empty();
            if !others.is_empty() || has_data {
                return Err(Error::Key(crate::crypto::KeyError(
                    "wrong key: this data directory was encrypted with a different key".into(),
                )));
            }
            let sealed = keys
                .seal(key.as_bytes(), KEY_CHECK)
                .map_err(|e| Error::Store(crate::vault::VaultError::Seal(e)))?;
            backend
                .apply(&[crate::backend::Write::Put(key, sealed)])
                .map_err(|e| Error::Store(e.into()))
        }
    }
}
