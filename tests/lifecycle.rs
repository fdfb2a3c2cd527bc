//! Session lifecycle, host side, against real HTTP servers on 127.0.0.1
//! started by each test: cookie visits, OAuth rotation, invalid_grant,
//! single flight, form logins with TOTP and SMS challenges, tickets,
//! health checks, and no secret in any log line, notification or ticket.
//!
//! The policy does not schedule refreshes yet (its lifecycle module is not
//! wired into the pool), so these tests drive the host machinery directly
//! through `Refresher::submit`/`wait` and the notifiers, doing what the
//! policy will do. The servers are a small HTTP/1.1 responder below (std
//! only: no server framework to compile for a few canned answers).

use crate::support;

use base64::Engine;
use credpool::backend::MemoryBackend;
use credpool::crypto::KeyRing;
use credpool::events::EventSink;
use credpool::lifecycle::notifiers::{Notifiers, NotifySection, read_ticket_book};
use credpool::lifecycle::sites::SiteConfig;
use credpool::lifecycle::{Refresher, RefresherOptions, answers, totp};
use credpool::vault::Vault;
use credpool::{
    ChallengeKind, RefreshFailure, RefreshMethod, RefreshOutcome, RefreshRequest, RefreshResult,
};
use credpool::{ManualClock, Secrets};
use credpool::{Ticket, TicketClosure};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::fixtures::*;
use support::loopback::*;
use zeroize::Zeroizing;

const SITE: &str = "127.0.0.1";
const T0: i64 = 1_767_225_600_000;
const WAIT: Duration = Duration::from_secs(20);

struct Rig {
    vault: Arc<Vault>,
    refresher: Arc<Refresher>,
    clock: ManualClock,
    next: AtomicU64,
}

fn rig(sites: &[(&str, SiteConfig)]) -> Rig {
    rig_with(sites, Arc::new(KeyRing::ephemeral().unwrap()), None)
}

fn rig_with(
    sites: &[(&str, SiteConfig)],
    keys: Arc<KeyRing>,
    answer_dir: Option<std::path::PathBuf>,
) -> Rig {
    logs();
    // "default": the tenant `credpool challenge answer` seals for.
    let vault = Arc::new(Vault::new(Arc::new(MemoryBackend::new()), keys, "default"));
    let clock = ManualClock::at(T0);
    let mut o = RefresherOptions::new(
        sites
            .iter()
            .map(|(n, s)| (n.to_string(), s.clone()))
            .collect::<BTreeMap<_, _>>(),
    );
    o.clock = Some(clock.clone());
    o.answer_dir = answer_dir;
    let refresher = Refresher::new(vault.clone(), o).unwrap();
    Rig {
        vault,
        refresher,
        clock,
        next: AtomicU64::new(1),
    }
}

impl Rig {
    fn submit(&self, id: &str, method: RefreshMethod, ticket: Option<&str>) -> u64 {
        let request_id = self.next.fetch_add(1, Ordering::SeqCst);
        self.refresher
            .submit(RefreshRequest {
                request_id,
                credential_id: id.into(),
                site: SITE.into(),
                method,
                ticket_id: ticket.map(str::to_string),
            })
            .expect("queued");
        request_id
    }

    fn run(&self, id: &str, method: RefreshMethod, ticket: Option<&str>) -> RefreshResult {
        let rid = self.submit(id, method, ticket);
        self.refresher.wait(rid, WAIT).expect("a result in time")
    }

    fn secrets(&self, id: &str) -> Secrets {
        self.vault.get_secrets(SITE, id).unwrap().expect("stored")
    }
}

fn site(toml_text: &str) -> SiteConfig {
    let c =
        credpool::config::ConfigFile::parse(&format!("[sites.\"{SITE}\"]\n{toml_text}")).unwrap();
    c.sites[SITE].clone()
}

fn o(x: &RefreshOutcome) -> String {
    format!("{x:?}")
}

// ----------------------------------------------------------------- tests

#[test]
fn cookie_visit_merges_rotated_cookies_and_updates_expiry() {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let s1 = canary("sid");
    let s1b = s1.clone();
    let server = serve(move |r| {
        let k = n2.fetch_add(1, Ordering::SeqCst);
        let want = if k == 0 {
            s1b.clone()
        } else {
            format!("rot{k}")
        };
        if r.cookie("sid").as_deref() != Some(want.as_str()) {
            return reply(302, &[("Location", "/login")], "");
        }
        let sid = format!("sid=rot{}; Max-Age=3600; Path=/", k + 1);
        reply(
            200,
            &[
                ("Set-Cookie", &sid),
                ("Set-Cookie", "old=; Max-Age=0; Path=/"),
                ("Set-Cookie", "pref=zh; Max-Age=86400; Path=/"),
            ],
            "ok",
        )
    });
    let rig = rig(&[(
        SITE,
        site(&format!(
            "method = \"cookie-visit\"\nrefresh_url = \"{}\"\n[sites.\"{SITE}\".logout]\nredirect_to = [\"/login\"]\n",
            server.url("/home")
        )),
    )]);
    let mut s = Secrets::default();
    s.cookies = vec![
        ("sid".into(), s1.clone()),
        ("old".into(), "gone-soon".into()),
    ];
    rig.vault.put_secrets(SITE, "c1", &s).unwrap();

    let r = rig.run("c1", RefreshMethod::CookieVisit, None);
    assert_eq!(
        o(&r.outcome),
        o(&RefreshOutcome::Refreshed(Some(T0 + 3_600_000)))
    );
    let got = rig.secrets("c1");
    let names: Vec<&str> = got.cookies.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec!["sid", "pref"],
        "old deleted by Max-Age=0, pref added"
    );
    assert_eq!(got.cookies[0].1, "rot1");
    // The next visit sends the rotated cookie and keeps rotating.
    rig.clock.advance(Duration::from_secs(600));
    let r = rig.run("c1", RefreshMethod::CookieVisit, None);
    assert_eq!(
        o(&r.outcome),
        o(&RefreshOutcome::Refreshed(Some(T0 + 600_000 + 3_600_000)))
    );
    assert_eq!(rig.secrets("c1").cookies[0].1, "rot2");
    // A visit with a cookie the site no longer knows is a logout.
    let mut stale = rig.secrets("c1");
    stale.cookies[0].1 = "nope".into();
    rig.vault.put_secrets(SITE, "c1", &stale).unwrap();
    let r = rig.run("c1", RefreshMethod::CookieVisit, None);
    assert_eq!(
        o(&r.outcome),
        o(&RefreshOutcome::Failed((
            RefreshFailure::LoggedOut,
            Some(302)
        )))
    );
    assert_no_leak(&[&logs()], &[&s1]);
}

