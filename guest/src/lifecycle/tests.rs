//! The lifecycle's decisions, driven directly (no pool).

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
                // A 4xx the site meant: no answer was lost, no fast retry.
                outcome: RunOutcome::Failed(FailureKind::Other),
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
        LifecycleConfig::from_json(r#"{"sites": {"jd.com": {"refresh_befor": 1}}}"#).unwrap_err();
    assert_eq!(field, "refresh_befor");
    let (field, _) = LifecycleConfig::from_json(r#"{"max_in_flight": 0}"#).unwrap_err();
    assert_eq!(field, "max_in_flight");
}

/// Fails `id`'s running refresh `n` times with `kind`, ticking at each due
/// time; returns the waits between a failure and the next start, and the
/// last decision.
fn fail_rounds(
    l: &mut Lifecycle,
    id: &str,
    mut now: Millis,
    kind: FailureKind,
    n: usize,
    below: &mut dyn FnMut(u64) -> u64,
) -> (Vec<Millis>, Decision) {
    let mut waits = Vec::new();
    let mut last = Decision::default();
    for round in 0..n {
        let plan = l.tick(now, below);
        assert_eq!(plan.start.len(), 1, "round {round} starts one refresh");
        let s = &plan.start[0];
        last = l.on_completed(
            &Completed {
                request_id: s.request_id,
                credential_id: id.into(),
                outcome: RunOutcome::Failed(kind),
            },
            now,
            below,
        );
        if let Some(next) = l.tick(now, below).next_due_at {
            waits.push(next - now);
            now = next;
        }
    }
    (waits, last)
}

#[test]
fn a_possibly_lost_answer_is_retried_within_seconds_then_backs_off() {
    for kind in [
        FailureKind::Network,
        FailureKind::Timeout,
        FailureKind::ServerError,
    ] {
        for method in [SiteMethod::OauthRefresh, SiteMethod::CookieVisit] {
            let mut l = lc(method, 2);
            l.track(&cred("a", Some(T0 + H)), T0, &mut no_jitter());
            let (waits, d) = fail_rounds(&mut l, "a", T0 + H, kind, 7, &mut no_jitter());
            // Least jitter: 3/4 of 1 s, 2 s, 4 s; then half of 30 s, 60 s, ...
            assert_eq!(
                waits[..6],
                [750, 1_500, 3_000, 15_000, 30_000, 60_000],
                "{kind:?} {method:?}"
            );
            // The fast retries do not count towards max_failures (5): seven
            // failures leave it tracked, the eighth (the fifth slow) expires it.
            assert_eq!(d.status, None, "{kind:?} {method:?}");
            let next = T0 + H + waits.iter().sum::<Millis>();
            let (_, d) = fail_rounds(&mut l, "a", next, kind, 1, &mut no_jitter());
            assert_eq!(d.status, Some(StatusChange::Expired), "{kind:?}");
            assert_eq!(d.alert, Some(AlertNeed::RefreshFailed));
        }
    }
    // Most jitter: 5/4 of each fast step.
    let mut l = lc(SiteMethod::OauthRefresh, 2);
    l.track(&cred("a", Some(T0 + H)), T0, &mut no_jitter());
    let (waits, _) = fail_rounds(
        &mut l,
        "a",
        T0 + H,
        FailureKind::Network,
        3,
        &mut max_jitter(),
    );
    assert_eq!(waits, [1_250, 2_500, 5_000]);
}

#[test]
fn the_fast_retries_stay_active_and_start_again_after_a_success() {
    let mut l = lc(SiteMethod::OauthRefresh, 2);
    l.track(&cred("a", Some(T0 + H)), T0, &mut no_jitter());
    let (waits, d) = fail_rounds(
        &mut l,
        "a",
        T0 + H,
        FailureKind::Network,
        2,
        &mut no_jitter(),
    );
    assert_eq!(waits, [750, 1_500]);
    assert_eq!(d.status, None, "not expired while the retries run");
    let now = T0 + H + 2_250;
    let s = l.tick(now, &mut no_jitter()).start.remove(0);
    let d = l.on_completed(
        &Completed {
            request_id: s.request_id,
            credential_id: "a".into(),
            outcome: RunOutcome::Refreshed(Some(now + H)),
        },
        now,
        &mut no_jitter(),
    );
    assert_eq!(d.status, Some(StatusChange::Active));
    // The next lost answer is retried fast again, from the first step.
    let due = now + H;
    let (waits, _) = fail_rounds(&mut l, "a", due, FailureKind::Network, 1, &mut no_jitter());
    assert_eq!(waits, [750], "from the first fast step, least jitter");
}

#[test]
fn refusals_and_rate_limits_are_not_retried_fast() {
    for kind in [FailureKind::RateLimited, FailureKind::Other] {
        let mut l = lc(SiteMethod::OauthRefresh, 2);
        l.track(&cred("a", Some(T0 + H)), T0, &mut no_jitter());
        let (waits, _) = fail_rounds(&mut l, "a", T0 + H, kind, 1, &mut no_jitter());
        assert_eq!(waits, [15_000], "{kind:?}");
    }
    // A relogin or a health check loses no rotated secret: usual backoff.
    let mut l = lc(SiteMethod::Relogin, 2);
    let mut c = cred("a", Some(T0 + H));
    c.status = LcStatus::Expired;
    l.track(&c, T0, &mut no_jitter());
    let (waits, _) = fail_rounds(&mut l, "a", T0, FailureKind::Network, 1, &mut no_jitter());
    assert_eq!(waits, [15_000]);
    // The 4xx an `other` carries is not a lost answer; a 5xx or an
    // unusable 200 is.
    assert_eq!(
        FailureKind::other_with_status(Some(400)),
        FailureKind::Other
    );
    assert_eq!(FailureKind::other_with_status(None), FailureKind::Other);
    for s in [200, 500, 502, 504] {
        assert_eq!(
            FailureKind::other_with_status(Some(s)),
            FailureKind::ServerError
        );
    }
}

#[test]
fn fast_retry_settings_are_checked() {
    let err = LifecycleConfig::from_json(r#"{"default":{"fast_retry_base":0}}"#).unwrap_err();
    assert_eq!(err.0, "default.fast_retry_base");
    let err = LifecycleConfig::from_json(r#"{"default":{"fast_retries":17}}"#).unwrap_err();
    assert_eq!(err.0, "default.fast_retries");
    let ok = LifecycleConfig::from_json(r#"{"default":{"fast_retries":0,"fast_retry_base":0}}"#)
        .unwrap();
    assert_eq!(ok.default.fast_retries, 0);
}

#[test]
fn code_tickets_have_their_own_timeout_and_others_keep_the_general_one() {
    let mut c = LifecycleConfig::default();
    let mut t = site(SiteMethod::Relogin);
    t.ticket_timeout = 3600;
    t.code_ticket_timeout = Some(300);
    c.sites.insert("jd.com".into(), t.clone());
    let mut l = Lifecycle::new(c);
    let sms = challenged(&mut l, T0);
    assert_eq!(sms.deadline, T0 + 300_000, "an SMS code ticket waits 5 min");
    for kind in [
        ChallengeKind::EmailCode,
        ChallengeKind::CaptchaImage,
        ChallengeKind::TwoFactor,
    ] {
        let want = match kind {
            ChallengeKind::EmailCode => 300,
            _ => 3600,
        };
        assert_eq!(t.ticket_timeout_for(kind), want, "{kind:?}");
    }
    // Without a code limit, codes wait as long as any ticket.
    t.code_ticket_timeout = None;
    assert_eq!(t.ticket_timeout_for(ChallengeKind::SmsCode), 3600);
}

#[test]
fn without_auto_refresh_nothing_refreshes_or_logs_in_on_its_own_but_checks_run() {
    let mut l = lc(SiteMethod::CookieVisit, 8);
    l.config.auto_refresh = false;
    l.config
        .sites
        .get_mut("jd.com")
        .unwrap()
        .health_check_interval = 600;
    let exp = T0 + 10 * H;
    // Only the health check is due: no refresh before expiry, no max-age
    // re-login.
    assert_eq!(
        l.due_of(&cred("a", Some(exp)), &mut no_jitter()),
        Some((T0 + 600_000, RunMethod::HealthCheck))
    );
    for status in [LcStatus::Expired, LcStatus::Init] {
        let c = Tracked {
            status,
            ..cred("b", Some(exp))
        };
        assert_eq!(l.due_of(&c, &mut no_jitter()), None, "{status:?}");
    }
    // The card's default is on.
    assert!(LifecycleConfig::default().auto_refresh);
    let parsed = LifecycleConfig::from_json(r#"{"auto_refresh": false}"#).unwrap();
    assert!(!parsed.auto_refresh);
}
