//! The host half of the session lifecycle: the policy decides when and
//! what (its `lifecycle` module); this does the HTTP and holds the secrets.
//!
//! - [`Refresher`]: queues refreshes without blocking the caller, runs them
//!   on a background tokio runtime, single-flight per credential (a second
//!   request for a credential already refreshing waits for the same HTTP
//!   work), and keeps the results for the pool to hand to the policy
//!   (`Pool::deliver_refresh_results`, also run by `Pool::tick`).
//! - [`sites`]: the `[sites."…"]` configuration.
//! - [`cookies`]: RFC 6265 cookie jar kept in the secret bundle.
//! - [`oauth`]: the refresh-token grant with safe rotation.
//! - [`relogin`]: form logins (with challenges, TOTP, a captcha solver) and
//!   external login commands.
//! - `captcha`: what a captcha solver gets and answers, what is posted.
//! - [`slider`]: human-like drag tracks for slider captchas.
//! - [`totp`]: RFC 6238 codes.
//! - [`notifiers`]: log, webhook and command notifiers, and the ticket book.
//! - [`answers`]: challenge answers, sealed, held until a login uses them.
//!
//! Results carry outcomes only: a secret never leaves this module except
//! into the vault.

pub mod answers;
mod captcha;
pub use captcha::ChallengeContext;
pub mod command;
pub mod cookies;
pub mod http;
pub mod notifiers;
pub mod oauth;
pub mod relogin;
pub mod sites;
pub mod slider;
pub mod totp;

use crate::bindings::refresh::{
    RefreshFailure, RefreshMethod, RefreshOutcome, RefreshRequest, RefreshResult, StartError,
};
use crate::clock::ManualClock;
use crate::vault::Vault;
use cookies::{Jar, MergeSummary};
use sites::{Method, SiteConfig};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Who asked for a refresh, so its result goes back to the right place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// The policy, through the `refresh.start` import: results go to
    /// `refresh-completed`.
    Policy,
    /// The host API ([`Refresher::submit`]): results wait for
    /// [`Refresher::wait`].
    Direct,
}

struct Waiter {
    request_id: u64,
    method: RefreshMethod,
    origin: Origin,
}

#[derive(Default)]
struct State {
    /// Credential id -> the requests waiting on its one running refresh.
    in_flight: HashMap<String, Vec<Waiter>>,
    completed: Vec<RefreshResult>,
    direct: HashMap<u64, RefreshResult>,
    /// HTTP refreshes actually run (single-flight proof, stats).
    runs: u64,
    counters: BTreeMap<(String, &'static str), RefreshCounters>,
    shutting_down: bool,
}

pub(crate) struct Inner {
    pub(crate) sites: BTreeMap<String, SiteConfig>,
    pub(crate) vault: Arc<Vault>,
    pub(crate) client: reqwest::Client,
    clock: Option<ManualClock>,
    state: Mutex<State>,
    changed: Condvar,
    pub(crate) answers: answers::Answers,
    pub(crate) pending: Mutex<HashMap<String, relogin::Pending>>,
    /// Tickets closed unanswered: a resumed login with one fails as
    /// `challenge-timed-out`.
    pub(crate) closed_tickets: Mutex<HashSet<String>>,
    /// Open ticket -> its credential, so closing it deletes the captcha
    /// image kept for it.
    ticket_credentials: Mutex<HashMap<String, String>>,
    /// Two-factor tickets the host answers itself from the account's TOTP
    /// seed: (ticket, site, credential), answered on the next delivery.
    totp_tickets: Mutex<Vec<(String, String, String)>>,
    /// Credential id -> when a token refresh's answer was lost (the
    /// endpoint may have rotated): until a retry settles it.
    lost_answers: Mutex<HashMap<String, i64>>,
    max_in_flight: usize,
}

impl Inner {
    pub(crate) fn now_ms(&self) -> i64 {
        match &self.clock {
            Some(c) => c.now_ms(),
            None => chrono::Utc::now().timestamp_millis(),
        }
    }