/// A token endpoint (see [`Rotation`]) that checks HTTP Basic client auth.
fn token_server(first: &str, client_secret: &str) -> (Server, Arc<Mutex<Rotation>>) {
    let state = Arc::new(Mutex::new(Rotation {
        current: first.into(),
        ..Rotation::default()
    }));
    let st = state.clone();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("crawler:{client_secret}"))
    );
    let server = serve(move |r| {
        if r.header("authorization") != Some(basic.as_str()) {
            return reply(401, &[], r#"{"error":"invalid_client"}"#);
        }
        if r.method != "POST" {
            return reply(405, &[], "");
        }
        let f = r.form();
        assert_eq!(
            f.get("grant_type").map(String::as_str),
            Some("refresh_token")
        );
        st.lock().unwrap().grant(&f)
    });
    (server, state)
}

fn oauth_site(server: &Server, env: &str) -> SiteConfig {
    site(&format!(
        "method = \"oauth-refresh\"\ntoken_url = \"{}\"\nclient_id = \"crawler\"\nclient_secret_env = \"{env}\"\n",
        server.url("/oauth/token")
    ))
}

#[test]
fn oauth_rotation_never_loses_the_account_when_an_answer_is_dropped() {
    let secret = canary("client");
    // SAFETY: a variable name used by this test only.
    unsafe { std::env::set_var("CREDPOOL_TEST_SECRET_ROT", &secret) };
    let rt0 = canary("rt");
    let (server, state) = token_server(&rt0, &secret);
    let rig = rig(&[(SITE, oauth_site(&server, "CREDPOOL_TEST_SECRET_ROT"))]);
    let mut s = Secrets::default();
    s.refresh_token = Some(rt0.clone());
    rig.vault.put_secrets(SITE, "tok", &s).unwrap();

    state.lock().unwrap().drop_next = true;
    let r = rig.run("tok", RefreshMethod::OauthRefresh, None);
    assert_eq!(
        o(&r.outcome),
        o(&RefreshOutcome::Failed((RefreshFailure::Network, None)))
    );
    assert_eq!(
        rig.secrets("tok").refresh_token.as_deref(),
        Some(rt0.as_str()),
        "nothing stored from a lost answer"
    );

    // Retry: the server still honours the token we hold.
    let r = rig.run("tok", RefreshMethod::OauthRefresh, None);
    assert_eq!(
        o(&r.outcome),
        o(&RefreshOutcome::Refreshed(Some(T0 + 3_600_000)))
    );
    let got = rig.secrets("tok");
    let current = state.lock().unwrap().current.clone();
    assert_eq!(got.refresh_token.as_deref(), Some(current.as_str()));
    assert_eq!(
        got.previous_refresh_token.as_deref(),
        Some(rt0.as_str()),
        "old token kept for the grace window"
    );
    assert_eq!(got.previous_refresh_token_until, Some(T0 + 600_000));
    assert_eq!(got.access_token.as_deref(), Some("at-2"));
    // And the account keeps working.
    let r = rig.run("tok", RefreshMethod::OauthRefresh, None);
    assert!(matches!(r.outcome, RefreshOutcome::Refreshed(Some(_))));
    assert_no_leak(&[&logs()], &[&secret, &rt0, &current]);
}

