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

use crate::anomaly::{self, BlockBurst, Change, SuccessRate};
use crate::config::{PolicyConfig, Strategy};
use crate::cooldown::rest_until;
use crate::counters::{self, PAGE_SLOTS};
use crate::fenwick::Fenwick;
use crate::lifecycle::{
    self as lc, Closure, Completed, LcStatus, Lifecycle, LifecycleConfig, Resolution, StartRefresh,
    StatusChange, Ticket, Tracked,
};
use crate::machine::{self, Event};
use crate::mask::mask;
use crate::model::*;
use crate::packed::{self, Extra};
use crate::ports::{Host, Level};
use crate::ratelimit::Rate;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

const CRED_PREFIX: &str = "cred/";
const LEASE_PREFIX: &str = "lease/";
const TICKET_PREFIX: &str = "ticket/";
/// A credential held out of rotation after its ticket timed out: only a
/// person lets it go (`reset-challenge`), a restart included.
const HOLD_PREFIX: &str = "hold/";
const REFRESH_PREFIX: &str = "refresh/";
const SCAN_PAGE: u32 = 1000;
/// "No time" in the compact record (instead of a 16-byte `Option`).
const NEVER: Millis = i64::MIN;
/// Health above the low-health threshold that clears the flag.
const LOW_HEALTH_MARGIN: u8 = 10;
/// Per-credential anomalies listed in a site's stats at most.
const MAX_LISTED_ANOMALIES: usize = 100;
/// Random draws tried before a filtered pick falls back to a walk.
const FILTERED_DRAWS: usize = 16;

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

/// The fields a report changes, copied out so a durable write can be made
/// before anything in memory changes (nothing acknowledged is lost, nothing
/// unacknowledged is applied).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Mutable {
    status: Status,
    health: u8,
    block_streak: u8,
    rate_limit_streak: u8,
    consecutive_failures: u32,
    cooldown_until: Millis,
    success_count: u64,
    fail_count: u64,
}

/// A credential as the pool keeps it: compact, fixed-size fields inline.
/// The fields an acquire or a report reads come first and the record starts
/// on a cache line, so a pick among 100,000 members touches two lines of it,
/// not the three or four an unordered record spans.
#[derive(Debug)]
#[repr(C, align(64))]
struct Record {
    m: Mutable,
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
}

/// A site's refresh counts as stored (`refresh/<site>`), so the refresh
/// success rate outlives the process.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredRefreshCounts {
    attempts: u64,
    succeeded: u64,
    failed: u64,
    /// Absent in rows written before per-method counts.
    #[serde(default)]
    by_method: BTreeMap<lc::RunMethod, MethodCounts>,
    #[serde(default)]
    answer_times: AnswerTimes,
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

/// Records in fixed-size chunks: growing never copies the records nor
/// leaves a doubled vector's slack, so memory stays near what they need
/// (the guest's linear memory never shrinks after a peak).
struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

const CHUNK: usize = 1024;

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, value: T) {
        if self.len.is_multiple_of(CHUNK) {
            // Grows by doubling up to CHUNK: a small pool stays small.
            self.chunks.push(Vec::new());
        }
        self.chunks.last_mut().expect("a chunk").push(value);
        self.len += 1;
    }
}

impl<T> std::ops::Index<usize> for Chunked<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        &self.chunks[i / CHUNK][i % CHUNK]
    }
}

impl<T> std::ops::IndexMut<usize> for Chunked<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i / CHUNK][i % CHUNK]
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

/// A fast non-cryptographic hasher (the Fx multiply-rotate) for the pool's
/// maps: keys are our own ids and sequence numbers, not attacker-chosen
/// bulk input, and SipHash was a visible share of every call.
#[derive(Clone, Copy, Default)]
pub struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        // Fold the high bits down: the multiply leaves a key's low bits
        // depending only on its low bytes, and ids that differ only at the
        // end ("c0000001", "c0000002") then all land in one bucket.
        let mut z = self.0;
        z ^= z >> 33;
        z = z.wrapping_mul(0xff51_afd7_ed55_8ccd);
        z ^ (z >> 33)
    }
}

/// Prepared requests an instance keeps at most (a host prepares each
/// distinct request once; this bounds a host that does not).
pub const MAX_PREPARED: usize = 4096;

type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;

/// The policy's state for one tenant.
pub struct Pool<H: Host> {
    pub host: H,
    config: PolicyConfig,
    records: Chunked<Option<Record>>,
    by_id: FastMap<Box<str>, u32>,
    sites: Vec<Site>,
    site_by_name: FastMap<String, u32>,
    leases: FastMap<u64, Lease>,
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
    /// Refresh scheduling and challenge tickets.
    lc: Lifecycle,
    /// When each alert (kind, site, slot or NO_SLOT) was last notified.
    notified: FastMap<(AlertKind, u32, u32), Millis>,
}

/// The slot part of a site-wide alert's key in `notified`.
const NO_SLOT: u32 = u32::MAX;
/// Entries of `notified` kept before the old ones are pruned.
const NOTIFIED_KEPT: usize = 4096;

