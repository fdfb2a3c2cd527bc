//! What the command prints: a readable table, or JSON with `--json`.
//! Secret values appear only in `acquire` and `show --reveal` output.

use crate::bindings::pool::MethodRefreshStats;
use crate::names;
use crate::pool::Acquired;
use crate::secrets::Secrets;
use crate::{CredentialMeta, CredentialView, ReportEffect, SiteStats, TickSummary};
use serde_json::{Value, json};

pub fn time(ms: i64) -> Value {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        None => Value::Null,
    }
}

fn opt_time(ms: Option<i64>) -> Value {
    ms.map(time).unwrap_or(Value::Null)
}

fn time_text(ms: Option<i64>) -> String {
    match ms.map(time) {
        Some(Value::String(s)) => s,
        _ => "-".into(),
    }
}

pub fn meta_json(m: &CredentialMeta) -> Value {
    json!({
        "id": m.id,
        "site": m.site,
        "type": names::kind(m.kind),
        "status": names::status(m.status),
        "health": m.health,
        "created_at": time(m.created_at),
        "last_used_at": opt_time(m.last_used_at),
        "expires_at": opt_time(m.expires_at),
        "cooldown_until": opt_time(m.cooldown_until),
        "use_count": m.use_count,
        "success_count": m.success_count,
        "fail_count": m.fail_count,
        "tags": m.tags,
        "cookie_names": m.cookie_names,
        "header_names": m.header_names,
        "secret_fields": m.secret_fields.iter().map(|f| names::secret_field(*f)).collect::<Vec<_>>(),
    })
}

pub fn view_json(v: &CredentialView) -> Value {
    let mut out = json!({
        "id": v.id,
        "site": v.site,
        "type": names::kind(v.kind),
        "status": names::status(v.status),
        "health": v.health,
    });
    if let Some(i) = &v.internal {
        let o = out.as_object_mut().expect("object");
        o.insert("created_at".into(), time(i.created_at));
        o.insert("last_used_at".into(), opt_time(i.last_used_at));
        o.insert("expires_at".into(), opt_time(i.expires_at));
        o.insert("cooldown_until".into(), opt_time(i.cooldown_until));
        o.insert("use_count".into(), json!(i.use_count));
        o.insert("success_count".into(), json!(i.success_count));
        o.insert("fail_count".into(), json!(i.fail_count));
        o.insert("consecutive_failures".into(), json!(i.consecutive_failures));
        o.insert("open_leases".into(), json!(i.open_leases));
        o.insert("max_concurrent".into(), json!(i.max_concurrent));
        o.insert("rate_per_minute".into(), json!(i.rate_per_minute));
        o.insert("tags".into(), json!(i.tags));
    }
    if let Some(s) = &v.sensitive {
        let o = out.as_object_mut().expect("object");
        o.insert("username".into(), json!(s.username));
        o.insert("phone".into(), json!(s.phone));
        o.insert("email".into(), json!(s.email));
        // Names only: the policy never has the values.
        let masked = |names: &[String]| -> Value {
            names
                .iter()
                .map(|n| json!({"name": n, "value": "***"}))
                .collect()
        };
        o.insert("cookies".into(), masked(&s.cookie_names));
        o.insert("headers".into(), masked(&s.header_names));
        o.insert(
            "secret_fields".into(),
            json!(
                s.secret_fields
                    .iter()
                    .map(|f| names::secret_field(*f))
                    .collect::<Vec<_>>()
            ),
        );
    }
    out
}

pub fn secrets_json(s: &Secrets) -> Value {
    let pairs = |v: &[(String, String)]| -> Value {
        v.iter()
            .map(|(n, val)| json!({"name": n, "value": val}))
            .collect()
    };
    json!({
        "password": s.password,
        "cookies": pairs(&s.cookies),
        "headers": pairs(&s.headers),
        "access_token": s.access_token,
        "refresh_token": s.refresh_token,
        "api_key": s.api_key,
        "secret_key": s.secret_key,
        "recovery_codes": s.recovery_codes,
    })
}

pub fn print_views(views: &[CredentialView], as_json: bool) {
    if as_json {
        let all: Vec<Value> = views.iter().map(view_json).collect();
        println!("{}", Value::Array(all));
        return;
    }
    if views.is_empty() {
        println!("no credentials");
        return;
    }
    println!(
        "{:<24} {:<18} {:<8} {:<10} {:>6}  details",
        "ID", "SITE", "TYPE", "STATUS", "HEALTH"
    );
    for v in views {
        let mut details = Vec::new();
        if let Some(i) = &v.internal {
            details.push(format!(
                "uses={} ok={} fail={}",
                i.use_count, i.success_count, i.fail_count
            ));
            if let Some(t) = i.cooldown_until {
                details.push(format!("rests until {}", time_text(Some(t))));
            }
        }
        if let Some(s) = &v.sensitive {
            if let Some(u) = &s.username {
                details.push(format!("user={u}"));
            }
            if !s.cookie_names.is_empty() {
                let c: Vec<String> = s.cookie_names.iter().map(|n| format!("{n}=***")).collect();
                details.push(format!("cookies: {}", c.join(" ")));
            }
        }
        println!(
            "{:<24} {:<18} {:<8} {:<10} {:>6}  {}",
            v.id,
            v.site,
            names::kind(v.kind),
            names::status(v.status),
            v.health,
            details.join("; ")
        );
    }
}

