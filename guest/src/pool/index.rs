//! Whether a member is ready to hand out, its selection weight, and the
//! wake-ups that change that by themselves; each kept in its site's
//! indexes in O(log n).

use super::{Avail, Pool, Record};
use crate::config::{PolicyConfig, Strategy};
use crate::model::*;
use crate::ports::Host;
use crate::ratelimit::Rate;
use crate::standing::NEVER;
use std::cmp::Reverse;

/// Accounts and sessions are exclusive by default: sites ban shared logins.
pub(super) fn max_concurrent(r: &Record) -> u32 {
    if r.max_concurrent != 0 {
        return r.max_concurrent;
    }
    match r.kind {
        Kind::Account | Kind::Session => 1,
        Kind::Token | Kind::ApiKey | Kind::Device => u32::MAX,
    }
}

fn configured_rate(r: &Record, config: &PolicyConfig) -> Option<u32> {
    if r.rate_per_minute != 0 {
        Some(r.rate_per_minute)
    } else {
        config.rate_per_minute
    }
}

/// A member's own adaptive pace: the learned one, else where learning
/// starts (its configured rate, or a cautious default), within the bounds.
pub(super) fn own_pace(r: &Record, config: &PolicyConfig) -> f32 {
    let b = config.pace_bounds();
    if r.pace > 0.0 {
        return r.pace.clamp(b.min, b.max);
    }
    configured_rate(r, config)
        .map_or(crate::pace::DEFAULT_START, |n| n as f32)
        .clamp(b.min, b.max)
}

pub(super) fn rate_of(r: &Record, config: &PolicyConfig) -> Option<Rate> {
    let per_minute = if config.adaptive {
        own_pace(r, config).round().max(1.0) as u32
    } else {
        configured_rate(r, config)?
    };
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
pub(super) fn strategy_weight(strategy: Strategy, health: u8) -> u8 {
    match strategy {
        // Health 0 still gets a sliver of a chance, so a pool of burnt
        // credentials keeps serving rather than refusing.
        Strategy::HealthWeighted | Strategy::Sticky => health.max(1),
        Strategy::Random | Strategy::RoundRobin | Strategy::LeastRecentlyUsed => 1,
    }
}

impl<H: Host> Pool<H> {
    /// Recomputes whether a member is ready and updates its site's indexes;
    /// schedules a wake-up when it will change by itself. O(log n).
    pub(super) fn refresh(&mut self, slot: u32, now: Millis) {
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
            if avail == Avail::Refreshing && matches!(rec.m.status, Status::Init | Status::Active) {
                self.past_expiry.push(slot);
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
        match wake {
            Some(t) if rec.wake_at == NEVER || t < rec.wake_at => {
                rec.wake_at = t;
                site.wakes.push(Reverse((t, slot)));
            }
            // Banned or waiting on a refresh: nothing changes by itself, so
            // a pending wake-up (an old rest's end) is stale, and
            // `next_free_at` must not name it. (A leased one keeps its
            // wake-up: its expiry still counts while it is out.)
            None if matches!(avail, Avail::Banned | Avail::Refreshing) => rec.wake_at = NEVER,
            _ => {}
        }
    }

    /// Processes the site's wake-ups that are due. Amortised O(log n) each.
    pub(super) fn advance(&mut self, si: u32, now: Millis) {
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

    /// The earliest time something of the site frees up: a rest ends, a
    /// rate token comes, or a lease ends. Drops stale heap tops on the way.
    pub(super) fn next_free_at(&mut self, si: usize, now: Millis) -> Option<Millis> {
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

    /// The earliest time one of `slots` (members of one site) frees up by
    /// itself: its rest ends, its next rate token comes, or one of its
    /// leases ends. None when none will (all out of rotation until a
    /// refresh, an answer or a person). O(slots + open leases): a
    /// filtered refusal's walk, not the hot path.
    pub(super) fn next_free_among(&self, slots: &[u32], now: Millis) -> Option<Millis> {
        let mut sorted = slots.to_vec();
        sorted.sort_unstable();
        let waits = slots.iter().filter_map(|&s| {
            let r = self.rec(s);
            match r.avail {
                Avail::RateLimited | Avail::Cooling | Avail::Suspended => {
                    availability(r, now, &self.config).1
                }
                _ => None,
            }
        });
        let lease_ends = self
            .leases
            .values()
            .filter(|l| sorted.binary_search(&l.slot).is_ok())
            .map(|l| l.expires_at);
        waits.chain(lease_ends).min().map(|t| t.max(now))
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
            let mut by_avail = [0u32; super::AVAIL_COUNT];
            let mut by_status = [0u32; 7];
            let mut open = 0;
            for (pos, &slot) in site.members.iter().enumerate() {
                let r = self.rec(slot);
                assert_eq!(r.pos as usize, pos);
                by_avail[r.avail as usize] += 1;
                by_status[super::status_slot(r.m.status)] += 1;
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
