//! Session lifecycle end to end, THROUGH THE POLICY COMPONENT: the host
//! `Pool` (wasmtime + the built guest) ticks on a `ManualClock`; the guest
//! decides what to refresh and when (`refresh.start`), the attached
//! `Refresher` does the HTTP against loopback sites started here, and
//! `Pool::tick` hands the results back (`refresh-completed`). Tickets,
//! alerts and stats are read from the pool, the webhook and the logs.

use crate::support;

use credpool::SiteStats;
use credpool::config::ConfigFile;
use credpool::events::MemorySink;
use credpool::lifecycle::notifiers::{Notifiers, NotifySection, read_ticket_book};
use credpool::lifecycle::{Refresher, RefresherOptions, totp};
use credpool::{
    AccessLevel, AcquireRequest, CredentialKind, Failure, FailureClass, ManualClock, NewCredential,
    Outcome, Pool, PoolOptions, Secrets, Status,
};
use credpool::{ChallengeKind, RefreshMethod};
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::fixtures::*;
use support::loopback::*;
use zeroize::Zeroizing;

const SITE: &str = "127.0.0.1";
const T0: i64 = 1_767_225_600_000;
const WAIT: Duration = Duration::from_secs(20);
const MIN: Duration = Duration::from_secs(60);

/// A pool through the component, with a refresher, on a manual clock.
struct Rig {
    pool: Pool,
    refresher: Arc<Refresher>,
    clock: ManualClock,
    sink: Arc<MemorySink>,
    notifiers: Option<Arc<Notifiers>>,
}

fn rig(
    clock: ManualClock,
    sites_toml: &str,
    notify: Option<(NotifySection, std::path::PathBuf)>,
) -> Rig {
    logs();
    let config = ConfigFile::parse(sites_toml).unwrap();
    let mut options = PoolOptions::in_memory();
    options.clock = Some(clock.clone());
    options.policy_config = config.policy_config_json();
    let sink = Arc::new(MemorySink::default());
    let notifiers = notify.map(|(section, book)| Notifiers::new(&section, Some(book)));
    options.events = match &notifiers {
        Some(n) => n.clone(),
        None => sink.clone(),
    };
    let pool = Pool::open(options).unwrap();
    let refresher = pool
        .attach_refresher(RefresherOptions::new(config.sites.clone()))
        .unwrap();
    if let Some(n) = &notifiers {
        n.attach(refresher.clone());
    }
    Rig {
        pool,
        refresher,
        clock,
        sink,
        notifiers,
    }
}

impl Rig {
    /// Lets the refreshes the policy started finish and hands their
    /// results to it, until nothing runs (a result may start a follow-up).
    fn settle(&self) {
        loop {
            let end = Instant::now() + WAIT;
            while self.refresher.in_flight() > 0 {
                assert!(Instant::now() < end, "refreshes did not finish");
                std::thread::sleep(Duration::from_millis(2));
            }
            if self.pool.deliver_refresh_results().unwrap() == 0 {
                return;
            }
        }
    }

    /// One tick and its refreshes, fully settled.
    fn tick(&self) -> credpool::TickSummary {
        let s = self.pool.tick().unwrap();
        self.settle();
        s
    }

    fn status(&self, id: &str) -> Status {
        self.pool.view(id, AccessLevel::Internal).unwrap().status
    }

    fn stats(&self) -> SiteStats {
        let mut s = self.pool.stats(Some(SITE)).unwrap();
        assert_eq!(s.len(), 1);
        s.remove(0)
    }

    fn secrets(&self, id: &str) -> Secrets {
        self.pool
            .vault()
            .get_secrets(SITE, id)
            .unwrap()
            .expect("stored")
    }

    fn add(&self, id: &str, kind: CredentialKind, expires_at: Option<i64>, secrets: Secrets) {
        let mut n = NewCredential::new(SITE, kind).with_id(id);
        n.expires_at = expires_at;
        n.phone = Some("+86 138 0013 5678".into());
        n.secrets = secrets;
        self.pool.add(n).unwrap();
    }

    /// Every text the host let out: logs, events, alerts.
    fn texts(&self) -> String {
        let mut t = logs();
        for l in self.sink.lines() {
            t.push_str(&l);
            t.push('\n');
        }
        t
    }
}

fn rate(s: &SiteStats) -> Option<f64> {
    let done = s.refresh.succeeded + s.refresh.failed;
    (done > 0).then(|| s.refresh.succeeded as f64 / done as f64)
}

/// What the webhook received, leaving out the pool-exhausted alerts the
/// tests' own acquires cause.
fn hook_events(hook: &Server) -> Vec<serde_json::Value> {
    hook.hits("/hook")
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .filter(|e: &serde_json::Value| e["kind"] != "pool-exhausted")
        .collect()
}

// ------------------------------------------------------------ the site

/// One loopback site: rotating session cookies (`/home`), a check URL
/// (`/me`), a login form with a TOTP or SMS second step (`/login`, `/2fa`,
/// `/sms`) and an OAuth token endpoint with refresh-token rotation and a
/// grace window (`/oauth/token`).
#[derive(Default)]
struct SiteState {
    /// sid -> expiry (test clock).
    sessions: HashMap<String, i64>,
    /// Requests that reached `/home` with a session already expired.
    expired_seen: usize,
    password: String,
    seed: String,
    sms_code: String,
    token: Rotation,
    token_delay: Duration,
    logins: u32,
}

