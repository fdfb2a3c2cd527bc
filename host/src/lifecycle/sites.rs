//! Per-site lifecycle settings: the `[sites."jd.com"]` tables of
//! `credpool.toml`, with the card's defaults and human durations (`90s`,
//! `30m`, `1h`, `7d`, or a number of seconds). Secrets are never in the
//! file: an OAuth client secret is named by the environment variable that
//! holds it.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// How a site's sessions are kept alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    CookieVisit,
    OauthRefresh,
    Relogin,
    None,
}

/// How the OAuth client authenticates at the token endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAuth {
    /// HTTP Basic (RFC 6749 2.3.1, preferred).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Body,
}

/// A duration written `90s`, `30m`, `1h`, `7d` or as seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 30m, 1h or 7d"))?;
    let mult = match unit.trim() {
        "" | "s" => 1,
        "ms" => return Ok(Duration::from_millis(n)),
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("{s:?} has an unknown unit (use s, m, h, d or w)")),
    };
    Ok(Duration::from_secs(n.saturating_mul(mult)))
}

/// A duration given as seconds (`90`) or in words (`90s`, `30m`, `7d`).
pub(crate) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(n) => Ok(Some(Duration::from_secs(n))),
        Raw::Text(t) => parse_duration(&t)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// Rules that recognise an answer: any one that matches counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Detect {
    /// HTTP status codes.
    pub status: Vec<u16>,
    /// A redirect whose `Location` contains one of these.
    pub redirect_to: Vec<String>,
    /// A body containing one of these (plain substrings).
    pub body: Vec<String>,
}

impl Detect {
    pub fn is_empty(&self) -> bool {
        self.status.is_empty() && self.redirect_to.is_empty() && self.body.is_empty()
    }

    pub fn matches(&self, status: u16, location: Option<&str>, body: &str) -> bool {
        self.status.contains(&status)
            || location.is_some_and(|l| self.redirect_to.iter().any(|r| l.contains(r.as_str())))
            || self.body.iter().any(|b| body.contains(b.as_str()))
    }
}

/// What a successful login looks like: every rule given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Success {
    /// This cookie is set.
    pub cookie: Option<String>,
    /// The answer has this status.
    pub status: Option<u16>,
    /// The answer redirects to a `Location` containing this.
    pub redirect_to: Option<String>,
    /// The body contains this.
    pub body: Option<String>,
}

/// A challenge a login may meet, how to recognise it and where its answer
/// goes.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRule {
    /// captcha-image, captcha-slider, captcha-click, sms-code, email-code,
    /// two-factor, device-verify or security-question.
    pub kind: String,
    #[serde(default)]
    pub detect: Detect,
    /// Where the answer is posted (with the login's cookies).
    pub submit_url: String,
    /// The form field that carries the answer: the text of an image
    /// captcha, the drag track of a slider (JSON `[[x, y, t_ms], …]`), the
    /// points of a click captcha (JSON `[[x, y], …]`), or a code.
    pub field: String,
    /// Captchas: where the image is, a URL (absolute, or relative to the
    /// challenge page); fetched with the login's cookies.
    pub image_url: Option<String>,
    /// Captchas: the image is the first `src="…"` after this text in the
    /// challenge page (a URL, or a `data:` URI).
    pub image_after: Option<String>,
    /// Click captchas: the instruction is the text after this marker in
    /// the challenge page, up to `instruction_until`.
    pub instruction_after: Option<String>,
    /// Where the instruction ends (default `<`).
    pub instruction_until: Option<String>,
    /// Sliders: a form field that also carries the gap distance (pixels).
    pub distance_field: Option<String>,
    /// Sliders: how the track is written in `field`.
    #[serde(default)]
    pub track_format: TrackFormat,
    /// SMS or e-mail codes: POSTed (with the login's cookies) to have the
    /// code sent, before the ticket waits for it.
    pub send_url: Option<String>,
}

/// How a slider's drag track is written in its form field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrackFormat {
    /// `[[x, y, t_ms], …]`.
    #[default]
    Rows,
    /// `[{"x": …, "y": …, "t": …}, …]`.
    Objects,
}

