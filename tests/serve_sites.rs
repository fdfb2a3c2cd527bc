//! `credpool simulate --serve-sites` end to end: the built binary serves
//! the simulated shop on loopback and loads its accounts into a store; a
//! `credpool serve` on that store logs them in through the site and leases
//! them over HTTP; requests made with the leases reach the site; on SIGINT
//! the site's own records count exactly the pages it served and the
//! requests that used one session twice at once.

use crate::support::http::Client;
use crate::support::{credpool, credpool_bin, initialised, ok, run_credpool};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// A running `credpool simulate --serve-sites`; killed on drop.
struct Sites {
    child: Child,
    lines: Receiver<String>,
    ready: Value,
}

impl Sites {
    fn start(dir: &Path, extra: &[&str]) -> Sites {
        let mut child = Command::new(credpool_bin())
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--config")
            .arg(dir.join("credpool.toml"))
            .args(["simulate", "--serve-sites"])
            .args(extra)
            .env_remove("CREDENTIAL_ENCRYPTION_KEY")
            .env_remove("CREDPOOL_ADDR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start credpool simulate --serve-sites");
        let lines = read_lines(child.stdout.take().expect("stdout"));
        let first = lines.recv_timeout(Duration::from_secs(60));
        let Ok(first) = first else {
            let _ = child.kill();
            let mut err = String::new();
            let _ = child
                .stderr
                .take()
                .expect("stderr")
                .read_to_string(&mut err);
            panic!("--serve-sites printed no ready line:\n{err}");
        };
        let ready: Value = serde_json::from_str(&first).expect("ready line is JSON");
        Sites {
            child,
            lines,
            ready,
        }
    }

    fn site_addr(&self) -> SocketAddr {
        let url = self.ready["sites"][0]["url"].as_str().expect("url");
        url.strip_prefix("http://")
            .expect("http url")
            .parse()
            .expect("site address")
    }

    fn config(&self) -> PathBuf {
        self.ready["config"].as_str().expect("config path").into()
    }

    /// SIGINT, then the records line and the exit status.
    fn stop(mut self) -> (Value, std::process::ExitStatus) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(30))
            .expect("a records line after SIGINT");
        let status = self.child.wait().expect("wait");
        (
            serde_json::from_str(&line).expect("records line is JSON"),
            status,
        )
    }
}

