//! Live status for the console's script: `GET /console/status?ids=a,b`
//! answers `{"a": "active", …}` for the signed-in tenant's credentials
//! (short polling, same origin; a credential gone is `removed`).

use super::Console;
use super::session::signed_in;
use crate::server::Shared;
use crate::{AccessLevel, names};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use std::sync::Arc;

/// Credentials one poll may ask about.
const MAX_IDS: usize = 200;

#[derive(Deserialize)]
pub struct StatusQuery {
    #[serde(default)]
    ids: String,
}

pub async fn status(
    State(s): State<Shared>,
    Extension(c): Extension<Arc<Console>>,
    headers: HeaderMap,
    Query(q): Query<StatusQuery>,
) -> Response {
    let who = match signed_in(&s, &c, &headers) {
        Ok(w) => w,
        // The script stops polling on 401 (the page's links lead to sign-in).
        Err(_) => return axum::http::StatusCode::UNAUTHORIZED.into_response(),
    };
    let pool = match s.tenants.get(&who.tenant) {
        Ok(t) => t.pool,
        Err(e) => return e.into_response(),
    };
    let mut out = serde_json::Map::new();
    for id in q.ids.split(',').filter(|i| !i.is_empty()).take(MAX_IDS) {
        let status = match pool.view(id, AccessLevel::Public) {
            Ok(v) => names::status(v.status),
            Err(_) => "removed",
        };
        out.insert(id.to_string(), status.into());
    }
    Json(serde_json::Value::Object(out)).into_response()
}
