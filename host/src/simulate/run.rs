//! One simulated crawl: simulated sites on loopback, a pool in a temporary
//! data directory with the policy component, the session lifecycle
//! running (refreshes, logins, TOTP answered by the host, SMS and captcha
//! tickets answered by a simulated person after a delay), and W crawler
//! workers that acquire, make a real HTTP request with the credential and
//! report what the site answered. Everything the workers saw is recorded
//! for [`super::report`]. The workers are [`super::worker`].

use super::report::{DetectionRule, Observations, PoolEvents, RefreshSeen, Report, RequestSeen};
use super::site::{BanCause, BlockCause, SimSite, SiteSpec};
use super::worker::Worker;
use crate::bindings::log::Level;
use crate::bindings::notify::ChallengeKind;
use crate::bindings::notify::{Alert, Ticket, TicketClosure};
use crate::config::ConfigFile;
use crate::events::{EventSink, TracingSink};
use crate::lifecycle::RefresherOptions;
use crate::pool::{Pool, PoolOptions};
use crate::{ListFilter, Status};
use anyhow::{Context, Result, anyhow};
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Which policy drives the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyChoice {
    /// The scenario's configuration, strategy included (or `--config`).
    Default,
    /// The default configuration with another allocation strategy.
    Strategy(String),
    /// What the simple pools in the field do: round-robin, no exclusive
    /// use, no pacing, no rest, and a session that meets a 401, 403 or 429
    /// retired (Crawlee's blocked status codes): a fresh login, and the
    /// account straight back in rotation (the cookie pools' generator).
    Naive,
    /// The scenario's configuration with a fixed rate per account (per
    /// minute) in place of the adaptive pace.
    Fixed(u32),
}

impl PolicyChoice {
    pub fn label(&self) -> String {
        match self {
            PolicyChoice::Default => "credpool default".into(),
            PolicyChoice::Strategy(s) => format!("credpool {s}"),
            PolicyChoice::Naive => "naive round-robin".into(),
            PolicyChoice::Fixed(n) => format!("credpool fixed {n}/min"),
        }
    }
}

/// When the workers stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    After(Duration),
    Requests(u64),
}

/// Options of one run.
#[derive(Clone)]
pub struct SimOptions {
    pub sites: Vec<SiteSpec>,
    pub workers: usize,
    pub stop: Stop,
    pub seed: u64,
    pub policy: PolicyChoice,
    /// The user's `--config`: its `[policy]` keys replace the scenario's.
    pub config: Option<ConfigFile>,
    /// How long the simulated person takes to answer an SMS or captcha
    /// ticket (uniform in the range).
    pub person_delay: (Duration, Duration),
    pub rule: DetectionRule,
    /// Another policy component instead of the built-in one.
    pub component: Option<PathBuf>,
}

/// What the progress line shows, about twice a second.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    pub elapsed: Duration,
    pub requests: u64,
    pub ok: u64,
    /// Credentials by status, over every site.
    pub by_status: BTreeMap<&'static str, u64>,
}

/// The scenario's policy: the card's rules with rests scaled to a site
/// whose day is compressed into seconds, and an adaptive pace per account.
/// The sites' limits are unknown to it, as a real site's are: the pace
/// starts cautious (one use a second) and finds them.
pub fn scenario_policy() -> toml::Table {
    let mut t = toml::Table::new();
    let mut set = |k: &str, v: toml::Value| {
        t.insert(k.into(), v);
    };
    set("adaptive", true.into());
    set("min_rate_per_minute", 6.into());
    set("max_rate_per_minute", 3000.into());
    // The run compresses a site's day into seconds: slow start doubles the
    // pace per second of uses where a real crawl would take four.
    set("pace_raise", 0.25.into());
    set("rate_burst", 2.into());
    set("lease_ttl_seconds", 30.into());
    set("cooldown_seconds", 5.into());
    set("cooldown_cap_seconds", 60.into());
    set("block_cooldown_seconds", 15.into());
    set("block_cooldown_cap_seconds", 120.into());
    set("ban_after_blocks", 3.into());
    set("block_burst_count", 4.into());
    set("block_burst_window_seconds", 10.into());
    set("success_min_reports", 16.into());
    set("realert_after_seconds", 15.into());
    t
}

/// The naive baseline's policy (see [`PolicyChoice::Naive`]).
fn naive_policy() -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("strategy".into(), "round-robin".into());
    t.insert("cooldown_seconds".into(), 0.into());
    t.insert("cooldown_cap_seconds".into(), 0.into());
    t.insert("block_cooldown_seconds".into(), 0.into());
    t.insert("block_cooldown_cap_seconds".into(), 0.into());
    t.insert("cooldown_jitter".into(), 0.0.into());
    t
}