#[test]
fn invalid_grant_is_reported_and_the_previous_token_is_tried_within_grace() {
    let secret = canary("client");
    // SAFETY: a variable name used by this test only.
    unsafe { std::env::set_var("CREDPOOL_TEST_SECRET_IG", &secret) };
    let good = canary("rtgood");
    let (server, _state) = token_server(&good, &secret);
    let rig = rig(&[(SITE, oauth_site(&server, "CREDPOOL_TEST_SECRET_IG"))]);
    // A token the server never issued: invalid_grant, nothing changes.
    let mut s = Secrets::default();
    s.refresh_token = Some("revoked".into());
    rig.vault.put_secrets(SITE, "bad", &s).unwrap();
    let r = rig.run("bad", RefreshMethod::OauthRefresh, None);
    assert_eq!(
        o(&r.outcome),
        o(&RefreshOutcome::Failed((
            RefreshFailure::InvalidGrant,
            Some(400)
        )))
    );
    assert_eq!(rig.secrets("bad").refresh_token.as_deref(), Some("revoked"));
    // The current token refused but the previous one still inside its
    // grace window: the previous one is tried and the account recovers.
    let mut s = Secrets::default();
    s.refresh_token = Some("lost-rotation".into());
    s.previous_refresh_token = Some(good.clone());
    s.previous_refresh_token_until = Some(T0 + 60_000);
    rig.vault.put_secrets(SITE, "graced", &s).unwrap();
    let r = rig.run("graced", RefreshMethod::OauthRefresh, None);
    assert!(
        matches!(r.outcome, RefreshOutcome::Refreshed(Some(_))),
        "{:?}",
        r.outcome
    );
    // Past the grace window the previous token is not used.
    let mut s = Secrets::default();
    s.refresh_token = Some("lost-rotation".into());
    s.previous_refresh_token = Some(good.clone());
    s.previous_refresh_token_until = Some(T0 - 1);
    rig.vault.put_secrets(SITE, "late", &s).unwrap();
    let r = rig.run("late", RefreshMethod::OauthRefresh, None);
    assert_eq!(
        o(&r.outcome),
        o(&RefreshOutcome::Failed((
            RefreshFailure::InvalidGrant,
            Some(400)
        )))
    );
}

#[test]
fn two_concurrent_triggers_make_one_request() {
    let server = serve(|_| {
        std::thread::sleep(Duration::from_millis(300));
        reply(200, &[("Set-Cookie", "sid=v2; Max-Age=60; Path=/")], "ok")
    });
    let rig = rig(&[(
        SITE,
        site(&format!(
            "method = \"cookie-visit\"\nrefresh_url = \"{}\"\n",
            server.url("/home")
        )),
    )]);
    let mut s = Secrets::default();
    s.cookies = vec![("sid".into(), "v1".into())];
    rig.vault.put_secrets(SITE, "c", &s).unwrap();
    let a = rig.submit("c", RefreshMethod::CookieVisit, None);
    let b = rig.submit("c", RefreshMethod::CookieVisit, None);
    let ra = rig.refresher.wait(a, WAIT).unwrap();
    let rb = rig.refresher.wait(b, WAIT).unwrap();
    assert_eq!(o(&ra.outcome), o(&rb.outcome));
    assert_eq!(
        (ra.request_id, rb.request_id),
        (a, b),
        "each trigger gets its own result"
    );
    assert_eq!(server.hits("/home").len(), 1, "one HTTP request");
    assert_eq!(rig.refresher.runs(), 1);
    assert_eq!(rig.refresher.in_flight(), 0);
}

fn login_site(server: &Server, extra: &str) -> SiteConfig {
    site(&format!(
        "method = \"relogin\"\n{}{extra}",
        login_toml(SITE, server)
    ))
}