    /// A token refresh got no usable answer (`why`): the endpoint may have
    /// rotated the refresh token; the one sent stays current for a retry.
    pub(crate) fn answer_lost(&self, site: &str, id: &str, why: &str) {
        let now = self.now_ms();
        self.lost_answers
            .lock()
            .unwrap()
            .entry(id.to_string())
            .or_insert(now);
        tracing::warn!(
            target: "credpool::refresh",
            "[CRED] refresh answer lost credential={id} site={site} cause={why}: the token endpoint may have rotated the refresh token; the one sent is kept and retried with soon"
        );
    }

    /// A token refresh settled: a loss before it is recovered.
    pub(crate) fn answer_confirmed(&self, site: &str, id: &str) {
        if let Some(at) = self.lost_answers.lock().unwrap().remove(id) {
            tracing::info!(
                target: "credpool::refresh",
                "[CRED] refresh recovered credential={id} site={site} {} ms after its answer was lost",
                self.now_ms().saturating_sub(at)
            );
        }
    }

    /// The endpoint refused the refresh token (`invalid_grant`): says why
    /// the account now needs a new login, and how it gets one.
    pub(crate) fn token_refused(&self, site_name: &str, site: &SiteConfig, id: &str, status: u16) {
        let lost_at = self.lost_answers.lock().unwrap().remove(id);
        let next = if site.can_relogin() {
            "a re-login from the site's login settings follows".to_string()
        } else {
            format!(
                "a person must add it again with a fresh refresh token (credpool remove {id}, then credpool import FILE --format json) or give [sites.\"{site_name}\"] a login"
            )
        };
        match lost_at {
            Some(at) => tracing::warn!(
                target: "credpool::refresh",
                "[CRED] refresh token refused credential={id} site={site_name} status={status} invalid_grant {} ms after an answer was lost: the endpoint rotated the token and no longer accepts the one sent (no grace window, or it ran out); the account needs a new login: {next}",
                self.now_ms().saturating_sub(at)
            ),
            None => tracing::warn!(
                target: "credpool::refresh",
                "[CRED] refresh token refused credential={id} site={site_name} status={status} invalid_grant: revoked or expired; the account needs a new login: {next}"
            ),
        }
    }
}

/// Refresh counts of one site and method (the card's SLO: success rate
/// of at least 90%).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RefreshCounters {
    pub site: String,
    pub method: &'static str,
    pub attempts: u64,
    pub succeeded: u64,
    pub challenged: u64,
    pub failed: u64,
    /// Failures by class (`network`, `logged-out`, …).
    pub failures: BTreeMap<String, u64>,
}

impl RefreshCounters {
    /// Successes over finished attempts (challenges excluded: they wait on
    /// a person); `None` before any.
    pub fn success_rate(&self) -> Option<f64> {
        let done = self.succeeded + self.failed;
        (done > 0).then(|| self.succeeded as f64 / done as f64)
    }
}

/// Options of a [`Refresher`].
#[derive(Clone)]
pub struct RefresherOptions {
    pub sites: BTreeMap<String, SiteConfig>,
    /// Time for expiries and TOTP; the system's when `None`.
    pub clock: Option<ManualClock>,
    /// Credentials refreshing at once; more are refused as `busy`.
    pub max_in_flight: usize,
    /// Where `credpool challenge answer` leaves sealed answers (optional).
    pub answer_dir: Option<std::path::PathBuf>,
}

impl RefresherOptions {
    pub fn new(sites: BTreeMap<String, SiteConfig>) -> Self {
        RefresherOptions {
            sites,
            clock: None,
            max_in_flight: 64,
            answer_dir: None,
        }
    }
}

/// Runs refreshes in the background. Cheap to share (`Arc`).
pub struct Refresher {
    inner: Arc<Inner>,
    rt: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
}

