//! A session's cookie jar, kept in its [`Secrets`]: RFC 6265 storage
//! (section 5.3) for `Set-Cookie` answers (new, changed, deleted by
//! `Max-Age=0` or a past `Expires`; domain and path respected) and the
//! `Cookie` header for a request (section 5.4). Values never appear in a
//! `Debug` print or an error.

use crate::secrets::{CookieAttrs, Secrets, is_token_byte};

/// Bounds on what a site can make us store (browsers keep about 180
/// cookies per domain of at most 4 KB each); past them the oldest go.
pub const MAX_COOKIE_BYTES: usize = 4096;
pub const MAX_PER_DOMAIN: usize = 180;
pub const MAX_PER_JAR: usize = 300;
/// Name and value bytes of a whole jar.
pub const MAX_JAR_BYTES: usize = 256 * 1024;

/// Whether `domain` is a public suffix (`co.uk`, `uk`, `github.io`), on
/// which no cookie may be set. IP addresses and names the list does not
/// know (`localhost`) are not.
pub fn is_public_suffix(domain: &str) -> bool {
    let d = domain
        .trim_start_matches('.')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if d.is_empty() || d.parse::<std::net::IpAddr>().is_ok() {
        return false;
    }
    // `is_known`: a rule of the list, not its default "*" rule.
    psl::suffix(d.as_bytes()).is_some_and(|s| s.is_known() && s.as_bytes().len() == d.len())
}

/// One stored cookie.
#[derive(Clone, PartialEq, Eq)]
pub struct Cookie {
    pub name: String,
    pub value: String,
    /// Lower-case, no leading dot.
    pub domain: String,
    pub host_only: bool,
    pub path: String,
    /// Milliseconds since the epoch; `None` for a session cookie.
    pub expires: Option<i64>,
    pub secure: bool,
    pub http_only: bool,
}

impl std::fmt::Debug for Cookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Cookie({} domain={} path={} value=[REDACTED])",
            self.name, self.domain, self.path
        )
    }
}

impl Cookie {
    /// Whether a cookie that did not come as `Set-Cookie` (a login
    /// command's answer) is fit to keep: an RFC 6265 token for a name, no
    /// control character anywhere, within [`MAX_COOKIE_BYTES`], a domain
    /// that is not a public suffix.
    pub fn is_acceptable(&self) -> bool {
        !self.name.is_empty()
            && self.name.bytes().all(is_token_byte)
            && self.name.len() + self.value.len() <= MAX_COOKIE_BYTES
            && ![&self.value, &self.domain, &self.path]
                .iter()
                .any(|f| f.bytes().any(|b| b.is_ascii_control() || b == b';'))
            && !self.domain.is_empty()
            && !is_public_suffix(&self.domain)
    }
}

/// The cookies of one credential.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Jar {
    pub cookies: Vec<Cookie>,
}

/// What a merge changed (counts only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MergeSummary {
    pub added: u32,
    pub changed: u32,
    pub deleted: u32,
    pub ignored: u32,
}

fn domain_match(host: &str, domain: &str) -> bool {
    host == domain
        || (host.ends_with(domain)
            && host.as_bytes().get(host.len() - domain.len() - 1) == Some(&b'.')
            && host.parse::<std::net::IpAddr>().is_err())
}

fn path_match(req: &str, cookie: &str) -> bool {
    req == cookie
        || (req.starts_with(cookie)
            && (cookie.ends_with('/') || req.as_bytes().get(cookie.len()) == Some(&b'/')))
}

/// RFC 6265 5.1.4 default-path.
fn default_path(req_path: &str) -> String {
    if !req_path.starts_with('/') {
        return "/".into();
    }
    match req_path.rfind('/') {
        Some(0) | None => "/".into(),
        Some(i) => req_path[..i].to_string(),
    }
}

fn parse_http_date(s: &str) -> Option<i64> {
    let s = s.trim();
    chrono::DateTime::parse_from_rfc2822(s)
        .map(|d| d.timestamp_millis())
        .or_else(|_| {
            // RFC 850 style: "Sunday, 06-Nov-94 08:49:37 GMT" and the
            // common "Wed, 21-Oct-2015 07:28:00 GMT".
            chrono::NaiveDateTime::parse_from_str(s, "%a, %d-%b-%Y %H:%M:%S GMT")
                .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%A, %d-%b-%y %H:%M:%S GMT"))
                .map(|d| d.and_utc().timestamp_millis())
        })
        .ok()
}

