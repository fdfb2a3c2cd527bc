//! Signing in and out. A person signs in with an API token (viewer,
//! operator or admin; a crawler's token is refused); the server keeps the
//! session in memory (only the SHA-256 of its id), with an idle and an
//! absolute expiry, and checks on every request that the token behind it
//! is still valid. The cookie is HttpOnly, SameSite=Strict, and Secure
//! when the browser came over HTTPS. The token itself is never stored.

use super::form::Form;
use super::html::{self, escape};
use super::{Console, csrf};
use crate::server::Shared;
use crate::server::auth::{Need, Role};
use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The session cookie.
pub const COOKIE: &str = "credpool_console";
/// The sign-in form's own CSRF cookie (there is no session yet).
pub const SIGN_IN_COOKIE: &str = "credpool_console_sign_in";
/// A session unused this long ends.
const IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after sign-in, used or not.
const MAX_AGE: Duration = Duration::from_secs(8 * 3600);
/// Sessions kept at most; the oldest goes first past it.
const MAX_SESSIONS: usize = 10_000;

/// Who is signed in, as a page needs it.
#[derive(Clone)]
pub struct Who {
    /// The session's key in the table (a hash of the cookie's value).
    key: String,
    pub token_id: String,
    pub tenant: String,
    pub role: Role,
    /// The session's CSRF token.
    pub csrf: String,
}

impl Who {
    /// Operators and admins act; a viewer only looks.
    pub fn may_act(&self) -> bool {
        matches!(self.role, Role::Operator | Role::Admin)
    }
}

struct Session {
    who: Who,
    created: Instant,
    seen: Instant,
}

#[derive(Default)]
pub struct Sessions {
    table: Mutex<HashMap<String, Session>>,
}

fn hash(id: &str) -> String {
    Sha256::digest(id.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Sessions {
    fn create(&self, token_id: &str, tenant: &str, role: Role) -> Result<(String, Who), String> {
        let id = csrf::new_token()?;
        let who = Who {
            key: hash(&id),
            token_id: token_id.to_string(),
            tenant: tenant.to_string(),
            role,
            csrf: csrf::new_token()?,
        };
        let now = Instant::now();
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        t.retain(|_, s| live(s, now));
        if t.len() >= MAX_SESSIONS
            && let Some(oldest) = t
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone())
        {
            t.remove(&oldest);
        }
        t.insert(
            who.key.clone(),
            Session {
                who: who.clone(),
                created: now,
                seen: now,
            },
        );
        Ok((id, who))
    }

    /// The session of cookie value `id`, if it is live (and now seen).
    fn find(&self, id: &str) -> Option<Who> {
        let now = Instant::now();
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let key = hash(id);
        let s = t.get_mut(&key)?;
        if !live(s, now) {
            t.remove(&key);
            return None;
        }
        s.seen = now;
        Some(s.who.clone())
    }

    fn end(&self, who: &Who) {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&who.key);
    }
}

fn live(s: &Session, now: Instant) -> bool {
    now.duration_since(s.seen) < IDLE && now.duration_since(s.created) < MAX_AGE
}

/// The value of cookie `name` in the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the browser came over HTTPS: its `Origin` (sent with every
/// POST) says the scheme it used. Then cookies are `Secure`.
fn over_https(headers: &HeaderMap) -> bool {
    headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|o| o.starts_with("https://"))
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Path=/, Secure over
/// HTTPS; `max_age` 0 deletes it.
fn set_cookie(name: &str, value: &str, secure: bool, max_age: Duration) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        max_age.as_secs()
    ))
    .expect("cookie values are hex")
}

/// The signed-in person, or the response to send instead (to the sign-in
/// page; the session ended if its token was revoked or expired).
/// What a page sends instead of itself (boxed: a response is large).
pub type Refused = Box<Response>;

pub fn signed_in(s: &Shared, c: &Console, headers: &HeaderMap) -> Result<Who, Refused> {
    let to_sign_in = || Box::new(Redirect::to("/console/sign-in").into_response());
    let id = cookie(headers, COOKIE).ok_or_else(to_sign_in)?;
    let who = c.sessions.find(id).ok_or_else(to_sign_in)?;
    let now = chrono::Utc::now().timestamp_millis();
    let valid = s.tokens.list().iter().any(|t| {
        t.id == who.token_id
            && t.revoked_at.is_none()
            && t.expires_at.is_none_or(|e| e > now)
            && t.role == who.role
    });
    if !valid {
        c.sessions.end(&who);
        return Err(to_sign_in());
    }
    Ok(who)
}

