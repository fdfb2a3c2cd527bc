//! `credpool add`: one credential; secret values come from flags or stdin,
//! never from a URL.

use super::client::{Body, Remote};
use super::{AddArgs, EXIT_ERROR, Failed, output, parse_kind_opt, usage};
use crate::pool::{NewCredential, Pool};
use crate::{AccessLevel, names};
use reqwest::Method;
use serde_json::{Value, json};
use std::io::Read;
use zeroize::Zeroizing;

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
        "token_scope": new.token_scope,
        "source_account": new.source_account,
        "labels": pairs(&new.labels),
        "token_type": new.token_type,
        "device_id": new.device_id,
        "fingerprint": new.fingerprint,
        "user_agent": new.user_agent,
        "two_factor": new.two_factor,
        "secrets": {
            "password": s.password,
            "cookies": pairs(&s.cookies),
            "headers": pairs(&s.headers),
            "local_storage": pairs(&s.local_storage),
            "access_token": s.access_token,
            "refresh_token": s.refresh_token,
            "api_key": s.api_key,
            "secret_key": s.secret_key,
            "recovery_codes": s.recovery_codes,
            "totp_seed": s.totp_seed,
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
    new.source_account = a.source_account.clone();
    new.token_type = a.token_type.clone();
    new.device_id = a.device_id.clone();
    new.fingerprint = a.fingerprint.clone();
    new.user_agent = a.user_agent.clone();
    new.two_factor = a.two_factor;
    new.token_scope = a
        .scopes
        .iter()
        .flat_map(|s| s.split_whitespace())
        .map(str::to_string)
        .collect();
    for l in &a.labels {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| usage(format!("--label {l:?} must be KEY=VALUE")))?;
        if k.trim().is_empty() {
            return Err(usage(format!("--label {l:?} has an empty key")));
        }
        new.labels.push((k.trim().to_string(), v.to_string()));
    }
    let single = [
        (a.password_stdin, Field::Password),
        (a.token_stdin, Field::AccessToken),
        (a.api_key_stdin, Field::ApiKey),
        (a.refresh_token_stdin, Field::RefreshToken),
        (a.client_secret_stdin, Field::ClientSecret),
        (a.totp_seed_stdin, Field::TotpSeed),
    ];
    let mut given = single.iter().filter(|(on, _)| *on).map(|(_, f)| *f);
    match (given.next(), given.next(), a.secrets_stdin) {
        (None, _, false) => {}
        (Some(field), None, false) => {
            let value = read_stdin_secret()?;
            set_secret(&mut new, field, value.to_string(), 0)?;
        }
        (None, _, true) => {
            let text = read_stdin_all()?;
            read_secret_lines(&mut new, &text)?;
        }
        _ => {
            return Err(usage(
                "standard input holds one secret per --*-stdin flag: give one of them, or \
                 --secrets-stdin with one NAME=VALUE a line for several",
            ));
        }
    }
    if let Some(seed) = &new.secrets.totp_seed {
        crate::lifecycle::totp::decode_base32(seed).map_err(|e| usage(e.to_string()))?;
    }
    Ok(new)
}

/// A secret `add` reads from standard input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Password,
    AccessToken,
    RefreshToken,
    ClientSecret,
    ApiKey,
    SecretKey,
    TotpSeed,
    RecoveryCode,
    Cookie,
    Header,
    LocalStorage,
}

/// The names `--secrets-stdin` takes before `=`; the last three take a
/// `.NAME` after them.
const LINE_FIELDS: [(&str, Field); 11] = [
    ("password", Field::Password),
    ("access_token", Field::AccessToken),
    ("refresh_token", Field::RefreshToken),
    ("client_secret", Field::ClientSecret),
    ("api_key", Field::ApiKey),
    ("secret_key", Field::SecretKey),
    ("totp_seed", Field::TotpSeed),
    ("recovery_code", Field::RecoveryCode),
    ("cookie", Field::Cookie),
    ("header", Field::Header),
    ("local_storage", Field::LocalStorage),
];

