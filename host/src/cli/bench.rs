//! `credpool bench`: loads N credentials into one site of an in-memory pool
//! and runs acquire + report pairs through the policy component on one
//! thread, with about 10% failures, printing one JSON line. Meant for a
//! release build (`cargo run --release -- bench --credentials 100000`).
//! With `--combined` each pair is one `report-and-acquire` call (a
//! crawler's loop: report the page, take the next credential).

use super::Failed;
use crate::bindings::log::Level;
use crate::bindings::notify::{Alert, Ticket, TicketClosure};
use crate::error::Error;
use crate::events::EventSink;
use crate::pool::{NewCredential, Pool, PoolOptions};
use crate::{AcquireRequest, CredentialKind, Failure, FailureClass, Outcome};
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

/// One pair in this many is timed for the latency quantiles (all of them
/// count for the throughput).
const LATENCY_SAMPLE: u64 = 8;

/// The measured figures.
#[derive(Debug, serde::Serialize)]
pub struct Figures {
    pub credentials: usize,
    pub pairs: u64,
    /// Untimed pairs run first.
    pub warmup: u64,
    /// Calls into the policy per pair: 2 (acquire, report) or 1
    /// (report-and-acquire).
    pub calls_per_pair: u32,
    pub pairs_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub bytes_per_credential: f64,
    pub alerts: u64,
    /// Leases the policy granted and results it took, warm-up included
    /// (its own counters: proof that every pair did both halves).
    pub granted: u64,
    pub reported: u64,
}

pub(super) fn run(
    credentials: usize,
    pairs: u64,
    warmup: Option<u64>,
    combined: bool,
    component: Option<PathBuf>,
) -> Result<(), Failed> {
    if credentials == 0 || pairs == 0 {
        return Err(Failed(
            super::EXIT_USAGE,
            "--credentials and --pairs must be at least 1".into(),
        ));
    }
    let figures = measure_with(credentials, pairs, warmup, combined, component)?;
    println!(
        "{}",
        serde_json::to_string(&figures).expect("figures serialise")
    );
    Ok(())
}

/// Runs the benchmark with the default warm-up and returns its figures.
pub fn measure(
    credentials: usize,
    pairs: u64,
    component: Option<PathBuf>,
) -> Result<Figures, Error> {
    measure_with(credentials, pairs, None, false, component)
}

/// Runs the benchmark after `warmup` untimed pairs (default: a tenth of
/// `pairs`, at most 100,000), each pair two calls or with `combined` one,
/// and returns its figures.
pub fn measure_with(
    credentials: usize,
    pairs: u64,
    warmup: Option<u64>,
    combined: bool,
    component: Option<PathBuf>,
) -> Result<Figures, Error> {
    if credentials == 0 || pairs == 0 {
        return Err(Error::Input {
            field: "credentials".into(),
            reason: "--credentials and --pairs must be at least 1".into(),
        });
    }
    let sink = Arc::new(CountingSink::default());
    let mut options = PoolOptions::in_memory();
    options.events = sink.clone();
    options.component = component;
    let pool = Pool::open(options)?;
    let site = "bench.example";
    let before = pool.guest_memory_bytes();
    for i in 0..credentials {
        // Sessions: exclusive, the strictest bookkeeping.
        let mut new =
            NewCredential::new(site, CredentialKind::Session).with_id(&format!("c{i:07}"));
        new.secrets
            .cookies
            .push(("sid".into(), format!("v{i:016x}")));
        pool.add(new)?;
    }
    pool.flush()?;
    let grown = pool.guest_memory_bytes().saturating_sub(before);
    let request = AcquireRequest::site(site);
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let leased = |got: crate::pool::Acquired| {
        got.lease
            .map(|l| l.id)
            .ok_or_else(|| Error::Policy(format!("bench pool refused a lease: {:?}", got.reason)))
    };
    // Combined: the lease the previous pair took, reported by the next.
    let mut held = if combined {
        Some(leased(pool.acquire(&request)?)?)
    } else {
        None
    };
    let mut pair = |next: &mut dyn FnMut() -> u64| -> Result<(), Error> {
        // About 10% failures that rest nothing (the pool keeps its size, so
        // the figures are comparable across N); health still moves.
        let outcome = match next() % 100 {
            0..=89 => Outcome::Success,
            90..=94 => fail(FailureClass::Network),
            _ => fail(FailureClass::Other),
        };
        match held.take() {
            Some(lease) => {
                let (_, got) = pool.report_and_acquire(lease, outcome, &request)?;
                held = Some(leased(got)?);
            }
            None => {
                let lease = leased(pool.acquire(&request)?)?;
                pool.report(lease, outcome)?;
            }
        }
        Ok(())
    };
    // Warm up: caches, allocator, branch predictors, and (with a long
    // enough warm-up) each credential's first use.
    let warmup = warmup.unwrap_or((pairs / 10).min(100_000));
    for _ in 0..warmup {
        pair(&mut next)?;
    }
    // Every LATENCY_SAMPLE-th pair is timed alone: two clock reads per
    // pair would be a few percent of the pair itself.
    let mut latencies = Vec::with_capacity((pairs / LATENCY_SAMPLE + 1) as usize);
    let start = Instant::now();
    for i in 0..pairs {
        if i % LATENCY_SAMPLE == 0 {
            let t = Instant::now();
            pair(&mut next)?;
            latencies.push(t.elapsed().as_nanos() as u64);
        } else {
            pair(&mut next)?;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let stats = pool.stats(Some(site))?;
    let (granted, reported) = stats.first().map_or((0, 0), |s| {
        let failed: u64 = s.failures.iter().map(|(_, n)| n).sum();
        (s.granted, s.successes + failed)
    });
    latencies.sort_unstable();
    let quantile = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies[i] as f64 / 1000.0
    };
    Ok(Figures {
        credentials,
        pairs,
        warmup,
        calls_per_pair: if combined { 1 } else { 2 },
        pairs_per_sec: (pairs as f64 / elapsed).round(),
        p50_us: round2(quantile(0.50)),
        p99_us: round2(quantile(0.99)),
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
