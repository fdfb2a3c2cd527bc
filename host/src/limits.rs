//! What one tenant's sandboxed policy may use: the limits a platform sets
//! per tenant (`[tenants.NAME.limits]` in `credpool.toml`, or
//! `[pool]` for the single-tenant case). Enforced by the host: memory by
//! wasmtime's resource limiter, CPU time by epoch deadlines, the rest by
//! the import implementations and the pool's call path.

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
    /// Bytes (keys plus values, before sealing) the policy may hold in its store.
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
