//! What the command prints: a readable table, or JSON with `--json`.
//! Secret values appear only in `acquire` and `show --reveal` output.

use crate::audit::{AuditRecord, Damaged};
use crate::names;
use crate::pool::Acquired;
use crate::secrets::Secrets;
use crate::{CredentialMeta, CredentialView, ReportEffect, TickSummary};
use serde_json::{Value, json};

pub use super::stats_output::{AVAILABILITY_TARGET, print_stats, print_stats_values, stats_json};

pub fn time(ms: i64) -> Value {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        None => Value::Null,
    }
}

fn opt_time(ms: Option<i64>) -> Value {
    ms.map(time).unwrap_or(Value::Null)
}

/// As [`time`], to the millisecond: a crawler waits until this moment, and
/// whole seconds would make it ask up to a second early.
fn precise_time(ms: Option<i64>) -> Value {
    match ms.and_then(chrono::DateTime::from_timestamp_millis) {
        Some(t) => Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        None => Value::Null,
    }
}

/// Cookie or header names as a view shows them: `[{name, value: "***"}]`.
fn masked_pairs(names: &[String]) -> Value {
    names
        .iter()
        .map(|n| json!({"name": n, "value": "***"}))
        .collect()
}

/// A credential's stored record, as `unban` and `challenge reset` answer
/// it: the keys of its view it has (cookies and headers masked as there).
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
        "cookies": masked_pairs(&m.cookie_names),
        "headers": masked_pairs(&m.header_names),
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
        let labels: serde_json::Map<String, Value> = i
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        o.insert("labels".into(), Value::Object(labels));
        o.insert("source_account".into(), json!(i.source_account));
        o.insert("token_type".into(), json!(i.token_type));
        o.insert("two_factor".into(), json!(i.two_factor));
    }
    if let Some(s) = &v.sensitive {
        let o = out.as_object_mut().expect("object");
        o.insert("username".into(), json!(s.username));
        o.insert("phone".into(), json!(s.phone));
        o.insert("email".into(), json!(s.email));
        // Names only: the policy never has the values.
        o.insert("cookies".into(), masked_pairs(&s.cookie_names));
        o.insert("headers".into(), masked_pairs(&s.header_names));
        o.insert("local_storage".into(), masked_pairs(&s.local_storage_names));
        o.insert("scope".into(), json!(s.token_scope));
        o.insert("device_id".into(), json!(s.device_id));
        o.insert("fingerprint".into(), json!(s.fingerprint));
        o.insert("user_agent".into(), json!(s.user_agent));
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
        "local_storage": pairs(&s.local_storage),
        "access_token": s.access_token,
        "refresh_token": s.refresh_token,
        "api_key": s.api_key,
        "secret_key": s.secret_key,
        "recovery_codes": s.recovery_codes,
    })
}

pub fn print_views(views: &[CredentialView], as_json: bool) {
    let all: Vec<Value> = views.iter().map(view_json).collect();
    print_view_values(&all, as_json);
}

/// Text of a JSON string field, `-` when absent or null.
pub(super) fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

