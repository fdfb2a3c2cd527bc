//! `credpool simulate --serve-sites`: the simulated hostile sites as
//! servers for crawlers outside this process (Scrapy, Crawlee, ...).
//!
//! It starts the sites on 127.0.0.1 free ports, loads their accounts into
//! the store at `--data-dir` (the store `credpool serve` then owns: one
//! owner per store, so this closes it before saying it is ready), writes
//! the `credpool.toml` that makes a server's lifecycle log in to these
//! sites and pace their accounts, and prints one JSON line with the sites'
//! addresses. It serves until SIGINT or SIGTERM, then prints one JSON line
//! of the sites' own records (pages served, bans and their causes, one
//! session used by two requests at once), so a crawl's SLOs can be checked
//! from the site's side.

use super::{Cli, EXIT_ERROR, Failed, key_source, usage};
use crate::config::ConfigFile;
use crate::pool::{Pool, PoolOptions};
use crate::simulate::run::{credential_id, scenario_policy};
use crate::simulate::scenario;
use crate::simulate::site::{BanCause, CaptchaStyle, SimSite, SiteSpec, SiteTruth};
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// The scenario's sites that `--sites` may name.
const SITE_NAMES: [&str; 3] = ["shop.sim", "forum.sim", "api.sim"];

pub struct Args {
    /// Accounts per site.
    pub accounts: usize,
    pub seed: u64,
    /// Comma-separated site names.
    pub sites: String,
    /// Where to write the server's configuration (default: beside the
    /// data directory's store).
    pub config_out: Option<PathBuf>,
    /// A session cookie's or access token's life at the sites.
    pub session_ttl: String,
    /// When the shop changes its defences, from its start (none if unset).
    pub defence_change_at: Option<String>,
    /// Form sites ask slider captchas instead of letters.
    pub slider_captchas: bool,
}

pub fn run(cli: &Cli, args: &Args) -> Result<(), Failed> {
    if cli.addr.as_deref().is_some_and(|a| !a.trim().is_empty()) {
        return Err(usage(
            "--serve-sites loads the accounts into the store at --data-dir and writes the \
             configuration a `credpool serve` started afterwards uses; it does not go through \
             a running server (unset CREDPOOL_ADDR / --addr)",
        ));
    }
    let specs = specs(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failed(EXIT_ERROR, format!("cannot start the runtime: {e}")))?;
    let sites = runtime.block_on(async {
        let mut sites = Vec::new();
        for spec in &specs {
            sites.push(SimSite::start(spec.clone()).await?);
        }
        std::io::Result::Ok(sites)
    });
    let sites =
        sites.map_err(|e| Failed(EXIT_ERROR, format!("cannot start a simulated site: {e}")))?;

    let user = ConfigFile::load(&cli.config)?;
    let config_out = args
        .config_out
        .clone()
        .unwrap_or_else(|| cli.data_dir.join("simulated-sites.toml"));
    let text = config_text(&user, &sites)?;
    let config = ConfigFile::parse(&text).map_err(|e| {
        Failed(
            EXIT_ERROR,
            format!("the simulated sites' configuration: {e}"),
        )
    })?;
    load_accounts(cli, &config, &sites)?;
    std::fs::write(&config_out, &text).map_err(|e| {
        Failed(
            EXIT_ERROR,
            format!("cannot write {}: {e}", config_out.display()),
        )
    })?;

    let ready = json!({
        "sites": sites.iter().map(|s| json!({
            "name": s.spec().name,
            "url": s.base_url(),
            "accounts": s.accounts().len(),
            "credential_ids": [credential_id(s.spec(), 0), credential_id(s.spec(), s.accounts().len() - 1)],
        })).collect::<Vec<_>>(),
        "config": config_out,
        "data_dir": cli.data_dir,
        "tenant": config.pool.tenant,
        "seed": args.seed,
    });
    say(&ready)?;
    eprintln!(
        "credpool: serving {} simulated site(s); their accounts are in {}. Now run \
         `credpool --data-dir {} --config {} serve`; SIGINT or SIGTERM stops the sites and \
         prints their records",
        sites.len(),
        cli.data_dir.display(),
        cli.data_dir.display(),
        config_out.display()
    );

    runtime.block_on(stopped());
    let records: Vec<Value> = sites
        .iter()
        .map(|s| records(s.spec(), &s.truth()))
        .collect();
    say(&json!({ "records": records }))?;
    for (site, r) in sites.iter().zip(&records) {
        eprintln!(
            "credpool: {}: {} pages served, {} accounts banned ({} for abuse), {} requests \
             with a session already in use",
            site.spec().name,
            r["pages_ok"],
            r["banned"],
            r["banned_for_abuse"],
            r["concurrent_use"]
        );
    }
    drop(sites);
    Ok(())
}