impl Refresher {
    pub fn new(vault: Arc<Vault>, options: RefresherOptions) -> std::io::Result<Arc<Refresher>> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("credpool-refresh")
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let answers = answers::Answers::new(vault.clone(), options.answer_dir.clone());
        let client = {
            let _guard = handle.enter();
            http::client()
        };
        Ok(Arc::new(Refresher {
            inner: Arc::new(Inner {
                sites: options.sites,
                vault,
                client,
                clock: options.clock,
                state: Mutex::new(State::default()),
                changed: Condvar::new(),
                answers,
                pending: Mutex::new(HashMap::new()),
                closed_tickets: Mutex::new(HashSet::new()),
                ticket_credentials: Mutex::new(HashMap::new()),
                totp_tickets: Mutex::new(Vec::new()),
                lost_answers: Mutex::new(HashMap::new()),
                max_in_flight: options.max_in_flight.max(1),
            }),
            rt: Mutex::new(Some(rt)),
            handle,
        }))
    }

    /// Checks that the site is configured for `method`.
    fn check(&self, req: &RefreshRequest) -> Result<(), StartError> {
        let Some(site) = self.inner.sites.get(&req.site) else {
            return Err(StartError::NotConfigured(format!(
                "site {} has no [sites] table",
                req.site
            )));
        };
        let ok = match req.method {
            RefreshMethod::CookieVisit => site.refresh_url.is_some(),
            RefreshMethod::OauthRefresh => site.token_url.is_some() && site.client_id.is_some(),
            RefreshMethod::Relogin => site.can_relogin(),
            RefreshMethod::HealthCheck => site.check_url.is_some(),
        };
        if ok
            && (site.method() != Method::None
                || req.method == RefreshMethod::HealthCheck
                || req.method == RefreshMethod::Relogin)
        {
            Ok(())
        } else {
            Err(StartError::NotConfigured(format!(
                "site {} is not configured for {}",
                req.site,
                crate::names::refresh_method(req.method)
            )))
        }
    }

    /// Queues a refresh for the policy; never blocks on the network. Its
    /// result comes back through [`Refresher::take_completed`].
    pub fn start(&self, req: RefreshRequest) -> Result<(), StartError> {
        self.enqueue(req, Origin::Policy)
    }

    /// Queues a refresh for the host API; wait for it with [`Refresher::wait`].
    pub fn submit(&self, req: RefreshRequest) -> Result<(), StartError> {
        self.enqueue(req, Origin::Direct)
    }

    fn enqueue(&self, req: RefreshRequest, origin: Origin) -> Result<(), StartError> {
        self.check(&req)?;
        let waiter = Waiter {
            request_id: req.request_id,
            method: req.method,
            origin,
        };
        {
            let mut st = self.inner.state.lock().unwrap();
            if st.shutting_down {
                return Err(StartError::Busy);
            }
            if let Some(waiters) = st.in_flight.get_mut(&req.credential_id) {
                // Single flight: ride on the refresh already running.
                waiters.push(waiter);
                return Ok(());
            }
            if st.in_flight.len() >= self.inner.max_in_flight {
                return Err(StartError::Busy);
            }
            st.in_flight.insert(req.credential_id.clone(), vec![waiter]);
            st.runs += 1;
        }
        tracing::info!(
            target: "credpool::refresh",
            "[CRED] refresh started credential={} site={} method={}",
            req.credential_id,
            req.site,
            crate::names::refresh_method(req.method)
        );
        let inner = self.inner.clone();
        self.handle.spawn(async move {
            let outcome = run(&inner, &req).await;
            finish(&inner, &req, outcome);
        });
        Ok(())
    }

    /// Results for the policy, oldest first.
    pub fn take_completed(&self) -> Vec<RefreshResult> {
        std::mem::take(&mut self.inner.state.lock().unwrap().completed)
    }

    /// Whether results wait for the policy (a loop that ticks on a timer
    /// may hand them over at once: a failure's prompt retry is scheduled
    /// from when the policy hears of it).
    pub fn has_completed(&self) -> bool {
        !self.inner.state.lock().unwrap().completed.is_empty()
    }

    /// Waits up to `timeout` for the result of a [`Refresher::submit`].
    pub fn wait(&self, request_id: u64, timeout: Duration) -> Option<RefreshResult> {
        let end = Instant::now() + timeout;
        let mut st = self.inner.state.lock().unwrap();
        loop {
            if let Some(r) = st.direct.remove(&request_id) {
                return Some(r);
            }
            let left = end.checked_duration_since(Instant::now())?;
            st = self.inner.changed.wait_timeout(st, left).unwrap().0;
        }
    }

    /// Waits until `n` results for the policy are queued (tests, `run`).
    pub fn wait_completed(&self, n: usize, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        let mut st = self.inner.state.lock().unwrap();
        while st.completed.len() < n {
            let Some(left) = end.checked_duration_since(Instant::now()) else {
                return false;
            };
            st = self.inner.changed.wait_timeout(st, left).unwrap().0;
        }
        true
    }

    /// Credentials refreshing now.
    pub fn in_flight(&self) -> usize {
        self.inner.state.lock().unwrap().in_flight.len()
    }

    /// Refresh counts by site and method, as HTTP work ran.
    pub fn stats(&self) -> Vec<RefreshCounters> {
        self.inner
            .state
            .lock()
            .unwrap()
            .counters
            .values()
            .cloned()
            .collect()
    }

    /// Token refreshes whose answer was lost and that no retry has settled
    /// yet (`credpool tick` keeps ticking while there are any).
    pub fn unsettled_lost_answers(&self) -> usize {
        self.inner.lost_answers.lock().unwrap().len()
    }

    /// HTTP refreshes run so far (coalesced requests count once).
    pub fn runs(&self) -> u64 {
        self.inner.state.lock().unwrap().runs
    }

    /// Holds the answer to a challenge ticket for the resumed login. The
    /// answer is a secret: it is never logged.
    pub fn answer(&self, ticket_id: &str, answer: Zeroizing<String>) -> Result<(), String> {
        self.inner.answers.put(ticket_id, answer)
    }

    /// The policy opened `ticket_id` for `credential_id`'s stopped login:
    /// link them so closing the ticket drops the login's context.
    pub fn ticket_opened(&self, ticket_id: &str, credential_id: &str) {
        self.inner
            .ticket_credentials
            .lock()
            .unwrap()
            .insert(ticket_id.to_string(), credential_id.to_string());
        if let Some(p) = self.inner.pending.lock().unwrap().get_mut(credential_id) {
            p.ticket_id = Some(ticket_id.to_string());
        }
    }

    /// A ticket the policy just opened: a two-factor ticket for an account
    /// whose secrets hold a TOTP seed is queued for the host to answer
    /// itself (the policy call that opened it is not blocked); returns
    /// whether it was. Others wait for a person.
    pub fn auto_answer(&self, ticket: &crate::bindings::notify::Ticket) -> bool {
        if ticket.kind != crate::bindings::refresh::ChallengeKind::TwoFactor {
            return false;
        }
        let has_seed = matches!(
            self.inner.vault.get_secrets(&ticket.site, &ticket.credential_id),
            Ok(Some(s)) if s.totp_seed.as_deref().is_some_and(|x| !x.is_empty())
        );
        if has_seed {
            self.inner.totp_tickets.lock().unwrap().push((
                ticket.id.clone(),
                ticket.site.clone(),
                ticket.credential_id.clone(),
            ));
        }
        has_seed
    }

    /// The queued two-factor tickets with their RFC 6238 codes, computed
    /// now (a code is a secret: never logged). A ticket whose seed is gone
    /// or unreadable is left for a person.
    pub fn take_totp_answers(&self) -> Vec<(String, Zeroizing<String>)> {
        let queued = std::mem::take(&mut *self.inner.totp_tickets.lock().unwrap());
        let now = self.inner.now_ms();
        let mut out = Vec::new();
        for (ticket, site, id) in queued {
            let Ok(Some(secrets)) = self.inner.vault.get_secrets(&site, &id) else {
                continue;
            };
            let Some(seed) = secrets.totp_seed.as_deref() else {
                continue;
            };
            match totp::code_for_seed(seed, now) {
                Ok(code) => out.push((ticket, code)),
                Err(_) => tracing::warn!(
                    target: "credpool::refresh",
                    "[CRED] the TOTP seed of credential={id} site={site} is unusable; ticket={ticket} waits for a person"
                ),
            }
        }
        out
    }

    /// A ticket closed (timed out, cancelled): its login context and any
    /// answer are dropped.
    pub fn ticket_closed(&self, ticket_id: &str, timed_out: bool) {
        self.inner.answers.discard(ticket_id);
        self.inner
            .pending
            .lock()
            .unwrap()
            .retain(|_, p| p.ticket_id.as_deref() != Some(ticket_id));
        if timed_out {
            self.inner
                .closed_tickets
                .lock()
                .unwrap()
                .insert(ticket_id.to_string());
        }
    }

    /// A ticket the policy closed, however (answered, timed out,
    /// cancelled): what was kept for it (the captcha image) is deleted.
    pub fn ticket_ended(&self, ticket_id: &str) {
        let credential = self
            .inner
            .ticket_credentials
            .lock()
            .unwrap()
            .remove(ticket_id);
        if let Some(id) = credential {
            captcha::drop_context(&self.inner.vault, &id);
        }
    }

    /// What credential `credential_id`'s stopped login met (the captcha
    /// image as the site served it, the question), while its ticket is open.
    pub fn challenge_context(
        &self,
        credential_id: &str,
    ) -> Result<Option<ChallengeContext>, crate::vault::VaultError> {
        captcha::kept_context(&self.inner.vault, credential_id)
    }

    /// The site settings.
    pub fn sites(&self) -> &BTreeMap<String, SiteConfig> {
        &self.inner.sites
    }

    /// Stops taking work and waits up to `grace` for running refreshes.
    pub fn shutdown(&self, grace: Duration) {
        self.inner.state.lock().unwrap().shutting_down = true;
        let end = Instant::now() + grace;
        {
            let mut st = self.inner.state.lock().unwrap();
            while !st.in_flight.is_empty() {
                let Some(left) = end.checked_duration_since(Instant::now()) else {
                    break;
                };
                st = self.inner.changed.wait_timeout(st, left).unwrap().0;
            }
        }
        if let Some(rt) = self.rt.lock().unwrap().take() {
            rt.shutdown_timeout(Duration::from_millis(100));
        }
    }
}

