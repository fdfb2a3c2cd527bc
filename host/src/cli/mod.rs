//! The `credpool` command. Exit codes: 0 ok, 1 error, 2 bad usage,
//! 3 no credential available (yet), 4 no credential at all for the site.
//!
//! `args.rs` holds the clap tree, this file the dispatch; each command's body is
//! in a file of its own beside it (`add.rs`, `acquire.rs`, ...), as
//! Vault's `command/`. Shared by all: [`output`] (tables and `--json`), the
//! key and store options, and the exit codes.
//! - `lifecycle.rs`: `run` (the lifecycle in the foreground), `tick` (one
//!   tick of it, for cron) and `challenge list|answer|reset`.
//! - `store.rs`: `rekey`, `import`, `export`, and the panic hook.
//! - `check.rs`, `backup.rs`: `check` (a damaged store named), `backup` and
//!   `restore`.
//! - [`bench`], `simulate.rs`: measurements and simulated crawls.
//! - `serve.rs`, `token.rs`: `serve` (the pool over HTTP) and its API tokens.
//! - `tenant.rs`: `tenant remove` and `rekey --tenant`: one tenant's data key.
//! - `client.rs`: with `CREDPOOL_ADDR` set, the pool commands go through a
//!   running `serve` instead of opening the store (as Vault's `VAULT_ADDR`).

mod acquire;
mod add;
mod args;
mod audit;
mod backup;
pub mod bench;
mod bench_http;
mod check;
mod client;
mod failure;
mod init;
mod lifecycle;
mod list;
pub mod output;
mod release;
mod remove;
mod report;
mod serve;
mod serve_sites;
mod show;
mod simulate;
mod stats;
mod stats_output;
mod store;
mod tenant;
mod token;
mod unban;
mod values;

pub use store::install_panic_hook;

use crate::CredentialKind;
use crate::config::ConfigFile;
use crate::crypto::{self, KeySource};
use crate::error::Error;
use crate::names;
use crate::pool::{KEY_FILE, Pool, PoolOptions, Storage};
use args::{AddArgs, ChallengeAction, Cli, Command};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

pub const EXIT_OK: i32 = 0;
pub const EXIT_ERROR: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_NO_CREDENTIAL: i32 = 3;
/// The pool has no credential at all for the site: waiting will not help.
pub const EXIT_UNKNOWN_SITE: i32 = 4;

/// How long `tick` waits for the refreshes and logins it started.
const TICK_REFRESH_WAIT: Duration = Duration::from_secs(10);

/// The view `list` and `show` print of a local store.
const DEFAULT_LEVEL: &str = "sensitive";

/// A failure with its exit code.
struct Failed(i32, String);

impl From<Error> for Failed {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        failure::note(e.code(), &message);
        Failed(EXIT_ERROR, message)
    }
}

fn usage(msg: impl Into<String>) -> Failed {
    Failed(EXIT_USAGE, msg.into())
}

/// A lease id as `acquire` printed it; anything else is a usage error.
fn parse_lease(id: &str) -> Result<crate::LeaseId, Failed> {
    id.parse().map_err(|e: Error| usage(e.to_string()))
}

/// Runs the command line; returns the exit code.
pub fn main() -> i32 {
    let json = failure::json_requested();
    let cli = match parse_cli() {
        Ok(c) => c,
        Err(e) if e.use_stderr() && json => {
            failure::report_usage(&e);
            return EXIT_USAGE;
        }
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    install_panic_hook();
    let cli = match storage_path_from_config(cli) {
        Ok(c) => c,
        Err(Failed(code, msg)) => {
            failure::report(code, &msg, json);
            return code;
        }
    };
    let capture = matches!(cli.command, Command::Demo { .. } | Command::Simulate { .. });
    // A simulated crawl refuses and rests by the thousand: its warnings go
    // to the run's log; the terminal gets errors unless asked for more.
    let level = if capture && cli.log_level == "warn" {
        "error"
    } else {
        cli.log_level.as_str()
    };
    init_tracing(level, capture);
    match run(cli) {
        Ok(()) => EXIT_OK,
        Err(Failed(code, msg)) => {
            failure::report(code, &msg, json);
            code
        }
    }
}

/// The command line, and whether `--data-dir` (or its variable) was given.
fn parse_cli() -> Result<(Cli, bool), clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().try_get_matches()?;
    let given = !matches!(
        matches.value_source("data_dir"),
        None | Some(clap::parser::ValueSource::DefaultValue)
    );
    Ok((Cli::from_arg_matches(&matches)?, given))
}

