//! Hostile policies contained (issue 17 §3). A tenant's policy is its own
//! code: `tests/hostile/` is a policy component that attacks the host, one
//! attack per case (its `[policy] case`), built for wasm32-wasip2 on first
//! use. Each case runs the attacker as tenant `hostile` beside tenant
//! `neighbour` (the built-in policy) on one shared redb store, as
//! `credpool serve` does with two tenants, and checks that the call fails
//! with `Error::Limit` naming the limit, that the same process serves the
//! next call, that the stored data of both tenants stays valid (reopened and
//! audited, and `credpool check` on the store), and prints the neighbour's
//! p99 acquire+report latency while the attack runs beside a baseline
//! measured in the same test.

use crate::support::{T0, credpool_bin, session};
use credpool::backend::{Backend, RedbBackend};
use credpool::crypto::{KeySource, create_key_file};
use credpool::events::MemorySink;
use credpool::limits::SandboxLimits;
use credpool::{
    AccessLevel, AcquireRequest, Error, ListFilter, ManualClock, Outcome, Pool, PoolOptions,
    Storage,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Builds `tests/hostile` once per test process, into the target directory
/// `host/build.rs` builds the built-in policy in (its dependencies are
/// shared, so the build is one small crate), with the same profile.
fn hostile_component() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let target_dir = root.join("target").join("guest");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(root)
            .args(["build", "-p", "credpool-hostile", "--release"])
            .args(["--target", "wasm32-wasip2"])
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
            .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTFLAGS")
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .env_remove("CARGO_BUILD_TARGET")
            .status()
            .expect("run cargo to build tests/hostile");
        assert!(status.success(), "building tests/hostile failed");
        let wasm = target_dir.join("wasm32-wasip2/release/credpool_hostile.wasm");
        assert!(wasm.exists(), "no {}", wasm.display());
        wasm
    })
}

/// Two tenants on one store: the attacker and a neighbour with the
/// built-in policy and credentials of its own.
struct Server {
    dir: tempfile::TempDir,
    backend: Arc<RedbBackend>,
    hostile: Pool,
    neighbour: Pool,
    hostile_events: Arc<MemorySink>,
}

const NEIGHBOUR_SITE: &str = "shop.example";
const NEIGHBOUR_CREDENTIALS: usize = 20;

fn data_dir(dir: &Path) -> PathBuf {
    dir.join("data")
}

fn open(case: &str, limits: SandboxLimits) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir(dir.path());
    std::fs::create_dir(&data).unwrap();
    let key = data.join(credpool::pool::KEY_FILE);
    create_key_file(&key).unwrap();
    let backend = Arc::new(RedbBackend::open(&data.join(credpool::pool::DB_FILE)).unwrap());
    let options = |tenant: &str| {
        let mut o = PoolOptions::in_memory();
        o.storage = Storage::Shared(backend.clone());
        o.key = KeySource::File(key.clone());
        o.tenant = tenant.into();
        o.clock = Some(ManualClock::at(T0));
        o
    };
    let neighbour = Pool::open(options("neighbour")).unwrap();
    for i in 0..NEIGHBOUR_CREDENTIALS {
        let id = format!("n{i:02}");
        neighbour
            .add(session(
                NEIGHBOUR_SITE,
                &id,
                &[("sid", &format!("secret-{id}"))],
            ))
            .unwrap();
    }
    let hostile_events = Arc::new(MemorySink::default());
    let mut o = options("hostile");
    o.component = Some(hostile_component().to_path_buf());
    o.policy_config = format!(r#"{{"case":"{case}","other":"neighbour","foreign":"n00"}}"#);
    o.limits = limits;
    o.events = hostile_events.clone();
    let hostile = Pool::open(o).unwrap();
    Server {
        dir,
        backend,
        hostile,
        neighbour,
        hostile_events,
    }
}

/// The neighbour's acquire+report round trips for `d`, or until `stop`:
/// each latency in microseconds.
fn neighbour_load(pool: &Pool, stop: &AtomicBool, d: Duration) -> Vec<u64> {
    let mut took = Vec::new();
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) && start.elapsed() < d {
        let t = Instant::now();
        let got = pool.acquire(&AcquireRequest::site(NEIGHBOUR_SITE)).unwrap();
        let lease = got.lease.expect("the neighbour keeps getting leases");
        pool.report(lease.id, Outcome::Success).unwrap();
        took.push(t.elapsed().as_micros() as u64);
    }
    took
}