impl<H: Host> Pool<H> {
    /// Loads every record of the tenant from the store.
    pub fn load(mut host: H, config: PolicyConfig) -> Result<Self, PoolError> {
        let creds = scan_all(&mut host, CRED_PREFIX)?;
        let lease_rows = scan_all(&mut host, LEASE_PREFIX)?;
        let ticket_rows = scan_all(&mut host, TICKET_PREFIX)?;
        let hold_rows = scan_all(&mut host, HOLD_PREFIX)?;
        let refresh_rows = scan_all(&mut host, REFRESH_PREFIX)?;
        let pages: FastMap<u32, Vec<u8>> = scan_all(&mut host, counters::PREFIX)?
            .into_iter()
            .filter_map(|(k, v)| Some((counters::page_of_key(&k)?, v)))
            .collect();
        let now = host.now();
        let lifecycle = Lifecycle::new(lifecycle_config(&config));
        let mut pool = Pool {
            host,
            lc: lifecycle,
            config,
            records: Chunked::default(),
            by_id: FastMap::with_capacity_and_hasher(creds.len(), Default::default()),
            sites: Vec::new(),
            site_by_name: FastMap::default(),
            leases: FastMap::default(),
            next_lease: 1,
            prepared: Vec::new(),
            ctr_slots: Vec::new(),
            ctr_free: Vec::new(),
            dirty_pages: Vec::new(),
            page_dirty: Vec::new(),
            new_leases: Vec::new(),
            ended_leases: Vec::new(),
            rest_over: Vec::new(),
            notified: FastMap::default(),
        };
        // Records without a (valid, unclaimed) counter place get one after
        // all places are claimed, and are written back with it.
        let mut unplaced = Vec::new();
        for (key, bytes) in creds {
            let stored: StoredIn = serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))?;
            let mut cred = stored.cred;
            let place = match (stored.ctr, stored.ctr_tag) {
                (Some(i), Some(tag)) if i < counters::MAX_INDEX && tag != 0 => {
                    let free = pool
                        .ctr_slots
                        .get(i as usize)
                        .is_none_or(|&s| s == FREE_PLACE);
                    free.then_some((i, tag))
                }
                _ => None,
            };
            match place {
                Some((i, tag)) => {
                    let (page, at) = counters::locate(i);
                    if let Some(e) = pages.get(&page).and_then(|p| counters::read_entry(p, at))
                        && e.tag == tag
                        && e.progress()
                            > counters::progress(
                                cred.use_count,
                                cred.success_count,
                                cred.fail_count,
                            )
                    {
                        merge_counters(&mut cred, &e);
                    }
                    if pool.ctr_slots.len() <= i as usize {
                        pool.ctr_slots.resize(i as usize + 1, FREE_PLACE);
                    }
                    pool.insert(cred, i, tag, now);
                }
                None => {
                    // Placed below; FREE_PLACE keeps it out of ctr_slots.
                    let slot = pool.insert(cred, FREE_PLACE, 0, now);
                    unplaced.push(slot);
                }
            }
        }
        pool.page_dirty = vec![false; pool.ctr_slots.len().div_ceil(PAGE_SLOTS as usize)];
        pool.ctr_free = (0..pool.ctr_slots.len() as u32)
            .rev()
            .filter(|&i| pool.ctr_slots[i as usize] == FREE_PLACE)
            .collect();
        for slot in unplaced {
            let (ctr, tag) = pool.new_place();
            let rec = pool.rec_mut(slot);
            rec.ctr = ctr;
            rec.ctr_tag = tag;
            pool.ctr_slots[ctr as usize] = slot;
            let m = pool.rec(slot).m;
            pool.write_record(slot, &m, false)?;
        }
        for (key, bytes) in lease_rows {
            let lease: LeaseRecord = serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))?;
            let slot = pool.by_id.get(lease.credential_id.as_str()).copied();
            match (slot, LeaseId::parse(&lease.id)) {
                (Some(slot), Some(LeaseId { seq, nonce })) if lease.expires_at > now => {
                    pool.next_lease = pool.next_lease.max(seq + 1);
                    pool.open_lease(slot, seq, nonce, lease.granted_at, lease.expires_at);
                    pool.leases.get_mut(&seq).expect("just opened").persisted = true;
                    pool.refresh(slot, now);
                }
                // Lapsed, orphaned, or from an older id format: drop it.
                _ => {
                    pool.host.delete(&key)?;
                }
            }
        }
        for (key, bytes) in refresh_rows {
            let stored: StoredRefreshCounts = serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))?;
            if let Some(&si) = pool.site_by_name.get(&key[REFRESH_PREFIX.len()..]) {
                let c = &mut pool.sites[si as usize].counters;
                c.refresh_attempts = stored.attempts;
                c.refresh_succeeded = stored.succeeded;
                c.refresh_failed = stored.failed;
                c.refresh_by_method = stored.by_method;
                c.answer_times = stored.answer_times;
            }
        }
        for (key, bytes) in ticket_rows {
            let ticket: Ticket = serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))?;
            if pool.by_id.contains_key(ticket.credential_id.as_str()) {
                pool.lc.restore_ticket(ticket);
            } else {
                pool.host.delete(&key)?;
            }
        }
        for (key, _) in hold_rows {
            let id = &key[HOLD_PREFIX.len()..];
            // A hold outlives its reason only if a crash fell between the
            // status write and the hold's delete: drop it then.
            match pool.by_id.get(id) {
                Some(&slot) if pool.rec(slot).m.status == Status::Challenged => pool.lc.hold(id),
                _ => {
                    pool.host.delete(&key)?;
                }
            }
        }
        Ok(pool)
    }

    /// Sets the configuration; rebuilds the indexes of sites whose strategy
    /// changed (O(n), at configure time only).
    pub fn set_config(&mut self, config: PolicyConfig) {
        let lifecycle_changed = config.lifecycle != self.config.lifecycle;
        self.config = config;
        let now = self.host.now();
        if lifecycle_changed {
            // Rebuild the schedule under the new timing; open tickets stay.
            let tickets = self.lc.open_tickets();
            self.lc = Lifecycle::new(lifecycle_config(&self.config));
            for t in tickets {
                self.lc.restore_ticket(t);
            }
            // Running refreshes are forgotten: their results will be stale.
            for site in &mut self.sites {
                site.counters.refresh_in_flight = 0;
            }
            for slot in 0..self.records.len() as u32 {
                if self.records[slot as usize].is_some() {
                    self.track(slot, now);
                }
            }
        }
        for si in 0..self.sites.len() {
            let strategy = self.config.strategy_for(&self.sites[si].name);
            if strategy == self.sites[si].strategy {
                continue;
            }
            let site = &mut self.sites[si];
            site.strategy = strategy;
            site.lru.clear();
            site.sticky.clear();
            for &slot in &site.members {
                let rec = self.records[slot as usize].as_mut().expect("member");
                let w = if rec.avail == Avail::Ready {
                    strategy_weight(strategy, rec.m.health)
                } else {
                    0
                };
                site.weights
                    .add(rec.pos as usize, i64::from(w) - i64::from(rec.weight));
                rec.weight = w;
                if strategy == Strategy::LeastRecentlyUsed && rec.avail == Avail::Ready {
                    site.lru.insert((rec.last_used_at, slot));
                }
            }
        }
        for slot in 0..self.records.len() as u32 {
            if self.records[slot as usize].is_some() {
                self.refresh(slot, now);
            }
        }
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// Adds a credential; the record is durable when this returns.
    pub fn add(&mut self, new: NewCredential) -> Result<Credential, PoolError> {
        let site = validate_name("site", &new.site)?;
        let kind = new
            .kind
            .ok_or_else(|| PoolError::invalid("kind", "missing"))?;
        let id = match new.id {
            Some(id) => validate_name("id", &id)?,
            None => self.fresh_id(kind),
        };
        if self.by_id.contains_key(id.as_str()) {
            return Err(PoolError::AlreadyExists(id));
        }
        for tag in &new.tags {
            validate_name("tag", tag)?;
        }
        if new.max_concurrent == Some(0) {
            return Err(PoolError::invalid("max_concurrent", "must be at least 1"));
        }
        if new.rate_per_minute == Some(0) {
            return Err(PoolError::invalid("rate_per_minute", "must be at least 1"));
        }
        let now = self.host.now();
        let cred = Credential {
            id: id.clone(),
            site: site.clone(),
            kind,
            status: Status::Init,
            created_at: now,
            last_used_at: None,
            expires_at: new.expires_at,
            cooldown_until: None,
            use_count: 0,
            success_count: 0,
            fail_count: 0,
            consecutive_failures: 0,
            health: self.config.initial_health,
            tags: new.tags,
            username: new.username,
            phone: new.phone,
            email: new.email,
            cookie_names: new.cookie_names,
            header_names: new.header_names,
            secret_fields: new.secret_fields,
            token_scope: new.token_scope,
            source_account: new.source_account,
            max_concurrent: new.max_concurrent,
            rate_per_minute: new.rate_per_minute,
            labels: new.labels,
            block_streak: 0,
            rate_limit_streak: 0,
            logged_in_at: None,
        };
        let (ctr, tag) = self.new_place();
        let written = write_cred(&mut self.host, &cred, ctr, tag, true);
        if let Err(e) = written {
            self.ctr_free.push(ctr);
            return Err(e);
        }
        self.insert(cred.clone(), ctr, tag, now);
        self.log(
            Level::Info,
            "cred.added",
            &[("id", cred.id.clone()), ("site", cred.site.clone())],
        );
        Ok(cred)
    }

    /// A free counter place and a fresh tag for a new credential. The
    /// caller puts the slot into `ctr_slots` (or returns the place).
    fn new_place(&mut self) -> (u32, u32) {
        let ctr = match self.ctr_free.pop() {
            Some(i) => i,
            None => {
                self.ctr_slots.push(FREE_PLACE);
                self.ctr_slots.len() as u32 - 1
            }
        };
        let pages = self.ctr_slots.len().div_ceil(PAGE_SLOTS as usize);
        if self.page_dirty.len() < pages {
            self.page_dirty.resize(pages, false);
        }
        (ctr, (self.host.next_u64() as u32).max(1))
    }

    /// Marks the member's counter page for the next flush.
    fn touch(&mut self, slot: u32) {
        let (page, _) = counters::locate(self.rec(slot).ctr);
        if !self.page_dirty[page as usize] {
            self.page_dirty[page as usize] = true;
            self.dirty_pages.push(page);
        }
    }

    /// Writes the member's whole record with `m` as its changing fields.
    fn write_record(&mut self, slot: u32, m: &Mutable, durable: bool) -> Result<(), PoolError> {
        let snapshot = self.snapshot(slot, m);
        let rec = self.rec(slot);
        let (ctr, tag) = (rec.ctr, rec.ctr_tag);
        write_cred(&mut self.host, &snapshot, ctr, tag, durable)
    }

    /// Puts a record into memory and its site's indexes (no I/O).
    fn insert(&mut self, c: Credential, ctr: u32, ctr_tag: u32, now: Millis) -> u32 {
        let si = match self.site_by_name.get(&c.site) {
            Some(&si) => si,
            None => {
                let si = self.sites.len() as u32;
                let strategy = self.config.strategy_for(&c.site);
                self.sites.push(Site::new(&c.site, strategy));
                self.site_by_name.insert(c.site.clone(), si);
                si
            }
        };
        let slot = self.records.len() as u32;
        let extra = Extra {
            username: c.username,
            phone: c.phone,
            email: c.email,
            cookie_names: c.cookie_names,
            header_names: c.header_names,
            secret_fields: c.secret_fields,
            token_scope: c.token_scope,
            source_account: c.source_account,
            labels: c.labels,
        };
        let site = &mut self.sites[si as usize];
        let rec = Record {
            id: c.id.into_boxed_str(),
            tags: c.tags.into_boxed_slice(),
            extra: packed::pack(&extra),
            m: Mutable {
                status: c.status,
                health: c.health,
                block_streak: c.block_streak.min(255) as u8,
                rate_limit_streak: c.rate_limit_streak.min(255) as u8,
                consecutive_failures: c.consecutive_failures,
                cooldown_until: c.cooldown_until.unwrap_or(NEVER),
                success_count: c.success_count,
                fail_count: c.fail_count,
            },
            created_at: c.created_at,
            last_used_at: c.last_used_at.unwrap_or(NEVER),
            expires_at: c.expires_at.unwrap_or(NEVER),
            use_count: c.use_count,
            next_use_at: 0,
            wake_at: NEVER,
            success: SuccessRate::default(),
            site: si,
            pos: site.members.len() as u32,
            open_leases: 0,
            max_concurrent: c.max_concurrent.unwrap_or(0),
            rate_per_minute: c.rate_per_minute.unwrap_or(0),
            kind: c.kind,
            // Counted as banned until `refresh` places it.
            avail: Avail::Banned,
            weight: 0,
            low_health_flagged: false,
            ctr,
            ctr_tag,
            logged_in_at: c.logged_in_at.unwrap_or(NEVER),
            checked_at: NEVER,
        };
        if rec.purpose_labels().next().is_some() {
            site.purpose_bound += 1;
        }
        site.members.push(slot);
        site.weights.push(0);
        site.by_status[status_slot(rec.m.status)] += 1;
        site.by_avail[Avail::Banned as usize] += 1;
        self.by_id.insert(rec.id.clone(), slot);
        if let Some(place) = self.ctr_slots.get_mut(ctr as usize) {
            *place = slot;
        }
        self.records.push(Some(rec));
        self.refresh(slot, now);
        self.track(slot, now);
        slot
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

    /// Recomputes whether a member is ready and updates its site's indexes;
    /// schedules a wake-up when it will change by itself. O(log n).
    fn refresh(&mut self, slot: u32, now: Millis) {
        let rec = self.records[slot as usize].as_mut().expect("live slot");
        let site = &mut self.sites[rec.site as usize];
        let (avail, wake) = availability(rec, now, &self.config);
        if avail != rec.avail {
            site.by_avail[rec.avail as usize] -= 1;
            site.by_avail[avail as usize] += 1;
            let lru = site.strategy == Strategy::LeastRecentlyUsed;
            if rec.avail == Avail::Ready {
                site.ready -= 1;
                if lru {
                    site.lru.remove(&(rec.last_used_at, slot));
                }
            }
            if avail == Avail::Ready {
                site.ready += 1;
                if lru {
                    site.lru.insert((rec.last_used_at, slot));
                }
            }
            let was_resting = matches!(rec.avail, Avail::Cooling | Avail::Suspended);
            rec.avail = avail;
            if was_resting && matches!(rec.m.status, Status::Cooling | Status::Suspended) {
                self.rest_over.push(slot);
            }
        }
        let weight = if avail == Avail::Ready {
            strategy_weight(site.strategy, rec.m.health)
        } else {
            0
        };
        if weight != rec.weight {
            site.weights
                .add(rec.pos as usize, i64::from(weight) - i64::from(rec.weight));
            rec.weight = weight;
        }
        if let Some(t) = wake
            && (rec.wake_at == NEVER || t < rec.wake_at)
        {
            rec.wake_at = t;
            site.wakes.push(Reverse((t, slot)));
        }
    }

    /// Processes the site's wake-ups that are due. Amortised O(log n) each.
    fn advance(&mut self, si: u32, now: Millis) {
        while let Some(&Reverse((t, slot))) = self.sites[si as usize].wakes.peek() {
            if t > now {
                break;
            }
            self.sites[si as usize].wakes.pop();
            // A removed member or a superseded wake-up is skipped.
            let current = matches!(&self.records[slot as usize], Some(r) if r.wake_at == t);
            if current {
                self.rec_mut(slot).wake_at = NEVER;
                self.refresh(slot, now);
            }
        }
    }

    /// Removes a credential and its leases.
    pub fn remove(&mut self, id: &str) -> Result<(), PoolError> {
        let slot = self.slot_of(id)?;
        self.host.delete(&cred_key(id))?;
        let now = self.host.now();
        let seqs: Vec<u64> = self
            .leases
            .iter()
            .filter(|(_, l)| l.slot == slot)
            .map(|(s, _)| *s)
            .collect();
        for seq in seqs {
            self.end_lease(seq, now);
        }
        if self.lc.in_flight(id) {
            // Its result will find nothing to apply.
            let si = self.rec(slot).site as usize;
            let c = &mut self.sites[si].counters;
            c.refresh_in_flight = c.refresh_in_flight.saturating_sub(1);
        }
        if self.lc.is_held(id) {
            self.host.delete(&hold_key(id))?;
        }
        for ticket in self.lc.untrack(id) {
            self.host.delete(&format!("{TICKET_PREFIX}{ticket}"))?;
            self.host.close_ticket(&ticket, Closure::Cancelled);
        }
        // Its page is rewritten without it at the next flush.
        self.touch(slot);
        let rec = self.records[slot as usize].take().expect("live slot");
        self.ctr_slots[rec.ctr as usize] = FREE_PLACE;
        self.ctr_free.push(rec.ctr);
        self.by_id.remove(id);
        let site = &mut self.sites[rec.site as usize];
        site.by_status[status_slot(rec.m.status)] -= 1;
        site.by_avail[rec.avail as usize] -= 1;
        if rec.avail == Avail::Ready {
            site.ready -= 1;
            site.lru.remove(&(rec.last_used_at, slot));
        }
        if rec.purpose_labels().next().is_some() {
            site.purpose_bound -= 1;
        }
        site.sticky.retain(|_, s| *s != slot);
        site.unflag(AlertKind::LowHealth, Some(id));
        site.unflag(AlertKind::SuccessRateDrop, Some(id));
        // Swap the last member into the hole, in members and weights.
        let pos = rec.pos as usize;
        let last = site.members.len() - 1;
        site.weights.add(pos, -i64::from(rec.weight));
        if pos != last {
            let moved = site.members[last];
            let moved_rec = self.records[moved as usize].as_mut().expect("member");
            site.weights.add(last, -i64::from(moved_rec.weight));
            site.weights.add(pos, i64::from(moved_rec.weight));
            moved_rec.pos = pos as u32;
            site.members[pos] = moved;
        }
        site.members.pop();
        site.weights.pop();
        self.log(Level::Info, "cred.removed", &[("id", id.to_string())]);
        Ok(())
    }

    /// Hands out a credential of the site by its strategy, or says why not.
    pub fn acquire(&mut self, req: &AcquireRequest) -> Result<AcquireResponse, PoolError> {
        let now = self.host.now();
        self.acquire_at(req, now)
    }

    fn acquire_at(
        &mut self,
        req: &AcquireRequest,
        now: Millis,
    ) -> Result<AcquireResponse, PoolError> {
        let site = self.site_by_name.get(&req.site).copied();
        self.acquire_in(req, site, now)
    }

    /// `acquire` of `req` on its site's index `site` (none: no such site).
    fn acquire_in(
        &mut self,
        req: &AcquireRequest,
        site: Option<u32>,
        now: Millis,
    ) -> Result<AcquireResponse, PoolError> {
        if self.host.enabled(Level::Debug) {
            let kind = req.kind.map(|k| format!("{k:?}")).unwrap_or_default();
            self.log(
                Level::Debug,
                "cred.request",
                &[
                    ("site", req.site.clone()),
                    ("kind", kind),
                    ("purpose", req.purpose.clone().unwrap_or_default()),
                ],
            );
        }
        let Some(si) = site else {
            return Ok(self.refuse(None, req, now));
        };
        self.advance(si, now);
        if self.host.enabled(Level::Debug) {
            let site = &self.sites[si as usize];
            let fields = [
                ("site", req.site.clone()),
                ("available", site.ready.to_string()),
                ("total", site.members.len().to_string()),
            ];
            self.log(Level::Debug, "cred.available", &fields);
        }
        let Some(slot) = self.pick(si, req) else {
            return Ok(self.refuse(Some(si), req, now));
        };
        // A member whose rest just ended goes back to active as it is used.
        if matches!(self.rec(slot).m.status, Status::Cooling | Status::Suspended) {
            self.apply_command(slot, Event::CooldownEnded, now)?;
        }
        let ttl_ms = req
            .lease_ttl_ms
            .unwrap_or(self.config.lease_ttl_seconds * 1000)
            .max(1) as i64;
        let rate = rate_of(self.rec(slot), &self.config);
        let lru = self.sites[si as usize].strategy == Strategy::LeastRecentlyUsed;
        let rec = self.records[slot as usize].as_mut().expect("picked");
        if lru {
            // Re-keyed below by `refresh` with the new last use.
            self.sites[si as usize]
                .lru
                .remove(&(rec.last_used_at, slot));
        }
        rec.use_count += 1;
        rec.last_used_at = now;
        if let Some(rate) = rate {
            rec.next_use_at = rate.take(rec.next_use_at, now);
        }
        self.touch(slot);
        let (seq, nonce) = (self.next_lease, self.host.next_u64());
        self.next_lease += 1;
        self.open_lease(slot, seq, nonce, now, now + ttl_ms);
        self.new_leases.push(seq);
        let was_ready = self.rec(slot).avail == Avail::Ready;
        self.refresh(slot, now);
        let rec = self.records[slot as usize].as_ref().expect("picked");
        let site = &mut self.sites[si as usize];
        if lru && was_ready && rec.avail == Avail::Ready {
            site.lru.insert((rec.last_used_at, slot));
        }
        site.counters.granted += 1;
        if site.exhausted {
            site.exhausted = false;
            site.unflag(AlertKind::PoolExhausted, None);
        }
        let mut warnings = Vec::new();
        if site.ready <= 1 && site.members.len() > 1 {
            warnings.push(format!(
                "{} of {} credentials of {} ready after this one",
                site.ready,
                site.members.len(),
                site.name
            ));
        }
        if self.host.enabled(Level::Debug) {
            let rec = self.rec(slot);
            let fields = [
                ("id", rec.id.to_string()),
                ("health", rec.m.health.to_string()),
                ("user", rec.username().map(mask).unwrap_or_default()),
            ];
            self.log(Level::Debug, "cred.chosen", &fields);
        }
        let rec = self.rec(slot);
        Ok(AcquireResponse {
            status: AcquireStatus::Success,
            grant: Some(Grant {
                lease: LeaseId { seq, nonce },
                credential: slot,
                granted_at: now,
                expires_at: now + ttl_ms,
                kind: rec.kind,
                status: rec.m.status,
                health: rec.m.health,
            }),
            reason: None,
            next_free_at: None,
            alternatives: Vec::new(),
            warnings,
        })
    }

    /// The strategy's pick among ready members that match the request.
    fn pick(&mut self, si: u32, req: &AcquireRequest) -> Option<u32> {
        let site = &self.sites[si as usize];
        if site.ready == 0 {
            return None;
        }
        let filtered = req.kind.is_some() || !req.tags.is_empty() || site.purpose_bound > 0;
        let strategy = site.strategy;
        if strategy == Strategy::Sticky
            && let Some(purpose) = &req.purpose
            && let Some(&slot) = site.sticky.get(purpose)
        {
            let rec = self.rec(slot);
            if rec.avail == Avail::Ready && matches(rec, req) {
                return Some(slot);
            }
        }
        let picked = match strategy {
            Strategy::RoundRobin => self.pick_round_robin(si, req, filtered),
            Strategy::LeastRecentlyUsed => {
                let site = &self.sites[si as usize];
                site.lru
                    .iter()
                    .map(|&(_, slot)| slot)
                    .find(|&slot| !filtered || matches(self.rec(slot), req))
            }
            Strategy::Random | Strategy::HealthWeighted | Strategy::Sticky => {
                self.pick_weighted(si, req, filtered)
            }
        }?;
        if strategy == Strategy::Sticky
            && let Some(purpose) = &req.purpose
        {
            // Keep the binding while the bound member is only busy for a
            // moment (leased, rate-limited); move it once that one rests.
            let site = &self.sites[si as usize];
            let keep = site
                .sticky
                .get(purpose)
                .is_some_and(|&s| matches!(self.rec(s).avail, Avail::Leased | Avail::RateLimited));
            if !keep {
                self.sites[si as usize]
                    .sticky
                    .insert(purpose.clone(), picked);
            }
        }
        Some(picked)
    }

    fn pick_round_robin(&mut self, si: u32, req: &AcquireRequest, filtered: bool) -> Option<u32> {
        let site = &self.sites[si as usize];
        let total = site.weights.total();
        let n = site.members.len();
        let cursor = site.cursor.min(n);
        let pos = if !filtered {
            // Ready members weigh 1 under round-robin: the first ready one
            // at or after the cursor holds unit `prefix(cursor)`.
            let mut k = site.weights.prefix(cursor);
            if k >= total {
                k = 0;
            }
            site.weights.find(k)
        } else {
            // A filter is not indexed: walk from the cursor.
            (0..n).map(|i| (cursor + i) % n).find(|&p| {
                let rec = self.rec(site.members[p]);
                rec.avail == Avail::Ready && matches(rec, req)
            })?
        };
        let site = &mut self.sites[si as usize];
        site.cursor = pos + 1;
        Some(site.members[pos])
    }

    fn pick_weighted(&mut self, si: u32, req: &AcquireRequest, filtered: bool) -> Option<u32> {
        let total = self.sites[si as usize].weights.total();
        if total == 0 {
            return None;
        }
        let draws = if filtered { FILTERED_DRAWS } else { 1 };
        for _ in 0..draws {
            let unit = self.host.below(total);
            let site = &self.sites[si as usize];
            let slot = site.members[site.weights.find(unit)];
            if !filtered || matches(self.rec(slot), req) {
                return Some(slot);
            }
        }
        // Rare matches: walk the ready ones and draw among the matches.
        let site = &self.sites[si as usize];
        let candidates: Vec<(u32, u64)> = site
            .members
            .iter()
            .map(|&s| (s, self.rec(s)))
            .filter(|(_, r)| r.avail == Avail::Ready && matches(r, req))
            .map(|(s, r)| (s, u64::from(r.weight)))
            .collect();
        let sum: u64 = candidates.iter().map(|c| c.1).sum();
        if sum == 0 {
            return None;
        }
        let mut unit = self.host.below(sum);
        for (slot, w) in candidates {
            if unit < w {
                return Some(slot);
            }
            unit -= w;
        }
        None
    }

    fn open_lease(&mut self, slot: u32, seq: u64, nonce: u64, granted: Millis, expires: Millis) {
        let rec = self.rec_mut(slot);
        rec.open_leases += 1;
        let si = rec.site as usize;
        let site = &mut self.sites[si];
        site.open_leases += 1;
        site.lease_ends.push(Reverse((expires, seq)));
        self.leases.insert(
            seq,
            Lease {
                slot,
                nonce,
                granted_at: granted,
                expires_at: expires,
                persisted: false,
            },
        );
        // An ended lease leaves its entry until it falls due (a TTL later):
        // drop those now and then, so the heap stays near the open leases
        // at any rate of acquires. Amortised O(1).
        let site = &mut self.sites[si];
        if site.lease_ends.len() > 2 * site.open_leases as usize + 1024 {
            let leases = &self.leases;
            site.lease_ends
                .retain(|Reverse((t, seq))| leases.get(seq).is_some_and(|l| l.expires_at == *t));
        }
    }

    fn find_lease(&self, id: LeaseId) -> Result<u64, PoolError> {
        match self.leases.get(&id.seq) {
            Some(l) if l.nonce == id.nonce => Ok(id.seq),
            _ => Err(PoolError::LeaseNotFound(id.to_string())),
        }
    }

    fn end_lease(&mut self, seq: u64, now: Millis) {
        let Some(lease) = self.leases.remove(&seq) else {
            return;
        };
        if lease.persisted {
            self.ended_leases.push(LeaseId {
                seq,
                nonce: lease.nonce,
            });
        }
        let rec = self.rec_mut(lease.slot);
        rec.open_leases = rec.open_leases.saturating_sub(1);
        let si = rec.site as usize;
        self.sites[si].open_leases -= 1;
        self.refresh(lease.slot, now);
    }

    /// Reports how a use went and ends its lease.
    pub fn report(&mut self, lease: LeaseId, outcome: Outcome) -> Result<ReportEffect, PoolError> {
        let now = self.host.now();
        self.report_at(lease, outcome, now)
    }

    /// Keeps `req` for [`Pool::acquire_prepared`] and
    /// [`Pool::report_and_acquire`]; the same request again gets the same
    /// handle.
    pub fn prepare(&mut self, req: AcquireRequest) -> Result<u32, PoolError> {
        // A host prepares each distinct request once per instance: a scan
        // of at most MAX_PREPARED is cheaper than keeping a second index.
        if let Some(h) = self.prepared.iter().position(|(r, _)| *r == req) {
            return Ok(h as u32);
        }
        if self.prepared.len() >= MAX_PREPARED {
            return Err(PoolError::invalid(
                "request",
                format!("an instance keeps at most {MAX_PREPARED} prepared requests"),
            ));
        }
        let site = self.site_by_name.get(&req.site).copied();
        self.prepared.push((req, site));
        Ok(self.prepared.len() as u32 - 1)
    }

    /// `acquire` of a prepared request.
    pub fn acquire_prepared(&mut self, request: u32) -> Result<AcquireResponse, PoolError> {
        self.check_prepared(request)?;
        let now = self.host.now();
        self.acquire_prepared_at(request, now)
    }

    /// `report` then `acquire_prepared` at one instant (one clock read: a
    /// crawler's loop step). A refused report or an unknown request handle
    /// is the error, and nothing changes.
    pub fn report_and_acquire(
        &mut self,
        lease: LeaseId,
        outcome: Outcome,
        next: u32,
    ) -> Result<(ReportEffect, AcquireResponse), PoolError> {
        self.check_prepared(next)?;
        let now = self.host.now();
        let effect = self.report_at(lease, outcome, now)?;
        Ok((effect, self.acquire_prepared_at(next, now)?))
    }

    fn check_prepared(&self, request: u32) -> Result<(), PoolError> {
        if (request as usize) < self.prepared.len() {
            Ok(())
        } else {
            Err(PoolError::invalid(
                "request",
                format!("no prepared request has handle {request}"),
            ))
        }
    }

    fn acquire_prepared_at(
        &mut self,
        request: u32,
        now: Millis,
    ) -> Result<AcquireResponse, PoolError> {
        // Lent out for the call (acquire needs the pool mutably); a move,
        // not a copy of its strings.
        let (req, mut site) = std::mem::take(&mut self.prepared[request as usize]);
        if site.is_none() {
            site = self.site_by_name.get(&req.site).copied();
        }
        let resp = self.acquire_in(&req, site, now);
        self.prepared[request as usize] = (req, site);
        resp
    }

    fn report_at(
        &mut self,
        lease: LeaseId,
        outcome: Outcome,
        now: Millis,
    ) -> Result<ReportEffect, PoolError> {
        let seq = self.find_lease(lease)?;
        let slot = self.leases[&seq].slot;
        let effect = self.apply_outcome(slot, outcome, now)?;
        self.end_lease(seq, now);
        Ok(effect)
    }

    /// Applies one result to a member: counters, health, status, rest,
    /// anomalies. A status change is durable before anything changes.
    fn apply_outcome(
        &mut self,
        slot: u32,
        outcome: Outcome,
        now: Millis,
    ) -> Result<ReportEffect, PoolError> {
        let before = self.rec(slot).m;
        let mut m = before;
        let cfg = &self.config;
        let event = match outcome {
            Outcome::Success => {
                m.success_count += 1;
                m.consecutive_failures = 0;
                m.block_streak = 0;
                m.rate_limit_streak = 0;
                m.health = m.health.saturating_add(cfg.health_success).min(100);
                Event::Succeeded
            }
            Outcome::Failure(f) => {
                m.fail_count += 1;
                m.consecutive_failures += 1;
                let penalty = match f.class {
                    FailureClass::Network => {
                        cfg.health_failure_network.unwrap_or(cfg.health_failure)
                    }
                    _ => cfg.health_failure,
                };
                m.health = m.health.saturating_sub(penalty);
                match f.class {
                    FailureClass::Blocked => {
                        m.block_streak = m.block_streak.saturating_add(1);
                        if u32::from(m.block_streak) >= cfg.ban_after_blocks {
                            Event::BlockedTooOften
                        } else {
                            Event::Blocked
                        }
                    }
                    FailureClass::RateLimited => {
                        m.rate_limit_streak = m.rate_limit_streak.saturating_add(1);
                        Event::RateLimited
                    }
                    FailureClass::Challenged => Event::Challenged,
                    FailureClass::Expired => Event::SessionExpired,
                    FailureClass::Network | FailureClass::Other => Event::Neutral,
                }
            }
        };
        m.status = machine::transition(before.status, event)
            .expect("observations are legal in every status");
        if matches!(m.status, Status::Cooling | Status::Suspended)
            && let Outcome::Failure(f) = outcome
            && matches!(f.class, FailureClass::Blocked | FailureClass::RateLimited)
        {
            let (rule, streak) = if f.class == FailureClass::Blocked {
                (cfg.block_backoff(), m.block_streak)
            } else {
                (cfg.rate_limit_backoff(), m.rate_limit_streak)
            };
            let unit = (self.host.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            let current =
                (m.cooldown_until != NEVER && m.cooldown_until > now).then_some(m.cooldown_until);
            m.cooldown_until = rest_until(
                &rule,
                u32::from(streak),
                f.retry_after_secs,
                unit,
                now,
                current,
            );
        }
        if m.status == Status::Banned {
            m.cooldown_until = NEVER;
        }
        self.commit(slot, m, now)?;

        // Counters and detectors; alerts go out once per start.
        let ok = outcome == Outcome::Success;
        let drop = self.config.success_drop;
        let min_seen = self.config.success_min_reports;
        let threshold = self.config.low_health_threshold;
        let rec = self.records[slot as usize].as_mut().expect("live slot");
        let cred_rate = rec.success.observe(ok, drop, min_seen);
        let (fast, slow) = rec.success.rates();
        let low = anomaly::low_health(
            before.health,
            m.health,
            threshold,
            LOW_HEALTH_MARGIN,
            rec.low_health_flagged,
        );
        match low {
            Change::Raised => rec.low_health_flagged = true,
            Change::Cleared => rec.low_health_flagged = false,
            Change::None => {}
        }
        let si = rec.site as usize;
        let site = &mut self.sites[si];
        match outcome {
            Outcome::Success => site.counters.successes += 1,
            Outcome::Failure(f) => *site.counters.failures.entry(f.class).or_default() += 1,
        }
        let site_rate = site.success.observe(ok, drop, min_seen);
        let (site_fast, site_slow) = site.success.rates();
        let burst = match outcome {
            Outcome::Failure(f) if f.class == FailureClass::Blocked => {
                let window = self.config.block_burst_window_seconds as i64 * 1000;
                site.blocks
                    .block(now, window, self.config.block_burst_count)
            }
            _ => Change::None,
        };
        let blocks_seen = site.blocks.count();
        let banned = m.status == Status::Banned && before.status != Status::Banned;
        let quiet = [cred_rate, low, site_rate, burst]
            .iter()
            .all(|c| *c == Change::None);
        if quiet && !banned {
            return Ok(effect(&m));
        }
        let id = self.rec(slot).id.clone();
        let id = Some(&*id);
        self.anomaly(si, cred_rate, AlertKind::SuccessRateDrop, id, now, || {
            format!(
                "success rate fell to {:.0}% (long-run {:.0}%)",
                fast * 100.0,
                slow * 100.0
            )
        });
        self.anomaly(si, low, AlertKind::LowHealth, id, now, || {
            format!("health {} below {}", m.health, threshold)
        });
        self.anomaly(si, site_rate, AlertKind::SuccessRateDrop, None, now, || {
            format!(
                "site success rate fell to {:.0}% (long-run {:.0}%)",
                site_fast * 100.0,
                site_slow * 100.0
            )
        });
        self.anomaly(si, burst, AlertKind::BlockBurst, None, now, || {
            format!("{blocks_seen} blocks within the window: the site's defences may have changed")
        });
        if banned {
            let name = self.sites[si].name.clone();
            self.host.raise(&Alert {
                kind: AlertKind::Banned,
                severity: Severity::Critical,
                site: name,
                credential_id: id.map(str::to_string),
                message: format!("banned after {} blocks in a row", m.block_streak),
                raised_at: now,
            });
        }
        Ok(effect(&m))
    }

    /// Raises or clears an anomaly of a site (or of one of its members).
    fn anomaly(
        &mut self,
        si: usize,
        change: Change,
        kind: AlertKind,
        credential: Option<&str>,
        now: Millis,
        detail: impl FnOnce() -> String,
    ) {
        match change {
            Change::None => {}
            Change::Cleared => self.sites[si].unflag(kind, credential),
            Change::Raised => {
                let detail = detail();
                self.sites[si].flag(kind, credential, now, detail.clone());
                let slot = credential
                    .and_then(|id| self.by_id.get(id).copied())
                    .unwrap_or(NO_SLOT);
                let quiet = self.config.realert_after_seconds as Millis * 1000;
                let key = (kind, si as u32, slot);
                if self
                    .notified
                    .get(&key)
                    .is_some_and(|&at| now.saturating_sub(at) < quiet)
                {
                    return;
                }
                if self.notified.len() >= NOTIFIED_KEPT {
                    self.notified
                        .retain(|_, at| now.saturating_sub(*at) < quiet);
                }
                self.notified.insert(key, now);
                let site = &self.sites[si];
                let severity = match kind {
                    AlertKind::BlockBurst => Severity::Critical,
                    _ => Severity::Warning,
                };
                let alert = Alert {
                    kind,
                    severity,
                    site: site.name.clone(),
                    credential_id: credential.map(str::to_string),
                    message: detail,
                    raised_at: now,
                };
                self.log(
                    Level::Warn,
                    "cred.anomaly",
                    &[
                        ("site", alert.site.clone()),
                        ("id", alert.credential_id.clone().unwrap_or_default()),
                        ("detail", alert.message.clone()),
                    ],
                );
                self.host.raise(&alert);
            }
        }
    }

    /// Makes `m` the member's state: durable first when the status changes,
    /// then in memory, counts and indexes.
    fn commit(&mut self, slot: u32, m: Mutable, now: Millis) -> Result<(), PoolError> {
        let before = self.rec(slot).m;
        let changed = m.status != before.status;
        if changed {
            self.write_record(slot, &m, true)?;
            // Out of `challenged`: a stored hold has no reason left.
            let id = &self.rec(slot).id;
            if self.lc.is_held(id) {
                let key = hold_key(id);
                self.host.delete(&key)?;
            }
        }
        let rec = self.records[slot as usize].as_mut().expect("live slot");
        rec.m = m;
        if changed {
            let site = &mut self.sites[rec.site as usize];
            site.by_status[status_slot(before.status)] -= 1;
            site.by_status[status_slot(m.status)] += 1;
        } else if m != before {
            self.touch(slot);
        }
        if changed {
            let rec = self.rec(slot);
            let fields = [
                ("id", rec.id.to_string()),
                ("from", before.status.name().to_string()),
                ("to", m.status.name().to_string()),
                ("user", rec.username().map(mask).unwrap_or_default()),
            ];
            let level = match m.status {
                Status::Suspended | Status::Banned => Level::Warn,
                _ => Level::Info,
            };
            let name = match m.status {
                Status::Suspended | Status::Banned => "cred.blocked",
                _ => "cred.status",
            };
            self.log(level, name, &fields);
            self.track(slot, now);
        }
        if m.health < before.health && self.host.enabled(Level::Debug) {
            let fields = [
                ("id", self.rec(slot).id.to_string()),
                ("from", before.health.to_string()),
                ("to", m.health.to_string()),
            ];
            self.log(Level::Debug, "cred.health_drop", &fields);
        }
        self.refresh(slot, now);
        Ok(())
    }

    /// Applies a command (unban, refresh, challenge answered, rest over);
    /// an event the state machine refuses is a typed error.
    fn apply_command(&mut self, slot: u32, event: Event, now: Millis) -> Result<(), PoolError> {
        let before = self.rec(slot).m;
        let status = machine::transition(before.status, event).map_err(|e| {
            PoolError::IllegalTransition {
                from: e.from,
                event: e.event.name().to_string(),
            }
        })?;
        let mut m = before;
        m.status = status;
        m.cooldown_until = NEVER;
        if event == Event::Unban {
            m.consecutive_failures = 0;
            m.block_streak = 0;
        }
        self.commit(slot, m, now)
    }

    /// Moves a credential by a command event (`unban`, `refresh-succeeded`,
    /// `challenge-resolved`, `cooldown-ended`).
    pub fn command(&mut self, id: &str, event: Event) -> Result<Credential, PoolError> {
        let slot = self.slot_of(id)?;
        let now = self.host.now();
        if event == Event::CooldownEnded && self.rec(slot).m.cooldown_until > now {
            return Err(PoolError::IllegalTransition {
                from: self.rec(slot).m.status,
                event: event.name().to_string(),
            });
        }
        self.apply_command(slot, event, now)?;
        Ok(self.snapshot(slot, &self.rec(slot).m))
    }

    /// Ends a lease without a result.
    pub fn release(&mut self, lease: LeaseId) -> Result<(), PoolError> {
        let seq = self.find_lease(lease)?;
        let now = self.host.now();
        self.end_lease(seq, now);
        Ok(())
    }

    /// One credential's record.
    pub fn get(&self, id: &str) -> Result<Credential, PoolError> {
        let slot = self.slot_of(id)?;
        Ok(self.snapshot(slot, &self.rec(slot).m))
    }

    /// The credential's record with `m` as its changing fields.
    fn snapshot(&self, slot: u32, m: &Mutable) -> Credential {
        let r = self.rec(slot);
        let x = r.extra.as_deref().map(packed::unpack).unwrap_or_default();
        let time = |t: Millis| (t != NEVER).then_some(t);
        Credential {
            id: r.id.to_string(),
            site: self.sites[r.site as usize].name.clone(),
            kind: r.kind,
            status: m.status,
            created_at: r.created_at,
            last_used_at: time(r.last_used_at),
            expires_at: time(r.expires_at),
            cooldown_until: time(m.cooldown_until),
            use_count: r.use_count,
            success_count: m.success_count,
            fail_count: m.fail_count,
            consecutive_failures: m.consecutive_failures,
            health: m.health,
            tags: r.tags.to_vec(),
            username: x.username,
            phone: x.phone,
            email: x.email,
            cookie_names: x.cookie_names,
            header_names: x.header_names,
            secret_fields: x.secret_fields,
            token_scope: x.token_scope,
            source_account: x.source_account,
            max_concurrent: (r.max_concurrent != 0).then_some(r.max_concurrent),
            rate_per_minute: (r.rate_per_minute != 0).then_some(r.rate_per_minute),
            labels: x.labels,
            block_streak: u32::from(m.block_streak),
            rate_limit_streak: u32::from(m.rate_limit_streak),
            logged_in_at: time(r.logged_in_at),
        }
    }

    /// The credential as `level` may see it.
    pub fn view(&self, id: &str, level: AccessLevel) -> Result<View, PoolError> {
        let slot = self.slot_of(id)?;
        Ok(self.make_view(slot, level))
    }

    /// Credentials matching `filter`, in id order.
    pub fn list(&self, filter: &ListFilter, level: AccessLevel) -> Vec<View> {
        let mut slots: Vec<u32> = match &filter.site {
            Some(site) => self
                .site_by_name
                .get(site)
                .map(|&si| self.sites[si as usize].members.clone())
                .unwrap_or_default(),
            None => self.by_id.values().copied().collect(),
        };
        slots.sort_by(|a, b| self.rec(*a).id.cmp(&self.rec(*b).id));
        let limit = filter.limit.map(|l| l as usize).unwrap_or(usize::MAX);
        slots
            .into_iter()
            .map(|s| (s, self.rec(s)))
            .filter(|(_, r)| filter.after.as_deref().is_none_or(|a| &*r.id > a))
            .filter(|(_, r)| filter.kind.is_none_or(|k| r.kind == k))
            .filter(|(_, r)| filter.status.is_none_or(|s| r.m.status == s))
            .filter(|(_, r)| filter.tag.as_ref().is_none_or(|t| r.tags.contains(t)))
            .take(limit)
            .map(|(s, _)| self.make_view(s, level))
            .collect()
    }

    fn make_view(&self, slot: u32, level: AccessLevel) -> View {
        let r = self.rec(slot);
        let c = self.snapshot(slot, &r.m);
        let internal = (level >= AccessLevel::Internal).then(|| InternalView {
            created_at: c.created_at,
            last_used_at: c.last_used_at,
            expires_at: c.expires_at,
            cooldown_until: c.cooldown_until,
            use_count: c.use_count,
            success_count: c.success_count,
            fail_count: c.fail_count,
            consecutive_failures: c.consecutive_failures,
            open_leases: r.open_leases,
            max_concurrent: max_concurrent(r),
            rate_per_minute: rate_of(r, &self.config).map(|r| r.per_minute),
            tags: c.tags.clone(),
            labels: c.labels.clone(),
            source_account: c.source_account.clone(),
        });
        let personal = |v: &Option<String>| {
            v.as_ref().map(|s| {
                if level == AccessLevel::Secret {
                    s.clone()
                } else {
                    mask(s)
                }
            })
        };
        let sensitive = (level >= AccessLevel::Sensitive).then(|| SensitiveView {
            username: personal(&c.username),
            phone: personal(&c.phone),
            email: personal(&c.email),
            cookie_names: c.cookie_names.clone(),
            header_names: c.header_names.clone(),
            secret_fields: c.secret_fields.clone(),
            token_scope: c.token_scope.clone(),
        });
        View {
            level,
            id: c.id,
            site: c.site,
            kind: c.kind,
            status: c.status,
            health: c.health,
            internal,
            sensitive,
        }
    }

    /// Per-site state from counters; one site or all. O(sites).
    pub fn stats(&self, site: Option<&str>) -> Vec<SiteStats> {
        let mut out: Vec<SiteStats> = self
            .sites
            .iter()
            .filter(|s| !s.members.is_empty())
            .filter(|s| site.is_none_or(|name| name == s.name))
            .map(|s| SiteStats {
                site: s.name.clone(),
                total: s.members.len() as u32,
                by_status: s.by_status,
                open_leases: s.open_leases,
                granted: s.counters.granted,
                refused: s.counters.refused,
                successes: s.counters.successes,
                failures: s.counters.failures.iter().map(|(k, v)| (*k, *v)).collect(),
                anomalies: s.anomalies.clone(),
                refresh_attempts: s.counters.refresh_attempts,
                refresh_succeeded: s.counters.refresh_succeeded,
                refresh_failed: s.counters.refresh_failed,
                refresh_in_flight: s.counters.refresh_in_flight,
                refresh_by_method: s
                    .counters
                    .refresh_by_method
                    .iter()
                    .map(|(m, c)| MethodStats {
                        method: *m,
                        counts: *c,
                    })
                    .collect(),
                answer_times: s.counters.answer_times,
                open_tickets: 0,
            })
            .collect();
        for t in self.lc.open_tickets() {
            if let Some(s) = out.iter_mut().find(|s| s.site == t.site) {
                s.open_tickets += 1;
            }
        }
        out.sort_by(|a, b| a.site.cmp(&b.site));
        out
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
                self.end_lease(seq, now);
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
        for slot in std::mem::take(&mut self.rest_over) {
            let due = matches!(&self.records[slot as usize],
                Some(r) if matches!(r.m.status, Status::Cooling | Status::Suspended)
                    && r.m.cooldown_until <= now);
            if due {
                self.apply_command(slot, Event::CooldownEnded, now)?;
                summary.cooldowns_ended += 1;
            }
        }
        let lc_next = self.lifecycle_tick(now, &mut summary)?;
        self.flush()?;
        summary.next_due_at = (0..self.sites.len())
            .filter_map(|si| self.next_free_at(si, now))
            .chain(lc_next)
            .min();
        Ok(summary)
    }

    /// Lifts a ban (a person's decision).
    pub fn unban(&mut self, id: &str) -> Result<Credential, PoolError> {
        self.command(id, Event::Unban)
    }

    /// A person's decision: a credential left `challenged` with no open
    /// ticket goes to `expired`, due for the site's refresh or a fresh login
    /// like any expired credential (the lifecycle schedules it). Refused in any other status or while a ticket is open.
    pub fn reset_challenge(&mut self, id: &str) -> Result<Credential, PoolError> {
        let slot = self.slot_of(id)?;
        let now = self.host.now();
        let before = self.rec(slot).m;
        if before.status != Status::Challenged || self.lc.has_ticket(id) {
            return Err(PoolError::IllegalTransition {
                from: before.status,
                event: "reset-challenge".to_string(),
            });
        }
        let mut m = before;
        m.status = Status::Expired;
        m.cooldown_until = NEVER;
        // `commit` writes it, re-indexes it and schedules its login.
        self.commit(slot, m, now)?;
        self.log(Level::Info, "challenge.reset", &[("id", id.to_string())]);
        Ok(self.snapshot(slot, &self.rec(slot).m))
    }

    /// Writes dirty counters and lease changes as lazy writes.
    pub fn flush(&mut self) -> Result<u32, PoolError> {
        let mut written = 0;
        for page in std::mem::take(&mut self.dirty_pages) {
            self.page_dirty[page as usize] = false;
            let start = (page * PAGE_SLOTS) as usize;
            let end = (start + PAGE_SLOTS as usize).min(self.ctr_slots.len());
            let entries = self.ctr_slots[start..end].iter().map(|&slot| {
                if slot == FREE_PLACE {
                    return counters::Entry::default();
                }
                let r = self.rec(slot);
                counters::Entry {
                    tag: r.ctr_tag,
                    consecutive_failures: r.m.consecutive_failures,
                    health: r.m.health,
                    block_streak: r.m.block_streak,
                    rate_limit_streak: r.m.rate_limit_streak,
                    use_count: r.use_count,
                    success_count: r.m.success_count,
                    fail_count: r.m.fail_count,
                    last_used_at: r.last_used_at,
                    cooldown_until: r.m.cooldown_until,
                }
            });
            match counters::encode_page(entries) {
                Some(bytes) => self.host.set(&counters::page_key(page), &bytes, false)?,
                None => {
                    self.host.delete(&counters::page_key(page))?;
                }
            }
            written += 1;
        }
        for seq in std::mem::take(&mut self.new_leases) {
            let Some(lease) = self.leases.get_mut(&seq) else {
                // Ended before it was ever written: nothing to store.
                continue;
            };
            lease.persisted = true;
            let lease = *lease;
            let record = LeaseRecord {
                id: LeaseId {
                    seq,
                    nonce: lease.nonce,
                }
                .to_string(),
                credential_id: self.rec(lease.slot).id.to_string(),
                granted_at: lease.granted_at,
                expires_at: lease.expires_at,
            };
            let bytes = serde_json::to_vec(&record).expect("lease serialises");
            self.host
                .set(&format!("{LEASE_PREFIX}{}", record.id), &bytes, false)?;
            written += 1;
        }
        for id in std::mem::take(&mut self.ended_leases) {
            self.host.delete(&format!("{LEASE_PREFIX}{id}"))?;
            written += 1;
        }
        for site in &mut self.sites {
            let c = &mut site.counters;
            if !c.refresh_dirty {
                continue;
            }
            let stored = StoredRefreshCounts {
                attempts: c.refresh_attempts,
                succeeded: c.refresh_succeeded,
                failed: c.refresh_failed,
                by_method: c.refresh_by_method.clone(),
                answer_times: c.answer_times,
            };
            let bytes = serde_json::to_vec(&stored).expect("counts serialise");
            self.host
                .set(&format!("{REFRESH_PREFIX}{}", site.name), &bytes, false)?;
            c.refresh_dirty = false;
            written += 1;
        }
        Ok(written)
    }

    /// The earliest time something of the site frees up: a rest ends, a
    /// rate token comes, or a lease ends. Drops stale heap tops on the way.
    fn next_free_at(&mut self, si: usize, now: Millis) -> Option<Millis> {
        let records = &self.records;
        let site = &mut self.sites[si];
        while let Some(&Reverse((t, slot))) = site.wakes.peek() {
            if matches!(&records[slot as usize], Some(r) if r.wake_at == t) {
                break;
            }
            site.wakes.pop();
        }
        while let Some(&Reverse((t, seq))) = site.lease_ends.peek() {
            if self.leases.get(&seq).is_some_and(|l| l.expires_at == t) {
                break;
            }
            site.lease_ends.pop();
        }
        let wake = site.wakes.peek().map(|r| r.0.0);
        let lease = site.lease_ends.peek().map(|r| r.0.0);
        let next = match (wake, lease) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        next.map(|t| t.max(now))
    }

    /// The answer when nothing can be handed out: why (from the site's
    /// counts, or from a walk of the matches when the request filters), the
    /// earliest time something frees, and what to do.
    fn refuse(&mut self, si: Option<u32>, req: &AcquireRequest, now: Millis) -> AcquireResponse {
        let mut counts = [0u32; AVAIL_COUNT];
        let mut next_free_at = None;
        if let Some(si) = si {
            let site = &self.sites[si as usize];
            let filtered = req.kind.is_some() || !req.tags.is_empty() || site.purpose_bound > 0;
            if filtered {
                for &slot in &site.members {
                    let r = self.rec(slot);
                    if matches(r, req) {
                        counts[r.avail as usize] += 1;
                    }
                }
            } else {
                counts = site.by_avail;
            }
            next_free_at = self.next_free_at(si as usize, now);
            self.sites[si as usize].counters.refused += 1;
        }
        let label = [
            "ready",
            "leased",
            "rate-limited",
            "cooling",
            "suspended",
            "waiting for refresh or challenge",
            "banned",
        ];
        let reason_of = |a: usize| match a {
            1 => UnavailableReason::AllLeased,
            2 => UnavailableReason::AllRateLimited,
            3 | 4 => UnavailableReason::AllCooling,
            5 => UnavailableReason::AllRefreshing,
            _ => UnavailableReason::AllBanned,
        };
        let mut reasons: Vec<UnavailableReason> = (1..AVAIL_COUNT)
            .filter(|&a| counts[a] > 0)
            .map(reason_of)
            .collect();
        reasons.dedup();
        let matching: u32 = counts.iter().sum();
        let reason = match reasons.len() {
            0 => UnavailableReason::NoneMatch,
            1 => reasons[0],
            _ => UnavailableReason::Mixed,
        };
        let blocked = counts[Avail::Suspended as usize] + counts[Avail::Banned as usize];
        let status = if matching > 0 && blocked == matching {
            AcquireStatus::AllBlocked
        } else {
            AcquireStatus::NoAvailable
        };
        let mut warnings: Vec<String> = (1..AVAIL_COUNT)
            .filter(|&a| counts[a] > 0)
            .map(|a| format!("{} {}", counts[a], label[a]))
            .collect();
        if let Some(t) = next_free_at {
            warnings.push(format!("next credential frees at {t} (epoch ms)"));
        }
        let mut alternatives = Vec::new();
        match reason {
            UnavailableReason::NoneMatch => {
                if req.kind.is_some() || !req.tags.is_empty() {
                    alternatives.push("drop the kind or tag filter".to_string());
                }
                alternatives.push(format!(
                    "add credentials for {} (credpool add --site {})",
                    req.site, req.site
                ));
            }
            UnavailableReason::AllBanned => alternatives
                .push("add fresh accounts, or review and `credpool unban ID`".to_string()),
            _ => {
                alternatives.push("retry after next_free_at".to_string());
                if counts[Avail::Leased as usize] > 0 {
                    alternatives.push("release leases you no longer use".to_string());
                }
                alternatives.push(format!("add more credentials for {}", req.site));
            }
        }
        let fields = [
            ("site", req.site.clone()),
            ("total", matching.to_string()),
            ("reason", format!("{reason:?}")),
            ("leased", counts[1].to_string()),
            ("cooling", (counts[3] + counts[4]).to_string()),
            ("banned", counts[6].to_string()),
        ];
        self.log(Level::Warn, "cred.no_available", &fields);
        if let Some(si) = si {
            let site = &mut self.sites[si as usize];
            if !site.exhausted && matching > 0 && site.ready == 0 {
                site.exhausted = true;
                let detail = format!("no credential to hand out: {}", warnings.join(", "));
                self.anomaly(
                    si as usize,
                    Change::Raised,
                    AlertKind::PoolExhausted,
                    None,
                    now,
                    || detail,
                );
            }
        }
        AcquireResponse {
            status,
            grant: None,
            reason: Some(reason),
            next_free_at,
            alternatives,
            warnings,
        }
    }

    fn fresh_id(&mut self, kind: Kind) -> String {
        let prefix = match kind {
            Kind::Account => "acct",
            Kind::Session => "sess",
            Kind::Token => "tok",
            Kind::ApiKey => "key",
            Kind::Device => "dev",
        };
        loop {
            let id = format!("{prefix}-{:012x}", self.host.next_u64() >> 16);
            if !self.by_id.contains_key(id.as_str()) {
                return id;
            }
        }
    }

    fn log(&mut self, level: Level, name: &str, fields: &[(&str, String)]) {
        if self.host.enabled(level) {
            self.host.event(level, name, fields);
        }
    }

    /// Entries in the lease-end heaps (tests).
    #[cfg(test)]
    pub(crate) fn lease_heap_len(&self) -> usize {
        self.sites.iter().map(|s| s.lease_ends.len()).sum()
    }

    /// Checks every index against a recount from the records (tests).
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let now = self.host.now();
        for site in &self.sites {
            let mut by_avail = [0u32; AVAIL_COUNT];
            let mut by_status = [0u32; 7];
            let mut open = 0;
            for (pos, &slot) in site.members.iter().enumerate() {
                let r = self.rec(slot);
                assert_eq!(r.pos as usize, pos);
                by_avail[r.avail as usize] += 1;
                by_status[status_slot(r.m.status)] += 1;
                open += r.open_leases;
                let w = site.weights.prefix(pos + 1) - site.weights.prefix(pos);
                assert_eq!(w, u64::from(r.weight), "weight of {}", r.id);
                assert_eq!(r.weight > 0, r.avail == Avail::Ready);
                let (avail, _) = availability(r, now, &self.config);
                // Time-driven changes may be pending until the next advance.
                if avail != r.avail {
                    assert!(r.wake_at != NEVER && r.wake_at <= now, "{} {avail:?}", r.id);
                }
            }
            assert_eq!(by_avail, site.by_avail, "{}", site.name);
            assert_eq!(by_status, site.by_status);
            assert_eq!(open, site.open_leases);
            assert_eq!(site.ready, by_avail[0]);
        }
    }
}

fn effect(m: &Mutable) -> ReportEffect {
    ReportEffect {
        status: m.status,
        health: m.health,
        cooldown_until: (m.cooldown_until != NEVER).then_some(m.cooldown_until),
    }
}

/// A credential as an access level sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    pub level: AccessLevel,
    pub id: String,
    pub site: String,
    pub kind: Kind,
    pub status: Status,
    pub health: u8,
    pub internal: Option<InternalView>,
    pub sensitive: Option<SensitiveView>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct InternalView {
    pub created_at: Millis,
    pub last_used_at: Option<Millis>,
    pub expires_at: Option<Millis>,
    pub cooldown_until: Option<Millis>,
    pub use_count: u64,
    pub success_count: u64,
    pub fail_count: u64,
    pub consecutive_failures: u32,
    pub open_leases: u32,
    pub max_concurrent: u32,
    pub rate_per_minute: Option<u32>,
    pub tags: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub source_account: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SensitiveView {
    pub username: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub cookie_names: Vec<String>,
    pub header_names: Vec<String>,
    pub secret_fields: Vec<SecretField>,
    pub token_scope: Vec<String>,
}

/// Accounts and sessions are exclusive by default: sites ban shared logins.
fn max_concurrent(r: &Record) -> u32 {
    if r.max_concurrent != 0 {
        return r.max_concurrent;
    }
    match r.kind {
        Kind::Account | Kind::Session => 1,
        Kind::Token | Kind::ApiKey | Kind::Device => u32::MAX,
    }
}

fn rate_of(r: &Record, config: &PolicyConfig) -> Option<Rate> {
    let per_minute = if r.rate_per_minute != 0 {
        Some(r.rate_per_minute)
    } else {
        config.rate_per_minute
    }?;
    Some(Rate {
        per_minute,
        burst: config.rate_burst,
    })
}

/// Whether a member can be handed out now, and when that changes by itself.
fn availability(r: &Record, now: Millis, config: &PolicyConfig) -> (Avail, Option<Millis>) {
    let rest = r.m.cooldown_until;
    match r.m.status {
        Status::Banned => return (Avail::Banned, None),
        Status::Challenged | Status::Expired => return (Avail::Refreshing, None),
        Status::Cooling if rest > now => return (Avail::Cooling, Some(rest)),
        Status::Suspended if rest > now => return (Avail::Suspended, Some(rest)),
        // Active, init, or a rest that is over ("cooling-expired").
        _ => {}
    }
    if r.expires_at != NEVER && r.expires_at <= now {
        return (Avail::Refreshing, None);
    }
    if r.open_leases >= max_concurrent(r) {
        return (Avail::Leased, None);
    }
    if let Some(rate) = rate_of(r, config) {
        let next = rate.next_allowed(r.next_use_at);
        if next > now {
            return (Avail::RateLimited, Some(next));
        }
    }
    (
        Avail::Ready,
        (r.expires_at != NEVER).then_some(r.expires_at),
    )
}

/// A ready member's selection weight (never 0: 0 means "not ready").
fn strategy_weight(strategy: Strategy, health: u8) -> u8 {
    match strategy {
        // Health 0 still gets a sliver of a chance, so a pool of burnt
        // credentials keeps serving rather than refusing.
        Strategy::HealthWeighted | Strategy::Sticky => health.max(1),
        Strategy::Random | Strategy::RoundRobin | Strategy::LeastRecentlyUsed => 1,
    }
}

fn matches(r: &Record, req: &AcquireRequest) -> bool {
    if req.kind.is_some_and(|k| r.kind != k) {
        return false;
    }
    if !req.tags.iter().all(|t| r.tags.contains(t)) {
        return false;
    }
    // A credential labelled with purposes serves only those.
    let mut purposes = r.purpose_labels().peekable();
    purposes.peek().is_none()
        || req
            .purpose
            .as_deref()
            .is_some_and(|p| purposes.any(|x| x == p))
}

fn status_slot(s: Status) -> usize {
    s as usize
}

/// The lifecycle configuration in force: the configured one, or one that
/// schedules nothing when the policy JSON has no `lifecycle` key.
fn lifecycle_config(config: &PolicyConfig) -> LifecycleConfig {
    match &config.lifecycle {
        Some(c) => c.clone(),
        None => LifecycleConfig {
            default: lc::SiteTiming {
                method: lc::SiteMethod::None,
                can_relogin: false,
                health_check_interval: 0,
                ..lc::SiteTiming::default()
            },
            ..LifecycleConfig::default()
        },
    }
}

fn lc_status(s: Status) -> LcStatus {
    match s {
        Status::Init => LcStatus::Init,
        Status::Active => LcStatus::Active,
        Status::Expired => LcStatus::Expired,
        Status::Challenged => LcStatus::Challenged,
        Status::Cooling | Status::Suspended => LcStatus::Resting,
        Status::Banned => LcStatus::Banned,
    }
}

fn ticket_key(id: &str) -> String {
    format!("{TICKET_PREFIX}{id}")
}

fn hold_key(credential_id: &str) -> String {
    format!("{HOLD_PREFIX}{credential_id}")
}

/// The lifecycle hooks: scheduling, refresh results and tickets.
impl<H: Host> Pool<H> {
    /// (Re)computes when a member is next due for a refresh. O(log n).
    fn track(&mut self, slot: u32, now: Millis) {
        if self.config.lifecycle.is_none() {
            // Nothing is scheduled: keep no per-credential entry.
            return;
        }
        let r = self.rec(slot);
        let time = |t: Millis| (t != NEVER).then_some(t);
        let tracked = Tracked {
            id: r.id.to_string(),
            site: self.sites[r.site as usize].name.clone(),
            // A session or token added with its cookies or tokens is live:
            // it is kept alive like an active one; an account needs a login.
            status: match (r.m.status, r.kind) {
                (Status::Init, Kind::Session | Kind::Token | Kind::ApiKey | Kind::Device) => {
                    LcStatus::Active
                }
                (s, _) => lc_status(s),
            },
            expires_at: time(r.expires_at),
            logged_in_at: time(r.logged_in_at).unwrap_or(r.created_at),
            checked_at: time(r.checked_at),
        };
        let host = &mut self.host;
        self.lc.track(&tracked, now, &mut |n| host.below(n));
    }

    /// Moves a member as the lifecycle asks, through the state machine.
    /// A refused move (e.g. a banned member) changes nothing.
    fn lifecycle_status(
        &mut self,
        slot: u32,
        change: StatusChange,
        now: Millis,
    ) -> Result<(), PoolError> {
        let before = self.rec(slot).m;
        let event = match change {
            StatusChange::Active if before.status == Status::Challenged => Event::ChallengeResolved,
            StatusChange::Active => Event::Refreshed,
            StatusChange::Expired => Event::SessionExpired,
            StatusChange::Challenged => Event::Challenged,
            StatusChange::Suspended => Event::Blocked,
        };
        let Ok(status) = machine::transition(before.status, event) else {
            let id = self.rec(slot).id.to_string();
            self.log(
                Level::Warn,
                "refresh.status_refused",
                &[
                    ("id", id),
                    ("from", before.status.name().to_string()),
                    ("event", event.name().to_string()),
                ],
            );
            return Ok(());
        };
        let mut m = before;
        m.status = status;
        if status != before.status {
            m.cooldown_until = if status == Status::Suspended {
                now.saturating_add(self.config.block_cooldown_seconds as i64 * 1000)
            } else {
                NEVER
            };
        }
        self.commit(slot, m, now)
    }

    /// Asks the host to run a refresh; a refusal frees the slot and backs
    /// off. Returns whether it was queued.
    fn start_refresh(&mut self, start: &StartRefresh, now: Millis) -> bool {
        match self.host.start_refresh(start) {
            Ok(()) => {
                if let Some(&si) = self.site_by_name.get(&start.site) {
                    let c = &mut self.sites[si as usize].counters;
                    c.refresh_attempts += 1;
                    c.refresh_by_method
                        .entry(start.method)
                        .or_default()
                        .attempts += 1;
                    c.refresh_in_flight += 1;
                    c.refresh_dirty = true;
                }
                self.log(
                    Level::Info,
                    "refresh.started",
                    &[
                        ("id", start.credential_id.clone()),
                        ("method", format!("{:?}", start.method)),
                    ],
                );
                true
            }
            Err(why) => {
                let host = &mut self.host;
                self.lc
                    .start_failed(&start.credential_id, start.request_id, now, &mut |n| {
                        host.below(n)
                    });
                self.log(
                    Level::Warn,
                    "refresh.not_started",
                    &[("id", start.credential_id.clone()), ("reason", why)],
                );
                false
            }
        }
    }

    /// The lifecycle part of `tick`: lost refreshes, overdue tickets, due
    /// refreshes. Cost: the due items. Returns when it next has work.
    fn lifecycle_tick(
        &mut self,
        now: Millis,
        summary: &mut TickSummary,
    ) -> Result<Option<Millis>, PoolError> {
        let host = &mut self.host;
        let plan = self.lc.tick(now, &mut |n| host.below(n));
        for (id, method) in &plan.abandoned {
            if let Some(&slot) = self.by_id.get(id.as_str()) {
                let si = self.rec(slot).site as usize;
                let c = &mut self.sites[si].counters;
                c.refresh_in_flight = c.refresh_in_flight.saturating_sub(1);
                c.refresh_failed += 1;
                c.refresh_by_method.entry(*method).or_default().failed += 1;
                c.refresh_dirty = true;
            }
            self.log(Level::Warn, "refresh.lost", &[("id", id.clone())]);
        }
        for t in plan.timed_out {
            // The hold first: a crash between the two leaves the ticket,
            // which times out again, never an unheld credential.
            self.host.set(
                &hold_key(&t.ticket.credential_id),
                t.ticket.id.as_bytes(),
                true,
            )?;
            self.host.delete(&ticket_key(&t.ticket.id))?;
            self.host.close_ticket(&t.ticket.id, Closure::TimedOut);
            summary.tickets_timed_out += 1;
            self.host.raise(&Alert {
                kind: AlertKind::TicketTimedOut,
                severity: Severity::Warning,
                site: t.ticket.site.clone(),
                credential_id: Some(t.ticket.credential_id.clone()),
                message: format!(
                    "challenge ticket {} ({:?}) was not answered in time; the credential stays out of rotation",
                    t.ticket.id, t.ticket.kind
                ),
                raised_at: now,
            });
            if let Some(&slot) = self.by_id.get(t.ticket.credential_id.as_str()) {
                self.lifecycle_status(slot, t.status, now)?;
                self.track(slot, now);
            }
        }
        for start in &plan.start {
            if self.start_refresh(start, now) {
                summary.refreshes_started += 1;
            }
        }
        Ok(plan.next_due_at)
    }

    /// Applies the result of a refresh the policy started; returns the
    /// credential's status after it.
    pub fn refresh_completed(&mut self, done: &Completed) -> Result<Status, PoolError> {
        let now = self.host.now();
        let slot = self.slot_of(&done.credential_id)?;
        let id = done.credential_id.clone();
        if !self.lc.in_flight(&id) {
            // Stale: a result for a refresh given up or superseded.
            self.log(Level::Info, "refresh.stale", &[("id", id)]);
            return Ok(self.rec(slot).m.status);
        }
        let tickets_before: Vec<String> = self
            .lc
            .open_tickets()
            .into_iter()
            .filter(|t| t.credential_id == id)
            .map(|t| t.id)
            .collect();
        let method = self.lc.in_flight_method(&id);
        let host = &mut self.host;
        let d = self.lc.on_completed(done, now, &mut |n| host.below(n));
        let si = self.rec(slot).site as usize;
        {
            let c = &mut self.sites[si].counters;
            c.refresh_in_flight = c.refresh_in_flight.saturating_sub(1);
            c.refresh_dirty = true;
            let by_method = method.map(|m| c.refresh_by_method.entry(m).or_default());
            match done.outcome {
                lc::RunOutcome::Refreshed(_) | lc::RunOutcome::StillValid => {
                    c.refresh_succeeded += 1;
                    if let Some(m) = by_method {
                        m.succeeded += 1;
                    }
                }
                lc::RunOutcome::Failed(_) => {
                    c.refresh_failed += 1;
                    if let Some(m) = by_method {
                        m.failed += 1;
                    }
                }
                // The resumed login counts, not the challenge.
                lc::RunOutcome::Challenged(_) => {}
            }
        }
        // Times first, so the durable write of a status change carries them.
        let mut times_changed = false;
        if let Some(e) = d.expires_at {
            self.rec_mut(slot).expires_at = e.unwrap_or(NEVER);
            times_changed = true;
        }
        if let Some(t) = d.logged_in_at {
            self.rec_mut(slot).logged_in_at = t;
            times_changed = true;
        }
        if let Some(t) = d.checked_at {
            self.rec_mut(slot).checked_at = t;
        }
        let status_before = self.rec(slot).m.status;
        // A session never used yet that a health check found logged in is
        // known to work.
        let status = match (d.status, done.outcome, status_before) {
            (None, lc::RunOutcome::StillValid, Status::Init) => Some(StatusChange::Active),
            (s, _, _) => s,
        };
        if let Some(change) = status {
            self.lifecycle_status(slot, change, now)?;
        }
        if times_changed && self.rec(slot).m.status == status_before {
            let m = self.rec(slot).m;
            self.write_record(slot, &m, true)?;
        }
        self.refresh(slot, now);
        self.track(slot, now);
        // A resumed login reported: its ticket closed.
        let open: BTreeSet<String> = self
            .lc
            .open_tickets()
            .into_iter()
            .filter(|t| t.credential_id == id)
            .map(|t| t.id)
            .collect();
        for t in tickets_before.iter().filter(|t| !open.contains(*t)) {
            self.host.delete(&ticket_key(t))?;
            let closure = match done.outcome {
                lc::RunOutcome::Refreshed(_) => Closure::Answered,
                _ => Closure::Cancelled,
            };
            self.host.close_ticket(t, closure);
        }
        let site = self.sites[si].name.clone();
        if let Some(ticket) = &d.open_ticket {
            let bytes = serde_json::to_vec(ticket).expect("ticket serialises");
            self.host.set(&ticket_key(&ticket.id), &bytes, true)?;
            let contact = self.masked_contact(ticket);
            self.host.open_ticket(ticket, contact);
            self.log(
                Level::Info,
                "ticket.opened",
                &[
                    ("ticket", ticket.id.clone()),
                    ("id", id.clone()),
                    ("kind", format!("{:?}", ticket.kind)),
                ],
            );
        }
        if let Some(lc::AlertNeed::RefreshFailed) = d.alert {
            let why = match done.outcome {
                lc::RunOutcome::Failed(k) => format!("{k:?}"),
                _ => "unknown".to_string(),
            };
            self.host.raise(&Alert {
                kind: AlertKind::RefreshFailed,
                severity: Severity::Warning,
                site,
                credential_id: Some(id.clone()),
                message: format!(
                    "refresh of {id} failed ({why}); now {}",
                    self.rec(slot).m.status.name()
                ),
                raised_at: now,
            });
        }
        if let Some(f) = &d.follow_up {
            self.start_refresh(f, now);
        }
        Ok(self.rec(slot).m.status)
    }

    /// Open challenge tickets, oldest first.
    pub fn tickets(&self) -> Vec<Ticket> {
        self.lc.open_tickets()
    }

    /// Where a ticket's code was sent, masked (SMS: the phone, e-mail: the
    /// address).
    pub fn masked_contact(&self, ticket: &Ticket) -> Option<String> {
        let slot = *self.by_id.get(ticket.credential_id.as_str())?;
        let x = packed::unpack(self.rec(slot).extra.as_deref()?);
        match ticket.kind {
            lc::ChallengeKind::SmsCode => x.phone,
            lc::ChallengeKind::EmailCode => x.email,
            _ => None,
        }
        .as_deref()
        .map(mask)
    }

    /// Settles a challenge ticket; returns the credential's status.
    pub fn resolve_challenge(
        &mut self,
        ticket_id: &str,
        resolution: Resolution,
    ) -> Result<Status, PoolError> {
        let now = self.host.now();
        let (credential_id, created_at) = self
            .lc
            .open_tickets()
            .into_iter()
            .find(|t| t.id == ticket_id)
            .map(|t| (t.credential_id, t.created_at))
            .ok_or_else(|| PoolError::TicketNotFound(ticket_id.to_string()))?;
        let slot = self.slot_of(&credential_id)?;
        let d = self
            .lc
            .resolve(ticket_id, resolution, now)
            .ok_or_else(|| PoolError::TicketNotFound(ticket_id.to_string()))?;
        if resolution == Resolution::Answered {
            let si = self.rec(slot).site as usize;
            let c = &mut self.sites[si].counters;
            c.answer_times
                .record(now.saturating_sub(created_at).max(0) as u64);
            c.refresh_dirty = true;
        }
        if d.status == Some(StatusChange::Active) {
            self.rec_mut(slot).logged_in_at = now;
        }
        if let Some(change) = d.status {
            self.lifecycle_status(slot, change, now)?;
        }
        self.track(slot, now);
        if let Some(closure) = d.closure {
            self.host.delete(&ticket_key(ticket_id))?;
            self.host.close_ticket(ticket_id, closure);
        }
        if let Some(start) = &d.start {
            self.start_refresh(start, now);
        }
        self.log(
            Level::Info,
            "ticket.resolved",
            &[
                ("ticket", ticket_id.to_string()),
                ("id", credential_id),
                ("resolution", format!("{resolution:?}")),
            ],
        );
        Ok(self.rec(slot).m.status)
    }
}

fn cred_key(id: &str) -> String {
    format!("{CRED_PREFIX}{id}")
}

/// A stored credential record: the credential and its counter place.
#[derive(serde::Serialize)]
struct StoredOut<'a> {
    #[serde(flatten)]
    cred: &'a Credential,
    ctr: u32,
    ctr_tag: u32,
}

#[derive(serde::Deserialize)]
struct StoredIn {
    #[serde(flatten)]
    cred: Credential,
    /// Absent in records written before counter pages.
    #[serde(default)]
    ctr: Option<u32>,
    #[serde(default)]
    ctr_tag: Option<u32>,
}

/// A place in `ctr_slots` that no credential holds.
const FREE_PLACE: u32 = u32::MAX;

/// A counter page's entry, newer than the record, over the record.
fn merge_counters(c: &mut Credential, e: &counters::Entry) {
    let time = |t: Millis| (t != NEVER).then_some(t);
    c.consecutive_failures = e.consecutive_failures;
    c.health = e.health.min(100);
    c.block_streak = u32::from(e.block_streak);
    c.rate_limit_streak = u32::from(e.rate_limit_streak);
    c.use_count = e.use_count;
    c.success_count = e.success_count;
    c.fail_count = e.fail_count;
    c.last_used_at = time(e.last_used_at);
    c.cooldown_until = time(e.cooldown_until);
}

fn write_cred<H: Host>(
    host: &mut H,
    cred: &Credential,
    ctr: u32,
    ctr_tag: u32,
    durable: bool,
) -> Result<(), PoolError> {
    let stored = StoredOut { cred, ctr, ctr_tag };
    let bytes = serde_json::to_vec(&stored).expect("credential serialises");
    host.set(&cred_key(&cred.id), &bytes, durable)?;
    Ok(())
}

/// Names (ids, sites, tags) are non-empty, short, printable and free of `/`
/// so they are safe as store keys and on a terminal.
fn validate_name(field: &str, value: &str) -> Result<String, PoolError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(PoolError::invalid(field, "must not be empty"));
    }
    if v.len() > 200 {
        return Err(PoolError::invalid(field, "longer than 200 bytes"));
    }
    if v.chars()
        .any(|c| c.is_control() || c == '/' || c.is_whitespace())
    {
        return Err(PoolError::invalid(
            field,
            "must not contain spaces, control characters or '/'",
        ));
    }
    Ok(v.to_string())
}

fn scan_all<H: Host>(host: &mut H, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, PoolError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (page, next) = host.scan(prefix, after.as_deref(), SCAN_PAGE)?;
        out.extend(page);
        match next {
            Some(n) => after = Some(n),
            None => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differing_only_at_the_end_spread_over_buckets() {
        use std::hash::BuildHasher;
        let build = std::hash::BuildHasherDefault::<FxHasher>::default();
        let buckets: std::collections::HashSet<u64> = (0..1000)
            .map(|i| build.hash_one(format!("c{i:07}")) & 1023)
            .collect();
        // A uniform hash fills about 63% of 1024 buckets with 1000 keys.
        assert!(buckets.len() > 550, "{}", buckets.len());
    }
}
