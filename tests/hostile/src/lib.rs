//! A hostile credpool policy, built for `tests/hostile.rs` only. It
//! implements the `credpool:policy` world and attacks the host from
//! `acquire` (and `prepare`'s `acquire-prepared`, which the host calls):
//! the attack is the `case` named in its configuration (`[policy]`, passed
//! to `configure` as JSON, e.g. `{"case":"endless-loop"}`). One component
//! for every case keeps the build to one compile; the host cannot tell
//! the difference, since it sees only what the component does.
//!
//! Every other export answers plainly, so the test can show that the next
//! call after an attack is served. `configure` writes one record
//! (`seed` = `intact`) whose survival the test checks.
//!
//! Only the component target has it: a native cdylib of these exports
//! cannot be linked (their names are not linker symbols), and `cargo run`
//! or `cargo build` at the workspace root builds every member natively.
#![cfg(target_arch = "wasm32")]

wit_bindgen::generate!({
    path: "../../wit",
    world: "policy",
});

use credpool::policy::{log, notify, store, types as t};
use exports::credpool::policy::pool as p;
use std::cell::RefCell;

/// The value of the `seed` record written by `configure`.
const SEED: &[u8] = b"intact";

thread_local! {
    static CONFIG: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The value of `"name":"..."` in the configuration, if present: a tiny
/// reader so the component needs no JSON crate.
fn setting(name: &str) -> Option<String> {
    CONFIG.with(|c| {
        let c = c.borrow();
        let needle = format!("\"{name}\":\"");
        let start = c.find(&needle)? + needle.len();
        let end = c[start..].find('"')? + start;
        Some(c[start..end].to_string())
    })
}

fn unsupported<T>(what: &str) -> Result<T, t::PoolError> {
    Err(t::PoolError::Unsupported(what.to_string()))
}

fn no_available() -> p::AcquireResponse {
    p::AcquireResponse {
        status: p::AcquireStatus::NoAvailable,
        lease: None,
        reason: Some(p::UnavailableReason::AllLeased),
        next_free_at: None,
        alternatives: Vec::new(),
        warnings: Vec::new(),
    }
}

fn lease(handle: u32) -> p::AcquireResponse {
    p::AcquireResponse {
        status: p::AcquireStatus::Success,
        lease: Some(t::Lease {
            id: t::LeaseId { seq: 1, nonce: 7 },
            credential: handle,
            kind: t::CredentialKind::Session,
            status: t::Status::Active,
            health: 100,
            granted_at: 0,
            expires_at: 60_000,
        }),
        reason: None,
        next_free_at: None,
        alternatives: Vec::new(),
        warnings: Vec::new(),
    }
}

/// Recursion the optimiser cannot turn into a loop (the work after the
/// call is no accumulator it can hoist), on wasm's own stack: no local
/// lives in linear memory, so it is the host's stack limit that stops it.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    (recurse(depth + 1).wrapping_mul(31) ^ depth).rotate_left(7)
}

/// Tries a store write that leaves the tenant's prefix; the host must
/// refuse it, and the call answers as if nothing happened.
fn escape(key: &str) -> Result<p::AcquireResponse, t::PoolError> {
    let _ = store::set(key, b"escaped");
    let _ = store::get(key);
    Ok(no_available())
}

