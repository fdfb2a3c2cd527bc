//! `credpool.toml`: the host's settings and the policy's part, which the
//! host hands to the policy as JSON without interpreting it.

use crate::error::Error;
use crate::lifecycle::notifiers::NotifySection;
use crate::lifecycle::sites::SiteConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

pub mod tenants;

/// The whole configuration file. Unknown keys are errors.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub pool: PoolSection,
    /// Passed to the policy as is; the policy names any key it refuses.
    #[serde(default)]
    pub policy: Option<toml::Table>,
    /// Per-site lifecycle settings: `[sites."jd.com"]`.
    #[serde(default)]
    pub sites: BTreeMap<String, SiteConfig>,
    /// Alert and ticket delivery: `[notify]`.
    #[serde(default)]
    pub notify: NotifySection,
    /// The tenants of a server, each its own component, policy, limits and
    /// sites: `[tenants.NAME]` (see [`tenants`]).
    #[serde(default)]
    pub tenants: BTreeMap<String, tenants::TenantSection>,
    /// Where this was read from, and the line of each `[policy]` key: the
    /// policy's refusal of a key is said at the file's line.
    #[serde(skip)]
    source: Option<std::path::PathBuf>,
    #[serde(skip)]
    policy_lines: BTreeMap<String, usize>,
    /// The policy table's header as written (`[policy]` unless this is a
    /// tenant's part, see [`ConfigFile::for_tenant`]).
    #[serde(skip)]
    policy_header: Option<String>,
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
    /// The data directory (the card's `storage_path`) when `--data-dir`
    /// and `CREDPOOL_DATA_DIR` are not given; relative to this file.
    pub storage_path: Option<std::path::PathBuf>,
    /// The card's `auto_refresh`: refresh sessions and log in again on
    /// their own. Off: nothing starts on its own; health checks still run.
    pub auto_refresh: bool,
    /// How often a site with a `check_url` and no interval of its own is
    /// checked (the card's global `health_check_interval`; default 1 h).
    #[serde(deserialize_with = "crate::lifecycle::sites::de_duration")]
    pub health_check_interval: Option<std::time::Duration>,
    /// The store when not the embedded one: `redis://host:6379/0` (or
    /// `rediss://`); `--store` overrides it.
    pub store: Option<crate::backend::StoreUrl>,
}

impl Default for PoolSection {
    fn default() -> Self {
        PoolSection {
            tenant: "default".into(),
            call_deadline_ms: 5_000,
            memory_limit_mb: 512,
            storage_path: None,
            auto_refresh: true,
            health_check_interval: None,
            store: None,
        }
    }
}

impl ConfigFile {
    /// Reads `path`; a missing file means defaults.
    pub fn load(path: &Path) -> Result<Self, Error> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mut config = Self::parse(&text)
                    .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
                config.source = Some(path.to_path_buf());
                Ok(config)
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
        let mut config: ConfigFile = toml::from_str(text).map_err(|e| {
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
        if config
            .pool
            .health_check_interval
            .is_some_and(|d| d.as_secs() == 0)
        {
            return Err("[pool] health_check_interval must be at least 1s".into());
        }
        if config
            .pool
            .storage_path
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err("[pool] storage_path must not be empty".into());
        }
        for (name, site) in &config.sites {
            site.validate()
                .map_err(|e| format!("line {}: [sites.{name:?}] {e}", table_line(text, name)))?;
        }
        config
            .notify
            .validate()
            .map_err(|e| format!("line {}: [notify] {e}", header_line(text, "[notify]")))?;
        if let Some(policy) = &mut config.policy {
            for key in policy.keys() {
                config
                    .policy_lines
                    .insert(key.clone(), policy_key_line(text, "[policy]", key));
            }
            policy_durations(policy, &config.policy_lines, "policy")?;
        }
        for (name, tenant) in &mut config.tenants {
            tenant.validate(name, text)?;
            if let Some(policy) = &mut tenant.policy {
                let header = tenants::policy_header(text, name);
                let lines = policy_lines(text, &header, policy);
                policy_durations(policy, &lines, &header[1..header.len() - 1])?;
            }
        }
        Ok(config)
    }

