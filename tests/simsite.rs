//! The simulated hostile site (`credpool::simulate::site`), over loopback
//! HTTP on a hand-moved clock: each defence, the logins and the token
//! endpoint, determinism, and credpool's own lifecycle against it.

use crate::support;

use credpool::config::ConfigFile;
use credpool::lifecycle::{RefresherOptions, totp};
use credpool::simulate::site::{
    BanCause, BlockCause, Flavour, SimAccount, SimSite, SiteSpec, SiteTruth,
};
use credpool::{AccessLevel, ManualClock, Pool, PoolOptions, Status};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::T0;

const SEC: Duration = Duration::from_secs(1);

/// A site with no defence switched on, no page time and long sessions:
/// each test turns on what it checks.
fn calm() -> SiteSpec {
    SiteSpec {
        accounts: 4,
        seed: 11,
        totp_share: 0.0,
        sms_share: 0.0,
        latency: (Duration::ZERO, Duration::ZERO),
        session_ttl: Duration::from_secs(3600),
        rate_max: 1000,
        rate_window: SEC,
        budget: 100_000,
        budget_window: Duration::from_secs(30),
        block_after_429: 1000,
        block_for: (Duration::from_secs(5), Duration::from_secs(5)),
        ban_after_abuse: 1000,
        ban_share: 0.0,
        ban_horizon: Duration::from_secs(60),
        captcha_rate: 0.0,
        defence_change_at: None,
        defence_block_rate: 0.0,
        ..SiteSpec::default()
    }
}

/// A running site on its own clock, and an HTTP client that does not
/// follow redirects (logins answer 302).
struct Rig {
    site: SimSite,
    clock: ManualClock,
    http: reqwest::Client,
}

/// What came back, reduced to what the tests compare.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    status: u16,
    retry_after: Option<u64>,
    location: Option<String>,
    set_cookies: Vec<String>,
    body: String,
}

impl Got {
    /// The value of cookie `name` set by the answer.
    fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies.iter().find_map(|c| {
            let (k, v) = c.split(';').next()?.split_once('=')?;
            (k == name && !v.is_empty()).then(|| v.to_string())
        })
    }
}

async fn rig(spec: SiteSpec) -> Rig {
    let clock = ManualClock::at(T0);
    let site = SimSite::start_with_clock(spec, Arc::new(clock.clone()))
        .await
        .unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Rig { site, clock, http }
}

async fn got(resp: reqwest::Response) -> Got {
    let h = resp.headers();
    let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    Got {
        status: resp.status().as_u16(),
        retry_after: header("retry-after").map(|v| v.parse().unwrap()),
        location: header("location"),
        set_cookies: h
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect(),
        body: resp.text().await.unwrap(),
    }
}

impl Rig {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.site.base_url())
    }

    fn account(&self, i: usize) -> &SimAccount {
        &self.site.accounts()[i]
    }

    fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    /// Site time, for absolute moves.
    fn at(&self, since_start: Duration) {
        self.clock.set(T0 + since_start.as_millis() as i64);
    }

    async fn item(&self, sid: &str) -> Got {
        got(self
            .http
            .get(self.url("/item/7"))
            .header("Cookie", format!("sid={sid}"))
            .send()
            .await
            .unwrap())
        .await
    }

    async fn item_bearer(&self, token: &str) -> Got {
        got(self
            .http
            .get(self.url("/item/7"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap())
        .await
    }

    async fn home(&self, sid: &str) -> Got {
        got(self
            .http
            .get(self.url("/home"))
            .header("Cookie", format!("sid={sid}"))
            .send()
            .await
            .unwrap())
        .await
    }

    async fn post(&self, path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Got {
        let mut req = self.http.post(self.url(path)).form(form);
        if let Some(c) = cookie {
            req = req.header("Cookie", c);
        }
        got(req.send().await.unwrap()).await
    }

    async fn login_form(&self, i: usize) -> Got {
        let a = self.account(i);
        self.post(
            "/login",
            None,
            &[("username", &a.username), ("password", &a.password)],
        )
        .await
    }

    /// Logs in an account with no second step: its session id.
    async fn login(&self, i: usize) -> String {
        let g = self.login_form(i).await;
        assert_eq!(g.status, 302, "{g:?}");
        assert_eq!(g.location.as_deref(), Some("/home"));
        g.cookie("sid").expect("a session cookie")
    }

    async fn token(&self, refresh_token: &str, client_id: &str) -> Got {
        self.post(
            "/oauth/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", client_id),
            ],
        )
        .await
    }

    fn truth(&self) -> SiteTruth {
        self.site.truth()
    }

    fn unbanned_accounts_now(&self) -> usize {
        self.site.unbanned_accounts()
    }
}

