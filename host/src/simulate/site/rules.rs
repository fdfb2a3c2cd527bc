//! One account's defences: rate limit, budget, over-use blocks, abuse
//! bans, random bans, captchas and the defence change. Pure state on a
//! clock of milliseconds since the site started; the HTTP side asks and
//! answers.

use super::seeded::{self, Stream};
use super::{Ban, BanCause, BlockCause, BlockEpisode, Served, SiteSpec};
use std::time::Duration;
use zeroize::Zeroizing;

/// Milliseconds since the site started.
pub(super) type Ms = u64;

pub(super) fn ms(d: Duration) -> Ms {
    d.as_millis() as Ms
}

/// What the site answers a crawl request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Ok,
    /// 403 `account banned`.
    Banned,
    /// 403 `access denied`: blocked for now.
    Denied,
    /// 200 with the captcha form.
    Captcha,
    /// 429 over the rate, `Retry-After` seconds.
    RateLimited(u64),
    /// 429 over the budget, `Retry-After` seconds.
    OverBudget(u64),
}

/// A count within fixed windows of `len` ms, aligned on the site's start.
#[derive(Clone, Copy, Default)]
struct Window {
    index: u64,
    count: u32,
}

impl Window {
    /// The count in the window holding `now`.
    fn current(&mut self, now: Ms, len: Ms) -> &mut u32 {
        let index = now / len.max(1);
        if index != self.index {
            *self = Window { index, count: 0 };
        }
        &mut self.count
    }
}

/// Whole seconds from `now` to the end of its window, at least 1.
fn secs_to_window_end(now: Ms, len: Ms) -> u64 {
    let len = len.max(1);
    let end = (now / len + 1) * len;
    (end - now).div_ceil(1000).max(1)
}

struct Block {
    start: Ms,
    end: Ms,
    cause: BlockCause,
    abuse: u32,
}

/// One account's state at the site.
pub(super) struct Account {
    index: usize,
    /// The site's seed (see `seeded::site_seed`).
    seed: u64,
    random_ban_at: Option<Ms>,
    abuse_ban_at: Option<Ms>,
    /// Set when abuse banned the account, until the site counts it.
    abuse_ban_news: bool,
    /// Crawl requests with a valid session so far: numbers the draws.
    requests: u64,
    rate: Window,
    budget: Window,
    /// Requests answered 429 in the current rate window.
    refused: Window,
    blocks: Vec<Block>,
    /// The answer a person reads off the pending captcha.
    captcha: Option<Zeroizing<String>>,
    captchas: u64,
    /// The last SMS code sent to the account's phone.
    sms_code: Option<Zeroizing<String>>,
    sms_sent: u64,
    /// Sessions or tokens issued: numbers their draws.
    pub(super) issued: u64,
    pub(super) login_attempts: u64,
    pub(super) logins: u64,
    pub(super) keepalives: u64,
    pub(super) token_grants: u64,
    pub(super) served: Served,
}

impl Account {
    pub(super) fn new(index: usize, seed: u64, random_ban_at: Option<Ms>) -> Account {
        Account {
            index,
            seed,
            random_ban_at,
            abuse_ban_at: None,
            abuse_ban_news: false,
            requests: 0,
            rate: Window::default(),
            budget: Window::default(),
            refused: Window::default(),
            blocks: Vec::new(),
            captcha: None,
            captchas: 0,
            sms_code: None,
            sms_sent: 0,
            issued: 0,
            login_attempts: 0,
            logins: 0,
            keepalives: 0,
            token_grants: 0,
            served: Served::default(),
        }
    }

    /// Banned for good at `now`: when and why.
    pub(super) fn ban(&self, now: Ms) -> Option<Ban> {
        let random = self
            .random_ban_at
            .filter(|&at| at <= now)
            .map(|at| (at, BanCause::Random));
        let abuse = self.abuse_ban_at.map(|at| (at, BanCause::Abuse));
        [random, abuse]
            .into_iter()
            .flatten()
            .min_by_key(|(at, _)| *at)
            .map(|(at, cause)| Ban {
                at: Duration::from_millis(at),
                cause,
            })
    }

    fn blocked(&self, now: Ms) -> bool {
        self.blocks.last().is_some_and(|b| b.end > now)
    }

