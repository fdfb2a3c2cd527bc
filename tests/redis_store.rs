//! The Redis store end to end: the built binary with `--store
//! redis://127.0.0.1:PORT/0` against a `redis-server` of the test's own.
//! The CLI's whole round (add, import, acquire, report, stats, list,
//! show --reveal) survives the process and Redis restarting; `credpool
//! serve` over Redis answers, says clearly when Redis is gone, and goes on
//! once it is back; and no secret is in Redis in any form.

use crate::support::fixtures::encodings;
use crate::support::redis::RedisServer;
use crate::support::server::{Served, token};
use crate::support::{canary, credpool, initialised, json, ok, run_credpool, stderr};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// `credpool --store URL ARGS` on `dir`.
fn on_redis(dir: &Path, redis: &RedisServer, args: &[&str], stdin: &str) -> std::process::Output {
    let url = redis.url();
    let mut all = vec!["--store", url.as_str()];
    all.extend_from_slice(args);
    run_credpool(dir, &all, stdin, &[])
}

#[test]
fn the_cli_round_lives_in_redis_across_process_and_redis_restarts() {
    let mut redis = RedisServer::start_durable();
    let dir = initialised();
    let d = dir.path();
    let password = canary("pw");
    let out = ok(&on_redis(
        d,
        &redis,
        &[
            "add",
            "--site",
            "r.test",
            "--type",
            "account",
            "--id",
            "acct",
            "--username",
            "alice",
            "--password-stdin",
        ],
        &format!("{password}\n"),
    ));
    assert!(out.contains("added acct"), "{out}");
    let cookie = canary("ck");
    let jar = d.join("jar.txt");
    std::fs::write(&jar, format!(".r.test\tTRUE\t/\tFALSE\t0\tsid\t{cookie}\n")).unwrap();
    let out = ok(&on_redis(
        d,
        &redis,
        &[
            "import",
            jar.to_str().unwrap(),
            "--format",
            "cookies-txt",
            "--site",
            "r.test",
        ],
        "",
    ));
    assert!(out.contains("imported"), "{out}");

    // Nothing went to the embedded store: the records are in Redis.
    assert!(!d.join("data/credpool.redb").exists());
    let keys = redis.keys();
    assert!(
        keys.iter().any(|k| k == "credpool:{t:default}:kv"),
        "{keys:?}"
    );

    // Each command below is a new process on the same Redis.
    let got = json(&on_redis(
        d,
        &redis,
        &["acquire", "r.test", "--type", "account", "--json"],
        "",
    ));
    assert_eq!(got["lease"]["credential"]["id"], "acct", "{got}");
    assert_eq!(got["lease"]["secrets"]["password"], password.as_str());
    let lease = got["lease"]["id"].as_str().expect("a lease id").to_string();
    let done = json(&on_redis(
        d,
        &redis,
        &["report", &lease, "success", "--json"],
        "",
    ));
    assert_eq!(done["status"], "active", "{done}");

    let stats = json(&on_redis(d, &redis, &["stats", "--json"], ""));
    let text = stats.to_string();
    assert!(text.contains("r.test"), "{text}");

    // Redis itself restarts (SIGKILL; its AOF is fsynced at every write).
    redis.kill();
    let down = on_redis(d, &redis, &["list"], "");
    assert_eq!(down.status.code(), Some(1));
    let err = stderr(&down);
    assert!(
        err.contains("Redis store redis://127.0.0.1:") && err.contains("cannot be reached"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    redis.restart();

    let listed = json(&on_redis(d, &redis, &["list", "--json"], ""));
    let rows = listed.as_array().expect("a list");
    assert_eq!(rows.len(), 2, "{listed}");
    let acct = rows
        .iter()
        .find(|r| r["id"] == "acct")
        .expect("acct listed");
    assert_eq!(acct["status"], "active", "{acct}");
    assert_eq!(acct["success_count"], 1, "{acct}");
    let shown = ok(&on_redis(d, &redis, &["show", "acct", "--reveal"], ""));
    assert!(shown.contains(&password), "{shown}");
    let session = rows
        .iter()
        .find(|r| r["id"] != "acct")
        .expect("the session");
    let id = session["id"].as_str().unwrap();
    let shown = ok(&on_redis(d, &redis, &["show", id, "--reveal"], ""));
    assert!(shown.contains(&cookie), "{shown}");

    // `check` reads every sealed record in Redis; backups are Redis's own.
    let checked = ok(&on_redis(d, &redis, &["check"], ""));
    assert!(checked.contains("redis://127.0.0.1:"), "{checked}");
    let out = on_redis(
        d,
        &redis,
        &["backup", d.join("b.redb").to_str().unwrap()],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("back Redis up with its own persistence"),
        "{}",
        stderr(&out)
    );

    // The same data directory without --store is the (empty) embedded one;
    // `store` in credpool.toml is the same as --store.
    let local = json(&credpool(d, &["list", "--json"]));
    assert_eq!(local, json!([]));
    std::fs::write(
        d.join("credpool.toml"),
        format!("[pool]\nstore = \"{}\"\n", redis.url()),
    )
    .unwrap();
    let listed = json(&credpool(d, &["list", "--json"]));
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
}

#[test]
fn a_wrong_key_is_refused_and_a_password_never_shows() {
    let redis = RedisServer::start();
    let dir = initialised();
    let d = dir.path();
    ok(&on_redis(
        d,
        &redis,
        &[
            "add", "--site", "k.test", "--type", "session", "--cookie", "a=b",
        ],
        "",
    ));
    // Another data directory has another key: Redis's check record refuses it.
    let other = initialised();
    let out = on_redis(other.path(), &redis, &["list"], "");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("wrong key"), "{}", stderr(&out));

    // A URL with a password, to a Redis that wants none and to none at all.
    let secret = canary("redispw");
    for port in [redis.port, 1] {
        let url = format!("redis://user:{secret}@127.0.0.1:{port}/0");
        let out = run_credpool(d, &["--store", &url, "list"], "", &[]);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(err.contains("redis://user:***@127.0.0.1:"), "{err}");
        for form in encodings(&secret) {
            assert!(!err.contains(&form), "the password shows: {err}");
        }
    }
    let out = run_credpool(d, &["--store", "http://x", "list"], "", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("expected redis://"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn serve_over_redis_says_when_redis_is_gone_and_goes_on_after() {
    let mut redis = RedisServer::start_durable();
    let dir = initialised();
    let d = dir.path();
    let operator = token(d, "default", "operator", &[]);
    let crawler = token(d, "default", "crawler", &[]);
    let url = redis.url();
    let server = Served::start(
        d,
        &[
            "--store",
            &url,
            "--listen",
            "127.0.0.1:0",
            "--interval-ms",
            "100",
        ],
    );
    let mut op = server.client(&operator);
    let mut crawl = server.client(&crawler);
    for i in 0..3 {
        let add = op.post(
            "/v1/credentials",
            &json!({"site": "s.test", "type": "session", "id": format!("c{i}"),
                    "max_concurrent": 1,
                    "secrets": {"cookies": [{"name": "sid", "value": format!("v{i}")}]}}),
        );
        assert_eq!(add.status, 201, "{}", add.text());
    }
    let got = crawl.post("/v1/acquire", &json!({"site": "s.test"}));
    assert_eq!(got.status, 200, "{}", got.text());
    let lease = got.json()["lease"]["id"].as_str().unwrap().to_string();
    let rep = crawl.post(
        &format!("/v1/leases/{lease}/report"),
        &json!({"outcome": "success"}),
    );
    assert_eq!(rep.status, 200, "{}", rep.text());

    // Redis goes away: an add (durable at once) is refused, naming the store.
    redis.kill();
    let add = op.post(
        "/v1/credentials",
        &json!({"site": "s.test", "type": "session", "id": "while-down",
                "secrets": {"cookies": [{"name": "sid", "value": "x"}]}}),
    );
    assert!(add.status >= 500, "{} {}", add.status, add.text());
    assert!(add.text().contains("Redis store"), "{}", add.text());
    // The server is still up and answering (from memory or with an error).
    let stats = op.get("/v1/stats");
    assert!(matches!(stats.status, 200 | 500 | 503), "{}", stats.text());

    redis.restart();
    let until = Instant::now() + Duration::from_secs(30);
    let got = loop {
        let got = crawl.post("/v1/acquire", &json!({"site": "s.test"}));
        if got.status == 200 && got.json()["lease"]["id"].is_string() {
            break got;
        }
        assert!(
            Instant::now() < until,
            "no lease after Redis came back: {}",
            got.text()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let lease = got.json()["lease"]["id"].as_str().unwrap().to_string();
    let rep = crawl.post(
        &format!("/v1/leases/{lease}/report"),
        &json!({"outcome": "success"}),
    );
    assert_eq!(rep.status, 200, "{}", rep.text());
    let add = op.post(
        "/v1/credentials",
        &json!({"site": "s.test", "type": "session", "id": "after",
                "secrets": {"cookies": [{"name": "sid", "value": "y"}]}}),
    );
    assert_eq!(add.status, 201, "{}", add.text());
    let (_, log) = server.stop();
    assert!(!log.contains("panicked"), "{log}");

    // What the server acknowledged is in Redis: a new process sees it.
    let listed = json(&on_redis(d, &redis, &["list", "--json"], ""));
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    for id in ["c0", "c1", "c2", "after"] {
        assert!(ids.contains(&id), "{id} missing: {ids:?}");
    }
    assert!(!ids.contains(&"while-down"), "{ids:?}");
}

/// Whether `needle` occurs in `hay`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_secret_is_in_redis_in_any_form() {
    let redis = RedisServer::start_durable();
    let dir = initialised();
    let d = dir.path();
    let secrets: Vec<String> = ["pw", "cookie", "token", "refresh", "apikey", "header"]
        .iter()
        .map(|l| canary(l))
        .collect();
    let [pw, cookie, token_v, refresh, apikey, header] = &secrets[..] else {
        unreachable!()
    };
    ok(&on_redis(
        d,
        &redis,
        &[
            "add",
            "--site",
            "c.test",
            "--type",
            "account",
            "--username",
            "u",
            "--password-stdin",
        ],
        &format!("{pw}\n"),
    ));
    ok(&on_redis(
        d,
        &redis,
        &[
            "add",
            "--site",
            "c.test",
            "--type",
            "session",
            "--cookie",
            &format!("sid={cookie}"),
            "--header",
            &format!("Authorization:Bearer {header}"),
        ],
        "",
    ));
    let file = d.join("in.json");
    std::fs::write(
        &file,
        json!([
            {"site": "c.test", "type": "token",
             "secrets": {"access_token": token_v, "refresh_token": refresh}},
            {"site": "c.test", "type": "api-key", "secrets": {"api_key": apikey}}
        ])
        .to_string(),
    )
    .unwrap();
    ok(&on_redis(
        d,
        &redis,
        &["import", file.to_str().unwrap(), "--format", "json"],
        "",
    ));
    // A lease of each, so leases and counters are written too.
    for _ in 0..4 {
        let got = json(&on_redis(d, &redis, &["acquire", "c.test", "--json"], ""));
        let lease = got["lease"]["id"].as_str().expect("lease").to_string();
        ok(&on_redis(d, &redis, &["report", &lease, "success"], ""));
    }

    // Every key `redis-cli --scan` lists, its DUMP, and its contents read
    // plainly (a DUMP may be compressed), and Redis's AOF on disk.
    let keys = redis.keys();
    assert!(keys.len() >= 4, "{keys:?}");
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    for key in &keys {
        blobs.push((format!("key name {key}"), key.as_bytes().to_vec()));
        let dump = redis.cli(&["DUMP", key]);
        assert!(
            dump.status.success() && dump.stdout.len() > 10,
            "DUMP {key}"
        );
        blobs.push((format!("DUMP {key}"), dump.stdout));
        let kind = String::from_utf8_lossy(&redis.cli(&["TYPE", key]).stdout)
            .trim()
            .to_string();
        let read = match kind.as_str() {
            "hash" => redis.cli(&["HGETALL", key]),
            "zset" => redis.cli(&["ZRANGE", key, "0", "-1"]),
            other => panic!("unexpected type {other} of {key}"),
        };
        blobs.push((format!("{kind} {key}"), read.stdout));
    }
    for file in redis.files() {
        blobs.push((file.display().to_string(), std::fs::read(&file).unwrap()));
    }
    assert!(
        blobs.iter().any(|(n, _)| n.contains("appendonly")),
        "no AOF to search: {:?}",
        redis.files()
    );
    for secret in &secrets {
        for form in encodings(secret) {
            for (name, blob) in &blobs {
                assert!(
                    !contains(blob, form.as_bytes()),
                    // Never the form itself: a failure must not print it.
                    "a secret is in Redis ({name}) in one of its encodings"
                );
            }
        }
    }
    // The canary can fail: the plain names the pool does keep are there.
    assert!(blobs.iter().any(|(_, b)| contains(b, b"t/default/p/")));
}

#[test]
fn bench_runs_on_an_empty_redis_and_leaves_it_empty() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let figures = json(&on_redis(
        d,
        &redis,
        &[
            "bench",
            "--credentials",
            "20",
            "--pairs",
            "400",
            "--warmup",
            "40",
        ],
        "",
    ));
    assert_eq!(figures["pairs"], 400, "{figures}");
    assert_eq!(figures["store"], "redis", "{figures}");
    // Its records are gone (the tenant registry may keep its one name).
    let left: Vec<String> = redis
        .keys()
        .into_iter()
        .filter(|k| k != "credpool:{g}:tenants")
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // A store that holds records is not the bench's to fill.
    let data = initialised();
    ok(&on_redis(
        data.path(),
        &redis,
        &[
            "add", "--site", "b.test", "--type", "session", "--cookie", "a=b",
        ],
        "",
    ));
    let out = on_redis(
        d,
        &redis,
        &["bench", "--credentials", "5", "--pairs", "10"],
        "",
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("bench needs an empty Redis database"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_peer_that_answers_garbage_is_an_error_naming_the_store() {
    let dir = initialised();
    let d = dir.path();
    // Not Redis at all: a listener that answers every line with junk.
    let junk = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = junk.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in junk.incoming().flatten() {
            use std::io::{Read, Write};
            let mut s = stream;
            let mut buf = [0u8; 512];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(b"\x00\xffgarbage}{\r\n?!\r\n").is_err() {
                    break;
                }
            }
        }
    });
    let url = format!("redis://127.0.0.1:{port}/0");
    let out = run_credpool(d, &["--store", &url, "list"], "", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("Redis store {url}")), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // Redis, but a key of ours holds the wrong type.
    let redis = RedisServer::start();
    ok(&on_redis(
        d,
        &redis,
        &[
            "add", "--site", "g.test", "--type", "session", "--cookie", "a=b",
        ],
        "",
    ));
    assert!(
        redis
            .cli(&["DEL", "credpool:{t:default}:kv"])
            .status
            .success()
    );
    assert!(
        redis
            .cli(&["SET", "credpool:{t:default}:kv", "junk"])
            .status
            .success()
    );
    let out = on_redis(d, &redis, &["list"], "");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("Redis store redis://127.0.0.1:"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn the_redis_backend_agrees_with_the_memory_one_on_every_call() {
    use credpool::backend::{Backend, MemoryBackend, RedisBackend, StoreUrl, Write};
    let redis = RedisServer::start();
    let r = RedisBackend::open(&StoreUrl::new(redis.url())).expect("open");
    let m = MemoryBackend::new();
    // Keys of two tenants (one whose name needs escaping, one a prefix of
    // another), global keys, and a key of neither shape.
    let keys = [
        "k/check/1",
        "k/uses/1",
        "k/rekey",
        "t/a/p/cred/1",
        "t/a/p/cred/2",
        "t/a/s/1",
        "t/a-b/p/x",
        "t/ab/p/y",
        "t/{odd}/p/z",
        "t/loose",
        "x/other",
    ];
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for round in 0..300 {
        let pick = |n: u64| keys[(n % keys.len() as u64) as usize].to_string();
        let value = |n: u64| format!("v{}", n % 5).into_bytes();
        match next() % 3 {
            0 => {
                let batch: Vec<Write> = (0..1 + next() % 4)
                    .map(|_| {
                        let n = next();
                        if n % 4 == 0 {
                            Write::Delete(pick(n >> 8))
                        } else {
                            Write::Put(pick(n >> 8), value(n >> 16))
                        }
                    })
                    .collect();
                r.apply(&batch).unwrap();
                m.apply(&batch).unwrap();
            }
            1 => {
                let (k, n) = (pick(next()), next());
                let expected = (n % 3 != 0).then(|| value(n >> 4));
                let new = (n % 5 != 0).then(|| value(n >> 8));
                assert_eq!(
                    r.compare_and_swap(&k, expected.as_deref(), new.as_deref())
                        .unwrap(),
                    m.compare_and_swap(&k, expected.as_deref(), new.as_deref())
                        .unwrap(),
                    "round {round}: swap {k}"
                );
            }
            _ => {
                let k = pick(next());
                assert_eq!(
                    r.get(&k).unwrap(),
                    m.get(&k).unwrap(),
                    "round {round}: get {k}"
                );
            }
        }
        for prefix in ["", "k/", "t/", "t/a", "t/a/", "t/a/p/", "t/{odd}/", "x"] {
            for after in [
                None,
                Some("k/uses/1"),
                Some("t/a-b/p/x"),
                Some("t/a/p/cred/1"),
            ] {
                for limit in [1, 2, 100] {
                    assert_eq!(
                        r.scan(prefix, after, limit).unwrap(),
                        m.scan(prefix, after, limit).unwrap(),
                        "round {round}: scan {prefix:?} after {after:?} limit {limit}"
                    );
                }
            }
        }
    }
    assert!(!m.dump().is_empty());
}

#[test]
fn rediss_speaks_tls_and_checks_the_servers_certificate() {
    let tls = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (tls.path().join("redis.crt"), tls.path().join("redis.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let redis = RedisServer::start_tls(&cert, &key);
    let dir = initialised();
    let d = dir.path();
    let url = format!("rediss://127.0.0.1:{}/0", redis.port);
    let trusted = [("SSL_CERT_FILE", cert.to_str().unwrap())];
    let add = [
        "--store", &url, "add", "--site", "tls.test", "--type", "session", "--cookie", "a=b",
    ];
    ok(&run_credpool(d, &add, "", &trusted));
    let listed = json(&run_credpool(
        d,
        &["--store", &url, "list", "--json"],
        "",
        &trusted,
    ));
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    // A certificate nobody said to trust is refused.
    let other = tls.path().join("other.crt");
    let stranger = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(&other, stranger.cert.pem()).unwrap();
    let out = run_credpool(
        d,
        &["--store", &url, "list"],
        "",
        &[("SSL_CERT_FILE", other.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("certificate"), "{}", stderr(&out));
}
