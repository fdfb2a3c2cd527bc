//! What a tenant's store holds on the host side: the sandboxed WASI context
//! (clocks, random, stdio only), limits, the tenant's vault, the lazy writes
//! of the current call, and where events go.

use crate::backend::{BackendError, Write};
use crate::events::EventSink;
use crate::limits::{LimitHit, Meters, SandboxLimits, StoreUsage};
use crate::vault::{Vault, VaultError};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Every value that crossed the boundary, as text, when recording is on
/// (tests use it to prove no secret reaches the policy).
pub type Recorder = Arc<Mutex<Vec<String>>>;

pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limits: Limits,
    /// The tenant's limits beyond memory (store, events, calls).
    pub(crate) sandbox: SandboxLimits,
    /// What the policy's records take in the store now.
    pub(crate) usage: StoreUsage,
    /// The per-minute windows of log and notify, and what was dropped.
    pub(crate) meters: Meters,
    /// The first limit the current call ran into: the call fails with it
    /// whatever the policy answers (it may swallow the store's error).
    pub(crate) hit: Option<LimitHit>,
    pub(crate) vault: Arc<Vault>,
    /// Lazy writes of the current call: backend key -> sealed value or delete.
    pub(crate) lazy: BTreeMap<String, Option<Vec<u8>>>,
    pub(crate) events: Arc<dyn EventSink>,
    pub(crate) recorder: Option<Recorder>,
    /// Runs the refreshes the policy starts (none: `not-configured`).
    pub(crate) refresher: Option<Arc<crate::lifecycle::Refresher>>,
    /// This instance's credential handles, resolved.
    pub(crate) handles: crate::handles::Handles,
    /// This instance's prepared requests.
    pub(crate) requests: crate::handles::Requests,
    /// Writes committed but not yet flushed to disk: the pool syncs the
    /// backend before the call's answer is returned.
    pub(crate) unsynced: bool,
}

impl HostState {
    pub(crate) fn new(
        vault: Arc<Vault>,
        events: Arc<dyn EventSink>,
        wasi: WasiCtx,
        sandbox: &SandboxLimits,
        meters: Meters,
        recorder: Option<Recorder>,
    ) -> Self {
        HostState {
            wasi,
            table: ResourceTable::new(),
            limits: Limits {
                inner: StoreLimitsBuilder::new()
                    .memory_size(sandbox.memory_bytes)
                    .instances(4)
                    .build(),
                memory_bytes: 0,
                refused: false,
            },
            sandbox: sandbox.clone(),
            usage: StoreUsage::default(),
            meters,
            hit: None,
            vault,
            lazy: BTreeMap::new(),
            events,
            recorder,
            refresher: None,
            handles: Default::default(),
            requests: Default::default(),
            unsynced: false,
        }
    }

    /// Notes a value crossing the boundary, when recording.
    pub(crate) fn record(&self, what: &str, value: impl std::fmt::Debug) {
        if let Some(r) = &self.recorder {
            r.lock().unwrap().push(format!("{what} {value:?}"));
        }
    }

    /// Records the first limit the current call ran into.
    pub(crate) fn hit(&mut self, hit: LimitHit) {
        self.hit.get_or_insert(hit);
    }

    /// Whether one more `log` (`notify`: false) event fits this minute's
    /// cap; past it the event is dropped, counted, and the first drop of
    /// the window logged once.
    pub(crate) fn admit_event(&mut self, log: bool) -> bool {
        use std::sync::atomic::Ordering;
        const MINUTE: u64 = 60_000 / crate::runtime::EPOCH_TICK.as_millis() as u64;
        let now = crate::runtime::ticks();
        let m = &mut self.meters;
        let (window, cap, dropped, warned, limit) = if log {
            (
                &mut m.log,
                self.sandbox.log_per_minute,
                &m.counters.log_dropped,
                &mut m.log_warned,
                "log_per_minute",
            )
        } else {
            (
                &mut m.notify,
                self.sandbox.notify_per_minute,
                &m.counters.notify_dropped,
                &mut m.notify_warned,
                "notify_per_minute",
            )
        };
        if window.admit(now, MINUTE, cap) {
            return true;
        }
        dropped.fetch_add(1, Ordering::Relaxed);
        if *warned != Some(window.start()) {
            *warned = Some(window.start());
            tracing::warn!(
                target: "credpool::sandbox",
                "tenant {}: the policy passed its sandbox limit {limit} ({cap}); \
                 its events are dropped (and counted) until the minute is out",
                self.vault.tenant()
            );
        }
        false
    }

    /// Commits the lazy writes made during a call in one batch.
    pub(crate) fn commit_lazy(&mut self) -> Result<(), VaultError> {
        if self.lazy.is_empty() {
            return Ok(());
        }
        let writes: Vec<Write> = std::mem::take(&mut self.lazy)
            .into_iter()
            .map(|(k, v)| match v {
                Some(v) => Write::Put(k, v),
                None => Write::Delete(k),
            })
            .collect();
        self.write_durable(writes)?;
        Ok(())
    }

    /// Commits `writes` now and leaves the flush to disk to the pool, which
    /// syncs once the policy's lock is released: calls that write nothing
    /// need not wait for another's flush, and writes of several calls
    /// share one.
    pub(crate) fn write_durable(&mut self, writes: Vec<Write>) -> Result<(), BackendError> {
        self.vault.backend().apply_deferred(writes)?;
        self.unsynced = true;
        Ok(())
    }
}

/// The sandbox's limits, which also keep count of the linear memory the
/// policy has grown to (for `credpool bench` and memory checks).
pub(crate) struct Limits {
    inner: StoreLimits,
    /// Bytes of linear memory across the instance's memories.
    pub(crate) memory_bytes: usize,
    /// A growth was refused at the cap since the call began: a trap that
    /// follows is the memory limit's.
    pub(crate) refused: bool,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory_bytes += desired.saturating_sub(current);
        } else {
            self.refused = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
