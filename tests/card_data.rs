//! Issue 13, section 4: the card's data and settings, through the built
//! binary on real data directories: the card's fields on `add` (secrets on
//! stdin), `show` and `list` printing the non-secret ones, a Fernet-style
//! key, the card's spellings and configuration keys, and the `[CRED]` lines
//! with their fields named. No new secret reaches the data directory in
//! plain text or any output but a lease's.

use crate::support;

use base64::Engine as _;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use support::fixtures::{assert_no_leak, encodings};
use support::loopback::{reply, serve};
use support::{canary, credpool, initialised, json, ok, run_credpool, stderr};

/// The one view `show --json` prints.
fn show(dir: &Path, id: &str) -> Value {
    let v = json(&credpool(dir, &["show", id, "--json"]));
    if v.is_array() { v[0].clone() } else { v }
}

/// Every file under `dir`, as text (lossy), for leak scans.
fn files_text(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(String::from_utf8_lossy(&std::fs::read(&p).unwrap()).to_string());
            }
        }
    }
    assert!(!out.is_empty(), "the data directory has files");
    out
}

/// Fails if any form of any secret is in the data directory or the texts.
fn assert_nowhere(dir: &Path, texts: &[String], secrets: &[&str]) {
    let files = files_text(&dir.join("data"));
    let all: Vec<&str> = files
        .iter()
        .chain(texts.iter())
        .map(String::as_str)
        .collect();
    for s in secrets {
        let forms = encodings(s);
        let forms: Vec<&str> = forms.iter().map(String::as_str).collect();
        assert_no_leak(&all, &forms);
    }
}

/// A base32 TOTP seed made of a canary (letters only).
fn seed_canary() -> String {
    canary("")
        .bytes()
        .map(|b| (b'A' + b % 26) as char)
        .collect()
}

