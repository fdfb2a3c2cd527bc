//! Native tests of the ways back into rotation, the truth of `next_free_at`
//! under filters, stored acquire and outcome counts, and `prefer_fresh`.

use crate::config::PolicyConfig;
use crate::lifecycle::{ChallengeKind, Completed, RunOutcome};
use crate::model::*;
use crate::pool::Pool;
use crate::ports::fake::FakeHost;

const T0: Millis = 1_700_000_000_000;
const MIN: Millis = 60_000;

/// jd.com logs in again (a recipe); every other site has nothing.
const LIFECYCLE: &str = r#"{"lifecycle": {
    "default": {"method": "none", "can_relogin": false, "health_check_interval": 0},
    "sites": {
        "jd.com": {"method": "relogin", "jitter": 0, "clock_skew": 0,
                   "health_check_interval": 0, "can_relogin": true, "ticket_timeout": 600}
    }}}"#;

fn pool_with(json: &str) -> Pool<FakeHost> {
    Pool::load(FakeHost::new(T0), PolicyConfig::from_json(json).unwrap()).unwrap()
}

fn add(p: &mut Pool<FakeHost>, site: &str, id: &str, kind: Kind) {
    add_full(p, site, id, kind, None, &[]);
}

fn add_full(
    p: &mut Pool<FakeHost>,
    site: &str,
    id: &str,
    kind: Kind,
    expires_at: Option<Millis>,
    tags: &[&str],
) {
    p.add(NewCredential {
        id: Some(id.into()),
        site: site.into(),
        kind: Some(kind),
        expires_at,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    })
    .unwrap();
}

fn req(site: &str) -> AcquireRequest {
    AcquireRequest {
        site: site.into(),
        ..Default::default()
    }
}

fn of_kind(site: &str, kind: Kind) -> AcquireRequest {
    AcquireRequest {
        kind: Some(kind),
        ..req(site)
    }
}

fn failure(class: FailureClass) -> Outcome {
    Outcome::Failure(Failure {
        class,
        http_status: None,
        retry_after_secs: None,
    })
}

/// Leases `id` (the only ready match of `r`) and reports `outcome`.
fn use_once(p: &mut Pool<FakeHost>, r: &AcquireRequest, id: &str, outcome: Outcome) {
    let g = p.acquire(r).unwrap().grant.expect("a grant");
    assert_eq!(p.credential_id(g.credential), Some(id));
    p.report(g.lease, outcome).unwrap();
}

fn person_actions(p: &Pool<FakeHost>, site: &str) -> Vec<(String, Status, String)> {
    let s = p.stats(Some(site)).remove(0);
    assert_eq!(s.needs_person_total as usize, s.needs_person.len());
    s.needs_person
        .into_iter()
        .map(|n| (n.credential_id, n.status, n.action))
        .collect()
}

#[test]
fn an_expired_session_of_a_site_with_no_refresh_names_a_person_and_unban_brings_it_back() {
    let mut p = pool_with("{}");
    add_full(
        &mut p,
        "shop.com",
        "s1",
        Kind::Session,
        Some(T0 + 10 * MIN),
        &[],
    );
    use_once(
        &mut p,
        &req("shop.com"),
        "s1",
        failure(FailureClass::Expired),
    );
    assert_eq!(p.get("s1").unwrap().status, Status::Expired);
    // Nothing brings it back by itself: no time to retry at, and the
    // answer says who must act and how.
    p.host.now += 20 * MIN;
    assert_eq!(p.tick().unwrap().refreshes_started, 0);
    let r = p.acquire(&req("shop.com")).unwrap();
    assert_eq!(r.status, AcquireStatus::NoAvailable);
    assert_eq!(r.next_free_at, None);
    assert!(!r.alternatives.iter().any(|a| a.starts_with("retry after")));
    let person = r
        .alternatives
        .iter()
        .find(|a| a.contains("need a person"))
        .unwrap_or_else(|| panic!("{:?}", r.alternatives));
    assert!(person.contains("`credpool unban ID`"), "{person}");
    assert!(
        person.contains("`credpool stats --site shop.com`"),
        "{person}"
    );
    // Stats list it, with its own command.
    let listed = person_actions(&p, "shop.com");
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].0.as_str(), listed[0].1), ("s1", Status::Expired));
    assert!(
        listed[0].2.contains("`credpool unban s1`"),
        "{}",
        listed[0].2
    );
    // A challenge reset would leave it expired: refused, naming unban.
    match p.reset_challenge("s1") {
        Err(PoolError::IllegalTransition { from, .. }) => assert_eq!(from, Status::Expired),
        other => panic!("{other:?}"),
    }
    // The person renewed it: unban puts it back, and its past expiry is
    // forgotten (or the next tick would expire it again).
    assert_eq!(p.unban("s1").unwrap().status, Status::Active);
    p.tick().unwrap();
    assert_eq!(p.get("s1").unwrap().status, Status::Active);
    assert_eq!(p.get("s1").unwrap().expires_at, None);
    assert!(person_actions(&p, "shop.com").is_empty());
    let stored: Credential = serde_json::from_slice(&p.host.data["cred/s1"]).unwrap();
    assert_eq!(stored.status, Status::Active, "durable");
    assert_eq!(
        p.acquire(&req("shop.com")).unwrap().status,
        AcquireStatus::Success
    );
    p.check_invariants();
}

