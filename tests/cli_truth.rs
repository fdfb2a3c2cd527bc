//! Issue 18: the command line as crawler engineers use it, through the
//! built binary: one truth about status, answers a script can act on, one
//! JSON shape.

use crate::support;
use crate::support::json;

use serde_json::Value;
use std::path::Path;
use support::{credpool, initialised, ok, stderr};

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

/// Item 1: a cookie that expired before the import is said, and its
/// session is `expired` in every view.
#[test]
fn expired_cookies_are_said_at_import_and_expired_everywhere() {
    let dir = initialised();
    let file = dir.path().join("cookies.txt");
    std::fs::write(
        &file,
        "# Netscape HTTP Cookie File\n\
         .old.com\tTRUE\t/\tFALSE\t1672531200\tsid\tv1\n\
         .new.com\tTRUE\t/\tFALSE\t4102444800\tsid\tv2\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let text = ok(&credpool(
        dir.path(),
        &["import", path, "--format", "cookies-txt"],
    ));
    assert!(
        text.contains("cookie sid for old.com already expired at 2023-01-01T00:00:00Z"),
        "{text}"
    );
    assert!(text.contains("1 cookie(s) already expired"), "{text}");
    let list = json(&credpool(dir.path(), &["list", "--json"]));
    let status = |site: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|v| v["site"] == site)
            .map(|v| v["status"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(status("old.com"), "expired");
    assert_eq!(status("new.com"), "init");
    let stats = json(&credpool(
        dir.path(),
        &["stats", "--site", "old.com", "--json"],
    ));
    assert_eq!(stats[0]["by_status"]["expired"], 1);
    assert_eq!(stats[0]["by_status"]["init"], 0);
    assert_eq!(stats[0]["by_status"]["active"], 0);
    let refused = credpool(dir.path(), &["acquire", "old.com"]);
    assert_eq!(refused.status.code(), Some(3), "{}", stderr(&refused));
}

/// Item 1, later: a session added with an expiry that then passes is
/// `expired` in list and stats once it has passed, with no tick needed.
#[test]
fn a_session_past_its_expiry_is_expired_in_list_and_stats() {
    let dir = initialised();
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
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
            "sid=v",
            "--expires-at",
            &soon,
        ],
    ));
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(status_of(dir.path(), "s1"), "expired");
    let stats = json(&credpool(dir.path(), &["stats", "--json"]));
    assert_eq!(stats[0]["by_status"]["expired"], 1);
}

/// The numbers of a `stats` table row under its headers.
fn stats_table(dir: &Path) -> std::collections::HashMap<String, String> {
    let text = ok(&credpool(dir, &["stats"]));
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    head.iter()
        .zip(row)
        .map(|(h, v)| (h.to_string(), v.to_string()))
        .collect()
}

/// Item 2: list, the stats table and stats --json tell one story.
#[test]
fn list_stats_and_stats_json_agree_on_status() {
    let dir = initialised();
    for i in 0..5 {
        add_session(dir.path(), "jd.com", &format!("s{i}"));
    }
    let count = |list: &Value, status: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .filter(|v| v["status"] == status)
            .count()
            .to_string()
    };
    let list = json(&credpool(dir.path(), &["list", "--json"]));
    let stats = json(&credpool(dir.path(), &["stats", "--json"]));
    let table = stats_table(dir.path());
    assert_eq!(count(&list, "init"), "5");
    assert_eq!(stats[0]["by_status"]["init"], 5);
    assert_eq!(table["INIT"], "5");
    assert_eq!(table["ACTIVE"], "0");
    // One used well: active in all three.
    let got = json(&credpool(dir.path(), &["acquire", "jd.com", "--json"]));
    let lease = got["lease"]["id"].as_str().unwrap();
    ok(&credpool(dir.path(), &["report", lease, "success"]));
    let list = json(&credpool(dir.path(), &["list", "--json"]));
    let stats = json(&credpool(dir.path(), &["stats", "--json"]));
    let table = stats_table(dir.path());
    assert_eq!(count(&list, "active"), "1");
    assert_eq!(stats[0]["by_status"]["active"], 1);
    assert_eq!(table["ACTIVE"], "1");
    assert_eq!(count(&list, "init"), "4");
    assert_eq!(table["INIT"], "4");
}
