//! Issue 18, items 3 and 5 to 10: answers a script can act on, through the
//! built binary (and, where the command goes through a server, through a
//! real `credpool serve`).

use crate::support;

use serde_json::Value;
use std::path::Path;
use std::process::Output;
use support::server::{Served, token};
use support::{credpool, initialised, ok, run_credpool};

fn json(out: &Output) -> Value {
    let text = ok(out);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn serve(dir: &Path) -> Served {
    Served::start(dir, &["--listen", "127.0.0.1:0", "--interval-ms", "200"])
}

fn add_account(dir: &Path, site: &str, id: &str, user: &str, password: &str) {
    ok(&run_credpool(
        dir,
        &[
            "add",
            "--site",
            site,
            "--type",
            "account",
            "--id",
            id,
            "--username",
            user,
            "--password-stdin",
        ],
        &format!("{password}\n"),
        &[],
    ));
}

/// Item 3: the lease of an account carries the login name unmasked (and
/// the password in its secrets); list and show keep it masked.
#[test]
fn an_account_lease_carries_its_username_unmasked() {
    let dir = initialised();
    add_account(dir.path(), "jd.com", "a1", "steve", "pw-1");
    let got = json(&credpool(
        dir.path(),
        &["acquire", "jd.com", "--type", "account", "--json"],
    ));
    assert_eq!(got["lease"]["credential"]["username"], "steve", "{got}");
    assert_eq!(got["lease"]["secrets"]["password"], "pw-1", "{got}");
    let lease = got["lease"]["id"].as_str().unwrap().to_string();
    ok(&credpool(dir.path(), &["release", &lease]));
    let text = ok(&credpool(dir.path(), &["acquire", "jd.com"]));
    assert!(text.contains("username      steve"), "{text}");
    assert!(text.contains("password      pw-1"), "{text}");
    let list = ok(&credpool(dir.path(), &["list"]));
    assert!(!list.contains("steve"), "{list}");
    let show = ok(&credpool(dir.path(), &["show", "a1", "--json"]));
    assert!(!show.contains("steve"), "{show}");

    // Through a server: the same lease.
    let dir = initialised();
    add_account(dir.path(), "jd.com", "a1", "steve", "pw-1");
    let crawler = token(dir.path(), "default", "crawler", &[]);
    let server = serve(dir.path());
    let got = server.run_cli(dir.path(), &crawler, &["acquire", "jd.com", "--json"], "");
    let got: Value = serde_json::from_str(&ok(&got)).unwrap();
    assert_eq!(got["lease"]["credential"]["username"], "steve", "{got}");
    assert_eq!(got["lease"]["secrets"]["password"], "pw-1", "{got}");
}
