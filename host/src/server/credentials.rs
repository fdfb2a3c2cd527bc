//! Credentials: list and show at the caller's access level (masked as the
//! CLI masks), add (secrets in the body), import, remove, unban,
//! reset-challenge; reveal and export for admins, audited.

use super::auth::{Need, Principal, Role};
use super::errors::{ApiError, ApiResult, Q, read_body, read_json};
use super::{Shared, blocking};
use crate::audit::AuditRecord;
use crate::cli::output;
use crate::pool::NewCredential;
use crate::transfer::{self, Format};
use crate::{AccessLevel, ListFilter, names};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashSet;

/// The highest view a role may ask for.
fn top_level(role: Role) -> AccessLevel {
    match role {
        Role::Viewer => AccessLevel::Internal,
        _ => AccessLevel::Sensitive,
    }
}

fn level_for(who: &Principal, asked: Option<&str>) -> ApiResult<AccessLevel> {
    let top = top_level(who.role);
    let Some(asked) = asked else {
        return Ok(top);
    };
    let level = names::parse_access_level(asked)
        .filter(|l| *l != AccessLevel::Secret)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_input",
                "`level` must be public, internal or sensitive (secrets only via reveal)",
            )
        })?;
    let rank = |l: AccessLevel| match l {
        AccessLevel::Public => 0,
        AccessLevel::Internal => 1,
        AccessLevel::Sensitive => 2,
        AccessLevel::Secret => 3,
    };
    if rank(level) > rank(top) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "a {} token may see views up to {}",
                who.role.name(),
                names::access_level(top)
            ),
        ));
    }
    Ok(level)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    site: Option<String>,
    status: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    tag: Option<String>,
    level: Option<String>,
}

