//! `credpool.toml`: the host's settings and the policy's part, which the
//! host hands to the policy as JSON without interpreting it.

use crate::error::Error;
use serde::Deserialize;
use std::path::Path;

/// The whole configuration file. Unknown keys are errors.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub pool: PoolSection,
    /// Passed to the policy as is; the policy names any key it refuses.
    #[serde(default)]
    pub policy: Option<toml::Table>,
}

/// Host settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolSection {
    /// The tenant whose records this pool sees.
    pub tenant: String,
    /// CPU deadline of one call into the policy, in milliseconds.
    pub call_deadline_ms: u64,
    /// Memory cap of the policy's sandbox, in MiB.
    pub memory_limit_mb: u64,
}

impl Default for PoolSection {
    fn default() -> Self {
        PoolSection {
            tenant: "default".into(),
            call_deadline_ms: 5_000,
            memory_limit_mb: 512,
        }
    }
}

impl ConfigFile {
    /// Reads `path`; a missing file means defaults.
    pub fn load(path: &Path) -> Result<Self, Error> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                Self::parse(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(Error::Config(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// Parses TOML text; errors name the key and the line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: ConfigFile = toml::from_str(text).map_err(|e| {
            let mut msg = e.message().to_string();
            if let Some(span) = e.span() {
                let line = text[..span.start].matches('\n').count() + 1;
                msg = format!("line {line}: {msg}");
            }
            msg
        })?;
        if config.pool.call_deadline_ms == 0 {
            return Err("[pool] call_deadline_ms must be at least 1".into());
        }
        if config.pool.memory_limit_mb < 16 {
            return Err("[pool] memory_limit_mb must be at least 16".into());
        }
        Ok(config)
    }

    /// The policy's part as JSON (empty object when absent).
    pub fn policy_json(&self) -> String {
        match &self.policy {
            Some(table) => serde_json::to_string(table).expect("TOML tables are JSON"),
            None => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        let err = ConfigFile::parse("[pool]\ntenant = \"a\"\ntenants = 3\n").unwrap_err();
        assert!(err.contains("line 3") && err.contains("tenants"), "{err}");
    }

    #[test]
    fn policy_section_passes_through_as_json() {
        let c = ConfigFile::parse("[policy]\ncooldown_seconds = 60\n").unwrap();
        assert_eq!(c.policy_json(), r#"{"cooldown_seconds":60}"#);
    }
}
