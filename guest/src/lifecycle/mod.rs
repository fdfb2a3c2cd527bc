//! Session lifecycle decisions: when a credential is refreshed, how, and
//! what a refresh result or a challenge answer does to it. Pure logic over
//! small inputs (no store, no clock, no WIT types): the caller passes the
//! time and a random source, and carries out what comes back.
//!
//! # Hook points (how `Pool<H: Host>` drives it)
//! The pool owns one [`Lifecycle`] built from [`LifecycleConfig`] (the
//! `lifecycle` key of the policy JSON; the host fills it from the
//! `[sites]` tables of `credpool.toml`).
//! - **Whenever a credential is added, loaded, or its status / expiry /
//!   login time changes**: `lc.track(&Tracked { .. }, now, &mut below)`.
//!   It (re)computes the one due time of that credential in an ordered
//!   index, so `tick` never scans the pool. **On remove**:
//!   `lc.untrack(id)`, then close each returned ticket id as `cancelled`.
//! - **On `tick`**: `let plan = lc.tick(now, &mut below);` then for each
//!   `plan.start` call the `refresh.start` import; if it returns an error,
//!   call `lc.start_failed(request_id, now, &mut below)`. For each
//!   `plan.timed_out` call `notify.close-ticket(id, timed-out)`, raise a
//!   `ticket-timed-out` alert and apply `status` (expired). Count them in
//!   the tick summary; fold `plan.next_due_at` into its `next-due-at`.
//! - **On `refresh-completed`**: `let d = lc.on_completed(&done, now,
//!   &mut below);` apply `d.status` / `d.expires_at` / `d.logged_in_at`
//!   to the record (then `track` it again), announce `d.open_ticket` with
//!   `notify.open-ticket`, raise `d.alert`, start `d.follow_up` like a
//!   `plan.start` entry. `Decision::default()` (stale request) means
//!   nothing to do.
//! - **On `resolve-challenge`**: `lc.resolve(ticket_id, resolution, now)`
//!   gives the status to set, the ticket closure to announce, and for
//!   `answered` the relogin (carrying the ticket id) to start.
//! - **On `tickets`**: `lc.open_tickets()`.
//!
//! `below` is any `FnMut(u64) -> u64` giving a uniform value in `0..n`
//! (e.g. `|n| host.below(n)` with the pool's `Random` port).
//!
//! # Where each decision lives
//! - `types`: what goes in and comes out (methods, results, tickets, plans);
//! - `config`: per-site timing and its checks;
//! - `schedule`: when a credential is due and how, the in-flight cap,
//!   failure backoff, lost refreshes (`track`, `tick`);
//! - `results`: what a finished refresh or a settled ticket does
//!   (`on_completed`, `resolve`), and the open tickets.

mod config;
mod results;
mod schedule;
mod types;

#[cfg(test)]
mod tests;

pub use config::{LifecycleConfig, SiteTiming};
pub use types::*;

use crate::model::Millis;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug)]
struct InFlight {
    request_id: u64,
    method: RunMethod,
    deadline: Millis,
    ticket_id: Option<String>,
}

#[derive(Clone, Debug)]
struct Entry {
    tracked: Tracked,
    site: String,
    due: Option<(Millis, RunMethod)>,
    failures: u32,
    /// How many of `failures` were retried fast (a possibly lost answer).
    fast_used: u32,
    retry_at: Millis,
    /// When its last refresh or login succeeded (see [`MIN_REFRESH_GAP`]).
    last_refreshed: Millis,
}

/// The least time from a successful refresh or login of a live (active)
/// credential to its next scheduled one (health checks aside; failures
/// have their own backoff; an expired or challenged one is not held).
/// Short (5 s) because real sessions can be short-lived; it bounds a bad
/// site to one refresh per 5 s instead of one per tick, and the host also
/// clamps token lifetimes to at least 60 s: a site answering with lifetimes
/// of seconds (an `expires_in` of 0) would otherwise have it refreshed on
/// every tick, rotating its refresh token each time.
pub const MIN_REFRESH_GAP: Millis = 5_000;

/// The lifecycle state of a pool: due index, in-flight refreshes, failure
/// counts and open tickets.
#[derive(Debug)]
pub struct Lifecycle {
    config: LifecycleConfig,
    entries: BTreeMap<String, Entry>,
    due: BTreeSet<(Millis, String)>,
    in_flight: BTreeMap<String, InFlight>,
    in_flight_by_deadline: BTreeSet<(Millis, String)>,
    /// Challenged credentials whose ticket timed out: they wait for a
    /// person (`reset-challenge`), not for another login.
    held: BTreeSet<String>,
    tickets: BTreeMap<String, Ticket>,
    tickets_by_deadline: BTreeSet<(Millis, String)>,
    next_request_id: u64,
}

fn secs(s: u64) -> Millis {
    (s as Millis).saturating_mul(1000)
}

impl Lifecycle {
    pub fn new(config: LifecycleConfig) -> Self {
        Lifecycle {
            config,
            entries: BTreeMap::new(),
            due: BTreeSet::new(),
            in_flight: BTreeMap::new(),
            in_flight_by_deadline: BTreeSet::new(),
            held: BTreeSet::new(),
            tickets: BTreeMap::new(),
            tickets_by_deadline: BTreeSet::new(),
            next_request_id: 1,
        }
    }

    pub fn config(&self) -> &LifecycleConfig {
        &self.config
    }

    /// Whether a ticket of credential `id` waits for an answer (few are
    /// open at a time, so a look over them is cheap).
    pub fn has_ticket(&self, id: &str) -> bool {
        self.tickets.values().any(|t| t.credential_id == id)
    }

    /// Whether a refresh of `id` is running.
    pub fn in_flight(&self, id: &str) -> bool {
        self.in_flight.contains_key(id)
    }

    /// The method of `id`'s running refresh, if one runs.
    pub fn in_flight_method(&self, id: &str) -> Option<RunMethod> {
        self.in_flight.get(id).map(|f| f.method)
    }

    /// The ids held out of the schedule.
    pub fn held_ids(&self) -> impl Iterator<Item = &str> {
        self.held.iter().map(String::as_str)
    }

    /// Whether `id` is held out of the schedule (see [`Lifecycle::hold`]).
    pub fn is_held(&self, id: &str) -> bool {
        self.held.contains(id)
    }

    /// When `id`'s last refresh or login by the lifecycle succeeded (in
    /// memory, this process), if one did.
    pub fn last_refreshed(&self, id: &str) -> Option<Millis> {
        self.entries
            .get(id)
            .map(|e| e.last_refreshed)
            .filter(|&t| t != Millis::MIN)
    }

    /// Refreshes running now.
    pub fn in_flight_count(&self) -> usize {
        self.in_flight.len()
    }
}
