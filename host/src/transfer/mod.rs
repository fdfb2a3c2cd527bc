//! Import and export in the formats users have: our JSON schema (an array
//! of credentials), Netscape `cookies.txt` (curl `-c`, yt-dlp, browser
//! extensions) and the cookie JSON of browser extensions (EditThisCookie,
//! Cookie-Editor: `name`, `value`, `domain`, `path`, `expirationDate`...).
//!
//! Parsing never puts a value in a message: problems name the line, the
//! field and what is wrong. Cookies are grouped into sessions by site: the
//! site given with `--site` (cookies for other domains are left out), or
//! else the registrable part of each cookie's domain (see [`site_of`]).

use crate::bindings::types::CredentialKind;
use crate::names;
use crate::pool::NewCredential;
use crate::secrets;
use crate::secrets::{CookieAttrs, Secrets};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

pub mod duplicates;
mod export;
pub use export::{to_cookies_txt, to_json};

/// A file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Our schema: an array of credentials.
    Json,
    /// Netscape cookies.txt.
    CookiesTxt,
    /// A browser extension's cookie array.
    CookieJson,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "json" => Some(Format::Json),
            "cookies-txt" | "cookies.txt" | "netscape" => Some(Format::CookiesTxt),
            "cookie-json" => Some(Format::CookieJson),
            _ => None,
        }
    }

    /// The name [`Format::parse`] takes first (as the audit trail records it).
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::CookiesTxt => "cookies-txt",
            Format::CookieJson => "cookie-json",
        }
    }
}

/// A bad line or record: where, and what is wrong (never a value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line where the line or record starts.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// What a file holds: credentials to add (with the line each starts on),
/// and its problems.
#[derive(Debug, Default)]
pub struct Parsed {
    pub credentials: Vec<(usize, NewCredential)>,
    pub problems: Vec<Problem>,
    /// Cookies read from the file.
    pub cookies: usize,
    /// Cookies left out because they are not for `--site`.
    pub other_sites: usize,
    /// Cookies already past their expiry when read (their session is
    /// imported `expired`).
    pub expired: Vec<ExpiredCookie>,
    /// Sessions the pool already holds (see [`duplicates::find`]).
    pub duplicates: Vec<duplicates::Duplicate>,
}

/// A cookie of the file that had expired before the import.
#[derive(Debug, Clone)]
pub struct ExpiredCookie {
    pub line: usize,
    pub site: String,
    pub name: String,
    pub expired_at: i64,
}

fn problem(line: usize, message: impl Into<String>) -> Problem {
    Problem {
        line,
        message: message.into(),
    }
}

/// Parses a file's text. `site` groups every cookie under one site (cookie
/// formats) or names the site of records that have none (our JSON).
pub fn parse(format: Format, text: &str, site: Option<&str>) -> Parsed {
    match format {
        Format::Json => parse_json(text, site),
        Format::CookiesTxt => {
            let mut out = Parsed::default();
            let cookies = parse_cookies_txt(text, &mut out.problems);
            group_cookies(cookies, site, "cookies-txt", &mut out);
            out
        }
        Format::CookieJson => {
            let mut out = Parsed::default();
            let cookies = parse_cookie_json(text, &mut out.problems);
            group_cookies(cookies, site, "cookie-json", &mut out);
            out
        }
    }
}

/// One cookie read from a file.
#[derive(Clone)]
struct Cookie {
    line: usize,
    attrs: CookieAttrs,
    value: String,
}

fn check_cookie(line: usize, attrs: &CookieAttrs, value: &str) -> Result<(), Problem> {
    if attrs.name.is_empty() || !attrs.name.bytes().all(secrets::is_token_byte) {
        return Err(problem(line, "the cookie name is not a valid token"));
    }
    if value.bytes().any(|b| b.is_ascii_control() || b == b';') {
        return Err(problem(
            line,
            format!(
                "the value of cookie {:?} contains ';' or a control character",
                attrs.name
            ),
        ));
    }
    // A newline in a path or domain would start a line of its own in an
    // exported cookies.txt (a cookie for any domain); a tab, a field.
    for (what, field) in [("domain", &attrs.domain), ("path", &attrs.path)] {
        if field.bytes().any(|b| b.is_ascii_control()) {
            return Err(problem(
                line,
                format!(
                    "the {what} of cookie {:?} contains a control character",
                    attrs.name
                ),
            ));
        }
    }
    if attrs.domain.trim_start_matches('.').is_empty() {
        return Err(problem(
            line,
            format!("cookie {:?} has no domain", attrs.name),
        ));
    }
    Ok(())
}