/// A JWT whose `exp` is `exp` seconds; its signature is a canary.
fn jwt(exp: i64) -> String {
    let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.{}",
        enc(r#"{"alg":"RS256","typ":"JWT"}"#),
        enc(&format!(r#"{{"sub":"u-1","exp":{exp}}}"#)),
        canary("sig")
    )
}

fn texts(outs: &[&Output]) -> Vec<String> {
    outs.iter()
        .flat_map(|o| [String::from_utf8_lossy(&o.stdout).to_string(), stderr(o)])
        .collect()
}

#[test]
fn add_keeps_the_cards_fields_and_show_and_list_print_the_non_secret_ones() {
    let dir = initialised();
    let d = dir.path();
    let (refresh, client_secret) = (canary("rt"), canary("cs"));
    let access = jwt(1_900_000_000);
    let token_in = format!(
        "# a comment\naccess_token={access}\nrefresh_token={refresh}\nclient_secret={client_secret}\n"
    );
    let add_token = run_credpool(
        d,
        &[
            "add",
            "--site",
            "jd.com",
            "--type",
            "token",
            "--id",
            "t1",
            "--secrets-stdin",
            "--label",
            "proxy=p1",
            "--label",
            "region=cn-north",
            "--scope",
            "read write",
            "--scope",
            "orders",
            "--source-account",
            "acct-1",
            "--log-level",
            "debug",
        ],
        &token_in,
        &[],
    );
    ok(&add_token);
    let t = show(d, "t1");
    assert_eq!(t["token_type"], "Bearer", "the card's default");
    assert_eq!(
        t["expires_at"], "2030-03-17T17:46:40Z",
        "from the JWT's exp: {t}"
    );
    assert_eq!(
        t["labels"],
        serde_json::json!({"proxy": "p1", "region": "cn-north"})
    );
    assert_eq!(t["source_account"], "acct-1");
    assert_eq!(t["scope"], serde_json::json!(["read", "write", "orders"]));
    assert_eq!(t["two_factor"], false);
    let fields = t["secret_fields"].to_string();
    for f in ["access-token", "refresh-token", "secret-key"] {
        assert!(fields.contains(f), "{f} in {fields}");
    }

    // One secret alone: its flag reads the whole of stdin.
    let only_refresh = canary("rt2");
    ok(&run_credpool(
        d,
        &[
            "add",
            "--site",
            "jd.com",
            "--type",
            "token",
            "--id",
            "t2",
            "--token-type",
            "DPoP",
            "--refresh-token-stdin",
        ],
        &format!("{only_refresh}\n"),
        &[],
    ));
    let t2 = show(d, "t2");
    assert_eq!(t2["token_type"], "DPoP");
    assert_eq!(t2["expires_at"], Value::Null, "no token, no expiry");
    assert_eq!(t2["secret_fields"], serde_json::json!(["refresh-token"]));

    // A session with local storage (values secret) and a user agent.
    let (storage, sid) = (canary("ls"), canary("sid"));
    ok(&run_credpool(
        d,
        &[
            "add",
            "--site",
            "jd.com",
            "--type",
            "session",
            "--id",
            "s1",
            "--secrets-stdin",
            "--user-agent",
            "Mozilla/5.0 (X11; Linux x86_64)",
            "--source-account",
            "acct-1",
        ],
        &format!("local_storage.auth_state={storage}\ncookie.sid={sid}\n"),
        &[],
    ));
    let s = show(d, "s1");
    assert_eq!(
        s["local_storage"],
        serde_json::json!([{"name": "auth_state", "value": "***"}])
    );
    assert_eq!(
        s["cookies"],
        serde_json::json!([{"name": "sid", "value": "***"}])
    );
    assert_eq!(s["user_agent"], "Mozilla/5.0 (X11; Linux x86_64)");

    // A device, and an account whose TOTP seed turns two-factor on.
    ok(&credpool(
        d,
        &[
            "add",
            "--site",
            "jd.com",
            "--type",
            "device",
            "--id",
            "d1",
            "--device-id",
            "dev-42",
            "--fingerprint",
            "fp-7",
            "--user-agent",
            "okhttp/4.12",
        ],
    ));
    let dv = show(d, "d1");
    assert_eq!(
        (&dv["device_id"], &dv["fingerprint"], &dv["user_agent"]),
        (&"dev-42".into(), &"fp-7".into(), &"okhttp/4.12".into())
    );
    let (password, seed) = (canary("pw"), seed_canary());
    ok(&run_credpool(
        d,
        &[
            "add",
            "--site",
            "jd.com",
            "--type",
            "account",
            "--id",
            "a1",
            "--username",
            "alice_shopper",
            "--secrets-stdin",
        ],
        &format!("password={password}\ntotp_seed={seed}\n"),
        &[],
    ));
    let a = show(d, "a1");
    assert_eq!(a["two_factor"], true);
    assert_eq!(
        a["secret_fields"],
        serde_json::json!(["password", "totp-seed"])
    );

    // `list` prints labels, source account, scope and the names.
    let list = credpool(d, &["list"]);
    let table = ok(&list);
    let row = |id: &str| {
        table
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} in {table}"))
            .to_string()
    };
    let t1 = row("t1");
    for part in [
        "labels: proxy=p1 region=cn-north",
        "from=acct-1",
        "scope=read write orders",
        "token_type=Bearer",
    ] {
        assert!(t1.contains(part), "{part:?} in {t1}");
    }
    assert!(
        row("s1").contains("local_storage: auth_state=***"),
        "{table}"
    );
    assert!(row("d1").contains("device_id=dev-42"), "{table}");
    assert!(row("a1").contains("two-factor"), "{table}");
    let list_json = credpool(d, &["list", "--json"]);
    let views = json(&list_json);
    assert_eq!(views.as_array().unwrap().len(), 5);

    // The crawler gets the local storage with the lease: it is the session.
    let got = json(&credpool(
        d,
        &["acquire", "jd.com", "--type", "session", "--json"],
    ));
    assert_eq!(
        got["lease"]["secrets"]["local_storage"],
        serde_json::json!([{"name": "auth_state", "value": storage}])
    );

    // Nothing secret anywhere else: not the store, not an answer, not a log.
    let shows: Vec<Output> = ["t1", "t2", "s1", "d1", "a1"]
        .iter()
        .map(|id| credpool(d, &["show", id, "--json"]))
        .collect();
    let stats = credpool(d, &["stats", "--json"]);
    let mut outs: Vec<&Output> = vec![&add_token, &list, &list_json, &stats];
    outs.extend(shows.iter());
    assert_nowhere(
        d,
        &texts(&outs),
        &[
            &refresh,
            &client_secret,
            &access,
            &only_refresh,
            &storage,
            &sid,
            &password,
            &seed,
        ],
    );
}

#[test]
fn bad_secret_input_is_refused_naming_the_line_never_the_value() {
    let dir = initialised();
    let d = dir.path();
    let secret = canary("v");
    let cases: [(&[&str], String, &str); 5] = [
        (
            &["--secrets-stdin"],
            format!("password={secret}\nbogus={secret}\n"),
            "line 2: unknown name \"bogus\"",
        ),
        (
            &["--secrets-stdin"],
            format!("refresh_token={secret}\nrefresh_token={secret}x\n"),
            "refresh_token is given twice",
        ),
        (
            &["--secrets-stdin"],
            format!("local_storage={secret}\n"),
            "local_storage needs a name",
        ),
        (
            &["--totp-seed-stdin"],
            format!("{secret}!\n"),
            "invalid TOTP seed: not base32",
        ),
        (
            &["--refresh-token-stdin", "--client-secret-stdin"],
            format!("{secret}\n"),
            "--secrets-stdin",
        ),
    ];
    for (flags, input, said) in cases {
        let mut args = vec!["add", "--site", "jd.com", "--type", "token"];
        args.extend_from_slice(flags);
        let out = run_credpool(d, &args, &input, &[]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains(said), "{said:?} in {}", stderr(&out));
        assert_no_leak(&[&stderr(&out)], &[&secret]);
    }
    assert_eq!(
        json(&credpool(d, &["list", "--json"])),
        serde_json::json!([])
    );
}

#[test]
fn a_fernet_key_in_the_environment_opens_the_store_and_another_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 32 bytes whose URL-safe base64 holds '-' and '_' (and padding), as
    // `Fernet.generate_key()` prints.
    let mut raw = [0u8; 32];
    for (i, b) in canary("k").bytes().rev().take(32).enumerate() {
        raw[i] = b;
    }
    // These three bytes are `+/+/` in standard base64, `-_-_` URL-safe.
    raw[..3].copy_from_slice(&[0xfb, 0xff, 0xbf]);
    let key = base64::engine::general_purpose::URL_SAFE.encode(raw);
    assert!(key.starts_with("-_-_"), "{key}");
    assert!(key.ends_with('='));
    let env = [("CREDENTIAL_ENCRYPTION_KEY", key.as_str())];
    // No `init`: the key comes from the environment, not a key file.
    std::fs::create_dir(d.join("data")).unwrap();
    let password = canary("pw");
    let add = run_credpool(
        d,
        &[
            "add",
            "--site",
            "jd.com",
            "--type",
            "account",
            "--id",
            "a1",
            "--password-stdin",
        ],
        &password,
        &env,
    );
    ok(&add);
    // Another process with the same key reads it back.
    let list = run_credpool(d, &["list", "--json"], "", &env);
    assert_eq!(json(&list)[0]["id"], "a1");
    let shown = json(&run_credpool(
        d,
        &["show", "a1", "--reveal", "--json"],
        "",
        &env,
    ));
    let shown = if shown.is_array() {
        shown[0].clone()
    } else {
        shown
    };
    assert_eq!(shown["secrets"]["password"], password.as_str());
    // Another key is refused, the store untouched.
    let other = base64::engine::general_purpose::URL_SAFE.encode([9u8; 32]);
    let wrong = run_credpool(
        d,
        &["show", "a1", "--reveal", "--json"],
        "",
        &[("CREDENTIAL_ENCRYPTION_KEY", other.as_str())],
    );
    assert_ne!(wrong.status.code(), Some(0), "{}", stderr(&wrong));
    // Under --json the refusal is the answer on stdout.
    let said: Value = serde_json::from_slice(&wrong.stdout).expect("the refusal as JSON");
    assert_eq!(said["error"]["code"], "key", "{said}");
    assert!(
        said["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("wrong key")),
        "{said}"
    );
    assert!(!String::from_utf8_lossy(&wrong.stdout).contains(&password));
    // Not base64 of 32 bytes: said, and the variable named.
    let bad = run_credpool(
        d,
        &["list"],
        "",
        &[("CREDENTIAL_ENCRYPTION_KEY", "c2hvcnQ=")],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("CREDENTIAL_ENCRYPTION_KEY"),
        "{}",
        stderr(&bad)
    );
    assert!(
        !d.join("data/credpool.key").exists(),
        "no key file was made"
    );
    assert_nowhere(d, &texts(&[&add, &list, &bad]), &[&password, &key]);
}

/// The binary in `dir` with no `--data-dir` and no `CREDPOOL_DATA_DIR`:
/// the config file decides.
fn run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(support::credpool_bin())
        .current_dir(dir)
        .args(args)
        .env_remove("CREDPOOL_DATA_DIR")
        .env_remove("CREDPOOL_CONFIG")
        .env_remove("CREDENTIAL_ENCRYPTION_KEY")
        .env_remove("CREDPOOL_ADDR")
        .env_remove("CREDPOOL_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn the_cards_spellings_and_storage_path_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("credpool.toml"),
        "[pool]\nstorage_path = \"store\"\n\n[policy]\nallocation_strategy = \"round_robin\"\n",
    )
    .unwrap();
    ok(&run_in(d, &["init"]));
    assert!(
        d.join("store/credpool.key").exists(),
        "storage_path is the data dir"
    );
    assert!(!d.join("credentials").exists());
    for id in ["k1", "k2"] {
        ok(&run_in(
            d,
            &[
                "add",
                "--site",
                "api.example",
                "--type",
                "api_key",
                "--id",
                id,
            ],
        ));
    }
    let listed = run_in(d, &["list", "--type", "api_key", "--json"]);
    let listed: Value = serde_json::from_str(&ok(&listed)).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["type"], "api-key");
    // round_robin is read as round-robin (the guest's tests check the
    // order; a process here makes one pick): the policy takes it, and
    // refuses a misspelling by name.
    let a: Value =
        serde_json::from_str(&ok(&run_in(d, &["acquire", "api.example", "--json"]))).unwrap();
    assert_eq!(a["status"], "success");
    std::fs::write(
        d.join("credpool.toml"),
        "[pool]\nstorage_path = \"store\"\n\n[policy]\nallocation_strategy = \"round_robbin\"\n",
    )
    .unwrap();
    let refused = run_in(d, &["acquire", "api.example"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("allocation_strategy"),
        "{}",
        stderr(&refused)
    );
    // --data-dir still wins over the file.
    let elsewhere = d.join("elsewhere");
    ok(&run_in(
        d,
        &["--data-dir", elsewhere.to_str().unwrap(), "init"],
    ));
    assert!(elsewhere.join("credpool.key").exists());
    // A wrong value is refused by name.
    std::fs::write(d.join("credpool.toml"), "[pool]\nauto_refresh = \"yes\"\n").unwrap();
    let bad = run_in(d, &["list"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("line 2"), "{}", stderr(&bad));
}

/// A session of `jd.com` added through the CLI, expiring in `minutes`.
fn session_expiring_in(d: &Path, id: &str, minutes: i64) {
    let at = (chrono::Utc::now() + chrono::Duration::minutes(minutes))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    ok(&credpool(
        d,
        &[
            "add",
            "--site",
            "jd.com",
            "--type",
            "session",
            "--id",
            id,
            "--cookie",
            "sid=old",
            "--expires-at",
            &at,
        ],
    ));
}

#[test]
fn auto_refresh_off_starts_nothing_and_the_global_health_check_interval_applies() {
    let site = serve(|r| match r.path.as_str() {
        "/me" => reply(200, &[], "<a href=/logout>Sign out</a>"),
        _ => reply(
            200,
            &[("Set-Cookie", "sid=new; Max-Age=86400; Path=/")],
            "ok",
        ),
    });
    let sites = format!(
        "[sites.\"jd.com\"]\nmethod = \"cookie-visit\"\nrefresh_url = \"{}\"\n\
         check_url = \"{}\"\nrefresh_before_expire = \"1h\"\n",
        site.url("/home"),
        site.url("/me")
    );
    let dir = initialised();
    let d = dir.path();
    std::fs::write(
        d.join("credpool.toml"),
        format!("[pool]\nauto_refresh = false\nhealth_check_interval = 1\n\n{sites}"),
    )
    .unwrap();
    // Due for a refresh (30 minutes left, inside the hour's lead).
    session_expiring_in(d, "s1", 30);
    std::thread::sleep(std::time::Duration::from_millis(1_200));
    let summary = json(&credpool(d, &["tick", "--json"]));
    assert!(
        site.hits("/home").is_empty(),
        "no refresh with auto_refresh off"
    );
    // The global interval (1 s here, 1 h by default) checked the session.
    assert_eq!(site.hits("/me").len(), 1, "{summary}");
    assert_eq!(
        summary["refreshes_started"], 1,
        "the health check: {summary}"
    );

    // The card's default: on, and checks hourly.
    std::fs::write(d.join("credpool.toml"), &sites).unwrap();
    session_expiring_in(d, "s2", 30);
    ok(&credpool(d, &["tick"]));
    assert_eq!(site.hits("/home").len(), 2, "both refreshed");
    assert_eq!(
        site.hits("/me").len(),
        1,
        "not checked again within the hour"
    );
}

/// `[CRED]` lines in stderr at `--log-level info`.
fn cred_lines(out: &Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| l.contains("[CRED]"))
        .map(str::to_string)
        .collect()
}

