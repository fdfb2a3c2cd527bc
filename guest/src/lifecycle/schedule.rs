//! When each credential is next due and how; starting refreshes up to the
//! cap; failure backoff; refreshes the host lost.

use super::{
    Entry, InFlight, LcStatus, Lifecycle, MIN_REFRESH_GAP, RunMethod, SiteMethod, StartRefresh,
    StatusChange, TickPlan, TimedOut, Tracked, secs,
};
use crate::model::Millis;

impl Lifecycle {
    /// The site's configured refresh and whether it can log in again;
    /// neither when `auto_refresh` is off (nothing starts by itself).
    fn methods(&self, site: &str) -> (Option<RunMethod>, Option<RunMethod>) {
        let t = self.config.timing(site);
        let auto = self.config.auto_refresh;
        let relogin = (auto && t.can_relogin).then_some(RunMethod::Relogin);
        let refresh = match t.method {
            _ if !auto => None,
            SiteMethod::CookieVisit => Some(RunMethod::CookieVisit),
            SiteMethod::OauthRefresh => Some(RunMethod::OauthRefresh),
            SiteMethod::Relogin => relogin,
            SiteMethod::None => None,
        };
        (refresh, relogin)
    }

    /// What brings an expired credential of `site` back by itself (its
    /// refresh, else a fresh login); none when the site has neither
    /// configured, and only a person can.
    pub fn revival(&self, site: &str) -> Option<RunMethod> {
        let (refresh, relogin) = self.methods(site);
        refresh.or(relogin)
    }

    /// Whether the host can log in to `site` again (a recipe or command).
    pub fn can_relogin(&self, site: &str) -> bool {
        self.methods(site).1.is_some()
    }

    /// When and how `c` is next due, before failure backoff.
    pub fn due_of(
        &self,
        c: &Tracked,
        below: &mut dyn FnMut(u64) -> u64,
    ) -> Option<(Millis, RunMethod)> {
        let t = self.config.timing(&c.site);
        let (refresh, relogin) = self.methods(&c.site);
        match c.status {
            LcStatus::Init => relogin.map(|m| (c.logged_in_at, m)),
            // `track` makes an expired credential due at once.
            LcStatus::Expired => refresh.or(relogin).map(|m| (c.logged_in_at, m)),
            LcStatus::Active => {
                // One draw of the jitter, in 0..=jitter.
                let drawn = if t.jitter > 0 {
                    below(secs(t.jitter) as u64 + 1) as Millis
                } else {
                    0
                };
                // Skew and jitter are minutes, made for leads of an hour: a
                // short lead gets at most a quarter of it for each (the
                // jitter scaled down), or a session of seconds would be
                // refreshed again as soon as it was refreshed.
                let lead = |lead_ms: Millis| {
                    let cap = lead_ms / 4;
                    let skew = secs(t.clock_skew).min(cap);
                    let jitter = if secs(t.jitter) > cap {
                        (drawn as i128 * cap as i128 / secs(t.jitter) as i128) as Millis
                    } else {
                        drawn
                    };
                    skew + jitter
                };
                let mut best: Option<(Millis, RunMethod)> = None;
                let mut consider = |at: Millis, m: RunMethod| {
                    if best.is_none_or(|(b, _)| at < b) {
                        best = Some((at, m));
                    }
                };
                if let (Some(exp), Some(m)) = (c.expires_at, refresh) {
                    consider(
                        exp - secs(t.refresh_before_expire) - lead(secs(t.refresh_before_expire)),
                        m,
                    );
                }
                if t.max_age > 0
                    && let Some(m) = relogin
                {
                    consider(c.logged_in_at + secs(t.max_age) - lead(secs(t.max_age)), m);
                }
                if t.health_check_interval > 0 {
                    let from = c.checked_at.unwrap_or(c.logged_in_at);
                    consider(from + secs(t.health_check_interval), RunMethod::HealthCheck);
                }
                best
            }
            // A challenge met by a crawl (a captcha on a page) has no ticket:
            // a fresh login meets it again, where it becomes one.
            LcStatus::Challenged if !self.has_ticket(&c.id) && !self.held.contains(&c.id) => {
                relogin.map(|m| (c.logged_in_at, m))
            }
            LcStatus::Challenged | LcStatus::Resting | LcStatus::Banned => None,
        }
    }

