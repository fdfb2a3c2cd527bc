//! The lifecycle's configuration: per-site timing in seconds, parsed from
//! the `lifecycle` key of the policy JSON.

use super::SiteMethod;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Per-site timing, in seconds, as the policy JSON carries it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SiteTiming {
    pub method: SiteMethod,
    /// Start a refresh this long before the credential expires.
    pub refresh_before_expire: u64,
    /// Log in again this long after the last login, whatever the expiry.
    pub max_age: u64,
    /// Clocks disagree: treat expiries as this much earlier.
    pub clock_skew: u64,
    /// Spread refreshes by up to this much, earlier, so a batch added
    /// together does not refresh together.
    pub jitter: u64,
    /// Ask the check URL this often (0: never).
    pub health_check_interval: u64,
    /// Whether the site can log in again (a recipe or a command).
    pub can_relogin: bool,
    /// First retry after a failed refresh; doubles per failure.
    pub backoff_base: u64,
    /// The longest wait between retries.
    pub backoff_cap: u64,
    /// After this many failures in a row the credential is expired and a
    /// person is alerted (fast retries not counted).
    pub max_failures: u32,
    /// A cookie visit or token refresh whose answer may have been lost
    /// (network, time-out, 5xx) is retried this many times within seconds
    /// before `backoff_base` applies: a site that rotated the secret often
    /// accepts the old one only for a short grace window.
    pub fast_retries: u32,
    /// The first fast retry comes after this long (within a quarter either
    /// side); each next one after twice as long.
    pub fast_retry_base: u64,
    /// How long a challenge ticket waits for an answer.
    pub ticket_timeout: u64,
    /// How long an SMS or e-mail code ticket waits (a sent code expires
    /// soon); `ticket_timeout` when not given. The host sends the card's
    /// 5 minutes by default.
    pub code_ticket_timeout: Option<u64>,
    /// A refresh the host has not reported after this long is given up.
    pub refresh_timeout: u64,
}

impl SiteTiming {
    /// How long a ticket of `kind` waits: codes sent by SMS or e-mail
    /// expire soon, so their tickets have their own limit.
    pub fn ticket_timeout_for(&self, kind: super::ChallengeKind) -> u64 {
        match kind {
            super::ChallengeKind::SmsCode | super::ChallengeKind::EmailCode => {
                self.code_ticket_timeout.unwrap_or(self.ticket_timeout)
            }
            _ => self.ticket_timeout,
        }
    }
}

impl Default for SiteTiming {
    /// The card's default: relogin 30 min before expiry, 1-day max age.
    fn default() -> Self {
        SiteTiming {
            method: SiteMethod::Relogin,
            refresh_before_expire: 1800,
            max_age: 86_400,
            clock_skew: 60,
            jitter: 300,
            health_check_interval: 3600,
            can_relogin: true,
            backoff_base: 30,
            backoff_cap: 3600,
            max_failures: 5,
            fast_retries: 3,
            fast_retry_base: 1,
            ticket_timeout: 3600,
            code_ticket_timeout: None,
            refresh_timeout: 300,
        }
    }
}

/// The `lifecycle` part of the policy configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// Refreshes running at once, over all sites.
    pub max_in_flight: u32,
    /// Timing for sites not listed.
    pub default: SiteTiming,
    pub sites: BTreeMap<String, SiteTiming>,
    /// The card's `auto_refresh`: when off, no refresh or login starts on
    /// its own (health checks still run); a person or the caller acts.
    pub auto_refresh: bool,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            max_in_flight: 16,
            default: SiteTiming::default(),
            sites: BTreeMap::new(),
            auto_refresh: true,
        }
    }
}

impl LifecycleConfig {
    /// Parses the `lifecycle` JSON value; errors name the key.
    pub fn from_json(json: &str) -> Result<Self, (String, String)> {
        let c: LifecycleConfig = serde_json::from_str(json).map_err(|e| {
            let msg = e.to_string();
            let field = msg.split('`').nth(1).unwrap_or("lifecycle").to_string();
            (field, msg)
        })?;
        if c.max_in_flight == 0 {
            return Err(("max_in_flight".into(), "must be at least 1".into()));
        }
        for (site, t) in std::iter::once(("default", &c.default))
            .chain(c.sites.iter().map(|(s, t)| (s.as_str(), t)))
        {
            if t.backoff_base == 0 || t.backoff_cap < t.backoff_base {
                return Err((
                    format!("{site}.backoff_base"),
                    "backoff_base must be at least 1 and at most backoff_cap".into(),
                ));
            }
            if t.fast_retries > 0 && t.fast_retry_base == 0 {
                return Err((
                    format!("{site}.fast_retry_base"),
                    "fast_retry_base must be at least 1 when fast_retries is above 0".into(),
                ));
            }
            if t.fast_retries > 16 {
                return Err((
                    format!("{site}.fast_retries"),
                    "fast_retries must be at most 16".into(),
                ));
            }
            if t.ticket_timeout == 0 || t.refresh_timeout == 0 || t.code_ticket_timeout == Some(0) {
                return Err((
                    format!("{site}.ticket_timeout"),
                    "ticket_timeout, code_ticket_timeout and refresh_timeout must be at least 1"
                        .into(),
                ));
            }
        }
        Ok(c)
    }

    pub fn timing(&self, site: &str) -> &SiteTiming {
        self.sites.get(site).unwrap_or(&self.default)
    }
}
