//! The secrets canary on Redis, through `credpool serve`: a pool on a real
//! `redis-server` (AOF on) holds credentials with known canary secrets (a
//! password, a TOTP seed, a cookie, a header, access and refresh tokens, an
//! API key), crawlers lease and report them over HTTP (so leases, counters
//! and audit records are written too), an admin reveals and exports one;
//! then every key `redis-cli --scan` lists, its `DUMP`, its value read
//! through the protocol by its type, and Redis's files on disk are searched
//! for each secret raw, hex, base64 (standard and URL-safe, at the three
//! alignments) and URL-encoded: none is there.

use crate::support::fixtures::encodings;
use crate::support::redis::RedisServer;
use crate::support::server::{Served, token};
use crate::support::{canary, initialised};
use serde_json::json;

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// A canary that is also valid base32 (a TOTP seed must decode).
fn base32_canary(label: &str) -> String {
    canary(label)
        .chars()
        .map(|c| match c {
            '0'..='9' => (b'A' + (c as u8 - b'0')) as char,
            'a'..='f' => (b'K' + (c as u8 - b'a')) as char,
            other => other.to_ascii_uppercase(),
        })
        .collect()
}

/// Every value of `key`, read through the protocol by the key's type.
fn read_value(redis: &RedisServer, key: &str) -> (String, Vec<u8>) {
    let kind = String::from_utf8_lossy(&redis.cli(&["TYPE", key]).stdout)
        .trim()
        .to_string();
    let out = match kind.as_str() {
        "string" => redis.cli(&["GET", key]),
        "hash" => redis.cli(&["HGETALL", key]),
        "zset" => redis.cli(&["ZRANGE", key, "0", "-1", "WITHSCORES"]),
        "set" => redis.cli(&["SMEMBERS", key]),
        "list" => redis.cli(&["LRANGE", key, "0", "-1"]),
        "stream" => redis.cli(&["XRANGE", key, "-", "+"]),
        other => panic!("unexpected type {other} of {key}"),
    };
    assert!(out.status.success(), "reading {key} ({kind})");
    (kind, out.stdout)
}

#[test]
fn no_secret_served_over_redis_is_in_redis_in_any_form() {
    let redis = RedisServer::start_durable();
    let dir = initialised();
    let d = dir.path();
    let operator = token(d, "default", "operator", &[]);
    let crawler = token(d, "default", "crawler", &[]);
    let admin = token(d, "default", "admin", &[]);
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
    let [pw, totp, cookie, header, access, refresh, apikey] = [
        "pw", "totp", "cookie", "header", "access", "refresh", "apikey",
    ]
    .map(|l| {
        if l == "totp" {
            base32_canary("TOTP")
        } else {
            canary(l)
        }
    });
    let mut op = server.client(&operator);
    for body in [
        json!({"site": "c.test", "type": "account", "id": "acct", "username": "u",
               "max_concurrent": 1,
               "secrets": {"password": pw, "totp_seed": totp}}),
        json!({"site": "c.test", "type": "session", "id": "sess", "max_concurrent": 1,
               "secrets": {"cookies": [{"name": "sid", "value": cookie}],
                           "headers": [{"name": "Authorization", "value": format!("Bearer {header}")}]}}),
        json!({"site": "c.test", "type": "token", "id": "tok", "max_concurrent": 1,
               "secrets": {"access_token": access, "refresh_token": refresh}}),
        json!({"site": "c.test", "type": "api-key", "id": "key", "max_concurrent": 1,
               "secrets": {"api_key": apikey}}),
    ] {
        let add = op.post("/v1/credentials", &body);
        assert_eq!(add.status, 201, "{}", add.text());
    }
    // Leases of each (held together, so every one is out at once), then
    // their reports: leases, counters and outcomes are written.
    let mut crawl = server.client(&crawler);
    let mut leases = Vec::new();
    for _ in 0..4 {
        let got = crawl.post("/v1/acquire", &json!({"site": "c.test"}));
        assert_eq!(got.status, 200, "{}", got.text());
        let v = got.json();
        leases.push(v["lease"]["id"].as_str().expect("a lease").to_string());
    }
    for lease in &leases {
        let rep = crawl.post(
            &format!("/v1/leases/{lease}/report"),
            &json!({"outcome": "success"}),
        );
        assert_eq!(rep.status, 200, "{}", rep.text());
    }
    // The secrets do come back to whoever may see them.
    let mut adm = server.client(&admin);
    let shown = adm.get("/v1/credentials/acct/reveal");
    assert_eq!(shown.status, 200, "{}", shown.text());
    assert!(contains(&shown.body, pw.as_bytes()));
    let exported = adm.get("/v1/credentials/sess/export?format=json");
    assert_eq!(exported.status, 200, "{}", exported.text());
    assert!(contains(&exported.body, cookie.as_bytes()));
    // Whatever the server writes in the background has had its turn.
    let (status, _) = server.stop();
    assert!(status.success(), "{status:?}");

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
        let (kind, value) = read_value(&redis, key);
        blobs.push((format!("{kind} {key}"), value));
    }
    for file in redis.files() {
        blobs.push((file.display().to_string(), std::fs::read(&file).unwrap()));
    }
    assert!(
        blobs.iter().any(|(n, _)| n.contains("appendonly")),
        "no AOF to search: {:?}",
        redis.files()
    );
    for secret in [&pw, &totp, &cookie, &header, &access, &refresh, &apikey] {
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
    // The search can fail: the key layout the pool keeps in the clear is
    // found, in the hash fields read and in the AOF.
    for place in ["hash ", "appendonly"] {
        assert!(
            blobs
                .iter()
                .any(|(n, b)| n.contains(place) && contains(b, b"t/default/")),
            "no key layout in any {place}: {:?}",
            blobs.iter().map(|(n, _)| n).collect::<Vec<_>>()
        );
    }
}