#[test]
fn a_challenge_on_a_site_with_no_login_names_a_person_and_reset_refuses_with_the_way() {
    let mut p = pool_with("{}");
    add(&mut p, "shop.com", "s1", Kind::Session);
    use_once(
        &mut p,
        &req("shop.com"),
        "s1",
        failure(FailureClass::Challenged),
    );
    assert_eq!(p.get("s1").unwrap().status, Status::Challenged);
    let listed = person_actions(&p, "shop.com");
    assert_eq!(listed.len(), 1);
    assert!(
        listed[0].2.contains("solve the challenge") && listed[0].2.contains("`credpool unban s1`"),
        "{}",
        listed[0].2
    );
    match p.reset_challenge("s1") {
        Err(PoolError::InvalidInput { field, reason }) => {
            assert_eq!(field, "id");
            assert!(reason.contains("`credpool unban s1`"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.get("s1").unwrap().status, Status::Challenged, "unchanged");
    assert_eq!(p.unban("s1").unwrap().status, Status::Active);
    assert!(person_actions(&p, "shop.com").is_empty());
}

#[test]
fn where_the_site_logs_in_again_the_answer_names_the_login_not_a_person() {
    let mut p = pool_with(LIFECYCLE);
    add(&mut p, "jd.com", "s1", Kind::Session);
    add(&mut p, "jd.com", "s2", Kind::Session);
    for _ in 0..2 {
        let g = p.acquire(&req("jd.com")).unwrap().grant.unwrap();
        p.report(g.lease, failure(FailureClass::Expired)).unwrap();
    }
    let r = p.acquire(&req("jd.com")).unwrap();
    assert_eq!(r.next_free_at, None);
    assert!(
        r.alternatives
            .iter()
            .any(|a| a.starts_with("2 will come back by the site's relogin")),
        "{:?}",
        r.alternatives
    );
    assert!(!r.alternatives.iter().any(|a| a.contains("need a person")));
    assert!(person_actions(&p, "jd.com").is_empty());
    // The login is what brings them back: tick starts it.
    assert_eq!(p.tick().unwrap().refreshes_started, 2);
}

#[test]
fn a_ban_needs_a_person_whatever_the_site_can_do() {
    let mut p = pool_with(r#"{"block_cooldown_seconds": 10, "cooldown_jitter": 0}"#);
    add(&mut p, "jd.com", "s3", Kind::Session);
    for _ in 0..3 {
        use_once(&mut p, &req("jd.com"), "s3", failure(FailureClass::Blocked));
        if let Some(t) = p.get("s3").unwrap().cooldown_until {
            p.host.now = t + 1;
        }
    }
    assert_eq!(p.get("s3").unwrap().status, Status::Banned);
    let listed = person_actions(&p, "jd.com");
    assert_eq!(listed.len(), 1);
    assert!(
        listed[0].2.contains("`credpool unban s3`"),
        "{}",
        listed[0].2
    );
    let r = p.acquire(&req("jd.com")).unwrap();
    assert!(
        r.alternatives
            .iter()
            .any(|a| a.starts_with("1 need a person (banned;")),
        "{:?}",
        r.alternatives
    );
}

#[test]
fn a_challenge_whose_ticket_timed_out_needs_a_reset_and_unban_waits_for_an_open_ticket() {
    let mut p = pool_with(LIFECYCLE);
    add(&mut p, "jd.com", "a1", Kind::Account);
    p.tick().unwrap();
    let r = p.host.refresh_requests[0].clone();
    p.refresh_completed(&Completed {
        request_id: r.request_id,
        credential_id: r.credential_id,
        outcome: RunOutcome::Challenged(ChallengeKind::SmsCode),
    })
    .unwrap();
    // A ticket is open: the answer names it, and unban refuses with it.
    let ticket = p.tickets()[0].id.clone();
    let r = p.acquire(&req("jd.com")).unwrap();
    assert!(
        r.alternatives
            .iter()
            .any(|a| a.starts_with("1 wait on a challenge answer")),
        "{:?}",
        r.alternatives
    );
    match p.unban("a1") {
        Err(PoolError::InvalidInput { reason, .. }) => {
            assert!(reason.contains(&ticket), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // Unanswered: held for a person, who is told to reset it.
    p.host.now += 601_000;
    assert_eq!(p.tick().unwrap().tickets_timed_out, 1);
    let listed = person_actions(&p, "jd.com");
    assert_eq!(listed.len(), 1);
    assert!(
        listed[0].2.contains("`credpool challenge reset a1`"),
        "{}",
        listed[0].2
    );
    let r = p.acquire(&req("jd.com")).unwrap();
    assert!(
        r.alternatives
            .iter()
            .any(|a| a.contains("need a person") && a.contains("challenge reset ID")),
        "{:?}",
        r.alternatives
    );
    assert_eq!(p.reset_challenge("a1").unwrap().status, Status::Expired);
    assert!(person_actions(&p, "jd.com").is_empty());
}

#[test]
fn next_free_at_is_of_the_matches_only() {
    let mut p = pool_with("{}");
    add(&mut p, "jd.com", "acc", Kind::Account);
    add_full(&mut p, "jd.com", "s1", Kind::Session, None, &["eu"]);
    // The only account rests a day; a session is leased for 5 minutes.
    use_once(
        &mut p,
        &of_kind("jd.com", Kind::Account),
        "acc",
        failure(FailureClass::Blocked),
    );
    let rest_end = p.get("acc").unwrap().cooldown_until.unwrap();
    assert!(rest_end > T0 + 3600 * 1000, "a long rest");
    let lease = AcquireRequest {
        lease_ttl_ms: Some(5 * MIN as u64),
        ..of_kind("jd.com", Kind::Session)
    };
    assert!(p.acquire(&lease).unwrap().grant.is_some());
    let r = p.acquire(&of_kind("jd.com", Kind::Account)).unwrap();
    assert_eq!(r.status, AcquireStatus::AllBlocked);
    assert_eq!(
        r.next_free_at,
        Some(rest_end),
        "not the session's lease end"
    );
    // The sessions: the lease end.
    let r = p.acquire(&of_kind("jd.com", Kind::Session)).unwrap();
    assert_eq!(r.next_free_at, Some(T0 + 5 * MIN));
    let tagged = AcquireRequest {
        tags: vec!["eu".into()],
        ..req("jd.com")
    };
    assert_eq!(p.acquire(&tagged).unwrap().next_free_at, Some(T0 + 5 * MIN));
    // Unfiltered: the earliest of all.
    assert_eq!(
        p.acquire(&req("jd.com")).unwrap().next_free_at,
        Some(T0 + 5 * MIN)
    );
}

#[test]
fn acquire_and_outcome_counts_are_stored_and_outlive_the_process() {
    let mut p = pool_with("{}");
    add(&mut p, "jd.com", "s1", Kind::Session);
    use_once(&mut p, &req("jd.com"), "s1", Outcome::Success);
    use_once(&mut p, &req("jd.com"), "s1", failure(FailureClass::Network));
    let g = p.acquire(&req("jd.com")).unwrap().grant.unwrap();
    assert!(p.acquire(&req("jd.com")).unwrap().grant.is_none());
    p.release(g.lease).unwrap();
    let before = p.stats(Some("jd.com")).remove(0);
    assert_eq!((before.granted, before.refused), (3, 1));
    assert_eq!(before.successes, 1);
    assert_eq!(before.failures, vec![(FailureClass::Network, 1)]);
    p.flush().unwrap();
    let mut p = Pool::load(p.host, PolicyConfig::default()).unwrap();
    let after = p.stats(Some("jd.com")).remove(0);
    assert_eq!(
        (
            after.granted,
            after.refused,
            after.successes,
            after.failures
        ),
        (3, 1, 1, vec![(FailureClass::Network, 1)])
    );
    // And they count on from there.
    use_once(&mut p, &req("jd.com"), "s1", Outcome::Success);
    p.flush().unwrap();
    let p = Pool::load(p.host, PolicyConfig::default()).unwrap();
    let s = p.stats(Some("jd.com")).remove(0);
    assert_eq!((s.granted, s.successes), (4, 2));
}

#[test]
fn a_damaged_usage_row_is_a_corrupt_store_not_a_panic() {
    let mut p = pool_with("{}");
    add(&mut p, "jd.com", "s1", Kind::Session);
    use_once(&mut p, &req("jd.com"), "s1", Outcome::Success);
    p.flush().unwrap();
    p.host
        .data
        .insert("usage".into(), b"{\"jd.com\":{\"granted\":".to_vec());
    match Pool::load(p.host, PolicyConfig::default()) {
        Err(PoolError::Storage(StoreError::Corrupt(m))) => assert!(m.contains("usage"), "{m}"),
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("loaded a damaged row"),
    }
}

#[test]
fn prefer_fresh_takes_the_latest_renewed_then_the_most_time_left() {
    let mut p = pool_with(r#"{"strategy": "round-robin"}"#);
    add_full(
        &mut p,
        "jd.com",
        "old",
        Kind::Session,
        Some(T0 + 600 * MIN),
        &[],
    );
    p.host.now += MIN;
    add_full(
        &mut p,
        "jd.com",
        "mid",
        Kind::Session,
        Some(T0 + 300 * MIN),
        &[],
    );
    p.host.now += MIN;
    add_full(
        &mut p,
        "jd.com",
        "new",
        Kind::Session,
        Some(T0 + 100 * MIN),
        &[],
    );
    let fresh = AcquireRequest {
        prefer_fresh: true,
        ..req("jd.com")
    };
    let mut got = Vec::new();
    let mut leases = Vec::new();
    for _ in 0..3 {
        let g = p.acquire(&fresh).unwrap().grant.unwrap();
        got.push(p.credential_id(g.credential).unwrap().to_string());
        leases.push(g.lease);
    }
    assert_eq!(
        got,
        ["new", "mid", "old"],
        "newest first, while each is leased"
    );
    for l in leases {
        p.release(l).unwrap();
    }
    // Round-robin alone starts at the first added.
    let g = p.acquire(&req("jd.com")).unwrap().grant.unwrap();
    assert_eq!(p.credential_id(g.credential), Some("old"));
    p.release(g.lease).unwrap();
    // Added at one instant: the most time left wins.
    let mut p = pool_with("{}");
    add_full(
        &mut p,
        "jd.com",
        "short",
        Kind::Session,
        Some(T0 + 10 * MIN),
        &[],
    );
    add_full(
        &mut p,
        "jd.com",
        "long",
        Kind::Session,
        Some(T0 + 90 * MIN),
        &[],
    );
    for _ in 0..20 {
        let g = p.acquire(&fresh).unwrap().grant.unwrap();
        assert_eq!(p.credential_id(g.credential), Some("long"));
        p.release(g.lease).unwrap();
    }
    // A filter still applies.
    let fresh_short = AcquireRequest {
        prefer_fresh: true,
        kind: Some(Kind::Account),
        ..req("jd.com")
    };
    assert_eq!(
        p.acquire(&fresh_short).unwrap().reason,
        Some(UnavailableReason::NoneMatch)
    );
}

#[test]
fn an_old_rest_end_is_not_named_once_the_credential_waits_on_a_person() {
    let mut p = pool_with("{}");
    add(&mut p, "api.com", "t1", Kind::Token);
    // Two leases at once (a token is shared): one says slow down, the
    // other that the token expired.
    let a = p.acquire(&req("api.com")).unwrap().grant.unwrap();
    let b = p.acquire(&req("api.com")).unwrap().grant.unwrap();
    let rest = p
        .report(a.lease, failure(FailureClass::RateLimited))
        .unwrap();
    assert!(rest.cooldown_until.is_some());
    assert_eq!(
        p.report(b.lease, failure(FailureClass::Expired))
            .unwrap()
            .status,
        Status::Expired
    );
    let r = p.acquire(&req("api.com")).unwrap();
    assert_eq!(r.next_free_at, None, "the rest's end frees nothing now");
    assert!(
        r.alternatives.iter().any(|a| a.contains("need a person")),
        "{:?}",
        r.alternatives
    );
    p.check_invariants();
}
