//! A site's credentials (filtered by status, kind, tag; masked at the
//! signed-in token's level), one credential (its view, open tickets and
//! history), and the actions an operator takes on them: unban,
//! reset-challenge, remove after a confirmation page. Actions are POST
//! forms with the session's CSRF token; a viewer sees no action and any
//! it posts is refused.

use super::Console;
use super::html::{self, button_form, csrf_field, escape, url_part};
use super::session::{Who, posted_form, signed_in};
use crate::cli::output;
use crate::server::auth::Role;
use crate::server::errors::ApiError;
use crate::server::{Shared, blocking};
use crate::{AccessLevel, ListFilter, names};
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::Value;
use std::fmt::Write as _;
use std::sync::Arc;

/// The view a role may see: a viewer's is internal (no usernames).
pub fn level_of(who: &Who) -> AccessLevel {
    match who.role {
        Role::Viewer => AccessLevel::Internal,
        _ => AccessLevel::Sensitive,
    }
}

fn api_error(who: &Who, e: ApiError) -> Response {
    html::error_page(e.status, Some(who), &e.message)
}

/// A status as the page shows it; the script keeps it current.
pub fn live_status(id: &str, status: &str) -> String {
    format!(
        r#"<span class="status status-{s}" data-status-of="{}">{s}</span>"#,
        escape(id),
        s = escape(status)
    )
}

/// The actions on a credential, for someone who may act.
fn actions(who: &Who, id: &str) -> String {
    if !who.may_act() {
        return String::new();
    }
    let base = format!("/console/credentials/{}", url_part(id));
    format!(
        r#"{}{}<a class="button danger" href="{base}/remove">Remove…</a>"#,
        button_form(who, &format!("{base}/unban"), "Unban", "act"),
        button_form(
            who,
            &format!("{base}/reset-challenge"),
            "Reset challenge",
            "act"
        ),
    )
}

#[derive(Deserialize)]
pub struct SiteQuery {
    status: Option<String>,
    kind: Option<String>,
    tag: Option<String>,
}

