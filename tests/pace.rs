//! Adaptive pacing end to end: the real component learns a credential's
//! pace from reported results, cuts a site's pace on a burst of blocks and
//! says so in the alert and the `[CRED]` log, shows it in stats, and keeps
//! it across a reopen of the store on disk.

use crate::support;

use credpool::crypto::create_key_file;
use credpool::{
    AccessLevel, AcquireRequest, CredentialKind, Failure, FailureClass, NewCredential, Outcome,
    Pool, PoolOptions,
};
use std::time::Duration;
use support::*;

const ADAPTIVE: &str = r#"{"adaptive": true, "min_rate_per_minute": 6,
    "max_rate_per_minute": 600, "strategy": "round-robin", "cooldown_seconds": 1,
    "block_cooldown_seconds": 1, "block_burst_count": 3, "block_burst_window_seconds": 60}"#;

fn token(id: &str) -> NewCredential {
    let mut new = NewCredential::new("jd.com", CredentialKind::Token).with_id(id);
    new.secrets.access_token = Some(format!("secret-{id}"));
    new
}

fn failure(class: FailureClass, retry_after_secs: Option<u32>) -> Outcome {
    Outcome::Failure(Failure {
        class,
        http_status: Some(429),
        retry_after_secs,
    })
}

/// A minute on, one use reported as `outcome`.
fn use_once(pool: &Pool, clock: &credpool::ManualClock, outcome: Outcome) {
    clock.advance(Duration::from_secs(60));
    let lease = pool
        .acquire(&AcquireRequest::site("jd.com"))
        .unwrap()
        .lease
        .expect("a lease");
    pool.report(lease.id, outcome).unwrap();
}

fn rate(pool: &Pool, id: &str) -> Option<u32> {
    let view = pool.view(id, AccessLevel::Internal).unwrap();
    view.internal.unwrap().rate_per_minute
}

#[test]
fn the_component_learns_the_pace_and_a_burst_cuts_the_site() {
    let (pool, clock, events) = memory_pool_with(ADAPTIVE);
    for i in 0..4 {
        pool.add(token(&format!("t{i}"))).unwrap();
    }
    assert_eq!(rate(&pool, "t0"), Some(60), "starts at one use a second");
    // Slow start doubles per 4 s of uses: about 40 successes each to 600.
    for _ in 0..400 {
        use_once(&pool, &clock, Outcome::Success);
    }
    assert_eq!(rate(&pool, "t0"), Some(600));
    assert_eq!(
        pool.stats(Some("jd.com")).unwrap()[0].pace_per_minute,
        Some(600)
    );
    // A 429 asking for 5 s: the credential rests 5 s and its pace is cut
    // by 30%.
    use_once(&pool, &clock, failure(FailureClass::RateLimited, Some(5)));
    assert_eq!(rate(&pool, "t0"), Some(420));
    for _ in 0..3 {
        clock.advance(Duration::from_secs(1));
        let lease = pool
            .acquire(&AcquireRequest::site("jd.com"))
            .unwrap()
            .lease
            .unwrap();
        pool.report(lease.id, failure(FailureClass::Blocked, None))
            .unwrap();
    }
    let lines = events.lines();
    assert!(
        lines.iter().any(|l| l.contains("[CRED] cred.pace")
            && l.contains("site jd.com pace 600 -> 300/min after 3 blocks in 60 s")),
        "{lines:#?}"
    );
    let stats = &pool.stats(Some("jd.com")).unwrap()[0];
    let burst = stats
        .anomalies
        .iter()
        .find(|a| a.detail.contains("blocks within the window"))
        .expect("the burst is listed");
    assert!(
        burst
            .detail
            .contains("the pool cut the site's pace to 300/min"),
        "{}",
        burst.detail
    );
    assert!(stats.pace_per_minute.unwrap() <= 300);
}

#[test]
fn the_learned_pace_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    create_key_file(&dir.path().join("credpool.key")).unwrap();
    let clock = credpool::ManualClock::at(T0);
    let open = || {
        let mut options = PoolOptions::on_disk(dir.path());
        options.policy_config = ADAPTIVE.to_string();
        options.clock = Some(clock.clone());
        Pool::open(options).unwrap()
    };
    let pool = open();
    pool.add(token("t0")).unwrap();
    for _ in 0..20 {
        use_once(&pool, &clock, Outcome::Success);
    }
    let learned = rate(&pool, "t0").unwrap();
    assert!(learned > 150, "{learned}");
    pool.flush().unwrap();
    drop(pool);
    let pool = open();
    let back = rate(&pool, "t0").unwrap();
    assert!(
        back.abs_diff(learned) * 20 <= learned,
        "{learned} -> {back}"
    );
}