    /// The configuration `tenant`'s pool runs with: a tenant with a
    /// `[tenants.NAME]` table gets its own policy and sites (and none of
    /// the top-level ones); any other tenant, this file as it is.
    pub fn for_tenant(&self, tenant: &str) -> ConfigFile {
        let mut out = self.clone();
        out.tenants.clear();
        let Some(section) = self.tenants.get(tenant) else {
            return out;
        };
        let text = self
            .source
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        let header = tenants::policy_header(&text, tenant);
        out.policy_lines = match &section.policy {
            Some(p) => policy_lines(&text, &header, p),
            None => BTreeMap::new(),
        };
        out.policy_header = Some(header);
        out.policy = section.policy.clone();
        out.sites = section.sites.clone();
        out
    }

    /// `tenant`'s sandbox limits: `base` (from `[pool]`) with its
    /// `[tenants.NAME.limits]` in place.
    pub fn tenant_limits(
        &self,
        tenant: &str,
        base: crate::limits::SandboxLimits,
    ) -> crate::limits::SandboxLimits {
        match self.tenants.get(tenant) {
            Some(t) => t.limits.apply(base),
            None => base,
        }
    }

    /// `tenant`'s own component file, relative to this file; none: the
    /// server's (built-in, or `--component`).
    pub fn tenant_component(&self, tenant: &str) -> Option<std::path::PathBuf> {
        self.tenants
            .get(tenant)?
            .component_path(self.source.as_deref())
    }

    /// A policy refusal of a `[policy]` key, said at the key's line of the
    /// file it was read from; any other error as it is.
    pub fn locate(&self, e: Error) -> Error {
        let Error::Pool(crate::PoolError::InvalidConfig(x)) = &e else {
            return e;
        };
        let top = x.field.split('.').next().unwrap_or_default();
        let Some(line) = self.policy_lines.get(top) else {
            return e;
        };
        let file = self
            .source
            .as_ref()
            .map_or_else(|| "credpool.toml".to_string(), |p| p.display().to_string());
        let header = self.policy_header.as_deref().unwrap_or("[policy]");
        Error::Config(format!(
            "{file}: line {line}: {header} {}: {}",
            x.field, x.reason
        ))
    }

    /// The policy's `lifecycle` configuration derived from `[sites]` (the
    /// guest's `lifecycle::LifecycleConfig`); [`Self::policy_config_json`]
    /// merges it into the policy JSON.
    pub fn lifecycle_policy_json(&self) -> serde_json::Value {
        let mut lifecycle = crate::lifecycle::sites::policy_lifecycle_json(&self.sites);
        // The global interval for sites with a check URL and none of their own.
        if let Some(every) = self.pool.health_check_interval {
            for (name, site) in &self.sites {
                if site.check_url.is_some() && site.health_check_interval.is_none() {
                    lifecycle["sites"][name]["health_check_interval"] = every.as_secs().into();
                }
            }
        }
        if !self.pool.auto_refresh {
            lifecycle["auto_refresh"] = false.into();
        }
        lifecycle
    }

    /// The data directory `storage_path` names, relative to this file's
    /// directory; none when the file does not set it.
    pub fn storage_path(&self) -> Option<std::path::PathBuf> {
        let path = self.pool.storage_path.as_ref()?;
        let base = self
            .source
            .as_deref()
            .and_then(Path::parent)
            .unwrap_or(Path::new(""));
        Some(base.join(path))
    }

    /// The JSON handed to the policy's `configure`: the `[policy]` table
    /// plus, when sites are configured, their `lifecycle` (sites not listed
    /// are left alone: the host could not refresh them).
    pub fn policy_config_json(&self) -> String {
        if self.sites.is_empty() {
            return self.policy_json();
        }
        let mut policy = match &self.policy {
            Some(table) => serde_json::to_value(table).expect("TOML tables are JSON"),
            None => serde_json::json!({}),
        };
        let mut lifecycle = self.lifecycle_policy_json();
        lifecycle["default"] = serde_json::json!({
            "method": "none",
            "can_relogin": false,
            "health_check_interval": 0,
        });
        policy["lifecycle"] = lifecycle;
        policy.to_string()
    }

    /// The policy's part as JSON (empty object when absent).
    pub fn policy_json(&self) -> String {
        match &self.policy {
            Some(table) => serde_json::to_string(table).expect("TOML tables are JSON"),
            None => String::new(),
        }
    }
}

/// The line of a site's table header (1 when not found).
fn table_line(text: &str, site: &str) -> usize {
    let quoted = format!("[sites.\"{site}\"");
    let bare = format!("[sites.{site}");
    text.lines()
        .position(|l| {
            let l = l.trim();
            l.starts_with(&quoted) || l.starts_with(&bare)
        })
        .map_or(1, |i| i + 1)
}

