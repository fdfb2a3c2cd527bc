//! OAuth 2.0 refresh-token grant (RFC 6749 section 6) with rotation that
//! never loses the account: the new refresh token is stored durably (with
//! the old one kept for a grace window) before the answer counts; an
//! `invalid_grant` on the current token is retried once with the previous
//! token while its grace lasts; an answer lost after the endpoint may have
//! rotated leaves the token sent current, for a prompt retry; a late
//! answer never overwrites a newer token.

use super::Inner;
use super::http::{self, Answer};
use super::sites::{ClientAuth, SiteConfig};
use crate::bindings::refresh::{RefreshFailure, RefreshOutcome};
use crate::secrets::Secrets;
use zeroize::Zeroizing;

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<i64>,
}

#[derive(serde::Deserialize)]
struct ErrorAnswer {
    error: String,
}

impl Drop for TokenAnswer {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.access_token.zeroize();
        self.refresh_token.zeroize();
    }
}

async fn grant(
    inner: &Inner,
    site: &SiteConfig,
    refresh_token: &str,
    stored_secret: Option<&str>,
) -> Result<Answer, RefreshFailure> {
    let url = site
        .token_url
        .as_deref()
        .ok_or(RefreshFailure::Misconfigured)?;
    let client_id = site
        .client_id
        .as_deref()
        .ok_or(RefreshFailure::Misconfigured)?;
    let client_secret = match &site.client_secret_env {
        Some(var) => Some(Zeroizing::new(
            std::env::var(var).map_err(|_| RefreshFailure::Misconfigured)?,
        )),
        // Not in the environment: the credential's stored `secret_key`.
        None => stored_secret.map(|s| Zeroizing::new(s.to_string())),
    };
    let mut form: Vec<(&str, &str)> = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ];
    let mut req = inner.client.post(url);
    match site.client_auth {
        ClientAuth::Basic => {
            req = req.basic_auth(client_id, client_secret.as_deref().map(|s| s.as_str()))
        }
        ClientAuth::Body => {
            form.push(("client_id", client_id));
            if let Some(s) = &client_secret {
                form.push(("client_secret", s.as_str()));
            }
        }
    }
    http::send(
        req.header("Accept", "application/json").form(&form),
        site.request_timeout(),
    )
    .await
}

fn is_invalid_grant(a: &Answer) -> bool {
    (a.status == 400 || a.status == 401)
        && serde_json::from_str::<ErrorAnswer>(&a.body).is_ok_and(|e| e.error == "invalid_grant")
}

/// Runs the grant for credential `id` and stores what it got.
///
/// No answer, a 5xx, or an answer that cannot be used or kept may hide a
/// rotation the endpoint committed: nothing is stored, the token sent stays
/// current (the policy retries with it within seconds, inside the
/// endpoint's grace window), and the loss is remembered so that a later
/// `invalid_grant` says why the account needs a new login.
pub(crate) async fn refresh(
    inner: &Inner,
    site_name: &str,
    site: &SiteConfig,
    id: &str,
) -> RefreshOutcome {
    let failed = |f, s| RefreshOutcome::Failed((f, s));
    let lost = |why: &str, f, s| {
        inner.answer_lost(site_name, id, why);
        RefreshOutcome::Failed((f, s))
    };
    let secrets = match inner.vault.get_secrets(site_name, id) {
        Ok(Some(s)) => s,
        Ok(None) => return failed(RefreshFailure::Misconfigured, None),
        Err(_) => return failed(RefreshFailure::Other, None),
    };
    let Some(current) = secrets.refresh_token.clone().map(Zeroizing::new) else {
        return failed(RefreshFailure::InvalidGrant, None);
    };
    let stored = secrets.secret_key.clone().map(Zeroizing::new);
    let now = inner.now_ms();
    let mut used = current.clone();
    // Only a request that went out can have lost its answer; a grant the
    // host could not even send (no token URL, no client secret) is not.
    let unanswered = |f: RefreshFailure| match f {
        RefreshFailure::Network | RefreshFailure::Timeout => {
            lost(crate::names::refresh_failure(f), f, None)
        }
        _ => failed(f, None),
    };
    let mut answer = match grant(inner, site, &current, stored.as_deref().map(|s| s.as_str())).await
    {
        Ok(a) => a,
        Err(f) => return unanswered(f),
    };
    if is_invalid_grant(&answer)
        && let (Some(prev), Some(until)) = (
            &secrets.previous_refresh_token,
            secrets.previous_refresh_token_until,
        )
        && until > now
        && prev.as_str() != current.as_str()
    {
        used = Zeroizing::new(prev.clone());
        answer = match grant(inner, site, &used, stored.as_deref().map(|s| s.as_str())).await {
            Ok(a) => a,
            Err(f) => return unanswered(f),
        };
    }
    if is_invalid_grant(&answer) {
        inner.token_refused(site_name, site, id, answer.status);
        return failed(RefreshFailure::InvalidGrant, Some(answer.status));
    }
    if answer.status == 429 {
        return failed(RefreshFailure::RateLimited, Some(answer.status));
    }
    if answer.status >= 500 {
        let why = format!("HTTP {}", answer.status);
        return lost(&why, RefreshFailure::Other, Some(answer.status));
    }
    if answer.status != 200 {
        return failed(RefreshFailure::Other, Some(answer.status));
    }
    let Ok(tokens) = serde_json::from_str::<TokenAnswer>(&answer.body) else {
        return lost("an unreadable answer", RefreshFailure::Other, Some(200));
    };
    // Durable before the new token is relied on: a crash after this keeps
    // both tokens; a failed write keeps the old bundle and reports failure.
    match keep(inner, site_name, id, &current, &tokens, &used, now, site) {
        Ok(true) => {}
        Ok(false) => {
            // A newer token was stored while this answer was on its way
            // (a late duplicate): it stays; this answer is dropped.
            tracing::warn!(
                target: "credpool::refresh",
                "[CRED] late refresh answer not kept credential={id} site={site_name}: a newer refresh token was stored while it was on its way"
            );
            inner.answer_confirmed(site_name, id);
            return RefreshOutcome::Refreshed(None);
        }
        Err(()) => {
            // The endpoint answered 200: a 2xx the host could not keep is
            // retried promptly, as a lost answer.
            return lost(
                "the new tokens could not be stored",
                RefreshFailure::Other,
                Some(answer.status),
            );
        }
    }
    inner.answer_confirmed(site_name, id);
    let expiry = tokens.expires_in.map(|s| token_expiry(now, s));
    RefreshOutcome::Refreshed(expiry)
}

