//! Session lifecycle decisions: when a credential is refreshed, how, and
//! what a refresh result or a challenge answer does to it. Pure logic over
//! small inputs (no store, no clock, no WIT types): the caller passes the
//! time and a random source, and carries out what comes back.
//!
//! # Hook points (how `Pool<H: Host>` drives it)
//! The pool owns one [`Lifecycle`] built from [`LifecycleConfig`] (the
//! `lifecycle` key of the policy JSON; the host fills it from the
//! `[sites]` tables of `credpool.toml`).
//! - **Whenever a credential is added, loaded, or its status / expiry /
//!   login time changes**: `lc.track(&Tracked { .. }, now, &mut below)`.
//!   It (re)computes the one due time of that credential in an ordered
//!   index, so `tick` never scans the pool. **On remove**:
//!   `lc.untrack(id)`, then close each returned ticket id as `cancelled`.
//! - **On `tick`**: `let plan = lc.tick(now, &mut below);` then for each
//!   `plan.start` call the `refresh.start` import; if it returns an error,
//!   call `lc.start_failed(request_id, now, &mut below)`. For each
//!   `plan.timed_out` call `notify.close-ticket(id, timed-out)`, raise a
//!   `ticket-timed-out` alert and apply `status` (expired). Count them in
//!   the tick summary; fold `plan.next_due_at` into its `next-due-at`.
//! - **On `refresh-completed`**: `let d = lc.on_completed(&done, now,
//!   &mut below);` apply `d.status` / `d.expires_at` / `d.logged_in_at`
//!   to the record (then `track` it again), announce `d.open_ticket` with
//!   `notify.open-ticket`, raise `d.alert`, start `d.follow_up` like a
//!   `plan.start` entry. `Decision::default()` (stale request) means
//!   nothing to do.
//! - **On `resolve-challenge`**: `lc.resolve(ticket_id, resolution, now)`
//!   gives the status to set, the ticket closure to announce, and for
//!   `answered` the relogin (carrying the ticket id) to start.
//! - **On `tickets`**: `lc.open_tickets()`.
//!
//! `below` is any `FnMut(u64) -> u64` giving a uniform value in `0..n`
//! (e.g. `|n| host.below(n)` with the pool's `Random` port).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// How a site's sessions are kept alive (its configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SiteMethod {
    CookieVisit,
    OauthRefresh,
    Relogin,
    None,
}

/// What to run now (the WIT `refresh-method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunMethod {
    CookieVisit,
    OauthRefresh,
    Relogin,
    HealthCheck,
}

/// The statuses the lifecycle reads and asks for (a subset of the pool's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LcStatus {
    /// Before the first login.
    Init,
    Active,
    Expired,
    Challenged,
    /// Cooling, suspended: resting; nothing is scheduled.
    Resting,
    Banned,
}

/// The status change the lifecycle asks the pool's state machine for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusChange {
    Active,
    Expired,
    Challenged,
    /// Out of rotation until a person acts (an abandoned challenge, a
    /// refused login).
    Suspended,
}

/// A login challenge kind (the WIT `challenge-kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChallengeKind {
    CaptchaImage,
    CaptchaSlider,
    CaptchaClick,
    SmsCode,
    EmailCode,
    TwoFactor,
    DeviceVerify,
    SecurityQuestion,
}

/// Why a refresh failed (the WIT `refresh-failure`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    Network,
    Timeout,
    LoggedOut,
    InvalidGrant,
    Rejected,
    Blocked,
    RateLimited,
    Misconfigured,
    ChallengeTimedOut,
    Other,
}

/// How a refresh ended (the WIT `refresh-outcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    Refreshed(Option<Millis>),
    StillValid,
    Challenged(ChallengeKind),
    Failed(FailureKind),
}

/// A finished refresh as the host reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completed {
    pub request_id: u64,
    pub credential_id: String,
    pub outcome: RunOutcome,
}

/// How a ticket was settled (the WIT `challenge-resolution`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    Answered,
    SolvedElsewhere,
    Abandoned,
}

/// Why a ticket closed (the WIT `ticket-closure`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closure {
    Answered,
    TimedOut,
    Cancelled,
}