fn site_server(clock: ManualClock) -> (Server, Arc<Mutex<SiteState>>) {
    let state = Arc::new(Mutex::new(SiteState::default()));
    let st = state.clone();
    let server = serve(move |r| {
        let now = clock.now_ms();
        match r.path.as_str() {
            "/home" | "/me" => {
                let sid = r.cookie("sid").unwrap_or_default();
                let mut s = st.lock().unwrap();
                match s.sessions.get(&sid).copied() {
                    Some(exp) if exp > now => {
                        if r.path == "/me" {
                            return reply(200, &[], "<a href=/logout>Sign out</a>");
                        }
                        s.sessions.remove(&sid);
                        let new = format!("{sid}.r");
                        s.sessions.insert(new.clone(), now + 3_600_000);
                        reply(
                            200,
                            &[("Set-Cookie", &format!("sid={new}; Max-Age=3600; Path=/"))],
                            "ok",
                        )
                    }
                    Some(_) => {
                        s.expired_seen += 1;
                        reply(302, &[("Location", "/login")], "")
                    }
                    None => reply(302, &[("Location", "/login")], ""),
                }
            }
            "/login" => {
                let f = r.form();
                let s = st.lock().unwrap();
                if f.get("pass") != Some(&s.password) {
                    return reply(200, &[], "wrong password");
                }
                let body = if f.get("user").map(String::as_str) == Some("totp-user") {
                    "Enter your authenticator code"
                } else {
                    "We sent a code to your phone ending 5678"
                };
                reply(200, &[("Set-Cookie", "step=s1; Path=/")], body)
            }
            "/2fa" | "/sms" => {
                let mut s = st.lock().unwrap();
                let want = if r.path == "/2fa" {
                    totp::code_for_seed(&s.seed, now).unwrap().to_string()
                } else {
                    s.sms_code.clone()
                };
                let field = if r.path == "/2fa" { "otp" } else { "code" };
                if r.cookie("step").as_deref() == Some("s1") && r.form().get(field) == Some(&want) {
                    s.logins += 1;
                    let sid = format!("login{}", s.logins);
                    s.sessions.insert(sid.clone(), now + 86_400_000);
                    reply(
                        302,
                        &[
                            ("Location", "/home"),
                            ("Set-Cookie", &format!("sid={sid}; Max-Age=86400; Path=/")),
                        ],
                        "",
                    )
                } else {
                    reply(200, &[], "code incorrect, we sent a code to your phone")
                }
            }
            "/oauth/token" => {
                let delay = st.lock().unwrap().token_delay;
                std::thread::sleep(delay);
                st.lock().unwrap().token.grant(&r.form())
            }
            _ => reply(404, &[], ""),
        }
    });
    (server, state)
}

/// The test site's config: logins by form, tickets open for ten minutes.
fn relogin_with_ten_minute_tickets(server: &Server) -> ConfigFile {
    ConfigFile::parse(&format!(
        "[sites.\"{SITE}\"]\nmethod = \"relogin\"\nticket_timeout = \"10m\"\n{}",
        login_toml(SITE, server)
    ))
    .unwrap()
}

/// The TOTP seed of the test accounts that have one.
const SEED: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

/// The test site with the account's password (returned) and TOTP seed set.
fn totp_site(clock: &ManualClock) -> (Server, Arc<Mutex<SiteState>>, String) {
    let (server, state) = site_server(clock.clone());
    let password = canary("pw");
    {
        let mut s = state.lock().unwrap();
        s.password = password.clone();
        s.seed = SEED.into();
    }
    (server, state, password)
}

fn account(user: &str, password: &str, seed: Option<&str>) -> Secrets {
    let mut s = Secrets::default();
    s.username = Some(user.into());
    s.password = Some(password.into());
    s.totp_seed = seed.map(str::to_string);
    s
}

// ----------------------------------------------------------------- tests

fn cookie_toml(server: &Server, extra: &str) -> String {
    format!(
        "[sites.\"{SITE}\"]\nmethod = \"cookie-visit\"\nrefresh_url = \"{}\"\nrefresh_before_expire = \"10m\"\n{extra}[sites.\"{SITE}\".logout]\nredirect_to = [\"/login\"]\n",
        server.url("/home")
    )
}

