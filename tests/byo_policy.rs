//! Bring your own policy: the example users copy
//! (`examples/policy-minimal/`: strict round-robin per site, a fixed rest
//! after a block), built by the tests and loaded as a pool's component,
//! through the library and through `credpool --component PATH`.

use crate::support::byo::minimal_policy_wasm;
use crate::support::fixtures::encodings;
use crate::support::{T0, canary, credpool, initialised, json, ok, stderr};
use credpool::{
    AcquireRequest, AcquireStatus, CredentialKind, Failure, FailureClass, ManualClock,
    NewCredential, Outcome, Pool, PoolOptions, Status, UnavailableReason,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Recorder = Arc<Mutex<Vec<String>>>;

/// A pool in memory running the example policy, resting blocked
/// credentials for 60 s, on a hand-moved clock, recording the boundary.
fn minimal_pool() -> (Pool, ManualClock, Recorder) {
    let clock = ManualClock::at(T0);
    let recorder: Recorder = Arc::new(Mutex::new(Vec::new()));
    let mut options = PoolOptions::in_memory();
    options.component = Some(minimal_policy_wasm());
    options.policy_config = r#"{"rest_seconds": 60}"#.into();
    options.clock = Some(clock.clone());
    options.recorder = Some(recorder.clone());
    (
        Pool::open(options).expect("open the pool on the example policy"),
        clock,
        recorder,
    )
}

fn add_sessions(pool: &Pool, site: &str, ids: &[&str]) {
    for id in ids {
        let mut new = NewCredential::new(site, CredentialKind::Session).with_id(id);
        new.secrets
            .cookies
            .push(("sid".into(), format!("value-of-{id}")));
        pool.add(new).unwrap();
    }
}

/// Acquires on `site`, reports `outcome`, and returns the credential's id.
fn use_once(pool: &Pool, site: &str, outcome: Outcome) -> String {
    let lease = pool
        .acquire(&AcquireRequest::site(site))
        .unwrap()
        .lease
        .expect("a lease");
    pool.report(lease.id, outcome).unwrap();
    lease.credential.id.to_string()
}

fn blocked() -> Outcome {
    Outcome::Failure(Failure {
        class: FailureClass::Blocked,
        http_status: Some(403),
        retry_after_secs: None,
    })
}

#[test]
fn the_example_policy_hands_out_round_robin_per_site() {
    let (pool, _clock, _) = minimal_pool();
    add_sessions(&pool, "shop.example", &["a", "b", "c"]);
    add_sessions(&pool, "news.example", &["n"]);
    let order: Vec<String> = (0..7)
        .map(|_| use_once(&pool, "shop.example", Outcome::Success))
        .collect();
    assert_eq!(order, ["a", "b", "c", "a", "b", "c", "a"]);
    assert_eq!(use_once(&pool, "news.example", Outcome::Success), "n");
    // Another site's turn does not move this site's rotation.
    assert_eq!(use_once(&pool, "shop.example", Outcome::Success), "b");

    // One lease per credential: held leases are skipped, then refused.
    let held: Vec<String> = (0..3)
        .map(|_| {
            let got = pool.acquire(&AcquireRequest::site("shop.example")).unwrap();
            got.lease.expect("a lease").credential.id.to_string()
        })
        .collect();
    assert_eq!(held, ["c", "a", "b"]);
    let refused = pool.acquire(&AcquireRequest::site("shop.example")).unwrap();
    assert_eq!(refused.status, AcquireStatus::NoAvailable);
    assert_eq!(refused.reason, Some(UnavailableReason::AllLeased));
    let unknown = pool
        .acquire(&AcquireRequest::site("nowhere.example"))
        .unwrap();
    assert_eq!(unknown.reason, Some(UnavailableReason::UnknownSite));
}

#[test]
fn a_block_rests_the_credential_for_the_fixed_time() {
    let (pool, clock, _) = minimal_pool();
    add_sessions(&pool, "shop.example", &["a", "b"]);
    let lease = pool
        .acquire(&AcquireRequest::site("shop.example"))
        .unwrap()
        .lease
        .unwrap();
    assert_eq!(lease.credential.id, "a");
    let effect = pool.report(lease.id, blocked()).unwrap();
    assert_eq!(effect.status, Status::Suspended);
    assert_eq!(effect.cooldown_until, Some(T0 + 60_000));
    // While it rests, the rotation skips it.
    for _ in 0..3 {
        assert_eq!(use_once(&pool, "shop.example", Outcome::Success), "b");
    }
    assert_eq!(use_once(&pool, "shop.example", blocked()), "b");
    let all_resting = pool.acquire(&AcquireRequest::site("shop.example")).unwrap();
    assert_eq!(all_resting.status, AcquireStatus::AllBlocked);
    assert_eq!(all_resting.reason, Some(UnavailableReason::AllCooling));
    assert_eq!(all_resting.next_free_at, Some(T0 + 60_000));
    let stats = pool.stats(Some("shop.example")).unwrap();
    assert_eq!(stats[0].by_status.suspended, 2);
    assert_eq!(stats[0].refused, 1);

    // A second short of its end it still rests; at its end it is back.
    clock.advance(Duration::from_millis(59_999));
    assert!(
        pool.acquire(&AcquireRequest::site("shop.example"))
            .unwrap()
            .lease
            .is_none()
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(use_once(&pool, "shop.example", Outcome::Success), "a");
    assert_eq!(
        pool.view("a", credpool::AccessLevel::Public)
            .unwrap()
            .status,
        Status::Active
    );
}

#[test]
fn the_example_policy_refuses_a_setting_it_does_not_know() {
    let mut options = PoolOptions::in_memory();
    options.component = Some(minimal_policy_wasm());
    options.policy_config = r#"{"rest_secs": 60}"#.into();
    let err = Pool::open(options)
        .err()
        .expect("an unknown key is refused");
    let msg = err.to_string();
    assert!(msg.contains("rest_secs"), "{msg}");
}

#[test]
fn no_secret_value_crosses_into_the_example_policy() {
    let (pool, _clock, recorder) = minimal_pool();
    let mut secrets = Vec::new();
    for id in ["a", "b"] {
        let mut new = NewCredential::new("shop.example", CredentialKind::Session).with_id(id);
        new.secrets.cookies.push(("sid".into(), canary("COOKIE")));
        new.secrets.headers.push((
            "Authorization".into(),
            format!("Bearer {}", canary("HEADER")),
        ));
        new.secrets.password = Some(canary("PW"));
        secrets.extend(new.secrets.values().iter().map(|s| s.to_string()));
        pool.add(new).unwrap();
    }
    let lease = pool
        .acquire(&AcquireRequest::site("shop.example"))
        .unwrap()
        .lease
        .unwrap();
    // The caller gets its secrets from the host...
    assert!(lease.secrets.cookies[0].1.starts_with("CANARYCOOKIE"));
    pool.report(lease.id, blocked()).unwrap();
    use_once(&pool, "shop.example", Outcome::Success);
    pool.list(&credpool::ListFilter::all(), credpool::AccessLevel::Secret)
        .unwrap();
    pool.reveal("a").unwrap();
    pool.stats(None).unwrap();
    pool.tick().unwrap();
    pool.remove("b").unwrap();

    let lines = recorder.lock().unwrap().clone();
    // ...the recorder saw the traffic (names and records cross)...
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("export.add") && l.contains("Authorization"))
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("store.set") && l.contains("minimal/cred/a"))
    );
    // ...and the policy never saw a secret value, in any encoding.
    let leaked: Vec<&String> = secrets
        .iter()
        .filter(|s| {
            encodings(s)
                .iter()
                .any(|e| lines.iter().any(|l| l.contains(e.as_str())))
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "{} secret(s) crossed into the policy",
        leaked.len()
    );
}