/// Per-site timing, in seconds, as the policy JSON carries it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SiteTiming {
    pub method: SiteMethod,
    /// Start a refresh this long before the credential expires.
    pub refresh_before_expire: u64,
    /// Log in again this long after the last login, whatever the expiry.
    pub max_age: u64,
    /// Clocks disagree: treat expiries as this much earlier.
    pub clock_skew: u64,
    /// Spread refreshes by up to this much, earlier, so a batch added
    /// together does not refresh together.
    pub jitter: u64,
    /// Ask the check URL this often (0: never).
    pub health_check_interval: u64,
    /// Whether the site can log in again (a recipe or a command).
    pub can_relogin: bool,
    /// First retry after a failed refresh; doubles per failure.
    pub backoff_base: u64,
    /// The longest wait between retries.
    pub backoff_cap: u64,
    /// After this many failures in a row the credential is expired and a
    /// person is alerted.
    pub max_failures: u32,
    /// How long a challenge ticket waits for an answer.
    pub ticket_timeout: u64,
    /// A refresh the host has not reported after this long is given up.
    pub refresh_timeout: u64,
}

impl Default for SiteTiming {
    /// The card's default: relogin 30 min before expiry, 1-day max age.
    fn default() -> Self {
        SiteTiming {
            method: SiteMethod::Relogin,
            refresh_before_expire: 1800,
            max_age: 86_400,
            clock_skew: 60,
            jitter: 300,
            health_check_interval: 3600,
            can_relogin: true,
            backoff_base: 30,
            backoff_cap: 3600,
            max_failures: 5,
            ticket_timeout: 3600,
            refresh_timeout: 300,
        }
    }
}

/// The `lifecycle` part of the policy configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// Refreshes running at once, over all sites.
    pub max_in_flight: u32,
    /// Timing for sites not listed.
    pub default: SiteTiming,
    pub sites: BTreeMap<String, SiteTiming>,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            max_in_flight: 16,
            default: SiteTiming::default(),
            sites: BTreeMap::new(),
        }
    }
}

impl LifecycleConfig {
    /// Parses the `lifecycle` JSON value; errors name the key.
    pub fn from_json(json: &str) -> Result<Self, (String, String)> {
        let c: LifecycleConfig = serde_json::from_str(json).map_err(|e| {
            let msg = e.to_string();
            let field = msg.split('`').nth(1).unwrap_or("lifecycle").to_string();
            (field, msg)
        })?;
        if c.max_in_flight == 0 {
            return Err(("max_in_flight".into(), "must be at least 1".into()));
        }
        for (site, t) in std::iter::once(("default", &c.default))
            .chain(c.sites.iter().map(|(s, t)| (s.as_str(), t)))
        {
            if t.backoff_base == 0 || t.backoff_cap < t.backoff_base {
                return Err((
                    format!("{site}.backoff_base"),
                    "backoff_base must be at least 1 and at most backoff_cap".into(),
                ));
            }
            if t.ticket_timeout == 0 || t.refresh_timeout == 0 {
                return Err((
                    format!("{site}.ticket_timeout"),
                    "ticket_timeout and refresh_timeout must be at least 1".into(),
                ));
            }
        }
        Ok(c)
    }

    pub fn timing(&self, site: &str) -> &SiteTiming {
        self.sites.get(site).unwrap_or(&self.default)
    }
}

/// What the lifecycle needs to know of one credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracked {
    pub id: String,
    pub site: String,
    pub status: LcStatus,
    pub expires_at: Option<Millis>,
    /// The last login (or the creation time when never logged in here).
    pub logged_in_at: Millis,
    /// The last health check, if any.
    pub checked_at: Option<Millis>,
}

/// A refresh to start through the `refresh.start` import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartRefresh {
    pub request_id: u64,
    pub credential_id: String,
    pub site: String,
    pub method: RunMethod,
    pub ticket_id: Option<String>,
}

/// A challenge ticket the policy keeps open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub id: String,
    pub kind: ChallengeKind,
    pub credential_id: String,
    pub site: String,
    pub created_at: Millis,
    pub deadline: Millis,
}

/// A ticket that passed its deadline: close it `timed-out`, alert, and
/// set the credential `expired`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimedOut {
    pub ticket: Ticket,
    pub status: StatusChange,
}

/// What a tick asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickPlan {
    pub start: Vec<StartRefresh>,
    pub timed_out: Vec<TimedOut>,
    /// Refreshes the host never reported, given up (already backed off),
    /// with the method each ran.
    pub abandoned: Vec<(String, RunMethod)>,
    pub next_due_at: Option<Millis>,
}

/// An alert the lifecycle wants raised (the pool fills in the message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertNeed {
    /// A refresh failed in a way that needs a person.
    RefreshFailed,
}

