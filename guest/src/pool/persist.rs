//! What the pool stores and when: loading, durable status changes
//! (`commit`), lazy counter pages and leases (`flush`), and the stored
//! forms and keys.

use super::collections::{Chunked, FastMap};
use super::lifecycle::lifecycle_config;
use super::{LATE_REPORT_WINDOW_MS, Pool, status_slot};
use crate::config::PolicyConfig;
use crate::counters::{self, PAGE_SLOTS};
use crate::lifecycle::{self as lc, Lifecycle, Ticket};
use crate::mask::mask;
use crate::model::*;
use crate::ports::{Host, Level};
use crate::standing::{NEVER, Standing};
use std::collections::{BTreeMap, VecDeque};

const CRED_PREFIX: &str = "cred/";
const LEASE_PREFIX: &str = "lease/";
pub(super) const TICKET_PREFIX: &str = "ticket/";
/// A credential held out of rotation after its ticket timed out: only a
/// person lets it go (`reset-challenge`), a restart included.
const HOLD_PREFIX: &str = "hold/";
const REFRESH_PREFIX: &str = "refresh/";
/// Every site's acquire and outcome counts, in one record: keys are plain
/// on disk and site names are not (values are sealed).
const USAGE_KEY: &str = "usage";
/// A site whose pool ran dry and has not served since (`exhausted/<site>`,
/// the time it was raised): its pool-exhausted alert is raised once per
/// episode, across processes.
const EXHAUSTED_PREFIX: &str = "exhausted/";
const SCAN_PAGE: u32 = 1000;

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

/// A site's acquire and outcome counts as stored (in [`USAGE_KEY`], by
/// site), so `stats` and its availability count every process, as the
/// refresh counts do. Written by `flush` with the counter pages: a crash
/// loses at most the counts since the last flush.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredUsage {
    granted: u64,
    refused: u64,
    successes: u64,
    #[serde(default)]
    failures: BTreeMap<FailureClass, u64>,
}

pub(super) fn ticket_key(id: &str) -> String {
    format!("{TICKET_PREFIX}{id}")
}

pub(super) fn hold_key(credential_id: &str) -> String {
    format!("{HOLD_PREFIX}{credential_id}")
}

pub(super) fn exhausted_key(site: &str) -> String {
    format!("{EXHAUSTED_PREFIX}{site}")
}

