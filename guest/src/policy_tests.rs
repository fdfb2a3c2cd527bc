//! Native tests of the allocation policy: every strategy, limit, cooldown
//! rule and anomaly, over the in-memory fake host.

use crate::config::PolicyConfig;
use crate::machine::Event;
use crate::model::*;
use crate::pool::Pool;
use crate::ports::fake::FakeHost;
use std::collections::HashMap;

const T0: Millis = 1_700_000_000_000;

fn pool_with(json: &str) -> Pool<FakeHost> {
    Pool::load(FakeHost::new(T0), PolicyConfig::from_json(json).unwrap()).unwrap()
}

fn add(p: &mut Pool<FakeHost>, site: &str, id: &str, kind: Kind) {
    p.add(NewCredential {
        id: Some(id.to_string()),
        site: site.to_string(),
        kind: Some(kind),
        ..Default::default()
    })
    .unwrap();
}

fn req(site: &str) -> AcquireRequest {
    AcquireRequest {
        site: site.to_string(),
        ..Default::default()
    }
}

fn grant(p: &mut Pool<FakeHost>, r: &AcquireRequest) -> (LeaseId, String) {
    let resp = p.acquire(r).unwrap();
    assert_eq!(resp.status, AcquireStatus::Success, "{resp:?}");
    let g = resp.grant.unwrap();
    let id = p.credential_id(g.credential).expect("a live credential");
    (g.lease, id.to_string())
}

fn fail(class: FailureClass) -> Outcome {
    Outcome::Failure(Failure {
        class,
        http_status: None,
        retry_after_secs: None,
    })
}

/// Uses `id`'s only lease path: acquires until `id` comes, reports `outcome`.
fn use_once(p: &mut Pool<FakeHost>, site: &str, outcome: Outcome) -> (String, ReportEffect) {
    let (lease, id) = grant(p, &req(site));
    (id, p.report(lease, outcome).unwrap())
}

fn counts(p: &mut Pool<FakeHost>, site: &str, n: usize, release: bool) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let (lease, id) = grant(p, &req(site));
        *seen.entry(id).or_default() += 1;
        if release {
            p.release(lease).unwrap();
        }
    }
    seen
}

// ---- strategies -------------------------------------------------------

#[test]
fn health_weighted_is_the_default_and_favours_healthy_credentials() {
    let mut p = pool_with("");
    add(&mut p, "jd.com", "good", Kind::Token);
    add(&mut p, "jd.com", "poor", Kind::Token);
    // Bring "poor" to health 10: nine failures of 10 each.
    for _ in 0..9 {
        let (lease, _) = loop {
            let (l, id) = grant(&mut p, &req("jd.com"));
            if id == "poor" {
                break (l, id);
            }
            p.release(l).unwrap();
        };
        p.report(lease, fail(FailureClass::Other)).unwrap();
    }
    assert_eq!(p.get("poor").unwrap().health, 10);
    let seen = counts(&mut p, "jd.com", 2000, true);
    // Weights 100 : 10, so about 1818 : 182.
    assert!(seen["good"] > 1700 && seen["poor"] > 100, "{seen:?}");
    p.check_invariants();
}