/// A posted form read and checked ([`checked_form`]) in one step: the form
/// and who sent it, or the page that refuses it.
pub async fn posted_form(
    s: &Shared,
    c: &Console,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Form, Who), Response> {
    let form = Form::read(body, s.max_body)
        .await
        .map_err(|e| html::error_page(e.status, None, &e.message))?;
    let who = checked_form(s, c, headers, &form).map_err(|r| *r)?;
    Ok((form, who))
}

/// The signed-in person whose form carried the session's CSRF token; or
/// the refusal (403, nothing done).
pub fn checked_form(
    s: &Shared,
    c: &Console,
    headers: &HeaderMap,
    form: &Form,
) -> Result<Who, Refused> {
    let who = signed_in(s, c, headers)?;
    if !csrf::matches(&who.csrf, form.get("csrf")) {
        return Err(Box::new(html::error_page(
            StatusCode::FORBIDDEN,
            Some(&who),
            "the form's CSRF token is missing or wrong: reload the page and try again",
        )));
    }
    Ok(who)
}

/// `GET /console/sign-in`.
pub async fn sign_in_page(
    State(s): State<Shared>,
    Extension(c): Extension<Arc<Console>>,
    headers: HeaderMap,
) -> Response {
    if signed_in(&s, &c, &headers).is_ok() {
        return Redirect::to("/").into_response();
    }
    sign_in_form(StatusCode::OK, None)
}

fn sign_in_form(status: StatusCode, problem: Option<&str>) -> Response {
    let Ok(token) = csrf::new_token() else {
        return html::error_page(StatusCode::INTERNAL_SERVER_ERROR, None, "no randomness");
    };
    let problem = problem
        .map(|p| format!(r#"<p class="error">{}</p>"#, escape(p)))
        .unwrap_or_default();
    let body = format!(
        r#"<h2>Sign in</h2>{problem}
<form method="post" action="/console/sign-in" class="sign-in">
<input type="hidden" name="csrf" value="{token}">
<label>API token (viewer, operator or admin)<br><input type="password" name="token" id="token" autocomplete="off" required></label>
<button type="submit" id="sign-in">Sign in</button>
</form>
<p class="hint">Make one with <code>credpool token create --tenant NAME --role operator</code>.</p>"#
    );
    let mut r = html::page_with_status(status, "Sign in", None, &body);
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SIGN_IN_COOKIE, &token, false, Duration::from_secs(3600)),
    );
    r
}

/// `POST /console/sign-in`: the token typed, checked as the API checks it.
pub async fn sign_in(
    State(s): State<Shared>,
    Extension(c): Extension<Arc<Console>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let form = match Form::read(body, s.max_body).await {
        Ok(f) => f,
        Err(e) => return html::error_page(e.status, None, &e.message),
    };
    let expected = cookie(&headers, SIGN_IN_COOKIE).unwrap_or_default();
    if !csrf::matches(expected, form.get("csrf")) {
        return sign_in_form(
            StatusCode::FORBIDDEN,
            Some("the sign-in form expired or was not this server's: try again"),
        );
    }
    let token = form.get("token").unwrap_or_default().trim();
    let mut bearer = HeaderMap::new();
    let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) else {
        return sign_in_form(StatusCode::UNAUTHORIZED, Some("that is not an API token"));
    };
    bearer.insert(header::AUTHORIZATION, value);
    // A token made by `credpool token create` while the server runs.
    if let Err(m) = s.tokens.reload() {
        tracing::error!(target: "credpool::serve", "console: {m}");
    }
    let who = match s.tokens.authorize(&bearer, Need::View) {
        Ok(p) => p,
        Err(e) => return sign_in_form(e.status, Some(&e.message)),
    };
    let (id, who) = match c.sessions.create(&who.token_id, &who.tenant, who.role) {
        Ok(x) => x,
        Err(m) => return html::error_page(StatusCode::INTERNAL_SERVER_ERROR, None, &m),
    };
    tracing::info!(target: "credpool::serve", "console: signed in token={} tenant={} role={}", who.token_id, who.tenant, who.role.name());
    let secure = over_https(&headers);
    let mut r = Redirect::to("/").into_response();
    r.headers_mut()
        .append(header::SET_COOKIE, set_cookie(COOKIE, &id, secure, MAX_AGE));
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SIGN_IN_COOKIE, "", secure, Duration::ZERO),
    );
    r
}

/// `POST /console/sign-out`: the session ends on the server, not only in
/// the browser.
pub async fn sign_out(
    State(s): State<Shared>,
    Extension(c): Extension<Arc<Console>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (_, who) = match posted_form(&s, &c, &headers, body).await {
        Ok(posted) => posted,
        Err(refused) => return refused,
    };
    c.sessions.end(&who);
    let mut r = Redirect::to("/console/sign-in").into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(COOKIE, "", over_https(&headers), Duration::ZERO),
    );
    r
}
