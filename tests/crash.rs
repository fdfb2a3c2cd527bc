//! Crash safety: a child process changes the store in a loop and reports
//! every acknowledged write on stdout; the parent kills it with SIGKILL at
//! random moments and checks, after each kill, that the store opens, every
//! acknowledged write is there and every record decrypts.
//!
//! The child is this test binary run again with `CREDPOOL_CRASH_CHILD` set.

use crate::support;

use credpool::backend::{Backend, RedbBackend};
use credpool::crypto::{KeySource, create_key_file, load_keys};
use credpool::pool::DB_FILE;
use credpool::rekey::{self, RekeyOptions};
use credpool::{
    AccessLevel, AcquireRequest, Error, Failure, FailureClass, Outcome, Pool, PoolError,
    PoolOptions, Status,
};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::session;

const CHILD_ENV: &str = "CREDPOOL_CRASH_CHILD";
const KILLS: usize = 50;

fn blocked() -> Outcome {
    Outcome::Failure(Failure {
        class: FailureClass::Blocked,
        http_status: Some(403),
        retry_after_secs: None,
    })
}

/// A small random number from the OS (no extra crate).
fn random_below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    u64::from_le_bytes(b) % n.max(1)
}

/// The child: waits for "go" on stdin (so its start-up, mostly compiling
/// the component, overlaps the parent's checks), then writes until killed.
fn child_writer(dir: &Path, run: &str) {
    credpool::Runtime::builtin().unwrap();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    if line.trim() != "go" {
        // The parent went away without starting us.
        return;
    }
    let pool = Pool::open(PoolOptions::on_disk(dir)).unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY").unwrap();
    out.flush().unwrap();
    let mut ids: Vec<String> = Vec::new();
    for i in 0.. {
        // Mostly one add at a time; every seventh turn, three at once with
        // one flush to disk (an import).
        let batch: Vec<String> = if i % 7 == 6 {
            (0..3).map(|k| format!("{run}-{i}x{k}")).collect()
        } else {
            vec![format!("{run}-{i}")]
        };
        let news = batch
            .iter()
            .map(|id| session("crash.test", id, &[("sid", &value_of(id))]));
        if batch.len() == 1 {
            pool.add(news.into_iter().next().unwrap()).unwrap();
        } else {
            pool.add_all(news).unwrap();
        }
        for id in batch {
            writeln!(out, "ACK add {id} {}", value_of(&id)).unwrap();
            ids.push(id);
        }
        out.flush().unwrap();
        if i % 3 == 2 {
            // A status change: a block suspends the credential durably.
            let got = pool.acquire(&AcquireRequest::site("crash.test")).unwrap();
            if let Some(lease) = got.lease {
                pool.report(lease.id, blocked()).unwrap();
                writeln!(out, "ACK suspended {}", lease.credential.id).unwrap();
                out.flush().unwrap();
            }
        }
        if i % 5 == 4 {
            let victim = ids.remove(0);
            // A removal in flight when the kill comes may or may not happen.
            writeln!(out, "TRY remove {victim}").unwrap();
            out.flush().unwrap();
            pool.remove(&victim).unwrap();
            writeln!(out, "ACK remove {victim}").unwrap();
            out.flush().unwrap();
        }
    }
}

#[test]
fn crash_child_entry() {
    // Only does something when run as the child.
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        let (mode, rest) = spec.split_once(':').unwrap();
        let (dir, run) = rest.split_once('|').unwrap();
        match mode {
            "writer" => child_writer(Path::new(dir), run),
            "rekey" => child_rekey(Path::new(dir)),
            other => panic!("unknown child mode {other}"),
        }
    }
}

fn spawn_child(mode: &str, dir: &Path, run: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash::crash_child_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{mode}:{}|{run}", dir.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Skips the test harness's own lines up to the child's READY.
fn wait_ready(stdout: &mut impl BufRead) -> bool {
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line).unwrap_or(0) == 0 {
            return false;
        }
        // The harness prints "test NAME ... " before the child's first line.
        if line.trim().ends_with("READY") {
            return true;
        }
    }
}

/// The cookie value of credential `RUN-I` (known even when its add was
/// not acknowledged but a later run used it).
fn value_of(id: &str) -> String {
    let (run, i) = id.split_once('-').unwrap();
    format!("v{run}x{i}")
}

#[derive(Default, Debug)]
struct Expected {
    value: String,
    suspended: bool,
    removed: bool,
    maybe_removed: bool,
}

/// Reads ACK lines until the stream ends (the child died).
fn read_acks(stdout: impl BufRead, model: &mut BTreeMap<String, Expected>) -> usize {
    let mut acks = 0;
    for line in stdout.lines() {
        let Ok(line) = line else { break };
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["ACK", "add", id, value] => {
                model.insert(
                    id.to_string(),
                    Expected {
                        value: value.to_string(),
                        ..Default::default()
                    },
                );
            }
            ["ACK", "suspended", id] => model.entry(id.to_string()).or_default().suspended = true,
            ["TRY", "remove", id] => model.entry(id.to_string()).or_default().maybe_removed = true,
            ["ACK", "remove", id] => model.entry(id.to_string()).or_default().removed = true,
            _ => continue,
        }
        acks += 1;
    }
    acks
}

