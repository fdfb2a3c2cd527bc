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

/// Runs the benchmark after `warmup` pairs (default: until every
/// credential has been used once, and at least a tenth of `pairs` up to
/// 100,000), each pair two calls or with `combined` one, and returns its
/// figures.
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
            .ok_or_else(|| Error::Policy(format!("bench pool refused a lease: {:?}", got.reason)))
    };
    let mut seen = HashSet::with_capacity(credentials);
    // Combined: the lease the previous pair took, reported by the next, and
    // whether it was its credential's first.
    let mut held = if combined {
        let lease = leased(pool.acquire(&request)?)?;
        seen.insert(lease.credential.id.clone());
        Some((lease.id, true))
    } else {
        None
    };
    // One pair; with `seen`, whether it used a credential for the first
    // time (its secrets decrypted, its init -> active write made durable).
    let mut pair = |next: &mut dyn FnMut() -> u64,
                    seen: Option<&mut HashSet<SmolStr>>|
     -> Result<bool, Error> {
        // About 10% failures that rest nothing (the pool keeps its size, so
        // the figures are comparable across N); health still moves.
        let outcome = match next() % 100 {
            0..=89 => Outcome::Success,
            90..=94 => fail(FailureClass::Network),
            _ => fail(FailureClass::Other),
        };
        let first = |lease: &crate::pool::Lease| {
            seen.is_some_and(|seen| seen.insert(lease.credential.id.clone()))
        };
        Ok(match held.take() {
            Some((lease, reported_first)) => {
                let (_, got) = pool.report_and_acquire(lease, outcome, &request)?;
                let got = leased(got)?;
                let acquired_first = first(&got);
                held = Some((got.id, acquired_first));
                reported_first || acquired_first
            }
            None => {
                let lease = leased(pool.acquire(&request)?)?;
                let first = first(&lease);
                pool.report(lease.id, outcome)?;
                first
            }
        })
    };
    // Warm up: caches, allocator, branch predictors and, by default, every
    // credential's first use, timed apart (a one-time cost per credential
    // and process, not the pool's steady pace).
    let mut first_uses = Vec::new();
    let least = warmup.unwrap_or((pairs / 10).min(100_000));
    let most = warmup.unwrap_or(least.max(WARMUP_PER_CREDENTIAL * credentials as u64));
    let mut warmed = 0;
    while warmed < most && (warmed < least || seen.len() < credentials) {
        let t = Instant::now();
        if pair(&mut next, Some(&mut seen))? {
            first_uses.push(t.elapsed().as_nanos() as u64);
        }
        warmed += 1;
    }
    // Every LATENCY_SAMPLE-th pair is timed alone: two clock reads per
    // pair would be a few percent of the pair itself.
    let mut latencies = Vec::with_capacity((pairs / LATENCY_SAMPLE + 1) as usize);
    let start = Instant::now();
    for i in 0..pairs {
        if i % LATENCY_SAMPLE == 0 {
            let t = Instant::now();
            pair(&mut next, None)?;
            latencies.push(t.elapsed().as_nanos() as u64);
        } else {
            pair(&mut next, None)?;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
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
