//! `credpool challenge list|answer|reset`, `credpool run` and `credpool tick`.
//!
//! `challenge` does not open the store (the serving process holds it): it
//! reads the ticket book (`DATA_DIR/tickets.json`, metadata only) and
//! leaves an answer sealed with the tenant's key in `DATA_DIR/answers/`,
//! where `credpool run` picks it up and resumes the login.

use super::client::{Body, Remote};
use super::{EXIT_ERROR, Failed, usage};
use crate::backend::MemoryBackend;
use crate::config::ConfigFile;
use crate::crypto::{self, KeySource};
use crate::lifecycle::notifiers::{Notifiers, read_ticket_book};
use crate::lifecycle::{Refresher, RefresherOptions, answers};
use crate::pool::{Pool, PoolOptions};
use crate::vault::Vault;
use reqwest::Method;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

pub const TICKET_BOOK: &str = "tickets.json";
pub const ANSWER_DIR: &str = "answers";

pub fn list(data_dir: &Path, json: bool) -> Result<(), Failed> {
    let mut tickets = read_ticket_book(&data_dir.join(TICKET_BOOK));
    // The book keeps milliseconds; the command prints times as the API does.
    for t in &mut tickets {
        for key in ["created_at", "deadline"] {
            if let Some(ms) = t[key].as_i64() {
                t[key] = super::output::time(ms);
            }
        }
    }
    print_tickets(&tickets, json);
    Ok(())
}

/// Through a server: its open tickets (an operator's view).
pub fn list_remote(r: &Remote, json: bool) -> Result<(), Failed> {
    let tickets = r.call(
        Method::GET,
        &["v1", "tickets"],
        &[],
        Body::None,
        "list challenge tickets",
    )?;
    print_tickets(tickets.as_array().map_or(&[], Vec::as_slice), json);
    Ok(())
}

fn print_tickets(tickets: &[serde_json::Value], json: bool) {
    if json {
        println!("{}", serde_json::Value::Array(tickets.to_vec()));
        return;
    }
    if tickets.is_empty() {
        println!("no open challenge tickets");
        return;
    }
    println!(
        "{:<28} {:<18} {:<16} {:<20} {:<14} DEADLINE",
        "TICKET", "KIND", "SITE", "CREDENTIAL", "CONTACT"
    );
    for t in tickets {
        let s = |k: &str| t[k].as_str().unwrap_or("-").to_string();
        println!(
            "{:<28} {:<18} {:<16} {:<20} {:<14} {}",
            s("id"),
            s("kind"),
            s("site"),
            s("credential_id"),
            s("masked_contact"),
            s("deadline")
        );
    }
}

pub fn answer(
    data_dir: &Path,
    key: KeySource,
    tenant: &str,
    ticket: &str,
    code: Option<&str>,
) -> Result<(), Failed> {
    if !answers::valid_ticket_id(ticket) {
        return Err(usage("a ticket id is letters, digits, '-' and '_'"));
    }
    let open = read_ticket_book(&data_dir.join(TICKET_BOOK));
    if !open.iter().any(|t| t["id"] == ticket) {
        return Err(Failed(
            EXIT_ERROR,
            format!("no open challenge ticket {ticket}"),
        ));
    }
    let code = read_code(ticket, code)?;
    let keys = crypto::load_keys(&key).map_err(|e| Failed(EXIT_ERROR, e.to_string()))?;
    let vault = Vault::new(Arc::new(MemoryBackend::new()), Arc::new(keys), tenant);
    answers::seal_to_spool(&vault, &data_dir.join(ANSWER_DIR), ticket, &code)
        .map_err(|e| Failed(EXIT_ERROR, e))?;
    println!("{}", answer_held(ticket));
    Ok(())
}

fn answer_held(ticket: &str) -> String {
    format!("answer for ticket {ticket} held; the running pool resumes the login")
}

/// Through a server, which resumes the login with the answer.
pub fn answer_remote(r: &Remote, ticket: &str, code: Option<&str>) -> Result<(), Failed> {
    if !answers::valid_ticket_id(ticket) {
        return Err(usage("a ticket id is letters, digits, '-' and '_'"));
    }
    let code = read_code(ticket, code)?;
    let body = serde_json::json!({"code": code.as_str()});
    r.call(
        Method::POST,
        &["v1", "tickets", ticket, "answer"],
        &[],
        Body::Json(&body),
        "answer challenge tickets",
    )?;
    println!("{}", answer_held(ticket));
    Ok(())
}

