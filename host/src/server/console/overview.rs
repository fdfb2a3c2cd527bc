//! The overview (per site: credentials by status, health, grants and
//! refusals, refresh success by method, the card's SLOs against their
//! thresholds, open alerts) and the alerts page. The numbers are those of
//! `credpool stats` / `GET /v1/stats`.

use super::Console;
use super::html::{self, escape, percent, url_part};
use super::session::signed_in;
use crate::cli::output::{AVAILABILITY_TARGET, stats_json};
use crate::server::Shared;
use crate::{AccessLevel, ListFilter, names};
use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use std::fmt::Write as _;
use std::sync::Arc;

/// The card's SLO for refreshes: at least 90% succeed.
pub const REFRESH_TARGET: f64 = 0.90;

const STATUSES: [&str; 7] = [
    "active",
    "cooling",
    "init",
    "expired",
    "challenged",
    "suspended",
    "banned",
];

/// Health buckets of the distribution: lower bounds.
const HEALTH_BUCKETS: [(u8, &str); 5] = [
    (80, "80–100"),
    (60, "60–79"),
    (40, "40–59"),
    (20, "20–39"),
    (0, "0–19"),
];

fn slo(share: Option<f64>, target: f64) -> String {
    let (class, verdict) = match share {
        None => ("slo-none", "no data yet"),
        Some(s) if s >= target => ("slo-ok", "meets"),
        Some(_) => ("slo-bad", "below"),
    };
    format!(
        r#"<span class="{class}">{} (target {}; {verdict})</span>"#,
        percent(share),
        percent(Some(target))
    )
}

