//! The allocation policy end to end: every strategy, limit, transition and
//! cooldown rule through the real host and the real component, with the
//! policy configured the way `credpool.toml` does it.

use crate::support;

use credpool::cli::bench;
use credpool::{
    AccessLevel, AcquireRequest, AcquireStatus, CredentialKind, Error, Failure, FailureClass,
    LeaseId, NewCredential, Outcome, Pool, PoolError, Status, UnavailableReason,
};
use std::collections::HashMap;
use std::time::Duration;
use support::*;

fn fail(class: FailureClass) -> Outcome {
    Outcome::Failure(Failure {
        class,
        http_status: None,
        retry_after_secs: None,
    })
}

fn token(site: &str, id: &str) -> NewCredential {
    let mut new = NewCredential::new(site, CredentialKind::Token).with_id(id);
    new.secrets.access_token = Some(format!("secret-{id}"));
    new
}

/// Acquires on `site`; panics with the answer when nothing is granted.
fn grant(pool: &Pool, req: &AcquireRequest) -> (LeaseId, String) {
    let got = pool.acquire(req).unwrap();
    let lease = got
        .lease
        .unwrap_or_else(|| panic!("refused: {:?}", got.reason));
    (lease.id, lease.credential.id.to_string())
}

fn picks(pool: &Pool, site: &str, n: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let (lease, id) = grant(pool, &AcquireRequest::site(site));
        pool.release(lease).unwrap();
        *seen.entry(id).or_default() += 1;
    }
    seen
}

/// Uses one credential of `site` and reports `outcome`.
fn use_once(pool: &Pool, site: &str, outcome: Outcome) -> credpool::ReportEffect {
    let (lease, _) = grant(pool, &AcquireRequest::site(site));
    pool.report(lease, outcome).unwrap()
}

#[test]
fn round_robin_and_least_recently_used_follow_their_order() {
    let (pool, clock, _) = memory_pool_with(
        r#"{"site_strategy": {"rr.com": "round-robin", "lru.com": "least-recently-used"}}"#,
    );
    for id in ["a", "b", "c"] {
        pool.add(token("rr.com", &format!("rr-{id}"))).unwrap();
        pool.add(token("lru.com", &format!("lru-{id}"))).unwrap();
    }
    let order: Vec<String> = (0..6)
        .map(|_| grant(&pool, &AcquireRequest::site("rr.com")).1)
        .collect();
    assert_eq!(order, ["rr-a", "rr-b", "rr-c", "rr-a", "rr-b", "rr-c"]);
    let mut lru = Vec::new();
    for _ in 0..6 {
        clock.advance(Duration::from_millis(5));
        let (lease, id) = grant(&pool, &AcquireRequest::site("lru.com"));
        pool.release(lease).unwrap();
        lru.push(id);
    }
    assert_eq!(lru[..3], lru[3..], "{lru:?}");
}