/// A login form: the right password gets a step cookie and a second
/// step: TOTP for `totp-user`, an SMS code for `sms-user`.
fn login_server(password: &str, seed: &str, sms_code: &str, clock: ManualClock) -> Server {
    let (password, seed, sms_code) = (password.to_string(), seed.to_string(), sms_code.to_string());
    serve(move |r| match r.path.as_str() {
        "/login" => {
            let f = r.form();
            if f.get("pass") != Some(&password) {
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
            let want = if r.path == "/2fa" {
                totp::code_for_seed(&seed, clock.now_ms())
                    .unwrap()
                    .to_string()
            } else {
                sms_code.clone()
            };
            if r.cookie("step").as_deref() == Some("s1")
                && r.form().get(if r.path == "/2fa" { "otp" } else { "code" }) == Some(&want)
            {
                reply(
                    302,
                    &[
                        ("Location", "/home"),
                        ("Set-Cookie", "sid=logged-in-session; Max-Age=86400; Path=/"),
                    ],
                    "",
                )
            } else {
                reply(200, &[], "code incorrect, we sent a code to your phone")
            }
        }
        _ => reply(404, &[], ""),
    })
}

#[test]
fn totp_step_opens_a_two_factor_ticket_the_host_answers_from_the_seed() {
    let password = canary("pw");
    // RFC 6238's seed in base32.
    let seed = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    let clock_for_server = ManualClock::at(T0);
    let server = login_server(&password, seed, "000000", clock_for_server);
    let rig = rig(&[(SITE, login_site(&server, ""))]);
    let mut s = Secrets::default();
    s.username = Some("totp-user".into());
    s.password = Some(password.clone());
    s.totp_seed = Some(seed.into());
    rig.vault.put_secrets(SITE, "acct", &s).unwrap();
    let r = rig.run("acct", RefreshMethod::Relogin, None);
    assert_eq!(
        o(&r.outcome),
        o(&RefreshOutcome::Challenged(ChallengeKind::TwoFactor))
    );
    assert!(server.hits("/2fa").is_empty(), "not answered inline");
    // What the policy does with it: open a ticket (through `notify`).
    let mut ticket = sms_ticket("tk-2fa-1");
    ticket.kind = ChallengeKind::TwoFactor;
    ticket.masked_contact = None;
    rig.refresher
        .ticket_opened(&ticket.id, &ticket.credential_id);
    assert!(rig.refresher.auto_answer(&ticket), "queued for the host");
    let answers = rig.refresher.take_totp_answers();
    assert_eq!(answers.len(), 1);
    let code = totp::code_for_seed(seed, T0).unwrap();
    assert_eq!(answers[0].0, ticket.id);
    assert_eq!(answers[0].1.as_str(), code.as_str());
    assert!(rig.refresher.take_totp_answers().is_empty(), "taken once");
    for (t, c) in answers {
        rig.refresher.answer(&t, c).unwrap();
    }
    let r = rig.run("acct", RefreshMethod::Relogin, Some(&ticket.id));
    assert_eq!(
        o(&r.outcome),
        o(&RefreshOutcome::Refreshed(Some(T0 + 86_400_000)))
    );
    assert_eq!(server.hits("/login").len(), 1, "resumed, not restarted");
    assert_eq!(server.hits("/2fa").len(), 1);
    let got = rig.secrets("acct");
    assert!(
        got.cookies
            .iter()
            .any(|(n, v)| n == "sid" && v == "logged-in-session")
    );
    assert_eq!(
        got.password.as_deref(),
        Some(password.as_str()),
        "the account's secrets are kept"
    );
    assert_no_leak(
        &[&logs()],
        &[&password, seed, code.as_str(), "logged-in-session"],
    );
}

#[test]
fn a_two_factor_ticket_without_a_seed_or_of_another_kind_waits_for_a_person() {
    let server = login_server("pw", "GEZDGNBV", "000000", ManualClock::at(T0));
    let rig = rig(&[(SITE, login_site(&server, ""))]);
    let mut s = Secrets::default();
    s.username = Some("totp-user".into());
    s.password = Some("pw".into());
    rig.vault.put_secrets(SITE, "acct", &s).unwrap();
    let mut ticket = sms_ticket("tk-2fa-2");
    ticket.kind = ChallengeKind::TwoFactor;
    assert!(!rig.refresher.auto_answer(&ticket), "no seed");
    s.totp_seed = Some("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ".into());
    rig.vault.put_secrets(SITE, "acct", &s).unwrap();
    assert!(
        !rig.refresher.auto_answer(&sms_ticket("tk-sms-9")),
        "an SMS code"
    );
    assert!(rig.refresher.take_totp_answers().is_empty());
}

fn sms_ticket(id: &str) -> Ticket {
    Ticket {
        id: id.into(),
        kind: ChallengeKind::SmsCode,
        credential_id: "acct".into(),
        site: SITE.into(),
        masked_contact: Some("*******5678".into()),
        created_at: T0,
        deadline: T0 + 3_600_000,
    }
}

#[test]
fn sms_step_opens_a_ticket_notifies_the_webhook_and_resumes_with_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let password = canary("pw");
    let code = "493817";
    let server = login_server(&password, "GEZDGNBV", code, ManualClock::at(T0));
    let rig = rig(&[(SITE, login_site(&server, ""))]);
    let (hook, section) = webhook();
    let book = dir.path().join("tickets.json");
    let notifiers = Notifiers::new(&section, Some(book.clone()));
    notifiers.attach(rig.refresher.clone());
    let mut s = Secrets::default();
    s.username = Some("sms-user".into());
    s.password = Some(password.clone());
    rig.vault.put_secrets(SITE, "acct", &s).unwrap();

    let r = rig.run("acct", RefreshMethod::Relogin, None);
    assert_eq!(
        o(&r.outcome),
        o(&RefreshOutcome::Challenged(ChallengeKind::SmsCode))
    );
    // What the policy does with it: open a ticket (through `notify`).
    let ticket = sms_ticket("tk-sms-1");
    rig.refresher
        .ticket_opened(&ticket.id, &ticket.credential_id);
    notifiers.ticket_opened(&ticket);
    assert!(notifiers.flush(WAIT));
    let sent = hook.hits("/hook");
    assert_eq!(sent.len(), 1);
    let ev: serde_json::Value = serde_json::from_str(&sent[0].body).unwrap();
    assert_eq!(ev["event"], "ticket-opened");
    assert_eq!(ev["kind"], "sms-code");
    assert_eq!(ev["masked_contact"], "*******5678");
    assert_eq!(read_ticket_book(&book).len(), 1);

    // A person answers; the host holds the answer; the policy resumes.
    rig.refresher
        .answer(&ticket.id, Zeroizing::new(code.to_string()))
        .unwrap();
    let r = rig.run("acct", RefreshMethod::Relogin, Some(&ticket.id));
    assert!(
        matches!(r.outcome, RefreshOutcome::Refreshed(Some(_))),
        "{:?}",
        r.outcome
    );
    assert_eq!(
        server.hits("/login").len(),
        1,
        "resumed at the SMS step, no second login"
    );
    assert_eq!(server.hits("/sms")[0].form()["code"], code);
    notifiers.ticket_closed(&ticket.id, TicketClosure::Answered);
    assert!(notifiers.flush(WAIT));
    assert!(read_ticket_book(&book).is_empty());
    let bodies: Vec<String> = hook.hits("/hook").iter().map(|r| r.body.clone()).collect();
    assert_eq!(bodies.len(), 2);
    let book_text = std::fs::read_to_string(&book).unwrap();
    let all_logs = logs();
    let mut texts: Vec<&str> = bodies.iter().map(String::as_str).collect();
    texts.push(&book_text);
    texts.push(&all_logs);
    assert_no_leak(&texts, &[&password, code, "logged-in-session"]);
}

