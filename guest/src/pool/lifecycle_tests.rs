//! Native tests of the lifecycle as the pool drives it: the hooks, the
//! Refresh and Notify ports, tickets in the store, refresh counts.

use crate::config::PolicyConfig;
use crate::lifecycle::{
    ChallengeKind, Closure, Completed, FailureKind, Resolution, RunMethod, RunOutcome,
};
use crate::model::*;
use crate::pool::Pool;
use crate::ports::fake::FakeHost;

const T0: Millis = 1_700_000_000_000;
const H: Millis = 3_600_000;

const CONFIG: &str = r#"{"lifecycle": {
    "default": {"method": "none", "can_relogin": false, "health_check_interval": 0},
    "sites": {
        "jd.com": {"method": "cookie-visit", "refresh_before_expire": 600, "jitter": 0,
                   "clock_skew": 0, "health_check_interval": 0, "can_relogin": true,
                   "ticket_timeout": 600}
    }}}"#;

fn pool() -> Pool<FakeHost> {
    Pool::load(FakeHost::new(T0), PolicyConfig::from_json(CONFIG).unwrap()).unwrap()
}

fn add(p: &mut Pool<FakeHost>, site: &str, id: &str, kind: Kind, expires_at: Option<Millis>) {
    p.add(NewCredential {
        id: Some(id.into()),
        site: site.into(),
        kind: Some(kind),
        expires_at,
        phone: Some("13800135678".into()),
        ..Default::default()
    })
    .unwrap();
}

/// A pool whose account `a1` met a `kind` challenge at its first login.
fn challenged(kind: ChallengeKind) -> Pool<FakeHost> {
    let mut p = pool();
    add(&mut p, "jd.com", "a1", Kind::Account, None);
    p.tick().unwrap();
    complete(&mut p, 0, RunOutcome::Challenged(kind));
    p
}

/// Moves the clock past the ticket's deadline (10 minutes) and ticks.
fn past_the_ticket_deadline(p: &mut Pool<FakeHost>) -> TickSummary {
    p.host.now += 601_000;
    p.tick().unwrap()
}

fn complete(p: &mut Pool<FakeHost>, n: usize, outcome: RunOutcome) -> Status {
    let r = p.host.refresh_requests[n].clone();
    p.refresh_completed(&Completed {
        request_id: r.request_id,
        credential_id: r.credential_id,
        outcome,
    })
    .unwrap()
}

