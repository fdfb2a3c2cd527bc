//! Which member an acquire gets (by the site's strategy and the request's
//! filters), prepared requests, and the answer when none can be had.

use super::index::rate_of;
use super::persist::exhausted_key;
use super::{AVAIL_COUNT, Avail, Pool, Record};
use crate::anomaly::Change;
use crate::config::Strategy;
use crate::machine::Event;
use crate::mask::mask;
use crate::model::*;
use crate::ports::{Host, Level};
use crate::standing::NEVER;
use crate::words::{edits_within, kebab, rfc3339_ms, site_key};

/// Random draws tried before a filtered pick falls back to a walk.
const FILTERED_DRAWS: usize = 16;

/// Prepared requests an instance keeps at most (a host prepares each
/// distinct request once; this bounds a host that does not).
pub const MAX_PREPARED: usize = 4096;

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

impl<H: Host> Pool<H> {
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
        let site = self.site_index(&req.site);
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
            let kind = req.kind.map(kebab).unwrap_or_default();
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
        self.pace_for_use(slot);
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
        site.counters.usage_dirty = true;
        if site.exhausted {
            site.exhausted = false;
            site.unflag(AlertKind::PoolExhausted, None);
            // The episode is over for every process sharing the store.
            let key = exhausted_key(&site.name);
            self.host.delete(&key)?;
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
        if req.prefer_fresh {
            return self.pick_freshest(si, req);
        }
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

    /// The card's `prefer_fresh`: the ready match last renewed (logged in
    /// or refreshed; else added), ties to the most time left before its
    /// expiry (none known counts as the most). A walk of the ready members:
    /// O(n), where the strategies' picks are O(log n).
    fn pick_freshest(&self, si: u32, req: &AcquireRequest) -> Option<u32> {
        let site = &self.sites[si as usize];
        site.members
            .iter()
            .copied()
            .filter(|&s| {
                let r = self.rec(s);
                r.avail == Avail::Ready && matches(r, req)
            })
            .max_by_key(|&s| {
                let r = self.rec(s);
                let renewed = r
                    .created_at
                    .max(r.logged_in_at)
                    .max(self.lc.last_refreshed(&r.id).unwrap_or(NEVER));
                let left = if r.expires_at == NEVER {
                    Millis::MAX
                } else {
                    r.expires_at
                };
                // Ties on both: the lower slot, so the pick is stable.
                (renewed, left, std::cmp::Reverse(s))
            })
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
        let site = self.site_index(&req.site);
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
            site = self.site_index(&req.site);
        }
        let resp = self.acquire_in(&req, site, now);
        self.prepared[request as usize] = (req, site);
        resp
    }

    /// Known sites (with credentials) whose name looks like `name`: a few
    /// edits apart, or one a subdomain of the other. At most three.
    fn similar_sites(&self, name: &str) -> Vec<String> {
        let key = site_key(name);
        let mut out: Vec<String> = self
            .sites
            .iter()
            .filter(|s| !s.members.is_empty())
            .filter(|s| {
                let known = s.name.as_str();
                edits_within(&key, known, 2)
                    || key.ends_with(&format!(".{known}"))
                    || known.ends_with(&format!(".{key}"))
            })
            .map(|s| s.name.clone())
            .collect();
        out.sort();
        out.truncate(3);
        out
    }