fn is_captcha(g: &Got) -> bool {
    g.status == 200 && g.body.contains(r#"<form id="captcha""#)
}

fn json(g: &Got) -> serde_json::Value {
    serde_json::from_str(&g.body).unwrap()
}

// ------------------------------------------------------------ defences

#[tokio::test]
async fn the_rate_limit_answers_429_with_the_seconds_until_a_slot_frees() {
    let r = rig(SiteSpec {
        rate_max: 3,
        rate_window: Duration::from_secs(4),
        ..calm()
    })
    .await;
    let sid = r.login(0).await;
    r.at(Duration::from_millis(1_500));
    for _ in 0..3 {
        let g = r.item(&sid).await;
        assert_eq!((g.status, g.body.as_str()), (200, "<html>item 7</html>"));
    }
    let g = r.item(&sid).await;
    assert_eq!(g.status, 429);
    assert_eq!(
        g.retry_after,
        Some(3),
        "2.5 s to the window's end, rounded up"
    );
    r.at(Duration::from_millis(3_999));
    assert_eq!(
        r.item(&sid).await.retry_after,
        Some(1),
        "at least one second"
    );
    r.at(Duration::from_secs(4));
    assert_eq!(r.item(&sid).await.status, 200, "a new window");
    let t = r.truth();
    let served = t.accounts[0].served;
    assert_eq!((served.ok, served.rate_limited), (4, 2));
    assert!(t.accounts[0].blocks.is_empty());
    // Another account has its own limit.
    let other = r.login(1).await;
    assert_eq!(r.item(&other).await.status, 200);
}

#[tokio::test]
async fn the_daily_budget_answers_429_until_the_day_ends() {
    let r = rig(SiteSpec {
        budget: 4,
        budget_window: Duration::from_secs(30),
        ..calm()
    })
    .await;
    let sid = r.login(0).await;
    r.at(Duration::from_secs(10));
    for _ in 0..4 {
        assert_eq!(r.item(&sid).await.status, 200);
    }
    let g = r.item(&sid).await;
    assert_eq!((g.status, g.retry_after), (429, Some(20)));
    r.at(Duration::from_millis(29_500));
    assert_eq!(r.item(&sid).await.retry_after, Some(1));
    r.at(Duration::from_secs(30));
    assert_eq!(r.item(&sid).await.status, 200, "a new day");
    let served = r.truth().accounts[0].served;
    assert_eq!(
        (served.ok, served.over_budget, served.rate_limited),
        (5, 2, 0)
    );
}

#[tokio::test]
async fn over_use_blocks_the_account_for_a_hidden_time_then_it_recovers() {
    let r = rig(SiteSpec {
        rate_max: 1,
        block_after_429: 2,
        block_for: (Duration::from_secs(3), Duration::from_secs(9)),
        ban_after_abuse: 10,
        ..calm()
    })
    .await;
    let sid = r.login(0).await;
    assert_eq!(r.item(&sid).await.status, 200);
    assert_eq!(r.item(&sid).await.status, 429);
    assert_eq!(r.item(&sid).await.status, 429);
    // The third 429 in the window is one too many: blocked from here.
    let g = r.item(&sid).await;
    assert_eq!(g.status, 403);
    assert!(g.body.contains("access denied"), "{g:?}");
    let t = r.truth();
    let blocks = &t.accounts[0].blocks;
    assert_eq!(blocks.len(), 1);
    let b = blocks[0];
    assert_eq!((b.start, b.cause), (Duration::ZERO, BlockCause::OverUse));
    assert!(b.end >= 3 * SEC && b.end <= 9 * SEC, "{b:?}");
    // Still blocked just before its hidden end, free at it.
    r.at(b.end - Duration::from_millis(1));
    assert_eq!(r.item(&sid).await.status, 403);
    r.at(b.end);
    let g = r.item(&sid).await;
    assert_eq!(g.status, 200, "{g:?}");
    let t = r.truth();
    assert_eq!(t.accounts[0].blocks[0].abuse, 1, "one use while blocked");
    assert!(t.accounts[0].banned.is_none());
    // The hidden time is drawn per account and episode from the seed.
    let again = rig(SiteSpec {
        rate_max: 1,
        block_after_429: 2,
        block_for: (Duration::from_secs(3), Duration::from_secs(9)),
        ..calm()
    })
    .await;
    let sid = again.login(0).await;
    for _ in 0..4 {
        again.item(&sid).await;
    }
    assert_eq!(again.truth().accounts[0].blocks[0].end, b.end, "same seed");
}

#[tokio::test]
async fn abuse_during_a_block_bans_the_account_for_good() {
    let r = rig(SiteSpec {
        rate_max: 1,
        block_after_429: 0,
        ban_after_abuse: 2,
        ..calm()
    })
    .await;
    let sid = r.login(0).await;
    assert_eq!(r.unbanned_accounts_now(), 4);
    assert_eq!(r.item(&sid).await.status, 200);
    assert_eq!(r.item(&sid).await.status, 403, "blocked at the first 429");
    assert!(r.item(&sid).await.body.contains("access denied"));
    // A login while blocked is abuse too; the third use bans.
    let g = r.login_form(0).await;
    assert_eq!(g.status, 403);
    assert!(g.body.contains("access denied"), "{g:?}");
    let g = r.item(&sid).await;
    assert_eq!(g.status, 403);
    assert!(g.body.contains("account banned"), "{g:?}");
    r.advance(Duration::from_secs(600));
    let g = r.item(&sid).await;
    assert_eq!(g.status, 403);
    assert!(g.body.contains("account banned"), "long after the block");
    assert!(r.login_form(0).await.body.contains("account banned"));
    let t = r.truth();
    let ban = t.accounts[0].banned.expect("banned");
    assert_eq!((ban.at, ban.cause), (Duration::ZERO, BanCause::Abuse));
    assert_eq!(t.accounts[0].blocks[0].abuse, 3);
    assert_eq!(r.unbanned_accounts_now(), 3);
    // The others are untouched.
    let other = r.login(1).await;
    assert_eq!(r.item(&other).await.status, 200);
}

fn random_bans(t: &SiteTruth) -> Vec<(String, Duration)> {
    t.accounts
        .iter()
        .filter_map(|a| {
            let b = a.banned?;
            assert_eq!(b.cause, BanCause::Random);
            Some((a.username.clone(), b.at))
        })
        .collect()
}

#[tokio::test]
async fn random_bans_fall_on_seeded_accounts_at_seeded_moments() {
    let spec = SiteSpec {
        accounts: 50,
        ban_share: 0.2,
        ban_horizon: Duration::from_secs(10),
        ..calm()
    };
    let r = rig(spec.clone()).await;
    r.at(Duration::from_secs(10));
    let bans = random_bans(&r.truth());
    assert_eq!(bans.len(), 10, "exactly the share");
    assert!(bans.iter().all(|(_, at)| *at <= Duration::from_secs(10)));
    assert_eq!(r.site.unbanned_accounts(), 40);
    // Halfway, only the moments passed count.
    let mid = Duration::from_secs(5);
    r.at(mid);
    let passed = bans.iter().filter(|(_, at)| *at <= mid).count();
    assert_eq!(random_bans(&r.truth()).len(), passed);
    assert_eq!(r.site.unbanned_accounts(), 50 - passed);
    assert!(passed > 0 && passed < 10, "{bans:?}");
    // A banned account is refused, at login and with a live session.
    r.at(Duration::ZERO);
    let (user, at) = bans.iter().max_by_key(|(_, at)| *at).unwrap().clone();
    let i: usize = user["user".len()..].parse().unwrap();
    let sid = r.login(i).await;
    assert_eq!(r.item(&sid).await.status, 200);
    r.at(at);
    let g = r.item(&sid).await;
    assert_eq!(g.status, 403);
    assert!(g.body.contains("account banned"));
    assert_eq!(r.login_form(i).await.status, 403);

    // The same seed: the same accounts at the same moments.
    let same = rig(spec.clone()).await;
    same.at(Duration::from_secs(10));
    assert_eq!(random_bans(&same.truth()), bans);
    // Another seed: others.
    let other = rig(SiteSpec { seed: 12, ..spec }).await;
    other.at(Duration::from_secs(10));
    let other_bans = random_bans(&other.truth());
    assert_eq!(other_bans.len(), 10);
    assert_ne!(other_bans, bans);
}

#[tokio::test]
async fn captchas_come_at_their_rate_and_only_the_right_answer_clears_them() {
    let r = rig(SiteSpec {
        accounts: 1,
        captcha_rate: 0.1,
        ..calm()
    })
    .await;
    let user = r.account(0).username.clone();
    let sid = r.login(0).await;
    let cookie = format!("sid={sid}");
    assert!(r.site.captcha_answer(&user).is_none());
    let (mut pages, mut captchas) = (0, 0);
    while pages < 300 {
        let g = r.item(&sid).await;
        if !is_captcha(&g) {
            assert_eq!(g.status, 200);
            pages += 1;
            continue;
        }
        captchas += 1;
        let answer = r.site.captcha_answer(&user).expect("a person sees it");
        // Pending until solved: a page, a wrong answer, a page again.
        assert!(is_captcha(&r.item(&sid).await));
        let wrong = r
            .post("/captcha", Some(&cookie), &[("answer", "WRONG")])
            .await;
        assert!(is_captcha(&wrong), "{wrong:?}");
        assert!(is_captcha(&r.item(&sid).await));
        let right = r
            .post("/captcha", Some(&cookie), &[("answer", &answer)])
            .await;
        assert_eq!(right.status, 200);
        assert!(!is_captcha(&right));
        assert!(r.site.captcha_answer(&user).is_none());
    }
    // 0.1 of about 330 rolls; the seed fixes the count.
    assert!((15..=50).contains(&captchas), "{captchas}");
    let t = r.truth();
    assert_eq!(t.accounts[0].captchas, captchas);
    assert_eq!(t.accounts[0].served.challenged, 3 * captchas);
    assert_eq!(t.accounts[0].served.ok, 300);
}

#[tokio::test]
async fn the_defence_change_halves_the_rate_remembers_429s_longer_and_raises_blocks_after_its_moment()
 {
    let change = Duration::from_secs(5);
    let r = rig(SiteSpec {
        accounts: 20,
        defence_change_at: Some(change),
        defence_block_rate: 0.1,
        ..calm()
    })
    .await;
    let mut sids = Vec::new();
    for i in 0..20 {
        sids.push(r.login(i).await);
    }
    for sid in &sids {
        for _ in 0..10 {
            assert_eq!(r.item(sid).await.status, 200, "no blocks before");
        }
    }
    assert!(r.truth().accounts.iter().all(|a| a.blocks.is_empty()));
    r.at(change);
    let mut denied = 0;
    for sid in &sids {
        for _ in 0..10 {
            let g = r.item(sid).await;
            if g.status == 403 {
                assert!(g.body.contains("access denied"));
                denied += 1;
            }
        }
    }
    let t = r.truth();
    let blocks: Vec<_> = t.accounts.iter().flat_map(|a| a.blocks.clone()).collect();
    assert!(blocks.len() >= 5, "{blocks:?}");
    assert!(denied >= blocks.len());
    assert!(
        blocks
            .iter()
            .all(|b| b.cause == BlockCause::DefenceChange && b.start >= change)
    );
    assert_eq!(t.defence_change_at, Some(change));

    // The rate limit halves at the change, and the site remembers an
    // account's 429s for its defence memory instead of one window: one 429
    // a second for four seconds was tolerated before the change and blocks
    // after it.
    let r = rig(SiteSpec {
        rate_max: 4,
        block_after_429: 3,
        defence_change_at: Some(change),
        defence_memory: Duration::from_secs(10),
        ..calm()
    })
    .await;
    let sid = r.login(0).await;
    let statuses = |gots: Vec<Got>| gots.iter().map(|g| g.status).collect::<Vec<_>>();
    for w in 0..4u32 {
        r.at(SEC * w);
        let mut gots = Vec::new();
        for _ in 0..5 {
            gots.push(r.item(&sid).await);
        }
        assert_eq!(
            statuses(gots),
            [200, 200, 200, 200, 429],
            "before, second {w}"
        );
    }
    assert!(r.truth().accounts[0].blocks.is_empty());
    for w in 0..4u32 {
        r.at(change + SEC * w);
        let mut gots = Vec::new();
        for _ in 0..3 {
            gots.push(r.item(&sid).await);
        }
        let expected = if w < 3 {
            [200, 200, 429]
        } else {
            [200, 200, 403]
        };
        assert_eq!(statuses(gots), expected, "after, second {w}");
    }
    let blocks = &r.truth().accounts[0].blocks;
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].cause, BlockCause::OverUse);
}