#[test]
fn sessions_are_refreshed_before_they_expire_by_the_policy() {
    const N: usize = 5;
    let clock = ManualClock::at(T0);
    let (server, state) = site_server(clock.clone());
    let rig = rig(clock.clone(), &cookie_toml(&server, ""), None);
    let mut sids = Vec::new();
    for i in 0..N {
        let sid = canary(&format!("sid{i}"));
        state
            .lock()
            .unwrap()
            .sessions
            .insert(sid.clone(), T0 + 3_600_000);
        let mut s = Secrets::default();
        s.cookies = vec![("sid".into(), sid.clone())];
        rig.add(
            &format!("s{i}"),
            CredentialKind::Session,
            Some(T0 + 3_600_000),
            s,
        );
        sids.push(sid);
    }
    // Six hours; every session lives one hour unless refreshed.
    for _ in 0..6 * 60 {
        rig.tick();
        clock.advance(MIN);
    }
    let st = rig.stats();
    assert_eq!(st.refresh.failed, 0, "{:?}", st.refresh);
    assert_eq!(st.refresh.in_flight, 0);
    assert_eq!(st.refresh.succeeded, st.refresh.attempts);
    assert!(st.refresh.attempts >= (N as u64) * 6, "{:?}", st.refresh);
    assert_eq!(rate(&st), Some(1.0), "the card's SLO, met");
    assert_eq!(st.refresh_by_method.len(), 1, "{:?}", st.refresh_by_method);
    let m = &st.refresh_by_method[0];
    assert_eq!(m.method, RefreshMethod::CookieVisit);
    assert_eq!(
        (m.attempts, m.succeeded, m.failed),
        (st.refresh.attempts, st.refresh.succeeded, 0)
    );
    assert_eq!(state.lock().unwrap().expired_seen, 0, "no session died");
    for i in 0..N {
        let id = format!("s{i}");
        assert_eq!(rig.status(&id), Status::Active);
        let sid = &rig.secrets(&id).cookies[0].1;
        assert!(sid.ends_with(".r.r.r.r.r"), "rotated on each visit");
        let meta = rig.pool.view(&id, AccessLevel::Internal).unwrap();
        assert!(
            meta.internal.unwrap().expires_at.unwrap() > clock.now_ms(),
            "expiry moved on"
        );
    }
    let got = rig.pool.acquire(&AcquireRequest::site(SITE)).unwrap();
    assert!(got.lease.is_some());
    rig.pool.release(got.lease.unwrap().id).unwrap();

    // The site drops every session: refreshes now fail, classified.
    state.lock().unwrap().sessions.clear();
    for _ in 0..90 {
        rig.tick();
        clock.advance(MIN);
    }
    let st = rig.stats();
    assert!(st.refresh.failed >= N as u64, "{:?}", st.refresh);
    assert!(rate(&st).unwrap() < 1.0);
    for i in 0..N {
        assert_eq!(rig.status(&format!("s{i}")), Status::Expired);
    }
    assert_eq!(st.by_status.expired, N as u32);
    let host = rig.refresher.stats();
    let logged_out: u64 = host
        .iter()
        .map(|c| c.failures.get("logged-out").copied().unwrap_or(0))
        .sum();
    assert_eq!(logged_out, st.refresh.failed, "every failure is logged-out");
    let alerts: Vec<String> = rig
        .sink
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("ALERT") && l.contains("RefreshFailed"))
        .collect();
    assert!(alerts.len() >= N, "{alerts:?}");
    assert!(
        alerts.iter().all(|a| a.contains("logged-out")),
        "{alerts:?}"
    );
    let all: Vec<&str> = sids.iter().map(String::as_str).collect();
    assert_no_leak(&[&rig.texts()], &all);
}

#[test]
fn oauth_rotation_loses_no_account_single_flight_and_invalid_grant_relogs_in() {
    let client_secret = canary("client");
    // SAFETY: a variable name used by this test only.
    unsafe { std::env::set_var("CREDPOOL_E2E_CLIENT_SECRET", &client_secret) };
    let clock = ManualClock::at(T0);
    let (server, state) = site_server(clock.clone());
    let password = canary("pw");
    let seed = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    let rt0 = canary("rt");
    {
        let mut s = state.lock().unwrap();
        s.token.current = rt0.clone();
        s.password = password.clone();
        s.seed = seed.into();
    }
    let toml = format!(
        "[sites.\"{SITE}\"]\nmethod = \"oauth-refresh\"\ntoken_url = \"{}\"\nclient_id = \"crawler\"\nclient_secret_env = \"CREDPOOL_E2E_CLIENT_SECRET\"\n{}",
        server.url("/oauth/token"),
        login_toml(SITE, &server)
    );
    let rig = rig(clock.clone(), &toml, None);
    let mut s = account("totp-user", &password, Some(seed));
    s.refresh_token = Some(rt0.clone());
    rig.add("tok", CredentialKind::Token, Some(T0 + 3_600_000), s);

    // The first refresh rotates the token, then its answer is lost.
    state.lock().unwrap().token.drop_next = true;
    for _ in 0..40 {
        rig.tick();
        if rig.stats().refresh.attempts == 1 {
            break;
        }
        clock.advance(MIN);
    }
    let st = rig.stats();
    assert_eq!((st.refresh.attempts, st.refresh.failed), (1, 1));
    assert!(
        clock.now_ms() < T0 + 3_600_000 - 25 * 60_000,
        "refreshed ahead of expiry"
    );
    assert_eq!(
        rig.secrets("tok").refresh_token.as_deref(),
        Some(rt0.as_str())
    );
    assert_ne!(
        rig.status("tok"),
        Status::Expired,
        "a lost answer is a retry"
    );
    // The retry (after the backoff) still holds a token the server honours.
    for _ in 0..10 {
        clock.advance(MIN);
        rig.tick();
        if rig.stats().refresh.succeeded == 1 {
            break;
        }
    }
    assert_eq!(rig.stats().refresh.succeeded, 1);
    let current = state.lock().unwrap().token.current.clone();
    let got = rig.secrets("tok");
    assert_eq!(got.refresh_token.as_deref(), Some(current.as_str()));
    assert_eq!(rig.status("tok"), Status::Active, "no account lost");

    // Two triggers while one refresh runs: one request.
    state.lock().unwrap().token_delay = Duration::from_millis(400);
    let hits_before = server.hits("/oauth/token").len();
    let lease = rig
        .pool
        .acquire(&AcquireRequest::site(SITE))
        .unwrap()
        .lease
        .unwrap();
    let expired = Outcome::Failure(Failure {
        class: FailureClass::Expired,
        http_status: Some(401),
        retry_after_secs: None,
    });
    rig.pool.report(lease.id, expired).unwrap();
    assert_eq!(rig.pool.tick().unwrap().refreshes_started, 1);
    for _ in 0..3 {
        clock.advance(Duration::from_secs(30));
        assert_eq!(rig.pool.tick().unwrap().refreshes_started, 0);
    }
    rig.settle();
    assert_eq!(server.hits("/oauth/token").len(), hits_before + 1);
    assert_eq!(rig.status("tok"), Status::Active);
    state.lock().unwrap().token_delay = Duration::ZERO;

    // The server revokes the token: invalid_grant, then a re-login (TOTP).
    {
        let mut s = state.lock().unwrap();
        s.token.current = "revoked".into();
        s.token.previous = None;
    }
    let lease = rig
        .pool
        .acquire(&AcquireRequest::site(SITE))
        .unwrap()
        .lease
        .unwrap();
    rig.pool.report(lease.id, expired).unwrap();
    rig.tick();
    assert_eq!(rig.status("tok"), Status::Active, "re-logged in");
    assert_eq!(state.lock().unwrap().logins, 1);
    assert_eq!(server.hits("/2fa").len(), 1);
    let got = rig.secrets("tok");
    assert!(got.cookies.iter().any(|(n, v)| n == "sid" && v == "login1"));
    assert_eq!(got.password.as_deref(), Some(password.as_str()));
    let st = rig.stats();
    assert_eq!(st.refresh.in_flight, 0);
    assert!(st.refresh.failed >= 2, "the lost answer and invalid_grant");
    let code = totp::code_for_seed(seed, clock.now_ms()).unwrap();
    assert_no_leak(
        &[&rig.texts()],
        &[
            &client_secret,
            &rt0,
            &current,
            &password,
            seed,
            code.as_str(),
        ],
    );
}