impl Drop for Refresher {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.lock().unwrap().take() {
            rt.shutdown_background();
        }
    }
}

fn finish(inner: &Inner, req: &RefreshRequest, outcome: RefreshOutcome) {
    let finished_at = inner.now_ms();
    tracing::info!(
        target: "credpool::refresh",
        "[CRED] refresh finished credential={} site={} method={} outcome={}",
        req.credential_id,
        req.site,
        crate::names::refresh_method(req.method),
        outcome_name(&outcome)
    );
    let mut st = inner.state.lock().unwrap();
    let method = crate::names::refresh_method(req.method);
    let c = st
        .counters
        .entry((req.site.clone(), method))
        .or_insert_with(|| RefreshCounters {
            site: req.site.clone(),
            method,
            ..RefreshCounters::default()
        });
    c.attempts += 1;
    match &outcome {
        RefreshOutcome::Refreshed(_) | RefreshOutcome::StillValid => c.succeeded += 1,
        RefreshOutcome::Challenged(_) => c.challenged += 1,
        RefreshOutcome::Failed((f, _)) => {
            c.failed += 1;
            *c.failures
                .entry(crate::names::refresh_failure(*f).to_string())
                .or_default() += 1;
        }
    }
    for w in st.in_flight.remove(&req.credential_id).unwrap_or_default() {
        let result = RefreshResult {
            request_id: w.request_id,
            credential_id: req.credential_id.clone(),
            method: w.method,
            outcome,
            finished_at,
        };
        match w.origin {
            Origin::Policy => st.completed.push(result),
            Origin::Direct => {
                st.direct.insert(w.request_id, result);
            }
        }
    }
    inner.changed.notify_all();
}

