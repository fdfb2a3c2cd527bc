//! A tenant's own key and existence, for its admin: `POST /v1/tenant/rekey`
//! rotates its data key (its records sealed again, the old key destroyed);
//! `DELETE /v1/tenant?confirm=NAME` removes it: its tokens revoked, its
//! data key destroyed first (crypto-shredding), then its records deleted.
//! An admin token reaches its own tenant only, as every route.

use super::auth::{self, Need};
use super::errors::{ApiError, ApiResult, Q};
use super::{Shared, blocking};
use crate::rekey::RekeyOptions;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

pub async fn rekey(State(s): State<Shared>, headers: HeaderMap) -> ApiResult<Response> {
    let who = s.tokens.authorize(&headers, Need::Admin)?;
    let pool = s.tenants.get(&who.tenant)?.pool;
    let report = blocking(move || {
        pool.rekey_tenant(&RekeyOptions::default())
            .map_err(ApiError::from)
    })
    .await?;
    Ok(Json(json!({
        "tenant": report.tenant,
        "primary": report.primary,
        "rewrapped": report.rewrapped,
        "changed_meanwhile": report.changed_meanwhile,
        "unreadable": report.unreadable,
        "retired": report.retired,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveQuery {
    /// The tenant's name again: a removal cannot be undone.
    confirm: Option<String>,
}

pub async fn remove(
    State(s): State<Shared>,
    headers: HeaderMap,
    Q(q): Q<RemoveQuery>,
) -> ApiResult<Response> {
    let who = s.tokens.authorize(&headers, Need::Admin)?;
    if q.confirm.as_deref() != Some(who.tenant.as_str()) {
        return Err(ApiError::bad_request(
            "confirmation_required",
            format!(
                "removing tenant {} destroys its data key and every record, for good: \
                 repeat its name as ?confirm={}",
                who.tenant, who.tenant
            ),
        ));
    }
    let tenant = who.tenant.clone();
    let s2 = s.clone();
    let (report, revoked) = blocking(move || {
        let report = s2.tenants.remove(&tenant)?;
        // Its tokens go with it (the caller's own included).
        let path = s2.tokens.path().to_path_buf();
        let mut revoked = 0;
        for t in s2.tokens.list() {
            if t.tenant == tenant && t.revoked_at.is_none() {
                auth::revoke(&path, &t.id)
                    .map_err(|m| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", m))?;
                revoked += 1;
            }
        }
        s2.tokens
            .reload_now()
            .map_err(|m| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", m))?;
        Ok((report, revoked))
    })
    .await?;
    Ok(Json(json!({
        "tenant": who.tenant,
        "data_key_destroyed": report.data_key_destroyed,
        "records_deleted": report.records_deleted,
        "tokens_revoked": revoked,
    }))
    .into_response())
}