/// `GET /`.
pub async fn overview(
    State(s): State<Shared>,
    Extension(c): Extension<Arc<Console>>,
    headers: HeaderMap,
) -> Response {
    let who = match signed_in(&s, &c, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let t = match s.tenants.get(&who.tenant) {
        Ok(t) => t,
        Err(e) => return html::error_page(e.status, Some(&who), &e.message),
    };
    let stats = match t.pool.stats(None) {
        Ok(st) => st,
        Err(e) => {
            let e = crate::server::errors::ApiError::from(e);
            return html::error_page(e.status, Some(&who), &e.message);
        }
    };
    let now = chrono::Utc::now().timestamp_millis();
    let alerts = t.alerts.recent();
    let mut body = String::from("<h2>Overview</h2>");
    if stats.is_empty() {
        body.push_str(r#"<p class="hint">No credentials yet. Add some with <code>credpool add</code> or <code>credpool import</code>.</p>"#);
    }
    for st in &stats {
        let j = stats_json(st);
        let site = st.site.as_str();
        let mut filter = ListFilter::all();
        filter.site = Some(site.to_string());
        let healths: Vec<u8> = t
            .pool
            .list(&filter, AccessLevel::Public)
            .map(|v| v.iter().map(|v| v.health).collect())
            .unwrap_or_default();
        let open_alerts = alerts
            .iter()
            .filter(|a| a.site == site)
            .filter(|a| now - a.raised_at < crate::server::alerts::ACTIVE_FOR_MS)
            .count();
        let _ = write!(
            body,
            r#"<section class="site" data-site="{}"><h3><a href="/console/sites/{}">{}</a> <span class="count">{} credentials</span></h3><div class="cards">"#,
            escape(site),
            url_part(site),
            escape(site),
            st.total
        );
        // Credentials by status.
        body.push_str(r#"<div class="card"><h4>By status</h4><table>"#);
        for name in STATUSES {
            let n = j["by_status"][name].as_u64().unwrap_or(0);
            let _ = write!(
                body,
                r#"<tr><td><a class="status status-{name}" href="/console/sites/{}?status={name}">{name}</a></td><td class="num" data-status-count="{name}">{n}</td></tr>"#,
                url_part(site)
            );
        }
        body.push_str("</table></div>");
        // Health distribution.
        body.push_str(r#"<div class="card"><h4>Health</h4><table>"#);
        let mut upper = u8::MAX;
        for (low, label) in HEALTH_BUCKETS {
            let n = healths.iter().filter(|h| **h >= low && **h < upper).count();
            upper = low;
            let _ = write!(body, r#"<tr><td>{label}</td><td class="num">{n}</td></tr>"#);
        }
        body.push_str("</table></div>");
        // Grants, refusals, SLOs.
        let _ = write!(
            body,
            r#"<div class="card"><h4>Leases</h4><table><tr><td>granted</td><td class="num">{}</td></tr><tr><td>refused</td><td class="num">{}</td></tr><tr><td>open now</td><td class="num">{}</td></tr></table><p>Availability {}</p></div>"#,
            st.granted,
            st.refused,
            st.open_leases,
            slo(j["availability"].as_f64(), AVAILABILITY_TARGET)
        );
        body.push_str(r#"<div class="card"><h4>Refresh success by method</h4><table>"#);
        let methods = j["refresh"]["by_method"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if methods.is_empty() {
            body.push_str(r#"<tr><td colspan="2">none yet</td></tr>"#);
        }
        for m in &methods {
            let _ = write!(
                body,
                r#"<tr><td>{}</td><td>{} of {}</td><td>{}</td></tr>"#,
                escape(m["method"].as_str().unwrap_or("")),
                m["succeeded"].as_u64().unwrap_or(0),
                m["succeeded"].as_u64().unwrap_or(0) + m["failed"].as_u64().unwrap_or(0),
                percent(m["success_rate"].as_f64())
            );
        }
        let _ = write!(
            body,
            r#"</table><p>All refreshes {}</p></div>"#,
            slo(j["refresh"]["success_rate"].as_f64(), REFRESH_TARGET)
        );
        let _ = write!(
            body,
            r#"<div class="card"><h4>Attention</h4><table><tr><td><a href="/console/inbox">open tickets</a></td><td class="num">{}</td></tr><tr><td><a href="/console/alerts">open alerts</a></td><td class="num">{open_alerts}</td></tr><tr><td>wait on a person</td><td class="num">{}</td></tr></table></div>"#,
            st.open_tickets, st.needs_person_total
        );
        body.push_str("</div></section>");
    }
    html::page("Overview", Some(&who), &body)
}

/// `GET /console/alerts`: newest first.
pub async fn alerts(
    State(s): State<Shared>,
    Extension(c): Extension<Arc<Console>>,
    headers: HeaderMap,
) -> Response {
    let who = match signed_in(&s, &c, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let t = match s.tenants.get(&who.tenant) {
        Ok(t) => t,
        Err(e) => return html::error_page(e.status, Some(&who), &e.message),
    };
    let now = chrono::Utc::now().timestamp_millis();
    let mut body = String::from(
        "<h2>Alerts</h2><table class=\"list\"><thead><tr><th>raised</th><th>state</th><th>severity</th><th>kind</th><th>site</th><th>credential</th><th>message</th></tr></thead><tbody>",
    );
    let all = t.alerts.recent();
    if all.is_empty() {
        body.push_str(r#"<tr><td colspan="7">no alerts</td></tr>"#);
    }
    for a in all.iter().rev() {
        let active = now - a.raised_at < crate::server::alerts::ACTIVE_FOR_MS;
        let credential = match &a.credential_id {
            Some(id) => format!(
                r#"<a href="/console/credentials/{}">{}</a>"#,
                url_part(id),
                escape(id)
            ),
            None => "-".into(),
        };
        let _ = write!(
            body,
            r#"<tr><td>{}</td><td>{}</td><td class="sev-{sev}">{sev}</td><td>{}</td><td>{}</td><td>{credential}</td><td>{}</td></tr>"#,
            html::time(a.raised_at),
            if active { "open" } else { "past" },
            escape(names::alert_kind(a.kind)),
            escape(&a.site),
            escape(&a.message),
            sev = escape(names::severity(a.severity)),
        );
    }
    body.push_str("</tbody></table>");
    html::page("Alerts", Some(&who), &body)
}
