//! A lost refresh answer must not lose the account (issue 13, part 3).
//!
//! The token endpoint here rotates the refresh token on every use and
//! accepts a retired token again only within a grace window (N s after it
//! was first retired) or never; it can commit a rotation and then close
//! the connection without an answer, or answer 502. Driven through the
//! component in the host (the policy decides when to retry) on a hand-moved
//! clock, and through the built `credpool run` and `credpool tick` on the
//! real one. The retry times are the endpoint's own record.

use crate::support;

use credpool::backend::MemoryBackend;
use credpool::config::ConfigFile;
use credpool::crypto::KeyRing;
use credpool::events::MemorySink;
use credpool::lifecycle::{Refresher, RefresherOptions};
use credpool::vault::Vault;
use credpool::{
    AccessLevel, CredentialKind, ManualClock, NewCredential, Pool, PoolOptions, RefreshMethod,
    RefreshOutcome, RefreshRequest, Secrets, Status,
};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::T0;
use support::fixtures::assert_no_leak;
use support::loopback::*;

const SITE: &str = "127.0.0.1";

/// How the endpoint loses an answer after committing the rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lose {
    /// Closes the connection without a word.
    Drop,
    /// Answers 502, as a proxy whose upstream died after the commit.
    BadGateway,
}

/// One request as the endpoint saw it.
#[derive(Clone, Debug)]
struct Hit {
    /// When, by the endpoint's clock (ms).
    at: i64,
    /// `ok`, `lost` or `invalid_grant`.
    answer: &'static str,
}

/// A rotating token endpoint with a grace window for retired tokens.
struct Endpoint {
    now: Box<dyn Fn() -> i64 + Send>,
    grace_ms: i64,
    current: String,
    /// Retired token -> when it was first retired.
    retired: HashMap<String, i64>,
    issued: u32,
    lose_next: u32,
    lose: Lose,
    /// Hold the answer to this request (1-based) this long after committing.
    slow: Option<(usize, Duration)>,
    hits: Vec<Hit>,
}

impl Endpoint {
    fn grant(&mut self, form: &HashMap<String, String>) -> (Resp, Duration) {
        let now = (self.now)();
        let rt = form.get("refresh_token").cloned().unwrap_or_default();
        let honoured = rt == self.current
            || self
                .retired
                .get(&rt)
                .is_some_and(|t| now - t < self.grace_ms);
        if !honoured {
            self.hits.push(Hit {
                at: now,
                answer: "invalid_grant",
            });
            let body = r#"{"error":"invalid_grant"}"#;
            return (
                reply(400, &[("Content-Type", "application/json")], body),
                Duration::ZERO,
            );
        }
        // Committed: the token sent and the one it may have replaced (never
        // delivered) are retired; a new one is current.
        self.issued += 1;
        let new = format!(
            "{}-rt{}",
            self.current.split("-rt").next().unwrap(),
            self.issued
        );
        self.retired.entry(rt).or_insert(now);
        self.retired.entry(self.current.clone()).or_insert(now);
        self.current = new.clone();
        if self.lose_next > 0 {
            self.lose_next -= 1;
            self.hits.push(Hit {
                at: now,
                answer: "lost",
            });
            return match self.lose {
                Lose::Drop => (Resp::Drop, Duration::ZERO),
                Lose::BadGateway => (reply(502, &[], "<html>Bad Gateway</html>"), Duration::ZERO),
            };
        }
        self.hits.push(Hit {
            at: now,
            answer: "ok",
        });
        let hold = match self.slow {
            Some((n, d)) if n == self.hits.len() => d,
            _ => Duration::ZERO,
        };
        let body = format!(
            r#"{{"access_token":"at-{}","token_type":"Bearer","expires_in":3600,"refresh_token":"{new}"}}"#,
            self.issued
        );
        (
            reply(200, &[("Content-Type", "application/json")], &body),
            hold,
        )
    }

    /// Gaps between one request and the next, ms.
    fn gaps(&self) -> Vec<i64> {
        self.hits.windows(2).map(|w| w[1].at - w[0].at).collect()
    }

    fn answers(&self) -> Vec<&'static str> {
        self.hits.iter().map(|h| h.answer).collect()
    }
}