/// `[policy]` durations (keys ending in `_seconds`) may be written as the
/// site durations are, `30s`, `5m`, `2h`, `7d`: made whole seconds here.
fn policy_durations(
    policy: &mut toml::Table,
    lines: &BTreeMap<String, usize>,
    table: &str,
) -> Result<(), String> {
    for (key, value) in policy.iter_mut() {
        let Some(text) = value.as_str().filter(|_| key.ends_with("_seconds")) else {
            continue;
        };
        let d = crate::lifecycle::sites::parse_duration(text).map_err(|e| {
            format!(
                "line {}: [{table}] {key}: {e}",
                lines.get(key).copied().unwrap_or(1)
            )
        })?;
        if d.subsec_millis() != 0 {
            return Err(format!(
                "line {}: [{table}] {key}: {text:?} is not a whole number of seconds",
                lines.get(key).copied().unwrap_or(1)
            ));
        }
        *value = toml::Value::Integer(d.as_secs().min(i64::MAX as u64) as i64);
    }
    Ok(())
}

/// The line of each key of a policy table under `header`.
fn policy_lines(text: &str, header: &str, policy: &toml::Table) -> BTreeMap<String, usize> {
    policy
        .keys()
        .map(|k| (k.clone(), policy_key_line(text, header, k)))
        .collect()
}

