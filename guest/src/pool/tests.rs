//! Native tests of the pool over the in-memory fake host.

use crate::config::PolicyConfig;
use crate::model::*;
use crate::pool::Pool;
use crate::ports::fake::FakeHost;

const T0: Millis = 1_700_000_000_000;

fn pool() -> Pool<FakeHost> {
    Pool::load(FakeHost::new(T0), PolicyConfig::default()).unwrap()
}

/// A pool whose config is the defaults changed by `json`.
fn pool_with(json: &str) -> Pool<FakeHost> {
    Pool::load(FakeHost::new(T0), PolicyConfig::from_json(json).unwrap()).unwrap()
}

fn new(site: &str, id: &str, kind: Kind) -> NewCredential {
    NewCredential {
        id: Some(id.to_string()),
        site: site.to_string(),
        kind: Some(kind),
        ..Default::default()
    }
}

fn req(site: &str) -> AcquireRequest {
    AcquireRequest {
        site: site.to_string(),
        ..Default::default()
    }
}

fn lease_of(p: &mut Pool<FakeHost>, site: &str) -> (LeaseId, String) {
    let r = p.acquire(&req(site)).unwrap();
    assert_eq!(r.status, AcquireStatus::Success, "{r:?}");
    let g = r.grant.unwrap();
    let id = p.credential_id(g.credential).expect("a live credential");
    (g.lease, id.to_string())
}

/// `n` leases on `site`, each reported as `outcome`.
fn use_times(p: &mut Pool<FakeHost>, site: &str, n: usize, outcome: Outcome) {
    for _ in 0..n {
        let (lease, _) = lease_of(p, site);
        p.report(lease, outcome).unwrap();
    }
}

fn failure(class: FailureClass) -> Outcome {
    Outcome::Failure(Failure {
        class,
        http_status: None,
        retry_after_secs: None,
    })
}

#[test]
fn add_is_durable_and_starts_in_init_with_full_health() {
    let mut p = pool();
    let c = p.add(new("jd.com", "a1", Kind::Session)).unwrap();
    assert_eq!((c.status, c.health), (Status::Init, 100));
    assert_eq!(p.host.durable_writes, vec!["cred/a1".to_string()]);
}

#[test]
fn add_refuses_duplicates_and_bad_names() {
    let mut p = pool();
    p.add(new("jd.com", "a1", Kind::Session)).unwrap();
    assert_eq!(
        p.add(new("jd.com", "a1", Kind::Session)).unwrap_err(),
        PoolError::AlreadyExists("a1".into())
    );
    let err = p.add(new("jd com", "a2", Kind::Session)).unwrap_err();
    assert!(matches!(err, PoolError::InvalidInput { ref field, .. } if field == "site"));
    let err = p.add(new("jd.com", "a/2", Kind::Session)).unwrap_err();
    assert!(matches!(err, PoolError::InvalidInput { ref field, .. } if field == "id"));
    assert_eq!(p.list(&Default::default(), AccessLevel::Public).len(), 1);
}

#[test]
fn a_failed_write_stores_nothing() {
    let mut p = pool();
    p.host.fail_writes = Some(StoreError::Unavailable("disk".into()));
    assert!(matches!(
        p.add(new("jd.com", "a1", Kind::Session)),
        Err(PoolError::Storage(_))
    ));
    assert!(p.get("a1").is_err());
    assert!(p.host.data.is_empty());
}

