//! The same component in another host: the built-in policy, transpiled by
//! jco and run on Node with the small JavaScript host of
//! `examples/jco-host/`, gives the same answers as the Rust host for the
//! same sequence (`examples/jco-host/sequence.json`), step by step: which
//! credential each acquire got, what each report did, what was refused and
//! why. Timestamps are not compared. Node 20+ and the example's packages
//! (`npm ci --prefix examples/jco-host`) must be installed.

use crate::support::{self, memory_pool_with};
use credpool::names;
use credpool::{
    AcquireRequest, BUILTIN_POLICY, Error, Failure, LeaseId, NewCredential, Outcome, Pool,
    PoolError,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

fn example_dir() -> PathBuf {
    support::byo::workspace_root().join("examples/jco-host")
}

fn sequence() -> Value {
    let path = example_dir().join("sequence.json");
    let text = std::fs::read_to_string(&path).expect("examples/jco-host/sequence.json");
    serde_json::from_str(&text).expect("the sequence is JSON")
}

/// The contract's name of a pool error (`lease-not-found`), as jco gives it.
fn error_tag(e: &Error) -> String {
    match e {
        Error::Pool(p) => match p {
            PoolError::CredentialNotFound(_) => "credential-not-found",
            PoolError::AlreadyExists(_) => "already-exists",
            PoolError::LeaseNotFound(_) => "lease-not-found",
            PoolError::TicketNotFound(_) => "ticket-not-found",
            PoolError::InvalidInput(_) => "invalid-input",
            PoolError::InvalidConfig(_) => "invalid-config",
            PoolError::IllegalTransition(_) => "illegal-transition",
            PoolError::Storage(_) => "storage",
            PoolError::Unsupported(_) => "unsupported",
        }
        .to_string(),
        other => panic!("the Rust host failed outside the policy: {other}"),
    }
}

fn outcome(step: &Value) -> Outcome {
    match step["outcome"]
        .as_str()
        .expect("a report step names its outcome")
    {
        "success" => Outcome::Success,
        class => Outcome::Failure(Failure {
            class: names::parse_failure_class(class)
                .unwrap_or_else(|| panic!("unknown failure class {class}")),
            http_status: step["http_status"].as_u64().map(|s| s as u16),
            retry_after_secs: step["retry_after_secs"].as_u64().map(|s| s as u32),
        }),
    }
}

fn new_credential(step: &Value) -> NewCredential {
    let kind = names::parse_kind(step["kind"].as_str().unwrap_or("session")).expect("a kind");
    let mut new = NewCredential::new(step["site"].as_str().expect("site"), kind)
        .with_id(step["id"].as_str().expect("id"));
    for (field, into) in [
        ("cookies", &mut new.secrets.cookies),
        ("headers", &mut new.secrets.headers),
    ] {
        for (name, value) in step[field].as_object().into_iter().flatten() {
            into.push((name.clone(), value.as_str().expect("a value").to_string()));
        }
    }
    new
}

/// Plays the sequence through the library's `Pool`, printing what run.js
/// prints.
fn run_in_rust(sequence: &Value) -> Vec<Value> {
    let (pool, clock, _events) = memory_pool_with(&sequence["policy"].to_string());
    clock.set(sequence["start_ms"].as_i64().expect("start_ms"));
    let mut leases: HashMap<String, LeaseId> = HashMap::new();
    let steps = sequence["steps"].as_array().expect("steps");
    let mut lines = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let op = step["op"].as_str().expect("op");
        let lease = |name: &str| leases.get(name).copied().expect("a lease acquired before");
        let result = match op {
            "add" => pool
                .add(new_credential(step))
                .map(|m| json!({"id": m.id, "status": names::status(m.status)})),
            "acquire" => acquire(&pool, step, &mut leases),
            "report" => pool
                .report(lease(step["lease"].as_str().unwrap()), outcome(step))
                .map(|e| {
                    json!({"status": names::status(e.status), "health": e.health,
                       "resting": e.cooldown_until.is_some()})
                }),
            "release" => pool
                .release(lease(step["lease"].as_str().unwrap()))
                .map(|()| json!({"released": true})),
            "advance" => {
                let ms = step["ms"].as_u64().expect("ms");
                clock.advance(Duration::from_millis(ms));
                Ok(json!({"advanced_ms": ms}))
            }
            "tick" => pool.tick().map(|t| {
                json!({"leases_expired": t.leases_expired, "cooldowns_ended": t.cooldowns_ended})
            }),
            "stats" => pool.stats(step["site"].as_str()).map(|all| {
                let st = &all[0];
                json!({"site": st.site, "total": st.total, "active": st.by_status.active,
                   "init": st.by_status.init, "cooling": st.by_status.cooling,
                   "suspended": st.by_status.suspended, "open_leases": st.open_leases,
                   "granted": st.granted, "refused": st.refused, "successes": st.successes})
            }),
            other => panic!("step {i}: unknown op {other}"),
        };
        let mut line = json!({"step": i, "op": op});
        let fields = result.unwrap_or_else(|e| json!({"error": error_tag(&e)}));
        for (k, v) in fields.as_object().expect("an object") {
            line[k] = v.clone();
        }
        lines.push(line);
    }
    lines
}

