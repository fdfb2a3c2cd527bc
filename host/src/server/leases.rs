//! The crawler's endpoints: acquire, report, release, and report-and-acquire
//! (a crawler's loop step in one request). Only a lease's own answer
//! carries secrets.

use super::Shared;
use super::auth::Need;
use super::closed::Closing;
use super::errors::{ApiError, ApiResult, Q, read_json};
use crate::cli::output::{self, effect_json};
use crate::names;
use crate::pool::Acquired;
use crate::{
    AccessLevel, AcquireRequest, AcquireStatus, CredentialView, Failure, FailureClass, LeaseId,
    Outcome,
};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

/// Seconds to wait when nothing is free and the policy names no time.
const RETRY_UNKNOWN_SECS: i64 = 5;

/// The card's acquire request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcquireBody {
    site: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    purpose: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    ttl_seconds: Option<u64>,
    #[serde(default)]
    prefer_fresh: bool,
}

impl AcquireBody {
    fn request(&self) -> ApiResult<AcquireRequest> {
        if self.site.trim().is_empty() {
            return Err(ApiError::bad_request("invalid_input", "`site` is empty"));
        }
        let mut req = AcquireRequest::site(&self.site);
        req.kind = match &self.kind {
            Some(k) => Some(names::parse_kind(k).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_input",
                    "`type` must be account, session, token, api-key or device",
                )
            })?),
            None => None,
        };
        req.purpose = self.purpose.clone();
        req.tags = self.tags.clone();
        req.prefer_fresh = self.prefer_fresh;
        req.lease_ttl_ms = match self.ttl_seconds {
            Some(0) => {
                return Err(ApiError::bad_request(
                    "invalid_input",
                    "`ttl_seconds` must be at least 1",
                ));
            }
            Some(s) => Some(s.checked_mul(1000).ok_or_else(|| {
                ApiError::bad_request("invalid_input", "`ttl_seconds` is too large")
            })?),
            None => None,
        };
        Ok(req)
    }
}

/// The card's report.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportBody {
    outcome: String,
    http_status: Option<u16>,
    retry_after: Option<RetryAfter>,
}

/// The site's `Retry-After` as the crawler got it: whole seconds, or the
/// header's text (seconds or an HTTP-date, RFC 9110).
#[derive(Deserialize)]
#[serde(untagged)]
enum RetryAfter {
    Seconds(u64),
    Header(String),
}

impl RetryAfter {
    fn seconds(&self) -> ApiResult<u32> {
        let bad = |m: String| ApiError::bad_request("invalid_input", format!("`retry_after`: {m}"));
        match self {
            RetryAfter::Seconds(n) => {
                u32::try_from(*n).map_err(|_| bad(format!("at most {} seconds", u32::MAX)))
            }
            RetryAfter::Header(text) => {
                crate::retry_after::seconds(text, chrono::Utc::now().timestamp_millis())
                    .map_err(bad)
            }
        }
    }
}

impl ReportBody {
    fn outcome(&self) -> ApiResult<Outcome> {
        let class = match self.outcome.as_str() {
            "success" | "ok" => return Ok(Outcome::Success),
            "failed" | "other" => FailureClass::Other,
            other => names::parse_failure_class(other).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_input",
                    "`outcome` must be success, blocked, challenged, expired, rate-limited, network or failed",
                )
            })?,
        };
        Ok(Outcome::Failure(Failure {
            class,
            http_status: self.http_status,
            retry_after_secs: self
                .retry_after
                .as_ref()
                .map(RetryAfter::seconds)
                .transpose()?,
        }))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportAndAcquireBody {
    report: ReportBody,
    next: AcquireBody,
}

pub(super) fn lease_id(id: &str) -> ApiResult<LeaseId> {
    id.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_lease_id",
            "the lease id is not of the form l<hex>.<hex> that acquire returned",
        )
    })
}

/// `?level=`: the leased credential shown at this access level, as
/// `credpool acquire --json` shows it (one more policy call), instead of
/// the lease's own summary.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcquireQuery {
    level: Option<String>,
}

impl AcquireQuery {
    fn level(&self) -> ApiResult<Option<AccessLevel>> {
        self.level
            .as_deref()
            .map(|l| {
                names::parse_access_level(l)
                    .filter(|l| *l != AccessLevel::Secret)
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid_input",
                            "`level` must be public, internal or sensitive",
                        )
                    })
            })
            .transpose()
    }
}

