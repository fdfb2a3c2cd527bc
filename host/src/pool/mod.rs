//! The Rust API crawler engines use: a [`Pool`] for one tenant, backed by a
//! sandboxed instance of the policy component. Calls are synchronous and
//! cheap; a `Pool` is `Send + Sync` and serialises calls internally.
//!
//! This file is the pool's options and its plain calls; `instance` runs
//! the policy instance (instantiate, call, flush, poison), `add` adds
//! credentials, `lease` hands them out, `refresh` joins the lifecycle.

mod add;
mod instance;
mod lease;
mod refresh;

/// The file names of a data directory (see [`crate::layout`]).
pub use crate::layout::{DB_FILE, KEY_FILE};
pub use add::{AddAllError, NewCredential};
pub use instance::FLUSH_INTERVAL;
pub use lease::{Acquired, Lease, LeasedCredential};

use crate::backend::{Backend, MemoryBackend, RedbBackend, RedisBackend, StoreUrl};
use crate::bindings::pool::{CredentialView, ListFilter, ReportEffect, SiteStats, TickSummary};
use crate::bindings::types::{AccessLevel, CredentialMeta, LeaseId, Outcome};
use crate::clock::ManualClock;
use crate::crypto::{KeySource, load_keys};
use crate::error::{Error, Result};
use crate::events::{EventSink, TracingSink};
use crate::layout::CACHE_DIR;
use crate::runtime::Runtime;
use crate::secrets::Secrets;
use crate::state::Recorder;
use crate::vault::Vault;
use instance::Instance;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// Where the records live.
#[derive(Clone)]
pub enum Storage {
    /// `credpool.redb` under the data directory (the embedded default).
    Disk(PathBuf),
    /// In memory, gone with the process (tests, the demo).
    Memory,
    /// A backend the caller built (e.g. shared between tenants).
    Shared(Arc<dyn Backend>),
    /// A Redis server (`--store redis://...`); the key file and the
    /// compiled policy stay in `data_dir`.
    Redis { url: StoreUrl, data_dir: PathBuf },
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
    /// What the policy's sandbox may use (memory, CPU time per call, ...).
    pub limits: crate::limits::SandboxLimits,
    /// Record every value crossing the boundary (tests).
    pub recorder: Option<Recorder>,
    /// Rotate the primary key after this many encryptions with it
    /// (default [`crate::crypto::ROTATE_AFTER`]; tests lower it).
    pub rotate_after: u64,
    /// Make lease changes and reports durable before the call returns
    /// (several servers over Redis: a new leader must know every lease
    /// that is out). Off, they are flushed with the counters, within
    /// [`FLUSH_INTERVAL`]. Concurrent callers share one flush.
    pub durable_leases: bool,
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
            limits: Default::default(),
            recorder: None,
            rotate_after: crate::crypto::ROTATE_AFTER,
            durable_leases: false,
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
            Storage::Redis { url, .. } => {
                Arc::new(RedisBackend::open(url).map_err(|e| Error::Store(e.into()))?)
            }
        };
        crate::rekey::verify_key(&*backend, &keys)?;
        keys.set_ledger(Arc::new(crate::rekey::BackendLedger(backend.clone())));
        keys.set_rotate_after(options.rotate_after);
        let runtime = match &options.component {
            Some(path) => Runtime::from_file(path),
            None => match &options.storage {
                // Keep the compiled policy beside the data it serves.
                Storage::Disk(dir) | Storage::Redis { data_dir: dir, .. } => {
                    Runtime::builtin_cached(Some(&dir.join(CACHE_DIR)))
                }
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

    fn record(&self, what: &str, value: impl std::fmt::Debug) {
        if let Some(r) = &self.options.recorder {
            r.lock().unwrap().push(format!("{what} {value:?}"));
        }
    }

    /// Removes a credential, its leases and its secrets.
    pub fn remove(&self, id: &str) -> Result<()> {
        self.record("export.remove", id);
        self.call(|p, s| p.credpool_policy_pool().call_remove(s, id))?;
        self.vault.delete_secrets(id)?;
        Ok(())
    }

    /// Bytes of linear memory the policy instance has grown to.
    pub fn guest_memory_bytes(&self) -> usize {
        let guard = self.instance.lock().unwrap_or_else(|p| p.into_inner());
        guard.store.data().limits.memory_bytes
    }

    /// Reports how a use went; ends the lease.
    pub fn report(&self, lease: LeaseId, outcome: Outcome) -> Result<ReportEffect> {
        self.record("export.report", (lease, outcome));
        let effect = self.call(|p, s| p.credpool_policy_pool().call_report(s, lease, outcome))?;
        self.lease_durable()?;
        Ok(effect)
    }

    /// Ends a lease without a result.
    pub fn release(&self, lease: LeaseId) -> Result<()> {
        self.record("export.release", lease);
        self.call(|p, s| p.credpool_policy_pool().call_release(s, lease))?;
        self.lease_durable()
    }

    /// With [`PoolOptions::durable_leases`], writes the lease changes
    /// made so far (and the counters) before the answer is returned. A
    /// caller whose change an earlier caller's flush already carried
    /// writes nothing more.
    pub(crate) fn lease_durable(&self) -> Result<()> {
        if self.options.durable_leases {
            self.flush_checked(true)?;
        }
        Ok(())
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

    /// This pool's encrypted store of secrets (host side only).
    pub fn vault(&self) -> &Arc<Vault> {
        &self.vault
    }

    /// A person's decision: lifts a ban, ends a rest (cooling, suspended)
    /// early, or puts back an expired or challenged credential renewed or
    /// solved elsewhere (refused while its challenge ticket is open).
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