#[test]
fn challenge_answer_from_the_cli_reaches_the_resumed_login_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bin = own_binary(dir.path());
    let run = |args: &[&str]| {
        std::process::Command::new(&bin)
            .arg("--data-dir")
            .arg(&data)
            .arg("--config")
            .arg(dir.path().join("credpool.toml"))
            .args(args)
            .env_remove("CREDENTIAL_ENCRYPTION_KEY")
            .output()
            .unwrap()
    };
    assert!(run(&["init"]).status.success());
    let keys = Arc::new(
        credpool::crypto::load_keys(&credpool::crypto::KeySource::File(
            data.join("credpool.key"),
        ))
        .unwrap(),
    );
    let password = canary("pw");
    let code = "771204";
    let server = login_server(&password, "GEZDGNBV", code, ManualClock::at(T0));
    let rig = rig_with(
        &[(SITE, login_site(&server, ""))],
        keys,
        Some(data.join("answers")),
    );
    let notifiers = Notifiers::new(&NotifySection::default(), Some(data.join("tickets.json")));
    let mut s = Secrets::default();
    s.username = Some("sms-user".into());
    s.password = Some(password.clone());
    rig.vault.put_secrets(SITE, "acct", &s).unwrap();
    assert_eq!(
        o(&rig.run("acct", RefreshMethod::Relogin, None).outcome),
        o(&RefreshOutcome::Challenged(ChallengeKind::SmsCode))
    );
    notifiers.ticket_opened(&sms_ticket("tk-cli-1"));

    let out = run(&["challenge", "list", "--json"]);
    assert!(out.status.success());
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["id"], "tk-cli-1");
    assert_eq!(listed[0]["kind"], "sms-code");
    let out = run(&["challenge", "answer", "tk-nope", code]);
    assert_eq!(out.status.code(), Some(1), "unknown ticket refused");
    let out = run(&["challenge", "answer", "tk-cli-1", code]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("reads it from standard input"),
        "an answer in argv is pointed to the stdin form"
    );
    let sealed = std::fs::read(data.join("answers/tk-cli-1.sealed")).unwrap();
    assert!(
        !String::from_utf8_lossy(&sealed).contains(code),
        "the answer is sealed at rest"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(code)
            && !String::from_utf8_lossy(&out.stderr).contains(code)
    );

    let r = rig.run("acct", RefreshMethod::Relogin, Some("tk-cli-1"));
    assert!(
        matches!(r.outcome, RefreshOutcome::Refreshed(Some(_))),
        "{:?}",
        r.outcome
    );
    assert!(
        !data.join("answers/tk-cli-1.sealed").exists(),
        "used once, then removed"
    );
    // A spool file sealed for another ticket does not open as this one.
    answers::seal_to_spool(&rig.vault, &data.join("answers"), "tk-a", "111111").unwrap();
    std::fs::rename(
        data.join("answers/tk-a.sealed"),
        data.join("answers/tk-b.sealed"),
    )
    .unwrap();
    let r = rig.run("acct", RefreshMethod::Relogin, Some("tk-b"));
    assert_eq!(
        o(&r.outcome),
        o(&RefreshOutcome::Failed((RefreshFailure::Other, None)))
    );
}

#[test]
fn an_unanswered_ticket_times_out_and_its_login_cannot_resume() {
    let password = canary("pw");
    let server = login_server(&password, "GEZDGNBV", "123456", ManualClock::at(T0));
    let rig = rig(&[(SITE, login_site(&server, ""))]);
    let (hook, section) = webhook();
    let notifiers = Notifiers::new(&section, None);
    notifiers.attach(rig.refresher.clone());
    let mut s = Secrets::default();
    s.username = Some("sms-user".into());
    s.password = Some(password.clone());
    rig.vault.put_secrets(SITE, "acct", &s).unwrap();
    assert_eq!(
        o(&rig.run("acct", RefreshMethod::Relogin, None).outcome),
        o(&RefreshOutcome::Challenged(ChallengeKind::SmsCode))
    );
    let t = sms_ticket("tk-late");
    rig.refresher.ticket_opened(&t.id, &t.credential_id);
    notifiers.ticket_opened(&t);
    // The deadline passes (the policy's tick decides; see the guest's
    // lifecycle tests) and the ticket closes as timed out.
    notifiers.ticket_closed(&t.id, TicketClosure::TimedOut);
    // An answer arriving late is useless: the login context is gone.
    let _ = rig.refresher.answer(&t.id, Zeroizing::new("123456".into()));
    let r = rig.run("acct", RefreshMethod::Relogin, Some(&t.id));
    assert_eq!(
        o(&r.outcome),
        o(&RefreshOutcome::Failed((
            RefreshFailure::ChallengeTimedOut,
            None
        )))
    );
    assert!(server.hits("/sms").is_empty());
    assert!(notifiers.flush(WAIT));
    let closed: Vec<serde_json::Value> = hook
        .hits("/hook")
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .filter(|v: &serde_json::Value| v["event"] == "ticket-closed")
        .collect();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0]["closure"], "timed-out");
}