/// `GET /console/sites/{site}`.
pub async fn site(
    State(s): State<Shared>,
    Extension(c): Extension<Arc<Console>>,
    Path(site): Path<String>,
    headers: HeaderMap,
    Query(q): Query<SiteQuery>,
) -> Response {
    let who = match signed_in(&s, &c, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let nonempty = |o: &Option<String>| o.as_deref().filter(|v| !v.is_empty()).map(str::to_string);
    let (status, kind, tag) = (nonempty(&q.status), nonempty(&q.kind), nonempty(&q.tag));
    let mut filter = ListFilter::all();
    filter.site = Some(site.clone());
    if let Some(st) = &status {
        match names::parse_status(st) {
            Some(x) => filter.status = Some(x),
            None => {
                return html::error_page(
                    StatusCode::BAD_REQUEST,
                    Some(&who),
                    &format!("{st} is not a status"),
                );
            }
        }
    }
    if let Some(k) = &kind {
        match names::parse_kind(k) {
            Some(x) => filter.kind = Some(x),
            None => {
                return html::error_page(
                    StatusCode::BAD_REQUEST,
                    Some(&who),
                    &format!("{k} is not a kind (account, session, token, api-key, device)"),
                );
            }
        }
    }
    filter.tag = tag.clone();
    let pool = match s.tenants.get(&who.tenant) {
        Ok(t) => t.pool,
        Err(e) => return api_error(&who, e),
    };
    let views = match pool.list(&filter, level_of(&who)) {
        Ok(v) => v,
        Err(e) => return api_error(&who, e.into()),
    };
    let option = |value: &str, chosen: &Option<String>| {
        format!(
            r#"<option value="{v}"{}>{v}</option>"#,
            if chosen.as_deref() == Some(value) {
                " selected"
            } else {
                ""
            },
            v = escape(value)
        )
    };
    let mut body = format!(
        r#"<h2>Site {}</h2><form method="get" class="filter"><label>status <select name="status"><option value="">any</option>{}</select></label> <label>kind <select name="kind"><option value="">any</option>{}</select></label> <label>tag <input name="tag" value="{}"></label> <button type="submit">Filter</button></form>"#,
        escape(&site),
        [
            "init",
            "active",
            "cooling",
            "challenged",
            "suspended",
            "banned",
            "expired"
        ]
        .iter()
        .map(|v| option(v, &status))
        .collect::<String>(),
        ["account", "session", "token", "api-key", "device"]
            .iter()
            .map(|v| option(v, &kind))
            .collect::<String>(),
        escape(tag.as_deref().unwrap_or("")),
    );
    body.push_str(r#"<table class="list"><thead><tr><th>id</th><th>kind</th><th>status</th><th>health</th><th>user</th><th>tags</th><th>expires</th><th></th></tr></thead><tbody>"#);
    if views.is_empty() {
        body.push_str(r#"<tr><td colspan="8">no credentials match</td></tr>"#);
    }
    for v in &views {
        let j = output::view_json(v);
        let tags = j["tags"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(Value::as_str)
                    .map(escape)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let _ = write!(
            body,
            r#"<tr><td><a href="/console/credentials/{}">{}</a></td><td>{}</td><td>{}</td><td class="num">{}</td><td class="user">{}</td><td>{tags}</td><td>{}</td><td class="actions">{}</td></tr>"#,
            url_part(&v.id),
            escape(&v.id),
            escape(names::kind(v.kind)),
            live_status(&v.id, names::status(v.status)),
            v.health,
            escape(j["username"].as_str().unwrap_or("-")),
            escape(j["expires_at"].as_str().unwrap_or("-")),
            actions(&who, &v.id),
        );
    }
    body.push_str("</tbody></table>");
    html::page(&format!("Site {site}"), Some(&who), &body)
}

/// The fields of a view, as rows.
fn view_rows(j: &Value) -> String {
    let mut out = String::new();
    if let Some(o) = j.as_object() {
        for (k, v) in o {
            if k == "status" {
                continue;
            }
            let text = match v {
                Value::Null => "-".to_string(),
                Value::String(s) => s.clone(),
                Value::Array(items) if items.is_empty() => "-".to_string(),
                other => other.to_string(),
            };
            let _ = write!(
                out,
                "<tr><th>{}</th><td>{}</td></tr>",
                escape(k),
                escape(&text)
            );
        }
    }
    out
}

#[derive(Deserialize)]
pub struct CredentialQuery {
    answered: Option<String>,
}

/// `GET /console/credentials/{id}`.
pub async fn credential(
    State(s): State<Shared>,
    Extension(c): Extension<Arc<Console>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<CredentialQuery>,
) -> Response {
    let who = match signed_in(&s, &c, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let t = match s.tenants.get(&who.tenant) {
        Ok(t) => t,
        Err(e) => return api_error(&who, e),
    };
    let view = match t.pool.view(&id, level_of(&who)) {
        Ok(v) => v,
        Err(e) => return api_error(&who, e.into()),
    };
    let j = output::view_json(&view);
    let mut body = String::new();
    if q.answered.is_some() {
        body.push_str(r#"<p class="notice" id="answered">Answer sent: the login resumes. The status below follows it.</p>"#);
    }
    let _ = write!(
        body,
        r#"<h2>Credential {}</h2><p class="big">Status {}</p><p class="actions">{}</p><table class="fields">{}</table>"#,
        escape(&view.id),
        live_status(&view.id, names::status(view.status)),
        actions(&who, &view.id),
        view_rows(&j)
    );
    if who.may_act()
        && let Ok(tickets) = t.pool.tickets()
    {
        let open: Vec<_> = tickets
            .iter()
            .filter(|x| x.credential_id == view.id)
            .collect();
        if !open.is_empty() {
            let _ = write!(
                body,
                r#"<p class="notice">{} open ticket(s): <a href="/console/inbox">answer in the inbox</a>.</p>"#,
                open.len()
            );
        }
    }
    body.push_str(r#"<h3>History</h3><p class="hint">Status changes, refresh results, tickets and alerts since this server started (the last 50).</p><table class="list"><thead><tr><th>when</th><th>event</th><th>details</th></tr></thead><tbody>"#);
    let history = t.alerts.history(&view.id);
    if history.is_empty() {
        body.push_str(r#"<tr><td colspan="3">nothing yet</td></tr>"#);
    }
    for e in history.iter().rev() {
        let details = e
            .fields
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
            .collect::<Vec<_>>()
            .join(" ");
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{details}</td></tr>",
            html::time(e.at),
            escape(&e.event)
        );
    }
    body.push_str("</tbody></table>");
    html::page(&format!("Credential {id}"), Some(&who), &body)
}

/// `GET /console/credentials/{id}/remove`: the confirmation step.
pub async fn confirm_remove(
    State(s): State<Shared>,
    Extension(c): Extension<Arc<Console>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let who = match signed_in(&s, &c, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    if !who.may_act() {
        return html::error_page(
            StatusCode::FORBIDDEN,
            Some(&who),
            "a viewer may not remove credentials",
        );
    }
    let view = match s
        .tenants
        .get(&who.tenant)
        .and_then(|t| Ok(t.pool.view(&id, AccessLevel::Public)?))
    {
        Ok(v) => v,
        Err(e) => return api_error(&who, e),
    };
    let body = format!(
        r#"<h2>Remove credential {}?</h2><p>Its record and its sealed secrets are deleted from the pool of site {}; open leases on it end. This cannot be undone (a backup can bring it back).</p>
<form method="post" action="/console/credentials/{}/remove">{}<input type="hidden" name="confirm" value="yes"><button type="submit" class="danger" id="confirm-remove">Remove</button> <a href="/console/credentials/{}">Cancel</a></form>"#,
        escape(&view.id),
        escape(&view.site),
        url_part(&view.id),
        csrf_field(&who),
        url_part(&view.id)
    );
    html::page("Remove credential", Some(&who), &body)
}

/// Which action a POST asks for.
#[derive(Clone, Copy)]
enum Action {
    Unban,
    ResetChallenge,
    Remove,
}

async fn act(
    s: Shared,
    c: Arc<Console>,
    id: String,
    headers: HeaderMap,
    body: Body,
    action: Action,
) -> Response {
    let (form, who) = match posted_form(&s, &c, &headers, body).await {
        Ok(posted) => posted,
        Err(refused) => return refused,
    };
    if !who.may_act() {
        return html::error_page(
            StatusCode::FORBIDDEN,
            Some(&who),
            &format!("a {} token may not change credentials", who.role.name()),
        );
    }
    if matches!(action, Action::Remove) && form.get("confirm") != Some("yes") {
        return html::error_page(
            StatusCode::BAD_REQUEST,
            Some(&who),
            "removal needs its confirmation",
        );
    }
    let pool = match s.tenants.get(&who.tenant) {
        Ok(t) => t.pool,
        Err(e) => return api_error(&who, e),
    };
    let site = pool.view(&id, AccessLevel::Public).map(|v| v.site).ok();
    let target = id.clone();
    let done = blocking(move || {
        let done = match action {
            Action::Unban => pool.unban(&target).map(|_| ()),
            Action::ResetChallenge => pool.reset_challenge(&target).map(|_| ()),
            Action::Remove => pool.remove(&target),
        };
        done.map_err(ApiError::from)
    })
    .await;
    if let Err(e) = done {
        return api_error(&who, e);
    }
    let name = match action {
        Action::Unban => "unban",
        Action::ResetChallenge => "reset-challenge",
        Action::Remove => "remove",
    };
    tracing::info!(target: "credpool::serve", "console: {name} credential={id} token={} tenant={}", who.token_id, who.tenant);
    match (action, site) {
        (Action::Remove, Some(site)) => {
            Redirect::to(&format!("/console/sites/{}", url_part(&site))).into_response()
        }
        (Action::Remove, None) => Redirect::to("/").into_response(),
        _ => Redirect::to(&format!("/console/credentials/{}", url_part(&id))).into_response(),
    }
}

pub async fn unban(
    State(s): State<Shared>,
    Extension(c): Extension<Arc<Console>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    act(s, c, id, headers, body, Action::Unban).await
}

pub async fn reset_challenge(
    State(s): State<Shared>,
    Extension(c): Extension<Arc<Console>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    act(s, c, id, headers, body, Action::ResetChallenge).await
}

pub async fn remove(
    State(s): State<Shared>,
    Extension(c): Extension<Arc<Console>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    act(s, c, id, headers, body, Action::Remove).await
}