// ------------------------------------------------------------ sessions

#[tokio::test]
async fn sessions_expire_into_401_and_a_home_visit_rotates_them() {
    let r = rig(SiteSpec {
        session_ttl: Duration::from_secs(20),
        ..calm()
    })
    .await;
    let g = r.login_form(0).await;
    let sid1 = g.cookie("sid").unwrap();
    let set = &g.set_cookies[0];
    assert!(
        set.contains("Max-Age=20") && set.contains("Path=/") && set.contains("HttpOnly"),
        "{set}"
    );
    assert_eq!(r.item(&sid1).await.status, 200);
    let h = r.home(&sid1).await;
    assert_eq!(h.status, 200);
    let sid2 = h.cookie("sid").expect("a new session");
    assert_ne!(sid2, sid1);
    assert!(h.set_cookies[0].contains("Max-Age=20"));
    assert_eq!(r.item(&sid1).await.status, 200, "the old one lives on");
    r.at(Duration::from_secs(15));
    let sid3 = r.home(&sid2).await.cookie("sid").unwrap();
    r.at(Duration::from_secs(20));
    let g = r.item(&sid1).await;
    assert_eq!(g.status, 401, "expired at its own end");
    assert_eq!(r.item(&sid2).await.status, 401);
    let h = r.home(&sid1).await;
    assert_eq!((h.status, h.location.as_deref()), (302, Some("/login")));
    assert!(h.set_cookies.is_empty());
    assert_eq!(r.item(&sid3).await.status, 200, "rotated in time");
    let issued = r.site.issued_secrets();
    for sid in [&sid1, &sid2, &sid3] {
        assert!(issued.iter().any(|s| s.as_str() == sid.as_str()));
    }
    let g = r.item("sid-never-issued").await;
    assert_eq!(g.status, 401);
    let g = got(r.http.get(r.url("/item/7")).send().await.unwrap()).await;
    assert_eq!(g.status, 401, "no cookie at all");
    let t = r.truth();
    assert_eq!(t.accounts[0].keepalives, 2);
    assert_eq!(t.accounts[0].served.unauthorized, 2);
    assert_eq!(t.unknown_sessions, 2);
}