    /// Records `c` and (re)computes when it is next due.
    pub fn track(&mut self, c: &Tracked, now: Millis, below: &mut dyn FnMut(u64) -> u64) {
        if c.status != LcStatus::Challenged {
            self.held.remove(&c.id);
        }
        let mut due = self.due_of(c, below);
        if let Some((at, _)) = &mut due
            && matches!(c.status, LcStatus::Expired | LcStatus::Challenged)
        {
            *at = now;
        }
        let (failures, fast_used, retry_at, last_refreshed) = match self.entries.get(&c.id) {
            Some(e) => {
                if let Some((at, _)) = e.due {
                    self.due.remove(&(at, c.id.clone()));
                }
                (e.failures, e.fast_used, e.retry_at, e.last_refreshed)
            }
            None => (0, 0, Millis::MIN, Millis::MIN),
        };
        let due = due.map(|(at, m)| {
            // Only the schedule of a live session waits: a credential
            // reported expired or challenged needs its login now.
            let gap = if m == RunMethod::HealthCheck || c.status != LcStatus::Active {
                Millis::MIN
            } else {
                last_refreshed.saturating_add(MIN_REFRESH_GAP)
            };
            (at.max(retry_at).max(gap), m)
        });
        if let Some((at, _)) = due {
            self.due.insert((at, c.id.clone()));
        }
        self.entries.insert(
            c.id.clone(),
            Entry {
                tracked: c.clone(),
                site: c.site.clone(),
                due,
                failures,
                fast_used,
                retry_at,
                last_refreshed,
            },
        );
    }

    /// Recomputes the due time of a tracked credential from what it was
    /// last told (after a failure or a lost refresh).
    fn reschedule(&mut self, id: &str, now: Millis, below: &mut dyn FnMut(u64) -> u64) {
        if let Some(c) = self.entries.get(id).map(|e| e.tracked.clone()) {
            self.track(&c, now, below);
        }
    }

    /// Forgets a credential; returns the ids of its tickets to close as
    /// `cancelled`.
    pub fn untrack(&mut self, id: &str) -> Vec<String> {
        self.held.remove(id);
        if let Some(e) = self.entries.remove(id)
            && let Some((at, _)) = e.due
        {
            self.due.remove(&(at, id.to_string()));
        }
        if let Some(f) = self.in_flight.remove(id) {
            self.in_flight_by_deadline
                .remove(&(f.deadline, id.to_string()));
        }
        let gone: Vec<String> = self
            .tickets
            .values()
            .filter(|t| t.credential_id == id)
            .map(|t| t.id.clone())
            .collect();
        for t in &gone {
            self.drop_ticket(t);
        }
        gone
    }

    pub(super) fn begin(
        &mut self,
        id: &str,
        site: &str,
        method: RunMethod,
        ticket_id: Option<String>,
        now: Millis,
    ) -> Option<StartRefresh> {
        if self.in_flight.contains_key(id) {
            return None; // single flight
        }
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        let deadline = now + secs(self.config.timing(site).refresh_timeout);
        self.in_flight.insert(
            id.to_string(),
            InFlight {
                request_id,
                method,
                deadline,
                ticket_id: ticket_id.clone(),
            },
        );
        self.in_flight_by_deadline
            .insert((deadline, id.to_string()));
        Some(StartRefresh {
            request_id,
            credential_id: id.to_string(),
            site: site.to_string(),
            method,
            ticket_id,
        })
    }

    pub(super) fn finish(&mut self, id: &str) -> Option<InFlight> {
        let f = self.in_flight.remove(id)?;
        self.in_flight_by_deadline
            .remove(&(f.deadline, id.to_string()));
        Some(f)
    }

    /// Counts a failure and pushes the next attempt back: exponential from
    /// `backoff_base`, capped, with full jitter above half the step. Returns
    /// whether `max_failures` was reached.
    pub(super) fn fail(
        &mut self,
        id: &str,
        now: Millis,
        below: &mut dyn FnMut(u64) -> u64,
    ) -> bool {
        self.fail_maybe_fast(id, now, false, below)
    }