/// The answer from the argument, or from standard input for `-` or none.
fn read_code(ticket: &str, code: Option<&str>) -> Result<Zeroizing<String>, Failed> {
    let code = match code {
        Some(c) if c != "-" => {
            eprintln!(
                "note: an answer given as an argument is visible to other users of this \
                 machine (process list, shell history); `credpool challenge answer {ticket} -` \
                 reads it from standard input"
            );
            Zeroizing::new(c.to_string())
        }
        _ => {
            let mut buf = Zeroizing::new(String::new());
            std::io::stdin()
                .read_to_string(&mut buf)
                .map_err(|e| Failed(EXIT_ERROR, format!("cannot read standard input: {e}")))?;
            Zeroizing::new(buf.trim().to_string())
        }
    };
    if code.is_empty() {
        return Err(usage("the answer is empty"));
    }
    Ok(code)
}

/// Sets the flag on Ctrl-C or SIGTERM.
fn watch_signals(stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            #[cfg(unix)]
            {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("install SIGTERM handler");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            #[cfg(not(unix))]
            let _ = tokio::signal::ctrl_c().await;
        });
        stop.store(true, Ordering::SeqCst);
    });
}

/// A pool with its lifecycle attached, as `run` and `tick` drive it: the
/// configured sites' refreshes and logins, notifications, the answer spool.
struct Running {
    pool: Pool,
    refresher: Arc<Refresher>,
    notifiers: Arc<Notifiers>,
    answer_dir: PathBuf,
}

impl Running {
    fn open(
        data_dir: &Path,
        config: &ConfigFile,
        mut options: PoolOptions,
    ) -> Result<Self, Failed> {
        let notifiers = Notifiers::new(&config.notify, Some(data_dir.join(TICKET_BOOK)));
        options.events = notifiers.clone();
        let pool = Pool::open(options).map_err(|e| super::store_in_use(config.locate(e), false))?;
        let answer_dir: PathBuf = data_dir.join(ANSWER_DIR);
        let mut ro = RefresherOptions::new(config.sites.clone());
        ro.answer_dir = Some(answer_dir.clone());
        let refresher = pool.attach_refresher(ro)?;
        notifiers.attach(refresher.clone());
        tracing::info!(target: "credpool::run", "{} sites configured", config.sites.len());
        Ok(Running {
            pool,
            refresher,
            notifiers,
            answer_dir,
        })
    }

    /// One tick (which hands finished refreshes to the policy and starts
    /// due ones), then the answers left by `challenge answer`.
    fn tick(&self) -> Result<crate::TickSummary, Failed> {
        let summary = self.pool.tick();
        resume_answered(&self.pool, &self.answer_dir);
        Ok(summary?)
    }

    /// Waits for running refreshes (at most `wait`), hands their results
    /// to the policy, flushes; returns the records written.
    fn close(self, wait: Duration) -> Result<u32, Failed> {
        tracing::info!(target: "credpool::run", "stopping: waiting for running refreshes");
        self.refresher.shutdown(wait);
        if let Err(e) = self.pool.deliver_refresh_results() {
            tracing::error!(target: "credpool::run", "could not hand the last results to the policy: {e}");
        }
        let written = self.pool.flush()?;
        self.notifiers.close(Duration::from_secs(10));
        Ok(written)
    }
}

/// Serves until Ctrl-C: ticks (which hand finished refreshes to the
/// policy), answers left by `challenge answer`, notifications; then flushes.
pub fn run(
    data_dir: &Path,
    config: &ConfigFile,
    options: PoolOptions,
    interval: Duration,
    max_ticks: Option<u64>,
) -> Result<(), Failed> {
    // Signals first: a Ctrl-C while the pool opens still ends cleanly.
    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(stop.clone());
    let running = Running::open(data_dir, config, options)?;
    let mut ticks = 0u64;
    while !stop.load(Ordering::SeqCst) && max_ticks.is_none_or(|m| ticks < m) {
        let started = Instant::now();
        if let Err(Failed(_, e)) = running.tick() {
            tracing::error!(target: "credpool::run", "tick failed: {e}");
        }
        ticks += 1;
        let left = interval.saturating_sub(started.elapsed());
        let end = Instant::now() + left;
        // Finished refreshes are handed over at once (a lost answer's
        // retry is due within a second), the rest waits for the interval.
        while !stop.load(Ordering::SeqCst)
            && Instant::now() < end
            && !running.refresher.has_completed()
        {
            std::thread::sleep(Duration::from_millis(50).min(left));
        }
    }
    let written = running.close(Duration::from_secs(10))?;
    eprintln!("credpool: stopped after {ticks} ticks; {written} records flushed");
    Ok(())
}