#[test]
fn random_ignores_health() {
    let mut p = pool_with(r#"{"strategy": "random"}"#);
    add(&mut p, "jd.com", "a", Kind::Token);
    add(&mut p, "jd.com", "b", Kind::Token);
    for _ in 0..5 {
        let (l, id) = grant(&mut p, &req("jd.com"));
        if id == "b" {
            p.report(l, fail(FailureClass::Other)).unwrap();
        } else {
            p.release(l).unwrap();
        }
    }
    assert!(p.get("b").unwrap().health < 100);
    let seen = counts(&mut p, "jd.com", 2000, true);
    assert!(seen["a"] > 850 && seen["b"] > 850, "{seen:?}");
}

#[test]
fn round_robin_skips_busy_members_and_keeps_order() {
    let mut p = pool_with(r#"{"strategy": "round-robin"}"#);
    for id in ["a", "b", "c", "d"] {
        add(&mut p, "jd.com", id, Kind::Session);
    }
    let (_held, first) = grant(&mut p, &req("jd.com"));
    assert_eq!(first, "a");
    // "a" stays leased (sessions are exclusive): the turn goes b, c, d, b...
    let seen: Vec<String> = (0..5)
        .map(|_| {
            let (l, id) = grant(&mut p, &req("jd.com"));
            p.release(l).unwrap();
            id
        })
        .collect();
    assert_eq!(seen, ["b", "c", "d", "b", "c"]);
}

#[test]
fn least_recently_used_takes_the_longest_idle() {
    let mut p = pool_with(r#"{"strategy": "least-recently-used"}"#);
    for id in ["a", "b", "c"] {
        add(&mut p, "jd.com", id, Kind::Token);
    }
    let mut order = Vec::new();
    for step in 0..6 {
        p.host.now = T0 + step * 1000;
        let (l, id) = grant(&mut p, &req("jd.com"));
        p.release(l).unwrap();
        order.push(id);
    }
    // Never-used first, then the oldest use each time.
    assert_eq!(order[3..], order[..3]);
    let mut first: Vec<_> = order[..3].to_vec();
    first.sort();
    assert_eq!(first, ["a", "b", "c"]);
    p.check_invariants();
}

#[test]
fn sticky_keeps_one_credential_per_purpose_while_usable() {
    let mut p = pool_with(r#"{"strategy": "sticky", "cooldown_jitter": 0}"#);
    for i in 0..20 {
        add(&mut p, "jd.com", &format!("t{i}"), Kind::Token);
    }
    let search = AcquireRequest {
        purpose: Some("search".into()),
        ..req("jd.com")
    };
    let (l, bound) = grant(&mut p, &search);
    p.report(l, Outcome::Success).unwrap();
    for _ in 0..10 {
        let (l, id) = grant(&mut p, &search);
        assert_eq!(id, bound);
        p.report(l, Outcome::Success).unwrap();
    }
    // Once the bound one rests, the purpose moves to another and stays.
    let (l, _) = grant(&mut p, &search);
    p.report(l, fail(FailureClass::Blocked)).unwrap();
    let (l, moved) = grant(&mut p, &search);
    assert_ne!(moved, bound);
    p.release(l).unwrap();
    for _ in 0..5 {
        let (l, id) = grant(&mut p, &search);
        assert_eq!(id, moved);
        p.release(l).unwrap();
    }
}

#[test]
fn strategy_is_chosen_per_site() {
    let mut p = pool_with(r#"{"strategy": "random", "site_strategy": {"rr.com": "round-robin"}}"#);
    for id in ["a", "b", "c"] {
        add(&mut p, "rr.com", id, Kind::Token);
    }
    let order: Vec<String> = (0..6).map(|_| grant(&mut p, &req("rr.com")).1).collect();
    assert_eq!(order, ["a", "b", "c", "a", "b", "c"]);
    // A reconfiguration re-indexes the site.
    p.set_config(PolicyConfig::from_json(r#"{"strategy": "least-recently-used"}"#).unwrap());
    p.check_invariants();
    let (_, id) = grant(&mut p, &req("rr.com"));
    assert!(["a", "b", "c"].contains(&id.as_str()));
}

#[test]
fn purpose_labels_restrict_credentials_to_their_purposes() {
    let mut p = pool_with("");
    p.add(NewCredential {
        id: Some("buyer".into()),
        site: "jd.com".into(),
        kind: Some(Kind::Token),
        labels: vec![("purpose".into(), "checkout".into())],
        ..Default::default()
    })
    .unwrap();
    add(&mut p, "jd.com", "any", Kind::Token);
    let checkout = AcquireRequest {
        purpose: Some("checkout".into()),
        ..req("jd.com")
    };
    let seen = counts(&mut p, "jd.com", 50, true);
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["any"]);
    let mut both = HashMap::<String, usize>::new();
    for _ in 0..100 {
        let (l, id) = grant(&mut p, &checkout);
        p.release(l).unwrap();
        *both.entry(id).or_default() += 1;
    }
    assert_eq!(both.len(), 2, "{both:?}");
}

// ---- leases and limits ------------------------------------------------

#[test]
fn lease_ttl_comes_from_config_or_the_request() {
    let mut p = pool_with(r#"{"lease_ttl_seconds": 60}"#);
    add(&mut p, "jd.com", "t", Kind::Token);
    let g = p.acquire(&req("jd.com")).unwrap().grant.unwrap();
    assert_eq!(g.expires_at, T0 + 60_000);
    let short = AcquireRequest {
        lease_ttl_ms: Some(1500),
        ..req("jd.com")
    };
    let g = p.acquire(&short).unwrap().grant.unwrap();
    assert_eq!(g.expires_at, T0 + 1500);
}

#[test]
fn a_lapsed_lease_frees_its_slot_on_tick_and_is_no_failure_by_default() {
    let mut p = pool_with("");
    add(&mut p, "jd.com", "s", Kind::Session);
    grant(&mut p, &req("jd.com"));
    p.host.now = T0 + 300_000;
    assert_eq!(p.tick().unwrap().leases_expired, 1);
    let c = p.get("s").unwrap();
    assert_eq!((c.fail_count, c.health), (0, 100));
    grant(&mut p, &req("jd.com"));
}

#[test]
fn a_late_report_is_absorbed_once_within_the_window() {
    let mut p = pool_with("");
    add(&mut p, "jd.com", "s", Kind::Session);
    let (lease, _) = grant(&mut p, &req("jd.com"));
    p.host.now = T0 + 300_000;
    assert_eq!(p.tick().unwrap().leases_expired, 1);
    let blocked = Outcome::Failure(Failure {
        class: FailureClass::Blocked,
        http_status: Some(403),
        retry_after_secs: None,
    });
    let effect = p.report(lease, blocked).unwrap();
    assert!(effect.late);
    assert_eq!(effect.status, Status::Suspended);
    assert_eq!(p.get("s").unwrap().status, Status::Suspended);
    // Once only: the same report again is refused.
    assert!(matches!(
        p.report(lease, blocked),
        Err(PoolError::LeaseNotFound(_))
    ));
}

#[test]
fn a_report_past_the_late_window_is_refused() {
    let mut p = pool_with("");
    add(&mut p, "jd.com", "s", Kind::Session);
    let (lease, _) = grant(&mut p, &req("jd.com"));
    p.host.now = T0 + 300_000;
    assert_eq!(p.tick().unwrap().leases_expired, 1);
    p.host.now = T0 + 300_000 + crate::pool::LATE_REPORT_WINDOW_MS;
    p.tick().unwrap();
    assert!(matches!(
        p.report(lease, Outcome::Success),
        Err(PoolError::LeaseNotFound(_))
    ));
    let c = p.get("s").unwrap();
    assert_eq!((c.fail_count, c.health), (0, 100));
}

#[test]
fn a_lapsed_lease_counts_as_other_failure_when_configured() {
    let mut p = pool_with(r#"{"lapsed_lease_is_failure": true}"#);
    add(&mut p, "jd.com", "s", Kind::Session);
    grant(&mut p, &req("jd.com"));
    p.host.now = T0 + 300_000;
    p.tick().unwrap();
    let c = p.get("s").unwrap();
    assert_eq!((c.fail_count, c.health), (1, 90));
    let stats = p.stats(Some("jd.com"));
    assert_eq!(stats[0].failures, vec![(FailureClass::Other, 1)]);
}

#[test]
fn max_concurrent_caps_leases_and_says_when_one_frees() {
    let mut p = pool_with("");
    p.add(NewCredential {
        id: Some("tok".into()),
        site: "api.com".into(),
        kind: Some(Kind::Token),
        max_concurrent: Some(2),
        ..Default::default()
    })
    .unwrap();
    let (first, _) = grant(&mut p, &req("api.com"));
    p.host.now = T0 + 10_000;
    grant(&mut p, &req("api.com"));
    let r = p.acquire(&req("api.com")).unwrap();
    assert_eq!(r.reason, Some(UnavailableReason::AllLeased));
    assert_eq!(r.next_free_at, Some(T0 + 300_000));
    assert!(r.warnings.iter().any(|w| w.contains("1 leased")), "{r:?}");
    p.release(first).unwrap();
    grant(&mut p, &req("api.com"));
    assert_eq!(
        p.view("tok", AccessLevel::Internal)
            .unwrap()
            .internal
            .unwrap()
            .open_leases,
        2
    );
}

#[test]
fn accounts_and_sessions_are_exclusive_tokens_are_not() {
    let mut p = pool_with("");
    add(&mut p, "a.com", "acct", Kind::Account);
    add(&mut p, "t.com", "tok", Kind::Token);
    grant(&mut p, &req("a.com"));
    assert_eq!(
        p.acquire(&req("a.com")).unwrap().reason,
        Some(UnavailableReason::AllLeased)
    );
    for _ in 0..10 {
        grant(&mut p, &req("t.com"));
    }
}

#[test]
fn the_rate_limit_spaces_uses_and_names_the_next_token() {
    let mut p = pool_with(r#"{"rate_per_minute": 30}"#);
    add(&mut p, "jd.com", "t", Kind::Token);
    let (l, _) = grant(&mut p, &req("jd.com"));
    p.release(l).unwrap();
    let r = p.acquire(&req("jd.com")).unwrap();
    assert_eq!(r.reason, Some(UnavailableReason::AllRateLimited));
    assert_eq!(r.next_free_at, Some(T0 + 2_000));
    p.host.now = T0 + 1_999;
    assert_eq!(
        p.acquire(&req("jd.com")).unwrap().status,
        AcquireStatus::NoAvailable
    );
    p.host.now = T0 + 2_000;
    grant(&mut p, &req("jd.com"));
}

#[test]
fn a_credential_rate_overrides_the_default_and_bursts_are_configurable() {
    let mut p = pool_with(r#"{"rate_per_minute": 1, "rate_burst": 3}"#);
    p.add(NewCredential {
        id: Some("fast".into()),
        site: "jd.com".into(),
        kind: Some(Kind::Token),
        rate_per_minute: Some(60),
        ..Default::default()
    })
    .unwrap();
    for _ in 0..3 {
        grant(&mut p, &req("jd.com"));
    }
    let r = p.acquire(&req("jd.com")).unwrap();
    assert_eq!(r.next_free_at, Some(T0 + 1_000));
}

// ---- health -----------------------------------------------------------

#[test]
fn health_numbers_are_configurable() {
    let mut p = pool_with(
        r#"{"initial_health": 50, "health_success": 5, "health_failure": 20,
            "health_failure_network": 2}"#,
    );
    add(&mut p, "jd.com", "t", Kind::Token);
    assert_eq!(use_once(&mut p, "jd.com", Outcome::Success).1.health, 55);
    assert_eq!(
        use_once(&mut p, "jd.com", fail(FailureClass::Other))
            .1
            .health,
        35
    );
    assert_eq!(
        use_once(&mut p, "jd.com", fail(FailureClass::Network))
            .1
            .health,
        33
    );
}

// ---- state machine through the pool ----------------------------------

#[test]
fn three_blocks_in_a_row_ban_and_a_success_resets_the_count() {
    let mut p = pool_with(r#"{"block_cooldown_seconds": 10, "cooldown_jitter": 0}"#);
    add(&mut p, "jd.com", "s", Kind::Session);
    let mut now = T0;
    let mut block = |p: &mut Pool<FakeHost>| {
        let e = use_once(p, "jd.com", fail(FailureClass::Blocked)).1;
        now = e.cooldown_until.unwrap_or(now);
        p.host.now = now;
        e.status
    };
    assert_eq!(block(&mut p), Status::Suspended);
    assert_eq!(block(&mut p), Status::Suspended);
    use_once(&mut p, "jd.com", Outcome::Success);
    assert_eq!(block(&mut p), Status::Suspended);
    assert_eq!(block(&mut p), Status::Suspended);
    let e = use_once(&mut p, "jd.com", fail(FailureClass::Blocked)).1;
    assert_eq!((e.status, e.cooldown_until), (Status::Banned, None));
    assert_eq!(p.host.alerts_of(AlertKind::Banned), 1);
    let r = p.acquire(&req("jd.com")).unwrap();
    assert_eq!(
        (r.status, r.reason),
        (
            AcquireStatus::AllBlocked,
            Some(UnavailableReason::AllBanned)
        )
    );
    let c = p.unban("s").unwrap();
    assert_eq!(c.status, Status::Active);
    grant(&mut p, &req("jd.com"));
}

#[test]
fn the_ban_threshold_is_configurable() {
    let mut p = pool_with(r#"{"ban_after_blocks": 1}"#);
    add(&mut p, "jd.com", "s", Kind::Session);
    let e = use_once(&mut p, "jd.com", fail(FailureClass::Blocked)).1;
    assert_eq!(e.status, Status::Banned);
}

#[test]
fn commands_from_the_wrong_state_are_typed_errors() {
    let mut p = pool_with("");
    add(&mut p, "jd.com", "s", Kind::Session);
    for event in [
        Event::Unban,
        Event::Refreshed,
        Event::ChallengeResolved,
        Event::CooldownEnded,
    ] {
        let before = p.get("s").unwrap();
        let r = p.command("s", event);
        if event == Event::Refreshed {
            // init -> active after a (re)login is a card arrow.
            assert_eq!(r.unwrap().status, Status::Active);
            continue;
        }
        assert_eq!(
            r.unwrap_err(),
            PoolError::IllegalTransition {
                from: before.status,
                event: event.name().to_string()
            }
        );
        assert_eq!(p.get("s").unwrap().status, before.status);
    }
}

#[test]
fn expired_and_challenged_come_back_by_their_commands_only() {
    let mut p = pool_with("");
    add(&mut p, "jd.com", "s", Kind::Session);
    use_once(&mut p, "jd.com", fail(FailureClass::Expired));
    assert!(p.command("s", Event::ChallengeResolved).is_err());
    assert_eq!(
        p.command("s", Event::Refreshed).unwrap().status,
        Status::Active
    );
    use_once(&mut p, "jd.com", fail(FailureClass::Challenged));
    assert_eq!(
        p.acquire(&req("jd.com")).unwrap().reason,
        Some(UnavailableReason::AllRefreshing)
    );
    assert!(p.command("s", Event::Refreshed).is_err());
    assert_eq!(
        p.command("s", Event::ChallengeResolved).unwrap().status,
        Status::Active
    );
}

#[test]
fn a_rest_cannot_be_ended_early_by_command() {
    let mut p = pool_with("");
    add(&mut p, "jd.com", "s", Kind::Session);
    use_once(&mut p, "jd.com", fail(FailureClass::RateLimited));
    assert!(matches!(
        p.command("s", Event::CooldownEnded),
        Err(PoolError::IllegalTransition {
            from: Status::Cooling,
            ..
        })
    ));
}

#[test]
fn an_expiry_time_takes_a_credential_out_when_it_passes() {
    let mut p = pool_with("");
    p.add(NewCredential {
        id: Some("s".into()),
        site: "jd.com".into(),
        kind: Some(Kind::Token),
        expires_at: Some(T0 + 5_000),
        ..Default::default()
    })
    .unwrap();
    grant(&mut p, &req("jd.com"));
    p.host.now = T0 + 5_000;
    let r = p.acquire(&req("jd.com")).unwrap();
    assert_eq!(r.reason, Some(UnavailableReason::AllRefreshing));
    p.check_invariants();
}

// ---- cooldowns --------------------------------------------------------

#[test]
fn rate_limits_rest_300s_then_double_up_to_the_cap() {
    let mut p = pool_with(r#"{"cooldown_jitter": 0, "cooldown_cap_seconds": 1000}"#);
    add(&mut p, "jd.com", "s", Kind::Session);
    let mut rests = Vec::new();
    for _ in 0..4 {
        let e = use_once(&mut p, "jd.com", fail(FailureClass::RateLimited)).1;
        assert_eq!(e.status, Status::Cooling);
        let until = e.cooldown_until.unwrap();
        rests.push(until - p.host.now);
        p.host.now = until;
    }
    assert_eq!(rests, [300_000, 600_000, 1_000_000, 1_000_000]);
    // A success resets the backoff.
    use_once(&mut p, "jd.com", Outcome::Success);
    let e = use_once(&mut p, "jd.com", fail(FailureClass::RateLimited)).1;
    assert_eq!(e.cooldown_until.unwrap() - p.host.now, 300_000);
}

#[test]
fn blocks_rest_a_day_then_two_with_jitter_within_bounds() {
    let mut p = pool_with(r#"{"ban_after_blocks": 5}"#);
    add(&mut p, "jd.com", "s", Kind::Session);
    let e = use_once(&mut p, "jd.com", fail(FailureClass::Blocked)).1;
    let rest = e.cooldown_until.unwrap() - p.host.now;
    assert!((86_400_000..=95_040_000).contains(&rest), "{rest}");
    p.host.now = e.cooldown_until.unwrap();
    let e = use_once(&mut p, "jd.com", fail(FailureClass::Blocked)).1;
    let rest = e.cooldown_until.unwrap() - p.host.now;
    assert!((172_800_000..=190_080_000).contains(&rest), "{rest}");
}

#[test]
fn retry_after_is_honoured_and_a_later_report_never_shortens_a_rest() {
    let mut p = pool_with(r#"{"cooldown_jitter": 0}"#);
    p.add(NewCredential {
        id: Some("tok".into()),
        site: "api.com".into(),
        kind: Some(Kind::Token),
        max_concurrent: Some(3),
        ..Default::default()
    })
    .unwrap();
    let (a, _) = grant(&mut p, &req("api.com"));
    let (b, _) = grant(&mut p, &req("api.com"));
    let (c, _) = grant(&mut p, &req("api.com"));
    let retry = |secs| {
        Outcome::Failure(Failure {
            class: FailureClass::RateLimited,
            http_status: Some(429),
            retry_after_secs: Some(secs),
        })
    };
    let e = p.report(a, retry(900)).unwrap();
    assert_eq!(e.cooldown_until, Some(T0 + 900_000));
    // A shorter Retry-After on a concurrent lease keeps the longer rest.
    let e = p.report(b, retry(5)).unwrap();
    assert_eq!(e.cooldown_until, Some(T0 + 900_000));
    // A block escalates to suspended, for a day.
    let e = p.report(c, fail(FailureClass::Blocked)).unwrap();
    assert_eq!(e.status, Status::Suspended);
    assert_eq!(e.cooldown_until, Some(T0 + 86_400_000));
}

#[test]
fn a_finished_rest_serves_again_before_the_tick_and_turns_active_on_use() {
    let mut p = pool_with(r#"{"cooldown_jitter": 0}"#);
    add(&mut p, "jd.com", "s", Kind::Session);
    use_once(&mut p, "jd.com", fail(FailureClass::RateLimited));
    p.host.now = T0 + 300_000;
    let (_, id) = grant(&mut p, &req("jd.com"));
    assert_eq!(id, "s");
    assert_eq!(p.get("s").unwrap().status, Status::Active);
    assert_eq!(p.tick().unwrap().cooldowns_ended, 0);
}

// ---- answers when nothing is free -------------------------------------

#[test]
fn a_mixed_pool_says_mixed_with_counts_and_the_earliest_free_time() {
    let mut p = pool_with(r#"{"cooldown_jitter": 0}"#);
    add(&mut p, "jd.com", "a", Kind::Session);
    add(&mut p, "jd.com", "b", Kind::Session);
    let (la, _) = grant(&mut p, &req("jd.com"));
    let (lb, _) = grant(&mut p, &req("jd.com"));
    p.report(la, fail(FailureClass::RateLimited)).unwrap();
    let r = p.acquire(&req("jd.com")).unwrap();
    assert_eq!(r.status, AcquireStatus::NoAvailable);
    assert_eq!(r.reason, Some(UnavailableReason::Mixed));
    assert_eq!(r.next_free_at, Some(T0 + 300_000));
    assert!(r.warnings.contains(&"1 leased".to_string()), "{r:?}");
    assert!(r.warnings.contains(&"1 cooling".to_string()), "{r:?}");
    assert!(!r.alternatives.is_empty());
    p.release(lb).unwrap();
    grant(&mut p, &req("jd.com"));
}

#[test]
fn a_filter_that_matches_nothing_suggests_dropping_it() {
    let mut p = pool_with("");
    add(&mut p, "jd.com", "a", Kind::Session);
    let r = p
        .acquire(&AcquireRequest {
            kind: Some(Kind::Account),
            ..req("jd.com")
        })
        .unwrap();
    assert_eq!(r.reason, Some(UnavailableReason::NoneMatch));
    assert!(r.alternatives[0].contains("filter"), "{r:?}");
}

// ---- anomalies --------------------------------------------------------

#[test]
fn a_block_burst_across_a_site_is_raised_once_and_cleared_after_the_window() {
    let mut p = pool_with(r#"{"block_burst_count": 5}"#);
    for i in 0..20 {
        add(&mut p, "jd.com", &format!("s{i}"), Kind::Session);
    }
    for _ in 0..8 {
        use_once(&mut p, "jd.com", fail(FailureClass::Blocked));
    }
    assert_eq!(p.host.alerts_of(AlertKind::BlockBurst), 1);
    let stats = p.stats(Some("jd.com"));
    assert!(
        stats[0]
            .anomalies
            .iter()
            .any(|a| a.kind == AlertKind::BlockBurst)
    );
    p.host.now = T0 + 601_000;
    p.tick().unwrap();
    let stats = p.stats(Some("jd.com"));
    assert!(
        !stats[0]
            .anomalies
            .iter()
            .any(|a| a.kind == AlertKind::BlockBurst)
    );
}

#[test]
fn low_health_is_raised_once_per_credential() {
    let mut p = pool_with(r#"{"low_health_threshold": 50}"#);
    add(&mut p, "jd.com", "t", Kind::Token);
    for _ in 0..9 {
        use_once(&mut p, "jd.com", fail(FailureClass::Network));
    }
    assert_eq!(p.host.alerts_of(AlertKind::LowHealth), 1);
    let a = &p
        .host
        .alerts
        .iter()
        .find(|a| a.kind == AlertKind::LowHealth)
        .unwrap();
    assert_eq!(a.credential_id.as_deref(), Some("t"));
    let stats = p.stats(None);
    assert_eq!(stats[0].anomalies.len(), 1);
}

#[test]
fn a_sudden_fall_in_success_rate_is_raised_once() {
    let mut p = pool_with(r#"{"low_health_threshold": 0}"#);
    add(&mut p, "jd.com", "t", Kind::Token);
    for _ in 0..100 {
        use_once(&mut p, "jd.com", Outcome::Success);
    }
    assert_eq!(p.host.alerts_of(AlertKind::SuccessRateDrop), 0);
    for _ in 0..30 {
        use_once(&mut p, "jd.com", fail(FailureClass::Network));
    }
    // One for the credential, one for its site: both fell.
    let drops: Vec<Option<String>> = p
        .host
        .alerts
        .iter()
        .filter(|a| a.kind == AlertKind::SuccessRateDrop)
        .map(|a| a.credential_id.clone())
        .collect();
    assert_eq!(drops.len(), 2, "{drops:?}");
    assert!(drops.contains(&None) && drops.contains(&Some("t".into())));
}

#[test]
fn an_exhausted_pool_is_raised_once_until_it_serves_again() {
    let mut p = pool_with("");
    add(&mut p, "jd.com", "s", Kind::Session);
    let (l, _) = grant(&mut p, &req("jd.com"));
    for _ in 0..5 {
        p.acquire(&req("jd.com")).unwrap();
    }
    assert_eq!(p.host.alerts_of(AlertKind::PoolExhausted), 1);
    p.release(l).unwrap();
    let (l, _) = grant(&mut p, &req("jd.com"));
    assert!(p.stats(None)[0].anomalies.is_empty());
    // Dry again within the window: not raised again; after it, raised.
    p.acquire(&req("jd.com")).unwrap();
    assert_eq!(p.host.alerts_of(AlertKind::PoolExhausted), 1);
    p.release(l).unwrap();
    let (_, _) = grant(&mut p, &req("jd.com"));
    p.host.now += 601_000;
    p.acquire(&req("jd.com")).unwrap();
    assert_eq!(p.host.alerts_of(AlertKind::PoolExhausted), 2);
}

#[test]
fn an_exhaustion_episode_outlives_the_process_and_ends_with_a_grant() {
    let mut p = pool_with(r#"{"cooldown_jitter": 0}"#);
    add(&mut p, "jd.com", "s", Kind::Session);
    let (_, effect) = use_once(&mut p, "jd.com", fail(FailureClass::RateLimited));
    let refused = p.acquire(&req("jd.com")).unwrap();
    assert_eq!(refused.status, AcquireStatus::NoAvailable);
    assert_eq!(p.host.alerts_of(AlertKind::PoolExhausted), 1);
    p.flush().unwrap();
    // Another process over the same store: the same episode, no new alert,
    // still listed in the site's anomalies.
    let mut p = Pool::load(p.host, PolicyConfig::from_json("{}").unwrap()).unwrap();
    p.acquire(&req("jd.com")).unwrap();
    assert_eq!(p.host.alerts_of(AlertKind::PoolExhausted), 1);
    let listed = &p.stats(None)[0].anomalies;
    assert!(
        listed.iter().any(|a| a.kind == AlertKind::PoolExhausted),
        "{listed:?}"
    );
    // It serves again: the episode ends, in the store too.
    p.host.now = effect.cooldown_until.unwrap();
    grant(&mut p, &req("jd.com"));
    assert!(!p.host.data.keys().any(|k| k.starts_with("exhausted/")));
    assert!(p.stats(None)[0].anomalies.is_empty());
}

#[test]
fn a_health_wobbling_around_the_threshold_is_notified_once_per_quiet_window() {
    let mut p = pool_with(
        r#"{"initial_health": 45, "health_success": 10, "health_failure": 10,
            "low_health_threshold": 30, "realert_after_seconds": 600}"#,
    );
    add(&mut p, "jd.com", "s", Kind::Session);
    let wobble = |p: &mut Pool<FakeHost>| {
        use_once(p, "jd.com", fail(FailureClass::Network));
        use_once(p, "jd.com", fail(FailureClass::Network));
        use_once(p, "jd.com", Outcome::Success);
        use_once(p, "jd.com", Outcome::Success);
    };
    // 45 -> 25 (raised) -> 45 (cleared above the margin), three times.
    for _ in 0..3 {
        wobble(&mut p);
    }
    assert_eq!(p.host.alerts_of(AlertKind::LowHealth), 1);
    p.host.now += 601_000;
    wobble(&mut p);
    assert_eq!(p.host.alerts_of(AlertKind::LowHealth), 2);
    // Listed in stats while low, whether notified or not.
    use_once(&mut p, "jd.com", fail(FailureClass::Network));
    use_once(&mut p, "jd.com", fail(FailureClass::Network));
    assert_eq!(p.stats(None)[0].anomalies.len(), 1);
}

// ---- diagnostics ------------------------------------------------------

#[test]
fn cred_events_are_logged_with_personal_data_masked() {
    let mut p = pool_with(r#"{"ban_after_blocks": 1}"#);
    p.add(NewCredential {
        id: Some("acct".into()),
        site: "jd.com".into(),
        kind: Some(Kind::Account),
        username: Some("alice.wonderland".into()),
        ..Default::default()
    })
    .unwrap();
    use_once(&mut p, "jd.com", fail(FailureClass::Blocked));
    p.acquire(&req("jd.com")).unwrap();
    for name in [
        "cred.request",
        "cred.available",
        "cred.chosen",
        "cred.blocked",
        "cred.no_available",
        "cred.health_drop",
    ] {
        assert!(p.host.events_named(name) > 0, "no {name}");
    }
    let chosen = p.host.events.iter().find(|e| e.1 == "cred.chosen").unwrap();
    assert!(
        chosen
            .2
            .contains(&("user".to_string(), "***land".to_string()))
    );
    for (_, _, fields) in &p.host.events {
        for (_, v) in fields {
            assert!(!v.contains("alice"), "unmasked: {v}");
        }
    }
}

#[test]
fn per_credential_anomalies_listed_in_stats_are_capped_but_all_notified() {
    let mut p = pool_with(r#"{"low_health_threshold": 95}"#);
    for i in 0..150 {
        add(&mut p, "jd.com", &format!("t{i}"), Kind::Token);
    }
    let mut sunk = std::collections::HashSet::new();
    while sunk.len() < 150 {
        let (lease, id) = grant(&mut p, &req("jd.com"));
        if sunk.insert(id) {
            p.report(lease, fail(FailureClass::Network)).unwrap();
        } else {
            p.release(lease).unwrap();
        }
    }
    assert_eq!(p.host.alerts_of(AlertKind::LowHealth), 150);
    assert_eq!(p.stats(None)[0].anomalies.len(), 100);
}
