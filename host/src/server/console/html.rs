//! HTML for the console: every value escaped on its way into a page, and
//! the page frame (navigation, the sign-out form, the stylesheet and the
//! one script, both same-origin files).

use super::session::Who;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// `text` made safe for an element's content or a quoted attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` as one path segment or query value of a link (percent-encoded,
/// so an id cannot leave its segment), then escaped for the attribute.
pub fn url_part(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A hidden CSRF field for a form of `who`'s session.
pub fn csrf_field(who: &Who) -> String {
    format!(
        r#"<input type="hidden" name="csrf" value="{}">"#,
        escape(&who.csrf)
    )
}

/// A POST form of one button (an action on a credential, sign-out).
pub fn button_form(who: &Who, action: &str, label: &str, class: &str) -> String {
    format!(
        r#"<form method="post" action="{}" class="inline">{}<button type="submit" class="{}">{}</button></form>"#,
        escape(action),
        csrf_field(who),
        escape(class),
        escape(label)
    )
}

/// A share as a percentage, `-` before any.
pub fn percent(share: Option<f64>) -> String {
    match share {
        Some(s) => format!("{:.1}%", s * 100.0),
        None => "-".into(),
    }
}

/// Milliseconds since the epoch as UTC text.
pub fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "-".into())
}

/// A whole page: `body` is markup this module's callers built from
/// escaped values.
pub fn page(title: &str, who: Option<&Who>, body: &str) -> Response {
    page_with_status(StatusCode::OK, title, who, body)
}

pub fn page_with_status(
    status: StatusCode,
    title: &str,
    who: Option<&Who>,
    body: &str,
) -> Response {
    let nav = match who {
        Some(w) => format!(
            r#"<nav><a href="/">Overview</a><a href="/console/alerts">Alerts</a><a href="/console/inbox">Challenge inbox</a><span class="who">{} · tenant {}</span>{}</nav>"#,
            escape(w.role.name()),
            escape(&w.tenant),
            button_form(w, "/console/sign-out", "Sign out", "quiet")
        ),
        None => String::new(),
    };
    let html = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{} · credpool</title>
<link rel="stylesheet" href="/console/static/console.css">
<script src="/console/static/console.js" defer></script>
</head><body><header><h1><a href="/">credpool</a></h1>{nav}</header>
<main>{body}</main></body></html>"#,
        escape(title)
    );
    (status, Html(html)).into_response()
}

/// A page saying what went wrong (the message escaped).
pub fn error_page(status: StatusCode, who: Option<&Who>, message: &str) -> Response {
    let body = format!(
        r#"<h2>{}</h2><p class="error">{}</p><p><a href="/">Back to the overview</a></p>"#,
        escape(status.canonical_reason().unwrap_or("Error")),
        escape(message)
    );
    page_with_status(status, "Error", who, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_quotes_become_text() {
        assert_eq!(
            escape(r#"<img src=x onerror="alert(1)">&'"#),
            "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;&#39;"
        );
        assert_eq!(url_part("a/b ?c"), "a%2Fb%20%3Fc");
    }
}
