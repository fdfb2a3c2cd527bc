//! Issue 18 items 12 and 13, through the built binary: help that says what
//! each option and level does with the global options apart, values
//! listed when one is wrong, `list --type`, and `[policy]` errors at the
//! file's key and line with durations written as `5m`.

use crate::support;
use crate::support::json;

use std::path::Path;
use support::{credpool, initialised, ok, stderr};

fn help(dir: &Path, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push("-h");
    ok(&credpool(dir, &all))
}

/// The command's own options (before "Global options:") as (flag line,
/// description) pairs; a description may sit on the next line.
fn own_options(text: &str) -> Vec<(String, String)> {
    let own = text.split("Global options:").next().unwrap();
    let own = own.split("Options:").nth(1).unwrap_or("");
    let lines: Vec<&str> = own.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        if !t.starts_with('-') {
            continue;
        }
        // "--site <SITE>  Only ..." or the flag alone, its text below.
        let (flag, desc) = match t.find("  ") {
            Some(at) => (t[..at].to_string(), t[at..].trim().to_string()),
            None => (t.trim().to_string(), String::new()),
        };
        let desc = if desc.is_empty() {
            lines
                .get(i + 1)
                .map(|n| n.trim())
                .filter(|n| !n.starts_with('-'))
                .unwrap_or("")
                .to_string()
        } else {
            desc
        };
        out.push((flag, desc));
    }
    out
}

#[test]
fn every_option_is_described_and_global_options_stand_apart() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in [
        &["list"][..],
        &["show"],
        &["acquire"],
        &["report"],
        &["release"],
        &["add"],
        &["stats"],
        &["import"],
        &["export"],
        &["audit"],
        &["tick"],
        &["unban"],
        &["remove"],
        &["token", "create"],
        &["token", "list"],
        &["challenge", "list"],
    ] {
        let text = help(dir.path(), cmd);
        assert!(text.contains("Global options:"), "{cmd:?}:\n{text}");
        let global = text.split("Global options:").nth(1).unwrap();
        for g in ["--data-dir", "--config", "--log-level", "--addr", "--token"] {
            assert!(global.contains(g), "{cmd:?}: {g} not under Global options");
        }
        let own = own_options(&text);
        assert!(!own.is_empty(), "{cmd:?}:\n{text}");
        for (flag, desc) in &own {
            assert!(
                !flag.contains("--data-dir") && !flag.contains("--log-level"),
                "{cmd:?}: a global option among its own:\n{text}"
            );
            assert!(
                !desc.is_empty(),
                "{cmd:?}: {flag} has no description:\n{text}"
            );
        }
    }
    let list = help(dir.path(), &["list"]);
    for flag in ["--site", "--status", "--type", "--tag", "--level", "--json"] {
        assert!(list.contains(flag), "list -h lacks {flag}:\n{list}");
    }
    let acquire = help(dir.path(), &["acquire"]);
    for flag in ["--purpose", "--tag", "--type"] {
        assert!(acquire.contains(flag), "{acquire}");
    }
    assert!(help(dir.path(), &["show"]).contains("--reveal"));
}

/// Item 12: what each level shows, and that none shows a secret value.
#[test]
fn the_level_help_says_what_each_level_shows_and_that_none_shows_secrets() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in ["list", "show"] {
        let text = ok(&credpool(dir.path(), &[cmd, "--help"]));
        assert!(text.contains("No level prints a secret value"), "{text}");
        assert!(text.contains("public:") && text.contains("id, site, type, status and health"));
        assert!(text.contains("internal:") && text.contains("counters"));
        assert!(text.contains("sensitive:") && text.contains("masked"));
    }
    let bad = credpool(dir.path(), &["list", "--level", "secret"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("public, internal, sensitive"),
        "{}",
        stderr(&bad)
    );
}

/// The levels do what the help says on a real store.
#[test]
fn each_level_shows_what_its_help_says() {
    let dir = initialised();
    ok(&credpool(
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
            "alice_long_name",
            "--cookie",
            "sid=SECRETVALUE",
            "--tag",
            "vip",
        ],
    ));
    let at =
        |level: &str| json(&credpool(dir.path(), &["list", "--level", level, "--json"]))[0].clone();
    let public = at("public");
    assert_eq!(public["id"], "a1");
    assert!(public.get("use_count").is_none() && public.get("username").is_none());
    let internal = at("internal");
    assert_eq!(internal["tags"][0], "vip");
    assert_eq!(internal["use_count"], 0, "the counters: {internal}");
    assert!(internal.get("username").is_none());
    let sensitive = at("sensitive");
    assert_eq!(sensitive["username"], "***name");
    assert_eq!(sensitive["cookies"][0]["value"], "***");
    let text = ok(&credpool(dir.path(), &["list"]));
    assert!(
        !text.contains("SECRETVALUE") && !text.contains("alice_long_name"),
        "{text}"
    );
}

