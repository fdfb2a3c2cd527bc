//! The challenge inbox: every open ticket with what a person needs to
//! answer it (the captcha image as the site served it at login time, the
//! masked phone or e-mail a code went to, the question, the time left),
//! and the answer form that resumes the login. Operators and admins only,
//! as `GET /v1/tickets`. The image comes from the sealed copy the login
//! kept, by an authenticated route, never cached.

use super::Console;
use super::credentials::live_status;
use super::html::{self, csrf_field, escape, url_part};
use super::session::{Refused, Who, posted_form, signed_in};
use crate::names;
use crate::server::errors::ApiError;
use crate::server::{Shared, blocking};
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use std::fmt::Write as _;
use std::sync::Arc;

/// Image types a browser shows without running anything (no SVG).
const SHOWN_TYPES: [&str; 6] = [
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/bmp",
    "image/avif",
];

fn operators_only(who: &Who) -> Option<Response> {
    (!who.may_act()).then(|| {
        html::error_page(
            StatusCode::FORBIDDEN,
            Some(who),
            &format!(
                "the challenge inbox is for operators and admins; a {} token may not answer tickets",
                who.role.name()
            ),
        )
    })
}

fn pool_of(s: &Shared, who: &Who) -> Result<Arc<crate::Pool>, Refused> {
    s.tenants
        .get(&who.tenant)
        .map(|t| t.pool)
        .map_err(|e| Box::new(html::error_page(e.status, Some(who), &e.message)))
}

/// Seconds as `4m 05s`.
fn left(ms: i64) -> String {
    if ms <= 0 {
        return "closing".into();
    }
    let s = ms / 1000;
    format!("{}m {:02}s", s / 60, s % 60)
}

/// `GET /console/inbox`.
pub async fn inbox(
    State(s): State<Shared>,
    Extension(c): Extension<Arc<Console>>,
    headers: HeaderMap,
) -> Response {
    let who = match signed_in(&s, &c, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    if let Some(r) = operators_only(&who) {
        return r;
    }
    let pool = match pool_of(&s, &who) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let tickets = match pool.tickets() {
        Ok(t) => t,
        Err(e) => {
            let e = ApiError::from(e);
            return html::error_page(e.status, Some(&who), &e.message);
        }
    };
    let now = chrono::Utc::now().timestamp_millis();
    let mut body = format!(
        r#"<h2>Challenge inbox</h2><p class="hint">{} open ticket(s). Answering one resumes its login; the status follows live.</p>"#,
        tickets.len()
    );
    for t in &tickets {
        let context = pool
            .refresher()
            .and_then(|r| r.challenge_context(&t.credential_id).ok().flatten())
            .unwrap_or_default();
        let status = pool
            .view(&t.credential_id, crate::AccessLevel::Public)
            .map(|v| names::status(v.status))
            .unwrap_or("removed");
        let ticket = url_part(&t.id);
        let _ = write!(
            body,
            r#"<section class="ticket" data-ticket="{}" data-credential="{}"><h3>{} · site {} · credential <a href="/console/credentials/{}">{}</a> {}</h3>"#,
            escape(&t.id),
            escape(&t.credential_id),
            escape(names::challenge_kind(t.kind)),
            escape(&t.site),
            url_part(&t.credential_id),
            escape(&t.credential_id),
            live_status(&t.credential_id, status),
        );
        if context.image.is_some() {
            let _ = write!(
                body,
                r#"<p><img class="captcha" src="/console/inbox/{ticket}/image" alt="the captcha the site showed"></p>"#
            );
        }
        if let Some(q) = &context.question {
            let _ = write!(body, r#"<p class="question">{}</p>"#, escape(q));
        }
        if let Some(m) = &t.masked_contact {
            let _ = write!(body, r#"<p>A code was sent to <b>{}</b>.</p>"#, escape(m));
        }
        let _ = write!(
            body,
            r#"<p>Opened {}; time left <span class="left" data-deadline="{}">{}</span>.</p>
<form method="post" action="/console/inbox/{ticket}/answer" class="answer">{}<label>Answer <input name="answer" autocomplete="off" required></label> <button type="submit">Answer and resume the login</button></form></section>"#,
            html::time(t.created_at),
            t.deadline,
            left(t.deadline - now),
            csrf_field(&who),
        );
    }
    html::page("Challenge inbox", Some(&who), &body)
}

/// `GET /console/inbox/{ticket}/image`: the captcha of an open ticket of
/// the signed-in tenant, from the sealed copy; `no-store`.
pub async fn image(
    State(s): State<Shared>,
    Extension(c): Extension<Arc<Console>>,
    Path(ticket): Path<String>,
    headers: HeaderMap,
) -> Response {
    let who = match signed_in(&s, &c, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    if let Some(r) = operators_only(&who) {
        return r;
    }
    let pool = match pool_of(&s, &who) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let not_found =
        || (StatusCode::NOT_FOUND, "no open ticket with a captcha image").into_response();
    let Some(t) = pool
        .tickets()
        .ok()
        .and_then(|all| all.into_iter().find(|t| t.id == ticket))
    else {
        return not_found();
    };
    let context = match pool
        .refresher()
        .map(|r| r.challenge_context(&t.credential_id))
    {
        Some(Ok(Some(c))) => c,
        Some(Err(e)) => {
            tracing::error!(target: "credpool::serve", "console: the captcha of ticket {ticket} cannot be read: {e}");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the kept image cannot be read",
            )
                .into_response();
        }
        _ => return not_found(),
    };
    let (Some(bytes), media_type) = (context.image, context.media_type) else {
        return not_found();
    };
    let media_type = media_type
        .as_deref()
        .map(|m| {
            m.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if !SHOWN_TYPES.contains(&media_type.as_str()) {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the site served the captcha as a type a browser does not show safely",
        )
            .into_response();
    }
    ([(header::CONTENT_TYPE, media_type)], bytes).into_response()
}

/// `POST /console/inbox/{ticket}/answer`: the answer (a secret, never
/// logged) is held for the resumed login, as `POST /v1/tickets/{id}/answer`.
pub async fn answer(
    State(s): State<Shared>,
    Extension(c): Extension<Arc<Console>>,
    Path(ticket): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (form, who) = match posted_form(&s, &c, &headers, body).await {
        Ok(posted) => posted,
        Err(refused) => return refused,
    };
    if let Some(r) = operators_only(&who) {
        return r;
    }
    let code = zeroize::Zeroizing::new(form.get("answer").unwrap_or_default().trim().to_string());
    if code.is_empty() {
        return html::error_page(StatusCode::BAD_REQUEST, Some(&who), "the answer is empty");
    }
    let pool = match pool_of(&s, &who) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let Some(credential) = pool
        .tickets()
        .ok()
        .and_then(|all| all.into_iter().find(|t| t.id == ticket))
        .map(|t| t.credential_id)
    else {
        return html::error_page(
            StatusCode::NOT_FOUND,
            Some(&who),
            "no open ticket with that id (answered, timed out or cancelled)",
        );
    };
    let id = ticket.clone();
    if let Err(e) = blocking(move || Ok(pool.answer_challenge(&id, code)?)).await {
        return html::error_page(e.status, Some(&who), &e.message);
    }
    tracing::info!(target: "credpool::serve", "console: ticket={ticket} answered credential={credential} token={}", who.token_id);
    Redirect::to(&format!(
        "/console/credentials/{}?answered={}",
        url_part(&credential),
        url_part(&ticket)
    ))
    .into_response()
}