#[tokio::test]
async fn logins_with_totp_sms_captcha_and_a_wrong_password() {
    let r = rig(SiteSpec {
        accounts: 4,
        totp_share: 0.25,
        sms_share: 0.25,
        ..calm()
    })
    .await;
    let accounts = r.site.accounts();
    let ti = accounts.iter().position(|a| a.totp_seed.is_some()).unwrap();
    let si = accounts.iter().position(|a| a.sms).unwrap();
    let pi = accounts
        .iter()
        .position(|a| a.totp_seed.is_none() && !a.sms)
        .unwrap();
    assert_eq!(accounts.iter().filter(|a| a.totp_seed.is_some()).count(), 1);
    assert_eq!(accounts.iter().filter(|a| a.sms).count(), 1);

    // Wrong password, unknown user: the same answer.
    let bad = r
        .post(
            "/login",
            None,
            &[("username", &accounts[pi].username), ("password", "nope")],
        )
        .await;
    assert_eq!(bad.status, 200);
    assert!(bad.body.contains("invalid username or password"));
    assert!(bad.cookie("sid").is_none());
    let unknown = r
        .post("/login", None, &[("username", "nobody"), ("password", "x")])
        .await;
    assert_eq!(unknown.body, bad.body);

    // TOTP: the authenticator step, a wrong code, the right one.
    let g = r.login_form(ti).await;
    assert_eq!(g.status, 200);
    assert!(g.body.contains("enter your authenticator code"), "{g:?}");
    assert!(g.cookie("sid").is_none());
    let pending = format!("login={}", g.cookie("login").unwrap());
    let wrong = r
        .post("/login/2fa", Some(&pending), &[("otp", "000000")])
        .await;
    assert!(wrong.body.contains("enter your authenticator code"));
    let seed = accounts[ti].totp_seed.as_deref().unwrap();
    let code = totp::code_for_seed(seed, r.clock.now_ms()).unwrap();
    let ok = r
        .post("/login/2fa", Some(&pending), &[("otp", code.as_str())])
        .await;
    assert_eq!((ok.status, ok.location.as_deref()), (302, Some("/home")));
    let sid = ok.cookie("sid").unwrap();
    assert_eq!(r.item(&sid).await.status, 200);
    // The pending login is used up.
    let replay = r
        .post("/login/2fa", Some(&pending), &[("otp", code.as_str())])
        .await;
    assert!(replay.cookie("sid").is_none());

    // SMS: the code arrives in the outbox; a person types it.
    let user = accounts[si].username.clone();
    assert!(r.site.sms_code(&user).is_none());
    let g = r.login_form(si).await;
    assert!(g.body.contains("we sent a code to your phone"), "{g:?}");
    let pending = format!("login={}", g.cookie("login").unwrap());
    let code = r.site.sms_code(&user).expect("sent");
    assert_eq!(code.len(), 6);
    let wrong = r
        .post("/login/sms", Some(&pending), &[("code", "12345x")])
        .await;
    assert!(wrong.body.contains("we sent a code to your phone"));
    let ok = r
        .post("/login/sms", Some(&pending), &[("code", code.as_str())])
        .await;
    assert_eq!(ok.status, 302, "{ok:?}");
    assert_eq!(r.item(&ok.cookie("sid").unwrap()).await.status, 200);

    // A captcha pending on the account comes first at the login.
    let cap = rig(SiteSpec {
        captcha_rate: 1.0,
        ..calm()
    })
    .await;
    let sid = cap.login(0).await;
    assert!(is_captcha(&cap.item(&sid).await));
    let g = cap.login_form(0).await;
    assert!(is_captcha(&g), "{g:?}");
    let pending = format!("login={}", g.cookie("login").unwrap());
    let wrong = cap
        .post("/captcha", Some(&pending), &[("answer", "nope")])
        .await;
    assert!(is_captcha(&wrong));
    let answer = cap.site.captcha_answer(&cap.account(0).username).unwrap();
    let ok = cap
        .post("/captcha", Some(&pending), &[("answer", &answer)])
        .await;
    assert_eq!(ok.status, 302, "{ok:?}");
    assert!(ok.cookie("sid").is_some());
    let t = cap.truth();
    assert_eq!((t.accounts[0].logins, t.accounts[0].login_attempts), (2, 2));
}

