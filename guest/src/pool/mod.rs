//! The pool: records in memory, indexed per site, written through the
//! store. Status changes are written durably at once; counters, health and
//! leases are marked dirty and written by `flush` (counters as pages, see
//! [`crate::counters`]), so the hot path does no I/O.
//!
//! No operation on the hot path scans a site. Each site keeps:
//! - a Fenwick tree of its members' selection weights (0 = not ready), so a
//!   weighted, random or round-robin pick is O(log n);
//! - for least-recently-used sites, an ordered set of ready members;
//! - counts of its members by status and by availability, so a refusal says
//!   why from counters;
//! - a min-heap of the times members become ready again (rest over, next
//!   rate token, expiry) and a min-heap of lease ends, processed lazily.
//!
//! # Where each decision lives
//! - here: the record and site types, the pool itself, `tick`;
//! - `records`: adding, placing in memory and the indexes, removing, and a
//!   configuration change that re-indexes;
//! - `index`: whether a member is ready, its weight, its wake-ups;
//! - `select`: which member an acquire gets, or why none can be had;
//! - `lease`: opening leases and ending them;
//! - `report`: results and commands applied, anomalies and alerts (what
//!   they do to a credential is [`crate::standing`]);
//! - `persist`: what is stored, when (`commit`, `flush`), in which form;
//! - `view`: credentials and stats as each access level sees them;
//! - `lifecycle`: the hooks into [`crate::lifecycle`];
//! - `way_back`: how each member out of rotation gets back (its rest, the
//!   site's refresh or login, its ticket, or a person's command);
//! - `pacing`: the adaptive pace of members and sites ([`crate::pace`]);
//! - `collections`: the chunked record store and the maps' fast hasher.

mod collections;
mod index;
mod lease;
mod lifecycle;
mod pacing;
mod persist;
mod records;
mod report;
mod select;
mod view;
mod way_back;

#[cfg(test)]
mod card_data_tests;
#[cfg(test)]
mod lifecycle_tests;
#[cfg(test)]
mod pacing_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod way_back_tests;

pub use select::MAX_PREPARED;
pub use view::{InternalView, SensitiveView, View};

use crate::anomaly::{BlockBurst, SuccessRate};
use crate::config::{PolicyConfig, Strategy};
use crate::fenwick::Fenwick;
use crate::lifecycle::{self as lc, Lifecycle};
use crate::machine::Event;
use crate::model::*;
use crate::packed;
use crate::ports::{Host, Level};
use crate::standing::{self, Standing};
use collections::{Chunked, FastMap};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};

/// Per-credential anomalies listed in a site's stats at most.
const MAX_LISTED_ANOMALIES: usize = 100;

/// Why a member is or is not ready to hand out; one per member, counted
/// per site so a refusal can say why without a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Avail {
    Ready = 0,
    Leased,
    RateLimited,
    Cooling,
    Suspended,
    Refreshing,
    Banned,
}
const AVAIL_COUNT: usize = 7;

/// A credential as the pool keeps it: compact, fixed-size fields inline.
/// The fields an acquire or a report reads come first and the record starts
/// on a cache line, so a pick among 100,000 members touches two lines of it,
/// not the three or four an unordered record spans.
#[derive(Debug)]
#[repr(C, align(64))]
struct Record {
    m: Standing,
    last_used_at: Millis,
    expires_at: Millis,
    use_count: u64,
    /// The rate limiter's state (GCRA theoretical arrival time).
    next_use_at: Millis,
    /// The pending wake-up in the site's heap, or NEVER.
    wake_at: Millis,
    success: SuccessRate,
    site: u32,
    /// Position in the site's members and Fenwick tree.
    pos: u32,
    open_leases: u32,
    /// 0 = the default for the kind.
    max_concurrent: u32,
    /// 0 = the configured default.
    rate_per_minute: u32,
    /// The learned adaptive pace per minute; 0 = none learned yet.
    pace: f32,
    /// The pace the site last refused, which the learned pace approaches
    /// and probes around; 0 = none yet (slow start). In memory only: a
    /// pace restored from the store is taken as the refused one.
    pace_refused: f32,
    /// Its successes per minute as achieved lately (in memory only).
    achieved: crate::pace::Achieved,
    /// Its place in the counter pages, and the tag that marks it its own.
    ctr: u32,
    kind: Kind,
    avail: Avail,
    /// Its weight in the site's Fenwick tree now.
    weight: u8,
    low_health_flagged: bool,
    // Read off the hot path.
    ctr_tag: u32,
    id: Box<str>,
    tags: Box<[String]>,
    /// Personal data and names, packed (see [`crate::packed`]); none when
    /// empty.
    extra: Option<Box<[u8]>>,
    created_at: Millis,
    /// The last login by the host, or NEVER.
    logged_in_at: Millis,
    /// The last health check (in memory only), or NEVER.
    checked_at: Millis,
}

impl Record {
    fn purpose_labels(&self) -> impl Iterator<Item = &str> {
        self.extra
            .iter()
            .flat_map(|x| packed::labels(x))
            .filter(|(k, _)| *k == "purpose")
            .map(|(_, v)| v)
    }

