//! What one tenant's sandboxed policy may use: the limits a platform sets
//! per tenant (`[tenants.NAME.limits]` in `credpool.toml`, or
//! `[pool]` for the single-tenant case). Enforced by the host: memory by
//! wasmtime's resource limiter, CPU time by epoch deadlines, the rest by
//! the import implementations and the pool's call path. A call that runs
//! into one fails with [`crate::Error::Limit`] naming it; log and notify
//! floods are not failures but are dropped past their cap and counted
//! ([`LimitCounters`]), with one warning per window.

use std::time::Duration;

/// The limits of one tenant's policy sandbox. `Default` gives the values a
/// tenant gets when its configuration names none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxLimits {
    /// Linear memory the policy may grow to, in bytes.
    pub memory_bytes: usize,
    /// CPU (wall) time one call into the policy may run before it is
    /// interrupted; opening a pool (loading every record) gets at least 120 s.
    pub call_deadline: Duration,
    /// Calls into the policy per second, over a one-second window;
    /// 0 means no limit.
    pub calls_per_second: u32,
    /// Keys the policy may hold in its store.
    pub store_keys: u64,
    /// Bytes (keys plus values as stored, sealed: a few dozen bytes more
    /// than the plain value) the policy may hold in its store.
    pub store_bytes: u64,
    /// Size of one stored value, in bytes.
    pub value_bytes: usize,
    /// `log` events per minute; past it, events are dropped and counted.
    pub log_per_minute: u32,
    /// `notify` events per minute; past it, events are dropped and counted.
    pub notify_per_minute: u32,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            memory_bytes: 512 << 20,
            call_deadline: Duration::from_secs(5),
            calls_per_second: 0,
            store_keys: 10_000_000,
            store_bytes: 4 << 30,
            value_bytes: 1 << 20,
            log_per_minute: 6_000,
            notify_per_minute: 600,
        }
    }
}

/// Longest key (or scan prefix) a policy may use, in bytes: bounds the
/// store's index whatever the policy writes.
pub const MAX_KEY_BYTES: usize = 512;

/// Most items in one list of an answer the host acts on (an acquire's
/// alternatives and warnings, a tick's or a stats answer's lists); longer
/// is refused as `policy_answer`. A policy's `list` answer is bounded by
/// the filter's `limit` instead, or by the tenant's `store_keys`.
pub const MAX_ANSWER_ITEMS: usize = 1_000;

/// Longest text in an answer the host passes on (a warning, an id, an
/// error's reason), in bytes.
pub const MAX_ANSWER_TEXT: usize = 4_096;

/// A limit a call ran into, recorded by the imports while the policy runs
/// and turned into [`crate::Error::Limit`] when the call returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitHit {
    /// The limit's name (see [`crate::Error::Limit`]).
    pub limit: &'static str,
    /// What happened, with no stored value in it.
    pub detail: String,
}

impl LimitHit {
    pub fn new(limit: &'static str, detail: impl Into<String>) -> Self {
        LimitHit {
            limit,
            detail: detail.into(),
        }
    }
}

impl From<LimitHit> for crate::Error {
    fn from(hit: LimitHit) -> Self {
        crate::Error::Limit {
            limit: hit.limit,
            detail: hit.detail,
        }
    }
}

/// A fixed window counter on the host's coarse clock
/// ([`crate::runtime::ticks`]): an atomic load per check, no clock read.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Window {
    start: u64,
    used: u32,
}

impl Window {
    /// When the current window began, in ticks.
    pub(crate) fn start(&self) -> u64 {
        self.start
    }

    /// Whether one more event fits in `cap` per `span` ticks (`cap` 0: no
    /// limit); counts it when it does.
    pub(crate) fn admit(&mut self, now: u64, span: u64, cap: u32) -> bool {
        if cap == 0 {
            return true;
        }
        if now.saturating_sub(self.start) >= span {
            self.start = now;
            self.used = 0;
        }
        if self.used >= cap {
            return false;
        }
        self.used += 1;
        true
    }
}

/// What a tenant's sandbox has refused so far; kept across instances (a
/// trap replaces the instance, not the counts).
#[derive(Debug, Default)]
pub struct LimitCounters {
    /// `log` events dropped past `log_per_minute`.
    pub log_dropped: std::sync::atomic::AtomicU64,
    /// `notify` events dropped past `notify_per_minute`.
    pub notify_dropped: std::sync::atomic::AtomicU64,
    /// Calls refused past `calls_per_second`.
    pub calls_refused: std::sync::atomic::AtomicU64,
    /// Calls failed with any other limit.
    pub limits_hit: std::sync::atomic::AtomicU64,
}

/// The windows of the per-second and per-minute limits, with the counts.
#[derive(Clone, Debug, Default)]
pub(crate) struct Meters {
    pub(crate) counters: std::sync::Arc<LimitCounters>,
    pub(crate) calls: Window,
    pub(crate) log: Window,
    pub(crate) notify: Window,
    /// The window whose first dropped event was logged (one warning per
    /// window, not one per event).
    pub(crate) log_warned: Option<u64>,
    pub(crate) notify_warned: Option<u64>,
}

/// What the policy's records take in the store: counted once when the
/// instance is made (one scan), then kept by every write's delta.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StoreUsage {
    pub(crate) keys: u64,
    /// Keys plus sealed values, in bytes.
    pub(crate) bytes: u64,
}