/// A one-word description of an outcome, for logs.
pub fn outcome_name(o: &RefreshOutcome) -> String {
    match o {
        RefreshOutcome::Refreshed(_) => "refreshed".into(),
        RefreshOutcome::StillValid => "still-valid".into(),
        RefreshOutcome::Challenged(k) => format!("challenged:{}", crate::names::challenge_kind(*k)),
        RefreshOutcome::Failed((f, s)) => match s {
            Some(s) => format!("failed:{}:{s}", crate::names::refresh_failure(*f)),
            None => format!("failed:{}", crate::names::refresh_failure(*f)),
        },
    }
}

async fn run(inner: &Inner, req: &RefreshRequest) -> RefreshOutcome {
    let Some(site) = inner.sites.get(&req.site) else {
        return RefreshOutcome::Failed((RefreshFailure::Misconfigured, None));
    };
    match req.method {
        RefreshMethod::CookieVisit => {
            visit(inner, &req.site, site, &req.credential_id, false).await
        }
        RefreshMethod::HealthCheck => visit(inner, &req.site, site, &req.credential_id, true).await,
        RefreshMethod::OauthRefresh => {
            oauth::refresh(inner, &req.site, site, &req.credential_id).await
        }
        RefreshMethod::Relogin => relogin::relogin(inner, &req.site, site, req).await,
    }
}