/// A form login.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRecipe {
    pub url: String,
    #[serde(default = "default_username_field")]
    pub username_field: String,
    #[serde(default = "default_password_field")]
    pub password_field: String,
    /// Fixed extra fields (no secrets here).
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
    #[serde(default)]
    pub success: Success,
    #[serde(default)]
    pub challenges: Vec<ChallengeRule>,
}

fn default_username_field() -> String {
    "username".into()
}
fn default_password_field() -> String {
    "password".into()
}

/// One site's lifecycle settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub method: Option<Method>,
    #[serde(default, deserialize_with = "de_duration")]
    pub refresh_before_expire: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    pub max_age: Option<Duration>,
    pub refresh_url: Option<String>,
    pub token_url: Option<String>,
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// The environment variable holding the client secret; without it the
    /// credential's stored `secret_key` is the client secret.
    pub client_secret_env: Option<String>,
    /// Keep the refresh token before a rotation this long (default 10m).
    #[serde(default, deserialize_with = "de_duration")]
    pub rotation_grace: Option<Duration>,
    pub login: Option<LoginRecipe>,
    /// An external login program and its arguments: it gets the secrets as
    /// JSON on stdin and prints cookies/tokens as JSON.
    pub login_command: Option<Vec<String>>,
    /// Variables of credpool's environment the login command also gets
    /// (besides PATH, HOME, LANG and TZ).
    #[serde(default)]
    pub login_command_env: Vec<String>,
    #[serde(default, deserialize_with = "de_duration")]
    pub login_timeout: Option<Duration>,
    /// A captcha solver program: gets the challenge as JSON on stdin, prints
    /// the answer.
    pub captcha_solver: Option<Vec<String>>,
    /// Variables the captcha solver also gets (as `login_command_env`).
    #[serde(default)]
    pub captcha_solver_env: Vec<String>,
    /// Allow plain `http://` URLs to hosts other than loopback (passwords
    /// and tokens then cross the network in clear).
    #[serde(default)]
    pub allow_insecure_http: bool,
    #[serde(default)]
    pub ban: Detect,
    #[serde(default)]
    pub logout: Detect,
    pub check_url: Option<String>,
    #[serde(default, deserialize_with = "de_duration")]
    pub health_check_interval: Option<Duration>,
    /// Time limit of each request (default 20s).
    #[serde(default, deserialize_with = "de_duration")]
    pub request_timeout: Option<Duration>,
    /// How long a challenge ticket waits for an answer (default 1h); SMS
    /// and e-mail codes too unless `code_ticket_timeout` is set.
    #[serde(default, deserialize_with = "de_duration")]
    pub ticket_timeout: Option<Duration>,
    /// Prompt retries of a cookie visit or token refresh whose answer may
    /// have been lost (network, time-out, 5xx), before the usual backoff
    /// (default 3).
    pub fast_retries: Option<u32>,
    /// The first prompt retry after this long (whole seconds, default 1s),
    /// each next one after twice as long, a quarter either side.
    #[serde(default, deserialize_with = "de_duration")]
    pub fast_retry: Option<Duration>,
    /// How long an SMS or e-mail code ticket waits (default
    /// `ticket_timeout` when that is set, else the card's 5m).
    #[serde(default, deserialize_with = "de_duration")]
    pub code_ticket_timeout: Option<Duration>,
}

impl SiteConfig {
    /// The method, by the card's default (relogin).
    pub fn method(&self) -> Method {
        self.method.unwrap_or(Method::Relogin)
    }

    /// Card defaults: cookie 1h before / 7d, token 30m / 30d, relogin 30m / 1d.
    pub fn refresh_before_expire(&self) -> Duration {
        self.refresh_before_expire.unwrap_or(match self.method() {
            Method::CookieVisit => Duration::from_secs(3600),
            _ => Duration::from_secs(1800),
        })
    }

    pub fn max_age(&self) -> Duration {
        self.max_age.unwrap_or(match self.method() {
            Method::CookieVisit => Duration::from_secs(7 * 86_400),
            Method::OauthRefresh => Duration::from_secs(30 * 86_400),
            _ => Duration::from_secs(86_400),
        })
    }

    pub fn request_timeout(&self) -> Duration {
        self.request_timeout.unwrap_or(Duration::from_secs(20))
    }