/// The credpool.toml of a run: the sites' lifecycle tables, the policy.
fn config_for(options: &SimOptions, sites: &[SimSite]) -> Result<ConfigFile> {
    let mut text = String::new();
    for s in sites {
        text.push_str(&s.sites_toml());
        text.push('\n');
    }
    let mut config =
        ConfigFile::parse(&text).map_err(|e| anyhow!("the simulated sites' configuration: {e}"))?;
    let mut policy = match options.policy {
        PolicyChoice::Naive => naive_policy(),
        _ => scenario_policy(),
    };
    if options.policy != PolicyChoice::Naive
        && let Some(user) = options.config.as_ref().and_then(|c| c.policy.clone())
    {
        policy.extend(user);
    }
    if let PolicyChoice::Strategy(s) = &options.policy {
        policy.remove("allocation_strategy");
        policy.insert("strategy".into(), s.clone().into());
    }
    if let PolicyChoice::Fixed(n) = options.policy {
        policy.insert("adaptive".into(), false.into());
        policy.insert("rate_per_minute".into(), i64::from(n).into());
    }
    config.policy = Some(policy);
    Ok(config)
}

/// Alerts for the report, every event on to the log.
struct RecordingSink {
    alerts: Mutex<Vec<(String, Instant)>>,
    tickets: Mutex<BTreeMap<String, u64>>,
}

impl EventSink for RecordingSink {
    fn enabled(&self, level: Level) -> bool {
        TracingSink.enabled(level)
    }
    fn log(&self, level: Level, name: &str, fields: &[(String, String)]) {
        TracingSink.log(level, name, fields)
    }
    fn alert(&self, alert: &Alert) {
        self.alerts.lock().unwrap().push((
            crate::names::alert_kind(alert.kind).to_string(),
            Instant::now(),
        ));
        TracingSink.alert(alert)
    }
    fn ticket_opened(&self, ticket: &Ticket) {
        *self
            .tickets
            .lock()
            .unwrap()
            .entry(crate::names::challenge_kind(ticket.kind).to_string())
            .or_insert(0) += 1;
        TracingSink.ticket_opened(ticket)
    }
    fn ticket_closed(&self, id: &str, closure: TicketClosure) {
        TracingSink.ticket_closed(id, closure)
    }
}

/// The longest the crawl waits for the first logins.
const WARM_UP_LIMIT: Duration = Duration::from_secs(20);

/// Which site and account a credential id names.
struct Directory {
    by_id: HashMap<String, (usize, usize)>,
}

/// The first label of a site's name: `shop` of `shop.sim`.
fn short_name(site: &SiteSpec) -> &str {
    site.name.split('.').next().unwrap_or("acct")
}

/// The credential id of account `index` of site `site` (no personal data:
/// ids show in logs).
pub fn credential_id(site: &SiteSpec, index: usize) -> String {
    format!("{}-{index:04}", short_name(site))
}

/// Counters the workers bump and the progress line reads.
#[derive(Default)]
pub(super) struct Live {
    pub(super) requests: AtomicU64,
    pub(super) ok: AtomicU64,
    pub(super) rested_rate_limited: AtomicU64,
    pub(super) suspended: AtomicU64,
    cooldowns_ended: AtomicU64,
    answered_by_person: AtomicU64,
}

