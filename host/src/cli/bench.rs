//! `credpool bench`: loads N credentials into one site of an in-memory pool
//! (or, with `--disk DIR`, the embedded store in a temporary directory)
//! and runs acquire + report pairs through the policy component on one
//! thread, with about 10% failures, printing one JSON line. Meant for a
//! release build (`cargo run --release -- bench --credentials 100000`).
//! With `--combined` each pair is one `report-and-acquire` call (a
//! crawler's loop: report the page, take the next credential); with
//! `--threads T`, T threads share the pool for the timed pairs (a crawler's
//! workers).

use super::Failed;
use crate::backend::{Backend, RedisBackend, StoreUrl, Write};
use crate::bindings::log::Level;
use crate::bindings::notify::{Alert, Ticket, TicketClosure};
use crate::error::Error;
use crate::events::EventSink;
use crate::pool::{Acquired, Lease, NewCredential, Pool, PoolOptions, Storage};
use crate::{AcquireRequest, CredentialKind, Failure, FailureClass, LeaseId, Outcome};
use smol_str::SmolStr;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Counts alerts and drops everything else: the bench measures the pool,
/// not a terminal.
#[derive(Default)]
struct CountingSink {
    alerts: AtomicU64,
}

impl EventSink for CountingSink {
    fn enabled(&self, level: Level) -> bool {
        matches!(level, Level::Error)
    }
    fn log(&self, _level: Level, _name: &str, _fields: &[(String, String)]) {}
    fn alert(&self, _alert: &Alert) {
        self.alerts.fetch_add(1, Ordering::Relaxed);
    }
    fn ticket_opened(&self, _ticket: &Ticket) {}
    fn ticket_closed(&self, _id: &str, _closure: TicketClosure) {}
}

/// The default warm-up stops by this many pairs per credential even if a
/// credential was never handed out (a weighted pick meets all of 100,000
/// in about 12 per credential).
const WARMUP_PER_CREDENTIAL: u64 = 50;

/// One pair in this many is timed for the latency quantiles (all of them
/// count for the throughput).
const LATENCY_SAMPLE: u64 = 8;

/// The measured figures.
#[derive(Debug, serde::Serialize)]
pub struct Figures {
    pub credentials: usize,
    pub pairs: u64,
    /// Pairs run before the timed ones.
    pub warmup: u64,
    /// Calls into the policy per pair: 2 (acquire, report) or 1
    /// (report-and-acquire).
    pub calls_per_pair: u32,
    /// Threads sharing the pool for the timed pairs.
    pub threads: usize,
    /// Where the pool kept its records: memory, disk (`--disk`) or redis
    /// (`--store`).
    pub store: &'static str,
    pub pairs_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Warm-up pairs that used a credential for the first time (decrypting
    /// its secrets, or reporting its first lease: the durable init ->
    /// active write), and their latency (none if there were none).
    pub first_uses: u64,
    pub first_use_p50_us: Option<f64>,
    pub first_use_p99_us: Option<f64>,
    pub bytes_per_credential: f64,
    pub alerts: u64,
    /// Leases the policy granted and results it took, warm-up included
    /// (its own counters: proof that every pair did both halves).
    pub granted: u64,
    pub reported: u64,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Credentials loaded into one site.
    pub credentials: usize,
    /// Pairs timed, across all threads.
    pub pairs: u64,
    /// Pairs run first on one thread (none: until every credential has been
    /// used once, and at least a tenth of `pairs` up to 100,000).
    pub warmup: Option<u64>,
    /// Each pair one report-and-acquire call instead of two calls.
    pub combined: bool,
    /// Threads sharing the pool for the timed pairs.
    pub threads: usize,
    /// The embedded store (redb) in a temporary directory made inside this
    /// one, instead of memory: first uses then include an fsync.
    pub disk: Option<PathBuf>,
    /// A Redis store (global `--store`) instead of memory; it must hold
    /// nothing, and what the bench wrote is removed afterwards.
    pub store: Option<StoreUrl>,
    /// Another policy component instead of the built-in one.
    pub component: Option<PathBuf>,
}

impl Settings {
    /// `pairs` two-call pairs over `credentials`, one thread, the default
    /// warm-up.
    pub fn new(credentials: usize, pairs: u64) -> Settings {
        Settings {
            credentials,
            pairs,
            warmup: None,
            combined: false,
            threads: 1,
            disk: None,
            store: None,
            component: None,
        }
    }

    fn check(&self) -> Result<(), String> {
        if self.disk.is_some() && self.store.is_some() {
            return Err("--disk and --store are two stores: give one".into());
        }
        if self.credentials == 0 || self.pairs == 0 {
            return Err("--credentials and --pairs must be at least 1".into());
        }
        // Each thread holds a lease of an exclusive session at a time.
        if self.threads == 0 || self.threads > self.credentials {
            return Err(format!(
                "--threads must be between 1 and --credentials ({}), not {}",
                self.credentials, self.threads
            ));
        }
        Ok(())
    }
}

pub(super) fn run(settings: Settings) -> Result<(), Failed> {
    settings
        .check()
        .map_err(|reason| Failed(super::EXIT_USAGE, reason))?;
    let figures = measure_checked(&settings)?;
    println!(
        "{}",
        serde_json::to_string(&figures).expect("figures serialise")
    );
    Ok(())
}

/// One crawler loop over the shared pool: its own generator of outcomes
/// and, combined, the lease it holds between pairs.
struct Worker<'a> {
    pool: &'a Pool,
    request: &'a AcquireRequest,
    rng: u64,
    /// Combined: the lease the previous pair took, reported by the next,
    /// and whether it was its credential's first.
    held: Option<(LeaseId, bool)>,
}

