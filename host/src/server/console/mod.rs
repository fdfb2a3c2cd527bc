//! The operator's console: server-rendered pages at `/` of `credpool
//! serve`, no build step (the stylesheet and the one script are compiled
//! in). A person signs in with an API token and sees the pool at a glance,
//! a site's credentials, one credential's history, the alerts, and the
//! challenge inbox where a captcha (as the site served it at login time)
//! or a code is answered and the login resumes.
//!
//! Files: `session` (sign-in/out, the session table and cookie), `csrf`
//! (form tokens), `form` (posted forms), `html` (escaping and the page
//! frame), `overview` (the overview and alerts pages), `credentials` (a
//! site's credentials, one credential, and the actions on them), `inbox`
//! (tickets, their images, answers), `events` (live status for the
//! script).
//!
//! Every page and file goes out with a strict Content-Security-Policy (no
//! inline script or style), `frame-ancestors 'none'`, `nosniff`, no
//! referrer and `no-store`. The console calls the pool as the API does,
//! under the signed-in token's tenant and role; it adds no way around the
//! API's checks, and it never shows a secret value (views only).

mod credentials;
mod csrf;
mod events;
mod form;
mod html;
mod inbox;
mod overview;
mod session;

use super::Shared;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;

/// The console's own state: its sessions.
#[derive(Default)]
pub struct Console {
    sessions: session::Sessions,
}

/// What every console answer carries.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes, to merge into the server's router.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(overview::overview))
        .route(
            "/console/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route("/console/sign-out", post(session::sign_out))
        .route("/console/alerts", get(overview::alerts))
        .route("/console/sites/{site}", get(credentials::site))
        .route("/console/credentials/{id}", get(credentials::credential))
        .route(
            "/console/credentials/{id}/remove",
            get(credentials::confirm_remove).post(credentials::remove),
        )
        .route("/console/credentials/{id}/unban", post(credentials::unban))
        .route(
            "/console/credentials/{id}/reset-challenge",
            post(credentials::reset_challenge),
        )
        .route("/console/inbox", get(inbox::inbox))
        .route("/console/inbox/{ticket}/image", get(inbox::image))
        .route("/console/inbox/{ticket}/answer", post(inbox::answer))
        .route("/console/status", get(events::status))
        .route("/console/static/console.css", get(stylesheet))
        .route("/console/static/console.js", get(script))
        .layer(axum::Extension(Arc::new(Console::default())))
        .layer(axum::middleware::from_fn(security_headers))
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("static/console.css"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("static/console.js"),
    )
        .into_response()
}