    /// As [`Self::fail`]; with `fast` (an answer that may have been lost
    /// after the site committed a rotation) the first `fast_retries`
    /// attempts come after `fast_retry_base` seconds, doubling, within a
    /// quarter either side, and do not count towards `max_failures`; the
    /// usual backoff follows.
    pub(super) fn fail_maybe_fast(
        &mut self,
        id: &str,
        now: Millis,
        fast: bool,
        below: &mut dyn FnMut(u64) -> u64,
    ) -> bool {
        let Some(e) = self.entries.get_mut(id) else {
            return false;
        };
        let t = self.config.timing(&e.site);
        e.failures += 1;
        if fast && e.fast_used < t.fast_retries {
            e.fast_used += 1;
            let step = secs(t.fast_retry_base).saturating_mul(1 << (e.fast_used - 1).min(30));
            let quarter = step / 4;
            e.retry_at = now + step - quarter + below(2 * quarter as u64 + 1) as Millis;
        } else {
            let slow = e.failures - e.fast_used;
            let step = secs(t.backoff_base)
                .saturating_mul(1 << (slow - 1).min(30))
                .min(secs(t.backoff_cap));
            let half = step / 2;
            e.retry_at = now + half + below(half as u64 + 1) as Millis;
        }
        let reached = e.failures - e.fast_used >= t.max_failures;
        if let Some((at, m)) = e.due {
            self.due.remove(&(at, id.to_string()));
            let at = at.max(e.retry_at);
            e.due = Some((at, m));
            self.due.insert((at, id.to_string()));
        }
        reached
    }

    pub(super) fn succeed(&mut self, id: &str) {
        if let Some(e) = self.entries.get_mut(id) {
            e.failures = 0;
            e.fast_used = 0;
            e.retry_at = Millis::MIN;
        }
    }

    /// Refreshes to start now (at most `max_in_flight` running), tickets
    /// past their deadline, and refreshes the host never reported.
    pub fn tick(&mut self, now: Millis, below: &mut dyn FnMut(u64) -> u64) -> TickPlan {
        let mut plan = TickPlan::default();
        // Refreshes the host lost.
        while let Some((deadline, id)) = self.in_flight_by_deadline.first().cloned() {
            if deadline > now {
                break;
            }
            let method = self.finish(&id).map(|f| f.method);
            self.fail(&id, now, below);
            self.reschedule(&id, now, below);
            plan.abandoned
                .push((id, method.unwrap_or(RunMethod::CookieVisit)));
        }
        // Tickets past their deadline.
        while let Some((deadline, id)) = self.tickets_by_deadline.first().cloned() {
            if deadline > now {
                break;
            }
            if let Some(t) = self.drop_ticket(&id) {
                self.held.insert(t.credential_id.clone());
                plan.timed_out.push(TimedOut {
                    ticket: t,
                    status: StatusChange::Expired,
                });
            }
        }
        // Due refreshes, in due order, up to the cap.
        let cap = self.config.max_in_flight as usize;
        let mut skipped = Vec::new();
        while self.in_flight.len() < cap {
            let Some((at, id)) = self.due.first().cloned() else {
                break;
            };
            if at > now {
                break;
            }
            self.due.remove(&(at, id.clone()));
            if self.in_flight.contains_key(&id) {
                skipped.push((at, id));
                continue;
            }
            let Some(e) = self.entries.get_mut(&id) else {
                continue;
            };
            let Some((_, method)) = e.due.take() else {
                continue;
            };
            let site = e.site.clone();
            if let Some(s) = self.begin(&id, &site, method, None, now) {
                plan.start.push(s);
            }
        }
        // Busy ones wait for their refresh to finish (it re-tracks them).
        for (at, id) in skipped {
            self.due.insert((at, id));
        }
        let next = [
            self.due.first().map(|(t, _)| *t),
            self.tickets_by_deadline.first().map(|(t, _)| *t),
            self.in_flight_by_deadline.first().map(|(t, _)| *t),
        ];
        plan.next_due_at = next.into_iter().flatten().min();
        plan
    }

    /// The host could not queue `request_id` (`not-configured`, `busy`):
    /// free its slot and back off.
    pub fn start_failed(
        &mut self,
        credential_id: &str,
        request_id: u64,
        now: Millis,
        below: &mut dyn FnMut(u64) -> u64,
    ) {
        if self
            .in_flight
            .get(credential_id)
            .is_some_and(|f| f.request_id == request_id)
        {
            self.finish(credential_id);
            self.fail(credential_id, now, below);
            self.reschedule(credential_id, now, below);
        }
    }
}
