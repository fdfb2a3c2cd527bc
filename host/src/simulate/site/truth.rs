//! What really happened at the site, for the report to set against what
//! the pool believed.

use std::time::Duration;

/// Why an account is banned for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BanCause {
    /// At its seeded random moment, whatever was done with it.
    Random,
    /// Used too much while blocked.
    Abuse,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ban {
    /// Since the site started.
    pub at: Duration,
    pub cause: BanCause,
}

/// Why a block started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockCause {
    /// Kept using the account while it was answered 429.
    OverUse,
    /// The defence change's random blocks.
    DefenceChange,
}

/// One block: from `start` to its hidden `end` (both since the site
/// started; `end` may be ahead), and the requests and logins it refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockEpisode {
    pub start: Duration,
    pub end: Duration,
    pub cause: BlockCause,
    pub abuse: u32,
}

/// Crawl requests with a known session or token, by answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
    pub ok: u64,
    /// 401: the session or token had expired.
    pub unauthorized: u64,
    /// 403 `account banned`.
    pub banned: u64,
    /// 403 `access denied` (blocked).
    pub denied: u64,
    /// 429 over the rate.
    pub rate_limited: u64,
    /// 429 over the budget.
    pub over_budget: u64,
    /// 200 with a captcha instead of the page.
    pub challenged: u64,
}

/// What happened to one account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountTruth {
    pub username: String,
    pub banned: Option<Ban>,
    pub blocks: Vec<BlockEpisode>,
    pub served: Served,
    pub login_attempts: u64,
    pub logins: u64,
    /// `/home` visits that rotated the session.
    pub keepalives: u64,
    /// Refresh grants answered with new tokens.
    pub token_grants: u64,
    /// Captchas shown.
    pub captchas: u64,
    /// Crawl requests that arrived while another crawl request of the same
    /// account was still being answered: one session used twice at once.
    pub concurrent: u64,
}

/// What really happened at the site, as of [`SiteTruth::elapsed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteTruth {
    /// Since the site started.
    pub elapsed: Duration,
    pub defence_change_at: Option<Duration>,
    /// Crawl requests with a session or token the site never issued (or
    /// forgot, long expired).
    pub unknown_sessions: u64,
    pub accounts: Vec<AccountTruth>,
}