/// The card's `storage_path` from the configuration file, when neither
/// `--data-dir` nor `CREDPOOL_DATA_DIR` was given.
fn storage_path_from_config((mut cli, given): (Cli, bool)) -> Result<Cli, Failed> {
    if !given && let Some(path) = ConfigFile::load(&cli.config)?.storage_path() {
        cli.data_dir = path;
    }
    Ok(cli)
}

/// Diagnostics on stderr at `level`; with `capture`, also everything of
/// credpool at debug level into the simulated run's log file.
fn init_tracing(level: &str, capture: bool) {
    use tracing_subscriber::{EnvFilter, Layer as _, fmt, layer::SubscriberExt as _};
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("warn"));
    let stderr = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour(std::io::stderr().is_terminal()))
        .with_target(false)
        .with_filter(filter);
    let file = capture.then(|| {
        fmt::layer()
            .with_writer(crate::simulate::CaptureWriter)
            .with_ansi(false)
            .with_filter(EnvFilter::new("info,credpool=debug"))
    });
    let _ = tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(stderr).with(file),
    );
}

/// Colour codes only for a person at a terminal (not into `2> file` or a
/// pipe), and not when `NO_COLOR` is set to anything (no-color.org):
/// `with_ansi` overrides tracing's own `NO_COLOR` check, so it is made here.
fn colour(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn run(cli: Cli) -> Result<(), Failed> {
    // An empty CREDPOOL_ADDR is unset, as an empty VAULT_ADDR.
    if let Some(addr) = cli.addr.as_deref().filter(|a| !a.trim().is_empty())
        && goes_remote(&cli.command)
    {
        let remote = client::Remote::new(
            addr,
            cli.token.as_ref(),
            std::time::Duration::from_secs(cli.failover_deadline),
        )?;
        return run_remote(&cli, &remote);
    }
    match &cli.command {
        Command::Init => init::run(&cli),
        Command::Demo { seed } => {
            println!(
                "credpool demo: 20 s of crawling three simulated sites on loopback (form logins\n\
                 with TOTP and SMS steps, OAuth tokens; rate limits, blocks, bans, captchas, a\n\
                 change of defences half-way) through the sandboxed policy. The lifecycle logs\n\
                 in, keeps sessions alive and opens tickets; a simulated person answers SMS\n\
                 codes and captchas.\n"
            );
            simulate::run(
                simulate::Args {
                    accounts: 60,
                    workers: 8,
                    duration: Some("20s".into()),
                    requests: None,
                    seed: *seed,
                    strategy: None,
                    compare: false,
                    json: false,
                },
                ConfigFile::default(),
                cli.component.clone(),
            )
        }
        Command::Simulate {
            accounts,
            serve_sites: true,
            sites,
            config_out,
            session_ttl,
            defence_change_at,
            captcha_style,
            seed,
            ..
        } => serve_sites::run(
            &cli,
            &serve_sites::Args {
                accounts: accounts.unwrap_or(30),
                seed: *seed,
                sites: sites.clone(),
                config_out: config_out.clone(),
                session_ttl: session_ttl.clone(),
                defence_change_at: defence_change_at.clone(),
                slider_captchas: captcha_style == "slider",
            },
        ),
        Command::Simulate {
            accounts,
            workers,
            duration,
            requests,
            seed,
            strategy,
            compare,
            json,
            ..
        } => simulate::run(
            simulate::Args {
                accounts: accounts.unwrap_or(200),
                workers: *workers,
                duration: duration.clone(),
                requests: *requests,
                seed: *seed,
                strategy: strategy.clone(),
                compare: *compare,
                json: *json,
            },
            ConfigFile::load(&cli.config)?,
            cli.component.clone(),
        ),
        Command::Bench { http, combined, .. } if http.http.is_some() => {
            bench_http::run(http, cli.token.as_ref(), *combined)
        }
        Command::Bench {
            credentials,
            pairs,
            warmup,
            combined,
            threads,
            disk,
            http: _,
        } => bench::run(bench::Settings {
            credentials: credentials.unwrap_or_default(),
            pairs: *pairs,
            warmup: *warmup,
            combined: *combined,
            threads: *threads,
            disk: disk.clone(),
            store: cli.store.clone(),
            component: cli.component.clone(),
        }),
        Command::Challenge { action } => match action {
            ChallengeAction::List { json } => lifecycle::list(&cli.data_dir, *json),
            ChallengeAction::Answer { ticket, code } => {
                let config = ConfigFile::load(&cli.config)?;
                lifecycle::answer(
                    &cli.data_dir,
                    key_source(&cli),
                    &config.pool.tenant,
                    ticket,
                    code.as_deref(),
                )
            }
            ChallengeAction::Reset { id } => lifecycle::reset(&open_pool(&cli)?, id),
        },
        Command::Run { interval_ms, ticks } => {
            let config = ConfigFile::load(&cli.config)?;
            let options = pool_options(&cli, &config);
            lifecycle::run(
                &cli.data_dir,
                &config,
                options,
                Duration::from_millis((*interval_ms).max(10)),
                *ticks,
            )
        }
        Command::Tick { json } => {
            let config = ConfigFile::load(&cli.config)?;
            let options = pool_options(&cli, &config);
            lifecycle::tick_once(&cli.data_dir, &config, options, TICK_REFRESH_WAIT, *json)
        }
        Command::Serve(args) => serve::run(&cli, args),
        Command::Token { action } => token::run(&cli.data_dir, action),
        Command::Tenant { action } => tenant::run(&cli, action),
        Command::Rekey {
            tenant: Some(name),
            batch,
            json,
            ..
        } => tenant::rekey(&cli, name, *batch, *json),
        Command::Audit { credential, json } => {
            audit::run(&cli.data_dir, credential.as_deref(), *json)
        }
        Command::Check { file, json } => check::run(&cli, file.as_deref(), *json),
        Command::Backup { file, json } => backup::run(&cli, file, *json),
        Command::Restore { file, json } => backup::restore(&cli, file, *json),
        _ => {
            let pool = open_pool(&cli)?;
            run_on_pool(&cli, &pool)
        }
    }
}

/// The Redis store `--store` or the configuration names, if any.
fn store_url(cli: &Cli) -> Result<Option<crate::backend::StoreUrl>, Failed> {
    if let Some(url) = &cli.store {
        return Ok(Some(url.clone()));
    }
    Ok(ConfigFile::load(&cli.config)?.pool.store)
}

fn key_source(cli: &Cli) -> KeySource {
    match &cli.key_file {
        Some(path) => KeySource::File(path.clone()),
        None if crypto::env_key_given() => KeySource::Env,
        None => KeySource::File(cli.data_dir.join(KEY_FILE)),
    }
}

fn open_pool(cli: &Cli) -> Result<Pool, Failed> {
    let config = ConfigFile::load(&cli.config)?;
    Pool::open(pool_options(cli, &config))
        .map_err(|e| store_in_use(config.locate(e), goes_remote(&cli.command)))
}

/// Opening a store another process holds: says which, and (for a command
/// that can go through a server) how to reach the pool through it.
fn store_in_use(e: Error, can_go_remote: bool) -> Failed {
    let msg = e.to_string();
    if !msg.contains(crate::backend::IN_USE) {
        return Failed::from(e);
    }
    let said = if !can_go_remote {
        format!(
            "{msg} (a `credpool serve`, or `credpool run`?): this command needs the store \
             itself; stop that process first"
        )
    } else {
        format!(
            "{msg} (a `credpool serve`, or `credpool run`?): to go through a server, set \
             CREDPOOL_ADDR=http://ADDR (its --listen address, 127.0.0.1:8700 by default) and \
             CREDPOOL_TOKEN=<a token from `credpool token create`>; to use the store directly, \
             stop that process first"
        )
    };
    in_use_failure(said)
}

/// A refusal because another process holds the store, with the code
/// `store_in_use` under `--json` whichever command met it.
fn in_use_failure(said: String) -> Failed {
    failure::note("store_in_use", &said);
    Failed(EXIT_ERROR, said)
}

/// The commands that go through a server when `--addr` / `CREDPOOL_ADDR`
/// is set; the others (init, rekey, run, serve, token, ...) need the store
/// itself and ignore it.
fn goes_remote(command: &Command) -> bool {
    matches!(
        command,
        Command::Add(_)
            | Command::List { .. }
            | Command::Show { .. }
            | Command::Acquire { .. }
            | Command::Report { .. }
            | Command::Release { .. }
            | Command::Remove { .. }
            | Command::Unban { .. }
            | Command::Stats { .. }
            | Command::Import { .. }
            | Command::Challenge { .. }
            | Command::Audit { .. }
            | Command::Backup { .. }
    )
}

fn run_remote(cli: &Cli, r: &client::Remote) -> Result<(), Failed> {
    match &cli.command {
        Command::Add(args) => add::remote(r, args),
        Command::List {
            site,
            status,
            kind,
            tag,
            level,
            json,
        } => list::remote(
            r,
            &list::Filter {
                site: site.as_deref(),
                status: status.as_deref(),
                kind: kind.as_deref(),
                tag: tag.as_deref(),
            },
            level.level.as_deref(),
            *json,
        ),
        Command::Show {
            id,
            level,
            reveal,
            json,
        } => show::remote(r, id, level.level.as_deref(), *reveal, *json),
        Command::Acquire {
            site,
            kind,
            purpose,
            tags,
            ttl,
            prefer_fresh,
            json,
        } => acquire::remote(
            r,
            acquire::Args {
                site,
                kind: kind.as_deref(),
                purpose: purpose.as_deref(),
                tags,
                ttl_secs: *ttl,
                prefer_fresh: *prefer_fresh,
                json: *json,
            },
        ),
        Command::Report {
            lease_id,
            outcome,
            status,
            retry_after,
            json,
        } => report::remote(r, lease_id, outcome, *status, retry_after.as_deref(), *json),
        Command::Release { lease_id, json } => release::remote(r, lease_id, *json),
        Command::Remove { id } => remove::remote(r, id),
        Command::Unban { id } => unban::remote(r, id),
        Command::Stats { site, json } => stats::remote(r, site.as_deref(), *json),
        Command::Import {
            file,
            format,
            site,
            skip_invalid,
            replace,
            json,
        } => store::import_remote(
            r,
            file,
            format,
            site.as_deref(),
            *skip_invalid,
            *replace,
            *json,
        ),
        Command::Challenge { action } => match action {
            ChallengeAction::List { json } => lifecycle::list_remote(r, *json),
            ChallengeAction::Answer { ticket, code } => {
                lifecycle::answer_remote(r, ticket, code.as_deref())
            }
            ChallengeAction::Reset { id } => lifecycle::reset_remote(r, id),
        },
        Command::Audit { credential, json } => audit::remote(r, credential.as_deref(), *json),
        Command::Backup { file, json } => backup::remote(r, cli, file, *json),
        _ => unreachable!("goes_remote names only the commands above"),
    }
}

fn pool_options(cli: &Cli, config: &ConfigFile) -> PoolOptions {
    let mut options = PoolOptions::on_disk(&cli.data_dir);
    if let Some(url) = cli.store.as_ref().or(config.pool.store.as_ref()) {
        options.storage = Storage::Redis {
            url: url.clone(),
            data_dir: cli.data_dir.clone(),
        };
    }
    options.key = key_source(cli);
    options.tenant = config.pool.tenant.clone();
    options.policy_config = config.policy_config_json();
    options.component = cli.component.clone();
    options.limits.memory_bytes = (config.pool.memory_limit_mb as usize) << 20;
    options.limits.call_deadline = Duration::from_millis(config.pool.call_deadline_ms);
    options
}

fn run_on_pool(cli: &Cli, pool: &Pool) -> Result<(), Failed> {
    match &cli.command {
        Command::Add(args) => add::run(pool, args),
        Command::List {
            site,
            status,
            kind,
            tag,
            level,
            json,
        } => list::run(
            pool,
            &list::Filter {
                site: site.as_deref(),
                status: status.as_deref(),
                kind: kind.as_deref(),
                tag: tag.as_deref(),
            },
            level.level.as_deref().unwrap_or(DEFAULT_LEVEL),
            *json,
        ),
        Command::Show {
            id,
            level,
            reveal,
            json,
        } => show::run(
            pool,
            &trail(cli)?,
            id,
            level.level.as_deref().unwrap_or(DEFAULT_LEVEL),
            *reveal,
            *json,
        ),
        Command::Acquire {
            site,
            kind,
            purpose,
            tags,
            ttl,
            prefer_fresh,
            json,
        } => acquire::run(
            pool,
            acquire::Args {
                site,
                kind: kind.as_deref(),
                purpose: purpose.as_deref(),
                tags,
                ttl_secs: *ttl,
                prefer_fresh: *prefer_fresh,
                json: *json,
            },
        ),
        Command::Report {
            lease_id,
            outcome,
            status,
            retry_after,
            json,
        } => report::run(
            pool,
            lease_id,
            outcome,
            *status,
            retry_after.as_deref(),
            *json,
        ),
        Command::Release { lease_id, json } => release::run(pool, lease_id, *json),
        Command::Remove { id } => remove::run(pool, id),
        Command::Unban { id } => unban::run(pool, id),
        Command::Stats { site, json } => stats::run(pool, site.as_deref(), *json),
        Command::Rekey {
            batch,
            keep_old,
            json,
            ..
        } => store::rekey(pool, *batch, *keep_old, *json),
        Command::Import {
            file,
            format,
            site,
            skip_invalid,
            replace,
            json,
        } => store::import(
            pool,
            file,
            format,
            site.as_deref(),
            *skip_invalid,
            *replace,
            *json,
        ),
        Command::Export {
            id,
            format,
            reveal,
            output,
        } => store::export(pool, &trail(cli)?, id, format, *reveal, output.as_deref()),
        Command::Init
        | Command::Demo { .. }
        | Command::Simulate { .. }
        | Command::Bench { .. }
        | Command::Challenge { .. }
        | Command::Run { .. }
        | Command::Tick { .. }
        | Command::Serve(_)
        | Command::Audit { .. }
        | Command::Check { .. }
        | Command::Backup { .. }
        | Command::Restore { .. }
        | Command::Token { .. }
        | Command::Tenant { .. } => {
            unreachable!("handled before opening a pool")
        }
    }
}

/// The audit trail of the store's data directory and tenant.
fn trail(cli: &Cli) -> Result<audit::Trail, Failed> {
    let config = ConfigFile::load(&cli.config)?;
    Ok(audit::Trail::new(&cli.data_dir, &config.pool.tenant))
}

fn parse_kind_opt(kind: Option<&str>) -> Result<Option<CredentialKind>, Failed> {
    kind.map(|k| {
        names::parse_kind(k).ok_or_else(|| {
            usage(format!(
                "unknown --type {k:?}: expected account, session, token, api-key or device"
            ))
        })
    })
    .transpose()
}
