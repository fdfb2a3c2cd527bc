//! `credpool demo`: a short crawl with no setup. A pool in memory with
//! sample credentials for three sites; the demo shows round-robin rotation,
//! then a loop acquires, "uses" and reports with mixed outcomes through the
//! real policy component, then a site changes its defences (a burst of
//! blocks: suspensions and an anomaly alert), and the clock is moved by
//! hand so rests visibly end. Last, a tiny site on loopback shows the
//! session lifecycle: a login meets an SMS step (a ticket, answered), a
//! session is refreshed before it expires, and the refresh success rate.
//! Secrets are never printed.

use super::{EXIT_ERROR, Failed, output};
use crate::events::MemorySink;
use crate::pool::{NewCredential, Pool, PoolOptions};
use crate::{
    AcquireRequest, AcquireStatus, CredentialKind, Failure, FailureClass, ManualClock, Outcome,
};
use rand::rngs::StdRng;
use rand::{Rng as _, RngExt as _, SeedableRng};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const SITES: [(&str, CredentialKind, usize); 3] = [
    ("shop.example", CredentialKind::Session, 6),
    ("api.example", CredentialKind::Token, 3),
    ("search.example", CredentialKind::ApiKey, 2),
];

pub fn run(rounds: u32, seed: u64, component: Option<PathBuf>) -> Result<(), Failed> {
    let clock = ManualClock::starting_now();
    let events = Arc::new(MemorySink::default());
    let mut options = PoolOptions::in_memory();
    options.clock = Some(clock.clone());
    options.events = events.clone();
    options.component = component;
    // Round-robin on the shop so the rotation is easy to see; the other
    // sites keep the default, health-weighted.
    options.policy_config =
        r#"{"site_strategy": {"shop.example": "round-robin"}, "block_burst_count": 4}"#.into();
    let pool = Pool::open(options)?;
    println!("credpool demo: a pool in memory, the policy component sandboxed in wasmtime\n");

    let mut rng = StdRng::seed_from_u64(seed);
    for (site, kind, count) in SITES {
        for i in 0..count {
            let mut new =
                NewCredential::new(site, kind).with_id(&format!("{}-{}", short(site), i + 1));
            match kind {
                CredentialKind::Session => {
                    new.secrets
                        .cookies
                        .push(("sid".into(), format!("demo-{:016x}", rng.next_u64())));
                    new.username = Some(format!("shopper{:03}@mail.example", i + 1));
                }
                CredentialKind::Token => {
                    new.secrets.access_token = Some(format!("demo-{:032x}", rng.next_u64()))
                }
                _ => new.secrets.api_key = Some(format!("demo-{:024x}", rng.next_u64())),
            }
            pool.add(new)?;
        }
        println!(
            "added {count} {} credentials for {site}",
            crate::names::kind(kind)
        );
    }

    let mut turn = Vec::new();
    for _ in 0..8 {
        if let Some(lease) = pool.acquire(&AcquireRequest::site("shop.example"))?.lease {
            turn.push(lease.credential.id.clone());
            pool.release(&lease.id)?;
        }
    }
    println!(
        "\nrotation on shop.example (round-robin): {}",
        turn.join(" -> ")
    );

    let mut granted = 0u32;
    let mut refused = 0u32;
    let mut first_block: Option<String> = None;
    for round in 0..rounds {
        let (site, _, _) = SITES[(round as usize) % SITES.len()];
        let got = pool.acquire(&AcquireRequest::site(site))?;
        let Some(lease) = got.lease else {
            refused += 1;
            continue;
        };
        granted += 1;
        // What the crawler saw, by a fixed mix: mostly fine, some trouble.
        let roll: u32 = rng.random_range(0..100);
        let outcome = match roll {
            0..=89 => Outcome::Success,
            90..=93 => fail(FailureClass::Network, None, None),
            94..=96 => fail(FailureClass::RateLimited, Some(429), Some(60)),
            97 => fail(FailureClass::Blocked, Some(403), None),
            98 => fail(FailureClass::Expired, Some(401), None),
            _ => fail(FailureClass::Challenged, Some(200), None),
        };
        let effect = pool.report(&lease.id, outcome)?;
        if matches!(
            outcome,
            Outcome::Failure(Failure {
                class: FailureClass::Blocked,
                ..
            })
        ) && first_block.is_none()
        {
            first_block = Some(lease.credential.id.clone());
            println!(
                "round {round}: {} was blocked (403) -> {}, resting until {}",
                lease.credential.id,
                crate::names::status(effect.status),
                effect
                    .cooldown_until
                    .map(|t| output::time(t).to_string())
                    .unwrap_or_default()
            );
        }
        // A crawler's request takes a moment; let the clock move.
        clock.advance(Duration::from_secs(2));
        if round % 50 == 49 {
            pool.tick()?;
        }
    }
    println!(
        "\n{rounds} rounds: {granted} leases granted, {refused} refused (nothing usable at that moment)\n"
    );
    output::print_stats(&pool.stats(None)?, false);

    // Three days later every rest has ended (a first block rests a day
    // plus jitter, a repeat two).
    clock.advance(Duration::from_secs(3 * 24 * 3600));
    let tick = pool.tick()?;
    println!(
        "\nthree days later: {} rests ended, {} lapsed leases freed",
        tick.cooldowns_ended, tick.leases_expired
    );
    if let Some(id) = first_block {
        let view = pool.view(&id, crate::AccessLevel::Public)?;
        println!("{id} is {} again", crate::names::status(view.status));
    }

    // The shop changes its defences: blocks hit many accounts at once.
    println!("\nshop.example starts refusing logins (403 on every request):");
    let seen_before = events.lines().len();
    for _ in 0..4 {
        let Some(lease) = pool.acquire(&AcquireRequest::site("shop.example"))?.lease else {
            break;
        };
        let effect = pool.report(&lease.id, fail(FailureClass::Blocked, Some(403), None))?;
        println!(
            "  {} blocked -> {} until {}",
            lease.credential.id,
            crate::names::status(effect.status),
            effect
                .cooldown_until
                .map(|t| output::time(t).to_string())
                .unwrap_or_default()
        );
        clock.advance(Duration::from_secs(5));
    }
    for line in events.lines()[seen_before..]
        .iter()
        .filter(|l| l.starts_with("ALERT") && l.contains("BlockBurst"))
    {
        println!(
            "  anomaly alert (raised once per burst): {}",
            alert_message(line)
        );
    }

    output::print_stats(&pool.stats(None)?, false);

    let got = pool.acquire(&AcquireRequest::site("nowhere.example"))?;
    if got.status != AcquireStatus::Success {
        println!(
            "\nasking for nowhere.example: {}",
            output::no_credential_line("nowhere.example", &got)
        );
    }
    let alerts: Vec<String> = events
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("ALERT"))
        .collect();
    println!(
        "\nalerts raised through the notify import: {}",
        alerts.len()
    );
    for kind in [
        "BlockBurst",
        "LowHealth",
        "SuccessRateDrop",
        "Banned",
        "PoolExhausted",
    ] {
        let n = alerts.iter().filter(|l| l.contains(kind)).count();
        if n > 0 {
            println!("  {kind}: {n}");
        }
    }
    let logged = events.lines().len();
    println!(
        "\npolicy events logged: {logged} (every value masked; secrets never enter the policy)"
    );
    if granted == 0 {
        return Err(Failed(EXIT_ERROR, "the demo granted no lease".into()));
    }
    lifecycle_part()
}