/// Runs one simulated crawl in `work_dir` (its data directory and log
/// live there) and reports. `log_file` is the file this process's log
/// goes to, scanned with the data directory for leaks. The sites and
/// workers run on a runtime of their own; the pool (whose refresher has
/// its own) is opened and dropped outside it.
pub fn run(
    options: &SimOptions,
    work_dir: &Path,
    log_file: Option<&Path>,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<Report> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    // The policy is compiled before the sites start: their clocks start
    // with them (the shop's defence change is half-way on that clock), and
    // a first compile in a process takes seconds in a debug build, which
    // moved the change to the start of the first run of a `--compare`.
    match &options.component {
        Some(path) => crate::runtime::Runtime::from_file(path),
        None => crate::runtime::Runtime::builtin(),
    }
    .context("cannot compile the policy")?;
    let sites_started = Instant::now();
    let sites = runtime.block_on(async {
        let mut sites = Vec::new();
        for spec in &options.sites {
            sites.push(
                SimSite::start(spec.clone())
                    .await
                    .context("cannot start a simulated site")?,
            );
        }
        anyhow::Ok(sites)
    })?;
    let sites = Arc::new(sites);
    let config = config_for(options, &sites)?;

    let data_dir = work_dir.join("data");
    std::fs::create_dir_all(&data_dir)?;
    crate::crypto::create_key_file(&data_dir.join(crate::pool::KEY_FILE))
        .map_err(|e| anyhow!("{e}"))?;
    let sink = Arc::new(RecordingSink {
        alerts: Mutex::new(Vec::new()),
        tickets: Mutex::new(BTreeMap::new()),
    });
    let mut pool_options = PoolOptions::on_disk(&data_dir);
    pool_options.policy_config = config.policy_config_json();
    pool_options.events = sink.clone();
    pool_options.component = options.component.clone();
    let pool = Arc::new(Pool::open(pool_options).map_err(|e| anyhow!("{e}"))?);
    let refresher = pool
        .attach_refresher(RefresherOptions::new(config.sites.clone()))
        .map_err(|e| anyhow!("{e}"))?;

    let (directory, mut secrets) = load_accounts(&pool, &sites, options)?;
    let directory = Arc::new(directory);
    let accounts: usize = sites.iter().map(|s| s.accounts().len()).sum();

    // The lifecycle: ticks and the simulated person, on their own thread.
    let stop = Arc::new(AtomicBool::new(false));
    let live = Arc::new(Live::default());
    let lifecycle = {
        let (pool, sites, directory, stop, live) = (
            pool.clone(),
            sites.clone(),
            directory.clone(),
            stop.clone(),
            live.clone(),
        );
        let person = Person::new(options.seed, options.person_delay);
        std::thread::spawn(move || run_lifecycle(&pool, &sites, &directory, person, &stop, &live))
    };
    let warm_up = warm_up(&pool, accounts)?;

    // The crawl.
    let started = Instant::now();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let deadline = match options.stop {
        Stop::After(d) => Some(started + d),
        Stop::Requests(_) => None,
    };
    let budget = match options.stop {
        Stop::Requests(n) => n,
        Stop::After(_) => u64::MAX,
    };
    let issued = Arc::new(AtomicU64::new(0));
    let crawl = async {
        let mut workers = Vec::new();
        for w in 0..options.workers {
            let worker = Worker {
                pool: pool.clone(),
                sites: sites.clone(),
                client: client.clone(),
                live: live.clone(),
                issued: issued.clone(),
                budget,
                deadline,
                started,
                naive: options.policy == PolicyChoice::Naive,
                rng: StdRng::seed_from_u64(options.seed.wrapping_add(w as u64 * 7919)),
            };
            workers.push(tokio::spawn(worker.crawl()));
        }
        let progress_every = Duration::from_millis(500);
        let mut next_progress = Instant::now() + progress_every;
        while !workers.iter().all(|w| w.is_finished()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if Instant::now() >= next_progress {
                next_progress += progress_every;
                progress(&Progress {
                    elapsed: started.elapsed(),
                    requests: live.requests.load(Ordering::Relaxed),
                    ok: live.ok.load(Ordering::Relaxed),
                    by_status: by_status(&pool),
                });
            }
        }
        let mut obs = Observations::default();
        for w in workers {
            let (acquires, requests) = w.await?;
            obs.acquires.extend(acquires);
            obs.requests.extend(requests);
        }
        anyhow::Ok(obs)
    };
    let mut obs = runtime.block_on(crawl)?;
    obs.pool = PoolEvents {
        rotation: first_handed_out(&obs.requests, short_name(&options.sites[0]), 8),
        rested_rate_limited: live.rested_rate_limited.load(Ordering::Relaxed),
        suspended: live.suspended.load(Ordering::Relaxed),
        cooldowns_ended: live.cooldowns_ended.load(Ordering::Relaxed),
        tickets_opened: sink.tickets.lock().unwrap().clone(),
        answered_by_person: live.answered_by_person.load(Ordering::Relaxed),
    };
    obs.duration_ms = started.elapsed().as_millis() as u64;
    stop.store(true, Ordering::SeqCst);
    let _ = lifecycle.join();
    refresher.shutdown(Duration::from_secs(5));
    let _ = pool.deliver_refresh_results();
    pool.flush().map_err(|e| anyhow!("{e}"))?;

    // What the run measured.
    obs.refresh = refresh_seen(&refresher.stats());
    let since = |t: Instant| t.saturating_duration_since(started).as_millis() as u64;
    obs.alerts = sink
        .alerts
        .lock()
        .unwrap()
        .iter()
        .map(|(k, t)| (k.clone(), since(*t)))
        .collect();
    obs.warm_up_ms = warm_up.as_millis() as u64;
    obs.accounts = accounts;
    obs.retired = pool
        .list(&ListFilter::all(), crate::AccessLevel::Internal)
        .map_err(|e| anyhow!("{e}"))?
        .iter()
        .filter(|c| c.status == Status::Banned)
        .count();
    for site in sites.iter() {
        let truth = site.truth();
        let bans = truth.accounts.iter().filter_map(|a| a.banned);
        obs.site_banned += bans.clone().count();
        obs.site_banned_for_abuse += bans.filter(|b| b.cause == BanCause::Abuse).count();
        if let Some(at) = truth.defence_change_at
            && at <= truth.elapsed
        {
            let at = since(sites_started + at);
            obs.defence_change_ms = Some(obs.defence_change_ms.map_or(at, |t: u64| t.min(at)));
        }
        let over_use = truth.accounts.iter().flat_map(|a| &a.blocks);
        obs.over_use_blocks_ms.extend(
            over_use
                .filter(|b| b.cause == BlockCause::OverUse)
                .map(|b| since(sites_started + b.start)),
        );
        secrets.extend(site.issued_secrets());
    }
    drop(pool);
    let mut paths = vec![data_dir.clone()];
    if let Some(log) = log_file {
        paths.push(log.to_path_buf());
    }
    let leaks = super::leaks::scan(&paths, &secrets)?;
    Ok(super::report::report(
        &options.policy.label(),
        options.workers,
        &obs,
        leaks,
        options.rule,
    ))
}

