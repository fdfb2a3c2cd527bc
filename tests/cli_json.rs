//! Issue 18 item 11, through the built binary: one JSON shape per object
//! across commands and the HTTP API, and errors as JSON under `--json`.

use crate::support;
use crate::support::json;

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;
use support::server::{Served, token};
use support::{credpool, initialised, ok, stderr};

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

/// A failed command's stdout under `--json`: the error object, nothing on
/// stderr; returns (code, message).
fn json_error(out: &Output, exit: i32) -> (String, String) {
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(exit), "{text}\n{}", stderr(out));
    assert!(stderr(out).is_empty(), "stderr: {}", stderr(out));
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(keys(&v), BTreeSet::from(["error".to_string()]), "{v}");
    assert_eq!(
        keys(&v["error"]),
        BTreeSet::from(["code".to_string(), "message".to_string()])
    );
    (
        v["error"]["code"].as_str().unwrap().to_string(),
        v["error"]["message"].as_str().unwrap().to_string(),
    )
}

const ADD: &[&str] = &[
    "add",
    "--site",
    "jd.com",
    "--type",
    "account",
    "--id",
    "a1",
    "--username",
    "alice_shopper",
    "--cookie",
    "sid=COOKIEVALUE",
    "--header",
    "X-Auth: HEADERVALUE",
    "--tag",
    "vip",
    "--json",
];

fn check_shapes(run: &dyn Fn(&[&str]) -> Output, label: &str) -> (Value, Value) {
    let added = json(&run(ADD));
    let shown = json(&run(&["show", "a1", "--json"]));
    let listed = json(&run(&["list", "--json"]));
    assert!(
        shown.is_object(),
        "{label}: show --json is an object: {shown}"
    );
    assert_eq!(keys(&added), keys(&shown), "{label}: add vs show");
    assert_eq!(keys(&listed[0]), keys(&shown), "{label}: list vs show");
    assert_eq!(
        shown["cookies"],
        serde_json::json!([{"name": "sid", "value": "***"}])
    );
    assert_eq!(
        shown["headers"],
        serde_json::json!([{"name": "X-Auth", "value": "***"}])
    );
    let revealed = json(&run(&["show", "a1", "--reveal", "--json"]));
    let mut with_secrets = keys(&shown);
    with_secrets.insert("secrets".into());
    assert_eq!(
        keys(&revealed),
        with_secrets,
        "{label}: reveal is show plus secrets"
    );
    assert_eq!(
        revealed["cookies"], shown["cookies"],
        "still masked beside the values"
    );
    assert_eq!(
        revealed["secrets"]["cookies"],
        serde_json::json!([{"name": "sid", "value": "COOKIEVALUE"}])
    );
    assert_eq!(
        revealed["secrets"]["headers"],
        serde_json::json!([{"name": "X-Auth", "value": "HEADERVALUE"}])
    );
    // A lease's secrets have the reveal's secrets' shape.
    let got = json(&run(&["acquire", "jd.com", "--json"]));
    assert_eq!(keys(&got["lease"]["secrets"]), keys(&revealed["secrets"]));
    assert_eq!(keys(&got["lease"]["credential"]), keys(&shown));
    let lease = got["lease"]["id"].as_str().unwrap();
    let released = json(&run(&["release", lease, "--json"]));
    assert_eq!(
        released,
        serde_json::json!({"lease": lease, "released": true})
    );
    (shown, revealed)
}

#[test]
fn one_shape_per_object_across_commands() {
    let dir = initialised();
    let run = |args: &[&str]| credpool(dir.path(), args);
    check_shapes(&run, "local");
}