/// The line of `key = ...` in the policy table under `header` (its
/// header's line when not found: the key came in a dotted or inline form).
fn policy_key_line(text: &str, header: &str, key: &str) -> usize {
    let header = header_line(text, header);
    text.lines()
        .enumerate()
        .skip(header)
        .take_while(|(_, l)| !l.trim_start().starts_with('['))
        .find(|(_, l)| {
            let l = l.trim_start();
            let l = l
                .strip_prefix(key)
                .or_else(|| l.strip_prefix(&format!("\"{key}\"")));
            l.is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or(header, |(i, _)| i + 1)
}

fn header_line(text: &str, header: &str) -> usize {
    text.lines()
        .position(|l| l.trim().starts_with(header))
        .map_or(1, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cards_pool_keys_reach_the_lifecycle() {
        let text = "[pool]\nstorage_path = \"creds\"\nauto_refresh = false\n\
                    health_check_interval = \"15m\"\n\n\
                    [sites.\"jd.com\"]\nmethod = \"cookie-visit\"\n\
                    refresh_url = \"http://127.0.0.1:1/home\"\ncheck_url = \"http://127.0.0.1:1/me\"\n\n\
                    [sites.\"tb.com\"]\nmethod = \"cookie-visit\"\n\
                    refresh_url = \"http://127.0.0.1:1/home\"\ncheck_url = \"http://127.0.0.1:1/me\"\n\
                    health_check_interval = \"2h\"\n";
        let mut c = ConfigFile::parse(text).unwrap();
        let lc = c.lifecycle_policy_json();
        assert_eq!(lc["auto_refresh"], false);
        assert_eq!(lc["sites"]["jd.com"]["health_check_interval"], 900);
        assert_eq!(
            lc["sites"]["tb.com"]["health_check_interval"], 7200,
            "its own wins"
        );
        // Relative to the file's directory.
        c.source = Some("/etc/credpool/credpool.toml".into());
        assert_eq!(
            c.storage_path(),
            Some(std::path::PathBuf::from("/etc/credpool/creds"))
        );
        // The card's defaults: on, 1 h, no storage path.
        let d = ConfigFile::parse("").unwrap();
        assert!(d.pool.auto_refresh && d.storage_path().is_none());
        assert!(d.lifecycle_policy_json().get("auto_refresh").is_none());
        let err = ConfigFile::parse("[pool]\nhealth_check_interval = 0\n").unwrap_err();
        assert!(err.contains("health_check_interval"), "{err}");
        let err = ConfigFile::parse("[pool]\nauto_refresh = \"yes\"\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        let err = ConfigFile::parse("[pool]\ntenant = \"a\"\ntenants = 3\n").unwrap_err();
        assert!(err.contains("line 3") && err.contains("tenants"), "{err}");
    }

    #[test]
    fn policy_durations_take_units_and_errors_name_key_and_line() {
        let c = ConfigFile::parse(
            "[pool]\ntenant = \"a\"\n\n[policy]\ncooldown_seconds = \"5m\"\nblock_cooldown_seconds = \"2h\"\nlease_ttl_seconds = 30\nstrategy = \"random\"\n",
        )
        .unwrap();
        let j: serde_json::Value = serde_json::from_str(&c.policy_json()).unwrap();
        assert_eq!(j["cooldown_seconds"], 300);
        assert_eq!(j["block_cooldown_seconds"], 7200);
        assert_eq!(j["lease_ttl_seconds"], 30);
        assert_eq!(j["strategy"], "random");
        assert_eq!(c.policy_lines["block_cooldown_seconds"], 6);
        let err =
            ConfigFile::parse("[policy]\n\ncooldown_seconds = \"5 fortnights\"\n").unwrap_err();
        assert!(
            err.contains("line 3") && err.contains("[policy] cooldown_seconds"),
            "{err}"
        );
    }

    #[test]
    fn policy_section_passes_through_as_json() {
        let c = ConfigFile::parse("[policy]\ncooldown_seconds = 60\n").unwrap();
        assert_eq!(c.policy_json(), r#"{"cooldown_seconds":60}"#);
    }

    #[test]
    fn sites_parse_with_human_durations_and_card_defaults() {
        let c = ConfigFile::parse(
            "[sites.\"jd.com\"]\nmethod = \"cookie-visit\"\nrefresh_url = \"https://jd.com/home\"\nmax_age = \"3d\"\n\n[sites.\"taobao.com\"]\nmethod = \"oauth-refresh\"\ntoken_url = \"https://taobao.com/oauth/token\"\nclient_id = \"c\"\nclient_secret_env = \"TAOBAO_SECRET\"\nclient_auth = \"body\"\n",
        )
        .unwrap();
        let jd = &c.sites["jd.com"];
        assert_eq!(jd.max_age().as_secs(), 3 * 86_400);
        assert_eq!(jd.refresh_before_expire().as_secs(), 3600);
        assert_eq!(
            c.sites["taobao.com"].refresh_before_expire().as_secs(),
            1800
        );
        let j = c.lifecycle_policy_json();
        assert_eq!(j["sites"]["jd.com"]["method"], "cookie-visit");
        assert_eq!(j["sites"]["jd.com"]["max_age"], 259_200);
        let merged: serde_json::Value = serde_json::from_str(&c.policy_config_json()).unwrap();
        assert_eq!(
            merged["lifecycle"]["sites"]["jd.com"]["method"],
            "cookie-visit"
        );
        assert_eq!(merged["lifecycle"]["default"]["method"], "none");
    }

    #[test]
    fn site_errors_name_key_and_line() {
        let err = ConfigFile::parse("[pool]\ntenant = \"a\"\n[sites.\"jd.com\"]\nmethod = \"cookie-visit\"\nrefresh_ur = \"x\"\n").unwrap_err();
        assert!(
            err.contains("line 5") && err.contains("refresh_ur"),
            "{err}"
        );
        let err = ConfigFile::parse("[sites.\"jd.com\"]\nmax_age = \"3 years\"\n").unwrap_err();
        assert!(
            err.contains("line 2") && err.contains("unknown unit"),
            "{err}"
        );
        let err =
            ConfigFile::parse("\n[sites.\"jd.com\"]\nmethod = \"cookie-visit\"\n").unwrap_err();
        assert!(
            err.contains("line 2") && err.contains("refresh_url"),
            "{err}"
        );
        let err = ConfigFile::parse("[sites.\"jd.com\"]\nmethod = \"teleport\"\n").unwrap_err();
        assert!(err.contains("line 2") && err.contains("teleport"), "{err}");
        let err = ConfigFile::parse("[notify]\nwebhook_url = \"ftp://x\"\n").unwrap_err();
        assert!(
            err.contains("line 1") && err.contains("webhook_url"),
            "{err}"
        );
    }

    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../../README.md");
        let start = readme.find("## Keeping sessions alive").expect("section");
        let block = &readme[start..];
        let block = &block[block.find("```toml\n").expect("toml block") + 8..];
        let block = &block[..block.find("```").expect("end of block")];
        let c = ConfigFile::parse(block).unwrap();
        assert_eq!(c.sites.len(), 2);
        assert_eq!(
            c.sites["jd.com"].login.as_ref().unwrap().challenges.len(),
            3
        );
        assert!(c.notify.webhook_url.is_some());
    }
}