    /// The answer when nothing can be handed out: why (from the site's
    /// counts, or from a walk of the matches when the request filters), the
    /// earliest time something frees, and what to do.
    fn refuse(&mut self, si: Option<u32>, req: &AcquireRequest, now: Millis) -> AcquireResponse {
        let mut counts = [0u32; AVAIL_COUNT];
        let mut next_free_at = None;
        let mut ways_back = Vec::new();
        if let Some(si) = si {
            let site = &self.sites[si as usize];
            let filtered = req.kind.is_some() || !req.tags.is_empty() || site.purpose_bound > 0;
            if filtered {
                // The matches alone: when one of them frees, and how the
                // ones out of rotation get back.
                let mut matching = Vec::new();
                for &slot in &site.members {
                    let r = self.rec(slot);
                    if matches(r, req) {
                        counts[r.avail as usize] += 1;
                        matching.push(slot);
                    }
                }
                next_free_at = self.next_free_among(&matching, now);
                let ways = self.ways_of(matching.into_iter(), now);
                ways_back = ways.lines(&self.sites[si as usize].name);
            } else {
                counts = site.by_avail;
                next_free_at = self.next_free_at(si as usize, now);
                let ways = self.site_ways(si as usize);
                ways_back = ways.lines(&self.sites[si as usize].name);
            }
            let c = &mut self.sites[si as usize].counters;
            c.refused += 1;
            c.usage_dirty = true;
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
        // Nothing matches: nothing will free for this request by itself.
        if matching == 0 {
            next_free_at = None;
        }
        let unknown = si.is_none_or(|si| self.sites[si as usize].members.is_empty());
        let reason = match reasons.len() {
            0 if unknown => UnavailableReason::UnknownSite,
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
        // The counts; the time something frees is `next_free_at` itself.
        let warnings: Vec<String> = (1..AVAIL_COUNT)
            .filter(|&a| counts[a] > 0)
            .map(|a| format!("{} {}", counts[a], label[a]))
            .collect();
        let mut alternatives = Vec::new();
        match reason {
            UnavailableReason::UnknownSite => {
                let similar = self.similar_sites(&req.site);
                if !similar.is_empty() {
                    alternatives.push(format!("did you mean {}?", similar.join(" or ")));
                }
                alternatives.push(format!(
                    "add credentials for {} (credpool add --site {})",
                    req.site, req.site
                ));
            }
            UnavailableReason::NoneMatch => {
                if req.kind.is_some() || !req.tags.is_empty() {
                    alternatives.push("drop the kind or tag filter".to_string());
                }
                alternatives.push(format!(
                    "add credentials for {} (credpool add --site {})",
                    req.site, req.site
                ));
            }
            UnavailableReason::AllBanned => {
                alternatives.extend(ways_back.iter().cloned());
                alternatives.push("add fresh accounts".to_string());
            }
            _ => {
                if let Some(t) = next_free_at {
                    alternatives.push(format!("retry after {}", rfc3339_ms(t)));
                }
                // What brings back the ones out of rotation, or who must.
                alternatives.extend(ways_back.iter().cloned());
                if counts[Avail::Leased as usize] > 0 {
                    alternatives.push("release leases you no longer use".to_string());
                }
                alternatives.push(format!("add more credentials for {}", req.site));
            }
        }
        let fields = [
            ("site", req.site.clone()),
            ("total", matching.to_string()),
            ("reason", kebab(reason)),
            ("leased", counts[1].to_string()),
            ("cooling", (counts[3] + counts[4]).to_string()),
            ("banned", counts[6].to_string()),
        ];
        // Every refusal is a line at info; the episode's alert below is the
        // warning, once.
        self.log(Level::Info, "cred.no_available", &fields);
        if let Some(si) = si {
            let site = &mut self.sites[si as usize];
            if !site.exhausted && matching > 0 && site.ready == 0 {
                site.exhausted = true;
                // Kept in the store: the next process (a CLI call, a
                // restarted server) is in the same episode and stays quiet.
                let key = exhausted_key(&site.name);
                if let Err(e) = self.host.set(&key, now.to_string().as_bytes(), false) {
                    let why = format!("{e:?}");
                    self.log(
                        Level::Warn,
                        "cred.store_failed",
                        &[("key", key), ("error", why)],
                    );
                }
                let mut detail = format!("no credential to hand out: {}", warnings.join(", "));
                if let Some(t) = next_free_at {
                    detail.push_str(&format!("; the next frees at {}", rfc3339_ms(t)));
                }
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
}
