//! The adaptive pace through the pool: learned per credential from its
//! results, cut across a site by a burst of blocks, shown in stats, logged
//! as `[CRED]` events, and kept across a reload.

use super::Pool;
use crate::config::PolicyConfig;
use crate::model::*;
use crate::ports::fake::FakeHost;

const T0: Millis = 1_700_000_000_000;

fn pool_with(json: &str) -> Pool<FakeHost> {
    Pool::load(FakeHost::new(T0), PolicyConfig::from_json(json).unwrap()).unwrap()
}

fn adaptive() -> Pool<FakeHost> {
    pool_with(
        r#"{"adaptive": true, "min_rate_per_minute": 6, "max_rate_per_minute": 600,
            "strategy": "round-robin", "cooldown_seconds": 1, "block_cooldown_seconds": 1,
            "block_burst_count": 3, "block_burst_window_seconds": 60}"#,
    )
}

fn add(p: &mut Pool<FakeHost>, id: &str) {
    p.add(NewCredential {
        id: Some(id.into()),
        site: "jd.com".into(),
        kind: Some(Kind::Token),
        ..Default::default()
    })
    .unwrap();
}

fn req() -> AcquireRequest {
    AcquireRequest {
        site: "jd.com".into(),
        ..Default::default()
    }
}

fn failure(class: FailureClass, retry_after_secs: Option<u32>) -> Outcome {
    Outcome::Failure(Failure {
        class,
        http_status: None,
        retry_after_secs,
    })
}

/// A minute later (every rest and rate token over), one use of the next
/// credential in turn, reported as `outcome`; its id.
fn use_once(p: &mut Pool<FakeHost>, outcome: Outcome) -> String {
    p.host.now += 60_000;
    let resp = p.acquire(&req()).unwrap();
    let g = resp.grant.expect("a grant");
    let id = p.credential_id(g.credential).unwrap().to_string();
    p.report(g.lease, outcome).unwrap();
    id
}

fn pace(p: &Pool<FakeHost>, id: &str) -> u32 {
    p.get(id).unwrap().pace_per_minute
}

#[test]
fn the_pace_starts_cautious_rises_with_successes_and_is_cut_by_refusals() {
    let mut p = adaptive();
    add(&mut p, "t");
    use_once(&mut p, Outcome::Success);
    // From one use a second, slow start: a doubling per 4 s of uses
    // (raise 1/16), 4 uses at this pace.
    assert_eq!(pace(&p, "t"), 71);
    for _ in 0..20 {
        use_once(&mut p, Outcome::Success);
    }
    let raised = pace(&p, "t");
    assert!(raised > 150, "{raised}");
    // Uses a minute apart are idleness, not a measured pace: the cut is
    // from the pace. The Retry-After is honoured by the rest, not by a
    // deeper cut.
    use_once(&mut p, failure(FailureClass::RateLimited, None));
    let cut = pace(&p, "t");
    assert!(cut.abs_diff(raised * 7 / 10) <= 1, "{raised} -> {cut}");
    use_once(&mut p, failure(FailureClass::RateLimited, Some(2)));
    let again = pace(&p, "t");
    assert!(again.abs_diff(cut * 7 / 10) <= 1, "{cut} -> {again}");
    use_once(&mut p, failure(FailureClass::Blocked, None));
    assert!(pace(&p, "t").abs_diff(again / 4) <= 1);
    for _ in 0..2 {
        use_once(&mut p, failure(FailureClass::Blocked, None));
    }
    assert_eq!(pace(&p, "t"), 6, "never below min_rate_per_minute");
    // The cuts are [CRED] events naming why.
    let cuts = p.host.events.iter().filter(|e| e.1 == "cred.pace").count();
    assert_eq!(cuts, 5);
}

#[test]
fn the_learned_pace_spaces_the_uses() {
    let mut p = adaptive();
    add(&mut p, "t");
    use_once(&mut p, failure(FailureClass::RateLimited, Some(5)));
    // 60 cut by 30%: 42 a minute, 1,428 ms apart.
    assert_eq!(pace(&p, "t"), 42);
    p.host.now += 60_000;
    let g = p.acquire(&req()).unwrap().grant.unwrap();
    p.release(g.lease).unwrap();
    let r = p.acquire(&req()).unwrap();
    assert_eq!(r.reason, Some(UnavailableReason::AllRateLimited));
    assert_eq!(r.next_free_at, Some(p.host.now + 1_428));
}