    fn username(&self) -> Option<&str> {
        self.extra.as_deref().and_then(packed::username)
    }
}

#[derive(Clone, Debug, Default)]
struct SiteCounters {
    granted: u64,
    refused: u64,
    successes: u64,
    failures: BTreeMap<FailureClass, u64>,
    refresh_attempts: u64,
    refresh_succeeded: u64,
    refresh_failed: u64,
    refresh_in_flight: u32,
    /// Refresh counts by method.
    refresh_by_method: BTreeMap<lc::RunMethod, MethodCounts>,
    /// Answered tickets and how long they waited.
    answer_times: AnswerTimes,
    /// The refresh counts changed since they were last written.
    refresh_dirty: bool,
    /// The acquire and outcome counts changed since they were last written.
    usage_dirty: bool,
}

/// One site's members and indexes.
#[derive(Debug)]
struct Site {
    name: String,
    strategy: Strategy,
    members: Vec<u32>,
    weights: Fenwick,
    cursor: usize,
    /// Ready members by last use (least-recently-used sites only).
    lru: BTreeSet<(Millis, u32)>,
    /// Purpose -> the member it sticks to (sticky sites only).
    sticky: HashMap<String, u32>,
    /// Members that serve only some purposes (a `purpose` label).
    purpose_bound: u32,
    ready: u32,
    by_status: [u32; 7],
    by_avail: [u32; AVAIL_COUNT],
    wakes: BinaryHeap<Reverse<(Millis, u32)>>,
    lease_ends: BinaryHeap<Reverse<(Millis, u64)>>,
    open_leases: u32,
    counters: SiteCounters,
    success: SuccessRate,
    blocks: BlockBurst,
    /// The adaptive pace no member exceeds, set by a burst of blocks, and
    /// the pace it returns to.
    pace_ceiling: Option<crate::pace::Learned>,
    anomalies: Vec<Anomaly>,
    exhausted: bool,
}

impl Site {
    fn new(name: &str, strategy: Strategy) -> Self {
        Site {
            name: name.to_string(),
            strategy,
            members: Vec::new(),
            weights: Fenwick::default(),
            cursor: 0,
            lru: BTreeSet::new(),
            sticky: HashMap::new(),
            purpose_bound: 0,
            ready: 0,
            by_status: [0; 7],
            by_avail: [0; AVAIL_COUNT],
            wakes: BinaryHeap::new(),
            lease_ends: BinaryHeap::new(),
            open_leases: 0,
            counters: SiteCounters::default(),
            success: SuccessRate::default(),
            blocks: BlockBurst::default(),
            pace_ceiling: None,
            anomalies: Vec::new(),
            exhausted: false,
        }
    }

    fn flag(&mut self, kind: AlertKind, credential: Option<&str>, now: Millis, detail: String) {
        // A site-wide pattern is always listed; per-credential ones up to a
        // cap, so the list (and clearing from it) stays small when many
        // credentials sink at once. Every one is still notified.
        if credential.is_some() && self.anomalies.len() >= MAX_LISTED_ANOMALIES {
            return;
        }
        self.anomalies.push(Anomaly {
            kind,
            credential_id: credential.map(str::to_string),
            detected_at: now,
            detail,
        });
    }

    fn unflag(&mut self, kind: AlertKind, credential: Option<&str>) {
        self.anomalies
            .retain(|a| !(a.kind == kind && a.credential_id.as_deref() == credential));
    }
}

/// An open lease. Its id is `l<seq>.<nonce>`: the sequence number finds it,
/// the random nonce makes ids unguessable and never reused across restarts.
#[derive(Clone, Copy, Debug)]
struct Lease {
    slot: u32,
    nonce: u64,
    granted_at: Millis,
    expires_at: Millis,
    /// Whether its record was written (so its end must delete it).
    persisted: bool,
}

/// A lease that lapsed before its holder reported. Kept for
/// [`LATE_REPORT_WINDOW_MS`] so a late report still reaches the credential:
/// a block a crawler saw is never thrown away.
#[derive(Clone, Debug)]
struct Lapsed {
    nonce: u64,
    /// The credential by id: its slot may be reused after a removal.
    credential: Box<str>,
    expires_at: Millis,
    /// Whether its record is in the store (deleted when it is let go).
    persisted: bool,
}

/// How long after its lapse a lease still takes a report: a day.
pub const LATE_REPORT_WINDOW_MS: Millis = 24 * 3600 * 1000;