#[test]
fn the_cli_runs_the_example_policy_with_component() {
    let dir = initialised();
    let wasm = minimal_policy_wasm();
    let wasm = wasm.to_str().expect("a UTF-8 path");
    let run = |args: &[&str]| {
        let mut all = vec!["--component", wasm];
        all.extend_from_slice(args);
        credpool(dir.path(), &all)
    };
    for id in ["s1", "s2", "s3"] {
        ok(&run(&[
            "add",
            "--site",
            "shop.example",
            "--type",
            "session",
            "--id",
            id,
            "--cookie",
            &format!("sid=v-{id}"),
        ]));
    }
    // Each command is its own process: the rotation and the leases are in
    // the store, not in one instance's memory.
    let mut leases = Vec::new();
    for want in ["s1", "s2", "s3"] {
        let got = json(&run(&["acquire", "shop.example", "--json"]));
        assert_eq!(got["lease"]["credential"]["id"], want, "{got}");
        assert_eq!(
            got["lease"]["secrets"]["cookies"][0]["value"],
            format!("v-{want}")
        );
        leases.push(got["lease"]["id"].as_str().unwrap().to_string());
    }
    let busy = run(&["acquire", "shop.example"]);
    assert_eq!(busy.status.code(), Some(3), "{}", stderr(&busy));
    assert!(stderr(&busy).contains("all-leased"), "{}", stderr(&busy));

    let effect = json(&run(&[
        "report", &leases[0], "blocked", "--status", "403", "--json",
    ]));
    assert_eq!(effect["status"], "suspended", "{effect}");
    ok(&run(&["report", &leases[1], "success"]));
    ok(&run(&["release", &leases[2]]));
    // s1 rests: after s3 the rotation goes on with s2.
    let got = json(&run(&["acquire", "shop.example", "--json"]));
    assert_eq!(got["lease"]["credential"]["id"], "s2", "{got}");
    // Its records are its own: the built-in policy opens the same data
    // without reading them as its own.
    let builtin = json(&credpool(dir.path(), &["list", "--json"]));
    assert_eq!(builtin, serde_json::json!([]), "{builtin}");
}