pub(super) fn num(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

/// Views as [`view_json`] made them (here or by a server): a table, or
/// the JSON array.
pub fn print_view_values(views: &[Value], as_json: bool) {
    if as_json {
        println!("{}", Value::Array(views.to_vec()));
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
        // The internal level adds the counters, the sensitive one the names.
        if v.get("created_at").is_some() {
            details.push(format!(
                "uses={} ok={} fail={}",
                num(v, "use_count"),
                num(v, "success_count"),
                num(v, "fail_count")
            ));
            if let Some(t) = v["cooldown_until"].as_str() {
                details.push(format!("rests until {t}"));
            }
            if let Some(a) = v["source_account"].as_str() {
                details.push(format!("from={a}"));
            }
            if let Some(t) = v["token_type"].as_str() {
                details.push(format!("token_type={t}"));
            }
            if v["two_factor"].as_bool() == Some(true) {
                details.push("two-factor".into());
            }
            let labels: Vec<String> = v["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, l)| format!("{k}={}", l.as_str().unwrap_or("")))
                .collect();
            if !labels.is_empty() {
                details.push(format!("labels: {}", labels.join(" ")));
            }
        }
        if v.get("username").is_some() {
            if let Some(u) = v["username"].as_str() {
                details.push(format!("user={u}"));
            }
            let cookies: Vec<String> = v["cookies"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| format!("{}=***", text(c, "name")))
                .collect();
            if !cookies.is_empty() {
                details.push(format!("cookies: {}", cookies.join(" ")));
            }
            let storage: Vec<String> = v["local_storage"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| format!("{}=***", text(c, "name")))
                .collect();
            if !storage.is_empty() {
                details.push(format!("local_storage: {}", storage.join(" ")));
            }
            let scope: Vec<&str> = v["scope"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if !scope.is_empty() {
                details.push(format!("scope={}", scope.join(" ")));
            }
            for key in ["device_id", "fingerprint", "user_agent"] {
                if let Some(x) = v[key].as_str() {
                    details.push(format!("{key}={x}"));
                }
            }
        }
        println!(
            "{:<24} {:<18} {:<8} {:<10} {:>6}  {}",
            text(v, "id"),
            text(v, "site"),
            text(v, "type"),
            text(v, "status"),
            num(v, "health"),
            details.join("; ")
        );
    }
}

/// One credential as `show` prints it: a table of one row, or the object.
pub fn print_view_value(view: &Value, as_json: bool) {
    if as_json {
        println!("{view}");
    } else {
        print_view_values(std::slice::from_ref(view), false);
    }
}

/// A revealed credential: its view (`show --json`'s object, masked as
/// there) with `secrets`, the values, shaped as a lease's.
pub fn revealed_json(view: &CredentialView, secrets: &Secrets) -> Value {
    let mut v = view_json(view);
    v["secrets"] = secrets_json(secrets);
    v
}

pub fn print_revealed(view: &CredentialView, secrets: &Secrets, as_json: bool) {
    print_revealed_value(&revealed_json(view, secrets), as_json);
}

/// A view with its `secrets`, as `show --reveal` prints it.
pub fn print_revealed_value(v: &Value, as_json: bool) {
    if as_json {
        println!("{v}");
    } else {
        let mut view = v.clone();
        if let Some(o) = view.as_object_mut() {
            o.remove("secrets");
        }
        print_view_values(std::slice::from_ref(&view), false);
        print_secrets(&v["secrets"]);
    }
}

/// Secrets as [`secrets_json`] made them.
fn print_secrets(s: &Value) {
    if let Some(p) = s["password"].as_str() {
        println!("password      {p}");
    }
    for c in s["cookies"].as_array().into_iter().flatten() {
        println!("cookie        {}={}", text(c, "name"), text(c, "value"));
    }
    for h in s["headers"].as_array().into_iter().flatten() {
        println!("header        {}: {}", text(h, "name"), text(h, "value"));
    }
    for e in s["local_storage"].as_array().into_iter().flatten() {
        println!("local_storage {}={}", text(e, "name"), text(e, "value"));
    }
    for (label, key) in [
        ("access_token ", "access_token"),
        ("refresh_token", "refresh_token"),
        ("api_key      ", "api_key"),
        ("secret_key   ", "secret_key"),
    ] {
        if let Some(v) = s[key].as_str() {
            println!("{label} {v}");
        }
    }
}

/// `view` is the leased credential's view, when the caller fetched it (the
/// lease itself carries only id, site, kind, status and health).
pub fn acquired_json(got: &Acquired, view: Option<&CredentialView>) -> Value {
    let mut answer = json!({
        "status": names::acquire_status(got.status),
        "reason": got.reason.map(names::reason),
        "next_free_at": precise_time(got.next_free_at),
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
    });
    // The holder logs in with the account's name: the lease carries it
    // unmasked (the views of list and show keep it masked).
    if let Some(l) = &got.lease
        && let Some(user) = &l.secrets.username
    {
        answer["lease"]["credential"]["username"] = json!(user);
    }
    answer
}

pub fn print_acquired(got: &Acquired, view: Option<&CredentialView>, as_json: bool) {
    print_acquired_value(&acquired_json(got, view), as_json);
}

/// An answer as [`acquired_json`] made it: the lease and its secrets, or
/// the JSON; warnings go to stderr.
pub fn print_acquired_value(got: &Value, as_json: bool) {
    if as_json {
        println!("{got}");
        return;
    }
    let l = &got["lease"];
    if l.is_object() {
        let c = &l["credential"];
        println!(
            "lease         {}  (until {})",
            text(l, "id"),
            text(l, "expires_at")
        );
        println!(
            "credential    {}  {} {}  status={} health={}",
            text(c, "id"),
            text(c, "type"),
            text(c, "site"),
            text(c, "status"),
            num(c, "health")
        );
        if let Some(u) = c["username"].as_str() {
            println!("username      {u}");
        }
        print_secrets(&l["secrets"]);
        // A refusal's warnings are its counts, said in its one line.
        for w in got["warnings"].as_array().into_iter().flatten() {
            eprintln!("warning: {}", w.as_str().unwrap_or_default());
        }
    }
}

/// The API's error code for an acquire of a site the pool has no
/// credential for (404; the body is the acquire answer too).
pub const UNKNOWN_SITE_CODE: &str = "unknown_site";

/// Whether an answer says the pool has no credential at all for the site.
pub fn unknown_site(got: &Value) -> bool {
    got["reason"] == "unknown-site"
}

/// Whether an answer as [`acquired_json`] made it handed out a lease.
pub fn acquired_success(got: &Value) -> bool {
    got["status"] == "success"
}

/// The one-line explanation when nothing was handed out: why, the
/// counts, when the next frees (once, RFC 3339) and what else to do.
pub fn no_credential_line(site: &str, got: &Value) -> String {
    let strs = |key: &str| -> Vec<String> {
        got[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    };
    if unknown_site(got) {
        let mut line = format!("no credentials at all for site {site}");
        let todo = strs("alternatives");
        if !todo.is_empty() {
            line.push_str(&format!(": {}", todo.join("; ")));
        }
        return line;
    }
    let why = got["reason"].as_str().unwrap_or("unknown");
    let counts = strs("warnings");
    let mut line = format!("no credential available for {site} ({why}");
    if !counts.is_empty() {
        line.push_str(&format!(": {}", counts.join(", ")));
    }
    line.push(')');
    if let Some(t) = got["next_free_at"].as_str() {
        line.push_str(&format!("; the next frees at {t}"));
    }
    // The time is said above: the alternatives add only what else to do.
    let todo: Vec<String> = strs("alternatives")
        .into_iter()
        .filter(|a| !a.starts_with("retry after"))
        .collect();
    if !todo.is_empty() {
        line.push_str(&format!("; {}", todo.join(", or ")));
    }
    line
}

/// What a report did to the credential.
pub fn effect_json(lease_id: &str, e: &ReportEffect) -> Value {
    json!({
        "lease": lease_id,
        "status": names::status(e.status),
        "health": e.health,
        "cooldown_until": opt_time(e.cooldown_until),
        "late": e.late,
    })
}

/// A report's effect as [`effect_json`] made it.
pub fn print_effect_value(e: &Value, as_json: bool) {
    if as_json {
        println!("{e}");
    } else {
        let rest = e["cooldown_until"]
            .as_str()
            .map(|t| format!(", resting until {t}"))
            .unwrap_or_default();
        let late = if e["late"] == true {
            " (the lease had lapsed; the report was applied all the same)"
        } else {
            ""
        };
        println!(
            "reported {}{late}: now {} with health {}{rest}",
            text(e, "lease"),
            text(e, "status"),
            num(e, "health")
        );
    }
}

/// What an import added and skipped, as `import --json` and the API's
/// import answer print it.
pub fn import_json(added: &[CredentialMeta], parsed: &crate::transfer::Parsed) -> Value {
    json!({
        "imported": added
            .iter()
            .map(|m| json!({
                "id": m.id,
                "site": m.site,
                "type": names::kind(m.kind),
                "status": names::status(m.status),
            }))
            .collect::<Vec<_>>(),
        "skipped": parsed.problems.len(),
        "problems": parsed.problems
            .iter()
            .map(|p| json!({"line": p.line, "message": p.message}))
            .collect::<Vec<_>>(),
        "cookies": parsed.cookies,
        "other_sites": parsed.other_sites,
        "expired_cookies": parsed.expired
            .iter()
            .map(|c| json!({
                "line": c.line,
                "site": c.site,
                "name": c.name,
                "expired_at": time(c.expired_at),
            }))
            .collect::<Vec<_>>(),
        "duplicates": parsed.duplicates
            .iter()
            .map(|d| json!({
                "line": d.line,
                "site": d.site,
                "existing": d.existing,
                "cookie_names": d.cookie_names,
                "action": d.action.name(),
                "added_as": d.added_as,
            }))
            .collect::<Vec<_>>(),
    })
}

/// An import's result as [`import_json`] made it.
pub fn print_import_value(v: &Value, as_json: bool) {
    if as_json {
        println!("{v}");
        return;
    }
    let imported = v["imported"].as_array().map_or(&[][..], Vec::as_slice);
    for m in imported {
        println!(
            "imported {} ({}, {}, {})",
            text(m, "id"),
            text(m, "type"),
            text(m, "site"),
            text(m, "status")
        );
    }
    let expired = v["expired_cookies"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    for c in expired {
        println!(
            "line {}: cookie {} for {} already expired at {}",
            num(c, "line"),
            text(c, "name"),
            text(c, "site"),
            text(c, "expired_at")
        );
    }
    let duplicates = v["duplicates"].as_array().map_or(&[][..], Vec::as_slice);
    let mut replaced = 0;
    for d in duplicates {
        let names: Vec<&str> = d["cookie_names"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let (line, site, held) = (num(d, "line"), text(d, "site"), text(d, "existing"));
        let names = names.join(", ");
        match text(d, "action") {
            "replaced" => {
                replaced += 1;
                println!(
                    "line {line}: {held} replaced by {} ({site} session with cookies {names})",
                    text(d, "added_as")
                );
            }
            "added-beside" => println!(
                "line {line}: {site} already has a session with cookies {names} ({held}, \
                 other values): added beside it as {}; --replace updates the held one instead",
                text(d, "added_as")
            ),
            _ => println!(
                "line {line}: {site} already has this session ({held}, the same cookies \
                 {names}): skipped; --replace updates it"
            ),
        }
    }
    let mut summary = format!("{} credential(s) imported", imported.len());
    if num(v, "cookies") > 0 {
        summary.push_str(&format!(" from {} cookie(s)", num(v, "cookies")));
    }
    if replaced > 0 {
        summary.push_str(&format!(" ({replaced} replacing a held session)"));
    }
    let skipped = duplicates
        .iter()
        .filter(|d| d["action"] == "skipped")
        .count();
    if skipped > 0 {
        summary.push_str(&format!(
            "; {skipped} session(s) already in the pool skipped"
        ));
    }
    if num(v, "other_sites") > 0 {
        summary.push_str(&format!(
            "; {} cookie(s) for other sites left out",
            num(v, "other_sites")
        ));
    }
    if !expired.is_empty() {
        summary.push_str(&format!(
            "; {} cookie(s) already expired (their session is imported expired)",
            expired.len()
        ));
    }
    if num(v, "skipped") > 0 {
        summary.push_str(&format!("; {} bad line(s) skipped", num(v, "skipped")));
    }
    println!("{summary}");
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

/// The audit trail as `audit --json` and `GET /v1/audit` give it.
pub fn audit_json(records: &[AuditRecord], damaged: &[Damaged]) -> Value {
    json!({
        "records": records,
        "damaged": damaged
            .iter()
            .map(|d| json!({"line": d.line, "message": d.message}))
            .collect::<Vec<_>>(),
    })
}

/// The trail as [`audit_json`] made it: a table, or the JSON.
pub fn print_audit_value(v: &Value, as_json: bool) {
    if as_json {
        println!("{v}");
        return;
    }
    let records = v["records"].as_array().map_or(&[][..], Vec::as_slice);
    if records.is_empty() {
        println!("no reveals or exports recorded");
        return;
    }
    println!(
        "{:<24} {:<7} {:<24} {:<18} {:<10} {:<5} {:<12} WHO",
        "AT", "ACTION", "CREDENTIAL", "SITE", "TENANT", "VIA", "FORMAT"
    );
    for r in records {
        println!(
            "{:<24} {:<7} {:<24} {:<18} {:<10} {:<5} {:<12} {}",
            text(r, "at"),
            text(r, "action"),
            text(r, "credential"),
            text(r, "site"),
            text(r, "tenant"),
            text(r, "via"),
            text(r, "format"),
            text(r, "actor")
        );
    }
}
