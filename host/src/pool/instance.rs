//! The policy instance behind a pool: made (and remade after a trap), each
//! call run under its deadline with its writes committed, counters flushed
//! when due, and what was written flushed to disk.

use super::{Pool, PoolOptions};
use crate::bindings::Policy;
use crate::bindings::types::PoolError;
use crate::error::{Error, Result};
use crate::runtime::{EPOCH_TICK, Runtime};
use crate::state::HostState;
use crate::vault::Vault;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::Store;

/// Counters and health are written at most this long after they change.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

const FLUSH_TICKS: u64 = (FLUSH_INTERVAL.as_millis() / EPOCH_TICK.as_millis()) as u64;

pub(super) struct Instance {
    pub(super) store: Store<HostState>,
    pub(super) policy: Policy,
    /// A trap leaves a component instance unusable: make a new one.
    pub(super) poisoned: bool,
    /// When counters were last flushed, in [`crate::runtime::ticks`].
    pub(super) last_flush: u64,
}

/// When a call's writes reach the disk: before it returns, or at a flush
/// the caller makes later.
#[derive(Clone, Copy)]
pub(super) enum Flush {
    Now,
    Later,
}

impl Pool {
    pub(super) fn instantiate(
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
            options.limits.memory_bytes,
            options.recorder.clone(),
        );
        let (mut store, policy) = runtime.instantiate(state).map_err(|e| {
            Error::Policy(format!("cannot instantiate {}: {e:#}", runtime.source()))
        })?;
        // Loading every record may take longer than an ordinary call.
        store.set_epoch_deadline(deadline_ticks(
            options.limits.call_deadline.max(Duration::from_secs(120)),
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
    pub(super) fn call<R>(
        &self,
        f: impl FnOnce(&Policy, &mut Store<HostState>) -> wasmtime::Result<Result<R, PoolError>>,
    ) -> Result<R> {
        self.call_then(Flush::Now, f)
    }

    /// [`Pool::call`], leaving the flush to disk to the caller with
    /// `Flush::Later` (several adds, one flush).
    pub(super) fn call_then<R>(
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
            .set_epoch_deadline(deadline_ticks(self.options.limits.call_deadline));
        let result = f(&inst.policy, &mut inst.store);
        let result = match result {
            Ok(r) => r,
            Err(trap) => {
                inst.poisoned = true;
                inst.store.data_mut().lazy.clear();
                return Err(Error::Policy(format!("{trap:#}")));
            }
        };
        if let Err(e) = inst.store.data_mut().commit_lazy() {
            inst.poisoned = true;
            return Err(e.into());
        }
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
        if let Err(e) = inst.store.data_mut().commit_lazy() {
            // The policy's memory is ahead of the store (a write refused
            // or lost): it reloads from the store on the next call.
            inst.poisoned = true;
            return Err(e.into());
        }
        Ok(written?)
    }

    /// Makes every write so far durable.
    pub(super) fn flush_to_disk(&self) -> Result<()> {
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

    /// Writes counters and lease changes now.
    pub fn flush(&self) -> Result<u32> {
        self.flush_checked(false)
    }

    /// [`Pool::flush`]; with `strict`, an instance that must reload (a
    /// write failed since the caller's call) is an error, not "nothing to
    /// write": the caller's change may not be stored.
    pub(super) fn flush_checked(&self, strict: bool) -> Result<u32> {
        let mut guard = self.instance.lock().unwrap_or_else(|p| p.into_inner());
        if guard.poisoned {
            if strict {
                return Err(Error::Store(
                    crate::backend::BackendError::Unavailable(
                        "a write to the store failed; the pool reloads from the store and this \
                     change may not be stored"
                            .into(),
                    )
                    .into(),
                ));
            }
            return Ok(0);
        }
        guard.last_flush = crate::runtime::ticks();
        let written = Self::flush_instance(&mut guard)?;
        self.sync_after(guard)?;
        Ok(written)
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
}

fn deadline_ticks(d: Duration) -> u64 {
    (d.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
}