    fn start_block(&mut self, spec: &SiteSpec, now: Ms, cause: BlockCause) {
        let episode = self.blocks.len() as u64;
        let mut r = seeded::rng(self.seed, self.index, Stream::Block, episode);
        let len = seeded::millis_between(&mut r, ms(spec.block_for.0), ms(spec.block_for.1));
        self.blocks.push(Block {
            start: now,
            end: now + len.max(1),
            cause,
            abuse: 0,
        });
        self.refused = Window::default();
    }

    /// Checks a request or login against bans and blocks: `None` lets it
    /// through. Use while blocked is abuse, and too much of it bans the
    /// account for good (see [`Account::take_abuse_ban`]).
    pub(super) fn gate(&mut self, spec: &SiteSpec, now: Ms) -> Option<Verdict> {
        if self.ban(now).is_some() {
            return Some(Verdict::Banned);
        }
        if !self.blocked(now) {
            return None;
        }
        let block = self.blocks.last_mut().expect("blocked");
        block.abuse += 1;
        if block.abuse > spec.ban_after_abuse {
            self.abuse_ban_at = Some(now);
            self.abuse_ban_news = true;
            return Some(Verdict::Banned);
        }
        Some(Verdict::Denied)
    }

    /// Whether abuse banned the account since the last call.
    pub(super) fn take_abuse_ban(&mut self) -> bool {
        std::mem::take(&mut self.abuse_ban_news)
    }

    /// A crawl request with a valid session, in the protocol's order of
    /// checks; counted in `served`.
    pub(super) fn crawl(&mut self, spec: &SiteSpec, now: Ms) -> Verdict {
        let n = self.requests;
        self.requests += 1;
        let v = self.crawl_verdict(spec, now, n);
        let s = &mut self.served;
        match v {
            Verdict::Ok => s.ok += 1,
            Verdict::Banned => s.banned += 1,
            Verdict::Denied => s.denied += 1,
            Verdict::Captcha => s.challenged += 1,
            Verdict::RateLimited(_) => s.rate_limited += 1,
            Verdict::OverBudget(_) => s.over_budget += 1,
        }
        v
    }

    fn crawl_verdict(&mut self, spec: &SiteSpec, now: Ms, n: u64) -> Verdict {
        if let Some(v) = self.gate(spec, now) {
            return v;
        }
        // Both rolls are drawn on every request, used or not, so request n
        // meets the same luck whatever came before it.
        let mut r = seeded::rng(self.seed, self.index, Stream::Request, n);
        let (captcha_roll, defence_roll) = (seeded::roll(&mut r), seeded::roll(&mut r));
        let changed = spec.defence_change_at.is_some_and(|at| now >= ms(at));
        if changed && defence_roll < spec.defence_block_rate {
            self.start_block(spec, now, BlockCause::DefenceChange);
            return Verdict::Denied;
        }
        if self.captcha.is_some() {
            return Verdict::Captcha;
        }
        if captcha_roll < spec.captcha_rate {
            self.new_captcha();
            return Verdict::Captcha;
        }
        let rate_max = if changed {
            (spec.rate_max / 2).max(1)
        } else {
            spec.rate_max
        };
        let rate_window = ms(spec.rate_window);
        let refusal = if *self.rate.current(now, rate_window) >= rate_max {
            Some(Verdict::RateLimited(secs_to_window_end(now, rate_window)))
        } else {
            let budget_window = ms(spec.budget_window);
            (*self.budget.current(now, budget_window) >= spec.budget)
                .then(|| Verdict::OverBudget(secs_to_window_end(now, budget_window)))
        };
        if let Some(v) = refusal {
            // A site that has tightened its defences remembers an
            // account's 429s longer: one that keeps coming back over the
            // new rate is blocked, whatever its rests.
            let memory = if changed {
                ms(spec.defence_memory)
            } else {
                rate_window
            };
            let refused = self.refused.current(now, memory);
            *refused += 1;
            if *refused > spec.block_after_429 {
                self.start_block(spec, now, BlockCause::OverUse);
                return Verdict::Denied;
            }
            return v;
        }
        *self.rate.current(now, rate_window) += 1;
        *self.budget.current(now, ms(spec.budget_window)) += 1;
        Verdict::Ok
    }

