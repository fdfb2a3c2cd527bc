//! API errors as `{"error": {"code", "message"}}` with a fitting status, and
//! the JSON body reader that names what was wrong. No message carries a
//! value the client sent: a wrongly typed field is named, its value is not.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

/// One refused request.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        use crate::PoolError as P;
        use crate::error::Error as E;
        let (status, code) = match &e {
            E::Pool(P::CredentialNotFound(_)) => (StatusCode::NOT_FOUND, "credential_not_found"),
            E::Pool(P::LeaseNotFound(_)) => (StatusCode::NOT_FOUND, "lease_not_found"),
            E::Pool(P::TicketNotFound(_)) => (StatusCode::NOT_FOUND, "ticket_not_found"),
            E::Pool(P::AlreadyExists(_)) => (StatusCode::CONFLICT, "already_exists"),
            E::Pool(P::IllegalTransition(_)) => (StatusCode::CONFLICT, "illegal_transition"),
            E::Pool(P::InvalidInput(_)) | E::Input { .. } => {
                (StatusCode::BAD_REQUEST, "invalid_input")
            }
            E::Pool(P::Storage(_)) | E::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, e.code()),
            E::Pool(P::Unsupported(_)) => (StatusCode::NOT_IMPLEMENTED, "unsupported"),
            E::Pool(P::InvalidConfig(_)) | E::Config(_) | E::Key(_) | E::Policy(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
            E::Limit { limit, .. } => (limit_status(limit), "policy_limit"),
        };
        if status.is_server_error() {
            tracing::error!(target: "credpool::serve", "request failed: {e}");
        }
        let mut err = ApiError::new(status, code, e.to_string());
        if status == StatusCode::TOO_MANY_REQUESTS {
            // The window of `calls_per_second` is one second.
            err.retry_after = Some(1);
        }
        err
    }
}

/// The status of a policy that hit a sandbox limit: too many calls is the
/// caller's to slow down (429), a full store is 507, and the rest (a policy
/// that looped, grew or answered nonsense) is the server's side (500). The
/// message names the limit.
fn limit_status(limit: &str) -> StatusCode {
    match limit {
        "calls_per_second" => StatusCode::TOO_MANY_REQUESTS,
        "store_keys" | "store_bytes" | "value_bytes" => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Reads a JSON body of at most `limit` bytes into `T` (whose fields refuse
/// unknown names): too large, not JSON, an unknown or wrongly typed field
/// is a 400 naming it.
pub async fn read_json<T: DeserializeOwned>(body: axum::body::Body, limit: usize) -> ApiResult<T> {
    let bytes = read_body(body, limit).await?;
    parse_json(&bytes)
}

/// The raw body, at most `limit` bytes.
pub async fn read_body(body: axum::body::Body, limit: usize) -> ApiResult<axum::body::Bytes> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::bad_request(
            "body_too_large",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    })
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::bad_request(
            "invalid_json",
            "the request body is empty; a JSON object was expected",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let what = describe(&inner);
        let code = if what.starts_with("unknown field") {
            "unknown_field"
        } else {
            "invalid_json"
        };
        let at = if path == "." || path.is_empty() {
            String::new()
        } else {
            format!(" at `{path}`")
        };
        ApiError::bad_request(code, format!("invalid request body{at}: {what}"))
    })
}

/// serde_json's message without any value from the body: "invalid type:
/// string \"hunter2\", expected u16" becomes "invalid type, expected u16".
fn describe(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let msg = match msg.rfind(" at line ") {
        Some(_) if e.is_syntax() || e.is_eof() => msg.clone(),
        Some(i) => msg[..i].to_string(),
        None => msg.clone(),
    };
    for lead in ["invalid type", "invalid value", "invalid length"] {
        if let Some(rest) = msg.strip_prefix(lead) {
            return match rest.find(", expected ") {
                Some(i) => format!("{lead}, {}", &rest[i + 2..]),
                None => lead.to_string(),
            };
        }
    }
    msg
}

/// A query string read into `T`; a bad one is a 400 in the API's form.
pub struct Q<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Q(q.0))
            .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    fn answer(limit: &'static str) -> ApiError {
        ApiError::from(crate::Error::Limit {
            limit,
            detail: "detail".into(),
        })
    }

    #[test]
    fn a_sandbox_limit_is_policy_limit_with_a_status_that_fits_it() {
        for (limit, status) in [
            ("calls_per_second", StatusCode::TOO_MANY_REQUESTS),
            ("store_keys", StatusCode::INSUFFICIENT_STORAGE),
            ("value_bytes", StatusCode::INSUFFICIENT_STORAGE),
            ("call_deadline", StatusCode::INTERNAL_SERVER_ERROR),
            ("policy_answer", StatusCode::INTERNAL_SERVER_ERROR),
        ] {
            let e = answer(limit);
            assert_eq!((e.status, e.code), (status, "policy_limit"), "{limit}");
            assert!(e.message.contains(limit), "{}", e.message);
        }
        assert_eq!(answer("calls_per_second").retry_after, Some(1));
    }
}