fn endpoint(
    now: impl Fn() -> i64 + Send + 'static,
    first: &str,
    grace: Duration,
    lose: Lose,
    lose_next: u32,
) -> (Server, Arc<Mutex<Endpoint>>) {
    let state = Arc::new(Mutex::new(Endpoint {
        now: Box::new(now),
        grace_ms: grace.as_millis() as i64,
        current: first.to_string(),
        retired: HashMap::new(),
        issued: 0,
        lose_next,
        lose,
        slow: None,
        hits: Vec::new(),
    }));
    let st = state.clone();
    let server = serve(move |r| {
        if r.method != "POST" || r.path != "/oauth/token" {
            return reply(404, &[], "");
        }
        let (resp, hold) = st.lock().unwrap().grant(&r.form());
        std::thread::sleep(hold);
        resp
    });
    (server, state)
}

fn site_toml(server: &Server) -> String {
    site_toml_with(server, "")
}

fn site_toml_with(server: &Server, extra: &str) -> String {
    format!(
        "[sites.\"{SITE}\"]\nmethod = \"oauth-refresh\"\ntoken_url = \"{}\"\nclient_id = \"crawler\"\nclient_auth = \"body\"\n{extra}",
        server.url("/oauth/token")
    )
}

// ------------------------------------------------- through the component

/// The pool (component in the host) with a refresher, on a manual clock,
/// holding one token `id` due for refresh at once.
struct Rig {
    pool: Pool,
    refresher: Arc<Refresher>,
    clock: ManualClock,
    sink: Arc<MemorySink>,
    id: String,
}

impl Rig {
    fn new(clock: &ManualClock, server: &Server, id: &str, rt0: &str) -> Rig {
        Rig::with(clock, &site_toml(server), id, rt0)
    }

    fn with(clock: &ManualClock, toml: &str, id: &str, rt0: &str) -> Rig {
        logs();
        let config = ConfigFile::parse(toml).unwrap();
        let mut options = PoolOptions::in_memory();
        options.clock = Some(clock.clone());
        options.policy_config = config.policy_config_json();
        let sink = Arc::new(MemorySink::default());
        options.events = sink.clone();
        let pool = Pool::open(options).unwrap();
        let refresher = pool
            .attach_refresher(RefresherOptions::new(config.sites.clone()))
            .unwrap();
        // 20 minutes from expiry: due at once (refreshed 30 min before).
        let mut new = NewCredential::new(SITE, CredentialKind::Token).with_id(id);
        new.expires_at = Some(clock.now_ms() + 20 * 60_000);
        new.secrets.refresh_token = Some(rt0.to_string());
        pool.add(new).unwrap();
        Rig {
            pool,
            refresher,
            clock: clock.clone(),
            sink,
            id: id.to_string(),
        }
    }

    /// Ticks every `step` of the clock (each tick's refreshes finished and
    /// handed to the policy) until `done` or `limit` of clock time.
    fn run(&self, step: Duration, limit: Duration, done: impl Fn() -> bool) {
        let end = self.clock.now_ms() + limit.as_millis() as i64;
        while self.clock.now_ms() < end {
            self.pool.tick().unwrap();
            let wall = Instant::now() + Duration::from_secs(20);
            while self.refresher.in_flight() > 0 {
                assert!(Instant::now() < wall, "a refresh did not finish");
                std::thread::sleep(Duration::from_millis(2));
            }
            while self.pool.deliver_refresh_results().unwrap() > 0 {}
            if done() {
                return;
            }
            self.clock.advance(step);
        }
    }

    fn status(&self) -> Status {
        self.pool
            .view(&self.id, AccessLevel::Internal)
            .unwrap()
            .status
    }

    fn secrets(&self) -> Secrets {
        self.pool
            .vault()
            .get_secrets(SITE, &self.id)
            .unwrap()
            .unwrap()
    }

    fn alerts(&self) -> Vec<String> {
        self.sink
            .lines()
            .into_iter()
            .filter(|l| l.starts_with("ALERT") && l.contains("RefreshFailed"))
            .collect()
    }

    /// This credential's `[CRED]` lines in the test binary's log.
    fn cred_lines(&self) -> Vec<String> {
        let me = format!("credential={} ", self.id);
        logs()
            .lines()
            .filter(|l| l.contains("[CRED]") && l.contains(&me))
            .map(str::to_string)
            .collect()
    }
}

/// The clock advances this much between ticks.
const STEP: Duration = Duration::from_millis(100);