    fn new_captcha(&mut self) {
        let mut r = seeded::rng(self.seed, self.index, Stream::Captcha, self.captchas);
        self.captchas += 1;
        self.captcha = Some(seeded::captcha(&mut r));
    }

    /// A captcha now, unless one is pending.
    pub(super) fn raise_captcha(&mut self) {
        if self.captcha.is_none() {
            self.new_captcha();
        }
    }

    /// The answer of the pending captcha.
    pub(super) fn captcha(&self) -> Option<&Zeroizing<String>> {
        self.captcha.as_ref()
    }

    /// Clears the pending captcha if `answer` is right (case-insensitive,
    /// as people type it); whether it was.
    pub(super) fn solve_captcha(&mut self, answer: &str) -> bool {
        let right = self
            .captcha
            .as_ref()
            .is_some_and(|c| c.eq_ignore_ascii_case(answer.trim()));
        if right {
            self.captcha = None;
        }
        right
    }

    pub(super) fn captchas(&self) -> u64 {
        self.captchas
    }

    /// Sends a fresh code to the account's phone.
    pub(super) fn send_sms(&mut self) {
        let mut r = seeded::rng(self.seed, self.index, Stream::Sms, self.sms_sent);
        self.sms_sent += 1;
        self.sms_code = Some(seeded::digits(&mut r, 6));
    }

    pub(super) fn sms_code(&self) -> Option<&Zeroizing<String>> {
        self.sms_code.as_ref()
    }

    /// Block episodes so far (the last may still run).
    pub(super) fn episodes(&self) -> Vec<BlockEpisode> {
        self.blocks
            .iter()
            .map(|b| BlockEpisode {
                start: Duration::from_millis(b.start),
                end: Duration::from_millis(b.end),
                cause: b.cause,
                abuse: b.abuse,
            })
            .collect()
    }

    pub(super) fn random_ban_at(&self) -> Option<Ms> {
        self.random_ban_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SiteSpec {
        SiteSpec {
            rate_max: 3,
            rate_window: Duration::from_secs(1),
            budget: 5,
            budget_window: Duration::from_secs(10),
            block_after_429: 2,
            block_for: (Duration::from_secs(4), Duration::from_secs(4)),
            ban_after_abuse: 2,
            captcha_rate: 0.0,
            defence_change_at: None,
            ..SiteSpec::default()
        }
    }

    #[test]
    fn rate_then_budget_then_block_then_ban() {
        let s = spec();
        let mut a = Account::new(0, 1, None);
        for _ in 0..3 {
            assert_eq!(a.crawl(&s, 100), Verdict::Ok);
        }
        assert_eq!(a.crawl(&s, 200), Verdict::RateLimited(1));
        assert_eq!(a.crawl(&s, 1000), Verdict::Ok);
        assert_eq!(a.crawl(&s, 1000), Verdict::Ok);
        assert_eq!(a.crawl(&s, 1000), Verdict::OverBudget(9));
        assert_eq!(a.crawl(&s, 1500), Verdict::OverBudget(9));
        // The third 429 in one rate window is over the limit of two.
        assert_eq!(a.crawl(&s, 1600), Verdict::Denied);
        assert!(a.blocked(1600) && a.blocked(5599) && !a.blocked(5600));
        assert_eq!(a.crawl(&s, 2000), Verdict::Denied);
        assert_eq!(a.crawl(&s, 2000), Verdict::Denied);
        assert_eq!(a.crawl(&s, 2000), Verdict::Banned, "third abuse");
        assert_eq!(a.ban(2000).unwrap().cause, BanCause::Abuse);
        assert_eq!(a.crawl(&s, 99_000), Verdict::Banned, "for good");
        assert_eq!(
            (a.served.ok, a.served.rate_limited, a.served.over_budget),
            (5, 1, 2)
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(secs_to_window_end(0, 1000), 1);
        assert_eq!(secs_to_window_end(999, 1000), 1);
        assert_eq!(secs_to_window_end(1000, 30_000), 29);
        assert_eq!(secs_to_window_end(1001, 30_000), 29);
        assert_eq!(secs_to_window_end(29_999, 30_000), 1);
    }
}