/// Netscape cookies.txt: seven tab-separated fields per line (domain,
/// include-subdomains, path, secure, expiry, name, value); `#` starts a
/// comment except the `#HttpOnly_` prefix curl writes before a domain.
fn parse_cookies_txt(text: &str, problems: &mut Vec<Problem>) -> Vec<Cookie> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let raw = raw.trim_end_matches('\r');
        let (http_only, rest) = match raw.strip_prefix("#HttpOnly_") {
            Some(rest) => (true, rest),
            None => (false, raw),
        };
        if rest.trim().is_empty() || (!http_only && rest.starts_with('#')) {
            continue;
        }
        let fields: Vec<&str> = rest.split('\t').collect();
        // Some writers leave an empty value without its tab.
        if fields.len() != 7 && fields.len() != 6 {
            problems.push(problem(
                line,
                format!(
                    "expected 7 tab-separated fields (domain, subdomains, path, secure, expiry, name, value), found {}",
                    fields.len()
                ),
            ));
            continue;
        }
        let flag = |i: usize, what: &str| match fields[i].to_ascii_uppercase().as_str() {
            "TRUE" => Ok(true),
            "FALSE" => Ok(false),
            _ => Err(problem(
                line,
                format!("the {what} field must be TRUE or FALSE"),
            )),
        };
        let parsed = (|| {
            let include_subdomains = flag(1, "include-subdomains")?;
            let secure = flag(3, "secure")?;
            let expiry: i64 = fields[4]
                .trim()
                .parse()
                .map_err(|_| problem(line, "the expiry field must be whole seconds since 1970"))?;
            let attrs = CookieAttrs {
                name: fields[5].to_string(),
                domain: CookieAttrs::normalise_domain(fields[0]),
                host_only: !include_subdomains,
                path: fields[2].to_string(),
                secure,
                http_only,
                expires: (expiry > 0).then_some(expiry.saturating_mul(1000)),
            };
            let value = fields.get(6).copied().unwrap_or("").to_string();
            check_cookie(line, &attrs, &value)?;
            Ok(Cookie { line, attrs, value })
        })();
        match parsed {
            Ok(c) => out.push(c),
            Err(p) => problems.push(p),
        }
    }
    out
}

/// A browser extension's cookie JSON: an array of objects, or an object
/// with a `cookies` array.
fn parse_cookie_json(text: &str, problems: &mut Vec<Problem>) -> Vec<Cookie> {
    let mut out = Vec::new();
    let elements = match json_elements(text, Some("cookies")) {
        Ok(e) => e,
        Err(p) => {
            problems.push(p);
            return out;
        }
    };
    for (line, value) in elements {
        let Value::Object(o) = value else {
            problems.push(problem(line, "each cookie must be a JSON object"));
            continue;
        };
        let parsed = (|| {
            let fields = Fields::new(line, &o);
            let name = fields.req_str("name")?;
            let value = fields.req_str("value")?;
            let domain = fields.req_str("domain")?;
            let host_only = fields.opt_bool("hostOnly")?.unwrap_or(false);
            let session = fields.opt_bool("session")?.unwrap_or(false);
            let expires = match o.get("expirationDate") {
                None | Some(Value::Null) => None,
                // Seconds, often with a fraction: kept in milliseconds.
                Some(Value::Number(n)) => n.as_f64().map(|f| (f * 1000.0) as i64),
                Some(_) => {
                    return Err(problem(line, "field `expirationDate` must be a number"));
                }
            };
            let attrs = CookieAttrs {
                name,
                host_only: host_only || !domain.starts_with('.'),
                domain: CookieAttrs::normalise_domain(&domain),
                path: fields.opt_str("path")?.unwrap_or_else(|| "/".into()),
                secure: fields.opt_bool("secure")?.unwrap_or(false),
                http_only: fields.opt_bool("httpOnly")?.unwrap_or(false),
                expires: if session { None } else { expires },
            };
            check_cookie(line, &attrs, &value)?;
            Ok(Cookie { line, attrs, value })
        })();
        match parsed {
            Ok(c) => out.push(c),
            Err(p) => problems.push(p),
        }
    }
    out
}

