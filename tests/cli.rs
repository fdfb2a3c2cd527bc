//! The built `credpool` binary, run as a user would.

use crate::support;

use serde_json::Value;
use std::path::Path;
use support::{credpool, initialised, ok, run_credpool, stderr};

#[test]
fn init_creates_a_private_key_and_refuses_to_run_twice() {
    let dir = initialised();
    let again = credpool(dir.path(), &["init"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("refusing to overwrite"),
        "{}",
        stderr(&again)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = dir.path().join("data/credpool.key");
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = credpool(dir.path(), &["list"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("readable by group or others"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn a_session_round_trips_its_cookies_and_headers_exactly() {
    let dir = initialised();
    ok(&credpool(
        dir.path(),
        &[
            "add",
            "--site",
            "jd.com",
            "--type",
            "session",
            "--id",
            "s1",
            "--cookie",
            "sid=abc=def==",
            "--cookie",
            "pt_key=v 2",
            "--header",
            "Authorization: Bearer tok.en",
            "--header",
            "X-Device:  d1",
            "--expires-at",
            "2030-01-01T00:00:00Z",
            "--tag",
            "mobile",
        ],
    ));
    let acquired: Value =
        serde_json::from_str(&ok(&credpool(dir.path(), &["acquire", "jd.com", "--json"]))).unwrap();
    assert_eq!(acquired["status"], "success");
    let lease = &acquired["lease"];
    assert_eq!(lease["credential"]["id"], "s1");
    assert_eq!(lease["credential"]["expires_at"], "2030-01-01T00:00:00Z");
    assert_eq!(
        lease["secrets"]["cookies"],
        serde_json::json!([{"name": "sid", "value": "abc=def=="}, {"name": "pt_key", "value": "v 2"}])
    );
    assert_eq!(
        lease["secrets"]["headers"],
        serde_json::json!([{"name": "Authorization", "value": "Bearer tok.en"}, {"name": "X-Device", "value": "d1"}])
    );
    // The lease is exclusive across processes, until reported.
    let busy = credpool(dir.path(), &["acquire", "jd.com"]);
    assert_eq!(busy.status.code(), Some(3), "{}", stderr(&busy));
    let lease_id = lease["id"].as_str().unwrap();
    let report: Value = serde_json::from_str(&ok(&credpool(
        dir.path(),
        &["report", lease_id, "blocked", "--status", "403", "--json"],
    )))
    .unwrap();
    assert_eq!(report["status"], "suspended");
    assert_eq!(report["health"], 90);
    let busy = credpool(dir.path(), &["acquire", "jd.com"]);
    assert_eq!(busy.status.code(), Some(3));
    assert!(stderr(&busy).contains("all-cooling"), "{}", stderr(&busy));
}

#[test]
fn list_shows_cookie_names_but_never_values() {
    let dir = initialised();
    ok(&credpool(
        dir.path(),
        &[
            "add",
            "--site",
            "jd.com",
            "--type",
            "session",
            "--id",
            "s1",
            "--cookie",
            "sid=TOPSECRETVALUE",
            "--username",
            "alice_shopper",
        ],
    ));
    let out = ok(&credpool(dir.path(), &["list", "--json"]));
    assert!(!out.contains("TOPSECRETVALUE"), "{out}");
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        list[0]["cookies"],
        serde_json::json!([{"name": "sid", "value": "***"}])
    );
    assert_eq!(list[0]["username"], "***pper");
    let table = ok(&credpool(dir.path(), &["list"]));
    assert!(
        table.contains("sid=***") && !table.contains("TOPSECRETVALUE"),
        "{table}"
    );
}

#[test]
fn acquire_on_a_site_with_no_credential_exits_4_and_says_so() {
    let dir = initialised();
    let out = credpool(dir.path(), &["acquire", "nowhere.com"]);
    assert_eq!(out.status.code(), Some(4));
    let err = stderr(&out);
    assert!(
        err.contains("no credentials at all for site nowhere.com"),
        "{err}"
    );
}

#[test]
fn passwords_come_from_stdin_and_bad_usage_exits_2() {
    let dir = initialised();
    ok(&run_credpool(
        dir.path(),
        &[
            "add",
            "--site",
            "jd.com",
            "--type",
            "account",
            "--id",
            "a1",
            "--username",
            "bob",
            "--password-stdin",
        ],
        "hunter2-pass\n",
        &[],
    ));
    let out = credpool(dir.path(), &["show", "a1", "--reveal", "--json"]);
    let shown: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(shown["secrets"]["password"], "hunter2-pass");
    let bad = credpool(
        dir.path(),
        &["add", "--site", "jd.com", "--type", "cookie-jar"],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("'cookie-jar'")
            && stderr(&bad).contains("account, session, token, api-key, device"),
        "{}",
        stderr(&bad)
    );
    let bad = credpool(dir.path(), &["frobnicate"]);
    assert_eq!(bad.status.code(), Some(2));
    let bad = credpool(dir.path(), &["report", "l-1", "meh"]);
    assert_eq!(bad.status.code(), Some(2));
    // Nothing was stored by the refused commands.
    let list: Value =
        serde_json::from_str(&ok(&credpool(dir.path(), &["list", "--json"]))).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[test]
fn stats_and_release_work_across_invocations() {
    let dir = initialised();
    ok(&credpool(
        dir.path(),
        &[
            "add", "--site", "jd.com", "--type", "session", "--id", "s1", "--cookie", "a=b",
        ],
    ));
    let acquired: Value =
        serde_json::from_str(&ok(&credpool(dir.path(), &["acquire", "jd.com", "--json"]))).unwrap();
    let lease_id = acquired["lease"]["id"].as_str().unwrap().to_string();
    let stats: Value =
        serde_json::from_str(&ok(&credpool(dir.path(), &["stats", "--json"]))).unwrap();
    assert_eq!(stats[0]["open_leases"], 1);
    ok(&credpool(dir.path(), &["release", &lease_id]));
    let again = credpool(dir.path(), &["release", &lease_id]);
    assert_eq!(again.status.code(), Some(1));
    let bad = credpool(dir.path(), &["release", "lease-7"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("invalid lease id"),
        "{}",
        stderr(&bad)
    );
    assert!(
        stderr(&again).contains("no open lease"),
        "{}",
        stderr(&again)
    );
    ok(&credpool(dir.path(), &["acquire", "jd.com"]));
    // The stats carry the per-method counts and the time to answer.
    let stats: Value =
        serde_json::from_str(&ok(&credpool(dir.path(), &["stats", "--json"]))).unwrap();
    assert_eq!(stats[0]["refresh"]["by_method"], serde_json::json!([]));
    assert_eq!(stats[0]["time_to_answer"]["answered"], 0);
    let table = ok(&credpool(dir.path(), &["stats"]));
    assert!(table.contains("ANSWER-AVG/MAX"), "{table}");
    // `challenge reset` is refused for a credential that is not challenged.
    let reset = credpool(dir.path(), &["challenge", "reset", "s1"]);
    assert_eq!(reset.status.code(), Some(1), "{}", stderr(&reset));
    assert!(
        stderr(&reset).contains("reset-challenge"),
        "{}",
        stderr(&reset)
    );
}

#[test]
fn a_bad_config_key_is_named_with_its_line() {
    let dir = initialised();
    std::fs::write(
        dir.path().join("credpool.toml"),
        "[pool]\ntenant = \"x\"\nbogus = 1\n",
    )
    .unwrap();
    let out = credpool(dir.path(), &["list"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("line 3") && err.contains("bogus"), "{err}");
    std::fs::write(
        dir.path().join("credpool.toml"),
        "[policy]\ncooldown_secs = 1\n",
    )
    .unwrap();
    let err = stderr(&credpool(dir.path(), &["list"]));
    assert!(err.contains("cooldown_secs"), "{err}");
}

#[test]
fn the_compiled_policy_is_cached_privately_and_a_bad_cache_is_replaced() {
    let dir = initialised();
    ok(&credpool(dir.path(), &["list"]));
    let cache = dir.path().join("data/cache");
    let files: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].extension().is_some_and(|e| e == "cwasm"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&cache), 0o700);
        assert_eq!(mode(&files[0]), 0o600);
        assert_eq!(mode(&dir.path().join("data/credpool.redb")), 0o600);
    }
    // A damaged cache file is compiled again and replaced, not trusted.
    std::fs::write(&files[0], b"not compiled code").unwrap();
    ok(&credpool(
        dir.path(),
        &["add", "--site", "jd.com", "--type", "token", "--id", "t1"],
    ));
    assert!(std::fs::read(&files[0]).unwrap().len() > 1000);
    let list: Value =
        serde_json::from_str(&ok(&credpool(dir.path(), &["list", "--json"]))).unwrap();
    assert_eq!(list[0]["id"], "t1");
}

#[test]
fn bench_prints_its_figures_as_json_and_names_a_bad_thread_count() {
    // The bench needs no data directory: its pool is in memory.
    let dir = tempfile::tempdir().unwrap();
    let args = ["bench", "--credentials", "3", "--pairs", "300"];
    let out = credpool(
        dir.path(),
        &[&args[..], &["--threads", "2", "--combined"]].concat(),
    );
    let figures: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(figures["credentials"], 3);
    assert_eq!(figures["threads"], 2);
    assert_eq!(figures["calls_per_pair"], 1);
    // First uses were timed apart, in the warm-up.
    assert!(figures["first_uses"].as_u64().is_some_and(|n| n >= 1));
    assert!(
        figures["first_use_p50_us"]
            .as_f64()
            .is_some_and(|us| us > 0.0)
    );
    let pairs = 300 + figures["warmup"].as_u64().unwrap();
    assert_eq!(figures["reported"], pairs);
    // One lease still held by each thread.
    assert_eq!(figures["granted"], pairs + 2);
    let bad = credpool(dir.path(), &[&args[..], &["--threads", "4"]].concat());
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("--threads must be between 1 and --credentials (3), not 4"),
        "{}",
        stderr(&bad)
    );
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

#[test]
fn diagnostics_into_a_file_carry_no_colour_codes() {
    let dir = initialised();
    ok(&credpool(
        dir.path(),
        &[
            "add", "--site", "jd.com", "--type", "session", "--cookie", "sid=v1",
        ],
    ));
    // stderr is a pipe here, as with `credpool run 2> file`.
    let out = credpool(dir.path(), &["--log-level", "trace", "acquire", "jd.com"]);
    let err = stderr(&out);
    assert!(err.contains("[CRED]"), "no diagnostics to check: {err}");
    assert!(
        !err.contains('\u{1b}'),
        "ANSI escape in piped stderr: {err:?}"
    );
}
