//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

pub mod byo;
pub mod fixtures;
pub mod http;
pub mod loopback;
pub mod redis;
pub mod server;
pub mod webdriver;

use credpool::events::MemorySink;
use credpool::{CredentialKind, ManualClock, NewCredential, Pool, PoolOptions};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

/// 2026-01-01T00:00:00Z, a fixed start for hand-moved clocks.
pub const T0: i64 = 1_767_225_600_000;

/// A pool in memory on a hand-moved clock, recording events.
pub fn memory_pool() -> (Pool, ManualClock, Arc<MemorySink>) {
    memory_pool_with("")
}

/// As [`memory_pool`], with the policy configured by `policy_json`.
pub fn memory_pool_with(policy_json: &str) -> (Pool, ManualClock, Arc<MemorySink>) {
    let clock = ManualClock::at(T0);
    let events = Arc::new(MemorySink::default());
    let mut options = PoolOptions::in_memory();
    options.policy_config = policy_json.to_string();
    options.clock = Some(clock.clone());
    options.events = events.clone();
    (Pool::open(options).expect("open pool"), clock, events)
}

/// A session with the given cookies.
pub fn session(site: &str, id: &str, cookies: &[(&str, &str)]) -> NewCredential {
    let mut new = NewCredential::new(site, CredentialKind::Session).with_id(id);
    for (n, v) in cookies {
        new.secrets.cookies.push((n.to_string(), v.to_string()));
    }
    new
}

/// A random-looking canary value, distinct per call.
pub fn canary(label: &str) -> String {
    let mut bytes = [0u8; 12];
    getrandom_fill(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("CANARY{label}{hex}")
}

fn getrandom_fill(buf: &mut [u8]) {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    for chunk in buf.chunks_mut(8) {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(chunk.len() as u64);
        let v = h.finish().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// The `credpool` binary under test: cargo's, or `CREDPOOL_TEST_BIN` (a
/// private copy, for checkouts that share one target directory and so one
/// `target/debug/credpool`).
pub fn credpool_bin() -> std::path::PathBuf {
    std::env::var_os("CREDPOOL_TEST_BIN")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_credpool").into())
}

/// Runs the binary on `dir/data` with `dir/credpool.toml`, feeding `stdin`
/// and adding `env`; the caller's key and log settings are not inherited.
pub fn run_credpool(dir: &Path, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(credpool_bin());
    cmd.arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--config")
        .arg(dir.join("credpool.toml"))
        .args(args)
        .env_remove("CREDENTIAL_ENCRYPTION_KEY")
        .env_remove("CREDPOOL_LOG")
        .env_remove("CREDPOOL_ADDR")
        .env_remove("CREDPOOL_TOKEN")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run credpool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait for credpool")
}

/// Runs the binary with no input.
pub fn credpool(dir: &Path, args: &[&str]) -> Output {
    run_credpool(dir, args, "", &[])
}

/// Its standard output, after checking it succeeded (or the whole story).
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 output")
}

/// The command's stdout as JSON; it must have succeeded.
pub fn json(out: &Output) -> serde_json::Value {
    let text = ok(out);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// A temporary directory with `credpool init` done in `data/`.
pub fn initialised() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    ok(&credpool(dir.path(), &["init"]));
    dir
}