fn attack() -> Result<p::AcquireResponse, t::PoolError> {
    let case = setting("case").unwrap_or_default();
    match case.as_str() {
        "endless-loop" => {
            let mut n = 0u64;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "memory" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 4 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "recursion" => {
            std::hint::black_box(recurse(0));
            Ok(no_available())
        }
        "huge-list" => {
            let mut answer = no_available();
            answer.warnings = vec![String::new(); 2_000_000];
            Ok(answer)
        }
        "malformed" => {
            // Success without a lease, and a warning the size of a page.
            let mut answer = no_available();
            answer.status = p::AcquireStatus::Success;
            answer.warnings = vec!["w".repeat(1 << 20)];
            Ok(answer)
        }
        "ghost-lease" | "foreign-lease" => Ok(lease(7)),
        "escape-dotdot" => escape("../../other/p/cred/x"),
        "escape-absolute" => escape("/t/other/p/cred/x"),
        "escape-tenant" => {
            let other = setting("other").unwrap_or_else(|| "other".into());
            escape(&format!("t/{other}/p/cred/x"))
        }
        "escape-control" => escape("cred/\u{0}x"),
        "escape-empty" => escape(""),
        "million-keys" => {
            for i in 0..1_000_000u32 {
                if store::set_lazy(&format!("junk/{i:07}"), b"x").is_err() {
                    break;
                }
            }
            Ok(no_available())
        }
        "big-value" => {
            let _ = store::set("big", &vec![0u8; 2 << 20]);
            Ok(no_available())
        }
        "log-flood" => {
            for i in 0..100_000u32 {
                log::event(
                    log::Level::Warn,
                    "hostile.flood",
                    &[("n".to_string(), i.to_string())],
                );
            }
            Ok(no_available())
        }
        "notify-flood" => {
            for _ in 0..20_000u32 {
                notify::raise(&notify::Alert {
                    kind: notify::AlertKind::PoolExhausted,
                    severity: notify::Severity::Critical,
                    site: "hostile.example".into(),
                    credential_id: None,
                    message: "flood".into(),
                    raised_at: 0,
                });
            }
            Ok(no_available())
        }
        "trap-mid-write" => {
            store::set_lazy("half/1", b"lazy one").unwrap();
            store::set_lazy("seed", b"overwritten lazily").unwrap();
            store::set("half/2", b"durable two").unwrap();
            panic!("trap in the middle of a write");
        }
        _ => Ok(no_available()),
    }
}

struct Hostile;

impl p::Guest for Hostile {
    fn configure(config_json: String) -> Result<(), t::PoolError> {
        CONFIG.with(|c| *c.borrow_mut() = config_json);
        if store::get("seed").map_err(t::PoolError::Storage)?.is_none() {
            store::set("seed", SEED).map_err(t::PoolError::Storage)?;
        }
        Ok(())
    }

    fn add(_credential: t::NewCredential) -> Result<t::CredentialMeta, t::PoolError> {
        unsupported("add")
    }

    fn remove(_id: String) -> Result<(), t::PoolError> {
        unsupported("remove")
    }

    fn acquire(_request: p::AcquireRequest) -> Result<p::AcquireResponse, t::PoolError> {
        attack()
    }

    fn prepare(_request: p::AcquireRequest) -> Result<p::RequestHandle, t::PoolError> {
        Ok(0)
    }

    fn acquire_prepared(_request: p::RequestHandle) -> Result<p::AcquireResponse, t::PoolError> {
        attack()
    }

    fn report(_lease: t::LeaseId, _outcome: t::Outcome) -> Result<p::ReportEffect, t::PoolError> {
        unsupported("report")
    }

    fn release(_lease: t::LeaseId) -> Result<(), t::PoolError> {
        Ok(())
    }

    fn report_and_acquire(
        _lease: t::LeaseId,
        _outcome: t::Outcome,
        _next: p::RequestHandle,
    ) -> Result<(p::ReportEffect, p::AcquireResponse), t::PoolError> {
        unsupported("report-and-acquire")
    }

    fn credential_id(_credential: t::CredentialHandle) -> Option<String> {
        match setting("case").as_deref() {
            Some("foreign-lease") => setting("foreign"),
            _ => Some("ghost-credential".into()),
        }
    }

    fn view(id: String, _level: t::AccessLevel) -> Result<p::CredentialView, t::PoolError> {
        Err(t::PoolError::CredentialNotFound(id))
    }

    fn list(
        _filter: p::ListFilter,
        _level: t::AccessLevel,
    ) -> Result<Vec<p::CredentialView>, t::PoolError> {
        Ok(Vec::new())
    }

    fn stats(_site: Option<String>) -> Result<Vec<p::SiteStats>, t::PoolError> {
        Ok(Vec::new())
    }

    fn tick() -> Result<p::TickSummary, t::PoolError> {
        Ok(p::TickSummary {
            leases_expired: 0,
            cooldowns_ended: 0,
            refreshes_started: 0,
            tickets_timed_out: 0,
            next_due_at: None,
        })
    }

    fn flush() -> Result<u32, t::PoolError> {
        Ok(0)
    }

    fn refresh_completed(
        _finished: credpool::policy::refresh::RefreshResult,
    ) -> Result<t::Status, t::PoolError> {
        unsupported("refresh-completed")
    }

    fn tickets() -> Result<Vec<notify::Ticket>, t::PoolError> {
        Ok(Vec::new())
    }

    fn resolve_challenge(
        _ticket_id: String,
        _resolution: p::ChallengeResolution,
    ) -> Result<t::Status, t::PoolError> {
        unsupported("resolve-challenge")
    }

    fn unban(_id: String) -> Result<t::CredentialMeta, t::PoolError> {
        unsupported("unban")
    }

    fn reset_challenge(_id: String) -> Result<t::CredentialMeta, t::PoolError> {
        unsupported("reset-challenge")
    }
}

export!(Hostile);
