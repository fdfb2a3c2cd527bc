//! Issue 20 (security), one test per item: the key and client secrets stay
//! out of external commands, commands and what sites send are bounded,
//! imports cannot smuggle cookies.txt lines, files are private and plain
//! http is for loopback only. Real paths: the built `credpool`, the host's
//! refresher, child processes, HTTP servers on 127.0.0.1.

use crate::support;

use base64::Engine as _;
use credpool::backend::MemoryBackend;
use credpool::crypto::KeyRing;
use credpool::lifecycle::notifiers::read_ticket_book;
use credpool::lifecycle::sites::SiteConfig;
use credpool::lifecycle::{Refresher, RefresherOptions};
use credpool::vault::Vault;
use credpool::{ManualClock, PoolOptions, Secrets};
use credpool::{RefreshFailure, RefreshMethod, RefreshOutcome, RefreshRequest, RefreshResult};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::fixtures::*;
use support::loopback::*;
use support::{canary, credpool, initialised, ok, run_credpool, stderr};

const SITE: &str = "127.0.0.1";
const T0: i64 = 1_767_225_600_000;
const WAIT: Duration = Duration::from_secs(20);

fn wait_for(what: &str, f: &dyn Fn() -> bool) {
    let end = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

// ------------------------------------------------ 1. no key in children

#[test]
fn commands_under_credpool_run_get_neither_the_key_nor_a_client_secret() {
    let dir = tempfile::tempdir().unwrap();
    let bin = own_binary(dir.path());
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).unwrap();
    let key = base64::engine::general_purpose::STANDARD.encode(raw);
    let client_secret = canary("clientsecret");
    let data = dir.path().join("data");
    let envs = |name: &str| dir.path().join(format!("{name}.env"));
    let cmd = || {
        let mut c = std::process::Command::new(&bin);
        c.arg("--data-dir")
            .arg(&data)
            .arg("--config")
            .arg(dir.path().join("credpool.toml"))
            .env("CREDENTIAL_ENCRYPTION_KEY", &key)
            .env("CREDPOOL_TEST_CLIENT_SECRET", &client_secret)
            .env("CREDPOOL_TEST_PASSED", "passed-on-purpose");
        c
    };
    assert!(cmd().arg("init").status().unwrap().success());
    // The form site asks for a captcha, which the solver answers.
    let server = serve(|r| match r.path.as_str() {
        "/login" => reply(200, &[], "type the captcha"),
        "/captcha" => reply(200, &[("Set-Cookie", "sid=in; Path=/")], "welcome"),
        _ => reply(404, &[], ""),
    });
    let dump = |name: &str| {
        format!(
            "[\"sh\", \"-c\", \"env > '{}'; cat > /dev/null; {}\"]",
            envs(name).display(),
            match name {
                "solver" => "echo 4217",
                "login" => "echo '{\\\"challenge\\\":\\\"sms-code\\\"}'",
                _ => "true",
            }
        )
    };
    std::fs::write(
        dir.path().join("credpool.toml"),
        format!(
            r#"[notify]
command = {notify}
[sites."{SITE}"]
method = "relogin"
captcha_solver = {solver}
captcha_solver_env = ["CREDPOOL_TEST_PASSED"]
[sites."{SITE}".login]
url = "{login}"
success = {{ cookie = "sid" }}
[[sites."{SITE}".login.challenges]]
kind = "captcha-image"
detect = {{ body = ["captcha"] }}
submit_url = "{captcha}"
field = "captcha"
[sites."localhost"]
method = "relogin"
client_secret_env = "CREDPOOL_TEST_CLIENT_SECRET"
login_command = {login_cmd}
"#,
            notify = dump("notify"),
            solver = dump("solver"),
            login_cmd = dump("login"),
            login = server.url("/login"),
            captcha = server.url("/captcha"),
        ),
    )
    .unwrap();
    for site in [SITE, "localhost"] {
        let mut add = cmd()
            .args([
                "add",
                "--site",
                site,
                "--type",
                "account",
                "--username",
                "u1",
                "--password-stdin",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        add.stdin.take().unwrap().write_all(b"pw-1").unwrap();
        assert!(add.wait().unwrap().success());
    }
    let mut child = cmd()
        .args(["run", "--interval-ms", "50"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let all_written = || {
        ["notify", "solver", "login"]
            .iter()
            .all(|n| std::fs::read_to_string(envs(n)).is_ok_and(|t| t.contains("PATH=")))
    };
    let end = Instant::now() + WAIT;
    while !all_written() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    // The login command's challenge opened a ticket: its book is private.
    let book = data.join("tickets.json");
    let book_mode = std::fs::metadata(&book).map(|m| m.permissions().mode() & 0o777);
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success());
    assert!(all_written(), "every kind of command ran");
    for name in ["notify", "solver", "login"] {
        let env = std::fs::read_to_string(envs(name)).unwrap();
        assert_no_leak(&[&env], &[&key, &client_secret]);
        assert!(!env.contains("CREDENTIAL_ENCRYPTION_KEY"), "{name}: {env}");
        assert!(
            !env.contains("CREDPOOL_TEST_CLIENT_SECRET"),
            "{name}: {env}"
        );
        // Only the allowlist (and what the shell sets itself).
        assert_eq!(
            env.contains("CREDPOOL_TEST_PASSED=passed-on-purpose"),
            name == "solver",
            "{name}: {env}"
        );
    }
    assert_eq!(book_mode.ok(), Some(0o600), "tickets.json is private");
    assert_eq!(read_ticket_book(&book).len(), 1);
}

// -------------------------------------------- 2. commands are bounded

struct Rig {
    vault: Arc<Vault>,
    refresher: Arc<Refresher>,
    next: AtomicU64,
}

fn rig(site: SiteConfig) -> Rig {
    let vault = Arc::new(Vault::new(
        Arc::new(MemoryBackend::new()),
        Arc::new(KeyRing::ephemeral().unwrap()),
        "default",
    ));
    let mut o = RefresherOptions::new(BTreeMap::from([(SITE.to_string(), site)]));
    o.clock = Some(ManualClock::at(T0));
    let refresher = Refresher::new(vault.clone(), o).unwrap();
    Rig {
        vault,
        refresher,
        next: AtomicU64::new(1),
    }
}

impl Rig {
    fn run(&self, id: &str, method: RefreshMethod) -> RefreshResult {
        let request_id = self.next.fetch_add(1, Ordering::SeqCst);
        self.refresher
            .submit(RefreshRequest {
                request_id,
                credential_id: id.into(),
                site: SITE.into(),
                method,
                ticket_id: None,
            })
            .expect("queued");
        self.refresher.wait(request_id, WAIT).expect("a result")
    }
}

fn site(toml_text: &str) -> SiteConfig {
    let c =
        credpool::config::ConfigFile::parse(&format!("[sites.\"{SITE}\"]\n{toml_text}")).unwrap();
    c.sites[SITE].clone()
}

fn o(x: &RefreshOutcome) -> String {
    format!("{x:?}")
}

/// Whether a process is gone (or a zombie nobody reaps yet).
fn gone(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

fn account() -> Secrets {
    let mut s = Secrets::default();
    s.username = Some("u1".into());
    s.password = Some("pw".into());
    s
}

#[test]
fn a_flooding_or_hanging_login_command_is_cut_off_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild.pid");
    // Prints without end, and leaves a grandchild behind.
    let flood = format!(
        "sleep 300 & echo $! > '{}'; exec yes credpool-flood",
        pid_file.display()
    );
    let r = rig(site(&format!(
        "method = \"relogin\"\nlogin_command = [\"sh\", \"-c\", {flood:?}]\nlogin_timeout = \"60s\"\n"
    )));
    r.vault.put_secrets(SITE, "acct", &account()).unwrap();
    let started = Instant::now();
    assert_eq!(
        o(&r.run("acct", RefreshMethod::Relogin).outcome),
        o(&RefreshOutcome::Failed((RefreshFailure::Other, None))),
        "refused once past the cap, not read to the time limit"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_string();
    wait_for("the flood's grandchild to be killed", &|| gone(&pid));

    // A command that hangs: killed at its limit, with its children.
    let pid_file = dir.path().join("hang.pid");
    let hang = format!("sleep 300 & echo $! > '{}'; wait", pid_file.display());
    let r = rig(site(&format!(
        "method = \"relogin\"\nlogin_command = [\"sh\", \"-c\", {hang:?}]\nlogin_timeout = \"1s\"\n"
    )));
    r.vault.put_secrets(SITE, "acct", &account()).unwrap();
    assert_eq!(
        o(&r.run("acct", RefreshMethod::Relogin).outcome),
        o(&RefreshOutcome::Failed((RefreshFailure::Timeout, None)))
    );
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_string();
    wait_for("the hung command's child to be killed", &|| gone(&pid));

    // Exactly at the cap is still an answer; the limit is the cap.
    let exact = format!(
        "cat > /dev/null; printf '{{\"cookies\":[{{\"name\":\"sid\",\"value\":\"v\"}}]}}'; head -c {} /dev/zero | tr '\\0' ' '",
        credpool::lifecycle::command::MAX_OUTPUT - 40
    );
    let r = rig(site(&format!(
        "method = \"relogin\"\nlogin_command = [\"sh\", \"-c\", {exact:?}]\nlogin_timeout = \"30s\"\n"
    )));
    r.vault.put_secrets(SITE, "acct", &account()).unwrap();
    assert!(
        matches!(
            r.run("acct", RefreshMethod::Relogin).outcome,
            RefreshOutcome::Refreshed(_)
        ),
        "an answer within the cap is used"
    );
}

// ------------------------------------------ 3. what a site sends is bounded

#[test]
fn a_site_cannot_grow_a_jar_without_end_nor_store_bad_cookies() {
    let visit = Arc::new(AtomicUsize::new(0));
    let v = visit.clone();
    let big = "v".repeat(4000);
    let server = serve(move |_| {
        let k = v.fetch_add(1, Ordering::SeqCst);
        // 90 cookies of 4 KB with new names on every visit, and the bad ones.
        let mut headers: Vec<String> = (0..90)
            .map(|i| format!("c{k}x{i}={big}; Max-Age=86400; Path=/"))
            .collect();
        headers.push("bad name=1; Path=/".into());
        headers.push("tabbed=1; Path=/a\tb".into());
        headers.push("sec=1; Secure; Path=/".into());
        headers.push(format!("huge={}; Path=/", "h".repeat(5000)));
        headers.push("good=1; Path=/".into());
        let hs: Vec<(&str, &str)> = headers.iter().map(|h| ("Set-Cookie", h.as_str())).collect();
        reply(200, &hs, "ok")
    });
    let r = rig(site(&format!(
        "method = \"cookie-visit\"\nrefresh_url = \"{}\"\n",
        server.url("/home")
    )));
    let mut s = Secrets::default();
    s.cookies.push(("sid".into(), "s".into()));
    r.vault.put_secrets(SITE, "sess", &s).unwrap();
    for _ in 0..4 {
        let res = r.run("sess", RefreshMethod::CookieVisit);
        assert!(
            matches!(res.outcome, RefreshOutcome::Refreshed(_)),
            "{res:?}"
        );
    }
    let s = r.vault.get_secrets(SITE, "sess").unwrap().unwrap();
    let names: Vec<&str> = s.cookies.iter().map(|(n, _)| n.as_str()).collect();
    let bytes: usize = s.cookies.iter().map(|(n, v)| n.len() + v.len()).sum();
    use credpool::lifecycle::cookies::{MAX_JAR_BYTES, MAX_PER_DOMAIN};
    assert!(s.cookies.len() <= MAX_PER_DOMAIN, "{}", s.cookies.len());
    assert!(bytes <= MAX_JAR_BYTES, "{bytes}");
    // Not the 360 cookies (1.4 MB) sent: the newest kept, the oldest gone.
    assert!(names.contains(&"c3x89") && names.contains(&"good"));
    assert!(!names.contains(&"c0x0"));
    for bad in ["bad name", "tabbed", "sec", "huge"] {
        assert!(!names.contains(&bad), "{bad} was stored");
    }
}

#[test]
fn token_lifetimes_of_zero_negative_or_huge_are_clamped() {
    for (expires_in, want_s) in [
        ("0", 60i64),
        ("-30", 60),
        ("9223372036854775807", 366 * 86_400),
        ("3600", 3600),
    ] {
        let body = format!(
            "{{\"access_token\":\"at\",\"refresh_token\":\"rt2\",\"expires_in\":{expires_in}}}"
        );
        let server = serve(move |_| reply(200, &[("Content-Type", "application/json")], &body));
        let r = rig(site(&format!(
            "method = \"oauth-refresh\"\ntoken_url = \"{}\"\nclient_id = \"cid\"\n",
            server.url("/token")
        )));
        let mut s = Secrets::default();
        s.refresh_token = Some("rt1".into());
        r.vault.put_secrets(SITE, "tok", &s).unwrap();
        assert_eq!(
            o(&r.run("tok", RefreshMethod::OauthRefresh).outcome),
            o(&RefreshOutcome::Refreshed(Some(T0 + want_s * 1000))),
            "expires_in {expires_in}"
        );
    }
}

// ------------------------------------ 4. imports cannot smuggle lines

#[test]
fn a_newline_in_an_imported_path_never_becomes_a_cookies_txt_line() {
    let dir = initialised();
    let file = dir.path().join("cookies.json");
    let evil = "/\n.evil.com\tTRUE\t/\tFALSE\t0\tstolen\tyes";
    let json = serde_json::json!([
        {"name": "sid", "value": "s1", "domain": ".jd.com", "path": evil},
        {"name": "ok", "value": "o1", "domain": ".jd.com", "path": "/"}
    ]);
    std::fs::write(&file, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    let f = file.to_str().unwrap();
    let out = credpool(
        dir.path(),
        &["import", f, "--format", "cookie-json", "--site", "jd.com"],
    );
    assert_eq!(out.status.code(), Some(1), "refused: {}", stderr(&out));
    assert!(stderr(&out).contains("path"), "{}", stderr(&out));
    // With --skip-invalid the good cookie comes in alone.
    let out = credpool(
        dir.path(),
        &[
            "import",
            f,
            "--format",
            "cookie-json",
            "--site",
            "jd.com",
            "--skip-invalid",
            "--json",
        ],
    );
    let text = ok(&out);
    let imported: serde_json::Value = serde_json::from_str(&text).unwrap();
    let id = imported["imported"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{text}"))
        .to_string();
    let txt = ok(&credpool(
        dir.path(),
        &["export", &id, "--format", "cookies-txt", "--reveal"],
    ));
    assert!(txt.contains("\tok\to1"), "{txt}");
    assert!(
        !txt.lines()
            .any(|l| l.contains("evil.com") || l.contains("stolen")),
        "{txt}"
    );
    // The library refuses such a path too (every way in goes through it).
    let mut new = credpool::NewCredential::new("jd.com", credpool::CredentialKind::Session);
    new.secrets.cookies.push(("sid".into(), "s".into()));
    new.secrets
        .cookie_attrs
        .push(credpool::secrets::CookieAttrs {
            name: "sid".into(),
            domain: "jd.com".into(),
            host_only: false,
            path: evil.into(),
            secure: false,
            http_only: false,
            expires: None,
        });
    let (pool, _, _) = support::memory_pool();
    assert!(pool.add(new).is_err());
}

// ------------------------------------------ 5. files and transports

#[test]
fn data_files_are_private_and_open_data_directories_are_tightened() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    ok(&credpool(dir.path(), &["init"]));
    assert_eq!(mode(&data), 0o700, "init tightens an open data directory");

    // Opening a pool on an open one makes it private too.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    drop(credpool::Pool::open(PoolOptions::on_disk(&data)).unwrap());
    assert_eq!(
        mode(&data),
        0o700,
        "Pool::open tightens an open data directory"
    );
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o750)).unwrap();
    ok(&credpool(dir.path(), &["list"]));
    assert_eq!(mode(&data), 0o700, "and so does every command");

    // A sealed answer is written 0600 (for a ticket in the book).
    std::fs::write(
        data.join("tickets.json"),
        r#"[{"id":"t-1","kind":"sms-code","credential_id":"c1","site":"jd.com"}]"#,
    )
    .unwrap();
    let out = run_credpool(
        dir.path(),
        &["challenge", "answer", "t-1", "482913"],
        "",
        &[],
    );
    let sealed = data.join("answers").join("t-1.sealed");
    assert!(sealed.exists(), "{}", stderr(&out));
    assert_eq!(mode(&sealed), 0o600);
}

#[test]
fn plain_http_is_refused_except_loopback_or_when_allowed() {
    let load = |extra: &str, url: &str| {
        credpool::config::ConfigFile::parse(&format!(
            "[sites.\"shop.example\"]\nmethod = \"oauth-refresh\"\ntoken_url = \"{url}\"\nclient_id = \"c\"\n{extra}"
        ))
    };
    let err = load("", "http://auth.shop.example/token").expect_err("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("token_url") && msg.contains("allow_insecure_http"),
        "{msg}"
    );
    assert!(load("", "https://auth.shop.example/token").is_ok());
    assert!(load("", "http://127.0.0.1:8080/token").is_ok());
    assert!(load("", "http://[::1]:8080/token").is_ok());
    assert!(load("", "http://localhost/token").is_ok());
    assert!(
        load(
            "allow_insecure_http = true\n",
            "http://auth.shop.example/token"
        )
        .is_ok()
    );
    // The binary says so too.
    let dir = initialised();
    std::fs::write(
        dir.path().join("credpool.toml"),
        "[sites.\"shop.example\"]\nmethod = \"relogin\"\n[sites.\"shop.example\".login]\nurl = \"http://shop.example/login\"\n",
    )
    .unwrap();
    let out = credpool(dir.path(), &["run", "--ticks", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("login.url"), "{}", stderr(&out));
}