#[test]
fn acquire_rotates_round_robin_over_the_site() {
    let mut p = pool_with(r#"{"strategy": "round-robin"}"#);
    for id in ["a", "b", "c"] {
        p.add(new("jd.com", id, Kind::Token)).unwrap();
    }
    p.add(new("other.com", "z", Kind::Token)).unwrap();
    let picks: Vec<String> = (0..6).map(|_| lease_of(&mut p, "jd.com").1).collect();
    assert_eq!(picks, ["a", "b", "c", "a", "b", "c"]);
}

#[test]
fn sessions_are_exclusive_until_released() {
    let mut p = pool();
    p.add(new("jd.com", "s1", Kind::Session)).unwrap();
    let (lease, _) = lease_of(&mut p, "jd.com");
    let r = p.acquire(&req("jd.com")).unwrap();
    assert_eq!(r.status, AcquireStatus::NoAvailable);
    assert_eq!(r.reason, Some(UnavailableReason::AllLeased));
    assert_eq!(r.next_free_at, Some(T0 + 300_000));
    p.release(lease).unwrap();
    assert_eq!(
        p.release(lease),
        Err(PoolError::LeaseNotFound(lease.to_string()))
    );
    lease_of(&mut p, "jd.com");
}

#[test]
fn report_and_acquire_frees_the_credential_it_hands_out_again() {
    let mut p = pool();
    p.add(new("jd.com", "s1", Kind::Session)).unwrap();
    let (lease, _) = lease_of(&mut p, "jd.com");
    let request = p.prepare(req("jd.com")).unwrap();
    assert_eq!(
        p.prepare(req("jd.com")),
        Ok(request),
        "one handle per request"
    );
    // An unknown request handle changes nothing: the lease stays open.
    assert!(matches!(
        p.report_and_acquire(lease, Outcome::Success, request + 1),
        Err(PoolError::InvalidInput { .. })
    ));
    // The one exclusive session comes back in the same call that ends its
    // lease, under a new lease id.
    let (effect, resp) = p
        .report_and_acquire(lease, Outcome::Success, request)
        .unwrap();
    assert_eq!((effect.status, effect.health), (Status::Active, 100));
    let grant = resp.grant.expect("the session again");
    assert_ne!(grant.lease, lease);
    assert_eq!(p.credential_id(grant.credential), Some("s1"));
    assert_eq!(grant.granted_at, T0);
    // A refused report acquires nothing: the lease above stays the only one.
    assert_eq!(
        p.report_and_acquire(lease, Outcome::Success, request),
        Err(PoolError::LeaseNotFound(lease.to_string()))
    );
    let r = p.acquire_prepared(request).unwrap();
    assert_eq!(r.reason, Some(UnavailableReason::AllLeased));
    assert_eq!(p.credential_id(99), None);
}

#[test]
fn prepared_requests_are_bounded_and_keep_their_filters() {
    let mut p = pool();
    p.add(new("jd.com", "s1", Kind::Session)).unwrap();
    p.add(new("jd.com", "t1", Kind::Token)).unwrap();
    let tokens = p
        .prepare(AcquireRequest {
            kind: Some(Kind::Token),
            ..req("jd.com")
        })
        .unwrap();
    let g = p.acquire_prepared(tokens).unwrap().grant.unwrap();
    assert_eq!(p.credential_id(g.credential), Some("t1"));
    // Prepared before its site has a credential: found once it has one.
    let later = p.prepare(req("later.com")).unwrap();
    let r = p.acquire_prepared(later).unwrap();
    assert_eq!(r.reason, Some(UnavailableReason::UnknownSite));
    p.add(new("later.com", "l1", Kind::Token)).unwrap();
    let g = p.acquire_prepared(later).unwrap().grant.unwrap();
    assert_eq!(p.credential_id(g.credential), Some("l1"));
    for i in 2..crate::pool::MAX_PREPARED {
        p.prepare(req(&format!("site{i}.com"))).unwrap();
    }
    assert!(matches!(
        p.prepare(req("one-too-many.com")),
        Err(PoolError::InvalidInput { .. })
    ));
    // Known requests still resolve when the table is full.
    assert_eq!(p.prepare(req("site2.com")), Ok(2));
    assert!(matches!(
        p.acquire_prepared(9999),
        Err(PoolError::InvalidInput { .. })
    ));
}

#[test]
fn report_applies_the_card_health_rules() {
    let mut p = pool();
    p.add(new("jd.com", "s1", Kind::Session)).unwrap();
    let (lease, _) = lease_of(&mut p, "jd.com");
    let e = p.report(lease, failure(FailureClass::Network)).unwrap();
    assert_eq!((e.status, e.health), (Status::Init, 90));
    let (lease, _) = lease_of(&mut p, "jd.com");
    let e = p.report(lease, Outcome::Success).unwrap();
    assert_eq!((e.status, e.health), (Status::Active, 91));
    let c = p.get("s1").unwrap();
    assert_eq!((c.use_count, c.success_count, c.fail_count), (2, 1, 1));
    // The lease ended with the report.
    assert!(matches!(
        p.report(lease, Outcome::Success),
        Err(PoolError::LeaseNotFound(_))
    ));
}

#[test]
fn health_is_capped_and_floored() {
    let mut p = pool();
    p.add(new("jd.com", "t", Kind::Token)).unwrap();
    let (lease, _) = lease_of(&mut p, "jd.com");
    assert_eq!(p.report(lease, Outcome::Success).unwrap().health, 100);
    use_times(&mut p, "jd.com", 12, failure(FailureClass::Other));
    assert_eq!(p.get("t").unwrap().health, 0);
}

#[test]
fn a_block_suspends_for_a_day_durably_and_the_rest_ends_on_tick() {
    let mut p = pool_with(r#"{"cooldown_jitter": 0}"#);
    p.add(new("jd.com", "s1", Kind::Session)).unwrap();
    let (lease, _) = lease_of(&mut p, "jd.com");
    p.host.durable_writes.clear();
    let e = p.report(lease, failure(FailureClass::Blocked)).unwrap();
    assert_eq!(e.status, Status::Suspended);
    assert_eq!(e.cooldown_until, Some(T0 + 86_400_000));
    assert_eq!(p.host.durable_writes, vec!["cred/s1".to_string()]);
    let r = p.acquire(&req("jd.com")).unwrap();
    // Only suspended members: "all blocked", resting until the day is over.
    assert_eq!(r.status, AcquireStatus::AllBlocked);
    assert_eq!(r.reason, Some(UnavailableReason::AllCooling));
    assert_eq!(r.next_free_at, Some(T0 + 86_400_000));
    p.host.now = T0 + 86_400_000;
    assert_eq!(p.tick().unwrap().cooldowns_ended, 1);
    assert_eq!(p.get("s1").unwrap().status, Status::Active);
}

#[test]
fn rate_limit_honours_retry_after() {
    let mut p = pool();
    p.add(new("jd.com", "s1", Kind::Session)).unwrap();
    let (lease, _) = lease_of(&mut p, "jd.com");
    let e = p
        .report(
            lease,
            Outcome::Failure(Failure {
                class: FailureClass::RateLimited,
                http_status: Some(429),
                retry_after_secs: Some(42),
            }),
        )
        .unwrap();
    assert_eq!(
        (e.status, e.cooldown_until),
        (Status::Cooling, Some(T0 + 42_000))
    );
}

#[test]
fn challenged_and_expired_take_the_credential_out() {
    let mut p = pool();
    p.add(new("jd.com", "a", Kind::Session)).unwrap();
    p.add(new("jd.com", "b", Kind::Session)).unwrap();
    let (l1, _) = lease_of(&mut p, "jd.com");
    let (l2, _) = lease_of(&mut p, "jd.com");
    assert_eq!(
        p.report(l1, failure(FailureClass::Challenged))
            .unwrap()
            .status,
        Status::Challenged
    );
    assert_eq!(
        p.report(l2, failure(FailureClass::Expired)).unwrap().status,
        Status::Expired
    );
    let r = p.acquire(&req("jd.com")).unwrap();
    assert_eq!(r.reason, Some(UnavailableReason::AllRefreshing));
}

#[test]
fn no_credential_for_the_site_says_so() {
    let mut p = pool();
    let r = p.acquire(&req("nowhere.com")).unwrap();
    assert_eq!(r.status, AcquireStatus::NoAvailable);
    assert_eq!(r.reason, Some(UnavailableReason::UnknownSite));
    assert!(r.alternatives[0].contains("credpool add --site nowhere.com"));
    // A site of the pool, only not of this kind: none match.
    p.add(new("jd.com", "s1", Kind::Session)).unwrap();
    let r = p
        .acquire(&AcquireRequest {
            kind: Some(Kind::Token),
            ..req("jd.com")
        })
        .unwrap();
    assert_eq!(r.reason, Some(UnavailableReason::NoneMatch));
    assert_eq!(r.next_free_at, None, "nothing of this kind will free");
    // A typo names the known site; another spelling of it is it.
    let r = p.acquire(&req("jd.cm")).unwrap();
    assert_eq!(r.reason, Some(UnavailableReason::UnknownSite));
    assert_eq!(r.alternatives[0], "did you mean jd.com?");
    for spelling in ["JD.COM", "www.jd.com", "Www.Jd.Com."] {
        let r = p.acquire(&req(spelling)).unwrap();
        assert_eq!(r.status, AcquireStatus::Success, "{spelling}");
        p.release(r.grant.unwrap().lease).unwrap();
    }
    // Added under another spelling: the same site.
    p.add(new("WWW.JD.com", "s2", Kind::Session)).unwrap();
    assert_eq!(p.stats(None).len(), 1);
    assert_eq!(p.get("s2").unwrap().site, "jd.com");
}

#[test]
fn records_stored_under_other_spellings_of_a_site_load_into_it() {
    let mut p = pool();
    p.add(new("jd.com", "a", Kind::Session)).unwrap();
    p.add(new("jd.com", "b", Kind::Session)).unwrap();
    p.flush().unwrap();
    // As an older version stored them, before names were normalised.
    for (id, spelling) in [("a", "JD.COM"), ("b", "www.jd.com")] {
        let key = format!("cred/{id}");
        let text = String::from_utf8(p.host.data[&key].clone()).unwrap();
        let text = text.replace("\"site\":\"jd.com\"", &format!("\"site\":\"{spelling}\""));
        assert!(text.contains(spelling), "{text}");
        p.host.data.insert(key, text.into_bytes());
    }
    let mut p = Pool::load(p.host, PolicyConfig::default()).unwrap();
    let stats = p.stats(None);
    assert_eq!(stats.len(), 1);
    assert_eq!((stats[0].site.as_str(), stats[0].total), ("jd.com", 2));
    for spelling in ["jd.com", "JD.COM", "www.jd.com"] {
        assert_eq!(p.stats(Some(spelling)).len(), 1, "{spelling}");
    }
    assert_eq!(p.get("a").unwrap().site, "jd.com");
    let r = p.acquire(&req("JD.com")).unwrap();
    assert_eq!(r.status, AcquireStatus::Success);
}

#[test]
fn kind_and_tag_filters_apply() {
    let mut p = pool();
    let mut tagged = new("jd.com", "k1", Kind::ApiKey);
    tagged.tags = vec!["mobile".into()];
    p.add(tagged).unwrap();
    p.add(new("jd.com", "s1", Kind::Session)).unwrap();
    let r = p
        .acquire(&AcquireRequest {
            site: "jd.com".into(),
            kind: Some(Kind::ApiKey),
            tags: vec!["mobile".into()],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(p.credential_id(r.grant.unwrap().credential), Some("k1"));
    let r = p
        .acquire(&AcquireRequest {
            site: "jd.com".into(),
            kind: Some(Kind::Session),
            tags: vec!["mobile".into()],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.reason, Some(UnavailableReason::NoneMatch));
}

#[test]
fn lapsed_leases_are_freed_on_tick() {
    let mut p = pool();
    p.add(new("jd.com", "s1", Kind::Session)).unwrap();
    lease_of(&mut p, "jd.com");
    p.host.now = T0 + 300_000;
    assert_eq!(p.tick().unwrap().leases_expired, 1);
    lease_of(&mut p, "jd.com");
}

#[test]
fn state_survives_a_reload_after_flush() {
    let mut p = pool();
    p.add(new("jd.com", "s1", Kind::Session)).unwrap();
    let (lease, _) = lease_of(&mut p, "jd.com");
    p.report(lease, Outcome::Success).unwrap();
    let (open, _) = lease_of(&mut p, "jd.com");
    p.flush().unwrap();
    let host = p.host;
    let mut p = Pool::load(host, PolicyConfig::default()).unwrap();
    let c = p.get("s1").unwrap();
    assert_eq!(
        (c.status, c.use_count, c.success_count, c.health),
        (Status::Active, 2, 1, 100)
    );
    // The open lease came back: the session is still exclusive.
    assert_eq!(
        p.acquire(&req("jd.com")).unwrap().reason,
        Some(UnavailableReason::AllLeased)
    );
    p.release(open).unwrap();
}

#[test]
fn remove_ends_leases_and_forgets_the_record() {
    let mut p = pool();
    p.add(new("jd.com", "s1", Kind::Session)).unwrap();
    let (lease, _) = lease_of(&mut p, "jd.com");
    p.remove("s1").unwrap();
    assert!(matches!(p.release(lease), Err(PoolError::LeaseNotFound(_))));
    p.flush().unwrap();
    // Only the site's acquire and outcome counts stay (as in memory: a
    // credential added to the site again counts on from them).
    let keys: Vec<&String> = p.host.data.keys().collect();
    assert_eq!(keys, ["usage"]);
    assert_eq!(
        p.remove("s1"),
        Err(PoolError::CredentialNotFound("s1".into()))
    );
}

#[test]
fn views_mask_personal_data_below_secret() {
    let mut p = pool();
    let mut n = new("jd.com", "a1", Kind::Account);
    n.username = Some("alice_shopper".into());
    n.phone = Some("13812345678".into());
    n.cookie_names = vec!["sid".into()];
    p.add(n).unwrap();
    let public = p.view("a1", AccessLevel::Public).unwrap();
    assert!(public.internal.is_none() && public.sensitive.is_none());
    let internal = p.view("a1", AccessLevel::Internal).unwrap();
    assert!(internal.internal.is_some() && internal.sensitive.is_none());
    let s = p
        .view("a1", AccessLevel::Sensitive)
        .unwrap()
        .sensitive
        .unwrap();
    assert_eq!(s.username.as_deref(), Some("***pper"));
    assert_eq!(s.phone.as_deref(), Some("***5678"));
    assert_eq!(s.cookie_names, vec!["sid".to_string()]);
    let s = p
        .view("a1", AccessLevel::Secret)
        .unwrap()
        .sensitive
        .unwrap();
    assert_eq!(s.username.as_deref(), Some("alice_shopper"));
}

#[test]
fn stats_count_by_status_and_outcome() {
    let mut p = pool();
    p.add(new("jd.com", "a", Kind::Token)).unwrap();
    p.add(new("jd.com", "b", Kind::Token)).unwrap();
    let (l, _) = lease_of(&mut p, "jd.com");
    p.report(l, Outcome::Success).unwrap();
    let (l, _) = lease_of(&mut p, "jd.com");
    p.report(l, failure(FailureClass::Blocked)).unwrap();
    let s = &p.stats(Some("jd.com"))[0];
    assert_eq!(s.total, 2);
    assert_eq!(s.by_status[1], 1); // active
    assert_eq!(s.by_status[4], 1); // suspended
    assert_eq!((s.granted, s.successes), (2, 1));
    assert_eq!(s.failures, vec![(FailureClass::Blocked, 1)]);
}

#[test]
fn unban_is_only_for_banned_credentials() {
    let mut p = pool();
    p.add(new("jd.com", "a", Kind::Token)).unwrap();
    assert!(matches!(
        p.unban("a"),
        Err(PoolError::IllegalTransition {
            from: Status::Init,
            ..
        })
    ));
}

#[test]
fn counters_are_flushed_as_pages_not_records_and_survive_a_reload() {
    let mut p = pool();
    for i in 0..300 {
        p.add(new("jd.com", &format!("s{i:03}"), Kind::Session))
            .unwrap();
    }
    p.flush().unwrap();
    let durable_before = p.host.durable_writes.len();
    use_times(&mut p, "jd.com", 1000, failure(FailureClass::Network));
    let written = p.flush().unwrap();
    // 300 places fill two pages: two writes however many credentials
    // moved, and one of the site's acquire and outcome counts.
    assert_eq!(written, 3);
    assert!(p.host.data.contains_key("usage"));
    assert!(p.host.data.contains_key("ctr/000000"));
    assert!(p.host.data.contains_key("ctr/000001"));
    assert_eq!(p.host.durable_writes.len(), durable_before);
    let before: Vec<Credential> = (0..300)
        .map(|i| p.get(&format!("s{i:03}")).unwrap())
        .collect();
    assert_eq!(before.iter().map(|c| c.fail_count).sum::<u64>(), 1000);
    let p = Pool::load(p.host, PolicyConfig::default()).unwrap();
    for c in &before {
        assert_eq!(&p.get(&c.id).unwrap(), c);
    }
    p.check_invariants();
}

#[test]
fn a_status_change_after_the_last_page_wins_over_the_page() {
    let mut p = pool();
    p.add(new("jd.com", "s1", Kind::Session)).unwrap();
    use_times(&mut p, "jd.com", 3, Outcome::Success);
    p.flush().unwrap();
    let (lease, _) = lease_of(&mut p, "jd.com");
    let e = p.report(lease, failure(FailureClass::Blocked)).unwrap();
    assert_eq!(e.status, Status::Suspended);
    // No flush: the page still holds the state before the block.
    let at_block = p.get("s1").unwrap();
    let p = Pool::load(p.host, PolicyConfig::default()).unwrap();
    assert_eq!(p.get("s1").unwrap(), at_block);
}

#[test]
fn a_new_credential_in_a_freed_place_does_not_inherit_its_counters() {
    let mut p = pool();
    p.add(new("jd.com", "s1", Kind::Session)).unwrap();
    use_times(&mut p, "jd.com", 5, failure(FailureClass::Other));
    p.flush().unwrap();
    p.remove("s1").unwrap();
    // Same place, and even the same id; the old page is still stored.
    p.add(new("jd.com", "s1", Kind::Session)).unwrap();
    p.add(new("jd.com", "s2", Kind::Session)).unwrap();
    assert!(p.host.data.contains_key("ctr/000000"));
    let p = Pool::load(p.host, PolicyConfig::default()).unwrap();
    for id in ["s1", "s2"] {
        let c = p.get(id).unwrap();
        assert_eq!((c.use_count, c.fail_count, c.health), (0, 0, 100), "{id}");
    }
}

#[test]
fn records_written_before_counter_pages_get_a_place_on_load() {
    let mut host = FakeHost::new(T0);
    let mut legacy = |id: &str, uses: u64| {
        let json = format!(
            r#"{{"id":"{id}","site":"jd.com","kind":"session","status":"active","created_at":{T0},"use_count":{uses},"health":90}}"#
        );
        host.data.insert(format!("cred/{id}"), json.into_bytes());
    };
    legacy("old1", 4);
    legacy("old2", 7);
    let mut p = Pool::load(host, PolicyConfig::default()).unwrap();
    assert_eq!(p.get("old2").unwrap().use_count, 7);
    let (lease, id) = lease_of(&mut p, "jd.com");
    p.report(lease, Outcome::Success).unwrap();
    let expected = p.get(&id).unwrap();
    p.flush().unwrap();
    let p = Pool::load(p.host, PolicyConfig::default()).unwrap();
    assert_eq!(p.get(&id).unwrap(), expected);
    p.check_invariants();
}

#[test]
fn ended_leases_do_not_pile_up_in_memory_between_ticks() {
    let mut p = pool();
    p.add(new("jd.com", "s1", Kind::Session)).unwrap();
    use_times(&mut p, "jd.com", 10_000, Outcome::Success);
    assert!(p.lease_heap_len() <= 2 + 1024, "{}", p.lease_heap_len());
    // A lease still open keeps its entry through compactions and lapses
    // on time.
    lease_of(&mut p, "jd.com");
    p.add(new("jd.com", "t1", Kind::Token)).unwrap();
    for _ in 0..3000 {
        let (lease, id) = lease_of(&mut p, "jd.com");
        assert_eq!(id, "t1");
        p.release(lease).unwrap();
    }
    assert!(p.lease_heap_len() <= 2 + 1024, "{}", p.lease_heap_len());
    p.host.now = T0 + 301_000;
    assert_eq!(p.tick().unwrap().leases_expired, 1);
    p.check_invariants();
}