#[test]
fn wrong_values_are_listed_and_list_filters_by_type_and_tag() {
    let dir = initialised();
    ok(&credpool(
        dir.path(),
        &[
            "add", "--site", "jd.com", "--type", "session", "--id", "s1", "--cookie", "sid=v",
            "--tag", "a",
        ],
    ));
    ok(&credpool(
        dir.path(),
        &[
            "add",
            "--site",
            "jd.com",
            "--type",
            "token",
            "--id",
            "t1",
            "--header",
            "Authorization: Bearer x",
        ],
    ));
    let bogus = credpool(dir.path(), &["list", "--status", "bogus"]);
    assert_eq!(bogus.status.code(), Some(2));
    let err = stderr(&bogus);
    assert!(
        err.contains("init, active, cooling, challenged, suspended, banned, expired"),
        "{err}"
    );
    let bogus = credpool(dir.path(), &["list", "--type", "cookie"]);
    assert_eq!(bogus.status.code(), Some(2));
    assert!(stderr(&bogus).contains("account, session, token, api-key, device"));

    let bogus = credpool(dir.path(), &["export", "s1", "--format", "csv", "--reveal"]);
    assert_eq!(bogus.status.code(), Some(2));
    assert!(
        stderr(&bogus).contains("cookies-txt, json"),
        "{}",
        stderr(&bogus)
    );
    let bogus = credpool(dir.path(), &["token", "create", "--role", "root"]);
    assert_eq!(bogus.status.code(), Some(2));
    assert!(stderr(&bogus).contains("crawler, viewer, operator, admin"));

    let ids = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["list", "--json"];
        all.extend_from_slice(args);
        json(&credpool(dir.path(), &all))
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&["--type", "token"]), vec!["t1"]);
    assert_eq!(ids(&["--type", "session"]), vec!["s1"]);
    assert_eq!(ids(&["--tag", "a"]), vec!["s1"]);
    assert!(ids(&["--type", "account"]).is_empty());
    assert_eq!(ids(&["--status", "init"]).len(), 2);
}

fn write_config(dir: &Path, text: &str) {
    std::fs::write(dir.join("credpool.toml"), text).unwrap();
}

#[test]
fn policy_errors_name_the_files_key_and_line() {
    let dir = initialised();
    write_config(
        dir.path(),
        "[pool]\ntenant = \"default\"\n\n[policy]\nban_after_blocks = 3\ncooldown_seconds = true\n",
    );
    let out = credpool(dir.path(), &["list"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("credpool.toml: line 6: [policy] cooldown_seconds"),
        "{err}"
    );
    assert!(!err.contains("column"), "{err}");

    write_config(
        dir.path(),
        "[policy]\n\ncooldown_seconds = \"5 fortnights\"\n",
    );
    let err = stderr(&credpool(dir.path(), &["list"]));
    assert!(err.contains("line 3: [policy] cooldown_seconds"), "{err}");
    assert!(err.contains("unknown unit"), "{err}");

    write_config(dir.path(), "[policy]\ncooldown_secs = 5\n");
    let err = stderr(&credpool(dir.path(), &["list"]));
    assert!(
        err.contains("line 2: [policy] cooldown_secs: unknown field"),
        "{err}"
    );
}

#[test]
fn policy_durations_accept_units() {
    let dir = initialised();
    write_config(
        dir.path(),
        "[policy]\ncooldown_seconds = \"5m\"\ncooldown_cap_seconds = \"1h\"\ncooldown_jitter = 0\n",
    );
    ok(&credpool(
        dir.path(),
        &[
            "add", "--site", "jd.com", "--type", "session", "--id", "s1", "--cookie", "sid=v",
        ],
    ));
    let got = json(&credpool(dir.path(), &["acquire", "jd.com", "--json"]));
    let lease = got["lease"]["id"].as_str().unwrap().to_string();
    let before = chrono::Utc::now();
    let effect = json(&credpool(
        dir.path(),
        &["report", &lease, "rate-limited", "--json"],
    ));
    let until =
        chrono::DateTime::parse_from_rfc3339(effect["cooldown_until"].as_str().unwrap()).unwrap();
    let rest = (until.with_timezone(&chrono::Utc) - before).num_seconds();
    // Five minutes, not five seconds or the default.
    assert!((290..=310).contains(&rest), "rest {rest} s: {effect}");
}