impl Jar {
    /// The jar of `secrets`. Cookies stored without attributes (added by
    /// hand) count as host-only cookies of `site` on path `/`.
    pub fn from_secrets(secrets: &Secrets, site: &str) -> Jar {
        let cookies = secrets
            .cookies
            .iter()
            .enumerate()
            .map(|(i, (name, value))| {
                let meta = secrets.cookie_attrs_of(i);
                Cookie {
                    name: name.clone(),
                    value: value.clone(),
                    domain: meta
                        .map(|m| m.domain.clone())
                        .unwrap_or_else(|| site.to_ascii_lowercase()),
                    host_only: meta.map(|m| m.host_only).unwrap_or(false),
                    path: meta.map(|m| m.path.clone()).unwrap_or_else(|| "/".into()),
                    expires: meta.and_then(|m| m.expires),
                    secure: meta.is_some_and(|m| m.secure),
                    http_only: meta.is_some_and(|m| m.http_only),
                }
            })
            .collect();
        Jar { cookies }
    }

    /// Writes the jar back into `secrets` (values and their attributes).
    pub fn store_into(&self, secrets: &mut Secrets) {
        secrets.cookies = self
            .cookies
            .iter()
            .map(|c| (c.name.clone(), c.value.clone()))
            .collect();
        secrets.cookie_attrs = self
            .cookies
            .iter()
            .map(|c| CookieAttrs {
                name: c.name.clone(),
                domain: c.domain.clone(),
                host_only: c.host_only,
                path: c.path.clone(),
                secure: c.secure,
                http_only: c.http_only,
                expires: c.expires,
            })
            .collect();
    }

    /// Drops cookies past their expiry.
    pub fn evict_expired(&mut self, now_ms: i64) {
        self.cookies
            .retain(|c| c.expires.is_none_or(|e| e > now_ms));
    }

    /// Merges one `Set-Cookie` header value received from `host` for
    /// `req_path` (over https when `https`). Returns which way it went.
    /// Ignored: a name that is not an RFC 6265 token, a control character
    /// anywhere, a cookie over [`MAX_COOKIE_BYTES`], a `Domain` that is a
    /// public suffix or not the host's, a `Secure` cookie over http.
    pub fn set_cookie(
        &mut self,
        header: &str,
        host: &str,
        req_path: &str,
        https: bool,
        now_ms: i64,
        sum: &mut MergeSummary,
    ) {
        let host = host.to_ascii_lowercase();
        // Tabs included: a tab would split an exported cookies.txt line.
        if header.bytes().any(|b| b.is_ascii_control()) {
            sum.ignored += 1;
            return;
        }
        let mut parts = header.split(';');
        let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else {
            sum.ignored += 1;
            return;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty()
            || !name.bytes().all(is_token_byte)
            || name.len() + value.len() > MAX_COOKIE_BYTES
        {
            sum.ignored += 1;
            return;
        }
        let (mut expires, mut max_age, mut domain, mut path) = (None, None, None, None);
        let (mut secure, mut http_only) = (false, false);
        for attr in parts {
            let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "expires" => expires = parse_http_date(v).or(expires),
                "max-age" => {
                    if let Ok(secs) = v.parse::<i64>() {
                        max_age = Some(if secs <= 0 {
                            i64::MIN
                        } else {
                            now_ms.saturating_add(secs.saturating_mul(1000))
                        });
                    }
                }
                "domain" if !v.is_empty() => {
                    domain = Some(v.trim_start_matches('.').to_ascii_lowercase())
                }
                "path" => path = Some(v.to_string()),
                "secure" => secure = true,
                "httponly" => http_only = true,
                _ => {}
            }
        }
        // Max-Age wins over Expires (5.3 step 3).
        let expiry = max_age.or(expires);
        if secure && !https {
            sum.ignored += 1;
            return;
        }
        let (domain, host_only) = match domain {
            // A public suffix names many owners' hosts: only the host
            // itself may be it (RFC 6265 5.3 step 5), as a host-only cookie.
            Some(d) if is_public_suffix(&d) => {
                if d == host {
                    (host.clone(), true)
                } else {
                    sum.ignored += 1;
                    return;
                }
            }
            Some(d) if domain_match(&host, &d) => (d, false),
            Some(_) => {
                sum.ignored += 1;
                return;
            }
            None => (host.clone(), true),
        };
        let path = match path {
            Some(p) if p.starts_with('/') => p,
            _ => default_path(req_path),
        };
        let pos = self
            .cookies
            .iter()
            .position(|c| c.name == name && c.domain == domain && c.path == path);
        if expiry.is_some_and(|e| e <= now_ms) {
            if let Some(i) = pos {
                self.cookies.remove(i);
                sum.deleted += 1;
            }
            return;
        }
        let cookie = Cookie {
            name: name.to_string(),
            value: value.to_string(),
            domain,
            host_only,
            path,
            expires: expiry,
            secure,
            http_only,
        };
        match pos {
            Some(i) => {
                if self.cookies[i] != cookie {
                    sum.changed += 1;
                }
                self.cookies[i] = cookie;
            }
            None => {
                sum.added += 1;
                self.cookies.push(cookie);
                self.enforce_limits();
            }
        }
    }