/// What a finished refresh does to the credential.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub status: Option<StatusChange>,
    /// `Some(new)` replaces the expiry.
    pub expires_at: Option<Option<Millis>>,
    /// Set when a login succeeded.
    pub logged_in_at: Option<Millis>,
    /// Set when a health check ran.
    pub checked_at: Option<Millis>,
    pub open_ticket: Option<Ticket>,
    pub alert: Option<AlertNeed>,
    pub follow_up: Option<StartRefresh>,
}

/// What settling a ticket does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolveDecision {
    pub status: Option<StatusChange>,
    /// Announce with `notify.close-ticket`; `None` while the resumed login
    /// runs (the ticket closes when its result arrives).
    pub closure: Option<Closure>,
    pub start: Option<StartRefresh>,
}

#[derive(Clone, Debug)]
struct InFlight {
    request_id: u64,
    method: RunMethod,
    deadline: Millis,
    ticket_id: Option<String>,
}

#[derive(Clone, Debug)]
struct Entry {
    tracked: Tracked,
    site: String,
    due: Option<(Millis, RunMethod)>,
    failures: u32,
    retry_at: Millis,
    /// When its last refresh or login succeeded (see [`MIN_REFRESH_GAP`]).
    last_refreshed: Millis,
}

/// The least time from a successful refresh or login of a live (active)
/// credential to its next scheduled one (health checks aside; failures
/// have their own backoff; an expired or challenged one is not held).
/// Short (5 s) because real sessions can be short-lived; it bounds a bad
/// site to one refresh per 5 s instead of one per tick, and the host also
/// clamps token lifetimes to at least 60 s: a site
/// answering with lifetimes of seconds (an `expires_in` of 0) would
/// otherwise have it refreshed on every tick, rotating its refresh token
/// each time.
pub const MIN_REFRESH_GAP: Millis = 5_000;

/// The lifecycle state of a pool: due index, in-flight refreshes, failure
/// counts and open tickets.
#[derive(Debug)]
pub struct Lifecycle {
    config: LifecycleConfig,
    entries: BTreeMap<String, Entry>,
    due: BTreeSet<(Millis, String)>,
    in_flight: BTreeMap<String, InFlight>,
    in_flight_by_deadline: BTreeSet<(Millis, String)>,
    /// Challenged credentials whose ticket timed out: they wait for a
    /// person (`reset-challenge`), not for another login.
    held: BTreeSet<String>,
    tickets: BTreeMap<String, Ticket>,
    tickets_by_deadline: BTreeSet<(Millis, String)>,
    next_request_id: u64,
}

fn secs(s: u64) -> Millis {
    (s as Millis).saturating_mul(1000)
}

impl Lifecycle {
    pub fn new(config: LifecycleConfig) -> Self {
        Lifecycle {
            config,
            entries: BTreeMap::new(),
            due: BTreeSet::new(),
            in_flight: BTreeMap::new(),
            in_flight_by_deadline: BTreeSet::new(),
            held: BTreeSet::new(),
            tickets: BTreeMap::new(),
            tickets_by_deadline: BTreeSet::new(),
            next_request_id: 1,
        }
    }

    pub fn config(&self) -> &LifecycleConfig {
        &self.config
    }

    /// Whether a ticket of credential `id` waits for an answer (few are
    /// open at a time, so a look over them is cheap).
    pub fn has_ticket(&self, id: &str) -> bool {
        self.tickets.values().any(|t| t.credential_id == id)
    }

