//! The pool's side of the lifecycle: the refresh worker attached, its
//! results and the host's TOTP answers handed to the policy, and challenge
//! tickets settled.

use super::Pool;
use crate::bindings::types::CredentialMeta;
use crate::error::{Error, Result};
use crate::lifecycle::{Refresher, RefresherOptions};
use std::sync::Arc;

impl Pool {
    /// Attaches the HTTP side of refreshes (once): from now on the policy's
    /// `refresh.start` queues real work, and [`Pool::tick`] hands finished
    /// results back to the policy.
    pub fn attach_refresher(&self, mut options: RefresherOptions) -> Result<Arc<Refresher>> {
        if let Some(r) = self.refresher.get() {
            return Ok(r.clone());
        }
        if options.clock.is_none() {
            options.clock = self.options.clock.clone();
        }
        let r = Refresher::new(self.vault.clone(), options)
            .map_err(|e| Error::Config(format!("cannot start the refresh worker: {e}")))?;
        let r = self.refresher.get_or_init(|| r).clone();
        // Handed to the live instance once here (and to a fresh one after a
        // trap), not checked on every call.
        {
            let mut guard = self.instance.lock().unwrap_or_else(|p| p.into_inner());
            guard.store.data_mut().refresher = Some(r.clone());
        }
        // Tickets opened before a restart: linked to their credentials (so
        // closing one deletes what its login kept), and the two-factor ones
        // the host holds a TOTP seed for answered, as if they had just opened.
        for ticket in self.tickets()? {
            r.ticket_opened(&ticket.id, &ticket.credential_id);
            r.auto_answer(&ticket);
        }
        Ok(r)
    }

    /// The attached refresher, if any.
    pub fn refresher(&self) -> Option<&Arc<Refresher>> {
        self.refresher.get()
    }

    /// Hands every finished refresh to the policy (`refresh-completed`),
    /// then answers the two-factor tickets the host can answer from a TOTP
    /// seed (queued when the policy opened them); returns how many results
    /// and answers. [`Pool::tick`] calls it first.
    pub fn deliver_refresh_results(&self) -> Result<u32> {
        let Some(r) = self.refresher.get() else {
            return Ok(0);
        };
        let mut n = 0;
        let mut first_error = None;
        for done in r.take_completed() {
            self.record("export.refresh-completed", &done);
            // One refused result does not hold back the others.
            match self.call(|p, s| p.credpool_policy_pool().call_refresh_completed(s, &done)) {
                Ok(_) => n += 1,
                Err(e) => {
                    tracing::error!(
                        target: "credpool::refresh",
                        "the policy refused the result of refresh {} for {}: {e}",
                        done.request_id,
                        done.credential_id
                    );
                    first_error.get_or_insert(e);
                }
            }
        }
        // Two-factor tickets the host answers from a TOTP seed, by the same
        // path as a person's answer.
        for (ticket, code) in r.take_totp_answers() {
            match self.answer_challenge(&ticket, code) {
                Ok(_) => {
                    tracing::info!(
                        target: "credpool::refresh",
                        "[CRED] challenge ticket={ticket} two-factor answered by the host from the TOTP seed"
                    );
                    n += 1;
                }
                Err(e) => {
                    tracing::error!(
                        target: "credpool::refresh",
                        "the TOTP answer to ticket {ticket} was refused: {e}"
                    );
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }

    /// Open challenge tickets, from the policy.
    pub fn tickets(&self) -> Result<Vec<crate::bindings::notify::Ticket>> {
        self.call(|p, s| p.credpool_policy_pool().call_tickets(s))
    }

    /// Settles a challenge ticket in the policy.
    pub fn resolve_challenge(
        &self,
        ticket_id: &str,
        resolution: crate::bindings::pool::ChallengeResolution,
    ) -> Result<crate::Status> {
        self.record("export.resolve-challenge", (ticket_id, resolution));
        self.call(|p, s| {
            p.credpool_policy_pool()
                .call_resolve_challenge(s, ticket_id, resolution)
        })
    }

    /// Answers a challenge ticket: the host holds the answer (a secret,
    /// never logged) for the resumed login, and the policy is told to
    /// resume it.
    pub fn answer_challenge(
        &self,
        ticket_id: &str,
        answer: zeroize::Zeroizing<String>,
    ) -> Result<crate::Status> {
        let r = self.refresher.get().ok_or_else(|| {
            Error::Config("no refresher attached: nothing can resume a login".into())
        })?;
        r.answer(ticket_id, answer).map_err(|reason| Error::Input {
            field: "answer".into(),
            reason,
        })?;
        self.resolve_challenge(
            ticket_id,
            crate::bindings::pool::ChallengeResolution::Answered,
        )
    }

    /// A person's decision for a credential left `challenged` after its
    /// ticket closed unanswered: back to `expired`, due for a fresh login.
    /// Refused on a site with no refresh or login configured (the error
    /// says to `unban` it once solved).
    pub fn reset_challenge(&self, id: &str) -> Result<CredentialMeta> {
        self.record("export.reset-challenge", id);
        self.call(|p, s| p.credpool_policy_pool().call_reset_challenge(s, id))
    }
}
