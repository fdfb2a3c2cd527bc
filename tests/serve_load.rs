//! Load on a real `credpool serve`: the per-token rate limit (429 with
//! `Retry-After` for the token over its pace, the others unhurt) and the
//! `credpool bench --http` load generator run against a live server.

use crate::support::server::{Served, token};
use crate::support::{credpool, initialised, ok, stderr};
use std::time::Duration;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_token_over_its_rate_limit_gets_429_with_retry_after_and_others_go_on() {
    let dir = initialised();
    let greedy = token(dir.path(), "default", "viewer", &[]);
    let calm = token(dir.path(), "default", "viewer", &[]);
    let served = Served::start(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--rate-limit",
            "1",
            "--rate-burst",
            "3",
        ],
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    runtime().block_on(async {
        let mut statuses = Vec::new();
        let mut limited = None;
        for _ in 0..10 {
            let r = client
                .get(served.url("/v1/stats"))
                .bearer_auth(&greedy)
                .send()
                .await
                .unwrap();
            statuses.push(r.status().as_u16());
            if r.status() == 429 && limited.is_none() {
                let retry = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                let body: serde_json::Value = r.json().await.unwrap();
                limited = Some((retry, body));
            }
        }
        // The burst of 3 goes through; then refills at 1 a second, far
        // slower than these calls.
        assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
        let (retry, body) = limited.unwrap_or_else(|| panic!("never limited: {statuses:?}"));
        assert!(retry.is_some_and(|s| s >= 1), "Retry-After: {retry:?}");
        assert_eq!(body["error"]["code"], "rate_limited", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.contains(&greedy)),
            "{body}"
        );
        // The bucket is the token's own: another token is not slowed.
        let other = client
            .get(served.url("/v1/stats"))
            .bearer_auth(&calm)
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 200);
    });
    let (status, log) = served.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn serve_limits_each_token_by_default() {
    let dir = initialised();
    let out = credpool(dir.path(), &["serve", "--help"]);
    let help = ok(&out);
    let line = help
        .lines()
        .skip_while(|l| !l.contains("--rate-limit"))
        .take_while(|l| !l.contains("--rate-burst"))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(line.contains("[default: 5000]"), "{help}");
}

#[test]
fn bench_http_drives_leases_through_a_live_server_and_prints_json() {
    let dir = initialised();
    let admin = token(dir.path(), "default", "admin", &[]);
    let served = Served::start(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--rate-limit", "0"],
    );
    let addr = served.addr.to_string();
    let bench = |extra: &[&str]| {
        let mut args = vec![
            "bench",
            "--http",
            &addr,
            "--token",
            &admin,
            "--concurrency",
            "2",
            "--seconds",
            "1",
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = credpool(dir.path(), &args);
        let text = ok(&out);
        let figures: serde_json::Value =
            serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        figures
    };
    // Seeds 4 sessions through the API, then the two phases.
    let two = bench(&["--seed", "4"]);
    assert_eq!(two["concurrency"], 2, "{two}");
    assert_eq!(two["calls_per_pair"], 2, "{two}");
    let pairs = two["pairs"]["count"].as_u64().unwrap();
    assert!(pairs > 0, "{two}");
    assert!(two["healthz"]["count"].as_u64().unwrap() > 0, "{two}");
    for f in [
        &two["pairs"]["per_sec"],
        &two["pairs"]["p50_us"],
        &two["pairs"]["p99_us"],
        &two["healthz"]["per_sec"],
        &two["ratio"],
    ] {
        assert!(f.as_f64().is_some_and(|x| x > 0.0), "{two}");
    }
    // One call a pair: report-and-acquire.
    let one = bench(&["--combined"]);
    assert_eq!(one["calls_per_pair"], 1, "{one}");
    assert!(one["pairs"]["count"].as_u64().unwrap() > 0, "{one}");

    // The server's own count: every measured pair was a lease it granted
    // (warm-up pairs too), and every lease came back.
    let stats: serde_json::Value = runtime().block_on(async {
        reqwest::Client::new()
            .get(served.url("/v1/stats?site=bench.example"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let site = &stats[0];
    assert_eq!(site["total"], 4, "{stats}");
    let granted = site["granted"].as_u64().unwrap();
    assert!(
        granted >= pairs + one["pairs"]["count"].as_u64().unwrap(),
        "{stats}"
    );
    assert_eq!(site["open_leases"], 0, "{stats}");

    // Without a token it says what is missing.
    let out = credpool(dir.path(), &["bench", "--http", &addr]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--token"), "{}", stderr(&out));
    // A viewer may not lease: the run stops saying so.
    let viewer = token(dir.path(), "default", "viewer", &[]);
    let out = credpool(
        dir.path(),
        &[
            "bench",
            "--http",
            &addr,
            "--token",
            &viewer,
            "--seconds",
            "0.2",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));
    let (status, log) = served.stop();
    assert!(status.success(), "{log}");
}
