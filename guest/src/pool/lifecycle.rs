//! The pool's hooks into [`crate::lifecycle`]: what it is told of each
//! member, the refreshes it starts, their results, and challenge tickets.

use super::Pool;
use super::persist::{hold_key, ticket_key};
use crate::config::PolicyConfig;
use crate::lifecycle::{
    self as lc, Closure, Completed, LcStatus, LifecycleConfig, Resolution, StartRefresh,
    StatusChange, Ticket, Tracked,
};
use crate::machine::{self, Event};
use crate::mask::mask;
use crate::model::*;
use crate::packed;
use crate::ports::{Host, Level};
use crate::standing::NEVER;
use crate::words::kebab;
use std::collections::BTreeSet;

/// The lifecycle configuration in force: the configured one, or one that
/// schedules nothing when the policy JSON has no `lifecycle` key.
pub(super) fn lifecycle_config(config: &PolicyConfig) -> LifecycleConfig {
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

/// The lifecycle hooks: scheduling, refresh results and tickets.
impl<H: Host> Pool<H> {
    /// (Re)computes when a member is next due for a refresh. O(log n).
    pub(super) fn track(&mut self, slot: u32, now: Millis) {
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
        self.log_expiring(start, now);
        match self.host.start_refresh(start) {
            Ok(()) => {
                if let Some(si) = self.site_index(&start.site) {
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
                        ("method", kebab(start.method)),
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
    pub(super) fn lifecycle_tick(
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
                    "challenge ticket {} ({}) was not answered in time; the credential stays out of rotation",
                    t.ticket.id, kebab(t.ticket.kind)
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

    /// The card's `[CRED] 会话即将过期` (session about to expire): a
    /// refresh or login that starts inside its expiry's lead (the site's
    /// `refresh_before_expire` with its skew and jitter) says how long the
    /// session has left.
    fn log_expiring(&mut self, start: &StartRefresh, now: Millis) {
        if start.method == lc::RunMethod::HealthCheck || !self.host.enabled(Level::Info) {
            return;
        }
        let Some(&slot) = self.by_id.get(start.credential_id.as_str()) else {
            return;
        };
        let exp = self.rec(slot).expires_at;
        if exp == NEVER {
            return;
        }
        let t = self.lc.config().timing(&start.site);
        let secs = |s: u64| (s as Millis).saturating_mul(1000);
        let reach = secs(t.refresh_before_expire) + secs(t.clock_skew) + secs(t.jitter);
        if exp - now > reach {
            return;
        }
        self.log(
            Level::Info,
            "cred.expiring",
            &[
                ("id", start.credential_id.clone()),
                ("expires_in", format!("{}s", (exp - now).max(0) / 1000)),
                ("method", kebab(start.method)),
            ],
        );
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
        if let lc::RunOutcome::Refreshed(_) = done.outcome {
            // The card's `[CRED] 刷新结果: {success}, new_expires=`.
            let exp = self.rec(slot).expires_at;
            self.log(
                Level::Info,
                "refresh.result",
                &[
                    ("id", id.clone()),
                    ("method", method.map(kebab).unwrap_or_default()),
                    ("success", "true".into()),
                    (
                        "new_expires",
                        if exp == NEVER {
                            "none".into()
                        } else {
                            crate::words::rfc3339_ms(exp)
                        },
                    ),
                ],
            );
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
                    ("kind", kebab(ticket.kind)),
                ],
            );
        }
        if let Some(lc::AlertNeed::RefreshFailed) = d.alert {
            let why = match done.outcome {
                lc::RunOutcome::Failed(k) => kebab(k),
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
                ("resolution", kebab(resolution)),
            ],
        );
        Ok(self.rec(slot).m.status)
    }
}