#[test]
fn health_check_finds_a_logged_out_session() {
    let server = serve(|r| {
        if r.cookie("sid").as_deref() == Some("alive") {
            reply(200, &[], "<a href=/logout>Sign out</a>")
        } else {
            reply(302, &[("Location", "/passport/login?next=/me")], "")
        }
    });
    let rig = rig(&[(
        SITE,
        site(&format!(
            "method = \"none\"\ncheck_url = \"{}\"\n[sites.\"{SITE}\".logout]\nredirect_to = [\"/passport/login\"]\nbody = [\"Please sign in\"]\n",
            server.url("/me")
        )),
    )]);
    for (id, sid) in [("good", "alive"), ("gone", "expired-server-side")] {
        let mut s = Secrets::default();
        s.cookies = vec![("sid".into(), sid.into())];
        rig.vault.put_secrets(SITE, id, &s).unwrap();
    }
    assert_eq!(
        o(&rig.run("good", RefreshMethod::HealthCheck, None).outcome),
        o(&RefreshOutcome::StillValid)
    );
    assert_eq!(
        o(&rig.run("gone", RefreshMethod::HealthCheck, None).outcome),
        o(&RefreshOutcome::Failed((
            RefreshFailure::LoggedOut,
            Some(302)
        )))
    );
    // A site without a check URL cannot be health-checked.
    let none = rig.refresher.submit(RefreshRequest {
        request_id: 99,
        credential_id: "good".into(),
        site: "elsewhere.example".into(),
        method: RefreshMethod::HealthCheck,
        ticket_id: None,
    });
    assert!(none.is_err());
}

#[test]
fn external_login_command_gets_secrets_on_stdin_only() {
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("stdin.json");
    let script = format!(
        "cat > '{}'; echo '{{\"cookies\":[{{\"name\":\"sid\",\"value\":\"from-cmd\",\"expires_at\":{}}}]}}'",
        seen.display(),
        T0 + 5_000
    );
    let cfg = site(&format!(
        "method = \"relogin\"\nlogin_command = [\"sh\", \"-c\", {script:?}]\nlogin_timeout = \"10s\"\n"
    ));
    let rig = rig(&[(SITE, cfg)]);
    let password = canary("pw");
    let mut s = Secrets::default();
    s.username = Some("u1".into());
    s.password = Some(password.clone());
    rig.vault.put_secrets(SITE, "acct", &s).unwrap();
    let r = rig.run("acct", RefreshMethod::Relogin, None);
    assert_eq!(
        o(&r.outcome),
        o(&RefreshOutcome::Refreshed(Some(T0 + 5_000)))
    );
    let input: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&seen).unwrap()).unwrap();
    assert_eq!(input["password"], password.as_str());
    assert_eq!(input["username"], "u1");
    assert!(
        rig.secrets("acct")
            .cookies
            .iter()
            .any(|(n, v)| n == "sid" && v == "from-cmd")
    );
    // A command that hangs is killed at its time limit.
    let slow =
        site("method = \"relogin\"\nlogin_command = [\"sleep\", \"30\"]\nlogin_timeout = \"1s\"\n");
    let rig2 = rig_with(
        &[(SITE, slow)],
        Arc::new(KeyRing::ephemeral().unwrap()),
        None,
    );
    rig2.vault.put_secrets(SITE, "acct", &s).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(
        o(&rig2.run("acct", RefreshMethod::Relogin, None).outcome),
        o(&RefreshOutcome::Failed((RefreshFailure::Timeout, None)))
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_no_leak(&[&logs()], &[&password]);
}

// ------------------------------------- the guest's schedule, run natively

use credpool_guest::lifecycle as glc;

fn to_guest(o: &RefreshOutcome) -> glc::RunOutcome {
    match o {
        RefreshOutcome::Refreshed(e) => glc::RunOutcome::Refreshed(*e),
        RefreshOutcome::StillValid => glc::RunOutcome::StillValid,
        RefreshOutcome::Challenged(_) => glc::RunOutcome::Challenged(glc::ChallengeKind::SmsCode),
        RefreshOutcome::Failed((f, _)) => glc::RunOutcome::Failed(match f {
            RefreshFailure::Network => glc::FailureKind::Network,
            RefreshFailure::Timeout => glc::FailureKind::Timeout,
            RefreshFailure::LoggedOut => glc::FailureKind::LoggedOut,
            RefreshFailure::InvalidGrant => glc::FailureKind::InvalidGrant,
            RefreshFailure::Rejected => glc::FailureKind::Rejected,
            RefreshFailure::Blocked => glc::FailureKind::Blocked,
            RefreshFailure::RateLimited => glc::FailureKind::RateLimited,
            RefreshFailure::Misconfigured => glc::FailureKind::Misconfigured,
            RefreshFailure::ChallengeTimedOut => glc::FailureKind::ChallengeTimedOut,
            RefreshFailure::Other => glc::FailureKind::Other,
        }),
    }
}

fn to_host(m: glc::RunMethod) -> RefreshMethod {
    match m {
        glc::RunMethod::CookieVisit => RefreshMethod::CookieVisit,
        glc::RunMethod::OauthRefresh => RefreshMethod::OauthRefresh,
        glc::RunMethod::Relogin => RefreshMethod::Relogin,
        glc::RunMethod::HealthCheck => RefreshMethod::HealthCheck,
    }
}