pub(super) fn cred_key(id: &str) -> String {
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
pub(super) const FREE_PLACE: u32 = u32::MAX;

/// A counter page's entry, newer than the record, over the record.
fn merge_counters(c: &mut Credential, e: &counters::Entry) {
    let time = |t: Millis| (t != NEVER).then_some(t);
    c.consecutive_failures = e.consecutive_failures;
    c.health = e.health.min(100);
    c.block_streak = u32::from(e.block_streak);
    c.rate_limit_streak = u32::from(e.rate_limit_streak);
    if let Some(pace) = crate::pace::decode(e.pace) {
        c.pace_per_minute = pace.round() as u32;
    }
    c.use_count = e.use_count;
    c.success_count = e.success_count;
    c.fail_count = e.fail_count;
    c.last_used_at = time(e.last_used_at);
    c.cooldown_until = time(e.cooldown_until);
}

pub(super) fn write_cred<H: Host>(
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

impl<H: Host> Pool<H> {
    /// Loads every record of the tenant from the store.
    pub fn load(mut host: H, config: PolicyConfig) -> Result<Self, PoolError> {
        let creds = scan_all(&mut host, CRED_PREFIX)?;
        let lease_rows = scan_all(&mut host, LEASE_PREFIX)?;
        let ticket_rows = scan_all(&mut host, TICKET_PREFIX)?;
        let hold_rows = scan_all(&mut host, HOLD_PREFIX)?;
        let refresh_rows = scan_all(&mut host, REFRESH_PREFIX)?;
        let usage = host.get(USAGE_KEY)?;
        let exhausted_rows = scan_all(&mut host, EXHAUSTED_PREFIX)?;
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
            lapsed: FastMap::default(),
            lapsed_order: VecDeque::new(),
            next_lease: 1,
            prepared: Vec::new(),
            ctr_slots: Vec::new(),
            ctr_free: Vec::new(),
            dirty_pages: Vec::new(),
            page_dirty: Vec::new(),
            new_leases: Vec::new(),
            ended_leases: Vec::new(),
            rest_over: Vec::new(),
            past_expiry: Vec::new(),
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
                // Lapsed: kept for a late report within the window.
                (Some(_), Some(LeaseId { seq, nonce }))
                    if lease.expires_at.saturating_add(LATE_REPORT_WINDOW_MS) > now =>
                {
                    pool.next_lease = pool.next_lease.max(seq + 1);
                    let credential = lease.credential_id.clone().into_boxed_str();
                    pool.keep_lapsed(seq, nonce, credential, lease.expires_at, true);
                }
                // Past the window, orphaned, or from an older id format.
                _ => {
                    pool.host.delete(&key)?;
                }
            }
        }
        pool.lapsed_order.make_contiguous().sort_unstable();
        for (key, bytes) in refresh_rows {
            let stored: StoredRefreshCounts = serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))?;
            if let Some(si) = pool.site_index(&key[REFRESH_PREFIX.len()..]) {
                let c = &mut pool.sites[si as usize].counters;
                c.refresh_attempts = stored.attempts;
                c.refresh_succeeded = stored.succeeded;
                c.refresh_failed = stored.failed;
                c.refresh_by_method = stored.by_method;
                c.answer_times = stored.answer_times;
            }
        }
        let usage: BTreeMap<String, StoredUsage> = match usage {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("{USAGE_KEY}: {e}")))?,
            None => BTreeMap::new(),
        };
        for (site, stored) in usage {
            if let Some(si) = pool.site_index(&site) {
                let c = &mut pool.sites[si as usize].counters;
                c.granted = stored.granted;
                c.refused = stored.refused;
                c.successes = stored.successes;
                c.failures = stored.failures;
            }
        }
        for (key, bytes) in exhausted_rows {
            let since: Option<Millis> = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|t| t.parse().ok());
            let site = pool.site_index(&key[EXHAUSTED_PREFIX.len()..]);
            match (site, since) {
                // Still dry: the episode goes on (listed, not raised again).
                (Some(si), Some(since)) if pool.sites[si as usize].ready == 0 => {
                    let site = &mut pool.sites[si as usize];
                    site.exhausted = true;
                    site.flag(
                        AlertKind::PoolExhausted,
                        None,
                        since,
                        "no credential to hand out".to_string(),
                    );
                }
                _ => {
                    pool.host.delete(&key)?;
                }
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
        // Past their expiry while no process ran: `expired` before anyone
        // looks (list, stats and acquire tell one story).
        pool.expire_due(now)?;
        Ok(pool)
    }

    /// A free counter place and a fresh tag for a new credential. The
    /// caller puts the slot into `ctr_slots` (or returns the place).
    pub(super) fn new_place(&mut self) -> (u32, u32) {
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
    pub(super) fn touch(&mut self, slot: u32) {
        let (page, _) = counters::locate(self.rec(slot).ctr);
        if !self.page_dirty[page as usize] {
            self.page_dirty[page as usize] = true;
            self.dirty_pages.push(page);
        }
    }

    /// Writes the member's whole record with `m` as its changing fields.
    pub(super) fn write_record(
        &mut self,
        slot: u32,
        m: &Standing,
        durable: bool,
    ) -> Result<(), PoolError> {
        let snapshot = self.snapshot(slot, m);
        let rec = self.rec(slot);
        let (ctr, tag) = (rec.ctr, rec.ctr_tag);
        write_cred(&mut self.host, &snapshot, ctr, tag, durable)
    }

    /// Makes `m` the member's state: durable first when the status changes,
    /// then in memory, counts and indexes.
    pub(super) fn commit(&mut self, slot: u32, m: Standing, now: Millis) -> Result<(), PoolError> {
        self.commit_because(slot, m, now, None)
    }

    /// [`Self::commit`] of a reported result: a status change it causes
    /// is logged with the reason and the HTTP status (the card's
    /// `[CRED] ... reason=`).
    pub(super) fn commit_because(
        &mut self,
        slot: u32,
        m: Standing,
        now: Millis,
        cause: Option<Failure>,
    ) -> Result<(), PoolError> {
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
            let mut fields = vec![
                ("id", rec.id.to_string()),
                ("from", before.status.name().to_string()),
                ("to", m.status.name().to_string()),
                ("user", rec.username().map(mask).unwrap_or_default()),
            ];
            if let Some(f) = cause {
                fields.push(("reason", f.class.name().to_string()));
                fields.push((
                    "http_status",
                    f.http_status.map(|s| s.to_string()).unwrap_or_default(),
                ));
                fields.push((
                    "retry_after",
                    f.retry_after_secs
                        .map(|s| format!("{s}s"))
                        .unwrap_or_default(),
                ));
            }
            if m.cooldown_until != NEVER && m.cooldown_until > now {
                fields.push((
                    "cooldown",
                    format!("{}s", (m.cooldown_until - now + 999) / 1000),
                ));
            }
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
                    pace: crate::pace::encode(r.pace),
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
        if self.sites.iter().any(|s| s.counters.usage_dirty) {
            let all: BTreeMap<&str, StoredUsage> = self
                .sites
                .iter()
                .filter(|s| {
                    s.counters.granted + s.counters.refused > 0
                        || s.counters.successes > 0
                        || !s.counters.failures.is_empty()
                })
                .map(|s| {
                    let c = &s.counters;
                    let stored = StoredUsage {
                        granted: c.granted,
                        refused: c.refused,
                        successes: c.successes,
                        failures: c.failures.clone(),
                    };
                    (s.name.as_str(), stored)
                })
                .collect();
            let bytes = serde_json::to_vec(&all).expect("counts serialise");
            self.host.set(USAGE_KEY, &bytes, false)?;
            for s in &mut self.sites {
                s.counters.usage_dirty = false;
            }
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
}
