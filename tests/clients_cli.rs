//! The CLI as a client of several servers (`CREDPOOL_ADDR` with commas): a
//! command moves on from a server that refuses the connection, and an
//! acquire that may have reached a server which hung up is not sent again,
//! while a report is. The live server is a real `credpool serve`; the broken
//! peers are a closed port and a socket that reads the request and hangs up.

use crate::support;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::server::{Served, token};
use support::{initialised, json, ok, run_credpool, stderr};

/// A loopback port nothing listens on.
fn dead_addr() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("http://127.0.0.1:{port}")
}

/// Reads each request's first line, then closes without an answer.
struct HangUp {
    addr: String,
    requests: Arc<Mutex<Vec<String>>>,
}

fn hang_up_peer() -> HangUp {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn): std::io::Result<TcpStream> = conn else {
                continue;
            };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 65536];
            if let Ok(n) = conn.read(&mut buf)
                && n > 0
            {
                let head = String::from_utf8_lossy(&buf[..n]);
                let line = head.split("\r\n").next().unwrap_or_default().to_string();
                seen.lock().unwrap().push(line);
            }
        }
    });
    HangUp { addr, requests }
}

fn via(dir: &Path, addr: &str, token: &str, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let mut env = vec![("CREDPOOL_ADDR", addr), ("CREDPOOL_TOKEN", token)];
    env.extend_from_slice(extra);
    run_credpool(dir, args, "", &env)
}

fn open_leases(server: &Served, viewer: &str, site: &str) -> u64 {
    let stats = server
        .client(viewer)
        .get(&format!("/v1/stats?site={site}"))
        .json();
    stats[0]["open_leases"].as_u64().expect("open_leases")
}

#[test]
fn the_cli_moves_to_the_next_server_only_when_it_is_safe() {
    let dir = initialised();
    let d = dir.path();
    let operator = token(d, "default", "operator", &[]);
    let crawler = token(d, "default", "crawler", &[]);
    let viewer = token(d, "default", "viewer", &[]);
    let server = Served::start(d, &["--listen", "127.0.0.1:0", "--interval-ms", "200"]);
    let live = server.url("");
    let add = [
        "add", "--site", "fo.test", "--type", "session", "--id", "s0", "--cookie", "sid=v0",
    ];
    ok(&via(d, &live, &operator, &add, &[]));

    // The first server is down: acquire, report and list go to the second.
    let two = format!("{}, {live}", dead_addr());
    let got = json(&via(
        d,
        &two,
        &crawler,
        &["acquire", "fo.test", "--json"],
        &[],
    ));
    let lease = got["lease"]["id"].as_str().expect("a lease").to_string();
    ok(&via(d, &two, &crawler, &["report", &lease, "success"], &[]));
    assert_eq!(open_leases(&server, &viewer, "fo.test"), 0);
    let listed = json(&via(d, &two, &viewer, &["list", "--json"], &[]));
    assert_eq!(listed[0]["id"], "s0", "{listed}");

    // A server that read the acquire and hung up may have leased: not sent
    // again, and the live server never saw it.
    let peer = hang_up_peer();
    let pair = format!("{},{live}", peer.addr);
    let out = via(d, &pair, &crawler, &["acquire", "fo.test"], &[]);
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(&peer.addr), "{}", stderr(&out));
    assert_eq!(
        *peer.requests.lock().unwrap(),
        ["POST /v1/acquire HTTP/1.1"]
    );
    assert_eq!(open_leases(&server, &viewer, "fo.test"), 0);

    // A report is sent again: the server answers a repeat the same way.
    let got = json(&via(
        d,
        &live,
        &crawler,
        &["acquire", "fo.test", "--json"],
        &[],
    ));
    let lease = got["lease"]["id"].as_str().expect("a lease").to_string();
    assert_eq!(open_leases(&server, &viewer, "fo.test"), 1);
    ok(&via(
        d,
        &pair,
        &crawler,
        &["report", &lease, "success"],
        &[],
    ));
    assert!(
        peer.requests.lock().unwrap()[1].starts_with(&format!("POST /v1/leases/{lease}/report ")),
        "{:?}",
        peer.requests.lock().unwrap()
    );
    assert_eq!(open_leases(&server, &viewer, "fo.test"), 0);

    // Every server down: an error naming one, after the deadline.
    let started = Instant::now();
    let none = format!("{},{}", dead_addr(), dead_addr());
    let out = via(
        d,
        &none,
        &viewer,
        &["list"],
        &[("CREDPOOL_FAILOVER_DEADLINE", "1")],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no credpool server at http://127.0.0.1:"),
        "{}",
        stderr(&out)
    );
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(!stderr(&out).contains(&viewer), "the token was printed");

    // One bad address in the list is a usage error naming it.
    let out = via(d, &format!("{live},ftp://x"), &viewer, &["list"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("\"ftp://x\""), "{}", stderr(&out));
}
