//! Any server answers: a request for a tenant this server does not lead
//! goes to the tenant's leader (once: a forwarded request is never
//! forwarded again) and its answer comes back as it was. Every answer
//! names the server that gave it (`X-Credpool-Node`). With no leader
//! known, 503 `no_leader`; from a server that lost its leadership and
//! knows no other, 503 `not_leader`; both with `Retry-After: 1`.

use super::Shared;
use super::leadership::{Route, no_leader, not_leader};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::OnceLock;
use std::time::Duration;

/// Set on a forwarded request: the leader answers it or refuses it.
pub const FORWARDED: &str = "x-credpool-forwarded";
/// The advertised URL of the server that answered.
pub const NODE: &str = "x-credpool-node";

/// How long a forwarded call may take, answer included.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

/// Hop-by-hop headers, and those the client or server sets again.
const NOT_COPIED: [HeaderName; 5] = [
    header::HOST,
    header::CONNECTION,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(FORWARD_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("an HTTP client")
    })
}

/// The middleware: answer here, forward, or say there is no leader.
pub async fn route(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let Some(lead) = s.tenants.lead.clone() else {
        return next.run(req).await;
    };
    let node = lead.node().to_string();
    let Some(tenant) = s.tokens.tenant_of(req.headers()) else {
        // No tenant (health, metrics, a bad token): answered here.
        return named(next.run(req).await, &node);
    };
    let forwarded = req.headers().contains_key(FORWARDED);
    lead.settled(&tenant).await;
    let resp = match lead.route(&tenant) {
        Route::Here(_) => next.run(req).await,
        Route::Elsewhere(url) if !forwarded => return forward(&s, &url, &tenant, req).await,
        Route::Elsewhere(url) => not_leader(&format!(
            "tenant {tenant} is led by {url}; forwarded once already"
        ))
        .into_response(),
        Route::NotLeader(why) => not_leader(why).into_response(),
        Route::NoLeader => no_leader(&tenant).into_response(),
    };
    named(resp, &node)
}

fn named(mut resp: Response, node: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(node) {
        resp.headers_mut().insert(NODE, v);
    }
    resp
}

/// Sends `req` to the leader at `leader` and hands its answer back.
async fn forward(s: &Shared, leader: &str, tenant: &str, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, s.max_body).await {
        Ok(b) => b,
        Err(_) => {
            return super::errors::ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the request body is over {} bytes", s.max_body),
            )
            .into_response();
        }
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", leader.trim_end_matches('/'));
    let mut headers = parts.headers.clone();
    for h in &NOT_COPIED {
        headers.remove(h);
    }
    headers.insert(FORWARDED, HeaderValue::from_static("1"));
    let sent = client()
        .request(parts.method.clone(), &url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let answer = match sent {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(target: "credpool::lead", "tenant {tenant}: the leader {leader} cannot be reached: {}", e.without_url());
            return named(
                no_leader(tenant).into_response(),
                s.tenants.lead.as_ref().map_or("", |l| l.node()),
            );
        }
    };
    let status = answer.status();
    let mut out_headers = answer.headers().clone();
    for h in &NOT_COPIED {
        out_headers.remove(h);
    }
    let bytes = match answer.bytes().await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(target: "credpool::lead", "tenant {tenant}: the leader's answer was cut: {}", e.without_url());
            return no_leader(tenant).into_response();
        }
    };
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    *resp.headers_mut() = out_headers;
    resp
}