    /// Drops the oldest cookies (the jar keeps them in the order first
    /// set) until the jar is within [`MAX_PER_DOMAIN`], [`MAX_PER_JAR`]
    /// and [`MAX_JAR_BYTES`].
    pub fn enforce_limits(&mut self) {
        let bytes = |c: &Cookie| c.name.len() + c.value.len();
        let mut total: usize = self.cookies.iter().map(bytes).sum();
        while self.cookies.len() > MAX_PER_JAR || total > MAX_JAR_BYTES {
            total -= bytes(&self.cookies.remove(0));
        }
        let mut per_domain: std::collections::HashMap<String, usize> = Default::default();
        for c in &self.cookies {
            *per_domain.entry(c.domain.clone()).or_default() += 1;
        }
        for (domain, mut n) in per_domain {
            while n > MAX_PER_DOMAIN {
                if let Some(i) = self.cookies.iter().position(|c| c.domain == domain) {
                    self.cookies.remove(i);
                }
                n -= 1;
            }
        }
    }

    /// The `Cookie` header for a request, or `None` when no cookie applies.
    pub fn header_for(&self, host: &str, path: &str, https: bool, now_ms: i64) -> Option<String> {
        let host = host.to_ascii_lowercase();
        let mut matching: Vec<&Cookie> = self
            .cookies
            .iter()
            .filter(|c| {
                if c.host_only {
                    host == c.domain
                } else {
                    domain_match(&host, &c.domain)
                }
            })
            .filter(|c| path_match(path, &c.path))
            .filter(|c| https || !c.secure)
            .filter(|c| c.expires.is_none_or(|e| e > now_ms))
            .collect();
        // Longer paths first (5.4 step 2).
        matching.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        if matching.is_empty() {
            return None;
        }
        Some(
            matching
                .iter()
                .map(|c| format!("{}={}", c.name, c.value))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }

    /// The earliest expiry of the persistent cookies, if any.
    pub fn earliest_expiry(&self) -> Option<i64> {
        self.cookies.iter().filter_map(|c| c.expires).min()
    }

    pub fn has(&self, name: &str) -> bool {
        self.cookies.iter().any(|c| c.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn merge(jar: &mut Jar, h: &str) -> MergeSummary {
        let mut s = MergeSummary::default();
        jar.set_cookie(h, "www.jd.com", "/account/home", true, NOW, &mut s);
        s
    }

    #[test]
    fn new_changed_and_deleted() {
        let mut jar = Jar::default();
        assert_eq!(
            merge(&mut jar, "sid=a1; Max-Age=3600; Path=/; Domain=.jd.com").added,
            1
        );
        assert_eq!(jar.cookies[0].expires, Some(NOW + 3_600_000));
        assert_eq!(jar.cookies[0].domain, "jd.com");
        assert_eq!(
            merge(&mut jar, "sid=a2; Max-Age=7200; Path=/; Domain=jd.com").changed,
            1
        );
        assert_eq!(jar.cookies.len(), 1);
        assert_eq!(jar.cookies[0].value, "a2");
        // Same name, other path: a second cookie.
        assert_eq!(merge(&mut jar, "sid=p; Path=/account").added, 1);
        assert_eq!(jar.cookies.len(), 2);
        assert!(jar.cookies[1].host_only);
        // Deleted by Max-Age=0 and by a past Expires.
        assert_eq!(
            merge(&mut jar, "sid=; Max-Age=0; Path=/; Domain=jd.com").deleted,
            1
        );
        assert_eq!(
            merge(
                &mut jar,
                "sid=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/account"
            )
            .deleted,
            1
        );
        assert!(jar.cookies.is_empty());
    }

    #[test]
    fn max_age_wins_over_expires_and_dates_parse() {
        let mut jar = Jar::default();
        merge(
            &mut jar,
            "a=1; Expires=Wed, 21 Oct 2099 07:28:00 GMT; Max-Age=60",
        );
        assert_eq!(jar.cookies[0].expires, Some(NOW + 60_000));
        merge(&mut jar, "b=1; Expires=Wed, 21-Oct-2099 07:28:00 GMT");
        assert!(jar.cookies[1].expires.unwrap() > NOW);
    }

    #[test]
    fn foreign_domains_are_ignored_and_default_path_applies() {
        let mut jar = Jar::default();
        assert_eq!(merge(&mut jar, "x=1; Domain=evil.com").ignored, 1);
        assert_eq!(merge(&mut jar, "x=1; Domain=w.jd.com").ignored, 1);
        merge(&mut jar, "y=1");
        assert_eq!(jar.cookies[0].path, "/account");
    }

    #[test]
    fn public_suffixes_bad_names_controls_and_insecure_secure_are_refused() {
        let mut jar = Jar::default();
        let mut s = MergeSummary::default();
        let mut set = |jar: &mut Jar, h: &str, https: bool| {
            jar.set_cookie(h, "www.shop.co.uk", "/", https, NOW, &mut s)
        };
        for h in [
            "a=1; Domain=co.uk",
            "b=1; Domain=.uk",
            "c d=1",
            "e=1; Path=/a\tb",
            "f=1\u{7f}",
        ] {
            set(&mut jar, h, true);
        }
        set(&mut jar, "sec=1; Secure", false);
        assert!(jar.cookies.is_empty(), "{jar:?}");
        set(&mut jar, "ok=1; Domain=shop.co.uk", true);
        set(&mut jar, "sec=1; Secure", true);
        assert_eq!(jar.cookies.len(), 2);
        assert_eq!(jar.cookies[0].domain, "shop.co.uk");
        assert!(is_public_suffix("github.io") && is_public_suffix("com"));
        assert!(!is_public_suffix("localhost") && !is_public_suffix("127.0.0.1"));
        assert!(!is_public_suffix("jd.com"));
    }

    #[test]
    fn cookie_header_respects_domain_path_secure_and_expiry() {
        let mut jar = Jar::default();
        merge(&mut jar, "root=r; Path=/; Domain=jd.com");
        merge(&mut jar, "deep=d; Path=/account");
        merge(&mut jar, "sec=s; Path=/; Domain=jd.com; Secure");
        merge(&mut jar, "soon=x; Path=/; Domain=jd.com; Max-Age=10");
        assert_eq!(
            jar.header_for("www.jd.com", "/account/x", false, NOW)
                .unwrap(),
            "deep=d; root=r; soon=x"
        );
        assert_eq!(
            jar.header_for("www.jd.com", "/other", true, NOW + 20_000)
                .unwrap(),
            "root=r; sec=s"
        );
        // Host-only cookie not sent to a sibling host.
        assert_eq!(
            jar.header_for("m.jd.com", "/account", false, NOW + 20_000)
                .unwrap(),
            "root=r"
        );
        assert_eq!(jar.header_for("jd.org", "/", false, NOW), None);
    }

    #[test]
    fn round_trips_through_secrets_and_debug_hides_values() {
        let mut jar = Jar::default();
        merge(&mut jar, "sid=VALUE123; Max-Age=60; Domain=jd.com; Path=/");
        let mut s = Secrets::default();
        jar.store_into(&mut s);
        assert_eq!(s.cookies, vec![("sid".to_string(), "VALUE123".to_string())]);
        assert_eq!(Jar::from_secrets(&s, "jd.com"), jar);
        assert!(!format!("{jar:?}").contains("VALUE123"));
        // Hand-added cookies: the site's domain, path /.
        let mut plain = Secrets::default();
        plain.cookies.push(("a".into(), "b".into()));
        let j = Jar::from_secrets(&plain, "jd.com");
        assert_eq!(j.header_for("www.jd.com", "/x", true, NOW).unwrap(), "a=b");
    }
}