/// Adds every site's accounts to the pool; returns where each credential
/// id points and the secrets the leak scan looks for.
fn load_accounts(
    pool: &Pool,
    sites: &[SimSite],
    options: &SimOptions,
) -> Result<(Directory, Vec<Zeroizing<String>>)> {
    let mut directory = Directory {
        by_id: HashMap::new(),
    };
    let mut secrets = Vec::new();
    for (si, site) in sites.iter().enumerate() {
        for (ai, account) in site.accounts().iter().enumerate() {
            let id = credential_id(site.spec(), ai);
            let mut new = account.new_credential(&site.spec().name).with_id(&id);
            if options.policy == PolicyChoice::Naive {
                // The simple pools have no exclusive checkout.
                new.max_concurrent = Some(options.workers as u32);
            }
            secrets.extend(secret_values(&new.secrets));
            pool.add(new).map_err(|e| anyhow!("adding {id}: {e}"))?;
            directory.by_id.insert(id, (si, ai));
        }
    }
    Ok((directory, secrets))
}

/// Ticks (refreshes, logins, rests ending) and the simulated person,
/// every 100 ms until `stop`.
fn run_lifecycle(
    pool: &Pool,
    sites: &[SimSite],
    directory: &Directory,
    mut person: Person,
    stop: &AtomicBool,
    live: &Live,
) {
    while !stop.load(Ordering::SeqCst) {
        match pool.tick() {
            Ok(t) => {
                live.cooldowns_ended
                    .fetch_add(t.cooldowns_ended as u64, Ordering::Relaxed);
            }
            Err(e) => tracing::error!(target: "credpool::simulate", "tick failed: {e}"),
        }
        let answered = person.answer(pool, sites, directory);
        live.answered_by_person
            .fetch_add(answered, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Lets the accounts log in before the crawl starts, as an operator adds
/// accounts ahead of a crawl: until at most 5% wait for a login (tokens
/// start usable), or [`WARM_UP_LIMIT`]. Returns how long it took.
fn warm_up(pool: &Pool, accounts: usize) -> Result<Duration> {
    let started = Instant::now();
    let filter = ListFilter {
        kind: Some(crate::CredentialKind::Account),
        ..ListFilter::all()
    };
    while started.elapsed() < WARM_UP_LIMIT {
        let waiting = pool
            .list(&filter, crate::AccessLevel::Internal)
            .map_err(|e| anyhow!("{e}"))?
            .iter()
            .filter(|c| matches!(c.status, Status::Init | Status::Expired))
            .count();
        if waiting * 20 <= accounts {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(started.elapsed())
}

/// The first `n` credentials of site `short` the workers used, in order.
fn first_handed_out(requests: &[RequestSeen], short: &str, n: usize) -> Vec<String> {
    let prefix = format!("{short}-");
    let mut handed: Vec<&RequestSeen> = requests
        .iter()
        .filter(|r| r.credential.starts_with(&prefix))
        .collect();
    handed.sort_by_key(|r| r.at_ms);
    handed
        .iter()
        .take(n)
        .map(|r| r.credential.clone())
        .collect()
}

/// The refresher's counts over every site and method.
fn refresh_seen(stats: &[crate::lifecycle::RefreshCounters]) -> RefreshSeen {
    let mut seen = RefreshSeen::default();
    for c in stats {
        seen.attempts += c.attempts;
        seen.succeeded += c.succeeded;
        seen.failed += c.failed;
        seen.challenged += c.challenged;
        for (k, v) in &c.failures {
            *seen.failures.entry(k.clone()).or_insert(0) += v;
        }
        // The site refused the account itself: outside the SLO's scope.
        seen.failed_refused += ["blocked", "rejected"]
            .iter()
            .map(|k| c.failures.get(*k).copied().unwrap_or(0))
            .sum::<u64>();
    }
    seen
}

fn by_status(pool: &Pool) -> BTreeMap<&'static str, u64> {
    let mut out = BTreeMap::new();
    if let Ok(stats) = pool.stats(None) {
        for s in stats {
            let c = s.by_status;
            for (name, n) in [
                ("init", c.init),
                ("active", c.active),
                ("cooling", c.cooling),
                ("challenged", c.challenged),
                ("suspended", c.suspended),
                ("banned", c.banned),
                ("expired", c.expired),
            ] {
                *out.entry(name).or_insert(0) += n as u64;
            }
        }
    }
    out
}

/// Every secret value of a credential, for the leak scan.
fn secret_values(s: &crate::secrets::Secrets) -> Vec<Zeroizing<String>> {
    let mut out = Vec::new();
    let mut push = |v: &Option<String>| {
        if let Some(v) = v {
            out.push(Zeroizing::new(v.clone()));
        }
    };
    push(&s.password);
    push(&s.access_token);
    push(&s.refresh_token);
    push(&s.api_key);
    push(&s.secret_key);
    push(&s.totp_seed);
    for (_, v) in s.cookies.iter().chain(&s.headers) {
        out.push(Zeroizing::new(v.clone()));
    }
    out
}

/// The person who reads the SMS and solves the captchas, a little later.
struct Person {
    rng: StdRng,
    delay: (Duration, Duration),
    /// Ticket id -> when it will be answered.
    pending: HashMap<String, Instant>,
}

impl Person {
    fn new(seed: u64, delay: (Duration, Duration)) -> Self {
        Person {
            rng: StdRng::seed_from_u64(seed ^ 0x5050_5050),
            delay,
            pending: HashMap::new(),
        }
    }

    /// Answers the tickets whose time has come; returns how many.
    fn answer(&mut self, pool: &Pool, sites: &[SimSite], directory: &Directory) -> u64 {
        let mut answered = 0;
        let Ok(tickets) = pool.tickets() else {
            return 0;
        };
        let now = Instant::now();
        let open: Vec<String> = tickets.iter().map(|t| t.id.clone()).collect();
        self.pending.retain(|id, _| open.contains(id));
        for t in tickets {
            // Two-factor tickets are the host's (TOTP), not the person's.
            if t.kind == ChallengeKind::TwoFactor {
                continue;
            }
            let (lo, hi) = self.delay;
            let due = *self.pending.entry(t.id.clone()).or_insert_with(|| {
                let span = hi.saturating_sub(lo).as_millis() as u64;
                now + lo + Duration::from_millis(self.rng.random_range(0..=span))
            });
            if due > now {
                continue;
            }
            let Some(&(si, ai)) = directory.by_id.get(&t.credential_id) else {
                continue;
            };
            let site = &sites[si];
            let user = &site.accounts()[ai].username;
            let code = match t.kind {
                ChallengeKind::SmsCode => site.sms_code(user),
                ChallengeKind::CaptchaSlider => site
                    .slider_gap(user)
                    .map(|g| zeroize::Zeroizing::new(g.to_string())),
                _ => site.captcha_answer(user),
            };
            let Some(code) = code else {
                continue;
            };
            self.pending.remove(&t.id);
            match pool.answer_challenge(&t.id, code) {
                Ok(_) => answered += 1,
                Err(e) => tracing::warn!(
                    target: "credpool::simulate",
                    "answer to ticket {} refused: {e}",
                    t.id
                ),
            }
        }
        answered
    }
}