#[test]
fn a_new_account_logs_in_with_totp_through_a_ticket_the_host_answers() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(T0);
    let (server, _state, password) = totp_site(&clock);
    let seed = SEED;
    let toml = format!(
        "[sites.\"{SITE}\"]\nmethod = \"relogin\"\n{}",
        login_toml(SITE, &server)
    );
    let (hook, section) = webhook();
    let book = dir.path().join("tickets.json");
    let rig = rig(clock.clone(), &toml, Some((section, book.clone())));
    rig.add(
        "acct",
        CredentialKind::Account,
        None,
        account("totp-user", &password, Some(seed)),
    );
    assert_eq!(rig.status("acct"), Status::Init);
    // The login meets the 2FA step: challenged, and the policy opens a ticket.
    assert_eq!(rig.pool.tick().unwrap().refreshes_started, 1);
    assert!(rig.refresher.wait_completed(1, WAIT));
    assert!(rig.pool.tickets().unwrap().is_empty(), "not yet delivered");
    // One delivery: the policy opens the ticket, the host answers it from the
    // seed (no person acts: this test never calls answer_challenge).
    assert_eq!(rig.pool.deliver_refresh_results().unwrap(), 2);
    let open = rig.pool.tickets().unwrap();
    assert_eq!(open.len(), 1, "open until the resumed login reports");
    assert_eq!(open[0].kind, ChallengeKind::TwoFactor);
    assert_eq!(open[0].credential_id, "acct");
    assert_eq!(rig.status("acct"), Status::Challenged);
    assert_eq!(rig.stats().open_tickets, 1);
    rig.settle();
    assert_eq!(rig.status("acct"), Status::Active);
    assert!(rig.pool.tickets().unwrap().is_empty());
    assert_eq!(server.hits("/login").len(), 1, "resumed, not restarted");
    assert_eq!(server.hits("/2fa").len(), 1);
    let st = rig.stats();
    assert_eq!(
        (st.refresh.attempts, st.refresh.succeeded, st.refresh.failed),
        (2, 1, 0),
        "the challenged login and the resumed one"
    );
    assert_eq!(st.open_tickets, 0);
    assert_eq!(
        (st.answer_times.answered, st.answer_times.max_ms),
        (1, 0),
        "answered by the host at once"
    );
    let notifiers = rig.notifiers.as_ref().unwrap();
    assert!(notifiers.flush(WAIT));
    let ev = hook_events(&hook);
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(ev[0]["event"], "ticket-opened");
    assert_eq!(ev[0]["kind"], "two-factor");
    assert_eq!(ev[0]["id"], open[0].id.as_str());
    assert_eq!(ev[1]["event"], "ticket-closed");
    assert_eq!(ev[1]["id"], open[0].id.as_str());
    assert_eq!(ev[1]["closure"], "answered");
    assert!(read_ticket_book(&book).is_empty());
    let all = logs();
    assert!(
        all.contains(&format!(
            "ticket={} two-factor answered by the host from the TOTP seed",
            open[0].id
        )),
        "answered by the host"
    );
    let bodies: Vec<String> = hook.hits("/hook").iter().map(|r| r.body.clone()).collect();
    let book_text = std::fs::read_to_string(&book).unwrap();
    let tickets_text = format!("{open:?}");
    let code = totp::code_for_seed(seed, T0).unwrap();
    let mut texts: Vec<&str> = bodies.iter().map(String::as_str).collect();
    texts.extend([book_text.as_str(), tickets_text.as_str(), all.as_str()]);
    assert_no_leak(&texts, &[&password, seed, code.as_str(), "login1"]);
}