/// The sites asked for, as the scenario has them, with this mode's
/// differences: `accounts` each, no SMS step (no simulated person here to
/// read the codes), the given session life, and a defence change only if
/// asked for.
fn specs(args: &Args) -> Result<Vec<SiteSpec>, Failed> {
    if args.accounts == 0 {
        return Err(usage("--accounts must be at least 1"));
    }
    let ttl = crate::lifecycle::sites::parse_duration(&args.session_ttl)
        .map_err(|e| usage(format!("--session-ttl {:?}: {e}", args.session_ttl)))?;
    if ttl < Duration::from_secs(3) {
        return Err(usage("--session-ttl must be at least 3s"));
    }
    let change = args
        .defence_change_at
        .as_deref()
        .map(|d| {
            crate::lifecycle::sites::parse_duration(d)
                .map_err(|e| usage(format!("--defence-change-at {d:?}: {e}")))
        })
        .transpose()?;
    let wanted: Vec<&str> = args.sites.split(',').map(str::trim).collect();
    if let Some(bad) = wanted.iter().find(|w| !SITE_NAMES.contains(w)) {
        return Err(usage(format!(
            "unknown site {bad:?} in --sites: expected some of {}",
            SITE_NAMES.join(", ")
        )));
    }
    let specs: Vec<SiteSpec> = scenario::sites(3, args.seed, Duration::ZERO)
        .into_iter()
        .filter(|s| wanted.contains(&s.name.as_str()))
        .map(|mut s| {
            s.accounts = args.accounts;
            s.sms_share = 0.0;
            s.session_ttl = ttl;
            s.defence_change_at = change.filter(|_| s.defence_change_at.is_some());
            if args.slider_captchas {
                s.captcha_style = CaptchaStyle::Slider;
            }
            s
        })
        .collect();
    Ok(specs)
}

/// A whole `credpool.toml` for the server: the user's `[pool]`, the
/// scenario's `[policy]` (the user's keys replacing its own), and each
/// site's lifecycle tables.
fn config_text(user: &ConfigFile, sites: &[SimSite]) -> Result<String, Failed> {
    let mut pool = toml::Table::new();
    pool.insert("tenant".into(), user.pool.tenant.clone().into());
    pool.insert(
        "call_deadline_ms".into(),
        (user.pool.call_deadline_ms as i64).into(),
    );
    pool.insert(
        "memory_limit_mb".into(),
        (user.pool.memory_limit_mb as i64).into(),
    );
    let mut policy = scenario_policy();
    if let Some(p) = &user.policy {
        policy.extend(p.clone());
    }
    let mut head = toml::Table::new();
    head.insert("pool".into(), pool.into());
    head.insert("policy".into(), policy.into());
    let mut text = String::from(
        "# Written by `credpool simulate --serve-sites`: serve the simulated sites' accounts\n\
         # with `credpool serve --config <this file>` while the sites run.\n",
    );
    text.push_str(
        &toml::to_string(&head).map_err(|e| Failed(EXIT_ERROR, format!("configuration: {e}")))?,
    );
    for s in sites {
        text.push('\n');
        text.push_str(&s.sites_toml());
    }
    Ok(text)
}