#[test]
fn errors_are_json_under_json() {
    let dir = initialised();
    let (code, msg) = json_error(&credpool(dir.path(), &["show", "nope", "--json"]), 1);
    assert_eq!(code, "credential_not_found");
    assert_eq!(msg, "no credential with id nope");
    // Without --json, the same failure is a line on stderr.
    let plain = credpool(dir.path(), &["show", "nope"]);
    assert!(plain.stdout.is_empty());
    assert!(stderr(&plain).contains("credpool: no credential with id nope"));

    let (code, msg) = json_error(
        &credpool(dir.path(), &["list", "--status", "bogus", "--json"]),
        2,
    );
    assert_eq!(code, "usage");
    assert!(msg.contains("bogus"), "{msg}");
    let (code, _) = json_error(
        &credpool(dir.path(), &["release", "not-a-lease", "--json"]),
        2,
    );
    assert_eq!(code, "usage");
    let (code, _) = json_error(&credpool(dir.path(), &["release", "l1.2", "--json"]), 1);
    assert_eq!(code, "lease_not_found");
    let (code, _) = json_error(
        &credpool(dir.path(), &["report", "l1.2", "success", "--json"]),
        1,
    );
    assert_eq!(code, "lease_not_found");
    ok(&credpool(
        dir.path(),
        &[
            "add", "--site", "jd.com", "--type", "session", "--id", "s1", "--cookie", "a=b",
        ],
    ));
    let (code, _) = json_error(
        &credpool(
            dir.path(),
            &[
                "add", "--site", "jd.com", "--type", "session", "--id", "s1", "--cookie", "a=b",
                "--json",
            ],
        ),
        1,
    );
    assert_eq!(code, "already_exists");
    // Nothing free: the answer itself is the JSON (exit 3), not an error.
    let got = json(&credpool(dir.path(), &["acquire", "jd.com", "--json"]));
    let lease = got["lease"]["id"].as_str().unwrap();
    let none = credpool(dir.path(), &["acquire", "jd.com", "--json"]);
    assert_eq!(none.status.code(), Some(3));
    let v: Value = serde_json::from_slice(&none.stdout).unwrap();
    assert!(v.get("error").is_none() && v["status"].is_string(), "{v}");
    ok(&credpool(dir.path(), &["release", lease]));
    // A bad configuration: named at its line, coded.
    std::fs::write(
        dir.path().join("credpool.toml"),
        "[policy]\ncooldown_seconds = true\n",
    )
    .unwrap();
    let (code, msg) = json_error(&credpool(dir.path(), &["list", "--json"]), 1);
    assert_eq!(code, "invalid_config");
    assert!(msg.contains("line 2: [policy] cooldown_seconds"), "{msg}");
}

#[test]
fn through_a_server_the_shapes_and_error_codes_are_the_same() {
    let local = initialised();
    let run_local = |args: &[&str]| credpool(local.path(), args);
    let (local_shown, local_revealed) = check_shapes(&run_local, "local");

    let dir = initialised();
    let admin = token(dir.path(), "default", "admin", &[]);
    let viewer = token(dir.path(), "default", "viewer", &[]);
    let server = Served::start(dir.path(), &["--listen", "127.0.0.1:0"]);
    let d: &Path = dir.path();
    let run_remote = |args: &[&str]| server.run_cli(d, &admin, args, "");
    let (shown, revealed) = check_shapes(&run_remote, "server");
    assert_eq!(keys(&shown), keys(&local_shown));
    assert_eq!(keys(&revealed), keys(&local_revealed));
    // The HTTP API's own answer is the object the CLI prints.
    let api = server.client(&admin).get("/v1/credentials/a1");
    assert_eq!(keys(&api.json()), keys(&shown));

    // The store held by the server, opened directly: said, and coded.
    let (code, msg) = json_error(&credpool(d, &["list", "--json"]), 1);
    assert_eq!(code, "store_in_use");
    assert!(msg.contains("CREDPOOL_ADDR"), "{msg}");
    let (code, msg) = json_error(
        &server.run_cli(d, &admin, &["show", "nope", "--json"], ""),
        1,
    );
    assert_eq!(code, "credential_not_found");
    assert_eq!(msg, "no credential with id nope");
    let (code, msg) = json_error(
        &server.run_cli(d, &viewer, &["show", "a1", "--reveal", "--json"], ""),
        1,
    );
    assert_eq!(code, "forbidden");
    assert!(msg.contains("may not reveal secrets"), "{msg}");
    server.stop();
}