#[test]
fn a_two_factor_step_without_a_seed_waits_for_a_person() {
    let clock = ManualClock::at(T0);
    let (server, _state, password) = totp_site(&clock);
    let seed = SEED;
    let toml = format!(
        "[sites.\"{SITE}\"]\nmethod = \"relogin\"\n{}",
        login_toml(SITE, &server)
    );
    let rig = rig(clock.clone(), &toml, None);
    rig.add(
        "acct",
        CredentialKind::Account,
        None,
        account("totp-user", &password, None),
    );
    rig.tick();
    clock.advance(MIN);
    rig.tick();
    assert_eq!(rig.status("acct"), Status::Challenged);
    let t = rig.pool.tickets().unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].kind, ChallengeKind::TwoFactor);
    assert!(server.hits("/2fa").is_empty(), "nobody answered");
    // A person reads the code off their authenticator.
    let code = totp::code_for_seed(seed, clock.now_ms()).unwrap();
    rig.pool.answer_challenge(&t[0].id, code.clone()).unwrap();
    rig.settle();
    assert_eq!(rig.status("acct"), Status::Active);
    assert_no_leak(&[&rig.texts()], &[&password, code.as_str()]);
}

fn sms_rig(
    ticket_timeout: &str,
) -> (
    Rig,
    Server,
    Arc<Mutex<SiteState>>,
    Server,
    tempfile::TempDir,
    String,
) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(T0);
    let (server, state) = site_server(clock.clone());
    let password = canary("pw");
    {
        let mut s = state.lock().unwrap();
        s.password = password.clone();
        s.sms_code = "493817".into();
    }
    let toml = format!(
        "[sites.\"{SITE}\"]\nmethod = \"relogin\"\nticket_timeout = \"{ticket_timeout}\"\n{}",
        login_toml(SITE, &server)
    );
    let (hook, section) = webhook();
    let rig = rig(
        clock,
        &toml,
        Some((section, dir.path().join("tickets.json"))),
    );
    rig.add(
        "acct",
        CredentialKind::Account,
        None,
        account("sms-user", &password, None),
    );
    (rig, server, state, hook, dir, password)
}

#[test]
fn an_sms_step_opens_a_ticket_and_the_answer_resumes_the_login() {
    let (rig, server, _state, hook, dir, password) = sms_rig("1h");
    let code = "493817";
    rig.tick();
    assert_eq!(rig.status("acct"), Status::Challenged);
    let tickets = rig.pool.tickets().unwrap();
    assert_eq!(tickets.len(), 1);
    let t = &tickets[0];
    assert_eq!(t.credential_id, "acct");
    assert_eq!(t.deadline, T0 + 3_600_000);
    let contact = t.masked_contact.clone().expect("masked phone");
    assert!(
        contact.ends_with("78") && !contact.contains("0013"),
        "{contact}"
    );
    assert_eq!(rig.stats().open_tickets, 1);
    assert!(
        rig.pool
            .acquire(&AcquireRequest::site(SITE))
            .unwrap()
            .lease
            .is_none(),
        "out of rotation while challenged"
    );
    let notifiers = rig.notifiers.as_ref().unwrap();
    assert!(notifiers.flush(WAIT));
    let ev = hook_events(&hook);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["event"], "ticket-opened");
    assert_eq!(ev[0]["id"], t.id.as_str());
    assert_eq!(ev[0]["kind"], "sms-code");
    let book = dir.path().join("tickets.json");
    assert_eq!(read_ticket_book(&book).len(), 1);

    // A person answers seven minutes later: the policy resumes the login.
    rig.clock.advance(Duration::from_secs(7 * 60));
    rig.pool
        .answer_challenge(&t.id, Zeroizing::new(code.to_string()))
        .unwrap();
    rig.settle();
    assert_eq!(rig.status("acct"), Status::Active);
    assert!(rig.pool.tickets().unwrap().is_empty());
    assert_eq!(server.hits("/login").len(), 1, "resumed, not restarted");
    assert_eq!(server.hits("/sms")[0].form()["code"], code);
    let st = rig.stats();
    assert_eq!((st.refresh.succeeded, st.open_tickets), (1, 0));
    let relogin = st
        .refresh_by_method
        .iter()
        .find(|m| m.method == RefreshMethod::Relogin)
        .expect("relogin counts");
    assert_eq!(
        (relogin.attempts, relogin.succeeded, relogin.failed),
        (2, 1, 0),
        "the challenged login and the resumed one"
    );
    assert_eq!(st.answer_times.answered, 1);
    assert_eq!(st.answer_times.mean_ms, 7 * 60_000, "the clock's advance");
    assert_eq!(st.answer_times.max_ms, 7 * 60_000);
    // `credpool stats --json` shows them.
    let json = credpool::cli::output::stats_json(&st);
    assert_eq!(json["time_to_answer"]["mean_ms"], 420_000);
    assert_eq!(json["refresh"]["by_method"][0]["method"], "relogin");
    assert_eq!(json["refresh"]["by_method"][0]["attempts"], 2);
    assert!(
        rig.pool
            .acquire(&AcquireRequest::site(SITE))
            .unwrap()
            .lease
            .is_some()
    );
    assert!(notifiers.flush(WAIT));
    let ev = hook_events(&hook);
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(ev[1]["event"], "ticket-closed");
    assert_eq!(ev[1]["closure"], "answered");
    assert!(read_ticket_book(&book).is_empty());
    let bodies: Vec<String> = hook.hits("/hook").iter().map(|r| r.body.clone()).collect();
    let book_text = std::fs::read_to_string(&book).unwrap();
    let tickets_text = format!("{tickets:?}");
    let all = logs();
    let mut texts: Vec<&str> = bodies.iter().map(String::as_str).collect();
    texts.extend([book_text.as_str(), tickets_text.as_str(), all.as_str()]);
    assert_no_leak(
        &texts,
        &[&password, code, "login1", "13800135678", "0013 5678"],
    );
}

