//! Issue 13, item 1, through the built binary on a real data directory
//! (each command its own process: a restart between every step) and the
//! host library with the component loaded: nothing out of rotation is
//! stuck without a named way back, `next_free_at` is of the request's
//! matches, the acquire and outcome counts outlive the process with the
//! availability SLO in `stats`, and `prefer_fresh` picks the freshest.

use crate::support::{self, T0, credpool, initialised, json, memory_pool, ok, session, stderr};
use credpool::{AcquireRequest, AcquireStatus, CredentialKind, NewCredential, Outcome};
use serde_json::Value;
use std::path::Path;

fn add_session(dir: &Path, id: &str, extra: &[&str]) {
    let mut args = vec![
        "add", "--site", "jd.com", "--type", "session", "--id", id, "--cookie", "sid=x",
    ];
    args.extend_from_slice(extra);
    ok(&credpool(dir, &args));
}

/// Leases a credential as `args` ask, returning (lease id, credential id).
fn lease(dir: &Path, args: &[&str]) -> (String, String) {
    let mut all = vec!["acquire", "jd.com", "--json"];
    all.extend_from_slice(args);
    let got = json(&credpool(dir, &all));
    (
        got["lease"]["id"].as_str().expect("lease").to_string(),
        got["lease"]["credential"]["id"]
            .as_str()
            .expect("id")
            .to_string(),
    )
}

fn report(dir: &Path, lease: &str, outcome: &str) -> Value {
    json(&credpool(dir, &["report", lease, outcome, "--json"]))
}

/// The JSON answer of a refused acquire (exit 3).
fn refused(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["acquire", "jd.com", "--json"];
    all.extend_from_slice(args);
    let out = credpool(dir, &all);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("JSON answer")
}

fn site_stats(dir: &Path) -> Value {
    json(&credpool(dir, &["stats", "--site", "jd.com", "--json"]))[0].clone()
}

#[test]
fn an_expired_session_of_a_site_with_no_refresh_names_a_person_until_unbanned() {
    let dir = initialised();
    let d = dir.path();
    add_session(d, "s1", &[]);
    let (l, _) = lease(d, &[]);
    assert_eq!(report(d, &l, "expired")["status"], "expired");
    // `tick` cannot bring it back (nothing is configured for jd.com) ...
    ok(&credpool(d, &["tick"]));
    // ... so the refusal names no time to retry at, but who must act.
    let out = credpool(d, &["acquire", "jd.com"]);
    assert_eq!(out.status.code(), Some(3));
    let line = stderr(&out);
    assert!(!line.contains("frees at"), "{line}");
    assert!(line.contains("need a person"), "{line}");
    assert!(line.contains("`credpool unban ID`"), "{line}");
    let answer = refused(d, &[]);
    assert_eq!(answer["next_free_at"], Value::Null, "{answer}");
    // Stats list it with its own command, in JSON and in the table.
    let s = site_stats(d);
    assert_eq!(s["needs_person_total"], 1, "{s}");
    assert_eq!(s["needs_person"][0]["credential_id"], "s1");
    assert_eq!(s["needs_person"][0]["status"], "expired");
    let action = s["needs_person"][0]["action"].as_str().unwrap();
    assert!(action.contains("`credpool unban s1`"), "{action}");
    let table = ok(&credpool(d, &["stats"]));
    assert!(table.contains("needs a person: 1"), "{table}");
    assert!(table.contains("s1 (expired)"), "{table}");
    // A reset would leave it expired: refused, naming the way.
    let reset = credpool(d, &["challenge", "reset", "s1"]);
    assert_eq!(reset.status.code(), Some(1));
    // The person renewed it: unban puts it back, and it serves again.
    let said = ok(&credpool(d, &["unban", "s1"]));
    assert_eq!(said.trim(), "s1 is active");
    ok(&credpool(d, &["tick"]));
    let (_, id) = lease(d, &[]);
    assert_eq!(id, "s1");
    assert_eq!(site_stats(d)["needs_person_total"], 0);
}