/// Sessions whose cookies live one hour, over a day: the guest's schedule
/// refreshes each before it dies, every visit succeeds; then the site
/// logs one out and the failure is classified.
#[test]
fn sessions_stay_alive_over_a_day_on_the_guests_schedule() {
    const N: usize = 5;
    // Server side: session number -> (current sid, expiry by the test clock).
    let clock = ManualClock::at(T0);
    let valid: Arc<Mutex<HashMap<String, i64>>> = Arc::new(Mutex::new(HashMap::new()));
    let expired_seen = Arc::new(AtomicUsize::new(0));
    let (v2, c2, e2) = (valid.clone(), clock.clone(), expired_seen.clone());
    let server = serve(move |r| {
        let now = c2.now_ms();
        let sid = r.cookie("sid").unwrap_or_default();
        let mut v = v2.lock().unwrap();
        match v.get(&sid) {
            Some(&exp) if exp > now => {
                v.remove(&sid);
                let new = format!("{sid}.r");
                v.insert(new.clone(), now + 3_600_000);
                reply(
                    200,
                    &[("Set-Cookie", &format!("sid={new}; Max-Age=3600; Path=/"))],
                    "ok",
                )
            }
            Some(_) => {
                e2.fetch_add(1, Ordering::SeqCst);
                reply(302, &[("Location", "/login")], "")
            }
            None => reply(302, &[("Location", "/login")], ""),
        }
    });
    let cfg = site(&format!(
        "method = \"cookie-visit\"\nrefresh_url = \"{}\"\nrefresh_before_expire = \"10m\"\n[sites.\"{SITE}\".logout]\nredirect_to = [\"/login\"]\n",
        server.url("/home")
    ));
    let mut opts = RefresherOptions::new([(SITE.to_string(), cfg.clone())].into_iter().collect());
    opts.clock = Some(clock.clone());
    logs();
    let vault = Arc::new(Vault::new(
        Arc::new(MemoryBackend::new()),
        Arc::new(KeyRing::ephemeral().unwrap()),
        "default",
    ));
    let refresher = Refresher::new(vault.clone(), opts).unwrap();
    // The guest's timing, from the same [sites] table.
    let lc_json = serde_json::json!({"max_in_flight": 3, "sites": {SITE: cfg.policy_timing()}});
    let mut lc =
        glc::Lifecycle::new(glc::LifecycleConfig::from_json(&lc_json.to_string()).unwrap());
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut below = move |n: u64| {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (x >> 33) % n
    };
    for i in 0..N {
        let sid = canary(&format!("s{i}"));
        valid.lock().unwrap().insert(sid.clone(), T0 + 3_600_000);
        let mut s = Secrets::default();
        s.cookies = vec![("sid".into(), sid)];
        vault.put_secrets(SITE, &format!("c{i}"), &s).unwrap();
        lc.track(
            &glc::Tracked {
                id: format!("c{i}"),
                site: SITE.into(),
                status: glc::LcStatus::Active,
                expires_at: Some(T0 + 3_600_000),
                logged_in_at: T0,
                checked_at: None,
            },
            T0,
            &mut below,
        );
    }
    let run_minute = |lc: &mut glc::Lifecycle, below: &mut dyn FnMut(u64) -> u64| {
        let now = clock.now_ms();
        let plan = lc.tick(now, below);
        for s in &plan.start {
            refresher
                .submit(RefreshRequest {
                    request_id: s.request_id,
                    credential_id: s.credential_id.clone(),
                    site: s.site.clone(),
                    method: to_host(s.method),
                    ticket_id: s.ticket_id.clone(),
                })
                .unwrap();
        }
        let mut results = Vec::new();
        for s in &plan.start {
            let r = refresher.wait(s.request_id, WAIT).expect("result");
            let d = lc.on_completed(
                &glc::Completed {
                    request_id: r.request_id,
                    credential_id: r.credential_id.clone(),
                    outcome: to_guest(&r.outcome),
                },
                now,
                below,
            );
            results.push((r, d));
        }
        clock.advance(Duration::from_secs(60));
        results
    };
    for _ in 0..24 * 60 {
        for (r, d) in run_minute(&mut lc, &mut below) {
            assert!(
                matches!(r.outcome, RefreshOutcome::Refreshed(Some(_))),
                "{:?}",
                r.outcome
            );
            assert_eq!(d.status, Some(glc::StatusChange::Active));
        }
    }
    let stats = refresher.stats();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].failed, 0);
    assert_eq!(stats[0].success_rate(), Some(1.0));
    // Each session lives an hour and is refreshed 10 minutes (plus skew and
    // jitter) early: about 24 / 0.83 refreshes a day each, none late.
    assert!(stats[0].succeeded >= (N as u64) * 24, "{stats:?}");
    assert_eq!(
        expired_seen.load(Ordering::SeqCst),
        0,
        "no session reached the site expired"
    );

    // The site drops every session: each refresh now fails as logged-out.
    valid.lock().unwrap().clear();
    let mut failed = 0;
    let mut dropped = std::collections::BTreeSet::new();
    for _ in 0..120 {
        for (r, d) in run_minute(&mut lc, &mut below) {
            dropped.insert(r.credential_id.clone());
            assert_eq!(
                o(&r.outcome),
                o(&RefreshOutcome::Failed((
                    RefreshFailure::LoggedOut,
                    Some(302)
                )))
            );
            assert_eq!(d.status, Some(glc::StatusChange::Expired));
            failed += 1;
        }
    }
    assert!(failed >= 1);
    assert_eq!(dropped.len(), N, "every dropped session was found out");
    let stats = refresher.stats();
    assert_eq!(stats[0].failures.get("logged-out").copied(), Some(failed));
    assert!(stats[0].success_rate().unwrap() < 1.0);
}

