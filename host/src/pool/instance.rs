//! The policy instance behind a pool: made (and remade after a trap or a
//! limit), each call run under its deadline and the tenant's calls per
//! second with its writes committed, counters flushed when due, and what
//! was written flushed to disk. A call that ran into a sandbox limit fails
//! with [`Error::Limit`] naming it: its lazy writes are dropped and the
//! instance is replaced (its memory may hold what the store does not).

use super::{Pool, PoolOptions};
use crate::bindings::Policy;
use crate::bindings::types::PoolError;
use crate::error::{Error, Result};
use crate::limits::{LimitCounters, LimitHit, Meters};
use crate::runtime::{EPOCH_TICK, Runtime};
use crate::state::HostState;
use crate::vault::Vault;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use wasmtime::{Store, Trap};

/// Counters and health are written at most this long after they change.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

const FLUSH_TICKS: u64 = (FLUSH_INTERVAL.as_millis() / EPOCH_TICK.as_millis()) as u64;

/// The window of `calls_per_second`, in ticks.
const SECOND_TICKS: u64 = (1_000 / EPOCH_TICK.as_millis()) as u64;

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
        meters: Meters,
    ) -> Result<Instance> {
        let mut wasi = wasmtime_wasi::WasiCtx::builder();
        if let Some(clock) = &options.clock {
            wasi.wall_clock(clock.clone());
        }
        let state = HostState::new(
            vault.clone(),
            options.events.clone(),
            wasi.build(),
            &options.limits,
            meters,
            options.recorder.clone(),
        );
        let (mut store, policy) = runtime.instantiate(state).map_err(|e| {
            Error::Policy(format!("cannot instantiate {}: {e:#}", runtime.source()))
        })?;
        store
            .data_mut()
            .count_usage()
            .map_err(|e| Error::Store(e.into()))?;
        // Loading every record may take longer than an ordinary call.
        store.set_epoch_deadline(deadline_ticks(
            options.limits.call_deadline.max(Duration::from_secs(120)),
        ));
        let configured = policy
            .credpool_policy_pool()
            .call_configure(&mut store, &options.policy_config)
            .map_err(|e| failure(store.data_mut(), e))?;
        if let Some(hit) = store.data_mut().hit.take() {
            return Err(limit_error(store.data_mut(), hit));
        }
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
        self.admit_call(&mut guard)?;
        if guard.poisoned {
            let meters = guard.store.data().meters.clone();
            *guard = Self::instantiate(&self.runtime, &self.vault, &self.options, meters)?;
            guard.store.data_mut().refresher = self.refresher.get().cloned();
        }
        let inst = &mut *guard;
        inst.store
            .set_epoch_deadline(deadline_ticks(self.options.limits.call_deadline));
        let state = inst.store.data_mut();
        state.limits.refused = false;
        state.hit = None;
        let result = f(&inst.policy, &mut inst.store);
        let state = inst.store.data_mut();
        let mut hit = state.hit.take();
        if let Ok(Err(e)) = &result {
            hit = hit.or_else(|| super::answers::error_problem(e));
        }
        let outcome = match (result, hit) {
            (Ok(r), None) => Ok(r),
            (_, Some(hit)) => Err(limit_error(state, hit)),
            (Err(trap), None) => Err(failure(state, trap)),
        };
        let result = match outcome {
            Ok(r) => r,
            Err(e) => {
                // The instance's memory may hold what the store does not.
                inst.poisoned = true;
                inst.store.data_mut().lazy.clear();
                return Err(e);
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
        let result = inst
            .policy
            .credpool_policy_pool()
            .call_flush(&mut inst.store);
        let state = inst.store.data_mut();
        let outcome = match (result, state.hit.take()) {
            (Ok(r), None) => Ok(r),
            (_, Some(hit)) => Err(limit_error(state, hit)),
            (Err(trap), None) => Err(failure(state, trap)),
        };
        let written = outcome.inspect_err(|_| {
            inst.poisoned = true;
            inst.store.data_mut().lazy.clear();
        })?;
        if let Err(e) = inst.store.data_mut().commit_lazy() {
            // The policy's memory is ahead of the store (a write refused
            // or lost): it reloads from the store on the next call.
            inst.poisoned = true;
            return Err(e.into());
        }
        Ok(written?)
    }

    /// Counts the call against the tenant's `calls_per_second`, refusing
    /// it past the cap (before the policy runs).
    fn admit_call(&self, inst: &mut Instance) -> Result<()> {
        let cap = self.options.limits.calls_per_second;
        let meters = &mut inst.store.data_mut().meters;
        if meters
            .calls
            .admit(crate::runtime::ticks(), SECOND_TICKS, cap)
        {
            return Ok(());
        }
        meters
            .counters
            .calls_refused
            .fetch_add(1, Ordering::Relaxed);
        Err(Error::Limit {
            limit: "calls_per_second",
            detail: format!("more than {cap} calls into the policy in one second"),
        })
    }

    /// What the tenant's sandbox has refused so far (events dropped, calls
    /// refused, calls failed at a limit).
    pub fn limit_counters(&self) -> Arc<LimitCounters> {
        let guard = self.instance.lock().unwrap_or_else(|p| p.into_inner());
        guard.store.data().meters.counters.clone()
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
        // The data key seals the tenant's records: it is the one that wears.
        match crate::tenant_keys::rotate(
            &**self.vault.backend(),
            self.vault.server_keys(),
            keys,
            self.vault.tenant(),
        ) {
            Ok(id) => tracing::warn!(
                "data key {id} is now the tenant's primary key (the old one neared its safe \
                 number of encryptions); run `credpool rekey --tenant {}` to re-encrypt old \
                 records and retire it",
                self.vault.tenant()
            ),
            Err(e) => tracing::error!("the tenant's data key is due for rotation: {e}"),
        }
    }
}

/// The error of a call that ran into `hit`, counted.
fn limit_error(state: &mut HostState, hit: LimitHit) -> Error {
    state
        .meters
        .counters
        .limits_hit
        .fetch_add(1, Ordering::Relaxed);
    hit.into()
}

/// The error of a call that trapped: the limit that stopped it when one
/// did (the deadline, the stack, a memory growth refused at the cap just
/// before), else the trap itself.
fn failure(state: &mut HostState, trap: wasmtime::Error) -> Error {
    let hit = match trap.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => LimitHit::new(
            "call_deadline",
            format!(
                "the call ran past its {} ms deadline and was stopped",
                state.sandbox.call_deadline.as_millis()
            ),
        ),
        Some(Trap::StackOverflow) => LimitHit::new(
            "stack",
            "the call overflowed the sandbox's stack (wasmtime's 512 KiB)",
        ),
        _ if state.limits.refused => LimitHit::new(
            "memory_bytes",
            format!(
                "the policy's memory reached its cap of {} bytes and it stopped",
                state.sandbox.memory_bytes
            ),
        ),
        _ => return Error::Policy(format!("{trap:#}")),
    };
    limit_error(state, hit)
}

fn deadline_ticks(d: Duration) -> u64 {
    (d.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
}