/// A grace window of 30 s (Okta's default) and `lost` answers in a row,
/// each lost as `lose`: the account must come through active, holding the
/// endpoint's newest token. Returns the endpoint's gaps between requests.
fn saved_within_grace(id: &str, lose: Lose, lost: u32) -> Vec<i64> {
    let rt0 = canary("rt");
    let clock = ManualClock::at(T0);
    let c = clock.clone();
    let (server, ep) = endpoint(
        move || c.now_ms(),
        &rt0,
        Duration::from_secs(30),
        lose,
        lost,
    );
    let rig = Rig::new(&clock, &server, id, &rt0);
    let ep2 = ep.clone();
    rig.run(STEP, Duration::from_secs(60), move || {
        ep2.lock().unwrap().answers().contains(&"ok")
    });
    let e = ep.lock().unwrap();
    let mut want = vec!["lost"; lost as usize];
    want.push("ok");
    assert_eq!(e.answers(), want, "{lose:?}: {:?}", e.hits);
    assert_eq!(rig.status(), Status::Active, "{lose:?}: no account lost");
    let s = rig.secrets();
    assert_eq!(
        s.refresh_token.as_deref(),
        Some(e.current.as_str()),
        "{lose:?}: the newest token is kept"
    );
    let at = format!("at-{}", lost + 1);
    assert_eq!(s.access_token.as_deref(), Some(at.as_str()));
    let span = e.hits.last().unwrap().at - e.hits[0].at;
    assert!(
        span < 30_000,
        "{lose:?}: inside the grace window: {:?}",
        e.gaps()
    );
    let lines = rig.cred_lines();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("refresh answer lost"))
            .count(),
        lost as usize,
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("refresh recovered")),
        "{lines:?}"
    );
    assert!(rig.alerts().is_empty(), "{:?}", rig.alerts());
    assert_no_leak(&[&logs()], &[&rt0, &e.current]);
    e.gaps()
}

#[test]
fn a_dropped_answer_is_retried_within_seconds_and_the_account_kept() {
    let gaps = saved_within_grace("lost-drop", Lose::Drop, 1);
    eprintln!("dropped answer: retry after {gaps:?} ms");
    // The first retry comes 0.75-1.25 s after the loss (plus a tick).
    assert!(gaps[0] >= 700 && gaps[0] <= 1_400, "{gaps:?}");
}

#[test]
fn a_502_after_the_commit_is_retried_within_seconds_and_the_account_kept() {
    let gaps = saved_within_grace("lost-502", Lose::BadGateway, 1);
    eprintln!("502 after commit: retry after {gaps:?} ms");
    assert!(gaps[0] >= 700 && gaps[0] <= 1_400, "{gaps:?}");
}

#[test]
fn three_answers_lost_in_a_row_are_still_saved_inside_a_30s_grace_window() {
    // Before: retries 15-30 s apart, then 30-60 s: past 30 s at the second.
    let gaps = saved_within_grace("lost-three", Lose::Drop, 3);
    eprintln!("three lost answers: retries after {gaps:?} ms");
    assert_eq!(gaps.len(), 3);
    for (g, nominal) in gaps.iter().zip([1_000, 2_000, 4_000]) {
        assert!(
            *g >= nominal * 3 / 4 && *g <= nominal * 5 / 4 + 200,
            "{gaps:?}"
        );
    }
}

#[test]
fn the_old_schedule_loses_the_account_inside_a_30s_grace_window() {
    // `fast_retries = 0` is the schedule before: 15-30 s, then 30-60 s.
    let rt0 = canary("rt");
    let clock = ManualClock::at(T0);
    let c = clock.clone();
    let (server, ep) = endpoint(
        move || c.now_ms(),
        &rt0,
        Duration::from_secs(30),
        Lose::Drop,
        3,
    );
    let toml = site_toml_with(&server, "fast_retries = 0\n");
    let rig = Rig::with(&clock, &toml, "old-schedule", &rt0);
    let ep2 = ep.clone();
    rig.run(STEP, Duration::from_secs(180), move || {
        ep2.lock().unwrap().answers().contains(&"invalid_grant")
    });
    let e = ep.lock().unwrap();
    eprintln!("old schedule: retries after {:?} ms", e.gaps());
    assert!(e.gaps()[0] >= 15_000, "{:?}", e.gaps());
    assert_eq!(e.answers().last(), Some(&"invalid_grant"), "{:?}", e.hits);
    assert_eq!(rig.status(), Status::Expired, "lost");
}