fn check_store(dir: &Path, model: &BTreeMap<String, Expected>) {
    let pool = Pool::open(PoolOptions::on_disk(dir)).expect("the store opens after a kill");
    for (id, want) in model {
        if want.removed {
            assert!(
                matches!(
                    pool.view(id, AccessLevel::Public),
                    Err(Error::Pool(PoolError::CredentialNotFound(_)))
                ),
                "{id} was removed and came back"
            );
            continue;
        }
        let (view, secrets) = match pool.reveal(id) {
            Ok(got) => got,
            Err(Error::Pool(PoolError::CredentialNotFound(_))) if want.maybe_removed => continue,
            Err(e) => panic!("acknowledged {id} lost: {e} ({want:?})"),
        };
        assert_eq!(
            secrets.cookies,
            vec![("sid".to_string(), value_of(id))],
            "{id}"
        );
        if want.suspended {
            assert_eq!(view.status, Status::Suspended, "{id} lost its status");
        }
    }
    let audit = pool.audit().unwrap();
    assert!(
        audit.unreadable.is_empty() && audit.unknown.is_empty(),
        "{audit:?}"
    );
}

#[test]
fn acknowledged_writes_survive_kill_9_at_random_moments() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    create_key_file(&dir.path().join("credpool.key")).unwrap();
    let started = Instant::now();
    let mut model: BTreeMap<String, Expected> = BTreeMap::new();
    let mut acks = 0;
    // Two children warm up (compile the component) ahead of their turn, on
    // the second core, while the current one runs and is checked.
    let mut warm: std::collections::VecDeque<Child> = (0..2)
        .map(|i| spawn_child("writer", dir.path(), &format!("r{i}")))
        .collect();
    for kill in 0..KILLS {
        let mut child = warm.pop_front().unwrap();
        warm.push_back(spawn_child("writer", dir.path(), &format!("r{}", kill + 2)));
        child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        assert!(wait_ready(&mut stdout), "child {kill} did not start");
        let reader = std::thread::spawn(move || {
            let mut m = BTreeMap::new();
            let n = read_acks(stdout, &mut m);
            (m, n)
        });
        std::thread::sleep(Duration::from_millis(random_below(250)));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let (m, n) = reader.join().unwrap();
        acks += n;
        for (id, e) in m {
            let entry = model.entry(id).or_default();
            if !e.value.is_empty() {
                entry.value = e.value;
            }
            entry.suspended |= e.suspended;
            entry.removed |= e.removed;
            entry.maybe_removed |= e.maybe_removed;
        }
        // Removals and blocks name credentials of earlier runs too.
        check_store(dir.path(), &model);
    }
    for mut c in warm {
        let _ = c.kill();
        let _ = c.wait();
    }
    let elapsed = started.elapsed();
    eprintln!(
        "crash test: {KILLS} SIGKILLs, {acks} acknowledged writes checked, {} credentials, {elapsed:?}",
        model.len()
    );
    assert!(
        acks > KILLS,
        "the children wrote too little to prove anything"
    );
}

/// The rekey child: rewraps in small batches until killed.
fn child_rekey(dir: &Path) {
    let key = KeySource::File(dir.join("credpool.key"));
    let ring = load_keys(&key).unwrap();
    let backend = RedbBackend::open(&dir.join(DB_FILE)).unwrap();
    println!("READY");
    let options = RekeyOptions {
        batch: 8,
        ..RekeyOptions::default()
    };
    let report = rekey::run(&backend, &ring, &key, &options).unwrap();
    println!("DONE {}", report.primary);
}

fn open_raw(dir: &Path) -> (Arc<dyn Backend>, credpool::crypto::KeyRing) {
    let ring = load_keys(&KeySource::File(dir.join("credpool.key"))).expect("key file intact");
    let backend: Arc<dyn Backend> = Arc::new(RedbBackend::open(&dir.join(DB_FILE)).unwrap());
    (backend, ring)
}

#[test]
fn a_rekey_killed_midway_leaves_everything_readable_and_finishes_when_rerun() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir: PathBuf = dir.keep();
    create_key_file(&dir.join("credpool.key")).unwrap();
    let n = 300;
    {
        let pool = Pool::open(PoolOptions::on_disk(&dir)).unwrap();
        for i in 0..n {
            pool.add(session(
                "rekey.test",
                &format!("k{i}"),
                &[("sid", &format!("v{i}"))],
            ))
            .unwrap();
        }
    }
    let (backend, ring) = open_raw(&dir);
    let before = rekey::audit(&*backend, &ring).unwrap();
    drop(backend);
    let mut mixed = 0;
    for _ in 0..12 {
        let mut child = spawn_child("rekey", &dir, "x");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        assert!(wait_ready(&mut stdout), "rekey child did not start");
        std::thread::sleep(Duration::from_millis(random_below(120)));
        child.kill().unwrap();
        child.wait().unwrap();
        let (backend, ring) = open_raw(&dir);
        let audit = rekey::audit(&*backend, &ring).unwrap();
        assert!(audit.unreadable.is_empty(), "{audit:?}");
        assert_eq!(audit.sealed(), before.sealed(), "no record lost");
        if audit.by_key.len() > 1 {
            mixed += 1;
        }
    }
    // Running rekey again finishes the job: one key, everything under it.
    let (backend, ring) = open_raw(&dir);
    let key = KeySource::File(dir.join("credpool.key"));
    let report = rekey::run(&*backend, &ring, &key, &RekeyOptions::default()).unwrap();
    assert_eq!(report.audit.by_key.len(), 1, "{report:?}");
    assert_eq!(ring.ids(), vec![report.primary]);
    drop(backend);
    let pool = Pool::open(PoolOptions::on_disk(&dir)).unwrap();
    for i in [0, n / 2, n - 1] {
        let (_, s) = pool.reveal(&format!("k{i}")).unwrap();
        assert_eq!(s.cookies[0].1, format!("v{i}"));
    }
    eprintln!("rekey crash test: 12 kills, {mixed} left records under two keys");
    drop(pool);
    let _ = std::fs::remove_dir_all(&dir);
}