#[test]
fn unknown_lifecycle_keys_are_refused_by_name() {
    let err = PolicyConfig::from_json(r#"{"lifecycle": {"max_in_flite": 3}}"#).unwrap_err();
    assert!(format!("{err:?}").contains("max_in_flite"), "{err:?}");
    let err = PolicyConfig::from_json(r#"{"lifecycle": {"max_in_flight": 0}}"#).unwrap_err();
    assert!(
        format!("{err:?}").contains("lifecycle.max_in_flight"),
        "{err:?}"
    );
}

#[test]
fn without_a_lifecycle_nothing_is_scheduled() {
    let mut p = Pool::load(FakeHost::new(T0), PolicyConfig::default()).unwrap();
    add(&mut p, "jd.com", "s1", Kind::Session, Some(T0 + 60_000));
    add(&mut p, "jd.com", "a1", Kind::Account, None);
    p.host.now += H;
    assert_eq!(p.tick().unwrap().refreshes_started, 0);
    assert!(p.host.refresh_requests.is_empty());
}

#[test]
fn a_session_is_refreshed_before_expiry_and_counted() {
    let mut p = pool();
    add(&mut p, "jd.com", "s1", Kind::Session, Some(T0 + H));
    add(&mut p, "other.com", "s2", Kind::Session, Some(T0 + H));
    p.host.now = T0 + H - 11 * 60_000;
    assert_eq!(p.tick().unwrap().refreshes_started, 0);
    p.host.now = T0 + H - 10 * 60_000;
    let s = p.tick().unwrap();
    assert_eq!(s.refreshes_started, 1);
    assert_eq!(p.host.refresh_requests[0].method, RunMethod::CookieVisit);
    assert_eq!(p.host.refresh_requests[0].credential_id, "s1");
    // A second tick while it runs starts nothing (single flight).
    assert_eq!(p.tick().unwrap().refreshes_started, 0);
    let st = &p.stats(Some("jd.com"))[0];
    assert_eq!((st.refresh_attempts, st.refresh_in_flight), (1, 1));
    let status = complete(&mut p, 0, RunOutcome::Refreshed(Some(T0 + 2 * H)));
    assert_eq!(status, Status::Active);
    assert_eq!(p.get("s1").unwrap().expires_at, Some(T0 + 2 * H));
    // The new expiry is durable.
    let stored: Credential = serde_json::from_slice(&p.host.data["cred/s1"]).unwrap();
    assert_eq!(stored.expires_at, Some(T0 + 2 * H));
    let st = &p.stats(Some("jd.com"))[0];
    assert_eq!(
        (
            st.refresh_attempts,
            st.refresh_succeeded,
            st.refresh_failed,
            st.refresh_in_flight
        ),
        (1, 1, 0, 0)
    );
    // A stale (repeated) result changes nothing.
    assert_eq!(
        complete(&mut p, 0, RunOutcome::Failed(FailureKind::Blocked)),
        Status::Active
    );
    assert_eq!(p.stats(Some("jd.com"))[0].refresh_failed, 0);
}

#[test]
fn a_refused_start_backs_off() {
    let mut p = pool();
    p.host.refuse_refresh = Some("busy".into());
    add(&mut p, "jd.com", "s1", Kind::Session, Some(T0 + 60_000));
    assert_eq!(p.tick().unwrap().refreshes_started, 0);
    p.host.refuse_refresh = None;
    assert_eq!(p.tick().unwrap().refreshes_started, 0, "backing off");
    p.host.now += 60_000;
    assert_eq!(p.tick().unwrap().refreshes_started, 1);
}

#[test]
fn a_challenge_opens_a_stored_ticket_that_survives_a_reload() {
    let mut p = pool();
    add(&mut p, "jd.com", "a1", Kind::Account, None);
    assert_eq!(p.tick().unwrap().refreshes_started, 1);
    assert_eq!(p.host.refresh_requests[0].method, RunMethod::Relogin);
    let status = complete(&mut p, 0, RunOutcome::Challenged(ChallengeKind::SmsCode));
    assert_eq!(status, Status::Challenged);
    let (ticket, contact) = p.host.tickets_opened[0].clone();
    assert_eq!(contact.as_deref(), Some("***5678"));
    assert!(p.host.data.contains_key(&format!("ticket/{}", ticket.id)));
    assert_eq!(p.stats(Some("jd.com"))[0].open_tickets, 1);

    // Restart: the ticket is back, and can be answered; the refresh
    // counts written by the flush are back too.
    p.flush().unwrap();
    let host = std::mem::replace(&mut p.host, FakeHost::new(T0));
    let mut p = Pool::load(host, PolicyConfig::from_json(CONFIG).unwrap()).unwrap();
    assert_eq!(p.tickets(), vec![ticket.clone()]);
    assert_eq!(p.stats(Some("jd.com"))[0].refresh_attempts, 1);
    p.host.refresh_requests.clear();
    assert_eq!(
        p.resolve_challenge(&ticket.id, Resolution::Answered)
            .unwrap(),
        Status::Challenged
    );
    assert_eq!(
        p.host.refresh_requests[0].ticket_id.as_deref(),
        Some(ticket.id.as_str())
    );
    assert_eq!(
        complete(&mut p, 0, RunOutcome::Refreshed(None)),
        Status::Active
    );
    assert_eq!(
        p.host.tickets_closed,
        vec![(ticket.id.clone(), Closure::Answered)]
    );
    assert!(!p.host.data.contains_key(&format!("ticket/{}", ticket.id)));
    assert!(p.get("a1").unwrap().logged_in_at.is_some());
    assert!(p.tickets().is_empty());
}

#[test]
fn an_overdue_ticket_closes_alerts_and_the_credential_stays_out() {
    let mut p = challenged(ChallengeKind::TwoFactor);
    let s = past_the_ticket_deadline(&mut p);
    assert_eq!(s.tickets_timed_out, 1);
    assert_eq!(p.host.tickets_closed[0].1, Closure::TimedOut);
    assert_eq!(p.host.alerts_of(AlertKind::TicketTimedOut), 1);
    assert_eq!(p.get("a1").unwrap().status, Status::Challenged);
    assert!(p.host.data.keys().all(|k| !k.starts_with("ticket/")));
    p.host.now += H;
    assert_eq!(p.tick().unwrap().refreshes_started, 0, "no new login");
}

#[test]
fn removing_a_credential_cancels_its_ticket() {
    let mut p = pool();
    add(&mut p, "jd.com", "a1", Kind::Account, None);
    p.tick().unwrap();
    complete(&mut p, 0, RunOutcome::Challenged(ChallengeKind::SmsCode));
    let id = p.tickets()[0].id.clone();
    p.remove("a1").unwrap();
    assert_eq!(p.host.tickets_closed, vec![(id, Closure::Cancelled)]);
    assert!(p.tickets().is_empty());
    assert!(p.host.data.keys().all(|k| !k.starts_with("ticket/")));
}

#[test]
fn a_logged_out_session_goes_to_relogin_and_a_failed_one_alerts() {
    let mut p = pool();
    add(&mut p, "jd.com", "s1", Kind::Session, Some(T0 + 60_000));
    p.tick().unwrap();
    let st = complete(&mut p, 0, RunOutcome::Failed(FailureKind::LoggedOut));
    assert_eq!(st, Status::Expired);
    assert_eq!(
        p.host.refresh_requests[1].method,
        RunMethod::Relogin,
        "follow-up"
    );
    let st = complete(&mut p, 1, RunOutcome::Failed(FailureKind::Rejected));
    assert_eq!(st, Status::Suspended, "a refused login rests");
    assert_eq!(p.host.alerts_of(AlertKind::RefreshFailed), 1);
    let s = &p.stats(Some("jd.com"))[0];
    assert_eq!(
        (s.refresh_attempts, s.refresh_failed, s.refresh_in_flight),
        (2, 2, 0)
    );
}

fn method_counts(s: &SiteStats, m: RunMethod) -> (u64, u64, u64) {
    s.refresh_by_method
        .iter()
        .find(|x| x.method == m)
        .map(|x| (x.counts.attempts, x.counts.succeeded, x.counts.failed))
        .unwrap_or_default()
}

#[test]
fn refresh_counts_by_method_and_time_to_answer_are_kept_and_stored() {
    let mut p = pool();
    add(&mut p, "jd.com", "s1", Kind::Session, Some(T0 + 60_000));
    add(&mut p, "jd.com", "a1", Kind::Account, None);
    assert_eq!(p.tick().unwrap().refreshes_started, 2);
    let ix = |p: &Pool<FakeHost>, id: &str| {
        p.host
            .refresh_requests
            .iter()
            .position(|r| r.credential_id == id)
            .unwrap()
    };
    let (si, ai) = (ix(&p, "s1"), ix(&p, "a1"));
    complete(&mut p, si, RunOutcome::Refreshed(Some(T0 + H)));
    complete(&mut p, ai, RunOutcome::Challenged(ChallengeKind::SmsCode));
    let s = &p.stats(Some("jd.com"))[0];
    assert_eq!(method_counts(s, RunMethod::CookieVisit), (1, 1, 0));
    assert_eq!(
        method_counts(s, RunMethod::Relogin),
        (1, 0, 0),
        "a challenge is neither"
    );
    assert_eq!(s.answer_times, AnswerTimes::default());
    assert_eq!(s.answer_times.mean_ms(), None);

    // A person answers 90 s after the ticket opened; the login works.
    let ticket = p.tickets()[0].clone();
    p.host.now += 90_000;
    p.resolve_challenge(&ticket.id, Resolution::Answered)
        .unwrap();
    let n = p.host.refresh_requests.len() - 1;
    complete(&mut p, n, RunOutcome::Refreshed(None));
    // The session refresh fails the second time round.
    p.host.now = T0 + H - 60_000;
    p.tick().unwrap();
    let n = p.host.refresh_requests.len() - 1;
    assert_eq!(p.host.refresh_requests[n].method, RunMethod::CookieVisit);
    complete(&mut p, n, RunOutcome::Failed(FailureKind::Network));
    let s = p.stats(Some("jd.com"))[0].clone();
    assert_eq!(method_counts(&s, RunMethod::CookieVisit), (2, 1, 1));
    assert_eq!(method_counts(&s, RunMethod::Relogin), (2, 1, 0));
    assert_eq!(
        s.answer_times,
        AnswerTimes {
            answered: 1,
            total_ms: 90_000,
            max_ms: 90_000
        }
    );
    assert_eq!(s.answer_times.mean_ms(), Some(90_000));
    let by_method: u64 = s.refresh_by_method.iter().map(|m| m.counts.attempts).sum();
    assert_eq!(by_method, s.refresh_attempts, "the methods add up");

    // Written by the flush, back after a reload.
    p.flush().unwrap();
    assert!(p.host.data.contains_key("refresh/jd.com"));
    let host = std::mem::replace(&mut p.host, FakeHost::new(T0));
    let p = Pool::load(host, PolicyConfig::from_json(CONFIG).unwrap()).unwrap();
    let back = &p.stats(Some("jd.com"))[0];
    assert_eq!(back.refresh_by_method, s.refresh_by_method);
    assert_eq!(back.answer_times, s.answer_times);
}

#[test]
fn refresh_counts_stored_before_per_method_counts_still_load() {
    let mut host = FakeHost::new(T0);
    host.data.insert(
        "refresh/jd.com".into(),
        br#"{"attempts":3,"succeeded":2,"failed":1}"#.to_vec(),
    );
    let mut p = Pool::load(host, PolicyConfig::from_json(CONFIG).unwrap()).unwrap();
    add(&mut p, "jd.com", "s1", Kind::Session, None);
    let host = std::mem::replace(&mut p.host, FakeHost::new(T0));
    let p = Pool::load(host, PolicyConfig::from_json(CONFIG).unwrap()).unwrap();
    let s = &p.stats(Some("jd.com"))[0];
    assert_eq!(s.refresh_attempts, 3);
    assert!(s.refresh_by_method.is_empty());
    assert_eq!(s.answer_times.answered, 0);
}

#[test]
fn a_person_resets_a_challenged_credential_after_its_ticket_timed_out() {
    let mut p = challenged(ChallengeKind::SmsCode);
    // Refused while the ticket is open.
    assert!(matches!(
        p.reset_challenge("a1"),
        Err(PoolError::IllegalTransition { .. })
    ));
    assert_eq!(past_the_ticket_deadline(&mut p).tickets_timed_out, 1);
    assert_eq!(
        p.tick().unwrap().refreshes_started,
        0,
        "stuck until a person acts"
    );
    // A restart does not act for the person: the hold is stored.
    let host = std::mem::replace(&mut p.host, FakeHost::new(T0));
    let mut p = Pool::load(host, PolicyConfig::from_json(CONFIG).unwrap()).unwrap();
    assert_eq!(
        p.tick().unwrap().refreshes_started,
        0,
        "still held after a reload"
    );
    assert_eq!(p.get("a1").unwrap().status, Status::Challenged);
    let c = p.reset_challenge("a1").unwrap();
    assert_eq!(c.status, Status::Expired);
    assert!(
        !p.host.data.keys().any(|k| k.starts_with("hold/")),
        "the reset lets the hold go"
    );
    let stored: Credential = serde_json::from_slice(&p.host.data["cred/a1"]).unwrap();
    assert_eq!(stored.status, Status::Expired, "durable");
    // Expired like any other: the site's refresh first, then a login.
    assert_eq!(p.tick().unwrap().refreshes_started, 1);
    let r = p.host.refresh_requests.last().unwrap().clone();
    assert_eq!((r.method, r.ticket_id), (RunMethod::CookieVisit, None));
    let n = p.host.refresh_requests.len() - 1;
    complete(&mut p, n, RunOutcome::Failed(FailureKind::LoggedOut));
    let r = p.host.refresh_requests.last().unwrap().clone();
    assert_eq!((r.method, r.ticket_id), (RunMethod::Relogin, None));
    let n = p.host.refresh_requests.len() - 1;
    assert_eq!(
        complete(&mut p, n, RunOutcome::Refreshed(None)),
        Status::Active
    );
    // Refused for a credential not challenged.
    assert!(matches!(
        p.reset_challenge("a1"),
        Err(PoolError::IllegalTransition { .. })
    ));
}

#[test]
fn a_held_credential_removed_leaves_no_hold_behind() {
    let mut p = challenged(ChallengeKind::SmsCode);
    assert_eq!(past_the_ticket_deadline(&mut p).tickets_timed_out, 1);
    assert!(
        p.host.durable_writes.iter().any(|k| k == "hold/a1"),
        "stored durably"
    );
    p.remove("a1").unwrap();
    assert!(!p.host.data.contains_key("hold/a1"));
    // A stale hold (its credential gone) is dropped on load.
    p.host.data.insert("hold/ghost".into(), b"tk".to_vec());
    let host = std::mem::replace(&mut p.host, FakeHost::new(T0));
    let p = Pool::load(host, PolicyConfig::from_json(CONFIG).unwrap()).unwrap();
    assert!(!p.host.data.contains_key("hold/ghost"));
}

fn crawl_reports(p: &mut Pool<FakeHost>, class: FailureClass) {
    let grant = p
        .acquire(&AcquireRequest {
            site: "jd.com".into(),
            ..Default::default()
        })
        .unwrap()
        .grant
        .expect("a credential");
    p.report(
        grant.lease,
        Outcome::Failure(Failure {
            class,
            http_status: Some(200),
            retry_after_secs: None,
        }),
    )
    .unwrap();
}

#[test]
fn a_captcha_met_by_a_crawl_sends_the_session_to_a_fresh_login() {
    let mut p = pool();
    add(&mut p, "jd.com", "s1", Kind::Session, Some(T0 + H));
    crawl_reports(&mut p, FailureClass::Challenged);
    assert_eq!(p.get("s1").unwrap().status, Status::Challenged);
    assert_eq!(p.tick().unwrap().refreshes_started, 1);
    assert_eq!(p.host.refresh_requests[0].method, RunMethod::Relogin);
    assert_eq!(
        complete(&mut p, 0, RunOutcome::Refreshed(Some(T0 + 2 * H))),
        Status::Active
    );
    assert_eq!(p.tick().unwrap().refreshes_started, 0);
}

#[test]
fn an_expired_session_whose_login_meets_an_sms_step_waits_on_its_ticket() {
    let mut p = pool();
    add(&mut p, "jd.com", "s1", Kind::Session, Some(T0 + H));
    crawl_reports(&mut p, FailureClass::Expired);
    assert_eq!(p.get("s1").unwrap().status, Status::Expired);
    p.tick().unwrap();
    assert_eq!(p.host.refresh_requests[0].method, RunMethod::CookieVisit);
    complete(&mut p, 0, RunOutcome::Failed(FailureKind::LoggedOut));
    assert_eq!(p.host.refresh_requests[1].method, RunMethod::Relogin);
    let status = complete(&mut p, 1, RunOutcome::Challenged(ChallengeKind::SmsCode));
    assert_eq!(status, Status::Challenged);
    assert_eq!(p.tickets().len(), 1);
    p.host.now += 60_000;
    assert_eq!(
        p.tick().unwrap().refreshes_started,
        0,
        "one ticket, no new login"
    );
}