pub fn print_revealed(view: &CredentialView, secrets: &Secrets, as_json: bool) {
    if as_json {
        let mut v = view_json(view);
        v.as_object_mut()
            .expect("object")
            .insert("secrets".into(), secrets_json(secrets));
        println!("{v}");
    } else {
        print_views(std::slice::from_ref(view), false);
        print_secrets(secrets);
    }
}

fn print_secrets(s: &Secrets) {
    if let Some(p) = &s.password {
        println!("password      {p}");
    }
    for (n, v) in &s.cookies {
        println!("cookie        {n}={v}");
    }
    for (n, v) in &s.headers {
        println!("header        {n}: {v}");
    }
    for (label, value) in [
        ("access_token ", &s.access_token),
        ("refresh_token", &s.refresh_token),
        ("api_key      ", &s.api_key),
        ("secret_key   ", &s.secret_key),
    ] {
        if let Some(v) = value {
            println!("{label} {v}");
        }
    }
}

/// `view` is the leased credential's view, when the caller fetched it (the
/// lease itself carries only id, site, kind, status and health).
pub fn acquired_json(got: &Acquired, view: Option<&CredentialView>) -> Value {
    json!({
        "status": names::acquire_status(got.status),
        "reason": got.reason.map(names::reason),
        "next_free_at": opt_time(got.next_free_at),
        "lease": got.lease.as_ref().map(|l| json!({
            "id": l.id,
            "granted_at": time(l.granted_at),
            "expires_at": time(l.expires_at),
            "credential": match view {
                Some(v) => view_json(v),
                None => json!({
                    "id": &*l.credential.id,
                    "site": &*l.credential.site,
                    "type": names::kind(l.credential.kind),
                    "status": names::status(l.credential.status),
                    "health": l.credential.health,
                }),
            },
            "secrets": secrets_json(&l.secrets),
        })),
        "alternatives": got.alternatives,
        "warnings": got.warnings,
    })
}

pub fn print_acquired(got: &Acquired, view: Option<&CredentialView>, as_json: bool) {
    if as_json {
        println!("{}", acquired_json(got, view));
        return;
    }
    if let Some(l) = &got.lease {
        let c = &l.credential;
        println!(
            "lease         {}  (until {})",
            l.id,
            time_text(Some(l.expires_at))
        );
        println!(
            "credential    {}  {} {}  status={} health={}",
            c.id,
            names::kind(c.kind),
            c.site,
            names::status(c.status),
            c.health
        );
        print_secrets(&l.secrets);
    }
    for w in &got.warnings {
        eprintln!("warning: {w}");
    }
}

/// The one-line explanation when nothing was handed out.
pub fn no_credential_line(site: &str, got: &Acquired) -> String {
    let why = match got.reason {
        Some(r) => names::reason(r),
        None => "unknown",
    };
    let mut line = format!(
        "no credential available for {site} ({}: {why})",
        names::acquire_status(got.status)
    );
    if let Some(t) = got.next_free_at {
        line.push_str(&format!("; next free at {}", time_text(Some(t))));
    }
    if let Some(a) = got.alternatives.first() {
        line.push_str(&format!("; {a}"));
    }
    line
}

pub fn print_effect(lease_id: &str, e: &ReportEffect, as_json: bool) {
    if as_json {
        println!(
            "{}",
            json!({
                "lease": lease_id,
                "status": names::status(e.status),
                "health": e.health,
                "cooldown_until": opt_time(e.cooldown_until),
            })
        );
    } else {
        let rest = e
            .cooldown_until
            .map(|t| format!(", resting until {}", time_text(Some(t))))
            .unwrap_or_default();
        println!(
            "reported {lease_id}: now {} with health {}{rest}",
            names::status(e.status),
            e.health
        );
    }
}