#[test]
fn a_challenge_on_a_site_with_no_login_is_put_back_by_unban_not_reset() {
    let dir = initialised();
    let d = dir.path();
    add_session(d, "s1", &[]);
    let (l, _) = lease(d, &[]);
    assert_eq!(report(d, &l, "challenged")["status"], "challenged");
    let action = site_stats(d)["needs_person"][0]["action"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(action.contains("solve the challenge"), "{action}");
    let reset = credpool(d, &["challenge", "reset", "s1"]);
    assert_eq!(reset.status.code(), Some(1));
    assert!(
        stderr(&reset).contains("`credpool unban s1`"),
        "{}",
        stderr(&reset)
    );
    let list = json(&credpool(d, &["list", "--json"]));
    assert_eq!(
        list[0]["status"], "challenged",
        "a refused reset changes nothing"
    );
    assert_eq!(ok(&credpool(d, &["unban", "s1"])).trim(), "s1 is active");
}

#[test]
fn next_free_at_is_that_of_the_requested_kind() {
    let dir = initialised();
    let d = dir.path();
    ok(&support::run_credpool(
        d,
        &[
            "add",
            "--site",
            "jd.com",
            "--type",
            "account",
            "--id",
            "acc",
            "--username",
            "alice",
            "--password-stdin",
        ],
        "pw\n",
        &[],
    ));
    add_session(d, "s1", &[]);
    // The only account: blocked, it rests a day.
    let (l, id) = lease(d, &["--type", "account"]);
    assert_eq!(id, "acc");
    let effect = report(d, &l, "blocked");
    let rest_end = effect["cooldown_until"]
        .as_str()
        .expect("a rest")
        .to_string();
    // A session leased for 5 minutes.
    lease(d, &["--type", "session", "--ttl", "300"]);
    let account = refused(d, &["--type", "account"]);
    assert_eq!(account["status"], "all-blocked", "{account}");
    let next = account["next_free_at"]
        .as_str()
        .expect("a time")
        .to_string();
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp();
    assert!(
        (at(&next) - at(&rest_end)).abs() <= 1,
        "the account's rest end {rest_end}, not a session's lease end: {next}"
    );
    let now = chrono::Utc::now().timestamp();
    assert!(at(&next) - now > 3600, "{next}");
    // The sessions' next is the lease's end, within minutes.
    let sessions = refused(d, &["--type", "session"]);
    let next = sessions["next_free_at"].as_str().expect("a time");
    // The 300 s lease taken above, not "now" (a minute's slack for a busy
    // machine between the lease and this clock read).
    assert!((240..=301).contains(&(at(next) - now)), "{next}");
}

#[test]
fn acquire_and_outcome_counts_outlive_each_process_with_availability_in_stats() {
    let dir = initialised();
    let d = dir.path();
    add_session(d, "s1", &[]);
    add_session(d, "s2", &[]);
    for outcome in ["success", "success", "success", "network"] {
        let (l, _) = lease(d, &[]);
        report(d, &l, outcome);
    }
    // Both leased: the third acquire is refused.
    lease(d, &[]);
    lease(d, &[]);
    refused(d, &[]);
    let s = site_stats(d);
    assert_eq!(
        (s["granted"].as_u64(), s["refused"].as_u64()),
        (Some(6), Some(1)),
        "{s}"
    );
    assert_eq!(s["successes"], 3);
    assert_eq!(s["failures"]["network"], 1);
    let availability = s["availability"].as_f64().expect("availability");
    assert!((availability - 6.0 / 7.0).abs() < 1e-9, "{availability}");
    assert_eq!(s["availability_target"], 0.95);
    // Under the card's 95%: the table marks it.
    let table = ok(&credpool(d, &["stats"]));
    assert!(table.contains("AVAIL"), "{table}");
    assert!(table.contains("85.7%!"), "{table}");
}

#[test]
fn prefer_fresh_picks_the_latest_renewed_through_the_cli() {
    let dir = initialised();
    let d = dir.path();
    add_session(d, "old", &["--expires-at", "2099-01-01T00:00:00Z"]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    add_session(d, "new", &["--expires-at", "2098-01-01T00:00:00Z"]);
    for _ in 0..4 {
        let (l, id) = lease(d, &["--prefer-fresh"]);
        assert_eq!(id, "new");
        ok(&credpool(d, &["release", &l]));
    }
    // While the freshest is leased, the next freshest.
    let (_held, id) = lease(d, &["--prefer-fresh"]);
    assert_eq!(id, "new");
    let (_, id) = lease(d, &["--prefer-fresh"]);
    assert_eq!(id, "old");
}

#[test]
fn prefer_fresh_through_the_library() {
    let (pool, clock, _) = memory_pool();
    for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
        clock.set(T0 + i as i64 * 60_000);
        pool.add(session("jd.com", id, &[("sid", "x")])).unwrap();
    }
    let mut key = NewCredential::new("jd.com", CredentialKind::ApiKey).with_id("k");
    key.secrets.api_key = Some("k-secret".into());
    pool.add(key).unwrap();
    let fresh_session = AcquireRequest {
        prefer_fresh: true,
        kind: Some(CredentialKind::Session),
        ..AcquireRequest::site("jd.com")
    };
    let mut order = Vec::new();
    for _ in 0..3 {
        let got = pool.acquire(&fresh_session).unwrap();
        assert_eq!(got.status, AcquireStatus::Success);
        let lease = got.lease.unwrap();
        order.push(lease.credential.id.to_string());
        pool.report(lease.id, Outcome::Success).unwrap();
        // Reported, it is ready again: the freshest stays the pick.
    }
    assert_eq!(order, ["c", "c", "c"]);
    // Prepared requests keep the flag apart from the plain request.
    let plain = AcquireRequest {
        kind: Some(CredentialKind::Session),
        ..AcquireRequest::site("jd.com")
    };
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        let lease = pool.acquire(&plain).unwrap().lease.unwrap();
        seen.insert(lease.credential.id.to_string());
        pool.release(lease.id).unwrap();
    }
    assert!(
        seen.len() > 1,
        "the strategy spreads plain requests: {seen:?}"
    );
}