    pub fn login_timeout(&self) -> Duration {
        self.login_timeout.unwrap_or(Duration::from_secs(60))
    }

    pub fn rotation_grace(&self) -> Duration {
        self.rotation_grace.unwrap_or(Duration::from_secs(600))
    }

    /// Tickets other than codes: 1h unless set.
    pub fn ticket_timeout(&self) -> Duration {
        self.ticket_timeout.unwrap_or(Duration::from_secs(3600))
    }

    /// SMS and e-mail code tickets: `code_ticket_timeout`, else an
    /// explicit `ticket_timeout`, else the card's 5 minutes.
    pub fn code_ticket_timeout(&self) -> Duration {
        self.code_ticket_timeout
            .or(self.ticket_timeout)
            .unwrap_or(Duration::from_secs(300))
    }

    pub fn can_relogin(&self) -> bool {
        self.login.is_some() || self.login_command.is_some()
    }

    /// Checks what serde cannot; names the key.
    pub fn validate(&self) -> Result<(), String> {
        match self.method() {
            Method::CookieVisit if self.refresh_url.is_none() => {
                return Err("method cookie-visit needs refresh_url".into());
            }
            Method::OauthRefresh if self.token_url.is_none() || self.client_id.is_none() => {
                return Err("method oauth-refresh needs token_url and client_id".into());
            }
            Method::Relogin if !self.can_relogin() => {
                return Err("method relogin needs a [login] recipe or login_command".into());
            }
            _ => {}
        }
        if self.login.is_some() && self.login_command.is_some() {
            return Err("give either login or login_command, not both".into());
        }
        for (key, url) in [
            ("refresh_url", &self.refresh_url),
            ("token_url", &self.token_url),
            ("check_url", &self.check_url),
        ] {
            if let Some(url) = url {
                check_url(key, url, self.allow_insecure_http)?;
            }
        }
        if let Some(l) = &self.login {
            check_url("login.url", &l.url, self.allow_insecure_http)?;
            for c in &l.challenges {
                check_url(
                    "login.challenges.submit_url",
                    &c.submit_url,
                    self.allow_insecure_http,
                )?;
                if crate::names::parse_challenge_kind(&c.kind).is_none() {
                    return Err(format!(
                        "login.challenges.kind {:?} is not a challenge kind",
                        c.kind
                    ));
                }
                if let Some(url) = &c.send_url {
                    check_url("login.challenges.send_url", url, self.allow_insecure_http)?;
                }
                // A relative image URL is resolved against the page.
                if let Some(url) = &c.image_url
                    && url.contains("://")
                {
                    check_url("login.challenges.image_url", url, self.allow_insecure_http)?;
                }
                if c.image_url.is_some() && c.image_after.is_some() {
                    return Err(
                        "login.challenges: give either image_url or image_after, not both".into(),
                    );
                }
            }
        }
        for cmd in [&self.login_command, &self.captcha_solver]
            .into_iter()
            .flatten()
        {
            if cmd.is_empty() {
                return Err("a command needs at least the program".into());
            }
        }
        super::command::validate_env("login_command_env", &self.login_command_env)?;
        super::command::validate_env("captcha_solver_env", &self.captcha_solver_env)?;
        if self.fast_retries.is_some_and(|n| n > 16) {
            return Err("fast_retries must be at most 16".into());
        }
        if let Some(v) = &self.client_secret_env
            && (v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        {
            return Err("client_secret_env must be an environment variable name".into());
        }
        Ok(())
    }

    /// The policy's timing for this site, in seconds, as the guest's
    /// `lifecycle::SiteTiming` JSON.
    pub fn policy_timing(&self) -> serde_json::Value {
        let mut timing = serde_json::json!({
            "method": self.method(),
            "refresh_before_expire": self.refresh_before_expire().as_secs(),
            "max_age": self.max_age().as_secs(),
            "health_check_interval": if self.check_url.is_some() {
                self.health_check_interval.unwrap_or(Duration::from_secs(3600)).as_secs()
            } else { 0 },
            "can_relogin": self.can_relogin(),
            "ticket_timeout": self.ticket_timeout().as_secs().max(1),
            "code_ticket_timeout": self.code_ticket_timeout().as_secs().max(1),
        });
        if let Some(n) = self.fast_retries {
            timing["fast_retries"] = n.into();
        }
        if let Some(d) = self.fast_retry {
            timing["fast_retry_base"] = d.as_secs().max(1).into();
        }
        timing
    }
}

/// Names the key, not the value: a URL may carry `user:pass@` or a key in
/// its query. Plain http is for loopback hosts only, unless allowed.
fn check_url(key: &str, url: &str, allow_insecure_http: bool) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "https" => Ok(()),
        Ok(u) if u.scheme() == "http" => {
            if allow_insecure_http || is_loopback(&u) {
                Ok(())
            } else {
                Err(format!(
                    "{key} is plain http to a host that is not loopback: use https, \
                     or set allow_insecure_http = true for this site"
                ))
            }
        }
        _ => Err(format!("{key} is not an http(s) URL")),
    }
}

