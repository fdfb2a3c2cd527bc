//! A simulated hostile site on loopback: one site, N accounts, and the
//! defences of a real one, so a policy and its configuration can be tried
//! before real accounts are at stake.
//!
//! - Form logins (some accounts with a TOTP or an SMS second step), session
//!   cookies that expire and rotate on a visit of `/home`; or an OAuth
//!   token endpoint with rotating refresh tokens ([`Flavour`]).
//! - Per account: a request-rate limit and a "daily" budget answered with
//!   429 and `Retry-After`; over-use (ignoring 429s) blocks the account for
//!   a hidden time (403 `access denied`); using it while blocked is abuse,
//!   and too much abuse bans it for good (403 `account banned`); a share of
//!   accounts is banned at a random moment anyway; captchas now and then;
//!   and a defence change at a set moment, after which blocks rise.
//! - Everything random is seeded per account and per request of that
//!   account, so the site's behaviour is a function of each
//!   account's own requests, not of how workers interleave (`seeded`);
//!   time comes from a replaceable [`SiteClock`].
//! - [`SimSite::truth`] tells what really happened, for the report to
//!   compare with what the pool believed.
//!
//! The protocol (routes, answers, order of checks) is in `routes`; the
//! defences of one account in `rules`.

mod clock;
mod png;
mod routes;
mod rules;
mod seeded;
mod slider;
mod truth;

pub use clock::{SiteClock, SystemClock};
pub use slider::{Rejection as SliderRejection, TOLERANCE as SLIDER_TOLERANCE};
pub use truth::{AccountTruth, Ban, BanCause, BlockCause, BlockEpisode, Served, SiteTruth};

use crate::pool::NewCredential;
use crate::{CredentialKind, Secrets};
use rules::{Account, Ms, ms};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use zeroize::Zeroizing;

/// How accounts sign in and crawl.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// A login form, a session cookie `sid`, kept alive by visiting `/home`.
    Form,
    /// Bearer access tokens from an OAuth token endpoint (refresh grant).
    OAuth,
}

/// What the site's captchas ask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CaptchaStyle {
    /// Type the letters of a picture (`POST /captcha`, `answer`).
    #[default]
    Text,
    /// Drag a piece into a gap (`POST /captcha/slider`, `track`: JSON
    /// `[[x, y, t_ms], …]`); the track must end on the gap and move as a
    /// hand does.
    Slider,
}

/// The site's shape and defences. [`Default`] is tuned for a 60 s run of
/// about 200 accounts and 16 workers.
#[derive(Clone, Debug)]
pub struct SiteSpec {
    /// The credpool site key, e.g. `shop.sim`.
    pub name: String,
    pub flavour: Flavour,
    pub accounts: usize,
    /// Everything random is drawn from this and `name`.
    pub seed: u64,
    /// Form: the share of accounts with a TOTP second step (the seed is in
    /// the credential, so credpool answers it).
    pub totp_share: f64,
    /// Form: the share of accounts with an SMS second step (a person reads
    /// the code: [`SimSite::sms_code`]).
    pub sms_share: f64,
    /// Each answer waits a uniform time in this range (page time).
    pub latency: (Duration, Duration),
    /// Form: a session cookie's life; OAuth: an access token's.
    pub session_ttl: Duration,
    /// Requests served per account per fixed window; more get 429.
    pub rate_max: u32,
    pub rate_window: Duration,
    /// Requests served per account per "day" (compressed); more get 429
    /// with `Retry-After` to the day's end.
    pub budget: u32,
    pub budget_window: Duration,
    /// 429 answers within one rate window beyond which the account is
    /// blocked for over-use.
    pub block_after_429: u32,
    /// A block's hidden length, drawn per episode.
    pub block_for: (Duration, Duration),
    /// Requests or logins during one block beyond which the account is
    /// banned for good.
    pub ban_after_abuse: u32,
    /// The share of accounts banned for good at a random moment in
    /// `[0, ban_horizon]`, whatever is done with them.
    pub ban_share: f64,
    pub ban_horizon: Duration,
    /// Per crawl request: the chance the account must solve a captcha
    /// before going on.
    pub captcha_rate: f64,
    /// From this moment on, `rate_max` halves, the 429s that lead to a block
    /// are counted over `defence_memory` instead of one rate window, and
    /// each crawl request blocks its account with probability
    /// `defence_block_rate`, whatever the pace.
    pub defence_change_at: Option<Duration>,
    pub defence_block_rate: f64,
    pub defence_memory: Duration,
    /// OAuth: how long a rotated-out refresh token still works.
    pub refresh_grace: Duration,
    pub captcha_style: CaptchaStyle,
    /// Form: an SMS code is sent only when asked (`POST /login/sms/send`
    /// with the login's cookie), as many sites do.
    pub sms_on_request: bool,
}