/// Session lifecycle against a tiny site on 127.0.0.1: the policy schedules
/// a cookie refresh before expiry, a login meets an SMS step (a ticket),
/// the answer resumes it, and the refresh success rate comes out of stats.
fn lifecycle_part() -> Result<(), Failed> {
    // The site is named by its host: cookies are scoped to it.
    const SITE: &str = "127.0.0.1";
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Failed(EXIT_ERROR, format!("demo site: {e}")))?;
    let base = format!(
        "http://127.0.0.1:{}",
        listener.local_addr().expect("bound").port()
    );
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut r = BufReader::new(&stream);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let (mut len, mut cookie) = (0usize, String::new());
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("cookie:") {
                    cookie = h[7..].trim().to_string();
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let body = String::from_utf8_lossy(&body);
            let (status, headers, text) = match path.as_str() {
                "/home" if cookie.contains("sid=") => (
                    200,
                    "Set-Cookie: sid=rotated-session; Max-Age=3600; Path=/\r\n",
                    "ok",
                ),
                "/login" if body.contains("pass=") => (
                    200,
                    "Set-Cookie: step=s1; Path=/\r\n",
                    "We sent a code to your phone",
                ),
                "/sms" if body.contains("code=246810") && cookie.contains("step=s1") => (
                    302,
                    "Location: /home\r\nSet-Cookie: sid=new-session; Max-Age=86400; Path=/\r\n",
                    "",
                ),
                _ => (302, "Location: /login\r\n", ""),
            };
            let _ = (&stream).write_all(
                format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{text}",
                    text.len()
                )
                .as_bytes(),
            );
        }
    });
    let config = crate::config::ConfigFile::parse(&format!(
        r#"[sites."{SITE}"]
method = "cookie-visit"
refresh_url = "{base}/home"
refresh_before_expire = "10m"
[sites."{SITE}".logout]
redirect_to = ["/login"]
[sites."{SITE}".login]
url = "{base}/login"
username_field = "user"
password_field = "pass"
success = {{ cookie = "sid" }}
[[sites."{SITE}".login.challenges]]
kind = "sms-code"
detect = {{ body = ["sent a code to your phone"] }}
submit_url = "{base}/sms"
field = "code"
"#
    ))
    .map_err(|e| Failed(EXIT_ERROR, e))?;
    let clock = ManualClock::starting_now();
    let mut options = PoolOptions::in_memory();
    options.clock = Some(clock.clone());
    options.events = Arc::new(MemorySink::default());
    options.policy_config = config.policy_config_json();
    let pool = Pool::open(options)?;
    let refresher = pool.attach_refresher(crate::lifecycle::RefresherOptions::new(
        config.sites.clone(),
    ))?;
    let settle = || -> Result<(), Failed> {
        let end = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            while refresher.in_flight() > 0 && std::time::Instant::now() < end {
                std::thread::sleep(Duration::from_millis(2));
            }
            if pool.deliver_refresh_results()? == 0 || std::time::Instant::now() >= end {
                return Ok(());
            }
        }
    };
    println!("\nsession lifecycle on {SITE} (a tiny site the demo starts on loopback):");
    let mut session = NewCredential::new(SITE, CredentialKind::Session).with_id("portal-1");
    session.expires_at = Some(clock.now_ms() + 3_600_000);
    session
        .secrets
        .cookies
        .push(("sid".into(), "first-session".into()));
    pool.add(session)?;
    let mut account = NewCredential::new(SITE, CredentialKind::Account).with_id("portal-acct");
    account.phone = Some("+1 555 0100 4321".into());
    account.secrets.username = Some("crawler".into());
    account.secrets.password = Some("demo-password".into());
    pool.add(account)?;

    // The account logs in at once and meets an SMS step.
    pool.tick()?;
    settle()?;
    let tickets = pool.tickets()?;
    let ticket = tickets
        .first()
        .ok_or_else(|| Failed(EXIT_ERROR, "the demo login opened no ticket".into()))?;
    println!(
        "  portal-acct login asks for an SMS code: ticket {} ({}, sent to {})",
        ticket.id,
        crate::names::challenge_kind(ticket.kind),
        ticket.masked_contact.as_deref().unwrap_or("-")
    );
    let status = pool.answer_challenge(&ticket.id, zeroize::Zeroizing::new("246810".into()))?;
    settle()?;
    let view = pool.view("portal-acct", crate::AccessLevel::Public)?;
    println!(
        "  answered (challenge answer {} <code>): login resumed, portal-acct is {} (was {})",
        ticket.id,
        crate::names::status(view.status),
        crate::names::status(status)
    );

    // 55 minutes on, portal-1 is within 10 minutes (plus skew and jitter)
    // of expiry: the policy refreshes it.
    clock.advance(Duration::from_secs(55 * 60));
    let summary = pool.tick()?;
    settle()?;
    let view = pool.view("portal-1", crate::AccessLevel::Internal)?;
    let expires = view
        .internal
        .and_then(|i| i.expires_at)
        .map(|t| (t - clock.now_ms()) / 60_000)
        .unwrap_or(0);
    let rotated = pool
        .vault()
        .get_secrets(SITE, "portal-1")
        .ok()
        .flatten()
        .is_some_and(|s| {
            s.cookies
                .iter()
                .any(|(n, v)| n == "sid" && v == "rotated-session")
        });
    println!(
        "  55 min later: {} refresh started; portal-1 is {}, cookie {}, expires in {expires} min",
        summary.refreshes_started,
        crate::names::status(view.status),
        if rotated { "rotated" } else { "NOT rotated" }
    );
    for s in pool.stats(Some(SITE))? {
        println!(
            "  refresh success rate: {} ({} of {} finished; SLO >= 90%), open tickets: {}",
            output::refresh_rate_text(&s),
            s.refresh.succeeded,
            s.refresh.succeeded + s.refresh.failed,
            s.open_tickets
        );
    }
    refresher.shutdown(Duration::from_secs(2));
    Ok(())
}

fn fail(class: FailureClass, status: Option<u16>, retry_after: Option<u32>) -> Outcome {
    Outcome::Failure(Failure {
        class,
        http_status: status,
        retry_after_secs: retry_after,
    })
}

/// The `message` field of an alert's debug line.
fn alert_message(line: &str) -> &str {
    line.split("message: \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or(line)
}

fn short(site: &str) -> &str {
    site.split('.').next().unwrap_or(site)
}
