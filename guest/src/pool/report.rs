//! Reports and commands applied to a member: made durable, counted, and
//! watched for anomalies. What they do to the credential itself is
//! [`crate::standing`].

use super::Pool;
use crate::anomaly::{self, Change};
use crate::machine::Event;
use crate::model::*;
use crate::ports::{Host, Level};
use crate::standing::{self, NEVER, Standing};

/// Health above the low-health threshold that clears the flag.
const LOW_HEALTH_MARGIN: u8 = 10;

/// The slot part of a site-wide alert's key in `notified`.
const NO_SLOT: u32 = u32::MAX;
/// Entries of `notified` kept before the old ones are pruned.
const NOTIFIED_KEPT: usize = 4096;

fn effect(m: &Standing) -> ReportEffect {
    ReportEffect {
        status: m.status,
        health: m.health,
        cooldown_until: (m.cooldown_until != NEVER).then_some(m.cooldown_until),
        late: false,
    }
}

impl<H: Host> Pool<H> {
    /// Reports how a use went and ends its lease. A lease that lapsed
    /// within the late-report window is absorbed: the result still applies
    /// to its credential (`late` in the effect).
    pub fn report(&mut self, lease: LeaseId, outcome: Outcome) -> Result<ReportEffect, PoolError> {
        let now = self.host.now();
        self.report_at(lease, outcome, now)
    }

    pub(super) fn report_at(
        &mut self,
        lease: LeaseId,
        outcome: Outcome,
        now: Millis,
    ) -> Result<ReportEffect, PoolError> {
        let seq = match self.find_lease(lease) {
            Ok(seq) => seq,
            Err(e) => {
                let slot = self.take_lapsed(lease).ok_or(e)?;
                let mut effect = self.apply_outcome(slot, outcome, now)?;
                effect.late = true;
                let id = self.rec(slot).id.to_string();
                self.log(
                    Level::Info,
                    "lease.late_report",
                    &[("lease", lease.to_string()), ("id", id)],
                );
                return Ok(effect);
            }
        };
        let slot = self.leases[&seq].slot;
        let effect = self.apply_outcome(slot, outcome, now)?;
        self.end_lease(seq, now);
        Ok(effect)
    }

    /// Applies one result to a member: its standing as
    /// [`standing::on_outcome`] decides, then counters and anomalies. A
    /// status change is durable before anything changes.
    pub(super) fn apply_outcome(
        &mut self,
        slot: u32,
        outcome: Outcome,
        now: Millis,
    ) -> Result<ReportEffect, PoolError> {
        let before = self.rec(slot).m;
        let host = &mut self.host;
        let (m, _) = standing::on_outcome(before, outcome, &self.config, now, || host.next_u64());
        let resting = before.cooldown_until != NEVER && before.cooldown_until > now;
        let pace_before = self.adapt_member_pace(slot, outcome, resting, now);
        let cause = match outcome {
            Outcome::Failure(f) => Some(f),
            Outcome::Success => None,
        };
        self.commit_because(slot, m, now, cause)?;

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
        site.counters.usage_dirty = true;
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
        let ceiling = self.adapt_site_pace(si, burst, pace_before);
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
            let done = match ceiling {
                Some(c) => format!("; the pool cut the site's pace to {c:.0}/min per credential"),
                None => String::new(),
            };
            format!(
                "{blocks_seen} blocks within the window: the site's defences may have changed{done}"
            )
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
    pub(super) fn anomaly(
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
                // The alert itself is the warning; this line is its trace.
                self.log(
                    Level::Info,
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

    /// Applies a command (unban, refresh, challenge answered, rest over);
    /// an event the state machine refuses is a typed error.
    pub(super) fn apply_command(
        &mut self,
        slot: u32,
        event: Event,
        now: Millis,
    ) -> Result<(), PoolError> {
        let before = self.rec(slot).m;
        let m = standing::on_command(before, event).map_err(|e| PoolError::IllegalTransition {
            from: e.from,
            event: e.event.name().to_string(),
        })?;
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

    /// A person's decision: lifts a ban, ends a rest (cooling, suspended)
    /// early, or puts back an expired or challenged credential they renewed
    /// or solved elsewhere (its expiry, if past, is forgotten: it would
    /// expire it again). Refused while a challenge ticket of it is open:
    /// that is answered or abandoned.
    pub fn unban(&mut self, id: &str) -> Result<Credential, PoolError> {
        let slot = self.slot_of(id)?;
        let status = self.rec(slot).m.status;
        if status == Status::Challenged
            && let Some(t) = self
                .lc
                .open_tickets()
                .into_iter()
                .find(|t| t.credential_id == id)
        {
            return Err(PoolError::invalid(
                "id",
                format!(
                    "{id} waits on challenge ticket {}: answer it (`credpool challenge answer {}`)",
                    t.id, t.id
                ),
            ));
        }
        let now = self.host.now();
        if matches!(status, Status::Expired | Status::Challenged) {
            let r = self.rec_mut(slot);
            if r.expires_at != NEVER && r.expires_at <= now {
                r.expires_at = NEVER;
            }
        }
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
        let site = &self.sites[self.rec(slot).site as usize].name;
        if self.lc.revival(site).is_none() {
            // Expired, it would wait for a login no one runs.
            return Err(PoolError::invalid(
                "id",
                format!(
                    "{site} has no refresh or login configured, so a reset would leave {id} \
                     expired: solve the challenge on the site, then `credpool unban {id}`"
                ),
            ));
        }
        let mut m = before;
        m.status = Status::Expired;
        m.cooldown_until = NEVER;
        // `commit` writes it, re-indexes it and schedules its login.
        self.commit(slot, m, now)?;
        self.log(Level::Info, "challenge.reset", &[("id", id.to_string())]);
        Ok(self.snapshot(slot, &self.rec(slot).m))
    }
}