fn p99(mut v: Vec<u64>) -> u64 {
    assert!(!v.is_empty(), "no neighbour call completed");
    v.sort_unstable();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

/// Runs `attack` against the hostile tenant again and again for at least
/// `at_least` while the neighbour works, and prints the neighbour's p99
/// beside its baseline. Returns every attack's result.
fn under_attack<T: Send>(
    s: &Server,
    case: &str,
    at_least: Duration,
    attack: impl Fn(&Pool) -> T + Sync,
) -> Vec<T> {
    let baseline = p99(neighbour_load(
        &s.neighbour,
        &AtomicBool::new(false),
        Duration::from_millis(300),
    ));
    let stop = AtomicBool::new(false);
    let (results, during) = std::thread::scope(|scope| {
        let load = scope.spawn(|| neighbour_load(&s.neighbour, &stop, Duration::from_secs(600)));
        let start = Instant::now();
        let mut results = vec![attack(&s.hostile)];
        while start.elapsed() < at_least {
            results.push(attack(&s.hostile));
        }
        stop.store(true, Ordering::Relaxed);
        (results, load.join().unwrap())
    });
    let samples = during.len();
    let during = p99(during);
    println!(
        "hostile case {case}: neighbour p99 {baseline} us alone, {during} us under attack \
         ({samples} calls, {} attacks)",
        results.len()
    );
    // A generous sanity bound: the neighbour is never stuck behind the attacker.
    assert!(
        during < 2_000_000,
        "{case}: the neighbour's p99 was {during} us under attack"
    );
    results
}

/// The attack fails with the limit `limit`, and its message names it.
fn assert_limit<T: std::fmt::Debug>(case: &str, result: &credpool::Result<T>, limit: &str) {
    match result {
        Err(Error::Limit { limit: got, detail }) => {
            assert_eq!(*got, limit, "{case}: {detail}");
            let message = result.as_ref().unwrap_err().to_string();
            assert!(message.contains(limit), "{case}: {message}");
            assert_eq!(result.as_ref().unwrap_err().code(), "policy_limit");
        }
        other => panic!("{case}: expected the limit {limit}, got {other:?}"),
    }
}

/// The host stays up and the data stays valid: the same process serves
/// the attacker's next call, the neighbour still holds and hands out its
/// credentials, the attacker's `seed` record is intact, and once both are
/// closed the store reopens, audits clean and passes `credpool check`.
fn assert_contained(s: Server) {
    s.hostile
        .stats(None)
        .expect("the hostile tenant's next call is served");
    let views = s
        .neighbour
        .list(&ListFilter::all(), AccessLevel::Public)
        .unwrap();
    assert_eq!(views.len(), NEIGHBOUR_CREDENTIALS);
    let got = s
        .neighbour
        .acquire(&AcquireRequest::site(NEIGHBOUR_SITE))
        .unwrap();
    let lease = got.lease.unwrap();
    assert!(lease.secrets.cookies[0].1.starts_with("secret-n"));
    s.neighbour.release(lease.id).unwrap();
    let seed = s.hostile.vault().policy_key("seed");
    assert_eq!(
        s.hostile.vault().get(&seed).unwrap().as_deref(),
        Some(&b"intact"[..])
    );
    // Nothing was written outside the two tenants' prefixes.
    for (key, _) in s.backend.scan("", None, 100_000).unwrap() {
        assert!(
            key.starts_with("t/hostile/")
                || key.starts_with("t/neighbour/")
                || key.starts_with("k/"),
            "a record outside the tenants: {key}"
        );
        assert!(!key.contains(".."), "{key}");
    }
    let Server {
        dir,
        backend,
        hostile,
        neighbour,
        ..
    } = s;
    drop((hostile, neighbour, backend));
    let data = data_dir(dir.path());
    let mut o = PoolOptions::on_disk(&data);
    o.tenant = "neighbour".into();
    let reopened = Pool::open(o).unwrap();
    let audit = reopened.audit().unwrap();
    assert!(audit.unreadable.is_empty(), "{:?}", audit.unreadable);
    assert_eq!(
        reopened
            .list(&ListFilter::all(), AccessLevel::Public)
            .unwrap()
            .len(),
        NEIGHBOUR_CREDENTIALS
    );
    drop(reopened);
    let out = Command::new(credpool_bin())
        .arg("--data-dir")
        .arg(&data)
        .arg("--config")
        .arg(dir.path().join("credpool.toml"))
        .arg("check")
        .env_remove("CREDPOOL_CONFIG")
        .env_remove("CREDENTIAL_ENCRYPTION_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "credpool check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn acquire(pool: &Pool) -> credpool::Result<credpool::Acquired> {
    pool.acquire(&AcquireRequest::site("hostile.example"))
}

/// One case whose every attack fails with `limit`.
fn case(name: &str, limits: SandboxLimits, at_least: Duration, limit: &str) {
    let s = open(name, limits);
    for result in under_attack(&s, name, at_least, acquire) {
        assert_limit(name, &result, limit);
    }
    assert_contained(s);
}

fn limits() -> SandboxLimits {
    SandboxLimits::default()
}

#[test]
fn an_endless_loop_is_stopped_at_the_call_deadline() {
    let mut l = limits();
    l.call_deadline = Duration::from_millis(200);
    case(
        "endless-loop",
        l,
        Duration::from_millis(500),
        "call_deadline",
    );
}

#[test]
fn memory_growth_stops_at_the_cap() {
    let mut l = limits();
    l.memory_bytes = 64 << 20;
    case("memory", l, Duration::from_millis(300), "memory_bytes");
}

#[test]
fn deep_recursion_stops_at_the_stack() {
    case("recursion", limits(), Duration::from_millis(300), "stack");
}

#[test]
fn a_huge_answer_list_is_refused() {
    case(
        "huge-list",
        limits(),
        Duration::from_millis(300),
        "policy_answer",
    );
}

#[test]
fn a_malformed_answer_is_refused() {
    case(
        "malformed",
        limits(),
        Duration::from_millis(300),
        "policy_answer",
    );
}

#[test]
fn a_lease_for_a_credential_that_does_not_exist_is_refused() {
    case(
        "ghost-lease",
        limits(),
        Duration::from_millis(300),
        "policy_answer",
    );
}

#[test]
fn a_lease_for_another_tenants_credential_is_refused_and_leaks_nothing() {
    let s = open("foreign-lease", limits());
    for result in under_attack(&s, "foreign-lease", Duration::from_millis(300), acquire) {
        assert_limit("foreign-lease", &result, "policy_answer");
        assert!(!result.unwrap_err().to_string().contains("secret-n00"));
    }
    assert_contained(s);
}

#[test]
fn store_keys_that_leave_the_prefix_are_refused() {
    for name in [
        "escape-dotdot",
        "escape-absolute",
        "escape-tenant",
        "escape-control",
        "escape-empty",
    ] {
        case(name, limits(), Duration::from_millis(100), "store_key");
    }
}

#[test]
fn the_built_in_policy_refuses_an_id_that_would_be_a_dot_segment() {
    let s = open("none", limits());
    for id in [".", ".."] {
        let err = s
            .neighbour
            .add(session(NEIGHBOUR_SITE, id, &[("sid", "x")]))
            .unwrap_err();
        assert_eq!(err.code(), "invalid_input", "{id}: {err}");
        assert!(err.to_string().contains("id"), "{err}");
    }
    assert_contained(s);
}

#[test]
fn a_million_keys_stop_at_the_key_quota() {
    let mut l = limits();
    l.store_keys = 5_000;
    let s = open("million-keys", l);
    for result in under_attack(&s, "million-keys", Duration::from_millis(300), acquire) {
        assert_limit("million-keys", &result, "store_keys");
    }
    // The call's lazy writes were dropped with it.
    let junk = s.hostile.vault().policy_key("junk/");
    assert!(s.backend.scan(&junk, None, 10).unwrap().is_empty());
    assert_contained(s);
}

#[test]
fn keys_past_the_byte_quota_are_refused() {
    let mut l = limits();
    l.store_bytes = 100_000;
    case("million-keys", l, Duration::from_millis(300), "store_bytes");
}

#[test]
fn a_value_past_the_size_limit_is_refused() {
    case(
        "big-value",
        limits(),
        Duration::from_millis(300),
        "value_bytes",
    );
}

#[test]
fn too_many_calls_per_second_are_refused() {
    let mut l = limits();
    l.calls_per_second = 50;
    let s = open("none", l);
    let results = under_attack(&s, "calls-per-second", Duration::from_millis(300), acquire);
    let refused = results.iter().filter(|r| r.is_err()).count();
    let served = results.len() - refused;
    assert!(refused > 0, "{served} calls served, none refused");
    // At most the cap per one-second window (the run spans at most two).
    assert!(served <= 100, "{served} calls served");
    for r in results.iter().filter(|r| r.is_err()) {
        assert_limit("calls-per-second", r, "calls_per_second");
    }
    assert!(
        s.hostile
            .limit_counters()
            .calls_refused
            .load(Ordering::Relaxed)
            > 0
    );
    // Wait out the window: the next call is served.
    std::thread::sleep(Duration::from_millis(1_100));
    assert_contained(s);
}

/// Floods are not failures: past the cap the events are dropped and
/// counted, and the call goes on.
fn flood(name: &str, dropped: impl Fn(&credpool::limits::LimitCounters) -> u64, cap: u64) {
    let s = open(name, limits());
    let results = under_attack(&s, name, Duration::ZERO, acquire);
    for r in &results {
        assert!(r.is_ok(), "{name}: {r:?}");
    }
    let delivered = s.hostile_events.lines().len() as u64;
    let lost = dropped(&s.hostile.limit_counters());
    // One minute's window, or two if the run crossed a boundary.
    assert!(delivered <= 2 * cap, "{name}: {delivered} events delivered");
    assert!(lost > 0, "{name}: nothing dropped");
    println!("hostile case {name}: {delivered} events delivered, {lost} dropped");
    assert_contained(s);
}

#[test]
fn a_log_flood_is_dropped_past_its_cap_and_counted() {
    let cap = u64::from(limits().log_per_minute);
    flood("log-flood", |c| c.log_dropped.load(Ordering::Relaxed), cap);
}

#[test]
fn a_notify_flood_is_dropped_past_its_cap_and_counted() {
    let cap = u64::from(limits().notify_per_minute);
    flood(
        "notify-flood",
        |c| c.notify_dropped.load(Ordering::Relaxed),
        cap,
    );
}

#[test]
fn a_trap_in_the_middle_of_a_write_commits_none_of_its_lazy_writes() {
    let s = open("trap-mid-write", limits());
    let results = under_attack(&s, "trap-mid-write", Duration::from_millis(200), acquire);
    for r in &results {
        assert!(
            matches!(r, Err(Error::Policy(m)) if m.contains("wasm trap")),
            "{r:?}"
        );
    }
    let v = s.hostile.vault();
    // The durable write before the trap stands; the lazy ones do not.
    assert_eq!(
        v.get(&v.policy_key("half/2")).unwrap().as_deref(),
        Some(&b"durable two"[..])
    );
    assert_eq!(v.get(&v.policy_key("half/1")).unwrap(), None);
    assert_contained(s);
}

/// Through a real `credpool serve` loading the hostile component: an
/// endless loop and a lease for a credential nobody holds are answered as
/// `policy_limit` errors naming the limit, and the same server answers the
/// next request.
#[test]
fn over_http_a_limit_is_a_policy_limit_error_and_the_server_stays_up() {
    use crate::support::initialised;
    use crate::support::server::{Served, token};
    use serde_json::json;
    for (case, limit) in [
        ("endless-loop", "call_deadline"),
        ("ghost-lease", "policy_answer"),
    ] {
        let dir = initialised();
        let d = dir.path();
        std::fs::write(
            d.join("credpool.toml"),
            format!("[pool]\ncall_deadline_ms = 200\n\n[policy]\ncase = \"{case}\"\n"),
        )
        .unwrap();
        let crawler = token(d, "default", "crawler", &[]);
        let viewer = token(d, "default", "viewer", &[]);
        let component = hostile_component().to_str().unwrap().to_string();
        let server = Served::start(
            d,
            &["--listen", "127.0.0.1:0", "--component", component.as_str()],
        );
        let mut client = server.client(&crawler);
        for _ in 0..3 {
            let answer = client.post("/v1/acquire", &json!({"site": "hostile.example"}));
            assert_eq!(answer.status, 500, "{case}: {}", answer.text());
            assert_eq!(answer.error_code(), "policy_limit", "{case}");
            assert!(
                answer.error_message().contains(limit),
                "{case}: {}",
                answer.text()
            );
        }
        assert_eq!(
            server.client(&viewer).get("/v1/stats").status,
            200,
            "{case}"
        );
        assert_eq!(client.get("/healthz").status, 200, "{case}");
    }
}