#[test]
fn an_unanswered_ticket_times_out_keeps_the_credential_out_and_alerts() {
    let (rig, server, _state, hook, _dir, password) = sms_rig("10m");
    rig.tick();
    let t = rig.pool.tickets().unwrap().remove(0);
    assert_eq!(t.deadline, T0 + 600_000);
    rig.clock.advance(Duration::from_secs(9 * 60));
    assert_eq!(rig.tick().tickets_timed_out, 0);
    rig.clock.advance(Duration::from_secs(2 * 60));
    assert_eq!(rig.tick().tickets_timed_out, 1);
    assert!(rig.pool.tickets().unwrap().is_empty());
    assert_eq!(rig.stats().open_tickets, 0);
    assert_ne!(rig.status("acct"), Status::Active);
    assert_eq!(rig.status("acct"), Status::Challenged, "held for a person");
    assert!(
        rig.pool
            .acquire(&AcquireRequest::site(SITE))
            .unwrap()
            .lease
            .is_none(),
        "stays out of rotation"
    );
    // A late answer finds no ticket; no new login is attempted.
    assert!(
        rig.pool
            .answer_challenge(&t.id, Zeroizing::new("493817".into()))
            .is_err()
    );
    for _ in 0..5 {
        rig.clock.advance(MIN);
        rig.tick();
    }
    assert_eq!(server.hits("/login").len(), 1);
    assert!(server.hits("/sms").is_empty());
    // A person decides to try again: `credpool challenge reset acct`.
    let meta = rig.pool.reset_challenge("acct").unwrap();
    assert_eq!(meta.status, Status::Expired);
    rig.tick();
    assert_eq!(server.hits("/login").len(), 2, "a fresh login");
    // The fresh login waits on the new ticket: challenged, out of rotation.
    assert_eq!(rig.status("acct"), Status::Challenged);
    let again = rig.pool.tickets().unwrap();
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].id, t.id, "a new ticket");
    assert!(
        rig.pool.reset_challenge("acct").is_err(),
        "refused while a ticket is open"
    );
    rig.pool
        .answer_challenge(&again[0].id, Zeroizing::new("493817".into()))
        .unwrap();
    rig.settle();
    assert_eq!(rig.status("acct"), Status::Active);
    assert!(rig.pool.reset_challenge("acct").is_err(), "not challenged");
    let notifiers = rig.notifiers.as_ref().unwrap();
    assert!(notifiers.flush(WAIT));
    let ev = hook_events(&hook);
    let closed: Vec<_> = ev
        .iter()
        .filter(|e| e["event"] == "ticket-closed")
        .collect();
    assert_eq!(closed.len(), 2, "{ev:?}");
    assert_eq!(closed[0]["closure"], "timed-out");
    assert_eq!(closed[1]["closure"], "answered");
    let alerts: Vec<_> = ev.iter().filter(|e| e["event"] == "alert").collect();
    assert_eq!(alerts.len(), 1, "{ev:?}");
    assert_eq!(alerts[0]["kind"], "ticket-timed-out");
    assert_eq!(alerts[0]["credential_id"], "acct");
    let bodies: Vec<String> = hook.hits("/hook").iter().map(|r| r.body.clone()).collect();
    let all = logs();
    let mut texts: Vec<&str> = bodies.iter().map(String::as_str).collect();
    texts.push(&all);
    assert_no_leak(&texts, &[&password, "493817"]);
}

