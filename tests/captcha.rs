//! Captchas a solver can solve, against the simulated shop on loopback,
//! through the policy component: the solver program gets the image (and
//! a slider's instruction) and answers a text or a gap distance; the host
//! drags a human-like track the site accepts where naive ones are refused;
//! an SMS code is sent when the recipe asks; code tickets time out sooner.

use crate::support;

use base64::Engine as _;
use credpool::config::ConfigFile;
use credpool::lifecycle::{RefresherOptions, slider};
use credpool::simulate::site::{CaptchaStyle, SimAccount, SimSite, SiteSpec};
use credpool::{AccessLevel, ChallengeKind, ManualClock, Pool, PoolOptions, Status};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::T0;

const SITE: &str = "shop.sim";

/// One form account, no defence but what a test turns on.
fn spec(style: CaptchaStyle) -> SiteSpec {
    SiteSpec {
        name: SITE.into(),
        accounts: 1,
        seed: 23,
        totp_share: 0.0,
        sms_share: 0.0,
        latency: (Duration::ZERO, Duration::ZERO),
        session_ttl: Duration::from_secs(3600),
        rate_max: 1000,
        budget: 100_000,
        block_after_429: 1000,
        ban_after_abuse: 1000,
        ban_share: 0.0,
        captcha_rate: 0.0,
        defence_change_at: None,
        defence_block_rate: 0.0,
        captcha_style: style,
        ..SiteSpec::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Hands finished refreshes to the policy until nothing runs.
fn settle(pool: &Pool) {
    let refresher = pool.refresher().unwrap();
    loop {
        let end = Instant::now() + Duration::from_secs(20);
        while refresher.in_flight() > 0 {
            assert!(Instant::now() < end, "refreshes did not finish");
            std::thread::sleep(Duration::from_millis(2));
        }
        if pool.deliver_refresh_results().unwrap() == 0 {
            return;
        }
    }
}

/// A pool through the policy component configured by `toml`, on `clock`.
fn pool_with(toml: &str, clock: &ManualClock) -> Pool {
    let config = ConfigFile::parse(toml).unwrap();
    let mut options = PoolOptions::in_memory();
    options.clock = Some(clock.clone());
    options.policy_config = config.policy_config_json();
    let pool = Pool::open(options).unwrap();
    pool.attach_refresher(RefresherOptions::new(config.sites.clone()))
        .unwrap();
    pool
}

/// The site's own tables with a captcha solver program.
fn with_solver(site: &SimSite, solver: &Path) -> String {
    site.sites_toml().replacen(
        "method = \"cookie-visit\"\n",
        &format!(
            "method = \"cookie-visit\"\ncaptcha_solver = [\"{}\"]\n",
            solver.display()
        ),
        1,
    )
}

/// A solver script: it keeps what it read in `input.json` beside it, and
/// answers `answer` only when the image it got is `image` (else fails).
fn write_solver(dir: &Path, image: &[u8], answer: &str) -> std::path::PathBuf {
    let b64 = base64::engine::general_purpose::STANDARD.encode(image);
    let path = dir.join("solver.sh");
    let kept = dir.join("input.json");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\ninput=$(cat)\nprintf '%s' \"$input\" > '{}'\n\
             case \"$input\" in *'\"image_base64\":\"{b64}\"'*) printf '%s\\n' '{answer}' ;; *) exit 1 ;; esac\n",
            kept.display()
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    path
}

struct Solved {
    input: serde_json::Value,
    logins: u64,
    captchas: u64,
    status: Status,
    tickets: usize,
}

/// Raises a captcha for the account, lets credpool log it in with a solver
/// that answers what `answer_of` reads off the site, and reports.
fn log_in_through_a_solver(
    style: CaptchaStyle,
    answer_of: impl Fn(&SimSite, &SimAccount) -> String,
) -> Solved {
    let rt = runtime();
    let clock = ManualClock::at(T0);
    let site = rt
        .block_on(SimSite::start_with_clock(
            spec(style),
            Arc::new(clock.clone()),
        ))
        .unwrap();
    let a = site.accounts()[0].clone();
    assert!(site.raise_captcha(&a.username));
    let image = site
        .captcha_image(&a.username)
        .expect("a captcha is pending");
    let dir = tempfile::tempdir().unwrap();
    let solver = write_solver(dir.path(), &image, &answer_of(&site, &a));
    let pool = pool_with(&with_solver(&site, &solver), &clock);
    pool.add(a.new_credential(SITE)).unwrap();
    pool.tick().unwrap();
    settle(&pool);
    let id = a.credential_id(SITE);
    let status = pool.view(&id, AccessLevel::Internal).unwrap().status;
    let tickets = pool.tickets().unwrap().len();
    let input = std::fs::read(dir.path().join("input.json")).expect("the solver ran");
    let t = site.truth();
    Solved {
        input: serde_json::from_slice(&input).unwrap(),
        logins: t.accounts[0].logins,
        captchas: t.accounts[0].captchas,
        status,
        tickets,
    }
}

#[test]
fn an_image_captcha_solver_gets_the_picture_and_its_text_logs_in() {
    let logs = support::loopback::logs;
    logs();
    let s = log_in_through_a_solver(CaptchaStyle::Text, |site, a| {
        site.captcha_answer(&a.username).unwrap().to_string()
    });
    assert_eq!(s.status, Status::Active, "logged in past the captcha");
    assert_eq!((s.logins, s.captchas, s.tickets), (1, 1, 0));
    assert_eq!(s.input["kind"], "captcha-image");
    assert_eq!(s.input["site"], SITE);
    assert!(
        s.input["image_url"]
            .as_str()
            .unwrap()
            .ends_with("/captcha.png"),
        "{}",
        s.input["image_url"]
    );
    assert_eq!(s.input["image_type"], "image/png");
    // The picture is in no log line; its size is.
    let b64 = s.input["image_base64"].as_str().unwrap();
    let text = logs();
    assert!(!text.contains(&b64[..40]), "the image reached a log");
    let size = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
        .len();
    assert!(
        text.contains(&format!("image_bytes={size}")),
        "its size is logged"
    );
}

#[test]
fn a_wrong_solver_answer_leaves_a_ticket_for_a_person() {
    let s = log_in_through_a_solver(CaptchaStyle::Text, |_, _| "WRONG".into());
    assert_eq!(s.status, Status::Challenged);
    assert_eq!((s.logins, s.tickets), (0, 1));
}

#[test]
fn a_slider_solver_answers_the_gap_and_the_hosts_track_passes() {
    let s = log_in_through_a_solver(CaptchaStyle::Slider, |site, a| {
        site.slider_gap(&a.username).unwrap().to_string()
    });
    assert_eq!(s.status, Status::Active, "the site took the host's track");
    assert_eq!((s.logins, s.captchas, s.tickets), (1, 1, 0));
    assert_eq!(s.input["kind"], "captcha-slider");
    assert_eq!(s.input["instruction"], "Drag the piece into the gap");
    assert!(
        s.input["image_base64"]
            .as_str()
            .is_some_and(|b| !b.is_empty())
    );
}

#[test]
fn a_slider_answered_far_off_the_gap_is_refused_by_the_site() {
    let s = log_in_through_a_solver(CaptchaStyle::Slider, |site, a| {
        (site.slider_gap(&a.username).unwrap() + 30).to_string()
    });
    assert_eq!(s.status, Status::Challenged);
    assert_eq!((s.logins, s.tickets), (0, 1));
}

/// Starts a login that stops at the slider; the `login` cookie.
async fn at_the_slider(site: &SimSite, http: &reqwest::Client) -> String {
    let a = &site.accounts()[0];
    site.raise_captcha(&a.username);
    let r = http
        .post(format!("{}/login", site.base_url()))
        .form(&[
            ("username", a.username.as_str()),
            ("password", a.password.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .find_map(|v| {
            let v = v.to_str().ok()?;
            v.starts_with("login=")
                .then(|| v.split(';').next().unwrap().to_string())
        })
        .expect("a pending login");
    assert!(r.text().await.unwrap().contains("/captcha/slider"));
    cookie
}

#[test]
fn naive_tracks_are_refused_and_a_generated_one_passes_over_http() {
    let rt = runtime();
    rt.block_on(async {
        let site = SimSite::start(spec(CaptchaStyle::Slider)).await.unwrap();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let cookie = at_the_slider(&site, &http).await;
        let gap = site.slider_gap(&site.accounts()[0].username).unwrap();
        let post = |track: String| {
            let http = http.clone();
            let url = format!("{}/captcha/slider", site.base_url());
            let cookie = cookie.clone();
            async move {
                let r = http
                    .post(url)
                    .header("cookie", cookie)
                    .form(&[("track", track)])
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            }
        };
        let rows = |pts: Vec<(i64, i64, i64)>| {
            serde_json::to_string(&pts.iter().map(|&(x, y, t)| [x, y, t]).collect::<Vec<_>>())
                .unwrap()
        };
        // Constant speed, level, a sample every 20 ms: what a script does.
        let naive: Vec<_> = (0..=40).map(|i| (gap * i / 40, 0, i * 20)).collect();
        // The same with a wobble and uneven steps: still constant speed.
        let mut t = 0;
        let mut steady = Vec::new();
        for i in 0..=40i64 {
            steady.push((0, i % 3 - 1, t));
            t += [15, 22, 18, 25][i as usize % 4];
        }
        let end = steady.last().unwrap().2;
        let steady: Vec<_> = steady
            .into_iter()
            .map(|(_, y, t)| (gap * t / end, y, t))
            .collect();
        // A human shape done in a sixth of the time.
        let fast: Vec<_> = slider::generate(gap as f64, 9)
            .iter()
            .map(|p| (p.x as i64, p.y as i64, p.t as i64 / 6))
            .collect();
        // A human shape, perfectly level.
        let level: Vec<_> = slider::generate(gap as f64, 10)
            .iter()
            .map(|p| (p.x as i64, 0, p.t as i64))
            .collect();
        for (what, track, why) in [
            ("naive", naive, "NoVerticalMovement"),
            ("steady", steady, "ConstantSpeed"),
            ("fast", fast, "TooFast"),
            ("level", level, "NoVerticalMovement"),
        ] {
            let (status, body) = post(rows(track)).await;
            assert_eq!(status, 200, "{what}");
            assert!(
                body.contains(&format!(r#"data-rejected="{why}""#)),
                "{what}: {body}"
            );
        }
        // The host's track, drawn for the gap: the login goes on.
        let track = slider::to_json(&slider::generate(gap as f64, 11));
        let (status, body) = post(track).await;
        assert_eq!(status, 302, "{body}");
        assert!(site.captcha_answer(&site.accounts()[0].username).is_none());
        assert_eq!(site.truth().accounts[0].logins, 1);
    });
}

/// The site's tables without its short ticket limits (the card's
/// defaults then apply), optionally without the SMS `send_url`.
fn default_timeouts(site: &SimSite, keep_send_url: bool) -> String {
    let mut toml = site.sites_toml().replace(
        "ticket_timeout = \"30s\"\ncode_ticket_timeout = \"30s\"\n",
        "",
    );
    assert!(!toml.contains("ticket_timeout"));
    if !keep_send_url {
        let line = format!("send_url = \"{}/login/sms/send\"\n", site.base_url());
        assert!(toml.contains(&line));
        toml = toml.replace(&line, "");
    }
    toml
}

#[test]
fn the_recipe_has_the_sms_sent_and_code_tickets_time_out_after_five_minutes() {
    let rt = runtime();
    let clock = ManualClock::at(T0);
    let site = rt
        .block_on(SimSite::start_with_clock(
            SiteSpec {
                accounts: 2,
                sms_share: 0.5,
                sms_on_request: true,
                ..spec(CaptchaStyle::Text)
            },
            Arc::new(clock.clone()),
        ))
        .unwrap();
    let sms = site.accounts().iter().find(|a| a.sms).unwrap().clone();
    let plain = site.accounts().iter().find(|a| !a.sms).unwrap().clone();
    // The other account meets a captcha and no solver: a ticket too.
    site.raise_captcha(&plain.username);
    let pool = pool_with(&default_timeouts(&site, true), &clock);
    for a in [&sms, &plain] {
        pool.add(a.new_credential(SITE)).unwrap();
    }
    pool.tick().unwrap();
    settle(&pool);
    let code = site
        .sms_code(&sms.username)
        .expect("the recipe asked for the code");
    let tickets = pool.tickets().unwrap();
    let of = |kind| tickets.iter().find(|t| t.kind == kind).unwrap().clone();
    let (sms_ticket, captcha_ticket) =
        (of(ChallengeKind::SmsCode), of(ChallengeKind::CaptchaImage));
    assert_eq!(
        sms_ticket.deadline - sms_ticket.created_at,
        5 * 60_000,
        "card: 5 min"
    );
    assert_eq!(
        captcha_ticket.deadline - captcha_ticket.created_at,
        3_600_000,
        "others: 1 h"
    );
    // Five minutes on, the code ticket is closed, the captcha's is open.
    clock.advance(Duration::from_secs(5 * 60));
    pool.tick().unwrap();
    settle(&pool);
    let open: Vec<_> = pool
        .tickets()
        .unwrap()
        .into_iter()
        .map(|t| t.kind)
        .collect();
    assert_eq!(open, vec![ChallengeKind::CaptchaImage]);
    let status = |a: &SimAccount| {
        pool.view(&a.credential_id(SITE), AccessLevel::Internal)
            .unwrap()
            .status
    };
    assert_eq!(status(&sms), Status::Challenged, "held for a person");
    assert!(
        pool.answer_challenge(&sms_ticket.id, code).is_err(),
        "a late code finds no ticket"
    );
    assert_eq!(status(&plain), Status::Challenged);
    // The captcha's ticket waits out its hour.
    clock.advance(Duration::from_secs(54 * 60));
    pool.tick().unwrap();
    settle(&pool);
    assert_eq!(pool.tickets().unwrap().len(), 1);
    clock.advance(Duration::from_secs(60));
    pool.tick().unwrap();
    settle(&pool);
    assert!(pool.tickets().unwrap().is_empty());
}

#[test]
fn an_sms_step_answered_in_time_logs_in_and_without_send_url_no_code_comes() {
    for keep_send_url in [true, false] {
        let rt = runtime();
        let clock = ManualClock::at(T0);
        let site = rt
            .block_on(SimSite::start_with_clock(
                SiteSpec {
                    sms_share: 1.0,
                    sms_on_request: true,
                    ..spec(CaptchaStyle::Text)
                },
                Arc::new(clock.clone()),
            ))
            .unwrap();
        let a = site.accounts()[0].clone();
        let pool = pool_with(&default_timeouts(&site, keep_send_url), &clock);
        pool.add(a.new_credential(SITE)).unwrap();
        pool.tick().unwrap();
        settle(&pool);
        let tickets = pool.tickets().unwrap();
        assert_eq!(tickets.len(), 1);
        assert_eq!(tickets[0].kind, ChallengeKind::SmsCode);
        let Some(code) = site.sms_code(&a.username) else {
            assert!(!keep_send_url, "with send_url the code was sent");
            continue;
        };
        assert!(keep_send_url, "without send_url nothing asked for a code");
        clock.advance(Duration::from_secs(4 * 60));
        pool.answer_challenge(&tickets[0].id, code).unwrap();
        settle(&pool);
        let st = pool
            .view(&a.credential_id(SITE), AccessLevel::Internal)
            .unwrap()
            .status;
        assert_eq!(st, Status::Active);
        assert_eq!(site.truth().accounts[0].logins, 1);
    }
}

#[test]
fn a_click_captcha_solver_gets_the_instruction_and_its_points_are_posted() {
    use support::loopback::{reply, serve};
    const IMAGE: &str = "PNG-ish bytes of a click puzzle";
    let server = serve(|r| {
        let step = r.cookie("step").is_some();
        match (r.method.as_str(), r.path.as_str()) {
            ("POST", "/login") if r.form().get("password").map(String::as_str) == Some("pw") => {
                reply(
                    200,
                    &[("Set-Cookie", "step=c; Path=/")],
                    r#"<form id="click"><p class="hint">Click the <b>cat</b>, then the dog</p><img id="puzzle" src="/puzzle.png?v=1&amp;w=300"></form>"#,
                )
            }
            ("GET", "/puzzle.png?v=1&w=300") if step => {
                reply(200, &[("Content-Type", "image/png")], IMAGE)
            }
            ("POST", "/click")
                if step
                    && r.form().get("points").map(String::as_str)
                        == Some("[[10.0,20.0],[30.5,40.0]]") =>
            {
                reply(
                    302,
                    &[("Location", "/"), ("Set-Cookie", "sid=ok; Path=/")],
                    "",
                )
            }
            _ => reply(200, &[], r#"<form id="click">try again</form>"#),
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let solver = write_solver(dir.path(), IMAGE.as_bytes(), "10,20; 30.5,40");
    let toml = format!(
        r#"[sites."click.test"]
method = "relogin"
captcha_solver = ["{solver}"]
[sites."click.test".login]
url = "{login}"
success = {{ cookie = "sid" }}
[[sites."click.test".login.challenges]]
kind = "captcha-click"
detect = {{ body = ['<form id="click"'] }}
submit_url = "{click}"
field = "points"
image_after = 'id="puzzle"'
instruction_after = '<p class="hint">'
instruction_until = "</p>"
"#,
        solver = solver.display(),
        login = server.url("/login"),
        click = server.url("/click"),
    );
    let clock = ManualClock::at(T0);
    let pool = pool_with(&toml, &clock);
    let mut n = credpool::pool::NewCredential::new("click.test", credpool::CredentialKind::Account)
        .with_id("c1");
    n.username = Some("u".into());
    n.secrets.username = Some("u".into());
    n.secrets.password = Some("pw".into());
    pool.add(n).unwrap();
    pool.tick().unwrap();
    settle(&pool);
    let input: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("input.json")).unwrap()).unwrap();
    assert_eq!(input["kind"], "captcha-click");
    assert_eq!(input["instruction"], "Click the cat, then the dog");
    assert_eq!(input["image_type"], "image/png");
    assert_eq!(input["image_url"], server.url("/puzzle.png?v=1&w=300"));
    assert_eq!(server.hits("/click").len(), 1, "posted once, as points");
    let st = pool.view("c1", AccessLevel::Internal).unwrap().status;
    assert_eq!(st, Status::Active);
}
