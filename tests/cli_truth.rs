//! Issue 18: the command line as crawler engineers use it, through the
//! built binary: one truth about status, answers a script can act on, one
//! JSON shape.

use crate::support;

use serde_json::Value;
use std::path::Path;
use std::process::Output;
use support::{credpool, initialised, ok, stderr};

fn json(out: &Output) -> Value {
    let text = ok(out);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn add_session(dir: &Path, site: &str, id: &str) {
    ok(&credpool(
        dir,
        &[
            "add", "--site", site, "--type", "session", "--id", id, "--cookie", "sid=v1",
        ],
    ));
}

fn status_of(dir: &Path, id: &str) -> String {
    let v = json(&credpool(dir, &["show", id, "--json"]));
    let v = if v.is_array() { v[0].clone() } else { v };
    v["status"].as_str().unwrap_or_default().to_string()
}

/// Item 4: a report after the lease lapsed still reaches the credential.
#[test]
fn a_late_report_is_absorbed_not_lost() {
    let dir = initialised();
    add_session(dir.path(), "jd.com", "s1");
    let got = json(&credpool(
        dir.path(),
        &["acquire", "jd.com", "--ttl", "1", "--json"],
    ));
    let lease = got["lease"]["id"].as_str().unwrap().to_string();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    // The lapse is seen by another process first (its slot is free again).
    ok(&credpool(dir.path(), &["tick"]));
    let out = credpool(
        dir.path(),
        &["report", &lease, "blocked", "--status", "403"],
    );
    let text = ok(&out);
    assert!(text.contains("lapsed"), "{text}");
    assert!(text.contains("suspended"), "{text}");
    assert_eq!(status_of(dir.path(), "s1"), "suspended");
    // Once: the same report again is refused.
    let again = credpool(dir.path(), &["report", &lease, "blocked", "--json"]);
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
}