#[tokio::test]
async fn oauth_tokens_rotate_with_a_grace_then_invalid_grant() {
    let r = rig(SiteSpec {
        flavour: Flavour::OAuth,
        accounts: 2,
        session_ttl: Duration::from_secs(20),
        refresh_grace: Duration::from_secs(2),
        ..calm()
    })
    .await;
    let a = r.account(0).clone();
    let (at0, rt0) = (
        a.access_token.clone().unwrap(),
        a.refresh_token.clone().unwrap(),
    );
    assert_eq!(a.access_expires_at, Some(T0 + 20_000));
    assert_eq!(r.item_bearer(&at0).await.status, 200);
    let g = r.token(&rt0, "credpool-sim").await;
    assert_eq!(g.status, 200, "{g:?}");
    let j = json(&g);
    assert_eq!(
        (j["token_type"].as_str(), j["expires_in"].as_u64()),
        (Some("Bearer"), Some(20))
    );
    let (at1, rt1) = (
        j["access_token"].as_str().unwrap().to_string(),
        j["refresh_token"].as_str().unwrap().to_string(),
    );
    assert!(at1 != at0 && rt1 != rt0, "rotated");
    let issued = r.site.issued_secrets();
    for t in [&at0, &rt0, &at1, &rt1] {
        assert!(issued.iter().any(|s| s.as_str() == t.as_str()));
    }
    assert_eq!(r.item_bearer(&at1).await.status, 200);
    // The old refresh token still works within its grace...
    r.at(Duration::from_millis(1_900));
    let g = r.token(&rt0, "credpool-sim").await;
    assert_eq!(g.status, 200, "{g:?}");
    let at2 = json(&g)["access_token"].as_str().unwrap().to_string();
    // ... and not after it.
    r.at(Duration::from_secs(2));
    let g = r.token(&rt0, "credpool-sim").await;
    assert_eq!(
        (g.status, json(&g)["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(r.token("rt-made-up", "credpool-sim").await.status, 400);
    let g = r.token(&rt1, "someone-else").await;
    assert_eq!(
        (g.status, json(&g)["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // HTTP Basic client authentication works too.
    let basic = got(r
        .http
        .post(r.url("/oauth/token"))
        .basic_auth("credpool-sim", None::<&str>)
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &rt1)])
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(basic.status, 200, "{basic:?}");
    // Access tokens expire into 401.
    r.at(Duration::from_secs(20));
    assert_eq!(r.item_bearer(&at0).await.status, 401);
    assert_eq!(r.item_bearer(&at1).await.status, 401, "issued at 0 s");
    assert_eq!(r.item_bearer(&at2).await.status, 200, "issued at 1.9 s");
    assert_eq!(r.truth().accounts[0].token_grants, 3);

    // A banned account's grant is refused as invalid_grant.
    let b = rig(SiteSpec {
        flavour: Flavour::OAuth,
        accounts: 2,
        ban_share: 0.5,
        ban_horizon: Duration::ZERO,
        ..calm()
    })
    .await;
    let t = b.truth();
    let i = t.accounts.iter().position(|a| a.banned.is_some()).unwrap();
    let acct = b.account(i).clone();
    let g = b
        .token(acct.refresh_token.as_deref().unwrap(), "credpool-sim")
        .await;
    assert_eq!(
        (g.status, json(&g)["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let g = b.item_bearer(acct.access_token.as_deref().unwrap()).await;
    assert!(g.status == 403 && g.body.contains("account banned"));
    assert_eq!(b.site.unbanned_accounts(), 1);
}

// ------------------------------------------------------------ determinism

/// A hostile spec: every defence on, so a transcript shows them all.
fn hostile() -> SiteSpec {
    SiteSpec {
        accounts: 6,
        seed: 99,
        rate_max: 3,
        rate_window: SEC,
        budget: 25,
        budget_window: Duration::from_secs(10),
        block_after_429: 2,
        block_for: (SEC, Duration::from_secs(3)),
        ban_after_abuse: 3,
        ban_share: 0.2,
        ban_horizon: Duration::from_secs(8),
        captcha_rate: 0.05,
        defence_change_at: Some(Duration::from_secs(15)),
        defence_block_rate: 0.05,
        ..calm()
    }
}

/// Logs in `accounts` at 0 s, then crawls by the `script` (account,
/// milliseconds since start) like a careful crawler: a captcha is answered
/// at once, an account answered 429 rests for its `Retry-After`, a blocked
/// one for 5 s, a banned one for good. The answers, by account.
async fn transcript(spec: SiteSpec, accounts: &[usize], script: &[(usize, u64)]) -> Vec<Vec<Got>> {
    let r = rig(spec).await;
    let n = r.site.accounts().len();
    let mut out = vec![Vec::new(); n];
    let mut sids = vec![String::new(); n];
    let mut resume_at = vec![0u64; n];
    for &i in accounts {
        let g = r.login_form(i).await;
        sids[i] = g.cookie("sid").unwrap_or_default();
        out[i].push(g);
    }
    for &(i, at) in script {
        if at < resume_at[i] {
            continue;
        }
        r.at(Duration::from_millis(at));
        let g = r.item(&sids[i]).await;
        if is_captcha(&g) {
            let answer = r.site.captcha_answer(&r.account(i).username).unwrap();
            let cookie = format!("sid={}", sids[i]);
            r.post("/captcha", Some(&cookie), &[("answer", &answer)])
                .await;
        }
        resume_at[i] = match (g.status, g.retry_after) {
            (429, Some(secs)) => at + secs * 1000,
            (403, _) if g.body.contains("banned") => u64::MAX,
            (403, _) => at + 5000,
            _ => 0,
        };
        out[i].push(g);
    }
    out
}

#[tokio::test]
async fn the_same_seed_and_requests_give_the_same_answers_whatever_the_interleaving() {
    let accounts = [0, 1, 2];
    let script: Vec<(usize, u64)> = (0..300u64).map(|n| ((n % 3) as usize, n * 100)).collect();
    let a = transcript(hostile(), &accounts, &script).await;
    let b = transcript(hostile(), &accounts, &script).await;
    assert_eq!(a, b);
    // Every kind of answer is in it.
    let all: Vec<&Got> = a.iter().flatten().collect();
    let has = |f: &dyn Fn(&Got) -> bool| all.iter().any(|g| f(g));
    assert!(has(&|g| g.status == 200 && g.body.contains("item")));
    assert!(has(&|g| g.status == 429));
    assert!(has(&|g| g.status == 403 && g.body.contains("access denied")));
    assert!(has(&|g| is_captcha(g)));
    // Account 0 alone, at the same moments: the same answers.
    let alone: Vec<(usize, u64)> = script.iter().copied().filter(|(i, _)| *i == 0).collect();
    let c = transcript(hostile(), &[0], &alone).await;
    assert_eq!(c[0], a[0], "independent of the other accounts' requests");
    // Another seed, other answers.
    let d = transcript(
        SiteSpec {
            seed: 100,
            ..hostile()
        },
        &accounts,
        &script,
    )
    .await;
    assert_ne!(d, a);
}

#[tokio::test]
async fn a_site_shut_down_stops_answering() {
    let r = rig(calm()).await;
    let sid = r.login(0).await;
    assert_eq!(r.item(&sid).await.status, 200);
    let url = r.url("/item/7");
    r.site.shutdown();
    // Give the connection tasks a moment to see the stop.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fresh = reqwest::Client::new();
    assert!(fresh.get(&url).send().await.is_err(), "nothing listens");
}

// ------------------------------------------------------------ credpool

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

/// A pool through the policy component, configured by the site's own
/// `sites_toml`, on the site's clock.
fn pool_for(site: &SimSite, clock: &ManualClock) -> Pool {
    let config = ConfigFile::parse(&site.sites_toml()).unwrap();
    let mut options = PoolOptions::in_memory();
    options.clock = Some(clock.clone());
    options.policy_config = config.policy_config_json();
    let pool = Pool::open(options).unwrap();
    pool.attach_refresher(RefresherOptions::new(config.sites.clone()))
        .unwrap();
    pool
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn credpool_logs_in_answers_totp_itself_keeps_sessions_alive_and_takes_an_sms_code() {
    let logs = support::loopback::logs;
    logs();
    let rt = runtime();
    let clock = ManualClock::at(T0);
    let spec = SiteSpec {
        name: "shop.sim".into(),
        accounts: 6,
        totp_share: 1.0 / 3.0,
        sms_share: 1.0 / 6.0,
        session_ttl: Duration::from_secs(20),
        ..calm()
    };
    let site = rt
        .block_on(SimSite::start_with_clock(spec, Arc::new(clock.clone())))
        .unwrap();
    let pool = pool_for(&site, &clock);
    let accounts = site.accounts();
    let plain = accounts
        .iter()
        .find(|a| a.totp_seed.is_none() && !a.sms)
        .unwrap();
    let with_totp = accounts.iter().find(|a| a.totp_seed.is_some()).unwrap();
    let with_sms = accounts.iter().find(|a| a.sms).unwrap();
    for a in [plain, with_totp, with_sms] {
        pool.add(a.new_credential("shop.sim")).unwrap();
    }
    let id = |a: &SimAccount| a.credential_id("shop.sim");
    let status = |a: &SimAccount| pool.view(&id(a), AccessLevel::Internal).unwrap().status;

    // The first ticks log everyone in; the TOTP step is answered by the
    // host from the stored seed, the SMS step waits for a person.
    for _ in 0..3 {
        pool.tick().unwrap();
        settle(&pool);
    }
    assert_eq!(status(plain), Status::Active);
    assert_eq!(
        status(with_totp),
        Status::Active,
        "TOTP answered by credpool"
    );
    assert_eq!(status(with_sms), Status::Challenged);
    let tickets = pool.tickets().unwrap();
    assert_eq!(tickets.len(), 1);
    assert_eq!(tickets[0].credential_id, id(with_sms));
    assert_eq!(tickets[0].kind, credpool::ChallengeKind::SmsCode);
    // The person reads the phone.
    let code = site.sms_code(&with_sms.username).expect("an SMS was sent");
    pool.answer_challenge(&tickets[0].id, code.clone()).unwrap();
    settle(&pool);
    assert_eq!(status(with_sms), Status::Active);
    assert!(pool.tickets().unwrap().is_empty());
    let t = site.truth();
    let truth = |a: &SimAccount| {
        t.accounts
            .iter()
            .find(|x| x.username == a.username)
            .unwrap()
            .clone()
    };
    for a in [plain, with_totp, with_sms] {
        assert_eq!(truth(a).logins, 1, "{}", a.username);
    }

    // Sessions live 20 s; credpool visits /home before they end.
    let sid_of = |a: &SimAccount| -> String {
        let s = pool
            .vault()
            .get_secrets("shop.sim", &id(a))
            .unwrap()
            .unwrap();
        s.cookies
            .iter()
            .find(|(n, _)| n == "sid")
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let first = sid_of(plain);
    let first_expiry = pool
        .view(&id(plain), AccessLevel::Internal)
        .unwrap()
        .internal
        .unwrap()
        .expires_at
        .unwrap();
    assert_eq!(first_expiry, T0 + 20_000);
    for _ in 0..5 {
        clock.advance(Duration::from_secs(5));
        pool.tick().unwrap();
        settle(&pool);
    }
    let now = clock.now_ms();
    assert!(now > first_expiry);
    let http = reqwest::Client::new();
    let crawl = |sid: &str| {
        rt.block_on(async {
            let r = http
                .get(format!("{}/item/1", site.base_url()))
                .header("Cookie", format!("sid={sid}"))
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        })
    };
    assert_eq!(crawl(&first), 401, "the first session is over");
    for a in [plain, with_totp, with_sms] {
        assert_eq!(status(a), Status::Active);
        assert_eq!(crawl(&sid_of(a)), 200, "{} kept alive", a.username);
        let meta = pool.view(&id(a), AccessLevel::Internal).unwrap();
        assert!(meta.internal.unwrap().expires_at.unwrap() > now);
        let tr = site.truth();
        let tr = tr
            .accounts
            .iter()
            .find(|x| x.username == a.username)
            .unwrap();
        assert!(tr.keepalives >= 1, "{tr:?}");
        assert_eq!(tr.logins, 1, "kept alive, not logged in again");
    }
    let stats = pool.stats(Some("shop.sim")).unwrap();
    assert_eq!(stats[0].refresh.failed, 0, "{:?}", stats[0].refresh);
    // No secret the site gave out reached a log line.
    let text = logs();
    let secrets = site.issued_secrets();
    assert!(secrets.iter().any(|s| s.as_str() == first));
    assert!(
        secrets
            .iter()
            .any(|s| s.as_str() == plain.password.as_str())
    );
    for s in &secrets {
        assert!(
            !text.contains(s.as_str()),
            "a secret ({} chars) leaked",
            s.len()
        );
    }
    drop(pool);
    drop(site);
}

#[test]
fn a_captcha_found_by_the_keep_alive_becomes_a_ticket_a_person_answers() {
    let rt = runtime();
    let clock = ManualClock::at(T0);
    let spec = SiteSpec {
        accounts: 1,
        captcha_rate: 1.0,
        session_ttl: Duration::from_secs(20),
        ..calm()
    };
    let site = rt
        .block_on(SimSite::start_with_clock(spec, Arc::new(clock.clone())))
        .unwrap();
    let pool = pool_for(&site, &clock);
    let a = &site.accounts()[0];
    pool.add(a.new_credential("shop.sim")).unwrap();
    let id = a.credential_id("shop.sim");
    let status = || pool.view(&id, AccessLevel::Internal).unwrap().status;
    pool.tick().unwrap();
    settle(&pool);
    assert_eq!(status(), Status::Active);
    // A crawl meets a captcha: the account is stuck behind it.
    let sid = pool
        .vault()
        .get_secrets("shop.sim", &id)
        .unwrap()
        .unwrap()
        .cookies[0]
        .1
        .clone();
    let http = reqwest::Client::new();
    let body = rt.block_on(async {
        http.get(format!("{}/item/1", site.base_url()))
            .header("Cookie", format!("sid={sid}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(body.contains(r#"<form id="captcha""#));
    // The next keep-alive sees it, logs in again, and the login stops at
    // the captcha: a ticket for a person.
    // (Due a third of the session's life before expiry, less skew and jitter.)
    clock.advance(Duration::from_secs(15));
    pool.tick().unwrap();
    settle(&pool);
    assert_eq!(
        status(),
        Status::Challenged,
        "out of rotation, on its ticket"
    );
    let tickets = pool.tickets().unwrap();
    assert_eq!(tickets.len(), 1);
    assert_eq!(tickets[0].kind, credpool::ChallengeKind::CaptchaImage);
    let answer = site.captcha_answer(&a.username).expect("shown");
    pool.answer_challenge(&tickets[0].id, answer).unwrap();
    settle(&pool);
    assert_eq!(status(), Status::Active);
    assert!(site.captcha_answer(&a.username).is_none(), "solved");
    let t = site.truth();
    assert_eq!((t.accounts[0].logins, t.accounts[0].captchas), (2, 1));
}