fn is_loopback(u: &reqwest::Url) -> bool {
    let host = u.host_str().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return ip.is_loopback();
    }
    let d = host.trim_end_matches('.').to_ascii_lowercase();
    d == "localhost" || d.ends_with(".localhost")
}

/// The policy's `lifecycle` configuration for all sites.
pub fn policy_lifecycle_json(sites: &BTreeMap<String, SiteConfig>) -> serde_json::Value {
    let sites: serde_json::Map<String, serde_json::Value> = sites
        .iter()
        .map(|(k, v)| (k.clone(), v.policy_timing()))
        .collect();
    serde_json::json!({ "sites": sites })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_human() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn fast_retry_settings_reach_the_policy_only_when_given() {
        let d = SiteConfig::default().policy_timing();
        assert!(d.get("fast_retries").is_none() && d.get("fast_retry_base").is_none());
        let c = SiteConfig {
            fast_retries: Some(5),
            fast_retry: Some(Duration::from_secs(2)),
            ..SiteConfig::default()
        };
        let t = c.policy_timing();
        assert_eq!(
            (t["fast_retries"].as_u64(), t["fast_retry_base"].as_u64()),
            (Some(5), Some(2))
        );
        let too_many = SiteConfig {
            fast_retries: Some(17),
            login_command: Some(vec!["login".into()]),
            ..SiteConfig::default()
        };
        assert!(too_many.validate().unwrap_err().contains("fast_retries"));
    }

    #[test]
    fn card_defaults_by_method() {
        let c = SiteConfig {
            method: Some(Method::CookieVisit),
            ..SiteConfig::default()
        };
        assert_eq!(
            (c.refresh_before_expire().as_secs(), c.max_age().as_secs()),
            (3600, 604_800)
        );
        let t = SiteConfig {
            method: Some(Method::OauthRefresh),
            ..SiteConfig::default()
        };
        assert_eq!(
            (t.refresh_before_expire().as_secs(), t.max_age().as_secs()),
            (1800, 2_592_000)
        );
        let d = SiteConfig::default();
        assert_eq!(
            (d.method(), d.max_age().as_secs()),
            (Method::Relogin, 86_400)
        );
    }

    #[test]
    fn code_tickets_wait_five_minutes_unless_told_otherwise() {
        let site = |toml_text: &str| -> SiteConfig {
            toml::from_str(&format!("login_command = [\"x\"]\n{toml_text}")).unwrap()
        };
        let t = |c: &SiteConfig| {
            let j = c.policy_timing();
            (
                j["ticket_timeout"].as_u64(),
                j["code_ticket_timeout"].as_u64(),
            )
        };
        assert_eq!(t(&site("")), (Some(3600), Some(300)));
        assert_eq!(t(&site("ticket_timeout = \"10m\"")), (Some(600), Some(600)));
        assert_eq!(
            t(&site(
                "ticket_timeout = \"2h\"\ncode_ticket_timeout = \"90s\""
            )),
            (Some(7200), Some(90))
        );
    }

    #[test]
    fn a_send_url_is_checked_like_every_url() {
        let c: SiteConfig = toml::from_str(
            r#"[login]
url = "https://a.example/login"
[[login.challenges]]
kind = "sms-code"
submit_url = "https://a.example/sms"
field = "code"
send_url = "http://a.example/send""#,
        )
        .unwrap();
        let e = c.validate().unwrap_err();
        assert!(e.contains("send_url"), "{e}");
    }
}
