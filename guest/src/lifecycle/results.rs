//! What a finished refresh or a settled ticket does to a credential, and
//! the open tickets.

use super::{
    AlertNeed, Closure, Completed, Decision, FailureKind, LcStatus, Lifecycle, Resolution,
    ResolveDecision, RunMethod, RunOutcome, StatusChange, Ticket, secs,
};
use crate::model::Millis;

impl Lifecycle {
    pub(super) fn drop_ticket(&mut self, id: &str) -> Option<Ticket> {
        let t = self.tickets.remove(id)?;
        self.tickets_by_deadline.remove(&(t.deadline, t.id.clone()));
        Some(t)
    }

    /// Decides what a finished refresh does. A result for a request that is
    /// not the credential's running one is stale and changes nothing.
    pub fn on_completed(
        &mut self,
        done: &Completed,
        now: Millis,
        below: &mut dyn FnMut(u64) -> u64,
    ) -> Decision {
        let id = done.credential_id.as_str();
        match self.in_flight.get(id) {
            Some(f) if f.request_id == done.request_id => {}
            _ => return Decision::default(),
        }
        let f = self.finish(id).expect("checked above");
        if let Some(t) = &f.ticket_id {
            self.drop_ticket(t);
        }
        let site = self
            .entries
            .get(id)
            .map(|e| e.site.clone())
            .unwrap_or_default();
        let timing = self.config.timing(&site).clone();
        let mut d = Decision::default();
        match done.outcome {
            RunOutcome::Refreshed(expiry) => {
                self.succeed(id);
                if let Some(e) = self.entries.get_mut(id) {
                    e.last_refreshed = now;
                }
                d.status = Some(StatusChange::Active);
                if expiry.is_some() {
                    d.expires_at = Some(expiry);
                }
                if f.method == RunMethod::Relogin {
                    d.logged_in_at = Some(now);
                }
            }
            RunOutcome::StillValid => {
                self.succeed(id);
                d.checked_at = Some(now);
            }
            RunOutcome::Challenged(kind) => {
                let ticket = Ticket {
                    id: format!("tk-{}-{:08x}", f.request_id, below(1 << 32)),
                    kind,
                    credential_id: id.to_string(),
                    site: site.clone(),
                    created_at: now,
                    deadline: now + secs(timing.ticket_timeout_for(kind)),
                };
                self.tickets_by_deadline
                    .insert((ticket.deadline, ticket.id.clone()));
                self.tickets.insert(ticket.id.clone(), ticket.clone());
                d.status = Some(StatusChange::Challenged);
                d.open_ticket = Some(ticket);
            }
            RunOutcome::Failed(kind) => match kind {
                FailureKind::InvalidGrant | FailureKind::LoggedOut
                    if timing.can_relogin && f.method != RunMethod::Relogin =>
                {
                    d.status = Some(StatusChange::Expired);
                    d.follow_up = self.begin(id, &site, RunMethod::Relogin, None, now);
                }
                FailureKind::InvalidGrant | FailureKind::LoggedOut => {
                    d.status = Some(StatusChange::Expired);
                    d.alert = Some(AlertNeed::RefreshFailed);
                    self.fail(id, now, below);
                }
                FailureKind::Rejected | FailureKind::Blocked => {
                    d.status = Some(StatusChange::Suspended);
                    d.alert = Some(AlertNeed::RefreshFailed);
                }
                FailureKind::ChallengeTimedOut | FailureKind::Misconfigured => {
                    d.status = Some(StatusChange::Expired);
                    d.alert = Some(AlertNeed::RefreshFailed);
                    self.fail(id, now, below);
                }
                FailureKind::Network
                | FailureKind::Timeout
                | FailureKind::ServerError
                | FailureKind::RateLimited
                | FailureKind::Other => {
                    // A visit or grant that rotates a secret, answer lost:
                    // only a prompt retry with the same secret saves it.
                    let fast = kind.answer_may_be_lost()
                        && matches!(f.method, RunMethod::CookieVisit | RunMethod::OauthRefresh);
                    if self.fail_maybe_fast(id, now, fast, below) {
                        d.status = Some(StatusChange::Expired);
                        d.alert = Some(AlertNeed::RefreshFailed);
                    }
                }
            },
        }
        self.apply(id, &d, now, below);
        d
    }

