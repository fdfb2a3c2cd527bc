//! The pool through the real host and the real component: add, acquire,
//! report, release, list, stats, persistence and encryption on disk.

use crate::support;

use credpool::backend::{Backend, MemoryBackend};
use credpool::crypto::{KeySource, create_key_file};
use credpool::pool::Storage;
use credpool::{
    AccessLevel, AcquireRequest, AcquireStatus, CredentialKind, Error, Failure, FailureClass,
    ListFilter, Outcome, Pool, PoolError, PoolOptions, Status, UnavailableReason,
};
use std::sync::Arc;
use std::time::Duration;
use support::*;

fn blocked() -> Outcome {
    Outcome::Failure(Failure {
        class: FailureClass::Blocked,
        http_status: Some(403),
        retry_after_secs: None,
    })
}

#[test]
fn acquire_joins_the_secrets_and_rotates_round_robin() {
    let (pool, _, _) = memory_pool_with(r#"{"strategy": "round-robin"}"#);
    pool.add(session("jd.com", "s1", &[("sid", "v1"), ("csrf", "c=1")]))
        .unwrap();
    pool.add(session("jd.com", "s2", &[("sid", "v2")])).unwrap();
    let a = pool
        .acquire(&AcquireRequest::site("jd.com"))
        .unwrap()
        .lease
        .unwrap();
    let b = pool
        .acquire(&AcquireRequest::site("jd.com"))
        .unwrap()
        .lease
        .unwrap();
    assert_eq!((&*a.credential.id, &*b.credential.id), ("s1", "s2"));
    assert_eq!(
        a.secrets.cookies,
        vec![
            ("sid".to_string(), "v1".to_string()),
            ("csrf".to_string(), "c=1".to_string())
        ]
    );
    // Both sessions are exclusive and leased: nothing left.
    let none = pool.acquire(&AcquireRequest::site("jd.com")).unwrap();
    assert_eq!(none.status, AcquireStatus::NoAvailable);
    assert_eq!(none.reason, Some(UnavailableReason::AllLeased));
    pool.release(a.id).unwrap();
    let again = pool
        .acquire(&AcquireRequest::site("jd.com"))
        .unwrap()
        .lease
        .unwrap();
    assert_eq!(&*again.credential.id, "s1");
}

#[test]
fn a_lease_after_a_secret_rewrite_carries_the_new_secrets_at_once() {
    let (pool, _, _) = memory_pool_with("");
    pool.add(session("jd.com", "s1", &[("sid", "old")]))
        .unwrap();
    let first = pool.acquire(&AcquireRequest::site("jd.com")).unwrap();
    let first = first.lease.unwrap();
    assert_eq!(first.secrets.cookies[0].1, "old");
    pool.release(first.id).unwrap();
    // What a refresh does on the worker thread, before any tick tells the
    // policy: the next lease must not serve the cached old cookie.
    let mut rotated = (*first.secrets).clone();
    rotated.cookies[0].1 = "new".into();
    pool.vault().put_secrets("jd.com", "s1", &rotated).unwrap();
    let next = pool.acquire(&AcquireRequest::site("jd.com")).unwrap();
    assert_eq!(next.lease.unwrap().secrets.cookies[0].1, "new");
    // The lease handed out earlier keeps what it was given.
    assert_eq!(first.secrets.cookies[0].1, "old");
}

#[test]
fn reports_move_health_and_status_by_the_card() {
    let (pool, clock, _) = memory_pool();
    pool.add(session("jd.com", "s1", &[("sid", "v")])).unwrap();
    let l = pool
        .acquire(&AcquireRequest::site("jd.com"))
        .unwrap()
        .lease
        .unwrap();
    let e = pool.report(l.id, Outcome::Success).unwrap();
    assert_eq!((e.status, e.health), (Status::Active, 100));
    let l = pool
        .acquire(&AcquireRequest::site("jd.com"))
        .unwrap()
        .lease
        .unwrap();
    let e = pool.report(l.id, blocked()).unwrap();
    assert_eq!((e.status, e.health), (Status::Suspended, 90));
    // A day's rest, plus up to 10% jitter so blocked credentials do not
    // all come back at once.
    let rest = e.cooldown_until.unwrap() - T0;
    assert!((86_400_000..=95_040_000).contains(&rest), "{rest}");
    // The report ended the lease.
    assert!(matches!(
        pool.report(l.id, Outcome::Success),
        Err(Error::Pool(PoolError::LeaseNotFound(_)))
    ));
    let got = pool.acquire(&AcquireRequest::site("jd.com")).unwrap();
    assert_eq!(got.reason, Some(UnavailableReason::AllCooling));
    assert_eq!(got.next_free_at, e.cooldown_until);
    clock.set(e.cooldown_until.unwrap());
    assert_eq!(pool.tick().unwrap().cooldowns_ended, 1);
    assert_eq!(
        pool.view("s1", AccessLevel::Public).unwrap().status,
        Status::Active
    );
}

#[test]
fn lapsed_leases_free_their_slot_on_tick() {
    let (pool, clock, _) = memory_pool();
    pool.add(session("jd.com", "s1", &[("sid", "v")])).unwrap();
    let mut req = AcquireRequest::site("jd.com");
    req.lease_ttl_ms = Some(10_000);
    pool.acquire(&req).unwrap().lease.unwrap();
    clock.advance(Duration::from_secs(11));
    assert_eq!(pool.tick().unwrap().leases_expired, 1);
    assert!(pool.acquire(&req).unwrap().lease.is_some());
}

#[test]
fn list_and_stats_show_metadata_never_values() {
    let (pool, _, _) = memory_pool();
    let mut acct = session("jd.com", "a1", &[("sid", "SECRETVALUE")]);
    acct.username = Some("alice_shopper".into());
    pool.add(acct).unwrap();
    let views = pool
        .list(&ListFilter::all(), AccessLevel::Sensitive)
        .unwrap();
    let s = views[0].sensitive.as_ref().unwrap();
    assert_eq!(s.cookie_names, vec!["sid".to_string()]);
    assert_eq!(s.username.as_deref(), Some("***pper"));
    assert!(!format!("{views:?}").contains("SECRETVALUE"));
    let stats = pool.stats(Some("jd.com")).unwrap();
    assert_eq!((stats[0].total, stats[0].by_status.init), (1, 1));
}

#[test]
fn bad_input_is_refused_by_name_and_stores_nothing() {
    let (pool, _, _) = memory_pool();
    let err = pool
        .add(session("bad site", "x", &[("sid", "v")]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid site: must not contain spaces, control characters or '/'"
    );
    let err = pool
        .add(session("jd.com", "x", &[("bad name", "v")]))
        .unwrap_err();
    assert!(err.to_string().starts_with("invalid cookie:"), "{err}");
    assert!(
        pool.list(&ListFilter::all(), AccessLevel::Public)
            .unwrap()
            .is_empty()
    );
    // A session with nothing to send is refused.
    let err = pool.add(session("jd.com", "x", &[])).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid session: it has no cookie and no header"),
        "{err}"
    );
    pool.add(session("jd.com", "x", &[("sid", "v")])).unwrap();
    let err = pool
        .add(session("jd.com", "x", &[("sid", "v")]))
        .unwrap_err();
    assert_eq!(err.to_string(), "a credential with id x already exists");
}

#[test]
fn records_and_secrets_survive_reopening_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    create_key_file(&dir.path().join("credpool.key")).unwrap();
    {
        let pool = Pool::open(PoolOptions::on_disk(dir.path())).unwrap();
        pool.add(session("jd.com", "s1", &[("sid", "persisted")]))
            .unwrap();
        let l = pool
            .acquire(&AcquireRequest::site("jd.com"))
            .unwrap()
            .lease
            .unwrap();
        pool.report(l.id, blocked()).unwrap();
    }
    let pool = Pool::open(PoolOptions::on_disk(dir.path())).unwrap();
    let (view, secrets) = pool.reveal("s1").unwrap();
    assert_eq!(view.status, Status::Suspended);
    assert_eq!(
        secrets.cookies,
        vec![("sid".to_string(), "persisted".to_string())]
    );
    // Nothing on disk holds the cookie value or the cookie name in plain text.
    let raw = std::fs::read(dir.path().join("credpool.redb")).unwrap();
    for needle in [&b"persisted"[..], b"sid", b"jd.com"] {
        assert!(
            !raw.windows(needle.len()).any(|w| w == needle),
            "{needle:?} in plain text"
        );
    }
}