#[test]
fn health_weighted_favours_health_and_random_does_not() {
    let (pool, _, _) = memory_pool_with(r#"{"site_strategy": {"random.com": "random"}}"#);
    for site in ["weighted.com", "random.com"] {
        pool.add(token(site, &format!("{site}-good"))).unwrap();
        pool.add(token(site, &format!("{site}-poor"))).unwrap();
        // Bring "poor" down to health 10.
        let poor = format!("{site}-poor");
        while pool.view(&poor, AccessLevel::Public).unwrap().health > 10 {
            let (lease, id) = grant(&pool, &AcquireRequest::site(site));
            let outcome = if id == poor {
                fail(FailureClass::Other)
            } else {
                Outcome::Success
            };
            pool.report(lease, outcome).unwrap();
        }
    }
    let weighted = picks(&pool, "weighted.com", 1000);
    assert!(weighted["weighted.com-good"] > 800, "{weighted:?}");
    let random = picks(&pool, "random.com", 1000);
    assert!(random["random.com-poor"] > 400, "{random:?}");
}

#[test]
fn sticky_keeps_a_purpose_on_one_credential() {
    let (pool, _, _) = memory_pool_with(r#"{"strategy": "sticky"}"#);
    for i in 0..10 {
        pool.add(token("jd.com", &format!("t{i}"))).unwrap();
    }
    let mut req = AcquireRequest::site("jd.com");
    req.purpose = Some("search".into());
    let (lease, first) = grant(&pool, &req);
    pool.release(lease).unwrap();
    for _ in 0..10 {
        let (lease, id) = grant(&pool, &req);
        assert_eq!(id, first);
        pool.release(lease).unwrap();
    }
}

#[test]
fn kind_and_tag_filters_select_only_matching_credentials() {
    let (pool, _, _) = memory_pool();
    pool.add(session("jd.com", "sess", &[("sid", "v")]))
        .unwrap();
    let mut tagged = token("jd.com", "mobile-token");
    tagged.tags = vec!["mobile".into()];
    pool.add(tagged).unwrap();
    let mut req = AcquireRequest::site("jd.com");
    req.kind = Some(CredentialKind::Session);
    assert_eq!(grant(&pool, &req).1, "sess");
    let mut req = AcquireRequest::site("jd.com");
    req.tags = vec!["mobile".into()];
    assert_eq!(grant(&pool, &req).1, "mobile-token");
    req.tags = vec!["desktop".into()];
    let none = pool.acquire(&req).unwrap();
    assert_eq!(none.reason, Some(UnavailableReason::NoneMatch));
}

#[test]
fn lease_ttl_comes_from_config_and_a_lapse_counts_only_if_configured() {
    let (pool, clock, _) =
        memory_pool_with(r#"{"lease_ttl_seconds": 30, "lapsed_lease_is_failure": true}"#);
    pool.add(session("jd.com", "s1", &[("sid", "v")])).unwrap();
    let lease = pool
        .acquire(&AcquireRequest::site("jd.com"))
        .unwrap()
        .lease
        .unwrap();
    assert_eq!(lease.expires_at - lease.granted_at, 30_000);
    clock.advance(Duration::from_secs(30));
    assert_eq!(pool.tick().unwrap().leases_expired, 1);
    let view = pool.view("s1", AccessLevel::Internal).unwrap();
    let internal = view.internal.unwrap();
    assert_eq!((internal.fail_count, internal.open_leases), (1, 0));
    assert_eq!(view.health, 90);
}

#[test]
fn concurrent_and_rate_limits_refuse_with_the_time_a_slot_frees() {
    let (pool, clock, _) = memory_pool_with(r#"{"rate_per_minute": 6}"#);
    let mut shared = token("api.com", "tok");
    shared.max_concurrent = Some(2);
    pool.add(shared).unwrap();
    let (first, _) = grant(&pool, &AcquireRequest::site("api.com"));
    // Within its rate? Not yet: 6 a minute means one per 10 s.
    let limited = pool.acquire(&AcquireRequest::site("api.com")).unwrap();
    assert_eq!(limited.reason, Some(UnavailableReason::AllRateLimited));
    assert_eq!(limited.next_free_at, Some(T0 + 10_000));
    assert!(!limited.warnings.is_empty());
    clock.advance(Duration::from_secs(10));
    grant(&pool, &AcquireRequest::site("api.com"));
    clock.advance(Duration::from_secs(10));
    let leased = pool.acquire(&AcquireRequest::site("api.com")).unwrap();
    assert_eq!(leased.reason, Some(UnavailableReason::AllLeased));
    assert_eq!(leased.next_free_at, Some(T0 + 300_000));
    pool.release(first).unwrap();
    grant(&pool, &AcquireRequest::site("api.com"));
}

#[test]
fn health_rules_follow_the_config() {
    let (pool, _, _) = memory_pool_with(r#"{"health_success": 3, "health_failure": 25}"#);
    pool.add(token("jd.com", "t")).unwrap();
    assert_eq!(
        use_once(&pool, "jd.com", fail(FailureClass::Other)).health,
        75
    );
    assert_eq!(use_once(&pool, "jd.com", Outcome::Success).health, 78);
}

#[test]
fn the_state_machine_moves_by_the_card_and_an_active_credential_has_nothing_to_lift() {
    let (pool, clock, events) = memory_pool_with(r#"{"cooldown_jitter": 0}"#);
    pool.add(session("jd.com", "s", &[("sid", "v")])).unwrap();
    assert_eq!(
        use_once(&pool, "jd.com", Outcome::Success).status,
        Status::Active
    );
    // Not banned: unban is an illegal transition, by name.
    match pool.unban("s").unwrap_err() {
        Error::Pool(PoolError::IllegalTransition(t)) => {
            assert_eq!((t.from, t.event.as_str()), (Status::Active, "unban"))
        }
        other => panic!("unexpected {other:?}"),
    }
    let e = use_once(&pool, "jd.com", fail(FailureClass::RateLimited));
    assert_eq!(e.status, Status::Cooling);
    clock.set(e.cooldown_until.unwrap());
    // Three blocks in a row, each after the rest ends: suspended, then banned.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let e = use_once(&pool, "jd.com", fail(FailureClass::Blocked));
        statuses.push(e.status);
        if let Some(t) = e.cooldown_until {
            clock.set(t);
        }
    }
    assert_eq!(
        statuses,
        [Status::Suspended, Status::Suspended, Status::Banned]
    );
    let refused = pool.acquire(&AcquireRequest::site("jd.com")).unwrap();
    assert_eq!(refused.status, AcquireStatus::AllBlocked);
    assert_eq!(refused.reason, Some(UnavailableReason::AllBanned));
    assert!(
        events
            .lines()
            .iter()
            .any(|l| l.starts_with("ALERT") && l.contains("Banned"))
    );
    assert_eq!(pool.unban("s").unwrap().status, Status::Active);
    assert_eq!(
        use_once(&pool, "jd.com", fail(FailureClass::Expired)).status,
        Status::Expired
    );
    let refused = pool.acquire(&AcquireRequest::site("jd.com")).unwrap();
    assert_eq!(refused.reason, Some(UnavailableReason::AllRefreshing));
}

#[test]
fn a_challenge_takes_the_credential_out() {
    let (pool, _, _) = memory_pool();
    pool.add(session("jd.com", "s", &[("sid", "v")])).unwrap();
    let e = use_once(&pool, "jd.com", fail(FailureClass::Challenged));
    assert_eq!(e.status, Status::Challenged);
    let stats = pool.stats(Some("jd.com")).unwrap();
    assert_eq!(stats[0].by_status.challenged, 1);
}

#[test]
fn cooldowns_double_on_repeats_honour_retry_after_and_never_shorten() {
    let (pool, clock, _) = memory_pool_with(
        r#"{"cooldown_jitter": 0, "cooldown_seconds": 60, "cooldown_cap_seconds": 200}"#,
    );
    let mut shared = token("api.com", "tok");
    shared.max_concurrent = Some(2);
    pool.add(shared).unwrap();
    let mut rests = Vec::new();
    for _ in 0..3 {
        let now = clock.now_ms();
        let e = use_once(&pool, "api.com", fail(FailureClass::RateLimited));
        rests.push(e.cooldown_until.unwrap() - now);
        clock.set(e.cooldown_until.unwrap());
    }
    assert_eq!(rests, [60_000, 120_000, 200_000]);
    let now = clock.now_ms();
    let (a, _) = grant(&pool, &AcquireRequest::site("api.com"));
    let (b, _) = grant(&pool, &AcquireRequest::site("api.com"));
    let retry = |secs| {
        Outcome::Failure(Failure {
            class: FailureClass::RateLimited,
            http_status: Some(429),
            retry_after_secs: Some(secs),
        })
    };
    let e = pool.report(a, retry(900)).unwrap();
    assert_eq!(e.cooldown_until, Some(now + 900_000));
    let e = pool.report(b, retry(1)).unwrap();
    assert_eq!(e.cooldown_until, Some(now + 900_000));
}

#[test]
fn a_rest_ends_on_tick_and_the_credential_serves_again() {
    let (pool, clock, _) = memory_pool_with(r#"{"cooldown_jitter": 0}"#);
    pool.add(session("jd.com", "s", &[("sid", "v")])).unwrap();
    let e = use_once(&pool, "jd.com", fail(FailureClass::Blocked));
    assert_eq!(e.cooldown_until, Some(T0 + 86_400_000));
    let refused = pool.acquire(&AcquireRequest::site("jd.com")).unwrap();
    assert_eq!(refused.next_free_at, Some(T0 + 86_400_000));
    clock.advance(Duration::from_secs(86_400));
    let tick = pool.tick().unwrap();
    assert_eq!(tick.cooldowns_ended, 1);
    assert_eq!(
        pool.view("s", AccessLevel::Public).unwrap().status,
        Status::Active
    );
    grant(&pool, &AcquireRequest::site("jd.com"));
}

#[test]
fn anomalies_are_notified_once_and_listed_in_stats() {
    let (pool, _, events) = memory_pool_with(r#"{"block_burst_count": 4}"#);
    for i in 0..12 {
        pool.add(session("jd.com", &format!("s{i}"), &[("sid", "v")]))
            .unwrap();
    }
    for _ in 0..8 {
        use_once(&pool, "jd.com", fail(FailureClass::Blocked));
    }
    let bursts = events
        .lines()
        .iter()
        .filter(|l| l.starts_with("ALERT") && l.contains("BlockBurst"))
        .count();
    assert_eq!(bursts, 1);
    let stats = pool.stats(Some("jd.com")).unwrap();
    assert_eq!(stats[0].by_status.suspended, 8);
    assert!(
        stats[0]
            .anomalies
            .iter()
            .any(|a| a.kind == credpool::AlertKind::BlockBurst),
        "{:?}",
        stats[0].anomalies
    );
}

#[test]
fn cred_diagnostics_reach_the_log_with_usernames_masked() {
    let (pool, _, events) = memory_pool();
    let mut new = session("jd.com", "s", &[("sid", "cookie-value")]);
    new.username = Some("alice.wonderland".into());
    pool.add(new).unwrap();
    use_once(&pool, "jd.com", fail(FailureClass::Blocked));
    pool.acquire(&AcquireRequest::site("jd.com")).unwrap();
    let lines = events.lines();
    for name in [
        "cred.chosen",
        "cred.blocked",
        "cred.no_available",
        "cred.health_drop",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(name)),
            "no {name}: {lines:#?}"
        );
    }
    assert!(lines.iter().any(|l| l.contains("***land")), "{lines:#?}");
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("alice") || l.contains("cookie-value"))
    );
}

#[test]
fn bench_measures_pairs_through_the_component() {
    // In-process: the `credpool bench` command prints exactly these figures
    // as JSON (the shared binary is covered by tests/cli.rs's commands).
    let figures = bench::measure(&bench::Settings::new(100, 2000)).unwrap();
    let v = serde_json::to_value(&figures).unwrap();
    assert_eq!(v["credentials"], 100);
    assert_eq!(v["pairs"], 2000);
    assert_eq!(v["store"], "memory");
    for key in ["pairs_per_sec", "p50_us", "p99_us", "bytes_per_credential"] {
        assert!(v[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {v}");
    }
    assert!(figures.p99_us >= figures.p50_us);
    // The default warm-up runs at least a tenth of the pairs and until
    // every credential has had its first use, timed apart.
    assert!(figures.warmup >= 200, "{v}");
    assert_eq!(figures.first_uses, 100, "{v}");
    let first_p50 = figures.first_use_p50_us.expect("first uses timed");
    assert!(figures.first_use_p99_us.is_some_and(|p99| p99 >= first_p50));
    // Every pair acquired and reported, warm-up included.
    let all = 2000 + figures.warmup;
    assert_eq!((figures.granted, figures.reported), (all, all));
}

#[test]
fn report_and_acquire_reports_then_hands_out_the_next_in_one_call() {
    let (pool, _clock, _) = memory_pool_with(r#"{"site_strategy": {"rr.com": "round-robin"}}"#);
    for id in ["a", "b"] {
        pool.add(token("rr.com", id)).unwrap();
    }
    let req = AcquireRequest::site("rr.com");
    let (first, first_id) = grant(&pool, &req);
    // A block rests the first; the next in turn comes with its secrets.
    let (effect, got) = pool
        .report_and_acquire(first, fail(FailureClass::Blocked), &req)
        .unwrap();
    assert_eq!(effect.status, Status::Suspended);
    let next = got.lease.expect("the other credential");
    assert_ne!(*next.credential.id, *first_id);
    assert_eq!(
        next.secrets.access_token.as_deref(),
        Some(format!("secret-{}", next.credential.id).as_str())
    );
    // Nothing else is free: the answer says why, the report still counts.
    let (effect, got) = pool
        .report_and_acquire(next.id, Outcome::Success, &req)
        .unwrap();
    assert_eq!(effect.status, Status::Active);
    let again = got.lease.expect("the same one, reported and free");
    assert_eq!(again.credential.id, next.credential.id);
    let (_, got) = pool
        .report_and_acquire(again.id, fail(FailureClass::Blocked), &req)
        .unwrap();
    assert!(got.lease.is_none());
    assert_eq!(got.status, AcquireStatus::AllBlocked);
    // An unknown lease is the error, and nothing is acquired.
    let open = pool.stats(Some("rr.com")).unwrap()[0].open_leases;
    assert!(
        pool.report_and_acquire(LeaseId { seq: 999, nonce: 1 }, Outcome::Success, &req)
            .is_err()
    );
    assert_eq!(pool.stats(Some("rr.com")).unwrap()[0].open_leases, open);
}

#[test]
fn bench_combined_runs_each_pair_as_one_call() {
    let figures = bench::measure(&bench::Settings {
        warmup: Some(100),
        combined: true,
        ..bench::Settings::new(100, 2000)
    })
    .unwrap();
    assert_eq!(figures.calls_per_pair, 1);
    assert_eq!(figures.pairs, 2000);
    assert!(figures.pairs_per_sec > 0.0);
    // Every pair reported one lease and took the next (plus the first).
    assert_eq!(figures.warmup, 100);
    assert_eq!(figures.reported, 2100);
    assert_eq!(figures.granted, 2101);
    // A warm-up as short as asked leaves first uses to the timed pairs;
    // those in it are counted.
    assert!(
        (1..=100).contains(&figures.first_uses),
        "{}",
        figures.first_uses
    );
}

#[test]
fn bench_on_disk_uses_the_embedded_store_and_cleans_up() {
    let parent = tempfile::tempdir().unwrap();
    // Watches for the store file while the bench runs: the label alone
    // would not show the pool used the disk.
    let done = std::sync::atomic::AtomicBool::new(false);
    let (figures, seen_db) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                let dbs = std::fs::read_dir(parent.path())
                    .unwrap()
                    .flatten()
                    .filter(|d| d.path().join(credpool::pool::DB_FILE).is_file())
                    .count();
                if dbs > 0 {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            false
        });
        let figures = bench::measure(&bench::Settings {
            disk: Some(parent.path().to_path_buf()),
            ..bench::Settings::new(20, 500)
        });
        done.store(true, std::sync::atomic::Ordering::Release);
        (figures.unwrap(), watcher.join().unwrap())
    });
    assert!(
        seen_db,
        "no {} appeared under the bench's directory",
        credpool::pool::DB_FILE
    );
    assert_eq!(figures.store, "disk");
    assert_eq!(figures.first_uses, 20);
    let all = 500 + figures.warmup;
    assert_eq!((figures.granted, figures.reported), (all, all));
    // Its temporary store is gone with it.
    assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
    let missing = parent.path().join("nope");
    let err = bench::measure(&bench::Settings {
        disk: Some(missing.clone()),
        ..bench::Settings::new(20, 500)
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&format!("cannot make a directory in {}", missing.display())),
        "{err}"
    );
}

#[test]
fn bench_threads_share_the_pool_and_every_pair_counts() {
    // Four crawler threads over four exclusive sessions: a lease that a
    // report did not end leaves some thread with nothing free (the bench
    // fails on a refusal).
    for combined in [false, true] {
        let figures = bench::measure(&bench::Settings {
            warmup: Some(50),
            combined,
            threads: 4,
            ..bench::Settings::new(4, 2001)
        })
        .unwrap();
        assert_eq!(figures.threads, 4);
        let held = if combined { 4 } else { 0 };
        assert_eq!(figures.reported, 50 + 2001, "combined: {combined}");
        assert_eq!(figures.granted, 50 + 2001 + held, "combined: {combined}");
        assert!(figures.p99_us >= figures.p50_us && figures.p50_us > 0.0);
    }
    // More threads than sessions cannot each hold one.
    let err = bench::measure(&bench::Settings {
        threads: 5,
        ..bench::Settings::new(4, 100)
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("--threads must be between 1 and --credentials (4), not 5"),
        "{err}"
    );
}

#[test]
fn requests_past_the_prepared_ones_a_host_keeps_still_acquire() {
    // Each distinct request is prepared once per instance; past the host's
    // bound (1024) a request crosses whole, and report-and-acquire becomes
    // two calls. Both paths must answer the same way.
    let (pool, _clock, _) = memory_pool_with("{}");
    pool.add(token("many.com", "t1")).unwrap();
    let mut lease = None;
    for i in 0..1100 {
        let req = AcquireRequest {
            purpose: Some(format!("page-{i}")),
            ..AcquireRequest::site("many.com")
        };
        let got = match lease.take() {
            Some(l) => {
                pool.report_and_acquire(l, Outcome::Success, &req)
                    .unwrap()
                    .1
            }
            None => pool.acquire(&req).unwrap(),
        };
        let granted = got
            .lease
            .unwrap_or_else(|| panic!("request {i}: {:?}", got.reason));
        assert_eq!(&*granted.credential.id, "t1");
        lease = Some(granted.id);
    }
    let stats = &pool.stats(Some("many.com")).unwrap()[0];
    assert_eq!((stats.granted, stats.successes), (1100, 1099));
}
