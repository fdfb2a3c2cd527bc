//! The policy's configuration: the `[policy]` part of `credpool.toml`,
//! handed over as JSON. Every key has the card's default.

use crate::cooldown::Backoff;
use crate::model::PoolError;
use serde::Deserialize;
use std::collections::BTreeMap;

/// How a site's credential is chosen among the ready ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// In turn, in the order they were added.
    #[serde(alias = "round_robin")]
    RoundRobin,
    /// Uniformly at random.
    Random,
    /// At random, weighted by health (the card's default).
    #[default]
    #[serde(alias = "health_based", alias = "health-based", alias = "weighted")]
    HealthWeighted,
    /// The one unused for the longest time.
    #[serde(alias = "lru", alias = "least_recently_used")]
    LeastRecentlyUsed,
    /// The same credential for the same purpose while it stays usable;
    /// health-weighted for a new purpose.
    Sticky,
}

/// Tunables of the policy. Unknown keys are refused by name.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Lease length when the caller gives none.
    pub lease_ttl_seconds: u64,
    /// Whether a lease that lapses unreported counts as a failure of class
    /// `other` (the holder likely died mid-request).
    pub lapsed_lease_is_failure: bool,
    /// Health of a new credential.
    pub initial_health: u8,
    /// Health added by a success (card: +1).
    pub health_success: u8,
    /// Health taken by a failure (card: -10).
    pub health_failure: u8,
    /// Health taken by a network failure, which is rarely the credential's
    /// fault (default: as any failure).
    pub health_failure_network: Option<u8>,
    /// Allocation strategy of every site without its own.
    #[serde(alias = "allocation_strategy")]
    pub strategy: Strategy,
    /// Strategy per site, e.g. `{"jd.com": "round-robin"}`.
    pub site_strategy: BTreeMap<String, Strategy>,
    /// Rest after a rate-limit answer (card: `cooldown_seconds`, 300).
    pub cooldown_seconds: u64,
    /// Longest rest after repeated rate limits.
    pub cooldown_cap_seconds: u64,
    /// Rest after a block (card: 24 h).
    pub block_cooldown_seconds: u64,
    /// Longest rest after repeated blocks.
    pub block_cooldown_cap_seconds: u64,
    /// Extra rest drawn up to this fraction of the rest (0 to 1).
    pub cooldown_jitter: f64,
    /// Blocks in a row that ban a credential (card: repeated failures).
    pub ban_after_blocks: u32,
    /// Uses per minute for credentials without their own limit; none = no
    /// limit.
    pub rate_per_minute: Option<u32>,
    /// Uses allowed back to back under a rate limit.
    pub rate_burst: u32,
    /// Learn each credential's pace from the answers (start from
    /// `rate_per_minute`, or a cautious one a second); false keeps the
    /// fixed rate.
    pub adaptive: bool,
    /// The slowest adaptive pace, per minute.
    pub min_rate_per_minute: u32,
    /// The fastest adaptive pace, per minute.
    pub max_rate_per_minute: u32,
    /// How fast the pace grows (0 to 1; a sixteenth by default): in slow
    /// start it doubles per `1 / (4 pace_raise)` seconds of uses, and once
    /// refused a success closes a share of the gap to the refused pace
    /// scaled by it. Larger finds a fast site sooner and overshoots more.
    pub pace_raise: f32,
    /// Health under which a credential is flagged.
    pub low_health_threshold: u8,
    /// Fall of the recent success rate below the long-run one that is
    /// flagged (0 to 1).
    pub success_drop: f32,
    /// Results needed before a success rate is judged.
    pub success_min_reports: u32,
    /// Blocks within the window that flag a site's defences as changed.
    pub block_burst_count: u32,
    /// The window of `block_burst_count`.
    pub block_burst_window_seconds: u64,
    /// The same alert (kind, site, credential) is notified again only after
    /// this long; meanwhile it stays listed in `stats`. A credential whose
    /// health wobbles around the threshold is not a new alert each time.
    pub realert_after_seconds: u64,
    /// Session lifecycle: refresh scheduling, re-login, tickets. The host
    /// builds it from the `[sites]` tables of `credpool.toml`; absent, the
    /// policy schedules nothing.
    pub lifecycle: Option<crate::lifecycle::LifecycleConfig>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            lease_ttl_seconds: 300,
            lapsed_lease_is_failure: false,
            initial_health: 100,
            health_success: 1,
            health_failure: 10,
            health_failure_network: None,
            strategy: Strategy::HealthWeighted,
            site_strategy: BTreeMap::new(),
            cooldown_seconds: 300,
            cooldown_cap_seconds: 3600,
            block_cooldown_seconds: 24 * 3600,
            block_cooldown_cap_seconds: 7 * 24 * 3600,
            cooldown_jitter: 0.1,
            ban_after_blocks: 3,
            rate_per_minute: None,
            rate_burst: 1,
            adaptive: false,
            min_rate_per_minute: 1,
            max_rate_per_minute: 6000,
            pace_raise: 1.0 / 16.0,
            low_health_threshold: 30,
            success_drop: 0.4,
            success_min_reports: 32,
            block_burst_count: 5,
            block_burst_window_seconds: 600,
            realert_after_seconds: 600,
            lifecycle: None,
        }
    }
}

