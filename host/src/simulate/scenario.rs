//! The default scenario of `credpool simulate` and the demo: three sites
//! that defend themselves like real ones, the accounts split between them.
//! - `shop.sim`: form logins, some with a TOTP step, cookie sessions kept
//!   alive by visiting the account page; changes its defences mid-run.
//! - `forum.sim`: form logins, many with an SMS step a person answers.
//! - `api.sim`: OAuth accounts with rotating refresh tokens.

use super::site::{Flavour, SiteSpec};
use std::time::Duration;

/// The sites for `accounts` accounts (at least one per site), seeded;
/// the shop changes its defences at `change_at` (half-way through a run).
pub fn sites(accounts: usize, seed: u64, change_at: Duration) -> Vec<SiteSpec> {
    // Pages take 20 to 60 ms: 16 workers ask about 400 pages a second, which
    // 200 accounts serve at a safe pace even after the shop halves its rate.
    let latency = (Duration::from_millis(20), Duration::from_millis(60));
    let shop = (accounts * 5 / 10).max(1);
    let forum = (accounts * 2 / 10).max(1);
    let api = accounts.saturating_sub(shop + forum).max(1);
    vec![
        SiteSpec {
            name: "shop.sim".into(),
            flavour: Flavour::Form,
            accounts: shop,
            seed: seed.wrapping_mul(3),
            latency,
            totp_share: 0.3,
            sms_share: 0.05,
            defence_change_at: Some(change_at),
            // Blocks rise across the site: several a second at full crawl.
            defence_block_rate: 0.005,
            ..SiteSpec::default()
        },
        SiteSpec {
            name: "forum.sim".into(),
            flavour: Flavour::Form,
            accounts: forum,
            seed: seed.wrapping_mul(5),
            latency,
            totp_share: 0.1,
            sms_share: 0.3,
            defence_change_at: None,
            ..SiteSpec::default()
        },
        SiteSpec {
            name: "api.sim".into(),
            flavour: Flavour::OAuth,
            accounts: api,
            seed: seed.wrapping_mul(7),
            latency,
            totp_share: 0.0,
            sms_share: 0.0,
            captcha_rate: 0.0,
            defence_change_at: None,
            ..SiteSpec::default()
        },
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn accounts_are_split_over_the_three_sites_without_loss() {
        for n in [3, 10, 200, 1001] {
            let sites = super::sites(n, 1, std::time::Duration::from_secs(1));
            assert_eq!(sites.iter().map(|s| s.accounts).sum::<usize>(), n, "{n}");
            assert!(sites.iter().all(|s| s.accounts >= 1));
        }
    }
}