/// `credpool tick`: one tick of `run` for cron: lapses leases, ends rests,
/// starts the configured sites' due refreshes and logins and waits (up to
/// `wait`) for them to finish, so their results are in the store.
pub fn tick_once(
    data_dir: &Path,
    config: &ConfigFile,
    options: PoolOptions,
    wait: Duration,
    json: bool,
) -> Result<(), Failed> {
    let running = Running::open(data_dir, config, options)?;
    let mut summary = running.tick()?;
    follow_lost_answers(&running, &mut summary, wait);
    running.close(wait)?;
    super::output::print_tick(&summary, json);
    Ok(())
}

/// How long `credpool tick` stays for the prompt retries of refreshes
/// whose answer was lost (about 1 s, 2 s and 4 s apart): a rotation the
/// token endpoint committed is saved only inside its grace window, often
/// 30 s or less, long before cron's next run.
const LOST_ANSWER_FOLLOW_UP: Duration = Duration::from_secs(15);

/// Ticks on (every 100 ms) while a token refresh's lost answer waits for
/// its retry, for at most [`LOST_ANSWER_FOLLOW_UP`]; adds what those ticks
/// did to `summary`.
fn follow_lost_answers(running: &Running, summary: &mut crate::TickSummary, wait: Duration) {
    let end = Instant::now() + LOST_ANSWER_FOLLOW_UP;
    loop {
        // The refreshes started so far finish first: their results decide.
        let drained = Instant::now() + wait;
        while running.refresher.in_flight() > 0 && Instant::now() < drained {
            std::thread::sleep(Duration::from_millis(10));
        }
        if running.refresher.unsettled_lost_answers() == 0 || Instant::now() >= end {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
        match running.tick() {
            Ok(t) => {
                summary.leases_expired += t.leases_expired;
                summary.cooldowns_ended += t.cooldowns_ended;
                summary.refreshes_started += t.refreshes_started;
                summary.tickets_timed_out += t.tickets_timed_out;
                summary.next_due_at = t.next_due_at;
            }
            Err(Failed(_, e)) => {
                tracing::error!(target: "credpool::run", "tick failed: {e}");
                return;
            }
        }
    }
}

/// Tells the policy about each answer waiting in the spool; the policy
/// starts the resumed login, which takes the sealed answer.
fn resume_answered(pool: &Pool, dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(ticket) = name.strip_suffix(".sealed") else {
            continue;
        };
        match pool.resolve_challenge(ticket, crate::bindings::pool::ChallengeResolution::Answered) {
            Ok(_) => {
                tracing::info!(target: "credpool::run", "ticket {ticket} answered; login resumes")
            }
            Err(e) => {
                tracing::warn!(target: "credpool::run", "ticket {ticket}: {e}; answer discarded");
                let _ = std::fs::remove_file(answers::spool_path(dir, ticket));
            }
        }
    }
}

/// `challenge reset`: a credential left `challenged` goes back to a fresh
/// login (a person's decision, like `unban`).
pub fn reset(pool: &Pool, id: &str) -> Result<(), Failed> {
    let meta = pool.reset_challenge(id)?;
    print_reset(&super::output::meta_json(&meta));
    Ok(())
}

pub fn reset_remote(r: &Remote, id: &str) -> Result<(), Failed> {
    let meta = r.call(
        Method::POST,
        &["v1", "credentials", id, "reset-challenge"],
        &[],
        Body::None,
        "reset challenged credentials",
    )?;
    print_reset(&meta);
    Ok(())
}

fn print_reset(meta: &serde_json::Value) {
    println!(
        "{} is {}: due for a fresh login",
        meta["id"].as_str().unwrap_or("-"),
        meta["status"].as_str().unwrap_or("-")
    );
}