/// Puts each site's accounts in the store (replacing those of an earlier
/// run: same ids, new sessions), then closes it.
fn load_accounts(cli: &Cli, config: &ConfigFile, sites: &[SimSite]) -> Result<(), Failed> {
    let mut options = PoolOptions::on_disk(&cli.data_dir);
    options.key = key_source(cli);
    options.tenant = config.pool.tenant.clone();
    options.policy_config = config.policy_config_json();
    options.component = cli.component.clone();
    options.limits.memory_bytes = (config.pool.memory_limit_mb as usize) << 20;
    options.limits.call_deadline = Duration::from_millis(config.pool.call_deadline_ms);
    let pool = Pool::open(options).map_err(|e| {
        let msg = e.to_string();
        if msg.contains(crate::backend::IN_USE) {
            Failed(
                EXIT_ERROR,
                format!(
                    "{msg}: start `credpool simulate --serve-sites` before `credpool serve`, \
                     which then serves the accounts it loaded"
                ),
            )
        } else {
            Failed(EXIT_ERROR, msg)
        }
    })?;
    let mut news = Vec::new();
    for site in sites {
        for (i, account) in site.accounts().iter().enumerate() {
            let id = credential_id(site.spec(), i);
            // An earlier run's account: gone or not, this run's replaces it.
            let _ = pool.remove(&id);
            news.push(account.new_credential(&site.spec().name).with_id(&id));
        }
    }
    pool.add_all(news)
        .map_err(|e| Failed(EXIT_ERROR, format!("loading the accounts: {}", e.error)))?;
    pool.flush()
        .map_err(|e| Failed(EXIT_ERROR, format!("flushing the store: {e}")))?;
    Ok(())
}

/// One JSON line on stdout, flushed (scripts read it as it comes).
fn say(value: &Value) -> Result<(), Failed> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{value}")
        .and_then(|_| out.flush())
        .map_err(|e| Failed(EXIT_ERROR, format!("cannot write to stdout: {e}")))
}

/// The site's own account of what happened to it.
fn records(spec: &SiteSpec, truth: &SiteTruth) -> Value {
    let sum = |f: &dyn Fn(&crate::simulate::site::AccountTruth) -> u64| -> u64 {
        truth.accounts.iter().map(f).sum()
    };
    let bans: Vec<_> = truth.accounts.iter().filter_map(|a| a.banned).collect();
    json!({
        "name": spec.name,
        "elapsed_ms": truth.elapsed.as_millis() as u64,
        "accounts": truth.accounts.len(),
        "pages_ok": sum(&|a| a.served.ok),
        "answers": {
            "ok": sum(&|a| a.served.ok),
            "unauthorized": sum(&|a| a.served.unauthorized),
            "banned": sum(&|a| a.served.banned),
            "denied": sum(&|a| a.served.denied),
            "rate_limited": sum(&|a| a.served.rate_limited),
            "over_budget": sum(&|a| a.served.over_budget),
            "challenged": sum(&|a| a.served.challenged),
        },
        "unknown_sessions": truth.unknown_sessions,
        "banned": bans.len(),
        "banned_accounts": truth
            .accounts
            .iter()
            .filter(|a| a.banned.is_some())
            .map(|a| a.username.as_str())
            .collect::<Vec<_>>(),
        "banned_for_abuse": bans.iter().filter(|b| b.cause == BanCause::Abuse).count(),
        "banned_at_random": bans.iter().filter(|b| b.cause == BanCause::Random).count(),
        "blocks": sum(&|a| a.blocks.len() as u64),
        "blocked_accounts": truth.accounts.iter().filter(|a| !a.blocks.is_empty()).count(),
        "concurrent_use": sum(&|a| a.concurrent),
        "accounts_used_concurrently": truth.accounts.iter().filter(|a| a.concurrent > 0).count(),
        "logins": sum(&|a| a.logins),
        "login_attempts": sum(&|a| a.login_attempts),
        "keepalives": sum(&|a| a.keepalives),
        "captchas": sum(&|a| a.captchas),
    })
}

/// Until SIGINT or SIGTERM.
async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
