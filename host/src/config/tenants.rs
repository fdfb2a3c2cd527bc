//! `[tenants.NAME]` in `credpool.toml`: each tenant of a server its own
//! policy component (the built-in one by default), its `[policy]`
//! settings, its sandbox limits and its sites.
//!
//! ```toml
//! [tenants.acme]
//! component = "policies/acme.wasm"      # relative to this file
//! component_sha256 = "9f86d08..."       # checked when the server loads it
//! [tenants.acme.policy]
//! strategy = "round-robin"
//! [tenants.acme.limits]
//! memory_mb = 64
//! call_deadline_ms = 200
//! [tenants.acme.sites."jd.com"]
//! method = "cookie-visit"
//! refresh_url = "https://jd.com/home"
//! ```
//!
//! A configured tenant uses its own `policy` and `sites` only: nothing of
//! the top-level `[policy]` and `[sites]`, which belong to `[pool] tenant`.
//! Its limits start from `[pool]`'s memory and deadline and the defaults
//! of [`SandboxLimits`].

use crate::lifecycle::sites::SiteConfig;
use crate::limits::SandboxLimits;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One `[tenants.NAME]` table. Unknown keys are errors.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSection {
    /// The policy component (a `.wasm` file, relative to the
    /// configuration file); none: the built-in policy.
    pub component: Option<PathBuf>,
    /// The component's SHA-256 in hex: the server refuses to load a file
    /// that does not match.
    pub component_sha256: Option<String>,
    /// The policy's configuration, handed to it as JSON (as `[policy]`).
    pub policy: Option<toml::Table>,
    /// What the tenant's sandbox may use.
    #[serde(default)]
    pub limits: LimitsSection,
    /// The tenant's sites, as `[sites."NAME"]`.
    #[serde(default)]
    pub sites: BTreeMap<String, SiteConfig>,
}

/// `[tenants.NAME.limits]`: each key overrides one field of
/// [`SandboxLimits`].
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub memory_mb: Option<u64>,
    pub call_deadline_ms: Option<u64>,
    pub calls_per_second: Option<u32>,
    pub store_keys: Option<u64>,
    pub store_bytes: Option<u64>,
    pub value_bytes: Option<usize>,
    pub log_per_minute: Option<u32>,
    pub notify_per_minute: Option<u32>,
}

impl LimitsSection {
    /// `base` with this section's values in place.
    pub fn apply(&self, mut base: SandboxLimits) -> SandboxLimits {
        if let Some(mb) = self.memory_mb {
            base.memory_bytes = (mb as usize) << 20;
        }
        if let Some(ms) = self.call_deadline_ms {
            base.call_deadline = Duration::from_millis(ms);
        }
        if let Some(n) = self.calls_per_second {
            base.calls_per_second = n;
        }
        if let Some(n) = self.store_keys {
            base.store_keys = n;
        }
        if let Some(n) = self.store_bytes {
            base.store_bytes = n;
        }
        if let Some(n) = self.value_bytes {
            base.value_bytes = n;
        }
        if let Some(n) = self.log_per_minute {
            base.log_per_minute = n;
        }
        if let Some(n) = self.notify_per_minute {
            base.notify_per_minute = n;
        }
        base
    }

    fn validate(&self) -> Result<(), String> {
        if self.memory_mb.is_some_and(|m| m < 16) {
            return Err("memory_mb must be at least 16".into());
        }
        if self.memory_mb.is_some_and(|m| m > 1 << 20) {
            return Err("memory_mb must be at most 1048576 (1 TiB)".into());
        }
        if self.call_deadline_ms == Some(0) {
            return Err("call_deadline_ms must be at least 1".into());
        }
        if self.value_bytes == Some(0) {
            return Err("value_bytes must be at least 1".into());
        }
        Ok(())
    }
}

impl TenantSection {
    /// Checks what serde cannot: names, the hash's form, limits, sites.
    /// Errors name the tenant and the line.
    pub fn validate(&self, name: &str, text: &str) -> Result<(), String> {
        let line = tenant_line(text, name, "");
        if !valid_name(name) {
            return Err(format!(
                "line {line}: [tenants.{name}]: a tenant name is 1 to 64 of A-Z a-z 0-9 . _ -"
            ));
        }
        if let Some(hash) = &self.component_sha256 {
            if self.component.is_none() {
                return Err(format!(
                    "line {line}: [tenants.{name}] component_sha256 needs a component path"
                ));
            }
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "line {line}: [tenants.{name}] component_sha256 must be 64 hex digits"
                ));
            }
        }
        if self
            .component
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(format!(
                "line {line}: [tenants.{name}] component must not be empty"
            ));
        }
        self.limits.validate().map_err(|e| {
            format!(
                "line {}: [tenants.{name}.limits] {e}",
                tenant_line(text, name, ".limits")
            )
        })?;
        for (site, config) in &self.sites {
            config.validate().map_err(|e| {
                format!(
                    "line {}: [tenants.{name}.sites.{site:?}] {e}",
                    tenant_line(text, name, &format!(".sites.\"{site}\""))
                )
            })?;
        }
        Ok(())
    }

    /// The component's path, relative to the directory of `config_file`.
    pub fn component_path(&self, config_file: Option<&Path>) -> Option<PathBuf> {
        let path = self.component.as_ref()?;
        let base = config_file.and_then(Path::parent).unwrap_or(Path::new(""));
        Some(base.join(path))
    }
}