pub fn stats_json(s: &SiteStats) -> Value {
    let b = &s.by_status;
    let failures: serde_json::Map<String, Value> = s
        .failures
        .iter()
        .map(|(c, n)| (names::failure_class(*c).to_string(), json!(n)))
        .collect();
    json!({
        "site": s.site,
        "total": s.total,
        "by_status": {
            "init": b.init, "active": b.active, "cooling": b.cooling, "challenged": b.challenged,
            "suspended": b.suspended, "banned": b.banned, "expired": b.expired,
        },
        "open_leases": s.open_leases,
        "granted": s.granted,
        "refused": s.refused,
        "successes": s.successes,
        "failures": failures,
        "refresh": {
            "attempts": s.refresh.attempts,
            "succeeded": s.refresh.succeeded,
            "failed": s.refresh.failed,
            "in_flight": s.refresh.in_flight,
            "success_rate": refresh_success_rate(s),
            "by_method": s.refresh_by_method.iter().map(|m| json!({
                "method": names::refresh_method(m.method),
                "attempts": m.attempts,
                "succeeded": m.succeeded,
                "failed": m.failed,
                "success_rate": method_success_rate(m),
            })).collect::<Vec<_>>(),
        },
        "open_tickets": s.open_tickets,
        "time_to_answer": {
            "answered": s.answer_times.answered,
            "mean_ms": (s.answer_times.answered > 0).then_some(s.answer_times.mean_ms),
            "max_ms": (s.answer_times.answered > 0).then_some(s.answer_times.max_ms),
        },
        "anomalies": s.anomalies.iter().map(|a| json!({
            "kind": format!("{:?}", a.kind),
            "credential_id": a.credential_id,
            "detected_at": time(a.detected_at),
            "detail": a.detail,
        })).collect::<Vec<_>>(),
    })
}

/// Finished refreshes that worked, 0 to 1 (the card's SLO: at least 0.9);
/// `None` before any finished.
pub fn refresh_success_rate(s: &SiteStats) -> Option<f64> {
    let done = s.refresh.succeeded + s.refresh.failed;
    (done > 0).then(|| s.refresh.succeeded as f64 / done as f64)
}

/// One method's finished refreshes that worked, 0 to 1; `None` before any.
pub fn method_success_rate(m: &MethodRefreshStats) -> Option<f64> {
    let done = m.succeeded + m.failed;
    (done > 0).then(|| m.succeeded as f64 / done as f64)
}

fn rate_text(r: Option<f64>) -> String {
    match r {
        Some(r) => format!("{:.1}%", r * 100.0),
        None => "-".to_string(),
    }
}

/// Mean and longest time to answer a ticket, `-` before any answer.
pub fn answer_time_text(s: &SiteStats) -> String {
    let a = &s.answer_times;
    if a.answered == 0 {
        return "-".to_string();
    }
    format!(
        "{:.0}s/{:.0}s",
        a.mean_ms as f64 / 1000.0,
        a.max_ms as f64 / 1000.0
    )
}

/// The success rate as a percentage, `-` before any refresh finished.
pub fn refresh_rate_text(s: &SiteStats) -> String {
    rate_text(refresh_success_rate(s))
}

pub fn print_stats(stats: &[SiteStats], as_json: bool) {
    if as_json {
        println!("{}", Value::Array(stats.iter().map(stats_json).collect()));
        return;
    }
    if stats.is_empty() {
        println!("no credentials");
        return;
    }
    println!(
        "{:<18} {:>5} {:>6} {:>7} {:>9} {:>7} {:>6} {:>7} {:>6} {:>8} {:>8} {:>7} {:>9} {:>8} {:>7} {:>14}",
        "SITE",
        "TOTAL",
        "ACTIVE",
        "COOLING",
        "SUSPENDED",
        "BANNED",
        "OTHER",
        "LEASED",
        "OK",
        "FAILED",
        "GRANTED",
        "REFUSED",
        "REFRESHES",
        "REFR-OK",
        "TICKETS",
        "ANSWER-AVG/MAX"
    );
    for s in stats {
        let b = &s.by_status;
        let failed: u64 = s.failures.iter().map(|(_, n)| n).sum();
        println!(
            "{:<18} {:>5} {:>6} {:>7} {:>9} {:>7} {:>6} {:>7} {:>6} {:>8} {:>8} {:>7} {:>9} {:>8} {:>7} {:>14}",
            s.site,
            s.total,
            b.active + b.init,
            b.cooling,
            b.suspended,
            b.banned,
            b.challenged + b.expired,
            s.open_leases,
            s.successes,
            failed,
            s.granted,
            s.refused,
            s.refresh.attempts,
            refresh_rate_text(s),
            s.open_tickets,
            answer_time_text(s)
        );
        for m in &s.refresh_by_method {
            println!(
                "  {:<16} refreshes {:>6}  ok {:>6}  failed {:>6}  success {:>6}",
                names::refresh_method(m.method),
                m.attempts,
                m.succeeded,
                m.failed,
                rate_text(method_success_rate(m))
            );
        }
    }
}

pub fn print_tick(t: &TickSummary, as_json: bool) {
    let v = json!({
        "leases_expired": t.leases_expired,
        "cooldowns_ended": t.cooldowns_ended,
        "refreshes_started": t.refreshes_started,
        "tickets_timed_out": t.tickets_timed_out,
        "next_due_at": opt_time(t.next_due_at),
    });
    if as_json {
        println!("{v}");
    } else {
        println!(
            "lapsed leases {}, rests ended {}, refreshes started {}, tickets timed out {}",
            t.leases_expired, t.cooldowns_ended, t.refreshes_started, t.tickets_timed_out
        );
    }
}