#[test]
fn through_a_server_prefer_fresh_is_honoured_and_who_needs_a_person_is_a_metric() {
    use crate::support::server::{Served, token};
    use serde_json::json;
    let dir = initialised();
    let d = dir.path();
    let operator = token(d, "default", "operator", &[]);
    let viewer = token(d, "default", "viewer", &[]);
    let crawler = token(d, "default", "crawler", &[]);
    let server = Served::start(d, &["--listen", "127.0.0.1:0", "--interval-ms", "100"]);
    let mut op = server.client(&operator);
    let mut view = server.client(&viewer);
    let mut crawl = server.client(&crawler);
    for id in ["old", "new"] {
        let added = op.post(
            "/v1/credentials",
            &json!({"site": "jd.com", "type": "session", "id": id,
                    "secrets": {"cookies": [{"name": "sid", "value": id}]}}),
        );
        assert_eq!(added.status, 201, "{}", added.text());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let fresh = json!({"site": "jd.com", "prefer_fresh": true});
    for _ in 0..3 {
        let got = crawl.post("/v1/acquire", &fresh).json();
        assert_eq!(got["lease"]["credential"]["id"], "new", "{got}");
        assert!(
            !got["warnings"].to_string().contains("prefer_fresh"),
            "{got}"
        );
        let lease = got["lease"]["id"].as_str().unwrap().to_string();
        let released = crawl.post(&format!("/v1/leases/{lease}/release"), &json!({}));
        assert_eq!(released.status, 200, "{}", released.text());
    }
    // The freshest expires: no refresh is configured, so a person must act.
    let got = crawl.post("/v1/acquire", &fresh).json();
    let lease = got["lease"]["id"].as_str().unwrap().to_string();
    let r = crawl.post(
        &format!("/v1/leases/{lease}/report"),
        &json!({"outcome": "expired"}),
    );
    assert_eq!(r.json()["status"], "expired", "{}", r.text());
    let stats = view.get("/v1/stats?site=jd.com").json();
    assert_eq!(stats[0]["needs_person_total"], 1, "{stats}");
    assert_eq!(stats[0]["needs_person"][0]["credential_id"], "new");
    assert_eq!(stats[0]["granted"], 4, "{stats}");
    let m = view.get("/metrics").text();
    assert!(
        m.lines().any(|l| l.starts_with("credpool_needs_person{")
            && l.contains("site=\"jd.com\"")
            && l.ends_with(" 1")),
        "{m}"
    );
    // Then prefer_fresh falls back on the one left.
    let got = crawl.post("/v1/acquire", &fresh).json();
    assert_eq!(got["lease"]["credential"]["id"], "old", "{got}");
    server.stop();
}
