//! Issue 18, items 3 and 5 to 10: answers a script can act on, through the
//! built binary (and, where the command goes through a server, through a
//! real `credpool serve`).

use crate::support;
use crate::support::json;

use serde_json::Value;
use std::path::Path;
use std::process::Output;
use support::server::{Served, token};
use support::{credpool, initialised, ok, run_credpool};

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
    let got = json(&got);
    assert_eq!(got["lease"]["credential"]["username"], "steve", "{got}");
    assert_eq!(got["lease"]["secrets"]["password"], "pw-1", "{got}");
}

fn add_session(dir: &Path, site: &str, id: &str) {
    ok(&credpool(
        dir,
        &[
            "add", "--site", site, "--type", "session", "--id", id, "--cookie", "sid=v1",
        ],
    ));
}

/// Seconds from now to an RFC 3339 time.
fn secs_until(t: &Value) -> i64 {
    let at =
        chrono::DateTime::parse_from_rfc3339(t.as_str().unwrap_or_else(|| panic!("{t}"))).unwrap();
    (at.timestamp_millis() - chrono::Utc::now().timestamp_millis()) / 1000
}

/// An HTTP-date (IMF-fixdate) `secs` from now.
fn http_date_in(secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(secs))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

fn lease_of(got: &Value) -> String {
    got["lease"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no lease: {got}"))
        .to_string()
}

/// Item 9: `--retry-after` and the API's `retry_after` take whole seconds
/// or an HTTP-date; the rest lasts until that date.
#[test]
fn retry_after_takes_seconds_or_an_http_date() {
    let dir = initialised();
    add_session(dir.path(), "jd.com", "s1");
    add_session(dir.path(), "jd.com", "s2");
    let lease = lease_of(&json(&credpool(
        dir.path(),
        &["acquire", "jd.com", "--json"],
    )));
    let date = http_date_in(3600);
    let effect = json(&credpool(
        dir.path(),
        &[
            "report",
            &lease,
            "rate-limited",
            "--status",
            "429",
            "--retry-after",
            &date,
            "--json",
        ],
    ));
    let wait = secs_until(&effect["cooldown_until"]);
    assert!((3590..=3601).contains(&wait), "{wait} s: {effect}");
    // Not a number nor a date: a usage error naming both forms.
    let lease = lease_of(&json(&credpool(
        dir.path(),
        &["acquire", "jd.com", "--json"],
    )));
    let bad = credpool(
        dir.path(),
        &["report", &lease, "rate-limited", "--retry-after", "soon"],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", support::stderr(&bad));
    let said = support::stderr(&bad);
    assert!(
        said.contains("HTTP-date") && said.contains("seconds"),
        "{said}"
    );

    // Through a server: the CLI passes the header on, the API takes both.
    let dir = initialised();
    for i in 0..3 {
        add_session(dir.path(), "jd.com", &format!("s{i}"));
    }
    let crawler = token(dir.path(), "default", "crawler", &[]);
    let server = serve(dir.path());
    let got = json(&server.run_cli(dir.path(), &crawler, &["acquire", "jd.com", "--json"], ""));
    let effect = json(&server.run_cli(
        dir.path(),
        &crawler,
        &[
            "report",
            &lease_of(&got),
            "rate-limited",
            "--retry-after",
            &http_date_in(1800),
            "--json",
        ],
        "",
    ));
    let wait = secs_until(&effect["cooldown_until"]);
    assert!((1790..=1801).contains(&wait), "{wait} s: {effect}");
    let mut api = server.client(&crawler);
    for (retry_after, expect) in [
        (serde_json::json!(http_date_in(2400)), 2400),
        (serde_json::json!(1200), 1200),
    ] {
        let got = api.post("/v1/acquire", &serde_json::json!({"site": "jd.com"}));
        let lease = lease_of(&got.json());
        let effect = api.post(
            &format!("/v1/leases/{lease}/report"),
            &serde_json::json!({"outcome": "rate-limited", "retry_after": retry_after}),
        );
        assert_eq!(effect.status, 200, "{}", effect.text());
        let wait = secs_until(&effect.json()["cooldown_until"]);
        assert!((expect - 10..=expect + 1).contains(&wait), "{wait} s");
    }
    let got = api.post("/v1/acquire", &serde_json::json!({"site": "jd.com"}));
    assert_eq!(got.json()["status"], "no-available", "{}", got.text());
}

/// Item 6: a person ends a rest early with `unban` (alias `resume`), on
/// the store and through a server.
#[test]
fn a_rest_can_be_ended_early_by_a_person() {
    let dir = initialised();
    add_session(dir.path(), "jd.com", "s1");
    add_session(dir.path(), "jd.com", "s2");
    let block = |dir: &Path, outcome: &str| {
        let lease = lease_of(&json(&credpool(dir, &["acquire", "jd.com", "--json"])));
        json(&credpool(dir, &["report", &lease, outcome, "--json"]))
    };
    let effect = block(dir.path(), "blocked");
    assert_eq!(effect["status"], "suspended", "{effect}");
    let effect = block(dir.path(), "rate-limited");
    assert_eq!(effect["status"], "cooling", "{effect}");
    let refused = credpool(dir.path(), &["acquire", "jd.com"]);
    assert_eq!(refused.status.code(), Some(3));
    let list = json(&credpool(dir.path(), &["list", "--json"]));
    let ids: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["id"].as_str().unwrap().into(),
                v["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    let suspended = &ids.iter().find(|(_, s)| s == "suspended").unwrap().0;
    let cooling = &ids.iter().find(|(_, s)| s == "cooling").unwrap().0;
    let said = ok(&credpool(dir.path(), &["unban", suspended]));
    assert_eq!(said.trim(), format!("{suspended} is active"));
    let said = ok(&credpool(dir.path(), &["resume", cooling]));
    assert_eq!(said.trim(), format!("{cooling} is active"));
    ok(&credpool(dir.path(), &["acquire", "jd.com"]));
    // An active credential has no rest to end: refused, exit 1.
    let refused = credpool(dir.path(), &["resume", cooling]);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "{}",
        support::stderr(&refused)
    );

    // Through a server.
    let operator = token(dir.path(), "default", "operator", &[]);
    let crawler = token(dir.path(), "default", "crawler", &[]);
    let server = serve(dir.path());
    let got = json(&server.run_cli(dir.path(), &crawler, &["acquire", "jd.com", "--json"], ""));
    let id = got["lease"]["credential"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&server.run_cli(
        dir.path(),
        &crawler,
        &["report", &lease_of(&got), "blocked"],
        "",
    ));
    let said = ok(&server.run_cli(dir.path(), &operator, &["resume", &id], ""));
    assert_eq!(said.trim(), format!("{id} is active"));
}

/// Item 10: `credpool tick` starts the configured sites' refreshes as
/// `run` does, and waits for them: the session is renewed when it ends.
#[test]
fn tick_starts_the_configured_refreshes() {
    use support::loopback::{reply, serve as site};
    let home = site(|_req| {
        reply(
            200,
            &[("Set-Cookie", "sid=renewed; Max-Age=86400; Path=/")],
            "welcome back",
        )
    });
    let dir = initialised();
    std::fs::write(
        dir.path().join("credpool.toml"),
        format!(
            "[sites.\"jd.com\"]\nmethod = \"cookie-visit\"\nrefresh_url = \"{}\"\n\
             refresh_before_expire = \"1h\"\n",
            home.url("/home")
        ),
    )
    .unwrap();
    // Expires in 30 minutes: inside refresh_before_expire, so due now.
    let soon = (chrono::Utc::now() + chrono::Duration::minutes(30))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
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
            "sid=old",
            "--expires-at",
            &soon,
        ],
    ));
    let summary = json(&credpool(dir.path(), &["tick", "--json"]));
    assert_eq!(summary["refreshes_started"], 1, "{summary}");
    let hits = home.hits("/home");
    assert_eq!(hits.len(), 1, "the refresh visited the site");
    // Its result is in the store when tick returns.
    let revealed = json(&credpool(dir.path(), &["show", "s1", "--reveal", "--json"]));
    let revealed = if revealed.is_array() {
        revealed[0].clone()
    } else {
        revealed
    };
    let renewed = revealed["secrets"]["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["value"] == "renewed");
    assert!(renewed, "{revealed}");
    assert_eq!(revealed["status"], "active", "{revealed}");
    assert!(secs_until(&revealed["expires_at"]) > 3 * 3600, "{revealed}");
}

