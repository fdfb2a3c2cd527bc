//! `credpool add`: one credential; secret values come from flags or stdin,
//! never from a URL.

use super::client::{Body, Remote};
use super::{AddArgs, EXIT_ERROR, Failed, output, parse_kind_opt, usage};
use crate::pool::{NewCredential, Pool};
use crate::{AccessLevel, names};
use reqwest::Method;
use serde_json::{Value, json};
use std::io::Read;

pub fn run(pool: &Pool, a: &AddArgs) -> Result<(), Failed> {
    let meta = pool.add(collect(a)?)?;
    // The new credential as `show --json` prints it.
    let view = pool.view(&meta.id, AccessLevel::Sensitive)?;
    print_added(&output::view_json(&view), a.json);
    Ok(())
}

/// Through a server: the same checks here, the secrets in the body.
pub fn remote(r: &Remote, a: &AddArgs) -> Result<(), Failed> {
    let new = collect(a)?;
    let pairs = |v: &[(String, String)]| -> Value {
        v.iter()
            .map(|(n, val)| json!({"name": n, "value": val}))
            .collect()
    };
    let s = &new.secrets;
    let body = json!({
        "site": new.site,
        "type": names::kind(new.kind),
        "id": new.id,
        "username": new.username,
        "phone": new.phone,
        "email": new.email,
        "expires_at": a.expires_at,
        "tags": new.tags,
        "max_concurrent": new.max_concurrent,
        "rate_per_minute": new.rate_per_minute,
        "secrets": {
            "password": s.password,
            "cookies": pairs(&s.cookies),
            "headers": pairs(&s.headers),
            "access_token": s.access_token,
            "api_key": s.api_key,
        },
    });
    let meta = r.call(
        Method::POST,
        &["v1", "credentials"],
        &[],
        Body::Json(&body),
        "add credentials",
    )?;
    print_added(&meta, a.json);
    Ok(())
}

/// What `add` prints of the new credential ([`output::view_json`]).
fn print_added(meta: &Value, json: bool) {
    if json {
        println!("{meta}");
    } else {
        let text = |k: &str| meta[k].as_str().unwrap_or("-").to_string();
        println!("added {} ({}, {})", text("id"), text("type"), text("site"));
    }
}

/// The credential the flags and standard input describe.
fn collect(a: &AddArgs) -> Result<NewCredential, Failed> {
    let kind = parse_kind_opt(Some(&a.kind))?.expect("given");
    let mut new = NewCredential::new(&a.site, kind);
    new.id = a.id.clone();
    new.username = a.username.clone();
    new.phone = a.phone.clone();
    new.email = a.email.clone();
    new.tags = a.tags.clone();
    new.max_concurrent = a.max_concurrent;
    new.rate_per_minute = a.rate_per_minute;
    if let Some(t) = &a.expires_at {
        let at = chrono::DateTime::parse_from_rfc3339(t).map_err(|e| {
            usage(format!(
                "--expires-at {t:?} is not RFC 3339 (e.g. 2026-12-01T00:00:00Z): {e}"
            ))
        })?;
        new.expires_at = Some(at.timestamp_millis());
    }
    for c in &a.cookies {
        // The value may hold '='; only the first splits.
        let (name, value) = c
            .split_once('=')
            .ok_or_else(|| usage("--cookie must be NAME=VALUE"))?;
        new.secrets
            .cookies
            .push((name.trim().to_string(), value.to_string()));
    }
    for h in &a.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| usage("--header must be NAME:VALUE"))?;
        new.secrets
            .headers
            .push((name.trim().to_string(), value.trim_start().to_string()));
    }
    let stdin_uses = [a.password_stdin, a.token_stdin, a.api_key_stdin]
        .iter()
        .filter(|b| **b)
        .count();
    if stdin_uses > 1 {
        return Err(usage(
            "only one of --password-stdin, --token-stdin, --api-key-stdin may be given",
        ));
    }
    if stdin_uses == 1 {
        let value = read_stdin_secret()?;
        if a.password_stdin {
            new.secrets.password = Some(value);
        } else if a.token_stdin {
            new.secrets.access_token = Some(value);
        } else {
            new.secrets.api_key = Some(value);
        }
    }
    Ok(new)
}

fn read_stdin_secret() -> Result<String, Failed> {
    let mut buf = String::new();
    std::io::stdin()
        .read_to_string(&mut buf)
        .map_err(|e| Failed(EXIT_ERROR, format!("cannot read standard input: {e}")))?;
    let value = buf.trim_end_matches(['\r', '\n']).to_string();
    if value.is_empty() {
        return Err(usage("standard input was empty; pipe the secret in"));
    }
    Ok(value)
}
