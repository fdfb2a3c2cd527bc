//! The lifecycle loop `credpool run` runs, inside the server: ticks every
//! tenant (which hands finished refreshes to its policy), resumes logins
//! answered through `credpool challenge answer`, and re-reads the token
//! file so a revoked token stops working within a tick.

use super::Shared;
use crate::bindings::pool::ChallengeResolution;
use crate::pool::Pool;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Token file checks between ticks.
const TOKEN_CHECK: Duration = Duration::from_millis(200);

pub fn start(state: Shared, stop: Arc<AtomicBool>, interval: Duration) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut next_tick = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            if let Err(e) = state.tokens.reload() {
                tracing::error!(target: "credpool::serve", "token file: {e}; keeping the tokens read before");
            }
            // Finished refreshes are handed over without waiting for the
            // interval: a lost answer's retry is due within a second.
            let results_wait = state
                .tenants
                .all()
                .iter()
                .any(|(_, t)| t.pool.refresher().is_some_and(|r| r.has_completed()));
            if Instant::now() >= next_tick || results_wait {
                for (name, t) in state.tenants.all() {
                    if let Err(e) = t.pool.tick() {
                        tracing::error!(target: "credpool::run", "tenant {name}: tick failed: {e}");
                    }
                    if name == state.tenants.default_tenant() {
                        resume_answered(&t.pool, &state.tenants.answer_dir);
                    }
                }
                next_tick = Instant::now() + interval;
            }
            std::thread::sleep(TOKEN_CHECK.min(interval));
        }
    })
}

/// Tells the policy about each answer waiting in the spool.
fn resume_answered(pool: &Pool, dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(ticket) = name.strip_suffix(".sealed") else {
            continue;
        };
        match pool.resolve_challenge(ticket, ChallengeResolution::Answered) {
            Ok(_) => {
                tracing::info!(target: "credpool::run", "ticket {ticket} answered; login resumes")
            }
            Err(e) => {
                tracing::warn!(target: "credpool::run", "ticket {ticket}: {e}; answer discarded");
                let _ = std::fs::remove_file(crate::lifecycle::answers::spool_path(dir, ticket));
            }
        }
    }
}