pub async fn list(
    State(s): State<Shared>,
    headers: HeaderMap,
    Q(q): Q<ListQuery>,
) -> ApiResult<Response> {
    let who = s.tokens.authorize(&headers, Need::View)?;
    let level = level_for(&who, q.level.as_deref())?;
    let mut filter = ListFilter::all();
    filter.site = q.site;
    filter.status = match &q.status {
        Some(st) => Some(names::parse_status(st).ok_or_else(|| {
            ApiError::bad_request("invalid_input", "`status` is not a known status")
        })?),
        None => None,
    };
    filter.kind = match &q.kind {
        Some(k) => Some(names::parse_kind(k).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_input",
                "`type` must be account, session, token, api-key or device",
            )
        })?),
        None => None,
    };
    filter.tag = q.tag;
    let pool = s.tenants.get(&who.tenant)?.pool;
    let views = pool.list(&filter, level)?;
    Ok(Json(Value::Array(views.iter().map(output::view_json).collect())).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelQuery {
    level: Option<String>,
}

pub async fn show(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Q(q): Q<LevelQuery>,
) -> ApiResult<Response> {
    let who = s.tokens.authorize(&headers, Need::View)?;
    let level = level_for(&who, q.level.as_deref())?;
    let pool = s.tenants.get(&who.tenant)?.pool;
    Ok(Json(output::view_json(&pool.view(&id, level)?)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameValue {
    name: String,
    value: String,
}

/// Secret values of a credential to add. No `Debug`: they are secrets.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SecretsBody {
    password: Option<String>,
    #[serde(default)]
    cookies: Vec<NameValue>,
    #[serde(default)]
    headers: Vec<NameValue>,
    access_token: Option<String>,
    refresh_token: Option<String>,
    api_key: Option<String>,
    secret_key: Option<String>,
    #[serde(default)]
    recovery_codes: Vec<String>,
    totp_seed: Option<String>,
    #[serde(default)]
    local_storage: Vec<NameValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddBody {
    site: String,
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
    username: Option<String>,
    phone: Option<String>,
    email: Option<String>,
    /// RFC 3339.
    expires_at: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    token_scope: Vec<String>,
    max_concurrent: Option<u32>,
    rate_per_minute: Option<u32>,
    source_account: Option<String>,
    #[serde(default)]
    labels: Vec<NameValue>,
    token_type: Option<String>,
    device_id: Option<String>,
    fingerprint: Option<String>,
    user_agent: Option<String>,
    #[serde(default)]
    two_factor: bool,
    #[serde(default)]
    secrets: SecretsBody,
}

impl AddBody {
    fn into_new(self) -> ApiResult<NewCredential> {
        let kind = names::parse_kind(&self.kind).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_input",
                "`type` must be account, session, token, api-key or device",
            )
        })?;
        let mut new = NewCredential::new(&self.site, kind);
        new.id = self.id;
        new.username = self.username.clone();
        new.phone = self.phone;
        new.email = self.email;
        new.tags = self.tags;
        new.token_scope = self.token_scope;
        new.max_concurrent = self.max_concurrent;
        new.rate_per_minute = self.rate_per_minute;
        new.source_account = self.source_account;
        new.labels = self.labels.into_iter().map(|l| (l.name, l.value)).collect();
        new.token_type = self.token_type;
        new.device_id = self.device_id;
        new.fingerprint = self.fingerprint;
        new.user_agent = self.user_agent;
        new.two_factor = self.two_factor;
        if let Some(t) = &self.expires_at {
            let at = chrono::DateTime::parse_from_rfc3339(t).map_err(|_| {
                ApiError::bad_request(
                    "invalid_input",
                    "`expires_at` is not RFC 3339 (e.g. 2026-12-01T00:00:00Z)",
                )
            })?;
            new.expires_at = Some(at.timestamp_millis());
        }
        let s = self.secrets;
        new.secrets.password = s.password;
        new.secrets.cookies = s.cookies.into_iter().map(|c| (c.name, c.value)).collect();
        new.secrets.headers = s.headers.into_iter().map(|h| (h.name, h.value)).collect();
        new.secrets.access_token = s.access_token;
        new.secrets.refresh_token = s.refresh_token;
        new.secrets.api_key = s.api_key;
        new.secrets.secret_key = s.secret_key;
        new.secrets.recovery_codes = s.recovery_codes;
        new.secrets.totp_seed = s.totp_seed;
        new.secrets.local_storage = s
            .local_storage
            .into_iter()
            .map(|e| (e.name, e.value))
            .collect();
        if new.secrets.password.is_some() {
            new.secrets.username = self.username;
        }
        Ok(new)
    }
}

pub async fn add(State(s): State<Shared>, headers: HeaderMap, body: Body) -> ApiResult<Response> {
    let who = s.tokens.authorize(&headers, Need::Operate)?;
    let body: AddBody = read_json(body, s.max_body).await?;
    let new = body.into_new()?;
    let pool = s.tenants.get(&who.tenant)?.pool;
    let level = top_level(who.role);
    // The new credential as `GET /v1/credentials/{id}` shows it.
    let view = blocking(move || {
        let meta = pool.add(new)?;
        Ok(pool.view(&meta.id, level)?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(output::view_json(&view))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    format: String,
    site: Option<String>,
    #[serde(default)]
    skip_invalid: bool,
    /// A session the pool already holds (same site and cookie names) is
    /// replaced by the file's; without it, it is skipped and said.
    #[serde(default)]
    replace: bool,
}

pub async fn import(
    State(s): State<Shared>,
    headers: HeaderMap,
    Q(q): Q<ImportQuery>,
    body: Body,
) -> ApiResult<Response> {
    let who = s.tokens.authorize(&headers, Need::Operate)?;
    let format = Format::parse(&q.format).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_input",
            "`format` must be json, cookies-txt or cookie-json",
        )
    })?;
    let bytes = read_body(body, s.max_body).await?;
    let text = zeroize::Zeroizing::new(String::from_utf8(bytes.to_vec()).map_err(|_| {
        ApiError::bad_request("invalid_input", "the file to import is not UTF-8 text")
    })?);
    let pool = s.tenants.get(&who.tenant)?.pool;
    blocking(move || {
        let mut parsed = transfer::parse(format, &text, q.site.as_deref());
        for (line, new) in &parsed.credentials {
            if let Some(id) = &new.id
                && pool.view(id, AccessLevel::Public).is_ok()
            {
                parsed.problems.push(transfer::Problem {
                    line: *line,
                    message: format!("a credential with id {id} already exists"),
                });
            }
        }
        parsed.problems.sort_by_key(|p| p.line);
        if !parsed.problems.is_empty() && !q.skip_invalid {
            let mut e = ApiError::bad_request(
                "invalid_import",
                format!(
                    "{} bad line(s) or record(s): nothing imported (fix them, or pass skip_invalid=true); first: line {}: {}",
                    parsed.problems.len(),
                    parsed.problems[0].line,
                    parsed.problems[0].message
                ),
            );
            e.status = StatusCode::BAD_REQUEST;
            return Err(e);
        }
        let bad: HashSet<usize> = parsed.problems.iter().map(|p| p.line).collect();
        transfer::duplicates::find(&pool, &mut parsed, q.replace)?;
        let (lines, news): (Vec<usize>, Vec<NewCredential>) =
            std::mem::take(&mut parsed.credentials)
                .into_iter()
                .filter(|(line, _)| !bad.contains(line))
                .unzip();
        let added = pool.add_all(news).map_err(|e| ApiError::from(e.error))?;
        transfer::duplicates::after_add(&pool, &mut parsed, &lines, &added)?;
        Ok(Json(output::import_json(&added, &parsed))
        .into_response())
    })
    .await
}

pub async fn remove(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let who = s.tokens.authorize(&headers, Need::Operate)?;
    let pool = s.tenants.get(&who.tenant)?.pool;
    let id2 = id.clone();
    blocking(move || Ok(pool.remove(&id2)?)).await?;
    Ok(Json(json!({"id": id, "removed": true})).into_response())
}

pub async fn unban(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let who = s.tokens.authorize(&headers, Need::Operate)?;
    let pool = s.tenants.get(&who.tenant)?.pool;
    let meta = blocking(move || Ok(pool.unban(&id)?)).await?;
    Ok(Json(output::meta_json(&meta)).into_response())
}

pub async fn reset_challenge(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let who = s.tokens.authorize(&headers, Need::Operate)?;
    let pool = s.tenants.get(&who.tenant)?.pool;
    let meta = blocking(move || Ok(pool.reset_challenge(&id)?)).await?;
    Ok(Json(output::meta_json(&meta)).into_response())
}

pub async fn reveal(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let who = s.tokens.authorize(&headers, Need::Admin)?;
    let pool = s.tenants.get(&who.tenant)?.pool;
    let token = who.token_id.clone();
    let (view, secrets) = blocking(move || Ok(pool.reveal(&id)?)).await?;
    let record = AuditRecord::now("reveal", &view.id, &view.site, &who.tenant).over_http(&token);
    audit(&s, record).await?;
    tracing::warn!(target: "credpool::audit", "[AUDIT] secrets revealed over HTTP credential={} token={token} tenant={}", view.id, who.tenant);
    Ok(Json(output::revealed_json(&view, &secrets)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    format: String,
}

pub async fn export(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Q(q): Q<ExportQuery>,
) -> ApiResult<Response> {
    let who = s.tokens.authorize(&headers, Need::Admin)?;
    let format = match Format::parse(&q.format) {
        Some(f @ (Format::Json | Format::CookiesTxt)) => f,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_input",
                "`format` must be json or cookies-txt",
            ));
        }
    };
    let pool = s.tenants.get(&who.tenant)?.pool;
    let (view, secrets) = blocking(move || Ok(pool.reveal(&id)?)).await?;
    let record = AuditRecord::now("export", &view.id, &view.site, &who.tenant)
        .over_http(&who.token_id)
        .with_format(format.name());
    audit(&s, record).await?;
    tracing::warn!(target: "credpool::audit", "[AUDIT] secrets exported over HTTP credential={} token={} tenant={}", view.id, who.token_id, who.tenant);
    Ok(match format {
        Format::CookiesTxt => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            transfer::to_cookies_txt(&view, &secrets),
        )
            .into_response(),
        _ => Json(Value::Array(vec![transfer::to_json(&view, &secrets)])).into_response(),
    })
}

/// Appends the audit record of a reveal or export; when it cannot be
/// written the secrets are not sent.
async fn audit(s: &Shared, record: AuditRecord) -> ApiResult<()> {
    let log = s.audit.clone();
    blocking(move || {
        log.append(&record).map_err(|e| {
            tracing::error!(target: "credpool::audit", "cannot write the audit record to {}: {e}", log.path().display());
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "audit_failed",
                "the audit record could not be written; nothing was revealed",
            )
        })
    })
    .await
}