impl Default for SiteSpec {
    fn default() -> Self {
        SiteSpec {
            name: "shop.sim".into(),
            flavour: Flavour::Form,
            accounts: 200,
            seed: 1,
            totp_share: 0.2,
            sms_share: 0.05,
            latency: (Duration::from_millis(5), Duration::from_millis(25)),
            session_ttl: Duration::from_secs(20),
            // 16 workers at about 15 ms a page ask about 5 pages a second
            // of each of 200 accounts: the rate and the budget leave room
            // until the defence change halves the rate.
            rate_max: 10,
            rate_window: Duration::from_secs(1),
            budget: 300,
            budget_window: Duration::from_secs(30),
            block_after_429: 3,
            defence_memory: Duration::from_secs(10),
            block_for: (Duration::from_secs(5), Duration::from_secs(15)),
            ban_after_abuse: 2,
            ban_share: 0.02,
            ban_horizon: Duration::from_secs(60),
            captcha_rate: 0.0005,
            defence_change_at: Some(Duration::from_secs(40)),
            defence_block_rate: 0.001,
            refresh_grace: Duration::from_secs(2),
            captcha_style: CaptchaStyle::Text,
            sms_on_request: false,
        }
    }
}

/// In the page of a pending captcha (a crawl page, `/home` or a login).
pub const CAPTCHA_MARKER: &str = r#"<form id="captcha""#;
/// In the page of a login's TOTP step.
pub const TOTP_MARKER: &str = "enter your authenticator code";
/// In the page of a login's SMS step.
pub const SMS_MARKER: &str = "we sent a code to your phone";
/// In the 403 page of an account banned for good.
pub const BANNED_MARKER: &str = "account banned";
/// In the 403 page of a blocked account.
pub const DENIED_MARKER: &str = "access denied";

/// The OAuth client id the token endpoint accepts.
pub const CLIENT_ID: &str = "credpool-sim";

/// One account as its owner knows it: what to add to the pool.
#[derive(Clone)]
pub struct SimAccount {
    pub username: String,
    pub password: Zeroizing<String>,
    /// Base32 TOTP seed of an account with an authenticator step.
    pub totp_seed: Option<String>,
    /// Whether the login sends a code to the account's phone.
    pub sms: bool,
    /// The phone of an SMS account (a ticket shows it masked).
    pub phone: Option<String>,
    /// OAuth: the tokens issued when the site started.
    pub refresh_token: Option<String>,
    pub access_token: Option<String>,
    /// OAuth: when `access_token` expires (milliseconds since the epoch).
    pub access_expires_at: Option<i64>,
}

impl std::fmt::Debug for SimAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimAccount")
            .field("username", &self.username)
            .field("totp", &self.totp_seed.is_some())
            .field("sms", &self.sms)
            .field("oauth", &self.refresh_token.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for SimAccount {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.totp_seed.zeroize();
        self.refresh_token.zeroize();
        self.access_token.zeroize();
    }
}

impl SimAccount {
    /// The credential id [`SimAccount::new_credential`] gives it.
    pub fn credential_id(&self, site: &str) -> String {
        format!("{site}:{}", self.username)
    }

