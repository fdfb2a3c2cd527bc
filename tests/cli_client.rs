//! The built `credpool` as a client of a running `credpool serve`
//! (`CREDPOOL_ADDR`, `CREDPOOL_TOKEN`): the same output, `--json` shapes
//! and exit codes as on a local store; refusals said clearly; and, without
//! `CREDPOOL_ADDR`, a store held by the server says how to reach it.

use crate::support;
use crate::support::json;

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;
use support::server::{Served, token};
use support::{credpool, initialised, ok, run_credpool, stderr};

/// `credpool serve` on a free loopback port over `dir/data`.
fn start(dir: &Path) -> Served {
    Served::start(dir, &["--listen", "127.0.0.1:0", "--interval-ms", "200"])
}

/// Every key path in a JSON value (arrays as `[]`, their items merged).
fn keys(v: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, at: &str, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(o) => {
                for (k, x) in o {
                    let p = format!("{at}.{k}");
                    out.insert(p.clone());
                    walk(x, &p, out);
                }
            }
            Value::Array(a) => {
                for x in a {
                    walk(x, &format!("{at}[]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(v, "", &mut out);
    out
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

/// One step run on both sides: the local store and the server.
struct Both<'a> {
    local: &'a Path,
    server: &'a Served,
    dir: &'a Path,
}

impl Both<'_> {
    fn run(&self, token: &str, args: &[&str]) -> (Output, Output) {
        (
            credpool(self.local, args),
            self.server.run_cli(self.dir, token, args, ""),
        )
    }

    /// Both succeed with JSON of the same shape; returns the server's.
    fn same_json(&self, token: &str, args: &[&str]) -> (Value, Value) {
        let (l, r) = self.run(token, args);
        let (l, r) = (json(&l), json(&r));
        assert_eq!(keys(&l), keys(&r), "{args:?}:\nlocal  {l}\nserver {r}");
        (l, r)
    }

    /// Both succeed with the very same text.
    fn same_text(&self, token: &str, args: &[&str]) -> String {
        let (l, r) = self.run(token, args);
        let (l, r) = (ok(&l), ok(&r));
        assert_eq!(l, r, "{args:?}");
        r
    }
}

#[test]
fn the_client_prints_what_the_local_command_prints() {
    let local = initialised();
    let dir = initialised();
    let operator = token(dir.path(), "default", "operator", &[]);
    let crawler = token(dir.path(), "default", "crawler", &[]);
    let server = start(dir.path());
    let both = Both {
        local: local.path(),
        server: &server,
        dir: dir.path(),
    };

    let add = [
        "add",
        "--site",
        "jd.com",
        "--type",
        "session",
        "--id",
        "s1",
        "--cookie",
        "sid=abc=def",
        "--header",
        "Authorization: Bearer tok.en",
        "--username",
        "alice_shopper",
        "--tag",
        "mobile",
        "--json",
    ];
    let (_, added) = both.same_json(&operator, &add);
    assert_eq!(added["id"], "s1");
    // The shape `show --json` prints.
    assert_eq!(
        added["cookies"],
        serde_json::json!([{"name": "sid", "value": "***"}])
    );
    let added = both.same_text(
        &operator,
        &[
            "add", "--site", "x.com", "--type", "session", "--id", "x1", "--cookie", "k=v",
        ],
    );
    assert_eq!(added, "added x1 (session, x.com)\n");

    // Listing and showing: same JSON shape, and the same table.
    let (_, listed) = both.same_json(&operator, &["list", "--json"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    assert_eq!(listed[0]["cookies"][0]["value"], "***");
    let table = both.same_text(&operator, &["list"]);
    assert!(table.contains("cookies: sid=***"), "{table}");
    both.same_json(&operator, &["list", "--level", "internal", "--json"]);
    both.same_json(&operator, &["show", "s1", "--json"]);
    both.same_text(&operator, &["show", "s1"]);
    // Stats of fresh pools: the same JSON shape and the same table.
    both.same_json(&operator, &["stats", "--json"]);
    both.same_text(&operator, &["stats"]);

    // A lease, with the credential's view in the JSON as locally.
    let (l, r) = both.run(&crawler, &["acquire", "jd.com", "--json"]);
    let (l, r) = (json(&l), json(&r));
    assert_eq!(keys(&l), keys(&r), "local {l}\nserver {r}");
    assert_eq!(r["status"], "success");
    assert_eq!(r["lease"]["credential"]["id"], "s1");
    assert_eq!(
        r["lease"]["credential"]["tags"],
        serde_json::json!(["mobile"])
    );
    assert_eq!(
        r["lease"]["secrets"]["cookies"],
        serde_json::json!([{"name": "sid", "value": "abc=def"}])
    );
    let leases = [
        l["lease"]["id"].as_str().unwrap().to_string(),
        r["lease"]["id"].as_str().unwrap().to_string(),
    ];

    // Nothing free: exit 3 and the same explanation.
    let (lb, rb) = both.run(&crawler, &["acquire", "jd.com"]);
    assert_eq!(code(&lb), Some(3), "{}", stderr(&lb));
    assert_eq!(code(&rb), Some(3), "{}", stderr(&rb));
    assert!(stderr(&rb).contains("no credential available for jd.com"));
    assert!(stderr(&rb).contains("all-leased"), "{}", stderr(&rb));
    let (lj, rj) = both.run(&crawler, &["acquire", "jd.com", "--json"]);
    assert_eq!((code(&lj), code(&rj)), (Some(3), Some(3)));
    let (lj, rj): (Value, Value) = (
        serde_json::from_slice(&lj.stdout).unwrap(),
        serde_json::from_slice(&rj.stdout).unwrap(),
    );
    assert_eq!(keys(&lj), keys(&rj), "local {lj}\nserver {rj}");
    assert_eq!(rj["status"], "no-available");

    // The report ends each side's own lease the same way.
    let report = |out: Output| -> Value { json(&out) };
    let lr = report(credpool(
        local.path(),
        &["report", &leases[0], "blocked", "--status", "403", "--json"],
    ));
    let rr = report(server.run_cli(
        dir.path(),
        &crawler,
        &["report", &leases[1], "blocked", "--status", "403", "--json"],
        "",
    ));
    assert_eq!(lr["status"], "suspended");
    assert_eq!(keys(&lr), keys(&rr));
    assert_eq!(
        (&rr["lease"], &rr["status"], &rr["health"]),
        (
            &Value::from(leases[1].clone()),
            &lr["status"],
            &lr["health"]
        )
    );
    // Reporting it twice (a client that lost the first answer): the server
    // answers as the first time, so a retry is safe.
    let again = json(&server.run_cli(
        dir.path(),
        &crawler,
        &["report", &leases[1], "blocked", "--status", "403", "--json"],
        "",
    ));
    assert_eq!(again["status"], rr["status"], "{again}");
    assert_eq!(again["repeat"], true, "{again}");
    // A lease never granted: the pool's own message, exit 1.
    let never = server.run_cli(
        dir.path(),
        &crawler,
        &["report", "l999999.0123456789abcdef", "success"],
        "",
    );
    assert_eq!(code(&never), Some(1));
    assert!(
        stderr(&never).contains("no open lease"),
        "{}",
        stderr(&never)
    );
    // A lease id that is not one is a usage error, before any request.
    let bad = server.run_cli(dir.path(), &crawler, &["release", "nonsense"], "");
    assert_eq!(code(&bad), Some(2), "{}", stderr(&bad));

    // Release: the credential is free again at once.
    let got = json(&server.run_cli(dir.path(), &crawler, &["acquire", "x.com", "--json"], ""));
    let lease = got["lease"]["id"].as_str().unwrap();
    let released = ok(&server.run_cli(dir.path(), &crawler, &["release", lease], ""));
    assert_eq!(released, format!("released {lease}\n"));
    ok(&server.run_cli(dir.path(), &crawler, &["acquire", "x.com"], ""));

    // Stats: the server counted it all (a local process counts only its
    // own calls); a site with nothing is the same error.
    let stats = json(&server.run_cli(
        dir.path(),
        &operator,
        &["stats", "--site", "jd.com", "--json"],
        "",
    ));
    assert_eq!(stats[0]["by_status"]["suspended"], 1);
    assert_eq!(stats[0]["failures"]["blocked"], 1);
    assert_eq!(stats[0]["granted"], 1);
    let (l, r) = both.run(&operator, &["stats", "--site", "nowhere.example"]);
    assert_eq!((code(&l), code(&r)), (Some(1), Some(1)));
    assert_eq!(stderr(&l), stderr(&r));

    // Import of our JSON: same output, same shape.
    let file = dir.path().join("import.json");
    std::fs::write(
        &file,
        r#"[{"id": "i1", "site": "y.com", "type": "session",
             "secrets": {"cookies": [{"name": "a", "value": "b"}]}}]"#,
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let imported = both.same_text(&operator, &["import", f, "--format", "json"]);
    assert_eq!(
        imported,
        "imported i1 (session, y.com, init)\n1 credential(s) imported from 1 cookie(s)\n"
    );
    std::fs::write(
        &file,
        r#"[{"id": "i2", "site": "y.com", "type": "session",
             "secrets": {"cookies": [{"name": "a", "value": "b"}]}}]"#,
    )
    .unwrap();
    both.same_json(&operator, &["import", f, "--format", "json", "--json"]);

    // Tickets: none open, said the same way.
    both.same_text(&operator, &["challenge", "list"]);
    let (_, tickets) = both.same_json(&operator, &["challenge", "list", "--json"]);
    assert_eq!(tickets, serde_json::json!([]));

    // Remove: gone on the server, and a second remove is the local error.
    assert_eq!(both.same_text(&operator, &["remove", "i1"]), "removed i1\n");
    let (l, r) = both.run(&operator, &["remove", "i1"]);
    assert_eq!((code(&l), code(&r)), (Some(1), Some(1)));
    assert_eq!(stderr(&l), stderr(&r));
    let log = server.log();
    for secret in ["abc=def", "tok.en"] {
        assert!(!log.contains(secret), "a secret in the server's log: {log}");
    }
}

#[test]
fn the_client_says_why_the_server_refused() {
    let dir = initialised();
    let crawler = token(dir.path(), "default", "crawler", &[]);
    let server = start(dir.path());
    let add = [
        "add", "--site", "jd.com", "--type", "session", "--cookie", "sid=v",
    ];

    let refused = server.run_cli(dir.path(), &crawler, &add, "");
    assert_eq!(code(&refused), Some(1), "{}", stderr(&refused));
    let msg = stderr(&refused);
    assert!(
        msg.contains("the token's role may not add credentials") && msg.contains("crawler"),
        "{msg}"
    );
    assert!(refused.stdout.is_empty());

    let wrong = "cpt_0000000000000000000000000000000000000000000000000000000000000000";
    for t in [wrong, "not-a-token"] {
        let out = server.run_cli(dir.path(), t, &["list"], "");
        assert_eq!(code(&out), Some(1), "{}", stderr(&out));
        let msg = stderr(&out);
        assert!(
            msg.contains("CREDPOOL_TOKEN is missing or not accepted"),
            "{msg}"
        );
        assert!(!msg.contains(t), "the token is not repeated: {msg}");
    }
    // No token at all.
    let out = run_credpool(
        dir.path(),
        &["stats"],
        "",
        &[("CREDPOOL_ADDR", &server.url(""))],
    );
    assert_eq!(code(&out), Some(1));
    assert!(
        stderr(&out).contains("CREDPOOL_TOKEN is missing or not accepted"),
        "{}",
        stderr(&out)
    );

    // A usage error is found before anything is sent: exit 2.
    let out = server.run_cli(dir.path(), &crawler, &["report", "l1.ab", "sideways"], "");
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));

    // No server there.
    let gone = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let out = run_credpool(
        dir.path(),
        &["list"],
        "",
        &[
            ("CREDPOOL_ADDR", &format!("http://{gone}")),
            ("CREDPOOL_TOKEN", &crawler),
        ],
    );
    assert_eq!(code(&out), Some(1));
    assert!(
        stderr(&out).contains(&format!("no credpool server at http://{gone}")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_store_held_by_the_server_says_how_to_reach_it() {
    let dir = initialised();
    let server = start(dir.path());
    let out = credpool(dir.path(), &["list"]);
    assert_eq!(code(&out), Some(1));
    let msg = stderr(&out);
    for part in [
        "is in use by another credpool process",
        "credpool serve",
        "CREDPOOL_ADDR=http://",
        "CREDPOOL_TOKEN=",
    ] {
        assert!(msg.contains(part), "{part:?} missing: {msg}");
    }
    // A command that needs the store itself says to stop the server.
    let out = credpool(dir.path(), &["rekey"]);
    assert_eq!(code(&out), Some(1));
    assert!(
        stderr(&out).contains("needs the store itself"),
        "{}",
        stderr(&out)
    );
    // An empty CREDPOOL_ADDR is unset: the local store, so the same message.
    let out = run_credpool(dir.path(), &["list"], "", &[("CREDPOOL_ADDR", "")]);
    assert_eq!(code(&out), Some(1));
    assert!(stderr(&out).contains("CREDPOOL_ADDR=http://"));
    drop(server);
}