impl<'a> Worker<'a> {
    /// A worker; combined, it takes its first lease now (untimed, counted
    /// as its credential's first use in `seen`).
    fn start(
        pool: &'a Pool,
        request: &'a AcquireRequest,
        seed: u64,
        combined: bool,
        seen: &mut HashSet<SmolStr>,
    ) -> Result<Self, Error> {
        let held = if combined {
            let lease = leased(pool.acquire(request)?)?;
            let first = seen.insert(lease.credential.id.clone());
            Some((lease.id, first))
        } else {
            None
        };
        Ok(Worker {
            pool,
            request,
            rng: seed | 1,
            held,
        })
    }

    fn next(&mut self) -> u64 {
        // xorshift64: cheap, and each worker its own sequence.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// One pair; with `seen`, whether it used a credential for the first
    /// time (its secrets decrypted, its init -> active write made durable).
    fn pair(&mut self, seen: Option<&mut HashSet<SmolStr>>) -> Result<bool, Error> {
        // About 10% failures that rest nothing (the pool keeps its size, so
        // the figures are comparable across N); health still moves.
        let outcome = match self.next() % 100 {
            0..=89 => Outcome::Success,
            90..=94 => fail(FailureClass::Network),
            _ => fail(FailureClass::Other),
        };
        let first =
            |lease: &Lease| seen.is_some_and(|seen| seen.insert(lease.credential.id.clone()));
        match self.held.take() {
            Some((lease, reported_first)) => {
                let (_, got) = self.pool.report_and_acquire(lease, outcome, self.request)?;
                let got = leased(got)?;
                let acquired_first = first(&got);
                self.held = Some((got.id, acquired_first));
                Ok(reported_first || acquired_first)
            }
            None => {
                let lease = leased(self.pool.acquire(self.request)?)?;
                let first = first(&lease);
                self.pool.report(lease.id, outcome)?;
                Ok(first)
            }
        }
    }

    /// `pairs` pairs, every LATENCY_SAMPLE-th timed alone (two clock reads
    /// per pair would be a few percent of the pair itself).
    fn timed(&mut self, pairs: u64) -> Result<Vec<u64>, Error> {
        let mut latencies = Vec::with_capacity((pairs / LATENCY_SAMPLE + 1) as usize);
        for i in 0..pairs {
            if i % LATENCY_SAMPLE == 0 {
                let t = Instant::now();
                self.pair(None)?;
                latencies.push(t.elapsed().as_nanos() as u64);
            } else {
                self.pair(None)?;
            }
        }
        Ok(latencies)
    }
}

/// A Redis store the bench has to itself: empty when claimed, emptied of
/// what the bench wrote when dropped.
struct RedisScratch {
    backend: RedisBackend,
    dir: tempfile::TempDir,
}

impl RedisScratch {
    fn claim(url: &StoreUrl) -> Result<RedisScratch, Error> {
        let backend = RedisBackend::open(url).map_err(|e| Error::Store(e.into()))?;
        let used = backend
            .scan("", None, 1)
            .map_err(|e| Error::Store(e.into()))?;
        if !used.is_empty() {
            return Err(Error::Input {
                field: "store".into(),
                reason: format!("{url} holds records: bench needs an empty Redis database"),
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("credpool-bench-")
            .tempdir()
            .map_err(|e| Error::Input {
                field: "store".into(),
                reason: format!("cannot make a temporary directory: {e}"),
            })?;
        Ok(RedisScratch { backend, dir })
    }
}

impl Drop for RedisScratch {
    fn drop(&mut self) {
        while let Ok(page) = self.backend.scan("", None, 1024) {
            let deletes: Vec<Write> = page.into_iter().map(|(k, _)| Write::Delete(k)).collect();
            if deletes.is_empty() || self.backend.apply(&deletes).is_err() {
                break;
            }
        }
    }
}

fn leased(got: Acquired) -> Result<Lease, Error> {
    got.lease
        .ok_or_else(|| Error::Policy(format!("bench pool refused a lease: {:?}", got.reason)))
}

/// Runs the benchmark and returns its figures.
pub fn measure(settings: &Settings) -> Result<Figures, Error> {
    settings.check().map_err(|reason| Error::Input {
        field: "bench".into(),
        reason,
    })?;
    measure_checked(settings)
}

/// [`measure`] with settings already checked.
fn measure_checked(settings: &Settings) -> Result<Figures, Error> {
    let Settings {
        credentials,
        pairs,
        warmup,
        combined,
        threads,
        ..
    } = *settings;
    let sink = Arc::new(CountingSink::default());
    let mut options = PoolOptions::in_memory();
    options.events = sink.clone();
    options.component = settings.component.clone();
    // Removed when the bench ends (after the pool, which is dropped first).
    let _disk = match &settings.disk {
        Some(parent) => {
            let dir = tempfile::Builder::new()
                .prefix("credpool-bench-")
                .tempdir_in(parent)
                .map_err(|e| Error::Input {
                    field: "disk".into(),
                    reason: format!("cannot make a directory in {}: {e}", parent.display()),
                })?;
            options.storage = Storage::Disk(dir.path().to_path_buf());
            Some(dir)
        }
        None => None,
    };
    // The compiled policy's cache, and the store emptied when done (after
    // the pool, which is dropped first).
    let _redis = match &settings.store {
        Some(url) => {
            let scratch = RedisScratch::claim(url)?;
            options.storage = Storage::Redis {
                url: url.clone(),
                data_dir: scratch.dir.path().to_path_buf(),
            };
            Some(scratch)
        }
        None => None,
    };
    let pool = Pool::open(options)?;
    let site = "bench.example";
    let before = pool.guest_memory_bytes();
    // Sessions: exclusive, the strictest bookkeeping; loaded as an import
    // (one flush to disk).
    let sessions = (0..credentials).map(|i| {
        let mut new =
            NewCredential::new(site, CredentialKind::Session).with_id(&format!("c{i:07}"));
        new.secrets
            .cookies
            .push(("sid".into(), format!("v{i:016x}")));
        new
    });
    pool.add_all(sessions).map_err(|e| e.error)?;
    pool.flush()?;
    let grown = pool.guest_memory_bytes().saturating_sub(before);
    let request = AcquireRequest::site(site);
    let mut seen = HashSet::with_capacity(credentials);
    let mut workers = (0..threads as u64)
        .map(|t| {
            let seed = 0x2545_f491_4f6c_dd1d ^ (t << 32);
            Worker::start(&pool, &request, seed, combined, &mut seen)
        })
        .collect::<Result<Vec<_>, Error>>()?;
    // Warm up on one thread: caches, allocator, branch predictors and, by
    // default, every credential's first use, timed apart (a one-time cost
    // per credential and process, not the pool's steady pace).
    let mut first_uses = Vec::new();
    let least = warmup.unwrap_or((pairs / 10).min(100_000));
    let most = warmup.unwrap_or(least.max(WARMUP_PER_CREDENTIAL * credentials as u64));
    let mut warmed = 0;
    while warmed < most && (warmed < least || seen.len() < credentials) {
        let t = Instant::now();
        if workers[0].pair(Some(&mut seen))? {
            first_uses.push(t.elapsed().as_nanos() as u64);
        }
        warmed += 1;
    }
    let share = |t: usize| pairs / threads as u64 + u64::from((t as u64) < pairs % threads as u64);
    let start = Instant::now();
    // One thread runs on this one, which loaded the pool: its allocations
    // stay in this thread's malloc arena, as in a crawler's single loop.
    let runs: Vec<Result<Vec<u64>, Error>> = if threads == 1 {
        vec![workers[0].timed(pairs)]
    } else {
        std::thread::scope(|scope| {
            let running: Vec<_> = workers
                .iter_mut()
                .enumerate()
                .map(|(t, worker)| scope.spawn(move || worker.timed(share(t))))
                .collect();
            running
                .into_iter()
                .map(|r| r.join().expect("bench worker panicked"))
                .collect()
        })
    };
    let elapsed = start.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    for run in runs {
        latencies.extend(run?);
    }
    let stats = pool.stats(Some(site))?;
    let (granted, reported) = stats.first().map_or((0, 0), |s| {
        let failed: u64 = s.failures.iter().map(|(_, n)| n).sum();
        (s.granted, s.successes + failed)
    });
    let quantile = |sorted: &[u64], q: f64| {
        let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        sorted.get(i).map(|&ns| round2(ns as f64 / 1000.0))
    };
    latencies.sort_unstable();
    first_uses.sort_unstable();
    Ok(Figures {
        credentials,
        pairs,
        warmup: warmed,
        calls_per_pair: if combined { 1 } else { 2 },
        threads,
        store: if settings.disk.is_some() {
            "disk"
        } else if settings.store.is_some() {
            "redis"
        } else {
            "memory"
        },
        pairs_per_sec: (pairs as f64 / elapsed).round(),
        p50_us: quantile(&latencies, 0.50).unwrap_or_default(),
        p99_us: quantile(&latencies, 0.99).unwrap_or_default(),
        first_uses: first_uses.len() as u64,
        first_use_p50_us: quantile(&first_uses, 0.50),
        first_use_p99_us: quantile(&first_uses, 0.99),
        bytes_per_credential: round2(grown as f64 / credentials as f64),
        alerts: sink.alerts.load(Ordering::Relaxed),
        granted,
        reported,
    })
}

fn fail(class: FailureClass) -> Outcome {
    Outcome::Failure(Failure {
        class,
        http_status: None,
        retry_after_secs: None,
    })
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