/// The answer, with `Retry-After` when nothing was handed out (a 404
/// `unknown_site` when `site` has no credential at all).
fn acquired_response(
    site: &str,
    got: &Acquired,
    view: Option<&CredentialView>,
    extra: Option<serde_json::Value>,
) -> Response {
    let mut body = output::acquired_json(got, view);
    if let Some((k, v)) = extra
        .as_ref()
        .and_then(|x| x.as_object())
        .and_then(|o| o.iter().next())
    {
        body[k] = v.clone();
    }
    // No credential at all for the site: 404, the acquire answer with an
    // error a client can tell from a temporary shortage.
    if output::unknown_site(&body) {
        body["error"] = json!({
            "code": output::UNKNOWN_SITE_CODE,
            "message": output::no_credential_line(site, &body),
        });
        return (StatusCode::NOT_FOUND, Json(body)).into_response();
    }
    let mut resp = Json(body).into_response();
    if got.status != AcquireStatus::Success {
        let now = chrono::Utc::now().timestamp_millis();
        let secs = got
            .next_free_at
            .map(|t| ((t - now).max(0) + 999) / 1000)
            .unwrap_or(RETRY_UNKNOWN_SECS)
            .max(1);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

pub async fn acquire(
    State(s): State<Shared>,
    headers: HeaderMap,
    Q(q): Q<AcquireQuery>,
    body: Body,
) -> ApiResult<Response> {
    let who = s.tokens.authorize(&headers, Need::Crawl)?;
    let level = q.level()?;
    let body: AcquireBody = read_json(body, s.max_body).await?;
    let req = body.request()?;
    let pool = s.tenants.get(&who.tenant)?.pool;
    let got = pool.acquire(&req)?;
    // The holder's own credential only: a crawler sees no other record.
    // A view that fails (the credential removed meanwhile) leaves the slim
    // summary rather than an error that would strand the granted lease.
    let view = match (&got.lease, level) {
        (Some(l), Some(level)) => pool.view(&l.credential.id, level).ok(),
        _ => None,
    };
    Ok(acquired_response(&body.site, &got, view.as_ref(), None))
}

pub async fn report(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let who = s.tokens.authorize(&headers, Need::Crawl)?;
    let lease = lease_id(&id)?;
    let body: ReportBody = read_json(body, s.max_body).await?;
    let outcome = body.outcome()?;
    let pool = s.tenants.get(&who.tenant)?.pool;
    let answer = match pool.report(lease, outcome) {
        Ok(effect) => effect_json(&id, &effect),
        Err(e) => return repeated(&s, &pool, &id, Closing::Report, e),
    };
    s.closed.keep(&pool, &id, Closing::Report, &answer);
    Ok(Json(answer).into_response())
}

pub async fn release(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let who = s.tokens.authorize(&headers, Need::Crawl)?;
    let lease = lease_id(&id)?;
    let pool = s.tenants.get(&who.tenant)?.pool;
    if let Err(e) = pool.release(lease) {
        return repeated(&s, &pool, &id, Closing::Release, e);
    }
    let answer = json!({"lease": id, "released": true});
    s.closed.keep(&pool, &id, Closing::Release, &answer);
    Ok(Json(answer).into_response())
}

/// A lease not found that was closed before: the first answer again,
/// with `"repeat": true`; any other failure as it is.
fn repeated(
    s: &Shared,
    pool: &crate::Pool,
    id: &str,
    how: Closing,
    e: crate::Error,
) -> ApiResult<Response> {
    if matches!(e, crate::Error::Pool(crate::PoolError::LeaseNotFound(_)))
        && let Some(answer) = s.closed.find(pool, id, how)
    {
        return Ok(Json(answer).into_response());
    }
    Err(e.into())
}

pub async fn report_and_acquire(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let who = s.tokens.authorize(&headers, Need::Crawl)?;
    let lease = lease_id(&id)?;
    let body: ReportAndAcquireBody = read_json(body, s.max_body).await?;
    let outcome = body.report.outcome()?;
    let next = body.next.request()?;
    let pool = s.tenants.get(&who.tenant)?.pool;
    let (effect, got) = pool.report_and_acquire(lease, outcome, &next)?;
    Ok(acquired_response(
        &body.next.site,
        &got,
        None,
        Some(json!({"report": effect_json(&id, &effect)})),
    ))
}
