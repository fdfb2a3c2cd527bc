//! Issue 18 item 15: every reveal and export leaves a record in
//! `DATA_DIR/audit.log` at the default log level, without a secret value,
//! shown by `credpool audit` (locally and through a server); a damaged
//! line is reported, never a panic.

use crate::support;
use crate::support::json;

use serde_json::Value;
use std::path::Path;
use support::server::{Served, token};
use support::{canary, credpool, initialised, ok, stderr};

fn add_session(dir: &Path, id: &str, value: &str) {
    ok(&credpool(
        dir,
        &[
            "add",
            "--site",
            "jd.com",
            "--type",
            "session",
            "--id",
            id,
            "--cookie",
            &format!("sid={value}"),
        ],
    ));
}

fn audit_file(dir: &Path) -> std::path::PathBuf {
    dir.join("data").join("audit.log")
}

#[test]
fn reveal_and_export_are_recorded_at_the_default_level_without_secrets() {
    let dir = initialised();
    let secret = canary("AUDIT");
    add_session(dir.path(), "s1", &secret);
    add_session(dir.path(), "s2", &secret);
    // Nothing revealed yet: an empty trail, not an error.
    assert!(ok(&credpool(dir.path(), &["audit"])).contains("no reveals or exports"));

    let shown = ok(&credpool(dir.path(), &["show", "s1", "--reveal"]));
    assert!(shown.contains(&secret), "the reveal itself works");
    ok(&credpool(
        dir.path(),
        &["export", "s2", "--format", "cookies-txt", "--reveal"],
    ));
    // A refused export (no --reveal) reveals nothing and records nothing.
    let refused = credpool(dir.path(), &["export", "s1", "--format", "json"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));

    let file = audit_file(dir.path());
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        !text.contains(&secret),
        "a secret in the audit file: {text}"
    );
    assert_eq!(text.lines().count(), 2, "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "audit file mode {mode:o}");
    }

    let trail = json(&credpool(dir.path(), &["audit", "--json"]));
    let records = trail["records"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{trail}");
    assert_eq!(records[0]["action"], "reveal");
    assert_eq!(records[0]["credential"], "s1");
    assert_eq!(records[0]["site"], "jd.com");
    assert_eq!(records[0]["via"], "cli");
    assert!(records[0].get("format").is_none(), "{trail}");
    assert_eq!(records[1]["action"], "export");
    assert_eq!(records[1]["credential"], "s2");
    assert_eq!(records[1]["format"], "cookies-txt");
    let actor = records[0]["actor"].as_str().unwrap();
    assert!(actor.starts_with("user "), "{actor}");
    assert!(chrono::DateTime::parse_from_rfc3339(records[0]["at"].as_str().unwrap()).is_ok());
    assert_eq!(trail["damaged"], serde_json::json!([]));

    let only = json(&credpool(
        dir.path(),
        &["audit", "--credential", "s2", "--json"],
    ));
    assert_eq!(only["records"].as_array().unwrap().len(), 1, "{only}");
    assert_eq!(only["records"][0]["credential"], "s2", "{only}");

    let table = ok(&credpool(dir.path(), &["audit"]));
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(
        rows[0].contains("reveal") && rows[0].contains("s1"),
        "{table}"
    );
    assert!(
        rows[1].contains("export") && rows[1].contains("cookies-txt"),
        "{table}"
    );
}

#[test]
fn a_damaged_audit_line_is_reported_and_the_rest_shown() {
    let dir = initialised();
    add_session(dir.path(), "s1", "v1");
    ok(&credpool(dir.path(), &["show", "s1", "--reveal"]));
    let file = audit_file(dir.path());
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.extend_from_slice(b"{\"at\": \"2026-01-01T00:00:00Z\", \"acti\n\xff\xfe garbage\n");
    std::fs::write(&file, &bytes).unwrap();
    ok(&credpool(dir.path(), &["show", "s1", "--reveal"]));

    let out = credpool(dir.path(), &["audit"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("internal error"),
        "{err}"
    );
    assert!(err.contains("line 2: not an audit record"), "{err}");
    assert!(err.contains("line 3: not UTF-8"), "{err}");
    assert!(err.contains("2 damaged line(s)"), "{err}");
    // The good records on both sides of the damage are still shown.
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("reveal").count(), 2, "{text}");

    let out = credpool(dir.path(), &["audit", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["records"].as_array().unwrap().len(), 2, "{v}");
    let lines: Vec<u64> = v["damaged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![2, 3]);
}

#[test]
fn the_servers_reveal_and_export_are_recorded_and_shown_through_it() {
    let dir = initialised();
    let secret = canary("HTTPAUDIT");
    add_session(dir.path(), "s1", &secret);
    let admin = token(dir.path(), "default", "admin", &[]);
    let operator = token(dir.path(), "default", "operator", &[]);
    let server = Served::start(dir.path(), &["--listen", "127.0.0.1:0"]);

    // Through the CLI as a client: the reveal is the server's, recorded by it.
    let shown = ok(&server.run_cli(dir.path(), &admin, &["show", "s1", "--reveal"], ""));
    assert!(shown.contains(&secret));
    // The export endpoint, called directly.
    let got = server
        .client(&admin)
        .get("/v1/credentials/s1/export?format=json");
    assert_eq!(got.status, 200, "{}", got.text());

    let trail = json(&server.run_cli(dir.path(), &admin, &["audit", "--json"], ""));
    let records = trail["records"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{trail}");
    let admin_id = {
        let list = ok(&credpool(dir.path(), &["token", "list", "--json"]));
        let list: Value = serde_json::from_str(&list).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .find(|t| t["role"] == "admin")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for (r, action) in records.iter().zip(["reveal", "export"]) {
        assert_eq!(r["action"], action, "{trail}");
        assert_eq!(r["credential"], "s1");
        assert_eq!(r["via"], "http");
        assert_eq!(r["tenant"], "default");
        assert_eq!(r["actor"], format!("token {admin_id}"));
    }
    assert_eq!(records[1]["format"], "json");
    // Only admins read the trail.
    let refused = server.run_cli(dir.path(), &operator, &["audit"], "");
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("may not read the audit trail"),
        "{}",
        stderr(&refused)
    );
    server.stop();

    // The same file, read locally once the server is gone; no secret in it.
    let text = std::fs::read_to_string(audit_file(dir.path())).unwrap();
    assert!(!text.contains(&secret), "{text}");
    let local = json(&credpool(dir.path(), &["audit", "--json"]));
    assert_eq!(local["records"], trail["records"]);
}