/// serde_json's message without "at line 1 column 26": the JSON is the
/// host's one-line rendering of `[policy]`, not a file anyone wrote.
fn without_position(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    }
}

impl PolicyConfig {
    /// Parses the JSON the host hands over; an empty string means defaults.
    pub fn from_json(json: &str) -> Result<Self, PoolError> {
        if json.trim().is_empty() {
            return Ok(Self::default());
        }
        let mut de = serde_json::Deserializer::from_str(json);
        let mut config: PolicyConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let msg = without_position(&e.into_inner());
            // Unknown keys are named by serde as `name`; a wrongly typed
            // one by its path.
            let field = if path != "." && !path.is_empty() {
                path
            } else {
                msg.split('`')
                    .nth(1)
                    .map(str::to_string)
                    .unwrap_or_else(|| "policy".to_string())
            };
            PoolError::config(&field, msg)
        })?;
        // Keys by the site's one name (`JD.com` is `jd.com`), once here, as
        // the pool names its sites.
        config.site_strategy = std::mem::take(&mut config.site_strategy)
            .into_iter()
            .map(|(k, v)| (crate::words::site_key(&k).into_owned(), v))
            .collect();
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), PoolError> {
        let fail = |field: &str, why: &str| Err(PoolError::config(field, why));
        if self.lease_ttl_seconds == 0 {
            return fail("lease_ttl_seconds", "must be at least 1");
        }
        for (field, v) in [
            ("health_success", self.health_success),
            ("health_failure", self.health_failure),
            ("initial_health", self.initial_health),
            ("low_health_threshold", self.low_health_threshold),
        ] {
            if v > 100 {
                return fail(field, "must be between 0 and 100");
            }
        }
        if self.health_failure_network.is_some_and(|v| v > 100) {
            return fail("health_failure_network", "must be between 0 and 100");
        }
        if !(0.0..=1.0).contains(&self.cooldown_jitter) {
            return fail("cooldown_jitter", "must be between 0 and 1");
        }
        if !(0.0..=1.0).contains(&self.success_drop) || self.success_drop == 0.0 {
            return fail("success_drop", "must be above 0 and at most 1");
        }
        if self.cooldown_cap_seconds < self.cooldown_seconds {
            return fail("cooldown_cap_seconds", "must not be below cooldown_seconds");
        }
        if self.block_cooldown_cap_seconds < self.block_cooldown_seconds {
            return fail(
                "block_cooldown_cap_seconds",
                "must not be below block_cooldown_seconds",
            );
        }
        if self.ban_after_blocks == 0 {
            return fail("ban_after_blocks", "must be at least 1");
        }
        if self.rate_per_minute == Some(0) {
            return fail("rate_per_minute", "must be at least 1");
        }
        if self.min_rate_per_minute == 0 {
            return fail("min_rate_per_minute", "must be at least 1");
        }
        if self.max_rate_per_minute < self.min_rate_per_minute {
            return fail(
                "max_rate_per_minute",
                "must not be below min_rate_per_minute",
            );
        }
        if !(self.pace_raise > 0.0 && self.pace_raise <= 1.0) {
            return fail("pace_raise", "must be above 0 and at most 1");
        }
        if self.rate_burst == 0 {
            return fail("rate_burst", "must be at least 1");
        }
        if self.block_burst_count == 0 {
            return fail("block_burst_count", "must be at least 1");
        }
        if let Some(lc) = &self.lifecycle {
            let json = serde_json::to_string(lc).expect("lifecycle config serialises");
            crate::lifecycle::LifecycleConfig::from_json(&json)
                .map_err(|(field, why)| PoolError::config(&format!("lifecycle.{field}"), why))?;
        }
        Ok(())
    }

    /// The strategy in force for `site`.
    pub fn strategy_for(&self, site: &str) -> Strategy {
        self.site_strategy
            .get(site)
            .copied()
            .unwrap_or(self.strategy)
    }

    /// The bounds of adaptive pacing.
    pub fn pace_bounds(&self) -> crate::pace::Bounds {
        crate::pace::Bounds {
            min: self.min_rate_per_minute as f32,
            max: self.max_rate_per_minute as f32,
            raise: self.pace_raise,
        }
    }

    /// The backoff after rate limits.
    pub fn rate_limit_backoff(&self) -> Backoff {
        Backoff {
            base_ms: self.cooldown_seconds * 1000,
            cap_ms: self.cooldown_cap_seconds * 1000,
            jitter: self.cooldown_jitter,
        }
    }

    /// The backoff after blocks.
    pub fn block_backoff(&self) -> Backoff {
        Backoff {
            base_ms: self.block_cooldown_seconds * 1000,
            cap_ms: self.block_cooldown_cap_seconds * 1000,
            jitter: self.cooldown_jitter,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_means_card_defaults() {
        let c = PolicyConfig::from_json("").unwrap();
        assert_eq!(c.cooldown_seconds, 300);
        assert_eq!(c.block_cooldown_seconds, 86_400);
        assert_eq!((c.health_success, c.health_failure), (1, 10));
        assert_eq!(c.strategy, Strategy::HealthWeighted);
        assert_eq!(c.ban_after_blocks, 3);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = PolicyConfig::from_json(r#"{"cooldown_secs": 5}"#).unwrap_err();
        match err {
            PoolError::InvalidConfig { field, .. } => assert_eq!(field, "cooldown_secs"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_wrongly_typed_key_is_named_without_a_json_position() {
        let err = PolicyConfig::from_json(r#"{"ban_after_blocks": 3, "cooldown_seconds": "5m"}"#)
            .unwrap_err();
        match err {
            PoolError::InvalidConfig { field, reason } => {
                assert_eq!(field, "cooldown_seconds");
                assert!(reason.starts_with("invalid type: string"), "{reason}");
                assert!(!reason.contains("column"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn zero_lease_ttl_is_refused() {
        let err = PolicyConfig::from_json(r#"{"lease_ttl_seconds": 0}"#).unwrap_err();
        assert!(
            matches!(err, PoolError::InvalidConfig { field, .. } if field == "lease_ttl_seconds")
        );
    }

    #[test]
    fn strategies_parse_per_site_with_the_card_name_too() {
        let c = PolicyConfig::from_json(
            r#"{"allocation_strategy": "health_based",
                "site_strategy": {"a.com": "round-robin", "b.com": "lru", "c.com": "sticky"}}"#,
        )
        .unwrap();
        assert_eq!(c.strategy_for("x.com"), Strategy::HealthWeighted);
        assert_eq!(c.strategy_for("a.com"), Strategy::RoundRobin);
        assert_eq!(c.strategy_for("b.com"), Strategy::LeastRecentlyUsed);
        assert_eq!(c.strategy_for("c.com"), Strategy::Sticky);
    }

    #[test]
    fn site_strategy_keys_are_the_sites_one_name() {
        let c = PolicyConfig::from_json(r#"{"site_strategy": {"WWW.JD.com.": "sticky"}}"#).unwrap();
        assert_eq!(c.strategy_for("jd.com"), Strategy::Sticky);
        assert_eq!(c.strategy_for("tb.com"), Strategy::HealthWeighted);
    }

    #[test]
    fn pace_bounds_must_be_ordered() {
        let err =
            PolicyConfig::from_json(r#"{"min_rate_per_minute": 60, "max_rate_per_minute": 30}"#)
                .unwrap_err();
        assert!(
            matches!(err, PoolError::InvalidConfig { field, .. } if field == "max_rate_per_minute")
        );
        let c =
            PolicyConfig::from_json(r#"{"adaptive": true, "max_rate_per_minute": 900}"#).unwrap();
        assert!(c.adaptive);
        assert_eq!(c.pace_bounds().max, 900.0);
    }

    #[test]
    fn inconsistent_cooldowns_are_refused() {
        let err =
            PolicyConfig::from_json(r#"{"cooldown_seconds": 600, "cooldown_cap_seconds": 60}"#)
                .unwrap_err();
        assert!(
            matches!(err, PoolError::InvalidConfig { field, .. } if field == "cooldown_cap_seconds")
        );
    }
}