impl Drop for Sites {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_lines(stdout: ChildStdout) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A `credpool serve` on a free port with the given config; killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(dir: &Path, config: &Path) -> Server {
        let log = dir.join("serve.log");
        let mut child = Command::new(credpool_bin())
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--config")
            .arg(config)
            .args(["serve", "--listen", "127.0.0.1:0", "--interval-ms", "200"])
            .env_remove("CREDENTIAL_ENCRYPTION_KEY")
            .env_remove("CREDPOOL_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start credpool serve");
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(at) = text.find("serving on http://") {
                let rest = &text[at + "serving on http://".len()..];
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                let addr = rest[..end].parse().expect("bound address");
                return Server { child, addr };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("credpool serve exited ({status}) before serving:\n{text}");
            }
            assert!(Instant::now() < until, "serve did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on the site with the cookie header; status and body.
fn site_get(addr: SocketAddr, path: &str, cookie: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the site");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read the answer");
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

fn cookie_of(lease: &Value) -> String {
    lease["secrets"]["cookies"]
        .as_array()
        .expect("cookies")
        .iter()
        .map(|c| {
            format!(
                "{}={}",
                c["name"].as_str().unwrap(),
                c["value"].as_str().unwrap()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn token(dir: &Path, role: &str) -> String {
    ok(&credpool(dir, &["token", "create", "--role", role]))
        .trim()
        .to_string()
}

#[test]
fn served_shop_is_crawled_through_credpool_serve_and_keeps_its_own_records() {
    let dir = initialised();
    let d = dir.path();
    let sites = Sites::start(d, &["--accounts", "6", "--seed", "7"]);
    let site = &sites.ready["sites"][0];
    assert_eq!(site["name"], "shop.sim");
    assert_eq!(site["accounts"], 6);
    assert!(sites.site_addr().ip().is_loopback());
    let config = sites.config();
    let text = std::fs::read_to_string(&config).expect("the written config");
    assert!(
        text.contains(&format!("http://{}/login", sites.site_addr())),
        "{text}"
    );

    let crawler = token(d, "crawler");
    let viewer = token(d, "viewer");
    let server = Server::start(d, &config);
    let mut view = Client::new(server.addr, Some(&viewer));
    // The server's lifecycle logs the accounts in at the site.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = view.get("/v1/stats?site=shop.sim").json();
        if stats[0]["by_status"]["active"].as_u64() == Some(6) {
            break;
        }
        assert!(Instant::now() < until, "accounts not logged in: {stats}");
        std::thread::sleep(Duration::from_millis(200));
    }

    let mut pool = Client::new(server.addr, Some(&crawler));
    let mut ok_pages = 0;
    for n in 0..30 {
        let got = acquire_waiting(&mut pool);
        let lease = &got["lease"];
        let (status, body) = site_get(sites.site_addr(), &format!("/item/{n}"), &cookie_of(lease));
        let outcome = match status {
            200 if body.contains("captcha") => "challenged",
            200 => {
                ok_pages += 1;
                "success"
            }
            401 => "expired",
            403 => "blocked",
            429 => "rate-limited",
            _ => "network",
        };
        let id = lease["id"].as_str().expect("lease id");
        let r = pool.post(
            &format!("/v1/leases/{id}/report"),
            &json!({"outcome": outcome, "http_status": status}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert!(ok_pages >= 25, "{ok_pages} of 30 pages");

    // One session, four requests at once: the site must see it.
    let got = acquire_waiting(&mut pool);
    let lease = got["lease"].clone();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
    let addr = sites.site_addr();
    let cookie = cookie_of(&lease);
    let statuses: Vec<u16> = (0..4)
        .map(|n| {
            let (barrier, cookie) = (barrier.clone(), cookie.clone());
            std::thread::spawn(move || {
                barrier.wait();
                site_get(addr, &format!("/item/{}", 100 + n), &cookie).0
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().expect("request thread"))
        .collect();
    ok_pages += statuses.iter().filter(|&&s| s == 200).count();
    let id = lease["id"].as_str().expect("lease id");
    pool.post(&format!("/v1/leases/{id}/release"), &json!({}));

    let (records, status) = sites.stop();
    assert!(status.success(), "exit {status}");
    let shop = &records["records"][0];
    assert_eq!(shop["name"], "shop.sim", "{records}");
    assert_eq!(shop["accounts"], 6);
    assert_eq!(shop["pages_ok"], ok_pages as u64, "{records}");
    assert_eq!(shop["logins"].as_u64().map(|n| n >= 6), Some(true));
    assert_eq!(shop["banned_for_abuse"], 0, "{records}");
    assert!(
        shop["concurrent_use"].as_u64().expect("count") >= 1,
        "four requests at once on one session went unseen: {records}"
    );
    assert_eq!(shop["accounts_used_concurrently"], 1, "{records}");
    drop(server);
}

/// Acquires a shop session as a crawler does: when the pool answers that
/// every account is resting at its pace (the adaptive pace starts at one use
/// a second), waits until its `next_free_at` and asks again.
fn acquire_waiting(pool: &mut Client) -> Value {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let got = pool
            .post("/v1/acquire", &json!({"site": "shop.sim"}))
            .json();
        if got["status"] == "success" {
            return got;
        }
        assert_eq!(got["reason"], "all-rate-limited", "{got}");
        assert!(Instant::now() < until, "no session for 30 s: {got}");
        let free_at = got["next_free_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .expect("a rate-limited answer names next_free_at");
        let wait = (free_at.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or_default();
        std::thread::sleep(wait.min(Duration::from_secs(2)) + Duration::from_millis(5));
    }
}

#[test]
fn bad_serve_sites_flags_are_named() {
    let dir = initialised();
    let d = dir.path();
    let out = credpool(d, &["simulate", "--serve-sites", "--sites", "bank.sim"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(crate::support::stderr(&out).contains("bank.sim"));
    let out = credpool(d, &["simulate", "--serve-sites", "--workers", "3"]);
    assert_eq!(out.status.code(), Some(2));
    let out = credpool(d, &["simulate", "--sites", "shop.sim"]);
    assert_eq!(out.status.code(), Some(2), "--sites needs --serve-sites");
    let out = credpool(d, &["simulate", "--serve-sites", "--session-ttl", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(crate::support::stderr(&out).contains("--session-ttl"));
    let out = run_credpool(
        d,
        &["simulate", "--serve-sites"],
        "",
        &[("CREDPOOL_ADDR", "http://127.0.0.1:9")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(crate::support::stderr(&out).contains("CREDPOOL_ADDR"));
}

#[test]
fn serve_sites_refuses_a_store_a_server_holds() {
    let dir = initialised();
    let d = dir.path();
    std::fs::write(d.join("credpool.toml"), "").expect("config");
    let _server = Server::start(d, &d.join("credpool.toml"));
    let out = credpool(d, &["simulate", "--serve-sites", "--accounts", "3"]);
    assert_eq!(out.status.code(), Some(1));
    let err = crate::support::stderr(&out);
    assert!(err.contains("before `credpool serve`"), "{err}");
}

#[test]
fn serve_sites_can_ask_slider_captchas() {
    let dir = initialised();
    let sites = Sites::start(
        dir.path(),
        &["--accounts", "2", "--captcha-style", "slider"],
    );
    let config = std::fs::read_to_string(sites.config()).expect("config written");
    assert!(config.contains(r#"kind = "captcha-slider""#), "{config}");
    assert!(config.contains("/captcha/slider"));
    // The slider's route answers (no session: 401); the letters' is gone.
    let addr = sites.site_addr();
    let post = |path: &str| {
        let mut s = TcpStream::connect(addr).expect("connect to the site");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("read the answer");
        text.split(' ').nth(1).map(str::to_string)
    };
    assert_eq!(post("/captcha/slider").as_deref(), Some("401"));
    assert_eq!(post("/captcha").as_deref(), Some("404"));
    let (_, status) = sites.stop();
    assert!(status.success());
    let out = credpool(
        dir.path(),
        &["simulate", "--serve-sites", "--captcha-style", "puzzle"],
    );
    assert_eq!(out.status.code(), Some(2));
}