#[test]
fn without_a_grace_window_the_loss_is_told_not_hidden() {
    for (id, lose) in [
        ("nograce-drop", Lose::Drop),
        ("nograce-502", Lose::BadGateway),
    ] {
        let rt0 = canary("rt");
        let clock = ManualClock::at(T0);
        let c = clock.clone();
        let (server, ep) = endpoint(move || c.now_ms(), &rt0, Duration::ZERO, lose, 1);
        let rig = Rig::new(&clock, &server, id, &rt0);
        let ep2 = ep.clone();
        rig.run(STEP, Duration::from_secs(60), move || {
            ep2.lock().unwrap().answers().contains(&"invalid_grant")
        });
        let after_refusal = ep.lock().unwrap().hits.len();
        {
            let e = ep.lock().unwrap();
            assert_eq!(e.answers(), ["lost", "invalid_grant"], "{lose:?}");
            // The retry came as soon as it would have with a grace window:
            // nothing a retry could have saved was lost by waiting.
            assert!(e.gaps()[0] <= 1_400, "{:?}", e.gaps());
            eprintln!("no grace ({lose:?}): retry after {:?} ms", e.gaps());
        }
        // The account is out of rotation, marked for a new login, with an
        // alert and a [CRED] line that says why.
        assert_eq!(rig.status(), Status::Expired, "{lose:?}");
        let alerts = rig.alerts();
        assert!(
            alerts.iter().any(|a| a.contains("invalid-grant")),
            "{alerts:?}"
        );
        let lines = rig.cred_lines();
        let refused = lines
            .iter()
            .find(|l| l.contains("refresh token refused"))
            .unwrap_or_else(|| panic!("{lines:?}"));
        assert!(
            refused.contains("after an answer was lost")
                && refused.contains("no grace window")
                && refused.contains("needs a new login"),
            "{refused}"
        );
        // Nothing stored from the lost answer; the dead token is not
        // hammered (no fast retry after a refusal).
        assert_eq!(rig.secrets().refresh_token.as_deref(), Some(rt0.as_str()));
        rig.run(STEP, Duration::from_secs(10), || false);
        assert_eq!(ep.lock().unwrap().hits.len(), after_refusal, "{lose:?}");
        assert_no_leak(&[&logs()], &[&rt0]);
    }
}

/// A grant the host could not send (its client secret's variable unset)
/// lost no answer: it is a plain failure, said as no loss, and nothing waits
/// on a prompt retry.
#[test]
fn a_grant_never_sent_is_not_a_lost_answer() {
    let clock = ManualClock::at(T0);
    let rt0 = canary("rt");
    let c = clock.clone();
    let (server, ep) = endpoint(move || c.now_ms(), &rt0, Duration::ZERO, Lose::Drop, 0);
    let toml = site_toml_with(
        &server,
        "client_secret_env = \"CREDPOOL_TEST_NEVER_SET_7F3A\"\n",
    );
    let rig = Rig::with(&clock, &toml, "never-sent", &rt0);
    rig.run(STEP, Duration::from_secs(5), || false);
    assert!(rig.refresher.runs() > 0, "the refresh was tried");
    assert!(ep.lock().unwrap().answers().is_empty(), "nothing was sent");
    assert_eq!(rig.refresher.unsettled_lost_answers(), 0);
    assert!(
        !rig.cred_lines()
            .iter()
            .any(|l| l.contains("refresh answer lost")),
        "{:?}",
        rig.cred_lines()
    );
}