/// A cookie visit (`check = false`: GET `refresh_url`, keep what it sets)
/// or a health check (`check = true`: GET `check_url`, classify).
async fn visit(
    inner: &Inner,
    site_name: &str,
    site: &SiteConfig,
    id: &str,
    check: bool,
) -> RefreshOutcome {
    let failed = |f, s| RefreshOutcome::Failed((f, s));
    let url = if check {
        &site.check_url
    } else {
        &site.refresh_url
    };
    let Some(url) = url.as_deref().and_then(|u| reqwest::Url::parse(u).ok()) else {
        return failed(RefreshFailure::Misconfigured, None);
    };
    let mut secrets = match inner.vault.get_secrets(site_name, id) {
        Ok(Some(s)) => s,
        Ok(None) => return failed(RefreshFailure::Misconfigured, None),
        Err(_) => return failed(RefreshFailure::Other, None),
    };
    let now = inner.now_ms();
    let host = url.host_str().unwrap_or_default().to_string();
    let mut jar = Jar::from_secrets(&secrets, site_name);
    let mut req = inner.client.get(url.clone());
    if let Some(c) = jar.header_for(&host, url.path(), url.scheme() == "https", now) {
        req = req.header(reqwest::header::COOKIE, c);
    }
    for (name, value) in &secrets.headers {
        req = req.header(name.as_str(), value.as_str());
    }
    if let Some(t) = &secrets.access_token
        && !secrets
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("authorization"))
    {
        req = req.bearer_auth(t);
    }
    let answer = match http::send(req, site.request_timeout()).await {
        Ok(a) => a,
        Err(f) => return failed(f, None),
    };
    if let Some(f) = http::session_failure(site, &answer) {
        return failed(f, Some(answer.status));
    }
    let mut sum = MergeSummary::default();
    for h in &answer.set_cookies {
        jar.set_cookie(h, &host, url.path(), url.scheme() == "https", now, &mut sum);
    }
    jar.evict_expired(now);
    if sum != MergeSummary::default() {
        jar.store_into(&mut secrets);
        if inner.vault.put_secrets(site_name, id, &secrets).is_err() {
            return failed(RefreshFailure::Other, None);
        }
    }
    if check {
        RefreshOutcome::StillValid
    } else {
        RefreshOutcome::Refreshed(jar.earliest_expiry())
    }
}