/// The policy's state for one tenant.
pub struct Pool<H: Host> {
    pub host: H,
    config: PolicyConfig,
    records: Chunked<Option<Record>>,
    by_id: FastMap<Box<str>, u32>,
    sites: Vec<Site>,
    site_by_name: FastMap<String, u32>,
    leases: FastMap<u64, Lease>,
    /// Lapsed leases that may still be reported, and their lapse order.
    lapsed: FastMap<u64, Lapsed>,
    lapsed_order: VecDeque<(Millis, u64)>,
    next_lease: u64,
    /// Requests kept by `prepare`, by handle, with their site's index once
    /// the site exists (sites are never dropped, so it stays valid).
    prepared: Vec<(AcquireRequest, Option<u32>)>,
    /// Counter index -> slot (FREE_PLACE when unused).
    ctr_slots: Vec<u32>,
    /// Unused counter indexes below `ctr_slots.len()`.
    ctr_free: Vec<u32>,
    /// Counter pages changed since the last flush, and a flag per page.
    dirty_pages: Vec<u32>,
    page_dirty: Vec<bool>,
    /// Leases granted since the last flush (written then if still open).
    new_leases: Vec<u64>,
    /// Written leases that ended since the last flush (deleted then).
    ended_leases: Vec<LeaseId>,
    /// Members whose rest is over but whose status still says resting.
    rest_over: Vec<u32>,
    /// Members past their expiry whose status still says init or active.
    past_expiry: Vec<u32>,
    /// Refresh scheduling and challenge tickets.
    lc: Lifecycle,
    /// When each alert (kind, site, slot or NO_SLOT) was last notified.
    notified: FastMap<(AlertKind, u32, u32), Millis>,
}

fn status_slot(s: Status) -> usize {
    s as usize
}

impl<H: Host> Pool<H> {
    /// The site of a name as a person or crawler gives it (any case, with
    /// or without `www.`).
    fn site_index(&self, name: &str) -> Option<u32> {
        self.site_by_name
            .get(crate::words::site_key(name).as_ref())
            .copied()
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// The id of the credential in `slot` (a grant's handle); `None` once
    /// it was removed or for a slot never used.
    pub fn credential_id(&self, slot: u32) -> Option<&str> {
        if slot as usize >= self.records.len() {
            return None;
        }
        Some(&self.records[slot as usize].as_ref()?.id)
    }

    fn rec(&self, slot: u32) -> &Record {
        self.records[slot as usize].as_ref().expect("live slot")
    }

    fn rec_mut(&mut self, slot: u32) -> &mut Record {
        self.records[slot as usize].as_mut().expect("live slot")
    }

    fn slot_of(&self, id: &str) -> Result<u32, PoolError> {
        self.by_id
            .get(id)
            .copied()
            .ok_or_else(|| PoolError::CredentialNotFound(id.to_string()))
    }

    /// Lapses overdue leases, ends finished rests, clears anomalies whose
    /// window passed, and flushes. Cost: the due items, not the pool.
    pub fn tick(&mut self) -> Result<TickSummary, PoolError> {
        let now = self.host.now();
        let mut summary = TickSummary::default();
        for si in 0..self.sites.len() as u32 {
            self.advance(si, now);
            while let Some(&Reverse((t, seq))) = self.sites[si as usize].lease_ends.peek() {
                if t > now {
                    break;
                }
                self.sites[si as usize].lease_ends.pop();
                let Some(lease) = self.leases.get(&seq).copied() else {
                    continue;
                };
                if lease.expires_at != t {
                    continue;
                }
                if self.config.lapsed_lease_is_failure {
                    let lapsed = Outcome::Failure(Failure {
                        class: FailureClass::Other,
                        http_status: None,
                        retry_after_secs: None,
                    });
                    self.apply_outcome(lease.slot, lapsed, now)?;
                }
                self.lapse_lease(seq, now);
                summary.leases_expired += 1;
            }
            let window = self.config.block_burst_window_seconds as i64 * 1000;
            let cleared = self.sites[si as usize].blocks.tick(now, window);
            self.anomaly(
                si as usize,
                cleared,
                AlertKind::BlockBurst,
                None,
                now,
                String::new,
            );
        }
        self.forget_lapsed(now);
        for slot in std::mem::take(&mut self.rest_over) {
            let due = matches!(&self.records[slot as usize],
                Some(r) if matches!(r.m.status, Status::Cooling | Status::Suspended)
                    && r.m.cooldown_until <= now);
            if due {
                self.apply_command(slot, Event::CooldownEnded, now)?;
                summary.cooldowns_ended += 1;
            }
        }
        self.expire_due(now)?;
        let lc_next = self.lifecycle_tick(now, &mut summary)?;
        self.flush()?;
        summary.next_due_at = (0..self.sites.len())
            .filter_map(|si| self.next_free_at(si, now))
            .chain(lc_next)
            .min();
        Ok(summary)
    }

    /// Moves members found past their expiry from init or active to
    /// `expired` (durably; the lifecycle schedules their refresh).
    fn expire_due(&mut self, now: Millis) -> Result<(), PoolError> {
        for slot in std::mem::take(&mut self.past_expiry) {
            let due = matches!(&self.records[slot as usize],
                Some(r) if matches!(r.m.status, Status::Init | Status::Active)
                    && r.expires_at != standing::NEVER && r.expires_at <= now);
            if due {
                let mut m = self.rec(slot).m;
                m.status = Status::Expired;
                self.commit(slot, m, now)?;
            }
        }
        Ok(())
    }

    fn log(&mut self, level: Level, name: &str, fields: &[(&str, String)]) {
        if self.host.enabled(level) {
            self.host.event(level, name, fields);
        }
    }
}
