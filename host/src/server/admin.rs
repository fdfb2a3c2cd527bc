//! Health, stats, alerts, tickets and tokens.

use super::auth::{self, Need, Role};
use super::errors::{ApiError, ApiResult, Q, read_json};
use super::{Shared, blocking};
use crate::cli::output;
use crate::names;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

pub async fn healthz() -> Response {
    Json(json!({"status": "alive"})).into_response()
}

/// Ready when the store is open and every tenant's policy is loaded.
pub async fn readyz(State(s): State<Shared>) -> Response {
    // A standby leads nothing and is ready all the same: it forwards.
    if s.ready.load(Ordering::SeqCst) && (s.tenants.lead.is_some() || !s.tenants.all().is_empty()) {
        Json(json!({"status": "ready", "tenants": s.tenants.all().len()})).into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the server is starting or stopping",
        )
        .into_response()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    site: Option<String>,
}

pub async fn stats(
    State(s): State<Shared>,
    headers: HeaderMap,
    Q(q): Q<StatsQuery>,
) -> ApiResult<Response> {
    let who = s.tokens.authorize(&headers, Need::View)?;
    let pool = s.tenants.get(&who.tenant)?.pool;
    let stats = pool.stats(q.site.as_deref())?;
    if stats.is_empty()
        && let Some(site) = &q.site
    {
        return Err(ApiError::not_found(format!(
            "no credentials for site {site}"
        )));
    }
    Ok(Json(Value::Array(stats.iter().map(output::stats_json).collect())).into_response())
}

pub async fn alerts(State(s): State<Shared>, headers: HeaderMap) -> ApiResult<Response> {
    let who = s.tokens.authorize(&headers, Need::View)?;
    let t = s.tenants.get(&who.tenant)?;
    let now = chrono::Utc::now().timestamp_millis();
    let out: Vec<Value> = t
        .alerts
        .recent()
        .iter()
        .rev()
        .map(|a| {
            json!({
                "kind": names::alert_kind(a.kind),
                "severity": names::severity(a.severity),
                "site": a.site,
                "credential_id": a.credential_id,
                "message": a.message,
                "raised_at": output::time(a.raised_at),
                "active": now - a.raised_at < super::alerts::ACTIVE_FOR_MS,
            })
        })
        .collect();
    Ok(Json(Value::Array(out)).into_response())
}

/// The audit trail of the token's tenant (admins only); damaged lines of
/// the file are listed by number.
pub async fn audit(State(s): State<Shared>, headers: HeaderMap) -> ApiResult<Response> {
    let who = s.tokens.authorize(&headers, Need::Admin)?;
    let log = s.audit.clone();
    let (mut records, damaged) = blocking(move || {
        log.read().map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "audit_unreadable",
                format!("cannot read the audit file: {e}"),
            )
        })
    })
    .await?;
    records.retain(|r| r.tenant == who.tenant);
    Ok(Json(output::audit_json(&records, &damaged)).into_response())
}

pub async fn tickets(State(s): State<Shared>, headers: HeaderMap) -> ApiResult<Response> {
    let who = s.tokens.authorize(&headers, Need::Operate)?;
    let pool = s.tenants.get(&who.tenant)?.pool;
    let out: Vec<Value> = pool
        .tickets()?
        .iter()
        .map(|t| {
            json!({
                "id": t.id,
                "kind": names::challenge_kind(t.kind),
                "credential_id": t.credential_id,
                "site": t.site,
                "masked_contact": t.masked_contact,
                "created_at": output::time(t.created_at),
                "deadline": output::time(t.deadline),
            })
        })
        .collect();
    Ok(Json(Value::Array(out)).into_response())
}

/// The answer to a ticket (a secret: never logged).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerBody {
    code: String,
}

pub async fn answer(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let who = s.tokens.authorize(&headers, Need::Operate)?;
    let body: AnswerBody = read_json(body, s.max_body).await?;
    let code = zeroize::Zeroizing::new(body.code);
    if code.trim().is_empty() {
        return Err(ApiError::bad_request("invalid_input", "`code` is empty"));
    }
    let pool = s.tenants.get(&who.tenant)?.pool;
    let ticket = id.clone();
    let status = blocking(move || Ok(pool.answer_challenge(&ticket, code)?)).await?;
    Ok(Json(json!({"ticket": id, "status": names::status(status)})).into_response())
}

fn token_json(t: &auth::TokenRecord) -> Value {
    json!({
        "id": t.id,
        "tenant": t.tenant,
        "role": t.role.name(),
        "created_at": output::time(t.created_at),
        "expires_at": t.expires_at.map(output::time),
        "revoked_at": t.revoked_at.map(output::time),
    })
}

pub async fn tokens(State(s): State<Shared>, headers: HeaderMap) -> ApiResult<Response> {
    let who = s.tokens.authorize(&headers, Need::Admin)?;
    let out: Vec<Value> = s
        .tokens
        .list()
        .iter()
        .filter(|t| t.tenant == who.tenant)
        .map(token_json)
        .collect();
    Ok(Json(Value::Array(out)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenBody {
    role: String,
    /// Seconds from now.
    expires_in_seconds: Option<u64>,
}

/// A token for the caller's own tenant; shown once in the answer.
pub async fn create_token(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let who = s.tokens.authorize(&headers, Need::Admin)?;
    let body: CreateTokenBody = read_json(body, s.max_body).await?;
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_input",
            "`role` must be crawler, viewer, operator or admin",
        )
    })?;
    let expires = body
        .expires_in_seconds
        .map(|secs| chrono::Utc::now().timestamp_millis() + (secs as i64).saturating_mul(1000));
    let path = s.tokens.path().to_path_buf();
    let s2 = s.clone();
    let (token, rec) = blocking(move || {
        let made = auth::create(&path, &who.tenant, role, expires)
            .map_err(|m| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", m))?;
        s2.tokens
            .reload_now()
            .map_err(|m| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", m))?;
        Ok(made)
    })
    .await?;
    let mut out = token_json(&rec);
    out["token"] = json!(token);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

pub async fn revoke_token(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let who = s.tokens.authorize(&headers, Need::Admin)?;
    if !s
        .tokens
        .list()
        .iter()
        .any(|t| t.tenant == who.tenant && t.id.starts_with(&id) && id.len() >= 6)
    {
        return Err(ApiError::not_found(format!("no token with id {id}")));
    }
    let path = s.tokens.path().to_path_buf();
    let s2 = s.clone();
    let rec = blocking(move || {
        let rec =
            auth::revoke(&path, &id).map_err(|m| ApiError::bad_request("invalid_input", m))?;
        s2.tokens
            .reload_now()
            .map_err(|m| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", m))?;
        Ok(rec)
    })
    .await?;
    Ok(Json(token_json(&rec)).into_response())
}