#[test]
fn a_late_answer_does_not_overwrite_a_newer_token() {
    logs();
    let rt0 = canary("rt");
    let (server, ep) = endpoint(
        || chrono::Utc::now().timestamp_millis(),
        &rt0,
        Duration::from_secs(30),
        Lose::Drop,
        0,
    );
    // The first answer is held 800 ms after its commit.
    ep.lock().unwrap().slow = Some((1, Duration::from_millis(800)));
    // Two refreshers on one store (as two hosts on one shared store).
    let backend = Arc::new(MemoryBackend::new());
    let keys = Arc::new(KeyRing::ephemeral().unwrap());
    let config = ConfigFile::parse(&site_toml(&server)).unwrap();
    let refresher = || {
        let vault = Arc::new(Vault::new(backend.clone(), keys.clone(), "default"));
        (
            vault.clone(),
            Refresher::new(vault, RefresherOptions::new(config.sites.clone())).unwrap(),
        )
    };
    let (vault, first) = refresher();
    let (_, second) = refresher();
    let mut s = Secrets::default();
    s.refresh_token = Some(rt0.clone());
    vault.put_secrets(SITE, "late", &s).unwrap();
    let req = |n| RefreshRequest {
        request_id: n,
        credential_id: "late".into(),
        site: SITE.into(),
        method: RefreshMethod::OauthRefresh,
        ticket_id: None,
    };
    first.submit(req(1)).unwrap();
    while ep.lock().unwrap().hits.is_empty() {
        std::thread::sleep(Duration::from_millis(5));
    }
    // The first answer is on its way; the second refresher retries with
    // the same token (inside the grace window) and stores the newest.
    second.submit(req(2)).unwrap();
    let got = second.wait(2, Duration::from_secs(20)).unwrap();
    assert!(matches!(got.outcome, RefreshOutcome::Refreshed(Some(_))));
    let newest = ep.lock().unwrap().current.clone();
    assert_eq!(
        vault
            .get_secrets(SITE, "late")
            .unwrap()
            .unwrap()
            .refresh_token,
        Some(newest.clone())
    );
    // The late answer arrives: it does not replace the newer token.
    let late = first.wait(1, Duration::from_secs(20)).unwrap();
    assert!(
        matches!(late.outcome, RefreshOutcome::Refreshed(None)),
        "{:?}",
        late.outcome
    );
    let kept = vault.get_secrets(SITE, "late").unwrap().unwrap();
    assert_eq!(kept.refresh_token, Some(newest.clone()));
    assert_eq!(kept.access_token.as_deref(), Some("at-2"));
    assert!(
        logs().contains("[CRED] late refresh answer not kept credential=late "),
        "the late answer is told"
    );
    assert_eq!(ep.lock().unwrap().answers(), ["ok", "ok"]);
    assert_no_leak(&[&logs()], &[&rt0, &newest]);
}

// ----------------------------------------------------- through the binary

/// `credpool init` in a temp dir, the site configured, one token imported
/// 20 minutes from expiry.
fn cli_store(server: &Server, id: &str, rt0: &str) -> tempfile::TempDir {
    let dir = support::initialised();
    std::fs::write(dir.path().join("credpool.toml"), site_toml(server)).unwrap();
    let expires = chrono::Utc::now() + chrono::Duration::minutes(20);
    let file = dir.path().join("tok.json");
    let record = serde_json::json!([{
        "id": id,
        "site": SITE,
        "type": "token",
        "expires_at": expires.to_rfc3339(),
        "secrets": {"refresh_token": rt0},
    }]);
    std::fs::write(&file, record.to_string()).unwrap();
    support::ok(&support::credpool(
        dir.path(),
        &["import", file.to_str().unwrap(), "--format", "json"],
    ));
    dir
}

/// The first value under `key` anywhere in `v`.
fn find<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) => m.get(key).or_else(|| m.values().find_map(|x| find(x, key))),
        Value::Array(a) => a.iter().find_map(|x| find(x, key)),
        _ => None,
    }
}

/// (status, refresh token) as `credpool show --reveal --json` prints them.
fn shown(dir: &std::path::Path, id: &str) -> (String, String) {
    let v = support::json(&support::credpool(dir, &["show", id, "--reveal", "--json"]));
    let s = |k| {
        find(&v, k)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no {k} in {v}"))
            .to_string()
    };
    (s("status"), s("refresh_token"))
}