/// The site a cookie domain belongs to: its registrable part by the
/// public suffix list (`passport.jd.com` -> `jd.com`, `www.bbc.co.uk` ->
/// `bbc.co.uk`), as the cookie jar judges `Domain`. IP addresses, single
/// labels and public suffixes themselves stay as they are. Use `--site`
/// when another grouping is wanted.
pub fn site_of(domain: &str) -> String {
    let d = domain.trim_start_matches('.').to_ascii_lowercase();
    if d.parse::<std::net::IpAddr>().is_ok() {
        return d;
    }
    let d = d.trim_end_matches('.').to_string();
    match psl::domain_str(&d) {
        Some(registrable) => registrable.to_string(),
        None => d,
    }
}

fn domain_matches(domain: &str, site: &str) -> bool {
    let d = domain.trim_start_matches('.').to_ascii_lowercase();
    let s = site.trim_start_matches('.').to_ascii_lowercase();
    d == s || d.ends_with(&format!(".{s}"))
}

/// One session per site, cookies in file order; the session expires with
/// its first cookie to expire.
fn group_cookies(cookies: Vec<Cookie>, site: Option<&str>, source: &str, out: &mut Parsed) {
    out.cookies = cookies.len();
    let mut by_site: BTreeMap<String, Vec<Cookie>> = BTreeMap::new();
    for c in cookies {
        let s = match site {
            Some(s) if domain_matches(&c.attrs.domain, s) => s.to_string(),
            Some(_) => {
                out.other_sites += 1;
                continue;
            }
            None => site_of(&c.attrs.domain),
        };
        by_site.entry(s).or_default().push(c);
    }
    let now = chrono::Utc::now().timestamp_millis();
    for (site, cookies) in by_site {
        for c in &cookies {
            if let Some(t) = c.attrs.expires.filter(|&t| t <= now) {
                out.expired.push(ExpiredCookie {
                    line: c.line,
                    site: site.clone(),
                    name: c.attrs.name.clone(),
                    expired_at: t,
                });
            }
        }
        let line = cookies.first().map_or(1, |c| c.line);
        let mut new = NewCredential::new(&site, CredentialKind::Session);
        new.labels.push(("imported-from".into(), source.into()));
        new.expires_at = cookies.iter().filter_map(|c| c.attrs.expires).min();
        for c in cookies {
            new.secrets
                .cookies
                .push((c.attrs.name.clone(), c.value.clone()));
            new.secrets.cookie_attrs.push(c.attrs);
        }
        out.credentials.push((line, new));
    }
}

/// Where each element of the file's top-level array starts (1-based line),
/// parsed. `wrapper` also accepts an object holding the array under that
/// key. The message of a syntax error names the line and column only.
fn json_elements(text: &str, wrapper: Option<&str>) -> Result<Vec<(usize, Value)>, Problem> {
    let whole: Value = serde_json::from_str(text).map_err(|e| {
        problem(
            e.line().max(1),
            format!(
                "not valid JSON ({:?} error at column {})",
                e.classify(),
                e.column()
            ),
        )
    })?;
    let (items, start) = match (&whole, wrapper) {
        (Value::Array(items), _) => (items.clone(), text.find('[').unwrap_or(0)),
        (Value::Object(o), Some(key)) if o.get(key).is_some_and(Value::is_array) => {
            let at = text.find(&format!("\"{key}\"")).unwrap_or(0);
            let start = text[at..].find('[').map_or(0, |i| at + i);
            (o[key].as_array().cloned().unwrap_or_default(), start)
        }
        _ => {
            let what = match wrapper {
                Some(key) => format!("an array, or an object with a `{key}` array"),
                None => "an array of credentials".into(),
            };
            return Err(problem(1, format!("the file must hold {what}")));
        }
    };
    let lines = element_lines(text, start);
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, v)| (lines.get(i).copied().unwrap_or(1), v))
        .collect())
}

/// The line on which each element of the array opening at byte `start`
/// begins (a small scanner aware of strings and nesting).
fn element_lines(text: &str, start: usize) -> Vec<usize> {
    let mut lines = Vec::new();
    let mut line = 1 + text[..start].matches('\n').count();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut expect_element = false;
    for ch in text[start..].chars() {
        if ch == '\n' {
            line += 1;
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                in_string = false;
            }
            continue;
        }
        if expect_element && !ch.is_whitespace() && ch != ']' {
            lines.push(line);
            expect_element = false;
        }
        match ch {
            '"' => in_string = true,
            '[' | '{' => {
                depth += 1;
                if depth == 1 {
                    expect_element = true;
                }
            }
            ']' | '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => expect_element = true,
            _ => {}
        }
    }
    lines
}

/// A name, a value, and the object they came from (when a list of objects).
type Pair = (String, String, Option<Map<String, Value>>);

