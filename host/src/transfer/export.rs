//! Export: a credential with its secrets in our JSON schema or as a
//! Netscape cookies.txt (`export --reveal`, the server's admin export).

use crate::CredentialView;
use crate::names;
use crate::secrets::{CookieAttrs, Secrets};
use serde_json::{Map, Value, json};

/// A credential in our JSON schema, secrets included (`export --reveal`).
pub fn to_json(view: &CredentialView, secrets: &Secrets) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(view.id));
    o.insert("site".into(), json!(view.site));
    o.insert("type".into(), json!(names::kind(view.kind)));
    if let Some(s) = &view.sensitive {
        for (k, v) in [
            ("username", &s.username),
            ("phone", &s.phone),
            ("email", &s.email),
        ] {
            if let Some(v) = v {
                o.insert(k.into(), json!(v));
            }
        }
        if !s.token_scope.is_empty() {
            o.insert("token_scope".into(), json!(s.token_scope));
        }
        for (k, v) in [
            ("device_id", &s.device_id),
            ("fingerprint", &s.fingerprint),
            ("user_agent", &s.user_agent),
        ] {
            if let Some(v) = v {
                o.insert(k.into(), json!(v));
            }
        }
    }
    if let Some(i) = &view.internal {
        if let Some(t) = i.expires_at {
            o.insert("expires_at".into(), time_json(t));
        }
        if !i.tags.is_empty() {
            o.insert("tags".into(), json!(i.tags));
        }
        if !i.labels.is_empty() {
            let labels: Map<String, Value> = i
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            o.insert("labels".into(), Value::Object(labels));
        }
        o.insert("max_concurrent".into(), json!(i.max_concurrent));
        if let Some(r) = i.rate_per_minute {
            o.insert("rate_per_minute".into(), json!(r));
        }
        if let Some(a) = &i.source_account {
            o.insert("source_account".into(), json!(a));
        }
        if let Some(t) = &i.token_type {
            o.insert("token_type".into(), json!(t));
        }
        if i.two_factor {
            o.insert("two_factor".into(), json!(true));
        }
    }
    let mut s = Map::new();
    for (k, v) in [
        ("password", &secrets.password),
        ("access_token", &secrets.access_token),
        ("refresh_token", &secrets.refresh_token),
        ("api_key", &secrets.api_key),
        ("secret_key", &secrets.secret_key),
        ("totp_seed", &secrets.totp_seed),
    ] {
        if let Some(v) = v {
            s.insert(k.into(), json!(v));
        }
    }
    if !secrets.cookies.is_empty() {
        let cookies: Vec<Value> = secrets
            .cookies
            .iter()
            .enumerate()
            .map(|(i, (n, v))| {
                let mut c = json!({"name": n, "value": v});
                if let Some(a) = secrets.cookie_attrs_of(i) {
                    let c = c.as_object_mut().expect("object");
                    c.insert("domain".into(), json!(a.domain));
                    c.insert("include_subdomains".into(), json!(!a.host_only));
                    c.insert("path".into(), json!(a.path));
                    c.insert("secure".into(), json!(a.secure));
                    c.insert("http_only".into(), json!(a.http_only));
                    c.insert("expires".into(), json!(a.expires.map(|ms| ms / 1000)));
                }
                c
            })
            .collect();
        s.insert("cookies".into(), Value::Array(cookies));
    }
    if !secrets.headers.is_empty() {
        let headers: Vec<Value> = secrets
            .headers
            .iter()
            .map(|(n, v)| json!({"name": n, "value": v}))
            .collect();
        s.insert("headers".into(), Value::Array(headers));
    }
    if !secrets.recovery_codes.is_empty() {
        s.insert("recovery_codes".into(), json!(secrets.recovery_codes));
    }
    if !secrets.local_storage.is_empty() {
        let entries: Vec<Value> = secrets
            .local_storage
            .iter()
            .map(|(n, v)| json!({"name": n, "value": v}))
            .collect();
        s.insert("local_storage".into(), Value::Array(entries));
    }
    o.insert("secrets".into(), Value::Object(s));
    Value::Object(o)
}

fn time_json(ms: i64) -> Value {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        None => json!(ms),
    }
}

/// A credential's cookies as a Netscape cookies.txt that curl `-b` reads.
/// Cookies without known attributes get the credential's site (with
/// subdomains), path `/`, and its expiry.
pub fn to_cookies_txt(view: &CredentialView, secrets: &Secrets) -> String {
    let expires_at = view
        .internal
        .as_ref()
        .and_then(|i| i.expires_at)
        .map_or(0, |ms| ms / 1000);
    let mut out = String::from(
        "# Netscape HTTP Cookie File\n# Exported by credpool: these are secret values, keep this file private.\n\n",
    );
    let mut left_out = 0;
    for (i, (name, value)) in secrets.cookies.iter().enumerate() {
        let default;
        let a = match secrets.cookie_attrs_of(i) {
            Some(a) => a,
            None => {
                default = CookieAttrs {
                    name: name.clone(),
                    domain: view.site.clone(),
                    host_only: false,
                    path: "/".into(),
                    secure: false,
                    http_only: false,
                    expires: (expires_at > 0).then_some(expires_at * 1000),
                };
                &default
            }
        };
        // Never write a control character: a newline would make a line of
        // its own (a cookie for another domain), a tab another field.
        if [name, value, &a.domain, &a.path]
            .iter()
            .any(|f| f.bytes().any(|b| b.is_ascii_control()))
        {
            left_out += 1;
            continue;
        }
        let tf = |b: bool| if b { "TRUE" } else { "FALSE" };
        out.push_str(&format!(
            "{}{}{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            if a.http_only { "#HttpOnly_" } else { "" },
            // A leading dot marks a domain cookie, as curl writes it.
            if a.host_only { "" } else { "." },
            a.domain,
            tf(!a.host_only),
            if a.path.is_empty() { "/" } else { &a.path },
            tf(a.secure),
            a.expires.map_or(0, |ms| ms / 1000),
            name,
            value
        ));
    }
    if left_out > 0 {
        out.push_str(&format!(
            "# {left_out} cookie(s) left out: a field held a control character\n"
        ));
    }
    out
}