#[test]
fn add_all_stops_at_the_first_failure_and_keeps_those_before_it() {
    let dir = tempfile::tempdir().unwrap();
    create_key_file(&dir.path().join("credpool.key")).unwrap();
    {
        let pool = Pool::open(PoolOptions::on_disk(dir.path())).unwrap();
        let news = ["b1", "b2", "b1", "b3"]
            .map(|id| session("batch.com", id, &[("sid", &format!("v-{id}"))]));
        let err = pool.add_all(news).unwrap_err();
        assert_eq!(err.at, Some(2));
        assert_eq!(
            err.error.to_string(),
            "a credential with id b1 already exists"
        );
        let added: Vec<&str> = err.added.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(added, ["b1", "b2"]);
        let ok = pool
            .add_all(["b3", "b4"].map(|id| session("batch.com", id, &[("sid", "v")])))
            .unwrap();
        assert_eq!(ok.len(), 2);
    }
    let pool = Pool::open(PoolOptions::on_disk(dir.path())).unwrap();
    let mut ids: Vec<String> = pool
        .list(&ListFilter::all(), AccessLevel::Public)
        .unwrap()
        .into_iter()
        .map(|v| v.id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["b1", "b2", "b3", "b4"]);
    // The first b1 kept its own secrets, not the refused duplicate's.
    let (_, secrets) = pool.reveal("b1").unwrap();
    assert_eq!(secrets.cookies, [("sid".to_string(), "v-b1".to_string())]);
}

