//! Several `credpool serve` over one Redis (issue 15): one leader per
//! tenant, a standby that forwards, a killed leader replaced within about
//! twice the lock's TTL, leases that survive the change of leader, a
//! repeated report answered as the first, and a paused leader whose late
//! write Redis itself refuses (asserted from Redis's contents).

use crate::support::http::Answer;
use crate::support::initialised;
use crate::support::redis::RedisServer;
use crate::support::server::{Served, token};
use rustix::process::Signal;
use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

/// The lock TTL of these tests: short, so takeovers are quick.
const TTL: Duration = Duration::from_secs(1);

/// A free loopback port (for a server that must know its URL first).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One node: `credpool serve` over `redis`, advertising its own URL.
fn node(dir: &Path, redis: &RedisServer, env: &[(&str, &str)]) -> (Served, String) {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let store = redis.url();
    let server = Served::start_env(
        dir,
        &[
            "--store",
            &store,
            "--listen",
            &listen,
            "--advertise",
            &url,
            "--lock-ttl",
            "1s",
            "--interval-ms",
            "100",
        ],
        env,
    );
    (server, url)
}

/// `GET /v1/health` of `server`.
fn health(server: &Served) -> Value {
    let mut c = server.client("");
    let h = c.get("/v1/health");
    assert_eq!(h.status, 200, "{}", h.text());
    h.json()
}