    /// Applies a decision to the credential as last tracked and
    /// reschedules it, so the pool's own `track` afterwards agrees.
    fn apply(&mut self, id: &str, d: &Decision, now: Millis, below: &mut dyn FnMut(u64) -> u64) {
        let Some(mut c) = self.entries.get(id).map(|e| e.tracked.clone()) else {
            return;
        };
        if let Some(s) = d.status {
            c.status = match s {
                StatusChange::Active => LcStatus::Active,
                StatusChange::Expired => LcStatus::Expired,
                StatusChange::Challenged => LcStatus::Challenged,
                StatusChange::Suspended => LcStatus::Resting,
            };
        }
        if let Some(e) = d.expires_at {
            c.expires_at = e;
        }
        if let Some(t) = d.logged_in_at {
            c.logged_in_at = t;
        }
        if let Some(t) = d.checked_at {
            c.checked_at = Some(t);
        }
        self.track(&c, now, below);
    }

    /// Settles a ticket; `None` when no open ticket has this id.
    pub fn resolve(
        &mut self,
        ticket_id: &str,
        resolution: Resolution,
        now: Millis,
    ) -> Option<ResolveDecision> {
        let t = self.tickets.get(ticket_id)?.clone();
        Some(match resolution {
            Resolution::Answered => {
                // The ticket stays open (and keeps its deadline) until the
                // resumed login reports.
                let start = self.begin(
                    &t.credential_id,
                    &t.site,
                    RunMethod::Relogin,
                    Some(t.id.clone()),
                    now,
                );
                ResolveDecision {
                    status: None,
                    closure: None,
                    start,
                }
            }
            Resolution::SolvedElsewhere => {
                self.drop_ticket(ticket_id);
                self.succeed(&t.credential_id);
                let d = Decision {
                    status: Some(StatusChange::Active),
                    logged_in_at: Some(now),
                    ..Decision::default()
                };
                self.apply(&t.credential_id, &d, now, &mut |_| 0);
                ResolveDecision {
                    status: Some(StatusChange::Active),
                    closure: Some(Closure::Answered),
                    start: None,
                }
            }
            Resolution::Abandoned => {
                self.drop_ticket(ticket_id);
                let d = Decision {
                    status: Some(StatusChange::Suspended),
                    ..Decision::default()
                };
                self.apply(&t.credential_id, &d, now, &mut |_| 0);
                ResolveDecision {
                    status: Some(StatusChange::Suspended),
                    closure: Some(Closure::Cancelled),
                    start: None,
                }
            }
        })
    }

    /// Open tickets, oldest first.
    pub fn open_tickets(&self) -> Vec<Ticket> {
        let mut out: Vec<Ticket> = self.tickets.values().cloned().collect();
        out.sort_by_key(|t| (t.created_at, t.id.clone()));
        out
    }

    /// Puts back a ticket loaded from the store (after a restart).
    pub fn restore_ticket(&mut self, t: Ticket) {
        // Its credential waits on this ticket, not on the login `track`
        // scheduled while loading, before the ticket was back.
        self.unschedule_challenged(&t.credential_id);
        self.tickets_by_deadline.insert((t.deadline, t.id.clone()));
        self.tickets.insert(t.id.clone(), t);
    }

    /// Holds `id` out of the schedule after its ticket timed out, until a
    /// person lets it go (`track` with another status); the pool calls it
    /// again for the holds it stored, after a restart.
    pub fn hold(&mut self, id: &str) {
        self.unschedule_challenged(id);
        self.held.insert(id.to_string());
    }

    /// Drops the due entry of a challenged credential (what it waits on
    /// came back from the store after `track` scheduled it).
    fn unschedule_challenged(&mut self, id: &str) {
        if let Some(e) = self.entries.get_mut(id)
            && e.tracked.status == LcStatus::Challenged
            && let Some((at, _)) = e.due.take()
        {
            self.due.remove(&(at, id.to_string()));
        }
    }
}