/// A tenant name: it is part of every key of the tenant's records.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The line of `[tenants.NAME<rest>]` (quoted or bare name); 1 when not found.
pub fn tenant_line(text: &str, name: &str, rest: &str) -> usize {
    let bare = format!("[tenants.{name}{rest}]");
    let quoted = format!("[tenants.\"{name}\"{rest}]");
    text.lines()
        .position(|l| {
            let l = l.trim();
            l.starts_with(&bare) || l.starts_with(&quoted)
        })
        .map_or(1, |i| i + 1)
}

/// The header of a tenant's policy table as written in `text`.
pub fn policy_header(text: &str, name: &str) -> String {
    let quoted = format!("[tenants.\"{name}\".policy]");
    if text.lines().any(|l| l.trim().starts_with(&quoted)) {
        quoted
    } else {
        format!("[tenants.{name}.policy]")
    }
}

/// Checks a component file against the SHA-256 it is configured with.
#[cfg(feature = "server")]
pub fn check_sha256(tenant: &str, path: &Path, expected: &str) -> Result<(), String> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).map_err(|e| {
        format!(
            "tenant {tenant}: cannot read its component {}: {e}",
            path.display()
        )
    })?;
    let actual: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(format!(
            "tenant {tenant}: component {} has SHA-256 {actual}, but component_sha256 is {}; \
             refusing to load it",
            path.display(),
            expected.to_ascii_lowercase()
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::ConfigFile;

    #[test]
    fn tenants_parse_with_their_policy_limits_and_sites() {
        let text = "[pool]\ntenant = \"ops\"\n\n[tenants.acme]\ncomponent = \"p/acme.wasm\"\n\
                    component_sha256 = \"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"\n\
                    [tenants.acme.policy]\nstrategy = \"round-robin\"\ncooldown_seconds = \"5m\"\n\
                    [tenants.acme.limits]\nmemory_mb = 64\ncall_deadline_ms = 250\nstore_keys = 1000\n\
                    [tenants.acme.sites.\"jd.com\"]\nmethod = \"cookie-visit\"\nrefresh_url = \"https://jd.com/home\"\n\n\
                    [tenants.beta]\n";
        let mut c = ConfigFile::parse(text).unwrap();
        c.source = Some("/etc/credpool/credpool.toml".into());
        assert_eq!(c.tenants.len(), 2);
        let acme = c.for_tenant("acme");
        let json: serde_json::Value = serde_json::from_str(&acme.policy_config_json()).unwrap();
        assert_eq!(json["strategy"], "round-robin");
        assert_eq!(json["cooldown_seconds"], 300);
        assert_eq!(
            json["lifecycle"]["sites"]["jd.com"]["method"],
            "cookie-visit"
        );
        let limits = c.tenant_limits("acme", Default::default());
        assert_eq!(limits.memory_bytes, 64 << 20);
        assert_eq!(limits.call_deadline.as_millis(), 250);
        assert_eq!(limits.store_keys, 1000);
        assert_eq!(
            c.tenant_component("acme"),
            Some(std::path::PathBuf::from("/etc/credpool/p/acme.wasm"))
        );
        // A tenant without a table of its own sees nothing of another's.
        assert_eq!(c.for_tenant("beta").policy_config_json(), "");
        assert_eq!(c.tenant_component("beta"), None);
    }

    #[test]
    fn tenant_errors_name_tenant_key_and_line() {
        let err =
            ConfigFile::parse("[tenants.a]\n[tenants.a.limits]\nmemory_mbs = 3\n").unwrap_err();
        assert!(
            err.contains("line 3") && err.contains("memory_mbs"),
            "{err}"
        );
        let err =
            ConfigFile::parse("[tenants.a]\n\n[tenants.a.limits]\nmemory_mb = 3\n").unwrap_err();
        assert!(err.contains("line 3") && err.contains("memory_mb"), "{err}");
        let err = ConfigFile::parse("[tenants.a]\ncomponet = \"x\"\n").unwrap_err();
        assert!(err.contains("line 2") && err.contains("componet"), "{err}");
        let err =
            ConfigFile::parse("[tenants.a]\ncomponent = \"x.wasm\"\ncomponent_sha256 = \"abc\"\n")
                .unwrap_err();
        assert!(
            err.contains("[tenants.a]") && err.contains("64 hex"),
            "{err}"
        );
        let err = ConfigFile::parse("[tenants.\"a/b\"]\n").unwrap_err();
        assert!(err.contains("tenant name"), "{err}");
        let err = ConfigFile::parse(
            "[tenants.a]\n[tenants.a.sites.\"jd.com\"]\nmethod = \"cookie-visit\"\n",
        )
        .unwrap_err();
        assert!(
            err.contains("line 2") && err.contains("refresh_url"),
            "{err}"
        );
        let err = ConfigFile::parse("[tenants.a.policy]\n\ncooldown_seconds = \"5 fortnights\"\n")
            .unwrap_err();
        assert!(
            err.contains("line 3") && err.contains("[tenants.a.policy] cooldown_seconds"),
            "{err}"
        );
    }
}
