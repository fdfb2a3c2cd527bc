//! `GET /v1/backup`: a consistent snapshot of the whole store, still
//! sealed, taken while the server runs (`credpool backup FILE` with
//! `CREDPOOL_ADDR`). It holds every tenant's records, so only an admin
//! token of the server's own tenant may take it.

use super::auth::Need;
use super::errors::{ApiError, ApiResult};
use super::{Shared, blocking};
use crate::error::Error;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub async fn backup(State(s): State<Shared>, headers: HeaderMap) -> ApiResult<Response> {
    let who = s.tokens.authorize(&headers, Need::Admin)?;
    if who.tenant != s.tenants.default_tenant() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "a backup holds every tenant's records: only an admin token of the server's own \
                 tenant ({}) may take one",
                s.tenants.default_tenant()
            ),
        ));
    }
    let backend = s.tenants.backend();
    let tenants: Vec<_> = s.tenants.all();
    let (records, bytes) = blocking(move || {
        let internal = |m: String| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", m);
        // Counters and leases wait in each pool until its next flush: the
        // backup is taken after one, so it holds what was acknowledged.
        for (_, t) in &tenants {
            t.pool.flush().map_err(ApiError::from)?;
        }
        let dir = tempfile::tempdir()
            .map_err(|e| internal(format!("cannot make a directory for the backup: {e}")))?;
        let path = dir.path().join(crate::layout::DB_FILE);
        let records = backend
            .snapshot_to(&path)
            .map_err(|e| ApiError::from(Error::Store(e.into())))?;
        let bytes = std::fs::read(&path)
            .map_err(|e| internal(format!("cannot read the backup back: {e}")))?;
        Ok((records, bytes))
    })
    .await?;
    tracing::warn!(
        target: "credpool::audit",
        "[AUDIT] backup taken token={} records={records} bytes={}",
        who.token_id,
        bytes.len()
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::HeaderName::from_static("x-credpool-records"),
                records.to_string(),
            ),
        ],
        bytes,
    )
        .into_response())
}
