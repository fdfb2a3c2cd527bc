//! `credpool simulate` and `credpool demo` end to end: the built binary
//! crawls the simulated sites on loopback through the policy component,
//! with the lifecycle running, and reports from what its workers saw.

use crate::support;

use support::{credpool, ok, stderr};

fn simulate_json(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec!["simulate", "--json"];
    all.extend_from_slice(args);
    let out = ok(&credpool(dir.path(), &all));
    assert!(
        !dir.path().join("data").exists(),
        "simulate keeps its store in a temporary directory"
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn a_short_run_reports_from_what_its_workers_saw() {
    let r = simulate_json(&[
        "--accounts",
        "30",
        "--workers",
        "4",
        "--requests",
        "1500",
        "--seed",
        "7",
    ]);
    assert_eq!(r["policy"], "credpool default");
    assert_eq!(r["accounts"], 30);
    assert_eq!(r["requests"], 1500, "{r}");
    let answers: u64 = r["answers"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(answers, 1500, "every request is classified once: {r}");
    assert!(r["answers"]["ok"].as_u64().unwrap() > 1000, "{r}");
    // Every granted acquire became one request.
    assert_eq!(r["availability"]["granted"], 1500, "{r}");
    let share = r["availability"]["share"].as_f64().unwrap();
    assert!(share > 0.0 && share <= 1.0, "{r}");
    // Accounts logged in and sessions were kept alive through the lifecycle.
    assert!(r["refresh"]["succeeded"].as_u64().unwrap() >= 10, "{r}");
    assert!(r["requests_per_sec"].as_f64().unwrap() > 0.0, "{r}");
    // The leak scan searched the store and the log for the secrets.
    // Each account's password, and a session id or token pair for each
    // successful login or refresh (the sites issue them).
    let issued = r["refresh"]["succeeded"].as_u64().unwrap();
    assert!(
        r["leaks"]["secrets"].as_u64().unwrap() >= 30 + issued,
        "{r}"
    );
    assert!(r["leaks"]["files"].as_u64().unwrap() >= 2, "{r}");
    assert_eq!(r["leaks"]["found_in"], serde_json::json!([]), "{r}");
    assert_eq!(r["slo"]["no_leak"], true);
}

#[test]
fn compare_runs_the_naive_baseline_every_strategy_and_fixed_rates_on_the_same_sites() {
    let runs = simulate_json(&[
        "--accounts",
        "12",
        "--workers",
        "3",
        "--requests",
        "300",
        "--compare",
    ]);
    let policies: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["policy"].as_str().unwrap())
        .collect();
    assert_eq!(
        policies,
        [
            "credpool default",
            "naive round-robin",
            "credpool round-robin",
            "credpool random",
            "credpool least-recently-used",
            "credpool sticky",
            "credpool fixed 60/min",
            "credpool fixed 240/min",
            "credpool fixed 300/min",
            "credpool fixed 360/min",
            "credpool fixed 480/min",
            "credpool fixed 900/min"
        ]
    );
    for r in runs.as_array().unwrap() {
        assert_eq!(r["requests"], 300, "{r}");
        // The pace figures count the answers the workers saw.
        assert_eq!(r["pace"]["ok"], r["answers"]["ok"], "{r}");
        // Over-use blocks (the site's record) are among the blocks seen.
        assert!(
            r["pace"]["over_use_after_change"].as_u64().unwrap()
                <= r["pace"]["blocked_after_change"].as_u64().unwrap(),
            "{r}"
        );
        assert_eq!(r["leaks"]["found_in"], serde_json::json!([]), "{r}");
    }
}

#[test]
fn bad_simulate_flags_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in [
        (vec!["--duration", "5x"], "--duration"),
        (vec!["--strategy", "fastest"], "--strategy"),
        (vec!["--accounts", "2"], "--accounts"),
        (vec!["--workers", "0"], "--workers"),
        (vec!["--duration", "5s", "--requests", "9"], "not both"),
    ] {
        let mut all = vec!["simulate"];
        all.extend(args.iter().copied());
        let out = credpool(dir.path(), &all);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn the_demo_runs_with_no_setup_and_ends_with_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(&credpool(dir.path(), &["demo"]));
    for line in [
        "credential availability (SLO >= 95%)",
        "session refresh success (SLO >= 90%)",
        "anomaly detection (SLO >= 95%)",
        "first credentials handed out",
        "suspended after a 403",
        "accounts lost per 10,000 requests",
        "plaintext leaks                        none",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    assert!(
        !dir.path().join("data").exists(),
        "the demo writes nothing where it runs"
    );
}