    /// When and how `c` is next due, before failure backoff.
    pub fn due_of(
        &self,
        c: &Tracked,
        below: &mut dyn FnMut(u64) -> u64,
    ) -> Option<(Millis, RunMethod)> {
        let t = self.config.timing(&c.site);
        let relogin = t.can_relogin.then_some(RunMethod::Relogin);
        let refresh = match t.method {
            SiteMethod::CookieVisit => Some(RunMethod::CookieVisit),
            SiteMethod::OauthRefresh => Some(RunMethod::OauthRefresh),
            SiteMethod::Relogin => relogin,
            SiteMethod::None => None,
        };
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
        let (failures, retry_at, last_refreshed) = match self.entries.get(&c.id) {
            Some(e) => {
                if let Some((at, _)) = e.due {
                    self.due.remove(&(at, c.id.clone()));
                }
                (e.failures, e.retry_at, e.last_refreshed)
            }
            None => (0, Millis::MIN, Millis::MIN),
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

    fn drop_ticket(&mut self, id: &str) -> Option<Ticket> {
        let t = self.tickets.remove(id)?;
        self.tickets_by_deadline.remove(&(t.deadline, t.id.clone()));
        Some(t)
    }

    fn begin(
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

    fn finish(&mut self, id: &str) -> Option<InFlight> {
        let f = self.in_flight.remove(id)?;
        self.in_flight_by_deadline
            .remove(&(f.deadline, id.to_string()));
        Some(f)
    }

    /// Counts a failure and pushes the next attempt back: exponential from
    /// `backoff_base`, capped, with full jitter above half the step. Returns
    /// whether `max_failures` was reached.
    fn fail(&mut self, id: &str, now: Millis, below: &mut dyn FnMut(u64) -> u64) -> bool {
        let Some(e) = self.entries.get_mut(id) else {
            return false;
        };
        let t = self.config.timing(&e.site);
        e.failures += 1;
        let step = secs(t.backoff_base)
            .saturating_mul(1 << (e.failures - 1).min(30))
            .min(secs(t.backoff_cap));
        let half = step / 2;
        e.retry_at = now + half + below(half as u64 + 1) as Millis;
        let reached = e.failures >= t.max_failures;
        if let Some((at, m)) = e.due {
            self.due.remove(&(at, id.to_string()));
            let at = at.max(e.retry_at);
            e.due = Some((at, m));
            self.due.insert((at, id.to_string()));
        }
        reached
    }

    fn succeed(&mut self, id: &str) {
        if let Some(e) = self.entries.get_mut(id) {
            e.failures = 0;
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

    /// Whether a refresh of `id` is running.
    pub fn in_flight(&self, id: &str) -> bool {
        self.in_flight.contains_key(id)
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
                    deadline: now + secs(timing.ticket_timeout),
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
                | FailureKind::RateLimited
                | FailureKind::Other => {
                    if self.fail(id, now, below) {
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

    /// The method of `id`'s running refresh, if one runs.
    pub fn in_flight_method(&self, id: &str) -> Option<RunMethod> {
        self.in_flight.get(id).map(|f| f.method)
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

    /// Whether `id` is held out of the schedule (see [`Lifecycle::hold`]).
    pub fn is_held(&self, id: &str) -> bool {
        self.held.contains(id)
    }

    /// Refreshes running now.
    pub fn in_flight_count(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Millis = 3_600_000;
    const T0: Millis = 1_800_000_000_000;

    fn no_jitter() -> impl FnMut(u64) -> u64 {
        |_| 0
    }

    fn max_jitter() -> impl FnMut(u64) -> u64 {
        |n| n - 1
    }

    fn site(method: SiteMethod) -> SiteTiming {
        SiteTiming {
            method,
            refresh_before_expire: 3600,
            max_age: 7 * 86_400,
            clock_skew: 60,
            jitter: 300,
            health_check_interval: 0,
            ..SiteTiming::default()
        }
    }

    fn lc(method: SiteMethod, max_in_flight: u32) -> Lifecycle {
        let mut c = LifecycleConfig {
            max_in_flight,
            ..LifecycleConfig::default()
        };
        c.sites.insert("jd.com".into(), site(method));
        Lifecycle::new(c)
    }

    fn cred(id: &str, expires_at: Option<Millis>) -> Tracked {
        Tracked {
            id: id.into(),
            site: "jd.com".into(),
            status: LcStatus::Active,
            expires_at,
            logged_in_at: T0,
            checked_at: None,
        }
    }

    #[test]
    fn refresh_starts_before_expiry_with_skew_leeway_and_jitter() {
        let mut l = lc(SiteMethod::CookieVisit, 8);
        let exp = T0 + 10 * H;
        // Without jitter: expiry - 1 h - 60 s skew.
        let due = l.due_of(&cred("a", Some(exp)), &mut no_jitter()).unwrap();
        assert_eq!(due, (exp - H - 60_000, RunMethod::CookieVisit));
        // With the largest jitter: 300 s earlier still.
        let due = l.due_of(&cred("a", Some(exp)), &mut max_jitter()).unwrap();
        assert_eq!(due.0, exp - H - 60_000 - 300_000);
        l.track(&cred("a", Some(exp)), T0, &mut no_jitter());
        assert!(l.tick(exp - H - 60_001, &mut no_jitter()).start.is_empty());
        let plan = l.tick(exp - H - 60_000, &mut no_jitter());
        assert_eq!(plan.start.len(), 1);
        assert_eq!(plan.start[0].method, RunMethod::CookieVisit);
        assert_eq!(plan.start[0].credential_id, "a");
    }

    #[test]
    fn relogin_past_max_age_even_when_expiry_is_far() {
        let mut l = lc(SiteMethod::CookieVisit, 8);
        let far = T0 + 365 * 24 * H;
        let (at, m) = l.due_of(&cred("a", Some(far)), &mut no_jitter()).unwrap();
        assert_eq!(m, RunMethod::Relogin);
        assert_eq!(at, T0 + 7 * 24 * H - 60_000);
        l.track(&cred("a", Some(far)), T0, &mut no_jitter());
        let plan = l.tick(at, &mut no_jitter());
        assert_eq!(plan.start[0].method, RunMethod::Relogin);
    }

    #[test]
    fn max_in_flight_caps_starts_and_single_flight_holds() {
        let mut l = lc(SiteMethod::CookieVisit, 2);
        for id in ["a", "b", "c"] {
            l.track(&cred(id, Some(T0 + H)), T0, &mut no_jitter());
        }
        let plan = l.tick(T0 + H, &mut no_jitter());
        assert_eq!(plan.start.len(), 2);
        assert_eq!(l.in_flight_count(), 2);
        // Re-tracking a running credential does not start it twice.
        l.track(&cred("a", Some(T0 + H)), T0 + H, &mut no_jitter());
        let again = l.tick(T0 + H + 1, &mut no_jitter());
        assert!(again.start.is_empty(), "{again:?}");
        // Finishing one frees a slot for the third.
        let first = plan.start[0].clone();
        let d = l.on_completed(
            &Completed {
                request_id: first.request_id,
                credential_id: first.credential_id.clone(),
                outcome: RunOutcome::Refreshed(Some(T0 + 48 * H)),
            },
            T0 + H + 2,
            &mut no_jitter(),
        );
        assert_eq!(d.status, Some(StatusChange::Active));
        assert_eq!(d.expires_at, Some(Some(T0 + 48 * H)));
        let plan3 = l.tick(T0 + H + 3, &mut no_jitter());
        assert_eq!(plan3.start.len(), 1);
        assert_eq!(plan3.start[0].credential_id, "c");
    }

    #[test]
    fn stale_results_change_nothing() {
        let mut l = lc(SiteMethod::CookieVisit, 2);
        l.track(&cred("a", Some(T0 + H)), T0, &mut no_jitter());
        let s = l.tick(T0 + H, &mut no_jitter()).start.remove(0);
        let stale = Completed {
            request_id: s.request_id + 100,
            credential_id: "a".into(),
            outcome: RunOutcome::Refreshed(None),
        };
        assert_eq!(
            l.on_completed(&stale, T0 + H, &mut no_jitter()),
            Decision::default()
        );
        assert!(l.in_flight("a"));
    }

    #[test]
    fn a_credential_is_not_refreshed_again_within_the_minimum_gap() {
        // The site answers lifetimes of one second: without the gap every
        // tick would start another refresh.
        let mut l = lc(SiteMethod::OauthRefresh, 2);
        l.track(&cred("a", Some(T0 + 1_000)), T0, &mut no_jitter());
        let mut now = T0;
        let mut started = Vec::new();
        while now < T0 + 3 * MIN_REFRESH_GAP {
            for s in l.tick(now, &mut no_jitter()).start {
                started.push(now);
                l.on_completed(
                    &Completed {
                        request_id: s.request_id,
                        credential_id: "a".into(),
                        outcome: RunOutcome::Refreshed(Some(now + 1_000)),
                    },
                    now,
                    &mut no_jitter(),
                );
                l.track(&cred("a", Some(now + 1_000)), now, &mut no_jitter());
            }
            now += 1_000;
        }
        let gaps: Vec<Millis> = started.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(started.len(), 3, "{started:?}");
        assert!(gaps.iter().all(|g| *g >= MIN_REFRESH_GAP), "{gaps:?}");
    }

    #[test]
    fn failures_back_off_exponentially_then_expire_with_an_alert() {
        let mut l = lc(SiteMethod::CookieVisit, 2);
        let c = cred("a", Some(T0 + H));
        l.track(&c, T0, &mut no_jitter());
        let mut now = T0 + H;
        let mut waits = Vec::new();
        for round in 1..=5 {
            let plan = l.tick(now, &mut no_jitter());
            assert_eq!(plan.start.len(), 1, "round {round}");
            let s = &plan.start[0];
            let d = l.on_completed(
                &Completed {
                    request_id: s.request_id,
                    credential_id: "a".into(),
                    outcome: RunOutcome::Failed(FailureKind::Network),
                },
                now,
                &mut no_jitter(),
            );
            if round < 5 {
                assert_eq!(d.status, None);
                let next = l.tick(now, &mut no_jitter()).next_due_at.unwrap();
                assert!(next > now, "backed off");
                waits.push(next - now);
                now = next;
            } else {
                assert_eq!(d.status, Some(StatusChange::Expired));
                assert_eq!(d.alert, Some(AlertNeed::RefreshFailed));
            }
        }
        // No jitter: half of 30 s, 60 s, 120 s, 240 s.
        assert_eq!(waits, vec![15_000, 30_000, 60_000, 120_000]);
    }

    #[test]
    fn invalid_grant_follows_up_with_a_relogin() {
        let mut l = lc(SiteMethod::OauthRefresh, 2);
        l.track(&cred("a", Some(T0 + H)), T0, &mut no_jitter());
        let s = l.tick(T0 + H, &mut no_jitter()).start.remove(0);
        assert_eq!(s.method, RunMethod::OauthRefresh);
        let d = l.on_completed(
            &Completed {
                request_id: s.request_id,
                credential_id: "a".into(),
                outcome: RunOutcome::Failed(FailureKind::InvalidGrant),
            },
            T0 + H,
            &mut no_jitter(),
        );
        assert_eq!(d.status, Some(StatusChange::Expired));
        let f = d.follow_up.expect("relogin");
        assert_eq!(f.method, RunMethod::Relogin);
        assert!(l.in_flight("a"));
        // A failed relogin after invalid_grant alerts instead of looping.
        let d2 = l.on_completed(
            &Completed {
                request_id: f.request_id,
                credential_id: "a".into(),
                outcome: RunOutcome::Failed(FailureKind::InvalidGrant),
            },
            T0 + H,
            &mut no_jitter(),
        );
        assert_eq!(d2.alert, Some(AlertNeed::RefreshFailed));
        assert!(d2.follow_up.is_none());
    }

    #[test]
    fn invalid_grant_without_relogin_expires_and_alerts() {
        let mut c = LifecycleConfig::default();
        c.sites.insert(
            "jd.com".into(),
            SiteTiming {
                can_relogin: false,
                ..site(SiteMethod::OauthRefresh)
            },
        );
        let mut l = Lifecycle::new(c);
        l.track(&cred("a", Some(T0 + H)), T0, &mut no_jitter());
        let s = l.tick(T0 + H, &mut no_jitter()).start.remove(0);
        let d = l.on_completed(
            &Completed {
                request_id: s.request_id,
                credential_id: "a".into(),
                outcome: RunOutcome::Failed(FailureKind::InvalidGrant),
            },
            T0 + H,
            &mut no_jitter(),
        );
        assert_eq!(d.status, Some(StatusChange::Expired));
        assert_eq!(d.alert, Some(AlertNeed::RefreshFailed));
        assert!(d.follow_up.is_none());
    }

    fn challenged(l: &mut Lifecycle, now: Millis) -> Ticket {
        let mut c = cred("a", Some(T0 + H));
        c.status = LcStatus::Expired;
        l.track(&c, now, &mut no_jitter());
        let s = l.tick(now, &mut no_jitter()).start.remove(0);
        assert_eq!(s.method, RunMethod::Relogin);
        let d = l.on_completed(
            &Completed {
                request_id: s.request_id,
                credential_id: "a".into(),
                outcome: RunOutcome::Challenged(ChallengeKind::SmsCode),
            },
            now,
            &mut no_jitter(),
        );
        assert_eq!(d.status, Some(StatusChange::Challenged));
        let t = d.open_ticket.expect("ticket");
        c.status = LcStatus::Challenged;
        l.track(&c, now, &mut no_jitter());
        t
    }

    #[test]
    fn a_challenge_opens_a_ticket_that_times_out() {
        let mut l = lc(SiteMethod::Relogin, 2);
        let t = challenged(&mut l, T0);
        assert_eq!(t.kind, ChallengeKind::SmsCode);
        assert_eq!(t.deadline, T0 + 3_600_000);
        assert_eq!(l.open_tickets(), vec![t.clone()]);
        let plan = l.tick(t.deadline - 1, &mut no_jitter());
        assert!(plan.timed_out.is_empty() && plan.start.is_empty());
        assert_eq!(plan.next_due_at, Some(t.deadline));
        let plan = l.tick(t.deadline, &mut no_jitter());
        assert_eq!(plan.timed_out.len(), 1);
        assert_eq!(plan.timed_out[0].ticket.id, t.id);
        assert_eq!(plan.timed_out[0].status, StatusChange::Expired);
        assert!(l.open_tickets().is_empty());
        assert!(l.resolve(&t.id, Resolution::Answered, t.deadline).is_none());
    }

    #[test]
    fn an_answered_ticket_resumes_the_login_with_its_id() {
        let mut l = lc(SiteMethod::Relogin, 2);
        let t = challenged(&mut l, T0);
        let r = l.resolve(&t.id, Resolution::Answered, T0 + 60_000).unwrap();
        let s = r.start.expect("resumed login");
        assert_eq!(s.method, RunMethod::Relogin);
        assert_eq!(s.ticket_id.as_deref(), Some(t.id.as_str()));
        let d = l.on_completed(
            &Completed {
                request_id: s.request_id,
                credential_id: "a".into(),
                outcome: RunOutcome::Refreshed(Some(T0 + 48 * H)),
            },
            T0 + 61_000,
            &mut no_jitter(),
        );
        assert_eq!(d.status, Some(StatusChange::Active));
        assert_eq!(d.logged_in_at, Some(T0 + 61_000));
        assert!(
            l.open_tickets().is_empty(),
            "the ticket closed with the login"
        );
    }

    #[test]
    fn abandoned_and_solved_elsewhere_close_the_ticket() {
        let mut l = lc(SiteMethod::Relogin, 2);
        let t = challenged(&mut l, T0);
        let r = l.resolve(&t.id, Resolution::Abandoned, T0).unwrap();
        assert_eq!(
            (r.status, r.closure),
            (Some(StatusChange::Suspended), Some(Closure::Cancelled))
        );
        let t2 = challenged(&mut l, T0 + 1);
        let r = l
            .resolve(&t2.id, Resolution::SolvedElsewhere, T0 + 2)
            .unwrap();
        assert_eq!(
            (r.status, r.closure),
            (Some(StatusChange::Active), Some(Closure::Answered))
        );
        assert!(l.open_tickets().is_empty());
    }

    #[test]
    fn untrack_cancels_tickets_and_schedules() {
        let mut l = lc(SiteMethod::Relogin, 2);
        let t = challenged(&mut l, T0);
        assert_eq!(l.untrack("a"), vec![t.id]);
        assert_eq!(
            l.tick(T0 + 365 * 24 * H, &mut no_jitter()),
            TickPlan::default()
        );
    }

    #[test]
    fn a_refresh_the_host_never_reports_is_given_up_and_retried() {
        let mut l = lc(SiteMethod::CookieVisit, 1);
        l.track(&cred("a", Some(T0 + H)), T0, &mut no_jitter());
        let s = l.tick(T0 + H, &mut no_jitter()).start.remove(0);
        let lost_at = T0 + H + 300_000;
        let plan = l.tick(lost_at, &mut no_jitter());
        assert_eq!(
            plan.abandoned,
            vec![("a".to_string(), RunMethod::CookieVisit)]
        );
        assert!(!l.in_flight("a"));
        let retry = plan.next_due_at.unwrap();
        assert_eq!(retry, lost_at + 15_000);
        let again = l.tick(retry, &mut no_jitter()).start.remove(0);
        assert!(again.request_id > s.request_id);
    }

    #[test]
    fn health_checks_come_at_their_interval() {
        let mut c = LifecycleConfig::default();
        c.sites.insert(
            "jd.com".into(),
            SiteTiming {
                health_check_interval: 600,
                ..site(SiteMethod::None)
            },
        );
        let mut l = Lifecycle::new(c);
        let mut t = cred("a", None);
        l.track(&t, T0, &mut no_jitter());
        let s = l.tick(T0 + 600_000, &mut no_jitter()).start.remove(0);
        assert_eq!(s.method, RunMethod::HealthCheck);
        let d = l.on_completed(
            &Completed {
                request_id: s.request_id,
                credential_id: "a".into(),
                outcome: RunOutcome::StillValid,
            },
            T0 + 600_500,
            &mut no_jitter(),
        );
        assert_eq!(d.checked_at, Some(T0 + 600_500));
        t.checked_at = d.checked_at;
        l.track(&t, T0 + 600_500, &mut no_jitter());
        assert_eq!(
            l.tick(T0 + 600_500, &mut no_jitter()).next_due_at,
            Some(T0 + 1_200_500)
        );
    }

    #[test]
    fn a_short_lead_gets_at_most_a_quarter_of_it_as_skew_and_jitter() {
        let mut l = lc(SiteMethod::CookieVisit, 8);
        let s = l.config.sites.get_mut("jd.com").unwrap();
        s.refresh_before_expire = 8;
        let exp = T0 + 20_000;
        // 8 s before, then at most 2 s of skew and 2 s of jitter (not the
        // card's 60 s and 300 s, which would put it before the login).
        let (at, _) = l.due_of(&cred("a", Some(exp)), &mut no_jitter()).unwrap();
        assert_eq!(at, exp - 8_000 - 2_000);
        let (at, _) = l.due_of(&cred("a", Some(exp)), &mut max_jitter()).unwrap();
        assert_eq!(at, exp - 8_000 - 2_000 - 2_000);
    }

    #[test]
    fn resting_and_banned_credentials_are_not_scheduled() {
        let l = lc(SiteMethod::CookieVisit, 1);
        for status in [LcStatus::Resting, LcStatus::Banned] {
            let mut c = cred("a", Some(T0));
            c.status = status;
            assert_eq!(l.due_of(&c, &mut no_jitter()), None, "{status:?}");
        }
    }

    #[test]
    fn a_challenge_met_by_a_crawl_sends_the_credential_to_a_login_where_it_becomes_a_ticket() {
        let mut l = lc(SiteMethod::CookieVisit, 1);
        let mut c = cred("a", Some(T0 + H));
        c.status = LcStatus::Challenged;
        l.track(&c, T0 + 5, &mut no_jitter());
        let plan = l.tick(T0 + 5, &mut no_jitter());
        assert_eq!(plan.start.len(), 1);
        assert_eq!(plan.start[0].method, RunMethod::Relogin);
        // Without a login recipe it waits for a person.
        let mut l = lc(SiteMethod::CookieVisit, 1);
        l.config.sites.get_mut("jd.com").unwrap().can_relogin = false;
        l.track(&c, T0 + 5, &mut no_jitter());
        assert!(l.tick(T0 + 5, &mut no_jitter()).start.is_empty());
    }

    #[test]
    fn a_ticket_restored_after_a_restart_holds_its_credential_back() {
        let mut l = lc(SiteMethod::CookieVisit, 1);
        let mut c = cred("a", Some(T0 + H));
        c.status = LcStatus::Challenged;
        // Loading tracks the credential before its ticket is back.
        l.track(&c, T0, &mut no_jitter());
        l.restore_ticket(Ticket {
            id: "tk-1".into(),
            kind: ChallengeKind::SmsCode,
            credential_id: "a".into(),
            site: "jd.com".into(),
            created_at: T0 - 5,
            deadline: T0 + H,
        });
        assert!(l.tick(T0 + 5, &mut no_jitter()).start.is_empty());
    }

    #[test]
    fn a_challenged_credential_with_an_open_ticket_waits_for_its_answer() {
        let mut l = lc(SiteMethod::Relogin, 1);
        let t = challenged(&mut l, T0);
        assert_eq!(t.credential_id, "a");
        let plan = l.tick(T0 + H, &mut no_jitter());
        assert!(plan.start.is_empty(), "{plan:?}");
    }

    #[test]
    fn config_parses_seconds_and_names_bad_keys() {
        let c = LifecycleConfig::from_json(
            r#"{"max_in_flight": 4, "sites": {"jd.com": {"method": "cookie-visit", "refresh_before_expire": 3600}}}"#,
        )
        .unwrap();
        assert_eq!(c.timing("jd.com").method, SiteMethod::CookieVisit);
        assert_eq!(c.timing("other").method, SiteMethod::Relogin);
        let (field, _) =
            LifecycleConfig::from_json(r#"{"sites": {"jd.com": {"refresh_befor": 1}}}"#)
                .unwrap_err();
        assert_eq!(field, "refresh_befor");
        let (field, _) = LifecycleConfig::from_json(r#"{"max_in_flight": 0}"#).unwrap_err();
        assert_eq!(field, "max_in_flight");
    }
}