/// No Rust names (`AlertKind::PoolExhausted`, `AllLeased`), no epoch
/// milliseconds and no empty `key=` field in what a person reads.
fn assert_plain_words(text: &str) {
    for rust in [
        "::",
        "AllLeased",
        "PoolExhausted",
        "Warning",
        "epoch",
        "next_free_at",
    ] {
        assert!(!text.contains(rust), "{rust:?} in:\n{text}");
    }
    for word in text.split_whitespace() {
        assert!(!word.ends_with('='), "empty field {word:?} in:\n{text}");
    }
}

/// The sentences of an acquire answer: its alternatives and warnings.
fn words_of(got: &Value) -> String {
    ["alternatives", "warnings"]
        .iter()
        .flat_map(|k| got[*k].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `credpool:` line of a refusal (stderr holds only it and the
/// episode's alert).
fn refusal_line(out: &Output) -> String {
    refusal_line_with(out, 3)
}

/// As [`refusal_line`], for a refusal with exit code `code`.
fn refusal_line_with(out: &Output, code: i32) -> String {
    assert_eq!(out.status.code(), Some(code), "{}", support::stderr(out));
    let err = support::stderr(out);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("credpool:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    lines[0].to_string()
}

/// Item 7: one clear line with a real time, JSON without placeholder
/// words, plain names in logs, the alert raised once per episode across
/// processes.
#[test]
fn no_available_answers_are_one_clear_line_and_one_alert_per_episode() {
    let dir = initialised();
    add_session(dir.path(), "jd.com", "s1");
    ok(&credpool(dir.path(), &["acquire", "jd.com"]));
    let first = credpool(dir.path(), &["acquire", "jd.com", "--json"]);
    assert_eq!(first.status.code(), Some(3));
    let got: Value = serde_json::from_slice(&first.stdout).unwrap();
    let next = got["next_free_at"].as_str().expect("a time").to_string();
    assert!(
        chrono::DateTime::parse_from_rfc3339(&next).is_ok(),
        "{next}"
    );
    assert_plain_words(&words_of(&got));
    // The time once in JSON's own field, and in the one alternative that
    // names it, in the same form.
    assert_eq!(
        got["alternatives"][0],
        format!("retry after {next}"),
        "{got}"
    );
    assert_eq!(got["warnings"], serde_json::json!(["1 leased"]));
    let err = support::stderr(&first);
    assert_plain_words(&err);
    assert_eq!(
        err.matches("[ALERT] warning pool-exhausted site=jd.com")
            .count(),
        1,
        "{err}"
    );
    assert_eq!(err.lines().count(), 2, "the alert and the line:\n{err}");
    let line = refusal_line(&first);
    assert_eq!(
        line,
        format!(
            "credpool: no credential available for jd.com (all-leased: 1 leased); \
             the next frees at {next}; release leases you no longer use, or add more \
             credentials for jd.com"
        )
    );
    // Another process, the same episode: the line, no second alert.
    let second = credpool(dir.path(), &["acquire", "jd.com"]);
    assert_eq!(refusal_line(&second), line);
    assert!(
        !support::stderr(&second).contains("[ALERT]"),
        "{}",
        support::stderr(&second)
    );
    assert_eq!(second.stdout.len(), 0);
    let stats = json(&credpool(dir.path(), &["stats", "--json"]));
    assert_eq!(
        stats[0]["anomalies"][0]["kind"], "pool-exhausted",
        "{stats}"
    );

    // Nothing frees by itself (expired, no refresh configured): no time.
    let past = (chrono::Utc::now() - chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    ok(&credpool(
        dir.path(),
        &[
            "add",
            "--site",
            "old.com",
            "--type",
            "session",
            "--cookie",
            "sid=v",
            "--expires-at",
            &past,
        ],
    ));
    let out = credpool(dir.path(), &["acquire", "old.com", "--json"]);
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(got["next_free_at"].is_null(), "{got}");
    assert_plain_words(&words_of(&got));
    assert!(!words_of(&got).contains("retry after"), "{got}");
    let line = refusal_line(&out);
    assert!(!line.contains("frees at"), "{line}");
    assert_plain_words(&line);

    // Through a server: the same line; the server raises the alert once.
    let crawler = token(dir.path(), "default", "crawler", &[]);
    let server = serve(dir.path());
    let remote = server.run_cli(dir.path(), &crawler, &["acquire", "jd.com"], "");
    let remote_line = refusal_line(&remote);
    assert!(
        remote_line.starts_with(
            "credpool: no credential available for jd.com (all-leased: 1 leased); the next frees at "
        ),
        "{remote_line}"
    );
    server.run_cli(dir.path(), &crawler, &["acquire", "jd.com"], "");
    assert!(!server.log().contains("[ALERT]"), "{}", server.log());
}

/// Item 8: a site with no credential at all is exit 4 (not 3's "wait"),
/// 404 `unknown_site` from a server, and names the known site it looks
/// like; other spellings of a known site are that site.
#[test]
fn a_site_with_no_credentials_is_its_own_answer_and_names_look_alikes() {
    let dir = initialised();
    add_session(dir.path(), "WWW.JD.com", "s1");
    let list = json(&credpool(dir.path(), &["list", "--json"]));
    assert_eq!(list[0]["site"], "jd.com", "{list}");
    for spelling in ["jd.com", "JD.COM", "www.jd.com"] {
        let got = json(&credpool(dir.path(), &["acquire", spelling, "--json"]));
        assert_eq!(got["lease"]["credential"]["site"], "jd.com");
        ok(&credpool(dir.path(), &["release", &lease_of(&got)]));
    }
    let stats = json(&credpool(
        dir.path(),
        &["stats", "--site", "JD.COM", "--json"],
    ));
    assert_eq!(stats[0]["total"], 1, "{stats}");
    // Importing a site under another spelling adds to the same site.
    let file = dir.path().join("more.json");
    std::fs::write(
        &file,
        r#"[{"id": "s2", "site": "Jd.Com", "type": "session", "secrets": {"cookies": [{"name": "token", "value": "v2"}]}}]"#,
    )
    .unwrap();
    ok(&credpool(
        dir.path(),
        &["import", file.to_str().unwrap(), "--format", "json"],
    ));
    let stats = json(&credpool(dir.path(), &["stats", "--json"]));
    assert_eq!(stats.as_array().unwrap().len(), 1, "{stats}");
    assert_eq!(stats[0]["total"], 2, "{stats}");

    let typo = credpool(dir.path(), &["acquire", "jd.cm", "--json"]);
    assert_eq!(typo.status.code(), Some(4), "{}", support::stderr(&typo));
    let got: Value = serde_json::from_slice(&typo.stdout).unwrap();
    assert_eq!(got["reason"], "unknown-site", "{got}");
    let line = refusal_line_with(&typo, 4);
    assert_eq!(
        line,
        "credpool: no credentials at all for site jd.cm: did you mean jd.com?; \
         add credentials for jd.cm (credpool add --site jd.cm)"
    );
    // A shortage of a known site is still 3.
    let filtered = credpool(dir.path(), &["acquire", "jd.com", "--type", "token"]);
    assert_eq!(
        filtered.status.code(),
        Some(3),
        "{}",
        support::stderr(&filtered)
    );

    // Through a server: the CLI exits 4 with the same line; the API says 404.
    let crawler = token(dir.path(), "default", "crawler", &[]);
    let server = serve(dir.path());
    let remote = server.run_cli(dir.path(), &crawler, &["acquire", "jd.cm"], "");
    assert_eq!(refusal_line_with(&remote, 4), line);
    let remote = server.run_cli(dir.path(), &crawler, &["acquire", "jd.cm", "--json"], "");
    let got: Value = serde_json::from_slice(&remote.stdout).unwrap();
    assert_eq!(got["reason"], "unknown-site", "{got}");
    let mut api = server.client(&crawler);
    let answer = api.post("/v1/acquire", &serde_json::json!({"site": "jd.cm"}));
    assert_eq!(answer.status, 404, "{}", answer.text());
    assert_eq!(answer.error_code(), "unknown_site");
    assert!(answer.error_message().contains("did you mean jd.com?"));
    assert_eq!(answer.json()["alternatives"][0], "did you mean jd.com?");
    let answer = api.post("/v1/acquire", &serde_json::json!({"site": "WWW.JD.COM"}));
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["status"], "success");
}

/// Item 5: a session with no cookie and no header is refused; the same
/// cookies imported twice are said and skipped, or replaced with
/// `--replace`; on the store and through a server.
#[test]
fn empty_sessions_are_refused_and_a_second_import_is_said() {
    let dir = initialised();
    let empty = credpool(
        dir.path(),
        &["add", "--site", "jd.com", "--type", "session"],
    );
    assert_eq!(empty.status.code(), Some(1));
    let said = support::stderr(&empty);
    assert!(said.contains("no cookie and no header"), "{said}");
    let empty_json = dir.path().join("empty.json");
    std::fs::write(&empty_json, r#"[{"site": "jd.com", "type": "session"}]"#).unwrap();
    let refused = credpool(
        dir.path(),
        &["import", empty_json.to_str().unwrap(), "--format", "json"],
    );
    assert_eq!(
        refused.status.code(),
        Some(1),
        "{}",
        support::stderr(&refused)
    );
    assert!(support::stderr(&refused).contains("no cookie and no header"));
    assert_eq!(
        json(&credpool(dir.path(), &["list", "--json"])),
        serde_json::json!([])
    );

    let file = dir.path().join("cookies.txt");
    std::fs::write(
        &file,
        "# Netscape HTTP Cookie File\n\
         .jd.com\tTRUE\t/\tFALSE\t4102444800\tsid\tv1\n\
         .jd.com\tTRUE\t/\tFALSE\t4102444800\tuid\tu1\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let import = |dir: &Path, extra: &[&str]| {
        let mut args = vec!["import", path, "--format", "cookies-txt"];
        args.extend_from_slice(extra);
        ok(&credpool(dir, &args))
    };
    import(dir.path(), &[]);
    let first = json(&credpool(dir.path(), &["list", "--json"]));
    let first_id = first[0]["id"].as_str().unwrap().to_string();
    let again = import(dir.path(), &[]);
    assert!(
        again.contains(&format!(
            "jd.com already has this session ({first_id}, the same cookies sid, uid): skipped"
        )),
        "{again}"
    );
    assert!(again.contains("0 credential(s) imported"), "{again}");
    assert_eq!(json(&credpool(dir.path(), &["list", "--json"])), first);
    // Other values under the same names (a newer export, or another
    // login): added beside the held one, which is named.
    std::fs::write(
        &file,
        "# Netscape HTTP Cookie File\n\
         .jd.com\tTRUE\t/\tFALSE\t4102444800\tsid\tv2\n\
         .jd.com\tTRUE\t/\tFALSE\t4102444800\tuid\tu2\n",
    )
    .unwrap();
    let beside = import(dir.path(), &["--json"]);
    let beside: Value = serde_json::from_str(&beside).unwrap();
    assert_eq!(
        beside["duplicates"][0]["action"], "added-beside",
        "{beside}"
    );
    let beside_id = beside["imported"][0]["id"].as_str().unwrap().to_string();
    ok(&credpool(dir.path(), &["remove", &beside_id]));
    // --replace: the file's session takes the held one's place.
    let replaced = import(dir.path(), &["--replace", "--json"]);
    let replaced: Value = serde_json::from_str(&replaced).unwrap();
    assert_eq!(replaced["duplicates"][0]["existing"], first_id.as_str());
    assert_eq!(replaced["duplicates"][0]["action"], "replaced");
    let new_id = replaced["imported"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(replaced["duplicates"][0]["added_as"], new_id.as_str());
    let list = json(&credpool(dir.path(), &["list", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let shown = json(&credpool(
        dir.path(),
        &["show", &new_id, "--reveal", "--json"],
    ));
    let shown = if shown.is_array() {
        shown[0].clone()
    } else {
        shown
    };
    assert_eq!(shown["secrets"]["cookies"][0]["value"], "v2", "{shown}");

    // Through a server: the same answers.
    let operator = token(dir.path(), "default", "operator", &[]);
    let server = serve(dir.path());
    let out = server.run_cli(
        dir.path(),
        &operator,
        &["add", "--site", "jd.com", "--type", "session"],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(support::stderr(&out).contains("no cookie and no header"));
    let again = ok(&server.run_cli(
        dir.path(),
        &operator,
        &["import", path, "--format", "cookies-txt"],
        "",
    ));
    assert!(
        again.contains(&format!("jd.com already has this session ({new_id}")),
        "{again}"
    );
    let replaced = ok(&server.run_cli(
        dir.path(),
        &operator,
        &["import", path, "--format", "cookies-txt", "--replace"],
        "",
    ));
    assert!(
        replaced.contains(&format!("line 2: {new_id} replaced by ")),
        "{replaced}"
    );
}
