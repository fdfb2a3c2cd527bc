//! Three threads run acquire + report pairs on the embedded (redb) store
//! while a fourth adds credentials, each add a durable write, for three
//! seconds; prints the readers' pace and the writer's. It shows what a
//! flush to disk costs the calls that write nothing.
//!
//! `cargo run --release --example writes_beside_reads`

use credpool::{
    AcquireRequest, CredentialKind, NewCredential, Outcome, Pool, PoolOptions, Storage,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const READERS: u64 = 3;
const RUN: Duration = Duration::from_secs(3);

fn main() -> credpool::Result<()> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut options = PoolOptions::in_memory();
    options.storage = Storage::Disk(dir.path().to_path_buf());
    let pool = Pool::open(options)?;
    for i in 0..200 {
        let mut new = NewCredential::new("read.example", CredentialKind::Session)
            .with_id(&format!("r{i:04}"));
        new.secrets
            .cookies
            .push(("sid".into(), format!("v{i:016x}")));
        pool.add(new)?;
    }
    let request = AcquireRequest::site("read.example");
    let pair = || -> credpool::Result<()> {
        let lease = pool.acquire(&request)?.lease.expect("a free session");
        pool.report(lease.id, Outcome::Success)?;
        Ok(())
    };
    // Every session's first use (its durable init -> active write) first.
    for _ in 0..20_000 {
        pair()?;
    }
    let stop = AtomicBool::new(false);
    let (pairs, adds, slowest) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|s| {
        for _ in 0..READERS {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    pair().expect("a pair");
                    slowest.fetch_max(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                    pairs.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        s.spawn(|| {
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let mut new = NewCredential::new("write.example", CredentialKind::Token)
                    .with_id(&format!("w{i:07}"));
                new.secrets.access_token = Some(format!("token-{i:016x}"));
                pool.add(new).expect("an add");
                adds.fetch_add(1, Ordering::Relaxed);
            }
        });
        std::thread::sleep(RUN);
        stop.store(true, Ordering::Relaxed);
    });
    let secs = RUN.as_secs_f64();
    println!(
        "{{\"readers\": {READERS}, \"pairs_per_sec\": {:.0}, \"slowest_pair_us\": {}, \"adds_per_sec\": {:.0}}}",
        pairs.load(Ordering::Relaxed) as f64 / secs,
        slowest.load(Ordering::Relaxed),
        adds.load(Ordering::Relaxed) as f64 / secs,
    );
    Ok(())
}
