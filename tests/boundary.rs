//! The component boundary: what the built policy is, what it may import,
//! and that no secret value ever crosses into it.

use crate::support;

use credpool::{
    AccessLevel, AcquireRequest, CredentialKind, Failure, FailureClass, ListFilter, NewCredential,
    Outcome, Pool, PoolOptions,
};
use credpool::{BUILTIN_POLICY, Runtime};
use std::sync::{Arc, Mutex};
use support::canary;
use support::fixtures::encodings;

#[test]
fn the_built_policy_is_a_component_not_a_core_module() {
    assert_eq!(&BUILTIN_POLICY[0..4], b"\0asm");
    // Core modules are version 1 layer 0; components are version 0xd layer 1.
    assert_eq!(&BUILTIN_POLICY[4..8], &[0x0d, 0x00, 0x01, 0x00]);
}

#[test]
fn the_policy_imports_only_our_interfaces_clocks_random_and_stdio() {
    let imports = Runtime::builtin().unwrap().import_names();
    for ours in ["store", "refresh", "notify", "log", "types"] {
        let name = format!("credpool:policy/{ours}@0.1.0");
        assert!(imports.contains(&name), "{name} missing from {imports:?}");
    }
    // What Rust's std reaches on wasm32-wasip2 for time, randomness and
    // panic messages; nothing that touches files, sockets or HTTP.
    let allowed_wasi = [
        "wasi:clocks/",
        "wasi:random/",
        "wasi:io/",
        "wasi:cli/environment",
        "wasi:cli/exit",
        "wasi:cli/stdin",
        "wasi:cli/stdout",
        "wasi:cli/stderr",
        "wasi:cli/terminal-",
    ];
    for name in &imports {
        let ok = name.starts_with("credpool:policy/")
            || allowed_wasi.iter().any(|p| name.starts_with(p));
        assert!(ok, "unexpected import {name} (all: {imports:?})");
    }
}

/// Every secret kind, with a fresh canary value.
fn canary_credential(site: &str, id: &str) -> NewCredential {
    let mut new = NewCredential::new(site, CredentialKind::Account).with_id(id);
    let s = &mut new.secrets;
    s.password = Some(canary("PW"));
    s.cookies.push(("sid".into(), canary("COOKIE")));
    s.headers.push((
        "Authorization".into(),
        format!("Bearer {}", canary("HEADER")),
    ));
    s.access_token = Some(canary("AT"));
    s.refresh_token = Some(canary("RT"));
    s.api_key = Some(canary("AK"));
    s.secret_key = Some(canary("SK"));
    s.recovery_codes = vec![canary("RC")];
    s.totp_seed = Some(canary("TOTP"));
    new
}

fn leaks<'a>(lines: &[String], secrets: &'a [String]) -> Vec<&'a str> {
    secrets
        .iter()
        .filter(|s| {
            encodings(s)
                .iter()
                .any(|e| lines.iter().any(|l| l.contains(e.as_str())))
        })
        .map(String::as_str)
        .collect()
}

#[test]
fn no_secret_value_crosses_into_the_policy() {
    let recorder = Arc::new(Mutex::new(Vec::new()));
    let mut options = PoolOptions::in_memory();
    options.recorder = Some(recorder.clone());
    let pool = Pool::open(options).unwrap();
    let mut secrets = Vec::new();
    for i in 0..3 {
        let new = canary_credential("jd.com", &format!("acct-{i}"));
        secrets.extend(new.secrets.values().iter().map(|s| s.to_string()));
        pool.add(new).unwrap();
    }
    // Drive every export that touches a credential.
    let lease = pool
        .acquire(&AcquireRequest::site("jd.com"))
        .unwrap()
        .lease
        .unwrap();
    assert!(
        !lease.secrets.values().is_empty(),
        "the caller does get its secrets"
    );
    pool.report(lease.id, Outcome::Success).unwrap();
    let lease = pool
        .acquire(&AcquireRequest::site("jd.com"))
        .unwrap()
        .lease
        .unwrap();
    pool.report(
        lease.id,
        Outcome::Failure(Failure {
            class: FailureClass::Blocked,
            http_status: Some(403),
            retry_after_secs: None,
        }),
    )
    .unwrap();
    let lease = pool
        .acquire(&AcquireRequest::site("jd.com"))
        .unwrap()
        .lease
        .unwrap();
    pool.release(lease.id).unwrap();
    for level in [
        AccessLevel::Public,
        AccessLevel::Internal,
        AccessLevel::Sensitive,
        AccessLevel::Secret,
    ] {
        pool.list(&ListFilter::all(), level).unwrap();
        pool.view("acct-0", level).unwrap();
    }
    pool.reveal("acct-1").unwrap();
    pool.stats(None).unwrap();
    pool.tick().unwrap();
    pool.flush().unwrap();
    pool.remove("acct-2").unwrap();

    let lines = recorder.lock().unwrap().clone();
    // The recorder saw the traffic (names and records do cross)...
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("export.add") && l.contains("Authorization"))
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("store.set") && l.contains("acct-0"))
    );
    // ...and no secret in any form.
    assert_eq!(leaks(&lines, &secrets), Vec::<&str>::new());
}

#[test]
fn the_scanner_catches_a_planted_leak() {
    // Control: a value that does cross on purpose (a username is metadata)
    // must be found, or the test above proves nothing.
    let recorder = Arc::new(Mutex::new(Vec::new()));
    let mut options = PoolOptions::in_memory();
    options.recorder = Some(recorder.clone());
    let pool = Pool::open(options).unwrap();
    let planted = canary("USER");
    let mut new = NewCredential::new("jd.com", CredentialKind::Account);
    new.username = Some(planted.clone());
    pool.add(new).unwrap();
    let lines = recorder.lock().unwrap().clone();
    assert_eq!(
        leaks(&lines, std::slice::from_ref(&planted)),
        vec![planted.as_str()]
    );
}