#[test]
fn a_wrong_key_is_refused_as_such() {
    let dir = tempfile::tempdir().unwrap();
    create_key_file(&dir.path().join("credpool.key")).unwrap();
    drop(Pool::open(PoolOptions::on_disk(dir.path())).unwrap());
    let other = tempfile::tempdir().unwrap();
    let other_key = other.path().join("k");
    create_key_file(&other_key).unwrap();
    let mut options = PoolOptions::on_disk(dir.path());
    options.key = KeySource::File(other_key);
    let err = Pool::open(options).err().expect("wrong key must fail");
    assert!(err.to_string().starts_with("wrong key"), "{err}");
}

#[test]
fn a_missing_key_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let err = Pool::open(PoolOptions::on_disk(dir.path())).err().unwrap();
    assert!(err.to_string().contains("credpool init"), "{err}");
}

#[test]
fn tampered_records_fail_with_a_typed_error_not_garbage() {
    let backend = Arc::new(MemoryBackend::new());
    let mut options = PoolOptions::in_memory();
    options.storage = Storage::Shared(backend.clone());
    options.key = KeySource::Ephemeral;
    let pool = Pool::open(options).unwrap();
    pool.add(session("jd.com", "s1", &[("sid", "a")])).unwrap();
    pool.add(session("jd.com", "s2", &[("sid", "b")])).unwrap();
    // Swap the two secret bundles: each is bound to its own record.
    let s1 = backend.get("t/default/s/s1").unwrap().unwrap();
    let s2 = backend.get("t/default/s/s2").unwrap().unwrap();
    backend.put_raw("t/default/s/s1", s2);
    backend.put_raw("t/default/s/s2", s1);
    let err = pool.acquire(&AcquireRequest::site("jd.com")).unwrap_err();
    assert!(err.to_string().contains("failed authentication"), "{err}");
    // The failed acquire gave its lease back.
    let err = pool.reveal("s2").unwrap_err();
    assert!(matches!(err, Error::Store(_)), "{err:?}");
}

#[test]
fn a_tenant_sees_only_its_own_records() {
    let backend = Arc::new(MemoryBackend::new());
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    create_key_file(&key).unwrap();
    let open = |tenant: &str| {
        let mut options = PoolOptions::in_memory();
        options.storage = Storage::Shared(backend.clone());
        options.key = KeySource::File(key.clone());
        options.tenant = tenant.to_string();
        Pool::open(options).unwrap()
    };
    let a = open("a");
    a.add(session("jd.com", "only-a", &[("sid", "x")])).unwrap();
    let b = open("b");
    assert!(
        b.list(&ListFilter::all(), AccessLevel::Public)
            .unwrap()
            .is_empty()
    );
    let got = b.acquire(&AcquireRequest::site("jd.com")).unwrap();
    assert_eq!(got.reason, Some(UnavailableReason::UnknownSite));
    assert!(matches!(
        b.reveal("only-a"),
        Err(Error::Pool(PoolError::CredentialNotFound(_)))
    ));
    b.add(session("jd.com", "only-b", &[("sid", "y")])).unwrap();
    let ids: Vec<String> = a
        .list(&ListFilter::all(), AccessLevel::Public)
        .unwrap()
        .into_iter()
        .map(|v| v.id)
        .collect();
    assert_eq!(ids, vec!["only-a".to_string()]);
    assert_eq!(
        a.acquire(&AcquireRequest::site("jd.com"))
            .unwrap()
            .lease
            .unwrap()
            .credential
            .kind,
        CredentialKind::Session
    );
}

#[test]
fn a_trapped_instance_is_replaced_with_fresh_handles() {
    let mut options = PoolOptions::in_memory();
    options.limits.memory_bytes = 24 << 20;
    let pool = Pool::open(options).unwrap();
    for id in ["s1", "s2"] {
        pool.add(session("jd.com", id, &[("sid", &format!("v-{id}"))]))
            .unwrap();
    }
    let site = AcquireRequest::site("jd.com");
    let first = pool.acquire(&site).unwrap().lease.unwrap();
    pool.report(first.id, Outcome::Success).unwrap();
    // A request the sandbox cannot hold (past its memory limit) traps the
    // instance: the call fails and names the limit.
    let huge = AcquireRequest {
        tags: vec!["x".repeat(32 << 20)],
        ..AcquireRequest::site("jd.com")
    };
    match pool.acquire(&huge) {
        Err(Error::Limit { limit, .. }) => assert_eq!(limit, "memory_bytes"),
        other => panic!("expected the memory limit, got {other:?}"),
    }
    // The next calls run on a new instance, which prepares its requests and
    // names its credential handles anew: each lease still carries its own
    // credential's secrets, in both call forms.
    let mut lease = pool.acquire(&site).unwrap().lease.unwrap();
    for _ in 0..4 {
        let id = lease.credential.id.to_string();
        assert_eq!(
            lease.secrets.cookies,
            vec![("sid".to_string(), format!("v-{id}"))]
        );
        let (_, next) = pool
            .report_and_acquire(lease.id, Outcome::Success, &site)
            .unwrap();
        lease = next.lease.unwrap();
    }
    let stats = &pool.stats(Some("jd.com")).unwrap()[0];
    assert_eq!(stats.open_leases, 1);
}