/// Reads fields of a JSON object with messages that name the field, never
/// its value.
struct Fields<'a> {
    line: usize,
    o: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn new(line: usize, o: &'a Map<String, Value>) -> Self {
        Fields { line, o }
    }

    fn opt_str(&self, k: &str) -> Result<Option<String>, Problem> {
        match self.o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(problem(self.line, format!("field `{k}` must be a string"))),
        }
    }

    fn req_str(&self, k: &str) -> Result<String, Problem> {
        self.opt_str(k)?
            .ok_or_else(|| problem(self.line, format!("field `{k}` is missing")))
    }

    fn opt_bool(&self, k: &str) -> Result<Option<bool>, Problem> {
        match self.o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(problem(
                self.line,
                format!("field `{k}` must be true or false"),
            )),
        }
    }

    fn opt_u32(&self, k: &str) -> Result<Option<u32>, Problem> {
        match self.o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| problem(self.line, format!("field `{k}` must be a whole number"))),
            Some(_) => Err(problem(
                self.line,
                format!("field `{k}` must be a whole number"),
            )),
        }
    }

    fn str_list(&self, k: &str) -> Result<Vec<String>, Problem> {
        match self.o.get(k) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        problem(self.line, format!("field `{k}` must be a list of strings"))
                    })
                })
                .collect(),
            Some(_) => Err(problem(
                self.line,
                format!("field `{k}` must be a list of strings"),
            )),
        }
    }

    /// `{"name": "value"}` or `[{"name": .., "value": ..}]`, in order.
    fn pairs(&self, k: &str) -> Result<Vec<Pair>, Problem> {
        let bad = || {
            problem(
                self.line,
                format!("field `{k}` must be an object of strings or a list of {{name, value}}"),
            )
        };
        match self.o.get(k) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(n, v)| Ok((n.clone(), v.as_str().ok_or_else(bad)?.to_string(), None)))
                .collect(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    let o = item.as_object().ok_or_else(bad)?;
                    let f = Fields::new(self.line, o);
                    Ok((f.req_str("name")?, f.req_str("value")?, Some(o.clone())))
                })
                .collect(),
            Some(_) => Err(bad()),
        }
    }

    fn unknown(&self, known: &[&str], what: &str) -> Result<(), Problem> {
        match self.o.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(problem(self.line, format!("unknown {what} field `{k}`"))),
            None => Ok(()),
        }
    }
}

const RECORD_FIELDS: &[&str] = &[
    "id",
    "site",
    "type",
    "username",
    "phone",
    "email",
    "tags",
    "expires_at",
    "max_concurrent",
    "rate_per_minute",
    "token_scope",
    "source_account",
    "labels",
    "token_type",
    "device_id",
    "fingerprint",
    "user_agent",
    "two_factor",
    "secrets",
];
const SECRET_FIELDS: &[&str] = &[
    "password",
    "cookies",
    "headers",
    "access_token",
    "refresh_token",
    "api_key",
    "secret_key",
    "recovery_codes",
    "totp_seed",
    "local_storage",
];

fn parse_json(text: &str, site: Option<&str>) -> Parsed {
    let mut out = Parsed::default();
    let elements = match json_elements(text, None) {
        Ok(e) => e,
        Err(p) => {
            out.problems.push(p);
            return out;
        }
    };
    for (line, value) in elements {
        match record_from_json(line, &value, site) {
            Ok(new) => {
                out.cookies += new.secrets.cookies.len();
                out.credentials.push((line, new));
            }
            Err(p) => out.problems.push(p),
        }
    }
    out
}