/// One `NAME=VALUE` a line; blank lines and `#` comments are skipped.
/// Errors name the line and the name, never a value.
fn read_secret_lines(new: &mut NewCredential, text: &str) -> Result<(), Failed> {
    let mut seen = std::collections::BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let (name, value) = line.split_once('=').ok_or_else(|| {
            usage(format!(
                "--secrets-stdin line {n}: expected NAME=VALUE (NAME one of {})",
                line_names()
            ))
        })?;
        let name = name.trim();
        let (head, entry) = match name.split_once('.') {
            Some((h, e)) => (h, Some(e)),
            None => (name, None),
        };
        let field = LINE_FIELDS
            .iter()
            .find(|(k, _)| *k == head)
            .map(|(_, f)| *f)
            .ok_or_else(|| {
                // Echoed only when it looks like a field name: a secret
                // piped in by mistake splits at its first `=` (base64
                // padding), and the part before it is most of the secret.
                let shown = if name.len() <= 24
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.')
                {
                    format!(" {name:?}")
                } else {
                    String::new()
                };
                usage(format!(
                    "--secrets-stdin line {n}: unknown name{shown} (expected one of {})",
                    line_names()
                ))
            })?;
        let named = matches!(field, Field::Cookie | Field::Header | Field::LocalStorage);
        let entry = match (named, entry) {
            (true, Some(e)) if !e.is_empty() => e,
            (false, None) => "",
            (true, _) => {
                return Err(usage(format!(
                    "--secrets-stdin line {n}: {head} needs a name: {head}.NAME=VALUE"
                )));
            }
            (false, Some(_)) => {
                return Err(usage(format!(
                    "--secrets-stdin line {n}: {head} takes no .NAME"
                )));
            }
        };
        if field != Field::RecoveryCode && !seen.insert(name.to_string()) {
            return Err(usage(format!(
                "--secrets-stdin line {n}: {name} is given twice"
            )));
        }
        if value.is_empty() {
            return Err(usage(format!("--secrets-stdin line {n}: {name} is empty")));
        }
        match field {
            Field::Cookie => new
                .secrets
                .cookies
                .push((entry.to_string(), value.to_string())),
            Field::Header => new
                .secrets
                .headers
                .push((entry.to_string(), value.trim_start().to_string())),
            Field::LocalStorage => new
                .secrets
                .local_storage
                .push((entry.to_string(), value.to_string())),
            _ => set_secret(new, field, value.to_string(), n)?,
        }
    }
    Ok(())
}

fn line_names() -> String {
    LINE_FIELDS
        .iter()
        .map(|(k, f)| match f {
            Field::Cookie | Field::Header | Field::LocalStorage => format!("{k}.NAME"),
            _ => k.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Puts one secret in its place. The client secret is kept as the
/// credential's `secret_key`, which an OAuth refresh sends as the client
/// secret when the site names no `client_secret_env`.
fn set_secret(
    new: &mut NewCredential,
    field: Field,
    value: String,
    line: usize,
) -> Result<(), Failed> {
    let s = &mut new.secrets;
    let slot = match field {
        Field::Password => &mut s.password,
        Field::AccessToken => &mut s.access_token,
        Field::RefreshToken => &mut s.refresh_token,
        Field::ApiKey => &mut s.api_key,
        Field::TotpSeed => &mut s.totp_seed,
        Field::ClientSecret | Field::SecretKey => {
            if s.secret_key.is_some() {
                return Err(usage(format!(
                    "--secrets-stdin line {line}: client_secret and secret_key are the same \
                     field (the OAuth client secret); give one"
                )));
            }
            &mut s.secret_key
        }
        Field::RecoveryCode => {
            s.recovery_codes.push(value);
            return Ok(());
        }
        Field::Cookie | Field::Header | Field::LocalStorage => {
            unreachable!("named entries are pushed by the caller")
        }
    };
    *slot = Some(value);
    Ok(())
}

/// All of standard input, kept in memory that is wiped when dropped.
fn read_stdin_all() -> Result<Zeroizing<String>, Failed> {
    let mut buf = Zeroizing::new(String::new());
    std::io::stdin()
        .read_to_string(&mut buf)
        .map_err(|e| Failed(EXIT_ERROR, format!("cannot read standard input: {e}")))?;
    if buf.trim().is_empty() {
        return Err(usage("standard input was empty; pipe the secrets in"));
    }
    Ok(buf)
}

fn read_stdin_secret() -> Result<Zeroizing<String>, Failed> {
    let mut buf = Zeroizing::new(String::new());
    std::io::stdin()
        .read_to_string(&mut buf)
        .map_err(|e| Failed(EXIT_ERROR, format!("cannot read standard input: {e}")))?;
    let value = Zeroizing::new(buf.trim_end_matches(['\r', '\n']).to_string());
    if value.is_empty() {
        return Err(usage("standard input was empty; pipe the secret in"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_line_name_is_echoed_only_when_it_looks_like_a_name() {
        let mut new = NewCredential::new("jd.com", crate::CredentialKind::Token);
        let Err(Failed(_, msg)) = read_secret_lines(&mut new, "bogus=1\n") else {
            panic!("an unknown name is refused");
        };
        assert!(msg.contains("unknown name \"bogus\""), "{msg}");
        // A base64 token piped in by mistake splits at its padding.
        let token = "QUJDREVGR0hJSktMTU5PUA==";
        let Err(Failed(_, msg)) = read_secret_lines(&mut new, &format!("{token}\n")) else {
            panic!("a bare token is refused");
        };
        assert!(msg.contains("line 1: unknown name (expected"), "{msg}");
        assert!(!msg.contains("QUJDREVGR0hJSktMTU5PUA"), "{msg}");
    }
}