/// Waits until `server` leads tenant `default`; how long that took.
fn until_leader(server: &Served, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let h = health(server);
        if h["tenants"]["default"]["leader"] == true {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "no leadership within {within:?}: {h}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn node_of(a: &Answer) -> String {
    a.header("x-credpool-node").unwrap_or_default().to_string()
}

fn add(op: &mut crate::support::http::Client, id: &str, site: &str) -> Answer {
    op.post(
        "/v1/credentials",
        &json!({"site": site, "type": "session", "id": id, "max_concurrent": 1,
                "secrets": {"cookies": [{"name": "sid", "value": format!("v-{id}")}]}}),
    )
}

#[test]
fn a_standby_forwards_a_killed_leader_is_replaced_and_its_leases_survive() {
    let redis = RedisServer::start_durable();
    let dir = initialised();
    let d = dir.path();
    let operator = token(d, "default", "operator", &[]);
    let crawler = token(d, "default", "crawler", &[]);
    let (mut a, a_url) = node(d, &redis, &[]);
    until_leader(&a, Duration::from_secs(60));
    let (b, b_url) = node(d, &redis, &[]);
    // B stands by and knows who leads.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let h = health(&b);
        if h["tenants"]["default"]["leader_url"] == a_url.as_str() {
            assert_eq!(h["tenants"]["default"]["leader"], false, "{h}");
            assert_eq!(h["node"], b_url.as_str(), "{h}");
            break;
        }
        assert!(Instant::now() < until, "B does not know the leader: {h}");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Through B, answered by A.
    let mut op_b = b.client(&operator);
    let added = add(&mut op_b, "solo", "x.test");
    assert_eq!(added.status, 201, "{}", added.text());
    assert_eq!(node_of(&added), a_url, "{:?}", added.headers);
    let added = add(&mut op_b, "other", "y.test");
    assert_eq!(added.status, 201, "{}", added.text());

    let mut crawl_b = b.client(&crawler);
    let got = crawl_b.post("/v1/acquire", &json!({"site": "y.test"}));
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(node_of(&got), a_url);
    let lease = got.json()["lease"]["id"].as_str().unwrap().to_string();
    let first = crawl_b.post(
        &format!("/v1/leases/{lease}/report"),
        &json!({"outcome": "success"}),
    );
    assert_eq!(first.status, 200, "{}", first.text());
    // The same report again (a client that lost the answer): the same
    // answer, marked as a repeat, not lease_not_found.
    let again = crawl_b.post(
        &format!("/v1/leases/{lease}/report"),
        &json!({"outcome": "success"}),
    );
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["repeat"], true, "{}", again.text());
    assert_eq!(again.json()["status"], first.json()["status"]);

    // An exclusive credential leased from A, then A is killed.
    let mut crawl_a = a.client(&crawler);
    let held = crawl_a.post(
        "/v1/acquire",
        &json!({"site": "x.test", "ttl_seconds": 120}),
    );
    assert_eq!(held.status, 200, "{}", held.text());
    let held_id = held.json()["lease"]["id"].as_str().unwrap().to_string();
    a.signal(Signal::KILL);
    let killed = Instant::now();
    let took = until_leader(&b, Duration::from_secs(60));
    let gap = killed.elapsed();
    println!(
        "takeover after SIGKILL: {} ms (lock TTL {} ms; B led {} ms after the kill)",
        gap.as_millis(),
        TTL.as_millis(),
        took.as_millis()
    );
    // Two TTLs, plus loading the tenant on a busy debug build.
    assert!(gap < 2 * TTL + Duration::from_secs(5), "{gap:?}");
    let h = health(&b);
    assert_eq!(h["tenants"]["default"]["leader_url"], b_url.as_str(), "{h}");
    assert!(
        h["tenants"]["default"]["epoch"].as_u64().unwrap() >= 2,
        "{h}"
    );

    // The new leader knows the lease A handed out: the exclusive
    // credential is not handed out twice.
    let twice = crawl_b.post("/v1/acquire", &json!({"site": "x.test"}));
    assert_eq!(twice.status, 200, "{}", twice.text());
    assert!(twice.json()["lease"].is_null(), "{}", twice.text());
    assert_eq!(node_of(&twice), b_url);
    // The holder reports to B, and a repeat of an earlier report made on
    // A is answered from what A kept in Redis.
    let done = crawl_b.post(
        &format!("/v1/leases/{held_id}/report"),
        &json!({"outcome": "success"}),
    );
    assert_eq!(done.status, 200, "{}", done.text());
    let late_repeat = crawl_b.post(
        &format!("/v1/leases/{lease}/report"),
        &json!({"outcome": "success"}),
    );
    assert_eq!(late_repeat.status, 200, "{}", late_repeat.text());
    assert_eq!(late_repeat.json()["repeat"], true);
    let now_free = crawl_b.post("/v1/acquire", &json!({"site": "x.test"}));
    assert_eq!(
        now_free.json()["lease"]["credential"]["id"],
        "solo",
        "{}",
        now_free.text()
    );
    let (_, log) = b.stop();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_paused_leader_answers_nothing_and_redis_refuses_its_late_write() {
    let redis = RedisServer::start_durable();
    let dir = initialised();
    let d = dir.path();
    let operator = token(d, "default", "operator", &[]);
    // A holds any write of a key naming "late-write" for 2.5 s before it
    // sends it (a debug-build hook), so the pause lands mid-write.
    let (a, a_url) = node(
        d,
        &redis,
        &[("CREDPOOL_DEBUG_WRITE_DELAY", "2500:late-write")],
    );
    until_leader(&a, Duration::from_secs(60));
    let (b, b_url) = node(d, &redis, &[]);
    let mut op_a = a.client(&operator);
    let first = add(&mut op_a, "early", "z.test");
    assert_eq!(first.status, 201, "{}", first.text());

    let writer = std::thread::spawn(move || add(&mut op_a, "late-write", "z.test"));
    std::thread::sleep(Duration::from_millis(500));
    a.send(Signal::STOP);
    let paused = Instant::now();
    until_leader(&b, Duration::from_secs(30));
    // Well past A's TTL, and B leads.
    std::thread::sleep((3 * TTL).saturating_sub(paused.elapsed()));
    a.send(Signal::CONT);
    let late = writer.join().expect("the writer");
    assert_eq!(late.status, 503, "{}", late.text());

    // From Redis itself: the late credential is nowhere, the epoch and
    // the lock are B's.
    let kv = redis.cli(&["HKEYS", "credpool:{t:default}:kv"]);
    let fields = String::from_utf8_lossy(&kv.stdout).to_string();
    assert!(fields.contains("early"), "{fields}");
    assert!(!fields.contains("late-write"), "{fields}");
    let epoch = redis.cli(&["GET", "credpool:{t:default}:epoch"]);
    let epoch: u64 = String::from_utf8_lossy(&epoch.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(epoch >= 2, "{epoch}");
    let lock = redis.cli(&["GET", "credpool:{t:default}:lock"]);
    assert_eq!(
        String::from_utf8_lossy(&lock.stdout).trim(),
        format!("{epoch} {b_url}")
    );

    // A, resumed, answers nothing for the tenant itself: B does, through
    // A, or A says it does not lead.
    let mut op_a = a.client(&operator);
    let listed = op_a.get("/v1/credentials");
    if listed.status == 200 {
        assert_eq!(node_of(&listed), b_url, "{:?}", listed.headers);
        let ids = listed.text();
        assert!(
            ids.contains("early") && !ids.contains("late-write"),
            "{ids}"
        );
    } else {
        assert_eq!(listed.status, 503, "{}", listed.text());
        assert!(
            ["not_leader", "no_leader"].contains(&listed.error_code().as_str()),
            "{}",
            listed.text()
        );
    }
    let h = health(&a);
    assert_eq!(h["tenants"]["default"]["leader"], false, "{h}");
    assert_ne!(h["tenants"]["default"]["leader_url"], a_url.as_str(), "{h}");
    let log = a.log();
    assert!(!log.contains("panicked"), "{log}");
}