    /// What to add to the pool for this account: a form account (username,
    /// password, TOTP seed) whose first tick logs it in, or an OAuth token
    /// with its refresh token.
    pub fn new_credential(&self, site: &str) -> NewCredential {
        let mut secrets = Secrets::default();
        secrets.username = Some(self.username.clone());
        let kind = match &self.refresh_token {
            Some(rt) => {
                secrets.refresh_token = Some(rt.clone());
                secrets.access_token = self.access_token.clone();
                CredentialKind::Token
            }
            None => {
                secrets.password = Some(self.password.to_string());
                secrets.totp_seed = self.totp_seed.clone();
                CredentialKind::Account
            }
        };
        let mut n = NewCredential::new(site, kind).with_id(&self.credential_id(site));
        n.username = Some(self.username.clone());
        n.expires_at = self.access_expires_at;
        n.phone = self.phone.clone();
        n.secrets = secrets;
        n
    }
}

/// A session id or token as a map key: zeroized when dropped, looked up
/// by `&str`.
#[derive(PartialEq, Eq, Hash)]
struct Key(String);

impl Key {
    fn new(s: &str) -> Key {
        Key(s.to_string())
    }
}

impl std::borrow::Borrow<str> for Key {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// A session cookie or access token.
#[derive(Clone, Copy)]
struct Grant {
    account: usize,
    expires: Ms,
}

/// A refresh token; rotated-out ones work until `retired + grace`.
#[derive(Clone, Copy)]
struct RefreshGrant {
    account: usize,
    retired: Option<Ms>,
}

/// A second step of a login.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Captcha,
    Totp,
    Sms,
}

/// A login past its password, waiting for its other steps.
struct PendingLogin {
    account: usize,
    steps: VecDeque<Step>,
    expires: Ms,
}

/// How long a login may wait at a step (an SMS code's usual life).
const PENDING_LOGIN_TTL: Duration = Duration::from_secs(300);

/// Bans for good, counted without a scan: random bans by their sorted
/// moments, abuse bans as they happen.
struct BanCount {
    random_at: Vec<Ms>,
    /// Abuse bans of accounts with no random ban.
    abuse_only: AtomicUsize,
    /// Random moments of accounts banned by abuse before them.
    abuse_first: Mutex<Vec<Ms>>,
}

impl BanCount {
    fn banned(&self, now: Ms) -> usize {
        let random = self.random_at.partition_point(|&at| at <= now);
        let early = self
            .abuse_first
            .lock()
            .unwrap()
            .iter()
            .filter(|&&at| at > now)
            .count();
        random + self.abuse_only.load(Ordering::Relaxed) + early
    }