fn line_with<'a>(lines: &'a [String], parts: &[&str]) -> &'a str {
    lines
        .iter()
        .find(|l| parts.iter().all(|p| l.contains(p)))
        .unwrap_or_else(|| panic!("no [CRED] line with {parts:?} in {lines:#?}"))
}

#[test]
fn the_cards_cred_lines_name_their_fields() {
    // A block: its reason and HTTP status.
    let dir = initialised();
    let d = dir.path();
    session_expiring_in(d, "s1", 24 * 60);
    let got = json(&credpool(d, &["acquire", "jd.com", "--json"]));
    let lease = got["lease"]["id"].as_str().unwrap();
    let report = credpool(
        d,
        &[
            "report",
            lease,
            "blocked",
            "--status",
            "403",
            "--log-level",
            "info",
        ],
    );
    ok(&report);
    let lines = cred_lines(&report);
    line_with(
        &lines,
        &[
            "cred.blocked",
            "id=s1",
            "to=suspended",
            "reason=blocked",
            "http_status=403",
            "cooldown=",
        ],
    );

    // A session about to expire, and its new expiry after the refresh.
    let home = serve(|_| {
        reply(
            200,
            &[("Set-Cookie", "sid=renewed; Max-Age=86400; Path=/")],
            "ok",
        )
    });
    let dir = initialised();
    let d = dir.path();
    std::fs::write(
        d.join("credpool.toml"),
        format!(
            "[sites.\"jd.com\"]\nmethod = \"cookie-visit\"\nrefresh_url = \"{}\"\n\
             refresh_before_expire = \"1h\"\n",
            home.url("/home")
        ),
    )
    .unwrap();
    session_expiring_in(d, "s2", 30);
    let tick = credpool(d, &["tick", "--log-level", "info"]);
    ok(&tick);
    let lines = cred_lines(&tick);
    let expiring = line_with(&lines, &["cred.expiring", "id=s2", "method=cookie-visit"]);
    let secs: i64 = expiring
        .split("expires_in=")
        .nth(1)
        .and_then(|r| r.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("expires_in in {expiring}"));
    assert!((1700..=1800).contains(&secs), "{expiring}");
    let result = line_with(
        &lines,
        &["refresh.result", "id=s2", "success=true", "new_expires="],
    );
    let new_exp = show(d, "s2")["expires_at"].as_str().unwrap().to_string();
    assert!(
        result.contains(&format!("new_expires={}", &new_exp[..19])),
        "{result} vs {new_exp}"
    );

    // Who took a challenge: the host from a TOTP seed, or a person.
    let login = serve(|r| match r.path.as_str() {
        "/login" if r.form().get("user").map(String::as_str) == Some("totp-user") => {
            reply(200, &[], "Enter your authenticator code")
        }
        "/login" => reply(200, &[], "We sent a code to your phone"),
        _ => reply(200, &[("Set-Cookie", "sid=in; Path=/")], "welcome"),
    });
    let dir = initialised();
    let d = dir.path();
    std::fs::write(
        d.join("credpool.toml"),
        format!(
            "[sites.\"jd.com\"]\nmethod = \"relogin\"\n{}",
            support::fixtures::login_toml("jd.com", &login)
        ),
    )
    .unwrap();
    let (password, seed) = (canary("pw"), seed_canary());
    for (id, user, stdin) in [
        (
            "a-totp",
            "totp-user",
            format!("password={password}\ntotp_seed={seed}\n"),
        ),
        ("a-sms", "sms-user", format!("password={password}\n")),
    ] {
        ok(&run_credpool(
            d,
            &[
                "add",
                "--site",
                "jd.com",
                "--type",
                "account",
                "--id",
                id,
                "--username",
                user,
                "--phone",
                "13800135678",
                "--secrets-stdin",
            ],
            &stdin,
            &[],
        ));
    }
    let tick = credpool(d, &["tick", "--log-level", "info"]);
    ok(&tick);
    let lines = cred_lines(&tick);
    line_with(
        &lines,
        &[
            "challenge handler",
            "credential=a-totp",
            "kind=two-factor",
            "handler=totp",
        ],
    );
    line_with(
        &lines,
        &[
            "challenge handler",
            "credential=a-sms",
            "kind=sms-code",
            "handler=person",
        ],
    );
    assert_nowhere(d, &texts(&[&tick]), &[&password, &seed]);
}