#[test]
fn a_health_check_finds_a_logged_out_session_and_sends_it_to_relogin() {
    let clock = ManualClock::at(T0);
    let (server, state, password) = totp_site(&clock);
    let alive = canary("alive");
    state
        .lock()
        .unwrap()
        .sessions
        .insert(alive.clone(), T0 + 86_400_000);
    let toml = format!(
        "[sites.\"{SITE}\"]\nmethod = \"cookie-visit\"\nrefresh_url = \"{}\"\ncheck_url = \"{}\"\nhealth_check_interval = \"10m\"\n[sites.\"{SITE}\".logout]\nredirect_to = [\"/login\"]\n{}",
        server.url("/home"),
        server.url("/me"),
        login_toml(SITE, &server)
    );
    let rig = rig(clock.clone(), &toml, None);
    for (id, sid) in [("good", alive.clone()), ("gone", canary("dead"))] {
        let mut s = account("totp-user", &password, Some(SEED));
        s.cookies = vec![("sid".into(), sid)];
        rig.add(id, CredentialKind::Session, None, s);
    }
    rig.tick();
    assert_eq!(rig.stats().refresh.attempts, 0, "not due yet");
    clock.advance(Duration::from_secs(11 * 60));
    rig.tick();
    assert_eq!(server.hits("/me").len(), 2);
    assert_eq!(rig.status("good"), Status::Active);
    assert_eq!(rig.status("gone"), Status::Active, "re-logged in");
    assert_eq!(state.lock().unwrap().logins, 1);
    let sid = |id: &str| {
        rig.secrets(id)
            .cookies
            .iter()
            .find(|(n, _)| n == "sid")
            .map(|(_, v)| v.clone())
    };
    assert_eq!(sid("gone").as_deref(), Some("login1"));
    assert_eq!(sid("good"), Some(alive.clone()), "untouched");
    let st = rig.stats();
    assert_eq!(
        (st.refresh.attempts, st.refresh.succeeded, st.refresh.failed),
        (4, 2, 1),
        "two checks (one logged out) and one re-login (challenged by 2FA, then resumed)"
    );
    assert_no_leak(&[&rig.texts()], &[&password, SEED, &alive]);
}

/// A key file and a store that outlive one pool (keep the directory).
fn durable_store() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    Arc<dyn credpool::backend::Backend>,
) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("credpool.key");
    credpool::crypto::create_key_file(&key).unwrap();
    (dir, key, Arc::new(credpool::backend::MemoryBackend::new()))
}

/// A pool on a store that outlives it, as a restarted process opens it.
fn reopen(
    backend: &Arc<dyn credpool::backend::Backend>,
    key: &std::path::Path,
    clock: &ManualClock,
    config: &ConfigFile,
) -> Rig {
    let mut o = PoolOptions::in_memory();
    o.storage = credpool::Storage::Shared(backend.clone());
    o.key = credpool::crypto::KeySource::File(key.to_path_buf());
    o.clock = Some(clock.clone());
    o.policy_config = config.policy_config_json();
    let sink = Arc::new(MemorySink::default());
    o.events = sink.clone();
    let pool = Pool::open(o).unwrap();
    let refresher = pool
        .attach_refresher(RefresherOptions::new(config.sites.clone()))
        .unwrap();
    Rig {
        pool,
        refresher,
        clock: clock.clone(),
        sink,
        notifiers: None,
    }
}

#[test]
fn a_two_factor_ticket_open_across_a_restart_is_answered_from_the_totp_seed() {
    let (_dir, key, backend) = durable_store();
    let clock = ManualClock::at(T0);
    let (server, _state, password) = totp_site(&clock);
    let seed = SEED;
    let config = relogin_with_ten_minute_tickets(&server);
    // The login stops at the two-factor step with no seed to answer it.
    let rig = reopen(&backend, &key, &clock, &config);
    rig.add(
        "acct",
        CredentialKind::Account,
        None,
        account("totp-user", &password, None),
    );
    rig.tick();
    let before = rig.pool.tickets().unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].kind, ChallengeKind::TwoFactor);
    // The operator adds the authenticator's seed, and the process restarts.
    rig.pool
        .vault()
        .put_secrets(SITE, "acct", &account("totp-user", &password, Some(seed)))
        .unwrap();
    rig.refresher.shutdown(Duration::from_secs(5));
    drop(rig);

    let rig = reopen(&backend, &key, &clock, &config);
    assert_eq!(rig.pool.tickets().unwrap().len(), 1);
    rig.tick();
    assert_eq!(
        rig.status("acct"),
        Status::Active,
        "answered with no person"
    );
    assert!(rig.pool.tickets().unwrap().is_empty());
    assert_eq!(server.hits("/2fa").len(), 1);
    assert_no_leak(&[&rig.texts()], &[&password, seed]);
}

#[test]
fn an_open_ticket_survives_a_restart_of_the_pool() {
    let (_dir, key, backend) = durable_store();
    let clock = ManualClock::at(T0);
    let (server, state) = site_server(clock.clone());
    let password = canary("pw");
    state.lock().unwrap().password = password.clone();
    let config = relogin_with_ten_minute_tickets(&server);
    let open = || reopen(&backend, &key, &clock, &config);
    let rig = open();
    rig.add(
        "acct",
        CredentialKind::Account,
        None,
        account("sms-user", &password, None),
    );
    rig.tick();
    let before = rig.pool.tickets().unwrap();
    assert_eq!(before.len(), 1);
    rig.refresher.shutdown(Duration::from_secs(5));
    drop(rig);

    let rig = open();
    let after = rig.pool.tickets().unwrap();
    assert_eq!(after.len(), 1, "the ticket was stored");
    assert_eq!(after[0].id, before[0].id);
    assert_eq!(after[0].deadline, before[0].deadline);
    assert_eq!(rig.status("acct"), Status::Challenged);
    assert_eq!(rig.stats().open_tickets, 1);
    // Its deadline still holds after the restart.
    clock.advance(Duration::from_secs(11 * 60));
    assert_eq!(rig.tick().tickets_timed_out, 1);
    assert!(rig.pool.tickets().unwrap().is_empty());
    assert!(
        rig.sink
            .lines()
            .iter()
            .any(|l| l.starts_with("ALERT") && l.contains("TicketTimedOut"))
    );
    let texts = rig.texts();
    rig.refresher.shutdown(Duration::from_secs(5));
    drop(rig);

    // Held out of rotation across a second restart: only a person lets it go.
    let rig = open();
    assert_eq!(rig.tick().refreshes_started, 0, "no login by itself");
    assert_eq!(rig.status("acct"), Status::Challenged);
    rig.pool.reset_challenge("acct").unwrap();
    assert_eq!(rig.status("acct"), Status::Expired);
    assert_eq!(
        rig.tick().refreshes_started,
        1,
        "the person's reset frees it"
    );
    assert_no_leak(&[&texts, &rig.texts()], &[&password]);
}