fn acquire(
    pool: &Pool,
    step: &Value,
    leases: &mut HashMap<String, LeaseId>,
) -> credpool::Result<Value> {
    let got = pool.acquire(&AcquireRequest::site(step["site"].as_str().unwrap()))?;
    let Some(lease) = got.lease else {
        return Ok(json!({"status": names::acquire_status(got.status),
                         "reason": got.reason.map(names::reason)}));
    };
    leases.insert(step["as"].as_str().expect("as").to_string(), lease.id);
    let secrets = lease.secrets.cookies.len() + lease.secrets.headers.len();
    Ok(
        json!({"status": names::acquire_status(got.status), "credential": lease.credential.id.as_str(),
              "lease_status": names::status(lease.credential.status),
              "health": lease.credential.health, "secrets": secrets}),
    )
}

fn node_ready() {
    let out = Command::new("node").arg("--version").output();
    let version = match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => panic!("`node` (20 or later) is not on PATH: the jco example needs it"),
    };
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        major >= 20,
        "node {version} is too old: jco needs 20 or later"
    );
    assert!(
        example_dir()
            .join("node_modules/@bytecodealliance/jco")
            .is_dir(),
        "examples/jco-host has no node_modules: run `npm ci --prefix examples/jco-host` first"
    );
}

/// The built-in policy (the bytes the Rust host runs), transpiled once per
/// test run by the example's `npm run transpile`.
fn transpiled() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        node_ready();
        let work = tempfile::tempdir().expect("temp dir");
        let wasm = work.path().join("credpool_policy.wasm");
        std::fs::write(&wasm, BUILTIN_POLICY).expect("write the component");
        let generated = work.path().join("generated");
        let out = Command::new("npm")
            .args(["run", "--silent", "transpile"])
            .current_dir(example_dir())
            .env("POLICY_WASM", &wasm)
            .env("JCO_GENERATED", &generated)
            .output()
            .expect("run npm run transpile");
        assert!(
            out.status.success() && generated.join("policy.js").is_file(),
            "jco transpile failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        work
    })
    .path()
}

/// Plays a sequence file with the example's run.js on Node.
fn run_in_node(sequence_path: &std::path::Path) -> Vec<Value> {
    let generated = transpiled().join("generated");
    let out = Command::new("node")
        .arg("run.js")
        .arg(sequence_path)
        .current_dir(example_dir())
        .env("JCO_GENERATED", &generated)
        .output()
        .expect("run node run.js");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "run.js failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn the_jco_host_answers_as_the_rust_host_step_by_step() {
    let sequence = sequence();
    let rust = run_in_rust(&sequence);
    let node = run_in_node(&example_dir().join("sequence.json"));
    assert_eq!(node.len(), rust.len(), "node printed {node:#?}");
    for (r, n) in rust.iter().zip(&node) {
        assert_eq!(r, n, "the hosts differ at step {}", r["step"]);
    }
    // The sequence is worth comparing: it rotates, rests, refuses, errs.
    let has = |key: &str, value: &str| rust.iter().any(|l| l[key] == value);
    for (key, value) in [
        ("status", "suspended"),
        ("status", "cooling"),
        ("reason", "unknown-site"),
        ("error", "lease-not-found"),
        ("error", "already-exists"),
    ] {
        assert!(has(key, value), "the sequence never gives {key}={value}");
    }
    let granted: Vec<&str> = rust
        .iter()
        .filter_map(|l| l["credential"].as_str())
        .collect();
    assert!(
        granted.starts_with(&["shop-1", "shop-2", "shop-3", "shop-1"]),
        "not round-robin: {granted:?}"
    );
}

#[test]
fn a_changed_sequence_is_told_apart() {
    // Control: a sequence the hosts play differently must not compare equal,
    // or the test above proves nothing. Here Node's copy reports a success
    // where Rust's reports a block.
    let sequence = sequence();
    let mut changed = sequence.clone();
    let steps = changed["steps"].as_array_mut().unwrap();
    let block = steps
        .iter_mut()
        .find(|s| s["outcome"] == "blocked")
        .expect("a blocked report");
    block["outcome"] = json!("success");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("changed.json");
    std::fs::write(&path, changed.to_string()).unwrap();
    let rust = run_in_rust(&sequence);
    let node = run_in_node(&path);
    assert_ne!(rust, node);
}