fn wall_clock() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[test]
fn credpool_run_retries_a_dropped_answer_on_its_own() {
    let rt0 = canary("rt");
    let (server, ep) = endpoint(wall_clock, &rt0, Duration::from_secs(30), Lose::Drop, 1);
    let dir = cli_store(&server, "cli-run", &rt0);
    // No crawler asks: `run` alone ticks (every second, as by default).
    let out = support::run_credpool(
        dir.path(),
        &["run", "--ticks", "6", "--interval-ms", "1000"],
        "",
        &[("CREDPOOL_LOG", "info")],
    );
    let err = support::stderr(&out);
    assert!(out.status.success(), "{err}");
    let e = ep.lock().unwrap();
    assert_eq!(e.answers(), ["lost", "ok"], "{err}");
    eprintln!("credpool run: retry after {:?} ms (wall clock)", e.gaps());
    // 0.75-1.25 s, plus up to one 1 s interval, on a busy machine.
    assert!(e.gaps()[0] <= 4_000, "{:?}", e.gaps());
    let (status, rt) = shown(dir.path(), "cli-run");
    assert_eq!(status, "active");
    assert_eq!(rt, e.current, "the newest token is kept");
    assert!(
        err.contains("[CRED] refresh answer lost credential=cli-run"),
        "{err}"
    );
    assert!(
        err.contains("[CRED] refresh recovered credential=cli-run"),
        "{err}"
    );
    assert_no_leak(&[&err], &[&rt0, &e.current]);
}

#[test]
fn credpool_tick_stays_for_the_retry_and_says_when_it_cannot_save_the_account() {
    // With a grace window: one `tick` (as cron runs it) saves the account.
    let rt0 = canary("rt");
    let (server, ep) = endpoint(
        wall_clock,
        &rt0,
        Duration::from_secs(30),
        Lose::BadGateway,
        1,
    );
    let dir = cli_store(&server, "cli-tick", &rt0);
    let out = support::credpool(dir.path(), &["tick"]);
    let err = support::stderr(&out);
    assert!(out.status.success(), "{err}");
    {
        let e = ep.lock().unwrap();
        assert_eq!(e.answers(), ["lost", "ok"], "{err}");
        eprintln!("credpool tick: retry after {:?} ms (wall clock)", e.gaps());
        assert!(e.gaps()[0] <= 4_000, "{:?}", e.gaps());
        let (status, rt) = shown(dir.path(), "cli-tick");
        assert_eq!(
            (status.as_str(), rt.as_str()),
            ("active", e.current.as_str())
        );
    }
    // Without one: the account is marked for a new login and told why.
    let rt0 = canary("rt");
    let (server, ep) = endpoint(wall_clock, &rt0, Duration::ZERO, Lose::Drop, 1);
    let dir = cli_store(&server, "cli-nograce", &rt0);
    let out = support::credpool(dir.path(), &["tick"]);
    let err = support::stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        ep.lock().unwrap().answers(),
        ["lost", "invalid_grant"],
        "{err}"
    );
    let (status, rt) = shown(dir.path(), "cli-nograce");
    assert_eq!((status.as_str(), rt.as_str()), ("expired", rt0.as_str()));
    let line = err
        .lines()
        .find(|l| l.contains("[CRED] refresh token refused credential=cli-nograce"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains("after an answer was lost") && line.contains("credpool remove cli-nograce"),
        "{line}"
    );
    assert_no_leak(&[&err], &[&rt0]);
}

#[test]
fn credpool_serve_retries_a_dropped_answer_on_its_own() {
    let rt0 = canary("rt");
    let (server, ep) = endpoint(wall_clock, &rt0, Duration::from_secs(30), Lose::Drop, 1);
    let dir = cli_store(&server, "cli-serve", &rt0);
    // The default interval (1 s); no crawler calls the server.
    let served =
        support::server::Served::try_start(dir.path(), &["--listen", "127.0.0.1:0"], Some("info"))
            .unwrap_or_else(|log| panic!("serve did not start:\n{log}"));
    let end = Instant::now() + Duration::from_secs(30);
    while ep.lock().unwrap().answers() != ["lost", "ok"] {
        assert!(
            Instant::now() < end,
            "{:?}\n{}",
            ep.lock().unwrap().hits,
            served.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, log) = served.stop();
    assert!(status.success(), "{log}");
    let e = ep.lock().unwrap();
    eprintln!("credpool serve: retry after {:?} ms (wall clock)", e.gaps());
    // 0.75-1.25 s, plus up to one 1 s interval, on a busy machine.
    assert!(e.gaps()[0] <= 4_000, "{:?}", e.gaps());
    let (status, rt) = shown(dir.path(), "cli-serve");
    assert_eq!(
        (status.as_str(), rt.as_str()),
        ("active", e.current.as_str())
    );
    assert!(
        log.contains("[CRED] refresh recovered credential=cli-serve"),
        "{log}"
    );
    assert_no_leak(&[&log], &[&rt0, &e.current]);
}