#[test]
fn a_captcha_goes_to_the_solver_command() {
    let password = canary("pw");
    let pw = password.clone();
    let server = serve(move |r| match r.path.as_str() {
        "/login" if r.form().get("pass") == Some(&pw) => reply(
            200,
            &[("Set-Cookie", "step=c; Path=/")],
            "please type the captcha",
        ),
        "/captcha"
            if r.form().get("captcha").map(String::as_str) == Some("4F7K")
                && r.cookie("step").is_some() =>
        {
            reply(
                302,
                &[("Location", "/"), ("Set-Cookie", "sid=ok; Path=/")],
                "",
            )
        }
        _ => reply(200, &[], "please type the captcha"),
    });
    let cfg = |solver: &str| {
        site(&format!(
            r#"method = "relogin"
{solver}
[sites."{SITE}".login]
url = "{}"
password_field = "pass"
success = {{ cookie = "sid" }}
[[sites."{SITE}".login.challenges]]
kind = "captcha-image"
detect = {{ body = ["type the captcha"] }}
submit_url = "{}"
field = "captcha"
"#,
            server.url("/login"),
            server.url("/captcha")
        ))
    };
    let mut s = Secrets::default();
    s.username = Some("u".into());
    s.password = Some(password.clone());
    // With a solver: solved by it.
    let rig1 = rig(&[(
        SITE,
        cfg(r#"captcha_solver = ["sh", "-c", "cat > /dev/null; echo 4F7K"]"#),
    )]);
    rig1.vault.put_secrets(SITE, "a", &s).unwrap();
    assert!(matches!(
        rig1.run("a", RefreshMethod::Relogin, None).outcome,
        RefreshOutcome::Refreshed(_)
    ));
    // Without one: a person is needed.
    let rig2 = rig(&[(SITE, cfg(""))]);
    rig2.vault.put_secrets(SITE, "a", &s).unwrap();
    assert_eq!(
        o(&rig2.run("a", RefreshMethod::Relogin, None).outcome),
        o(&RefreshOutcome::Challenged(ChallengeKind::CaptchaImage))
    );
}

#[test]
fn webhook_retries_until_delivered() {
    let tries = Arc::new(AtomicUsize::new(0));
    let t2 = tries.clone();
    let hook = serve(move |_| {
        if t2.fetch_add(1, Ordering::SeqCst) < 2 {
            reply(500, &[], "")
        } else {
            reply(204, &[], "")
        }
    });
    let n = Notifiers::new(
        &NotifySection {
            webhook_url: Some(hook.url("/hook")),
            webhook_timeout: Some(Duration::from_secs(2)),
            webhook_retries: Some(3),
            command: None,
            command_env: Vec::new(),
        },
        None,
    );
    n.ticket_closed("tk-1", TicketClosure::Cancelled);
    assert!(n.flush(WAIT));
    assert_eq!(
        tries.load(Ordering::SeqCst),
        3,
        "two failures, then delivered"
    );
    let last: serde_json::Value = serde_json::from_str(&hook.hits("/hook")[2].body).unwrap();
    assert_eq!(last["closure"], "cancelled");
}

#[test]
fn credpool_run_serves_and_stops_cleanly() {
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
    std::fs::write(
        dir.path().join("credpool.toml"),
        "[sites.\"jd.com\"]\nmethod = \"cookie-visit\"\nrefresh_url = \"http://127.0.0.1:9/home\"\nrefresh_before_expire = \"1h\"\nmax_age = \"7d\"\n",
    )
    .unwrap();
    let out = cmd()
        .args(["run", "--ticks", "3", "--interval-ms", "20"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopped after 3 ticks"));
    // Ctrl-C (SIGINT) ends it cleanly too.
    let child = cmd()
        .args(["run", "--interval-ms", "50"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("records flushed"));
    // A bad [sites] value names the key and line.
    std::fs::write(
        dir.path().join("credpool.toml"),
        "[sites.\"jd.com\"]\nmax_age = \"soon\"\n",
    )
    .unwrap();
    let out = cmd().args(["run", "--ticks", "1"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("line 2") && err.contains("soon"), "{err}");
}

#[test]
fn command_notifier_gets_alerts_as_json_on_stdin() {
    use credpool::{Alert, AlertKind, Severity};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.jsonl");
    let n = Notifiers::new(
        &NotifySection {
            webhook_url: None,
            webhook_timeout: None,
            webhook_retries: None,
            command: Some(vec![
                "sh".into(),
                "-c".into(),
                format!("cat >> '{}'; echo >> '{}'", out.display(), out.display()),
            ]),
            command_env: Vec::new(),
        },
        None,
    );
    n.alert(&Alert {
        kind: AlertKind::RefreshFailed,
        severity: Severity::Critical,
        site: "jd.com".into(),
        credential_id: Some("c7".into()),
        message: "re-login refused for ***@example.com".into(),
        raised_at: T0,
    });
    assert!(n.flush(WAIT));
    let text = std::fs::read_to_string(&out).unwrap();
    let ev: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(ev["event"], "alert");
    assert_eq!(ev["kind"], "refresh-failed");
    assert_eq!(ev["severity"], "critical");
    assert_eq!(ev["credential_id"], "c7");
}
