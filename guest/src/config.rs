//! The policy's configuration: the `[policy]` part of `credpool.toml`,
//! handed over as JSON. Every key has the card's default.

use crate::model::PoolError;
use serde::Deserialize;

/// Tunables of the policy. Unknown keys are refused by name.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Lease length when the caller gives none.
    pub lease_ttl_seconds: u64,
    /// Health added by a success (card: +1).
    pub health_success: u8,
    /// Health taken by a failure (card: -10).
    pub health_failure: u8,
    /// Rest after a rate-limit answer (card: `cooldown_seconds`, 300).
    pub cooldown_seconds: u64,
    /// Rest after a block (card: 24 h).
    pub block_cooldown_seconds: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            lease_ttl_seconds: 300,
            health_success: 1,
            health_failure: 10,
            cooldown_seconds: 300,
            block_cooldown_seconds: 24 * 3600,
        }
    }
}

impl PolicyConfig {
    /// Parses the JSON the host hands over; an empty string means defaults.
    pub fn from_json(json: &str) -> Result<Self, PoolError> {
        if json.trim().is_empty() {
            return Ok(Self::default());
        }
        let config: PolicyConfig = serde_json::from_str(json).map_err(|e| {
            let msg = e.to_string();
            // serde names the offending key as `name`; surface it as the field.
            let field = msg
                .split('`')
                .nth(1)
                .map(str::to_string)
                .unwrap_or_else(|| "policy".to_string());
            PoolError::config(&field, msg)
        })?;
        if config.lease_ttl_seconds == 0 {
            return Err(PoolError::config("lease_ttl_seconds", "must be at least 1"));
        }
        if config.health_success > 100 || config.health_failure > 100 {
            return Err(PoolError::config(
                "health_success",
                "health deltas must be between 0 and 100",
            ));
        }
        Ok(config)
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
    fn zero_lease_ttl_is_refused() {
        let err = PolicyConfig::from_json(r#"{"lease_ttl_seconds": 0}"#).unwrap_err();
        assert!(
            matches!(err, PoolError::InvalidConfig { field, .. } if field == "lease_ttl_seconds")
        );
    }
}