/// Stores the tokens of an answer to a grant sent with `current`, onto
/// the bundle as it is now, unless the bundle no longer holds `current`
/// (a newer token arrived meanwhile: `Ok(false)`). A compare-and-swap
/// with the bytes read closes the gap between the check and the write.
#[allow(clippy::too_many_arguments)]
fn keep(
    inner: &Inner,
    site_name: &str,
    id: &str,
    current: &str,
    tokens: &TokenAnswer,
    used: &str,
    now: i64,
    site: &SiteConfig,
) -> Result<bool, ()> {
    for _ in 0..3 {
        let Ok(Some((mut fresh, raw))) = inner.vault.get_secrets_versioned(site_name, id) else {
            return Err(());
        };
        if fresh.refresh_token.as_deref() != Some(current) {
            return Ok(false);
        }
        apply(
            &mut fresh,
            tokens,
            used,
            now,
            site.rotation_grace().as_millis() as i64,
        );
        match inner.vault.replace_secrets_if(site_name, id, &fresh, &raw) {
            Ok(true) => return Ok(true),
            Ok(false) => continue,
            Err(_) => return Err(()),
        }
    }
    Err(())
}

/// A token's lifetime is held between these: an endpoint answering 0, a
/// negative or a huge `expires_in` would otherwise have it refreshed on
/// every tick (rotating the refresh token each time) or overflow.
pub const MIN_TOKEN_LIFETIME_S: i64 = 60;
pub const MAX_TOKEN_LIFETIME_S: i64 = 366 * 86_400;

/// When a token given at `now` (ms) for `expires_in` seconds expires.
pub fn token_expiry(now: i64, expires_in: i64) -> i64 {
    let secs = expires_in.clamp(MIN_TOKEN_LIFETIME_S, MAX_TOKEN_LIFETIME_S);
    now.saturating_add(secs * 1000)
}

fn apply(secrets: &mut Secrets, t: &TokenAnswer, used: &str, now: i64, grace_ms: i64) {
    secrets.access_token = Some(t.access_token.clone());
    if let Some(new) = &t.refresh_token
        && new != used
    {
        secrets.previous_refresh_token = Some(used.to_string());
        secrets.previous_refresh_token_until = Some(now.saturating_add(grace_ms));
        secrets.refresh_token = Some(new.clone());
    } else {
        secrets.refresh_token = Some(used.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_clamped_without_overflow() {
        let now = 1_767_225_600_000;
        assert_eq!(token_expiry(now, 3600), now + 3_600_000);
        for bad in [0, -5, i64::MIN] {
            assert_eq!(token_expiry(now, bad), now + MIN_TOKEN_LIFETIME_S * 1000);
        }
        assert_eq!(
            token_expiry(now, i64::MAX),
            now + MAX_TOKEN_LIFETIME_S * 1000
        );
        assert_eq!(token_expiry(i64::MAX - 5, 3600), i64::MAX);
    }
}