#[test]
fn a_credential_removed_while_it_refreshes_does_not_stop_the_ticks() {
    let clock = ManualClock::at(T0);
    let (server, state) = site_server(clock.clone());
    let rt0 = canary("rt");
    {
        let mut s = state.lock().unwrap();
        s.token.current = rt0.clone();
        s.token_delay = Duration::from_millis(200);
    }
    // SAFETY: a variable name used by this test only.
    unsafe { std::env::set_var("CREDPOOL_E2E_CLIENT_SECRET_2", "x") };
    let toml = format!(
        "[sites.\"{SITE}\"]\nmethod = \"oauth-refresh\"\ntoken_url = \"{}\"\nclient_id = \"crawler\"\nclient_secret_env = \"CREDPOOL_E2E_CLIENT_SECRET_2\"\n",
        server.url("/oauth/token"),
    );
    let rig = rig(clock.clone(), &toml, None);
    let mut s = Secrets::default();
    s.refresh_token = Some(rt0.clone());
    rig.add("gone", CredentialKind::Token, Some(T0 + 60_000), s);
    let mut s = Secrets::default();
    s.refresh_token = Some(rt0.clone());
    rig.add("kept", CredentialKind::Token, Some(T0 + 3_600_000), s);
    assert_eq!(rig.pool.tick().unwrap().refreshes_started, 1);
    rig.pool.remove("gone").unwrap();
    let end = Instant::now() + WAIT;
    while rig.refresher.in_flight() > 0 {
        assert!(Instant::now() < end);
        std::thread::sleep(Duration::from_millis(2));
    }
    // Its result is refused by the policy; the tick goes on.
    rig.pool.tick().unwrap();
    assert_eq!(rig.stats().refresh.in_flight, 0);
    assert_eq!(rig.stats().total, 1);
}

#[test]
fn credpool_run_opens_a_ticket_and_challenge_answer_resumes_the_login() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bin = own_binary(dir.path());
    let cmd = || {
        let mut c = std::process::Command::new(&bin);
        c.arg("--data-dir")
            .arg(&data)
            .arg("--config")
            .arg(dir.path().join("credpool.toml"))
            .env_remove("CREDENTIAL_ENCRYPTION_KEY");
        c
    };
    assert!(cmd().arg("init").status().unwrap().success());
    let (server, state) = site_server(ManualClock::starting_now());
    let password = canary("pw");
    let code = "493817";
    {
        let mut s = state.lock().unwrap();
        s.password = password.clone();
        s.sms_code = code.into();
    }
    std::fs::write(
        dir.path().join("credpool.toml"),
        format!(
            "[sites.\"{SITE}\"]\nmethod = \"relogin\"\n{}",
            login_toml(SITE, &server)
        ),
    )
    .unwrap();
    let mut add = cmd()
        .args([
            "add",
            "--site",
            SITE,
            "--type",
            "account",
            "--id",
            "acct",
            "--username",
            "sms-user",
            "--phone",
            "13800135678",
            "--password-stdin",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    assert!(add.wait().unwrap().success());

    let log_path = dir.path().join("run.log");
    let child = cmd()
        .args(["run", "--interval-ms", "50"])
        .stdout(std::fs::File::create(dir.path().join("run.out")).unwrap())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let book = data.join("tickets.json");
    let wait_for = |what: &str, f: &dyn Fn() -> bool| {
        let end = Instant::now() + WAIT;
        while !f() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for("a ticket", &|| !read_ticket_book(&book).is_empty());
    let ticket = read_ticket_book(&book)[0].clone();
    assert_eq!(ticket["kind"], "sms-code");
    assert_eq!(ticket["credential_id"], "acct");
    let id = ticket["id"].as_str().unwrap().to_string();
    let out = cmd()
        .args(["challenge", "answer", &id, code])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the resumed login", &|| {
        read_ticket_book(&book).is_empty() && !server.hits("/sms").is_empty()
    });
    assert_eq!(server.hits("/login").len(), 1, "resumed, not restarted");
    assert_eq!(server.hits("/sms")[0].form()["code"], code);
    assert_eq!(server.hits("/login")[0].form()["user"], "sms-user");
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut child = child;
    assert!(child.wait().unwrap().success());

    let out = cmd().args(["stats", "--json"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats[0]["by_status"]["active"], 1, "{stats}");
    assert_eq!(stats[0]["refresh"]["success_rate"], 1.0, "{stats}");
    assert_eq!(stats[0]["open_tickets"], 0, "{stats}");
    let text = cmd().args(["stats"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(text.contains("100.0%"), "{text}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    let book_text = std::fs::read_to_string(&book).unwrap_or_default();
    assert_no_leak(
        &[&log, &book_text, &stats.to_string(), &text],
        &[&password, code, "login1", "13800135678"],
    );
}