fn record_from_json(
    line: usize,
    value: &Value,
    site: Option<&str>,
) -> Result<NewCredential, Problem> {
    let Value::Object(o) = value else {
        return Err(problem(line, "each credential must be a JSON object"));
    };
    let f = Fields::new(line, o);
    f.unknown(RECORD_FIELDS, "credential")?;
    let record_site = f.opt_str("site")?;
    let site = match (record_site, site) {
        (Some(r), Some(s)) if r != s => {
            return Err(problem(line, format!("site {r:?} is not the --site given")));
        }
        (Some(r), _) => r,
        (None, Some(s)) => s.to_string(),
        (None, None) => return Err(problem(line, "field `site` is missing (or pass --site)")),
    };
    let kind_name = f.req_str("type")?;
    let kind = names::parse_kind(&kind_name).ok_or_else(|| {
        problem(
            line,
            "field `type` must be account, session, token, api-key or device",
        )
    })?;
    let mut new = NewCredential::new(&site, kind);
    new.id = f.opt_str("id")?;
    new.username = f.opt_str("username")?;
    new.phone = f.opt_str("phone")?;
    new.email = f.opt_str("email")?;
    new.tags = f.str_list("tags")?;
    new.token_scope = f.str_list("token_scope")?;
    new.source_account = f.opt_str("source_account")?;
    new.max_concurrent = f.opt_u32("max_concurrent")?;
    new.rate_per_minute = f.opt_u32("rate_per_minute")?;
    new.labels = f
        .pairs("labels")?
        .into_iter()
        .map(|(k, v, _)| (k, v))
        .collect();
    new.token_type = f.opt_str("token_type")?;
    new.device_id = f.opt_str("device_id")?;
    new.fingerprint = f.opt_str("fingerprint")?;
    new.user_agent = f.opt_str("user_agent")?;
    new.two_factor = f.opt_bool("two_factor")?.unwrap_or(false);
    new.expires_at =
        match o.get("expires_at") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(n.as_i64().ok_or_else(|| {
                problem(line, "field `expires_at` must be RFC 3339 or milliseconds")
            })?),
            Some(Value::String(t)) => Some(
                chrono::DateTime::parse_from_rfc3339(t)
                    .map_err(|_| problem(line, "field `expires_at` is not RFC 3339"))?
                    .timestamp_millis(),
            ),
            Some(_) => {
                return Err(problem(
                    line,
                    "field `expires_at` must be RFC 3339 or milliseconds",
                ));
            }
        };
    if let Some(secrets) = o.get("secrets") {
        let Value::Object(so) = secrets else {
            return Err(problem(line, "field `secrets` must be an object"));
        };
        let s = Fields::new(line, so);
        s.unknown(SECRET_FIELDS, "secrets")?;
        let mut out = Secrets::default();
        out.password = s.opt_str("password")?;
        out.access_token = s.opt_str("access_token")?;
        out.refresh_token = s.opt_str("refresh_token")?;
        out.api_key = s.opt_str("api_key")?;
        out.secret_key = s.opt_str("secret_key")?;
        out.recovery_codes = s.str_list("recovery_codes")?;
        out.totp_seed = s.opt_str("totp_seed")?;
        for (name, value, attrs) in s.pairs("cookies")? {
            // Attributes only when the cookie says where it applies.
            if let Some(a) = attrs.filter(|a| a.get("domain").is_some_and(|d| !d.is_null())) {
                let af = Fields::new(line, &a);
                out.cookie_attrs.push(CookieAttrs {
                    name: name.clone(),
                    domain: CookieAttrs::normalise_domain(
                        &af.opt_str("domain")?.unwrap_or_default(),
                    ),
                    host_only: !af.opt_bool("include_subdomains")?.unwrap_or(false),
                    path: af.opt_str("path")?.unwrap_or_else(|| "/".into()),
                    secure: af.opt_bool("secure")?.unwrap_or(false),
                    http_only: af.opt_bool("http_only")?.unwrap_or(false),
                    // Our schema gives seconds, as cookie files do.
                    expires: match a.get("expires") {
                        Some(Value::Number(n)) => n.as_i64().map(|s| s.saturating_mul(1000)),
                        _ => None,
                    },
                });
            }
            out.cookies.push((name, value));
        }
        out.headers = s
            .pairs("headers")?
            .into_iter()
            .map(|(n, v, _)| (n, v))
            .collect();
        out.local_storage = s
            .pairs("local_storage")?
            .into_iter()
            .map(|(n, v, _)| (n, v))
            .collect();
        new.secrets = out;
    }
    new.secrets
        .validate()
        .map_err(|(field, reason)| problem(line, format!("invalid {field}: {reason}")))?;
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_are_the_registrable_part() {
        assert_eq!(site_of(".passport.jd.com"), "jd.com");
        assert_eq!(site_of("www.bbc.co.uk"), "bbc.co.uk");
        assert_eq!(site_of("127.0.0.1"), "127.0.0.1");
        assert_eq!(site_of("localhost"), "localhost");
        assert_eq!(site_of("a.b.github.io"), "b.github.io");
        assert_eq!(site_of("co.uk"), "co.uk");
    }

    #[test]
    fn element_lines_follow_the_array() {
        let text = "[\n {\"a\": \"[,]\"},\n\n {\"b\": [1,2]}\n]";
        assert_eq!(element_lines(text, 0), vec![2, 4]);
    }
}