#[test]
fn a_burst_of_blocks_cuts_the_whole_site_and_the_alert_says_so() {
    let mut p = adaptive();
    for i in 0..6 {
        add(&mut p, &format!("t{i}"));
    }
    for _ in 0..600 {
        use_once(&mut p, Outcome::Success);
    }
    let before = pace(&p, "t5");
    assert_eq!(before, 600, "raised to the bound");
    // Three blocks within the window (the minute steps are the window's
    // length, so the three must come closer together).
    for _ in 0..3 {
        p.host.now += 1_000;
        let g = p.acquire(&req()).unwrap().grant.unwrap();
        p.report(g.lease, failure(FailureClass::Blocked, None))
            .unwrap();
    }
    let alert = p
        .host
        .alerts
        .iter()
        .find(|a| a.kind == AlertKind::BlockBurst)
        .expect("a block-burst alert");
    assert!(
        alert.message.contains("cut the site's pace to 300/min"),
        "{}",
        alert.message
    );
    let site_event = p
        .host
        .events
        .iter()
        .find(|e| e.1 == "cred.pace" && !e.2.iter().any(|(k, _)| k == "id"))
        .expect("a site pace event");
    let why = &site_event.2.iter().find(|(k, _)| k == "why").unwrap().1;
    assert_eq!(
        why,
        "site jd.com pace 600 -> 300/min after 3 blocks in 60 s"
    );
    // A member never blocked is under the ceiling at its next use.
    let stats = p.stats(Some("jd.com"));
    assert!(stats[0].pace_per_minute.unwrap() <= 300);
    p.host.now += 60_000;
    let g = p.acquire(&req()).unwrap().grant.unwrap();
    let id = p.credential_id(g.credential).unwrap().to_string();
    assert!(["t3", "t4", "t5"].contains(&id.as_str()), "{id}");
    assert_eq!(pace(&p, &id), 300);
}

#[test]
fn a_fixed_rate_is_left_alone_when_pacing_is_not_adaptive() {
    let mut p = pool_with(r#"{"rate_per_minute": 30, "cooldown_seconds": 1}"#);
    add(&mut p, "t");
    for _ in 0..5 {
        use_once(&mut p, Outcome::Success);
    }
    use_once(&mut p, failure(FailureClass::RateLimited, None));
    assert_eq!(pace(&p, "t"), 0);
    assert_eq!(p.stats(None)[0].pace_per_minute, None);
    assert_eq!(p.host.events_named("cred.pace"), 0);
}

#[test]
fn the_learned_pace_survives_a_reload() {
    let mut p = adaptive();
    add(&mut p, "t");
    for _ in 0..10 {
        use_once(&mut p, Outcome::Success);
    }
    use_once(&mut p, failure(FailureClass::RateLimited, None));
    let learned = pace(&p, "t");
    p.flush().unwrap();
    let config = p.config.clone();
    let p = Pool::load(p.host, config).unwrap();
    let back = pace(&p, "t");
    assert!(
        back.abs_diff(learned) * 20 <= learned,
        "{learned} -> {back}"
    );
    assert!(back.abs_diff(60) > 5, "not the starting pace again: {back}");
    // The restored pace is taken as the refused one: no slow start again.
    let mut p = p;
    use_once(&mut p, Outcome::Success);
    let next = pace(&p, "t");
    assert!(next >= back && next <= back + 2, "{back} -> {next}");
}

#[test]
fn a_refusal_of_a_use_already_under_way_during_the_rest_does_not_cut_again() {
    let mut p = adaptive();
    add(&mut p, "t");
    p.host.now += 60_000;
    // A token serves two uses at once (the rate burst is one, so the
    // second comes a pace's spacing later).
    let first = p.acquire(&req()).unwrap().grant.unwrap();
    p.host.now += 1_000;
    let second = p.acquire(&req()).unwrap().grant.unwrap();
    p.report(first.lease, failure(FailureClass::RateLimited, Some(5)))
        .unwrap();
    assert_eq!(pace(&p, "t"), 42);
    p.report(second.lease, failure(FailureClass::RateLimited, Some(5)))
        .unwrap();
    assert_eq!(pace(&p, "t"), 42, "one cut per refusal episode");
    assert_eq!(p.host.events_named("cred.pace"), 1);
}