#[test]
fn add_through_a_server_keeps_the_cards_fields() {
    use support::server::{Served, token};
    let dir = initialised();
    let d = dir.path();
    let operator = token(d, "default", "operator", &[]);
    let server = Served::start_traced(d, &["--listen", "127.0.0.1:0", "--interval-ms", "200"]);
    let (refresh, storage) = (canary("rt"), canary("ls"));
    let added = server.run_cli(
        d,
        &operator,
        &[
            "add",
            "--site",
            "jd.com",
            "--type",
            "session",
            "--id",
            "s1",
            "--secrets-stdin",
            "--label",
            "proxy=p1",
            "--source-account",
            "acct-1",
            "--user-agent",
            "UA/1",
            "--json",
        ],
        &format!("local_storage.auth={storage}\nrefresh_token={refresh}\n"),
    );
    let v: Value = serde_json::from_str(&ok(&added)).unwrap();
    assert_eq!(v["labels"], serde_json::json!({"proxy": "p1"}));
    assert_eq!(v["source_account"], "acct-1");
    assert_eq!(v["user_agent"], "UA/1");
    assert_eq!(
        v["local_storage"],
        serde_json::json!([{"name": "auth", "value": "***"}])
    );
    let (_, log) = server.stop();
    // The local store has what the server stored.
    let s = show(d, "s1");
    assert_eq!(s["secret_fields"], serde_json::json!(["refresh-token"]));
    assert_eq!(s["labels"], serde_json::json!({"proxy": "p1"}));
    assert_eq!(s["source_account"], "acct-1");
    assert_eq!(s["user_agent"], "UA/1");
    assert_nowhere(d, &[log, stderr(&added)], &[&refresh, &storage]);
}

