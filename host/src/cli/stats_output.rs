//! What `stats` prints: per site, the counts, the card's SLOs against their
//! targets, refreshes by method and tickets; a table, or JSON with `--json`
//! (the server answers the same JSON).

use super::output::{num, text, time};
use crate::SiteStats;
use crate::names;
use serde_json::{Value, json};

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
        "availability": share(s.granted, s.refused),
        "availability_target": AVAILABILITY_TARGET,
        "successes": s.successes,
        "failures": failures,
        "refresh": {
            "attempts": s.refresh.attempts,
            "succeeded": s.refresh.succeeded,
            "failed": s.refresh.failed,
            "in_flight": s.refresh.in_flight,
            "success_rate": share(s.refresh.succeeded, s.refresh.failed),
            "by_method": s.refresh_by_method.iter().map(|m| json!({
                "method": names::refresh_method(m.method),
                "attempts": m.attempts,
                "succeeded": m.succeeded,
                "failed": m.failed,
                "success_rate": share(m.succeeded, m.failed),
            })).collect::<Vec<_>>(),
        },
        "open_tickets": s.open_tickets,
        "pace_per_minute": s.pace_per_minute,
        "time_to_answer": {
            "answered": s.answer_times.answered,
            "mean_ms": (s.answer_times.answered > 0).then_some(s.answer_times.mean_ms),
            "max_ms": (s.answer_times.answered > 0).then_some(s.answer_times.max_ms),
        },
        "anomalies": s.anomalies.iter().map(|a| json!({
            "kind": names::alert_kind(a.kind),
            "credential_id": a.credential_id,
            "detected_at": time(a.detected_at),
            "detail": a.detail,
        })).collect::<Vec<_>>(),
        "needs_person": s.needs_person.iter().map(|n| json!({
            "credential_id": n.credential_id,
            "status": names::status(n.status),
            "action": n.action,
        })).collect::<Vec<_>>(),
        "needs_person_total": s.needs_person_total,
    })
}

/// The card's SLO for handing out credentials: at least 95% of acquires
/// answered with one.
pub const AVAILABILITY_TARGET: f64 = 0.95;

/// The share of `good` among `good + bad`, 0 to 1; `None` before any.
/// Availability is granted against refused acquires (the card's SLO, see
/// [`AVAILABILITY_TARGET`]); refresh success, succeeded against failed.
fn share(good: u64, bad: u64) -> Option<f64> {
    let all = good + bad;
    (all > 0).then(|| good as f64 / all as f64)
}

fn rate_text(r: Option<f64>) -> String {
    match r {
        Some(r) => format!("{:.1}%", r * 100.0),
        None => "-".to_string(),
    }
}

/// Mean and longest time to answer a ticket, `-` before any answer.
fn answer_time_text(t: &Value) -> String {
    if num(t, "answered") == 0 {
        return "-".to_string();
    }
    let secs = |k: &str| t[k].as_f64().unwrap_or(0.0) / 1000.0;
    format!("{:.0}s/{:.0}s", secs("mean_ms"), secs("max_ms"))
}

pub fn print_stats(stats: &[SiteStats], as_json: bool) {
    let all: Vec<Value> = stats.iter().map(stats_json).collect();
    print_stats_values(&all, as_json);
}

/// Per-site stats as [`stats_json`] made them: a table, or the JSON array.
pub fn print_stats_values(stats: &[Value], as_json: bool) {
    if as_json {
        println!("{}", Value::Array(stats.to_vec()));
        return;
    }
    if stats.is_empty() {
        println!("no credentials");
        return;
    }
    println!(
        "{:<18} {:>5} {:>5} {:>6} {:>7} {:>9} {:>7} {:>7} {:>10} {:>7} {:>6} {:>8} {:>8} {:>7} {:>6} {:>9} {:>8} {:>7} {:>14} {:>8}",
        "SITE",
        "TOTAL",
        "INIT",
        "ACTIVE",
        "COOLING",
        "SUSPENDED",
        "BANNED",
        "EXPIRED",
        "CHALLENGED",
        "LEASED",
        "OK",
        "FAILED",
        "GRANTED",
        "REFUSED",
        "AVAIL",
        "REFRESHES",
        "REFR-OK",
        "TICKETS",
        "ANSWER-AVG/MAX",
        "PACE/MIN"
    );
    for s in stats {
        let b = &s["by_status"];
        let failed: u64 = s["failures"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(_, n)| n.as_u64())
            .sum();
        let r = &s["refresh"];
        println!(
            "{:<18} {:>5} {:>5} {:>6} {:>7} {:>9} {:>7} {:>7} {:>10} {:>7} {:>6} {:>8} {:>8} {:>7} {:>6} {:>9} {:>8} {:>7} {:>14} {:>8}",
            text(s, "site"),
            num(s, "total"),
            num(b, "init"),
            num(b, "active"),
            num(b, "cooling"),
            num(b, "suspended"),
            num(b, "banned"),
            num(b, "expired"),
            num(b, "challenged"),
            num(s, "open_leases"),
            num(s, "successes"),
            failed,
            num(s, "granted"),
            num(s, "refused"),
            availability_text(s),
            num(r, "attempts"),
            rate_text(r["success_rate"].as_f64()),
            num(s, "open_tickets"),
            answer_time_text(&s["time_to_answer"]),
            s["pace_per_minute"]
                .as_u64()
                .map_or_else(|| "-".to_string(), |n| n.to_string())
        );
        for m in r["by_method"].as_array().into_iter().flatten() {
            println!(
                "  {:<16} refreshes {:>6}  ok {:>6}  failed {:>6}  success {:>6}",
                text(m, "method"),
                num(m, "attempts"),
                num(m, "succeeded"),
                num(m, "failed"),
                rate_text(m["success_rate"].as_f64())
            );
        }
        let people = s["needs_person"].as_array().map_or(&[][..], Vec::as_slice);
        if !people.is_empty() {
            println!("  needs a person: {}", num(s, "needs_person_total"));
            for n in people {
                println!(
                    "    {} ({}): {}",
                    text(n, "credential_id"),
                    text(n, "status"),
                    text(n, "action")
                );
            }
        }
    }
}

/// Availability as a percentage, with `!` when under the card's target;
/// `-` before any acquire.
fn availability_text(s: &Value) -> String {
    match s["availability"].as_f64() {
        Some(a) if a < AVAILABILITY_TARGET => format!("{}!", rate_text(Some(a))),
        a => rate_text(a),
    }
}