    fn abused(&self, random_at: Option<Ms>) {
        match random_at {
            Some(at) => self.abuse_first.lock().unwrap().push(at),
            None => {
                self.abuse_only.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The site's state, shared by the connection tasks.
struct Shared {
    spec: SiteSpec,
    /// All draws come from this (the spec's seed and the site's name).
    seed: u64,
    clock: Arc<dyn SiteClock>,
    start_ms: i64,
    public: Vec<SimAccount>,
    by_username: HashMap<String, usize>,
    accounts: Vec<Mutex<Account>>,
    /// Session ids and access tokens.
    sessions: Mutex<HashMap<Key, Grant>>,
    refresh_tokens: Mutex<HashMap<Key, RefreshGrant>>,
    logins: Mutex<HashMap<Key, PendingLogin>>,
    requests: AtomicU64,
    unknown_sessions: AtomicU64,
    bans: BanCount,
    /// Per account: crawl requests being answered now, and how many arrived
    /// while another was ([`AccountTruth::concurrent`]).
    in_flight: Vec<AtomicU32>,
    concurrent: Vec<AtomicU64>,
}

impl Shared {
    fn new(spec: SiteSpec, clock: Arc<dyn SiteClock>) -> Shared {
        let n = spec.accounts;
        let seed = seeded::site_seed(spec.seed, &spec.name);
        let start_ms = clock.now_ms();
        let count = |share: f64| ((share.clamp(0.0, 1.0) * n as f64).round() as usize).min(n);
        // Exact shares, the accounts picked in a seeded order.
        let roles = seeded::permutation(seed, 0, n);
        let totp_n = count(spec.totp_share);
        let sms_n = count(spec.sms_share).min(n - totp_n);
        let mut totp = vec![false; n];
        let mut sms = vec![false; n];
        for &i in &roles[..totp_n] {
            totp[i] = true;
        }
        for &i in &roles[totp_n..totp_n + sms_n] {
            sms[i] = true;
        }
        let mut banned = vec![false; n];
        for &i in &seeded::permutation(seed, 1, n)[..count(spec.ban_share)] {
            banned[i] = true;
        }
        let mut public = Vec::with_capacity(n);
        let mut accounts = Vec::with_capacity(n);
        let mut random_at = Vec::new();
        for i in 0..n {
            let mut r = seeded::rng(seed, i, seeded::Stream::Account, 0);
            let password = seeded::text(&mut r, b"abcdefghijkmnopqrstuvwxyz23456789", 16);
            let totp_key = seeded::bytes(&mut r, 20);
            let ban_at = banned[i].then(|| seeded::millis_between(&mut r, 0, ms(spec.ban_horizon)));
            random_at.extend(ban_at);
            public.push(SimAccount {
                username: format!("user{i:04}"),
                password: Zeroizing::new(format!("pw-{}", password.as_str())),
                totp_seed: (spec.flavour == Flavour::Form && totp[i])
                    .then(|| seeded::base32(&totp_key).to_string()),
                sms: spec.flavour == Flavour::Form && sms[i],
                phone: (spec.flavour == Flavour::Form && sms[i])
                    .then(|| format!("+1 555 {:03} {:04}", i / 10_000 % 1000, i % 10_000)),
                refresh_token: None,
                access_token: None,
                access_expires_at: None,
            });
            accounts.push(Mutex::new(Account::new(i, seed, ban_at)));
        }
        random_at.sort_unstable();
        let by_username = public
            .iter()
            .enumerate()
            .map(|(i, a)| (a.username.clone(), i))
            .collect();
        let mut shared = Shared {
            spec,
            seed,
            clock,
            start_ms,
            public,
            by_username,
            accounts,
            sessions: Mutex::new(HashMap::new()),
            refresh_tokens: Mutex::new(HashMap::new()),
            logins: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
            unknown_sessions: AtomicU64::new(0),
            bans: BanCount {
                random_at,
                abuse_only: AtomicUsize::new(0),
                abuse_first: Mutex::new(Vec::new()),
            },
            in_flight: (0..n).map(|_| AtomicU32::new(0)).collect(),
            concurrent: (0..n).map(|_| AtomicU64::new(0)).collect(),
        };
        if shared.spec.flavour == Flavour::OAuth {
            for i in 0..n {
                let mut a = shared.accounts[i].lock().unwrap();
                let (access, refresh, expires) = shared.issue_tokens(i, &mut a, 0);
                drop(a);
                let p = &mut shared.public[i];
                p.access_token = Some(access.to_string());
                p.refresh_token = Some(refresh.to_string());
                p.access_expires_at = Some(start_ms + expires as i64);
            }
        }
        shared
    }

    /// Milliseconds since the site started.
    fn now(&self) -> Ms {
        (self.clock.now_ms() - self.start_ms).max(0) as Ms
    }

    /// Milliseconds since the epoch at site time `at`.
    fn epoch_ms(&self, at: Ms) -> i64 {
        self.start_ms + at as i64
    }

    fn ttl(&self) -> Ms {
        ms(self.spec.session_ttl).max(1)
    }

    /// The next answer's page time.
    fn latency(&self) -> Duration {
        let (lo, hi) = self.spec.latency;
        if hi.is_zero() {
            return Duration::ZERO;
        }
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let mut r = seeded::rng(self.seed, seeded::SITE, seeded::Stream::Latency, n);
        Duration::from_millis(seeded::millis_between(&mut r, ms(lo), ms(hi)))
    }

    /// Counts an abuse ban that `a` just got, if it did.
    fn note_ban(&self, a: &mut Account) {
        if a.take_abuse_ban() {
            self.bans.abused(a.random_ban_at());
        }
    }

    /// A new session for account `i` (whose lock `a` is).
    /// Session id `n` of account `i` (a draw: it can be drawn again).
    fn session_id(&self, i: usize, n: u64) -> Zeroizing<String> {
        seeded::token(
            &mut seeded::rng(self.seed, i, seeded::Stream::Session, n),
            "sid-",
        )
    }

    /// Access and refresh token `n` of account `i` (drawn like a session).
    fn token_pair(&self, i: usize, n: u64) -> (Zeroizing<String>, Zeroizing<String>) {
        let mut r = seeded::rng(self.seed, i, seeded::Stream::Session, n);
        (seeded::token(&mut r, "at-"), seeded::token(&mut r, "rt-"))
    }

    /// The pending-login cookie of login attempt `n` of account `i`.
    fn login_id(&self, i: usize, n: u64) -> Zeroizing<String> {
        seeded::token(
            &mut seeded::rng(self.seed, i, seeded::Stream::Login, n),
            "lg-",
        )
    }

    fn issue_session(&self, i: usize, a: &mut Account, now: Ms) -> Zeroizing<String> {
        let sid = self.session_id(i, a.issued);
        a.issued += 1;
        let mut sessions = self.sessions.lock().unwrap();
        // Forget sessions long dead now and then (they answer 401 anyway).
        if sessions.len() > 4 * self.spec.accounts.max(256) {
            let horizon = now.saturating_sub(10 * self.ttl());
            sessions.retain(|_, g| g.expires > horizon);
        }
        sessions.insert(
            Key::new(&sid),
            Grant {
                account: i,
                expires: now + self.ttl(),
            },
        );
        sid
    }

    /// A new access and refresh token for account `i`; the access
    /// token's expiry (site time).
    fn issue_tokens(
        &self,
        i: usize,
        a: &mut Account,
        now: Ms,
    ) -> (Zeroizing<String>, Zeroizing<String>, Ms) {
        let (access, refresh) = self.token_pair(i, a.issued);
        a.issued += 1;
        let expires = now + self.ttl();
        self.sessions.lock().unwrap().insert(
            Key::new(&access),
            Grant {
                account: i,
                expires,
            },
        );
        self.refresh_tokens.lock().unwrap().insert(
            Key::new(&refresh),
            RefreshGrant {
                account: i,
                retired: None,
            },
        );
        (access, refresh, expires)
    }
}

/// A crawl request of one account being answered: counted in
/// `in_flight` from its arrival until the answer leaves (dropped).
struct Flight<'a> {
    shared: &'a Shared,
    account: usize,
}

impl<'a> Flight<'a> {
    /// Starts one; notes it if another of the account's was in flight.
    fn start(shared: &'a Shared, account: usize) -> Flight<'a> {
        if shared.in_flight[account].fetch_add(1, Ordering::SeqCst) > 0 {
            shared.concurrent[account].fetch_add(1, Ordering::Relaxed);
        }
        Flight { shared, account }
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        self.shared.in_flight[self.account].fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running simulated site. Dropping it stops it.
pub struct SimSite {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for SimSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimSite")
            .field("name", &self.shared.spec.name)
            .field("addr", &self.addr)
            .field("accounts", &self.shared.spec.accounts)
            .finish_non_exhaustive()
    }
}

impl SimSite {
    /// Starts the site on 127.0.0.1, a free port, on the caller's tokio
    /// runtime, on the system's clock.
    pub async fn start(spec: SiteSpec) -> std::io::Result<SimSite> {
        Self::start_with_clock(spec, Arc::new(SystemClock::new())).await
    }

    /// Starts the site on the given clock (tests move it by hand).
    pub async fn start_with_clock(
        spec: SiteSpec,
        clock: Arc<dyn SiteClock>,
    ) -> std::io::Result<SimSite> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(spec, clock));
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(routes::serve(listener, shared.clone(), stopped));
        Ok(SimSite { shared, addr, stop })
    }

    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn spec(&self) -> &SiteSpec {
        &self.shared.spec
    }

    pub fn accounts(&self) -> &[SimAccount] {
        &self.shared.public
    }

    /// Time since the site started, on its clock.
    pub fn elapsed(&self) -> Duration {
        Duration::from_millis(self.shared.now())
    }

    /// The `[sites."<name>"]` tables of `credpool.toml` that make credpool's
    /// lifecycle work against this site.
    pub fn sites_toml(&self) -> String {
        let spec = &self.shared.spec;
        let base = self.base_url();
        let name = &spec.name;
        // A session behind a captcha counts as logged out: the re-login
        // meets the captcha and opens a ticket for a person.
        // A third of the session's life ahead (whole seconds: the policy
        // counts in seconds). This site never ends a session for its age,
        // so no re-login by age within a run.
        let before = (spec.session_ttl.as_secs() / 3).max(1);
        let common = format!(
            "refresh_before_expire = \"{before}s\"\nmax_age = \"1d\"\nrequest_timeout = \"10s\"\nticket_timeout = \"30s\"\ncode_ticket_timeout = \"30s\"\nban = {{ body = [\"{BANNED_MARKER}\"] }}\n"
        );
        let captcha_rule = match spec.captcha_style {
            CaptchaStyle::Text => format!(
                r#"kind = "captcha-image"
submit_url = "{base}/captcha"
field = "answer""#
            ),
            CaptchaStyle::Slider => format!(
                r#"kind = "captcha-slider"
submit_url = "{base}/captcha/slider"
field = "track""#
            ),
        };
        let send_url = if spec.sms_on_request {
            format!("send_url = \"{base}/login/sms/send\"\n")
        } else {
            String::new()
        };
        match spec.flavour {
            Flavour::Form => format!(
                r#"[sites."{name}"]
method = "cookie-visit"
refresh_url = "{base}/home"
{common}logout = {{ redirect_to = ["/login"], status = [401], body = ['{captcha}'] }}

[sites."{name}".login]
url = "{base}/login"
username_field = "username"
password_field = "password"
success = {{ cookie = "sid" }}

[[sites."{name}".login.challenges]]
{captcha_rule}
detect = {{ body = ['{captcha}'] }}
image_after = '{captcha}'
instruction_after = '<p class="hint">'

[[sites."{name}".login.challenges]]
kind = "two-factor"
detect = {{ body = ["{totp}"] }}
submit_url = "{base}/login/2fa"
field = "otp"

[[sites."{name}".login.challenges]]
kind = "sms-code"
detect = {{ body = ["{sms}"] }}
submit_url = "{base}/login/sms"
field = "code"
{send_url}"#,
                captcha = CAPTCHA_MARKER,
                totp = TOTP_MARKER,
                sms = SMS_MARKER,
            ),
            Flavour::OAuth => format!(
                r#"[sites."{name}"]
method = "oauth-refresh"
token_url = "{base}/oauth/token"
client_id = "{CLIENT_ID}"
client_auth = "body"
{common}"#
            ),
        }
    }

    fn account(&self, username: &str) -> Option<std::sync::MutexGuard<'_, Account>> {
        let i = *self.shared.by_username.get(username)?;
        Some(self.shared.accounts[i].lock().unwrap())
    }

    /// The last code the account's phone received (the simulated person
    /// reads it).
    pub fn sms_code(&self, username: &str) -> Option<Zeroizing<String>> {
        self.account(username)?.sms_code().cloned()
    }

    /// What a person sees in the account's pending captcha image.
    pub fn captcha_answer(&self, username: &str) -> Option<Zeroizing<String>> {
        self.account(username)?.captcha().cloned()
    }

    /// Makes the account meet a captcha (as a crawl request sometimes does):
    /// its next login or page asks it first.
    pub fn raise_captcha(&self, username: &str) -> bool {
        self.account(username)
            .map(|mut a| a.raise_captcha())
            .is_some()
    }

    /// The picture of the account's pending captcha, as `/captcha.png`
    /// serves it.
    pub fn captcha_image(&self, username: &str) -> Option<Vec<u8>> {
        Some(slider::image(self.account(username)?.captcha()?))
    }

    /// The test hook of a person's eyes: the text in a captcha picture
    /// this site served (`/captcha.png`), whichever account it is pending
    /// for; `None` for a picture of no pending captcha. A test that sees
    /// only the picture (in a browser, say) reads its answer here.
    pub fn answer_of_image(&self, image: &[u8]) -> Option<Zeroizing<String>> {
        self.shared.accounts.iter().find_map(|a| {
            let a = a.lock().unwrap();
            let drawn = a.captcha()?;
            (slider::image(drawn) == image).then(|| drawn.clone())
        })
    }

    /// Where the gap of the account's pending slider is (pixels from the
    /// left): what a person sees.
    pub fn slider_gap(&self, username: &str) -> Option<i64> {
        Some(slider::gap_of(self.account(username)?.captcha()?))
    }

    /// Every password, TOTP seed, session id, pending-login cookie, access
    /// and refresh token the site has given out so far, for a leak scan
    /// (drawn again from the seed, not kept).
    pub fn issued_secrets(&self) -> Vec<Zeroizing<String>> {
        let s = &self.shared;
        let mut out = Vec::new();
        for (i, (a, p)) in s.accounts.iter().zip(&s.public).enumerate() {
            out.push(p.password.clone());
            out.extend(
                p.totp_seed
                    .as_deref()
                    .map(|t| Zeroizing::new(t.to_string())),
            );
            let (issued, attempts) = {
                let a = a.lock().unwrap();
                (a.issued, a.login_attempts)
            };
            for n in 0..issued {
                match s.spec.flavour {
                    Flavour::Form => out.push(s.session_id(i, n)),
                    Flavour::OAuth => {
                        let (access, refresh) = s.token_pair(i, n);
                        out.extend([access, refresh]);
                    }
                }
            }
            out.extend((1..=attempts).map(|n| s.login_id(i, n)));
        }
        out
    }

    /// Accounts not banned for good now (no scan).
    pub fn unbanned_accounts(&self) -> usize {
        let now = self.shared.now();
        self.shared
            .spec
            .accounts
            .saturating_sub(self.shared.bans.banned(now))
    }

    /// What really happened, per account.
    pub fn truth(&self) -> SiteTruth {
        let now = self.shared.now();
        let accounts = self
            .shared
            .accounts
            .iter()
            .zip(&self.shared.public)
            .zip(&self.shared.concurrent)
            .map(|((a, p), concurrent)| {
                let a = a.lock().unwrap();
                AccountTruth {
                    username: p.username.clone(),
                    banned: a.ban(now),
                    blocks: a.episodes(),
                    served: a.served,
                    login_attempts: a.login_attempts,
                    logins: a.logins,
                    keepalives: a.keepalives,
                    token_grants: a.token_grants,
                    captchas: a.captchas(),
                    concurrent: concurrent.load(Ordering::Relaxed),
                }
            })
            .collect();
        SiteTruth {
            elapsed: Duration::from_millis(now),
            defence_change_at: self.shared.spec.defence_change_at,
            unknown_sessions: self.shared.unknown_sessions.load(Ordering::Relaxed),
            accounts,
        }
    }

    /// Stops serving (also on drop).
    pub fn shutdown(self) {}
}

impl Drop for SimSite {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