#[test]
fn export_and_import_carry_the_cards_fields() {
    let dir = initialised();
    let d = dir.path();
    let file = d.join("in.json");
    // The card's spellings: `api_key`-style type names and a
    // `local_storage` dict, as its dataclasses hold them.
    std::fs::write(
        &file,
        r#"[{"id": "s1", "site": "jd.com", "type": "session", "user_agent": "UA/2",
             "device_id": "dev-1", "fingerprint": "fp-1", "source_account": "a1",
             "secrets": {"local_storage": {"auth": "ls-value"}}},
            {"id": "t1", "site": "jd.com", "type": "token", "token_type": "MAC",
             "token_scope": ["read"], "secrets": {"access_token": "at", "refresh_token": "rt"}},
            {"id": "a1", "site": "jd.com", "type": "account", "two_factor": true,
             "secrets": {"password": "pw"}},
            {"id": "k1", "site": "jd.com", "type": "api_key", "secrets": {"api_key": "k"}}]"#,
    )
    .unwrap();
    ok(&credpool(
        d,
        &["import", file.to_str().unwrap(), "--format", "json"],
    ));
    let export = |dir: &Path, id: &str| {
        ok(&credpool(
            dir,
            &["export", id, "--format", "json", "--reveal"],
        ))
    };
    let by_id = |id: &str| -> Value {
        let v: Value = serde_json::from_str(&export(d, id)).unwrap();
        v[0].clone()
    };
    let s = by_id("s1");
    assert_eq!(s["user_agent"], "UA/2");
    assert_eq!(s["source_account"], "a1");
    assert_eq!(by_id("t1")["token_scope"], serde_json::json!(["read"]));
    assert_eq!(
        (&s["device_id"], &s["fingerprint"]),
        (&"dev-1".into(), &"fp-1".into())
    );
    assert_eq!(
        s["secrets"]["local_storage"],
        serde_json::json!([{"name": "auth", "value": "ls-value"}])
    );
    assert_eq!(by_id("t1")["token_type"], "MAC");
    assert_eq!(by_id("a1")["two_factor"], true);
    assert_eq!(by_id("k1")["type"], "api-key");
    // Into a second store and out again: the same document.
    let other = initialised();
    for id in ["s1", "t1", "a1", "k1"] {
        let exported = export(d, id);
        let again_in = other.path().join(format!("{id}.json"));
        std::fs::write(&again_in, &exported).unwrap();
        ok(&credpool(
            other.path(),
            &["import", again_in.to_str().unwrap(), "--format", "json"],
        ));
        assert_eq!(export(other.path(), id), exported, "{id}");
    }
}
