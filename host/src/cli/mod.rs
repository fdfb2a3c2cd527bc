//! The `credpool` command. Exit codes: 0 ok, 1 error, 2 bad usage,
//! 3 no credential available (yet), 4 no credential at all for the site.
//!
//! This file holds the clap tree and the dispatch; each command's body is
//! in a file of its own beside it (`add.rs`, `acquire.rs`, ...), as
//! Vault's `command/`. Shared by all: [`output`] (tables and `--json`), the
//! key and store options, and the exit codes.
//! - `lifecycle.rs`: `run` (the lifecycle in the foreground), `tick` (one
//!   tick of it, for cron) and `challenge list|answer|reset`.
//! - `store.rs`: `rekey`, `import`, `export`, and the panic hook.
//! - [`bench`], `simulate.rs`: measurements and simulated crawls.
//! - `serve.rs`, `token.rs`: `serve` (the pool over HTTP) and its API tokens.
//! - `client.rs`: with `CREDPOOL_ADDR` set, the pool commands go through a
//!   running `serve` instead of opening the store (as Vault's `VAULT_ADDR`).

mod acquire;
mod add;
mod audit;
pub mod bench;
mod bench_http;
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
mod store;
mod token;
mod unban;
mod values;

pub use store::install_panic_hook;

use crate::CredentialKind;
use crate::config::ConfigFile;
use crate::crypto::{self, KeySource};
use crate::error::Error;
use crate::names;
use crate::pool::{KEY_FILE, Pool, PoolOptions};
use clap::{Args, Parser, Subcommand};
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

#[derive(Parser, Debug)]
#[command(
    name = "credpool",
    version,
    about = "A credential pool for web crawlers",
    // Every command's help lists these apart from its own options.
    next_help_heading = "Global options"
)]
struct Cli {
    /// Where the encrypted store and key file live.
    #[arg(
        long,
        global = true,
        default_value = "./credentials",
        env = "CREDPOOL_DATA_DIR"
    )]
    data_dir: PathBuf,
    /// Configuration file (optional).
    #[arg(
        long,
        global = true,
        default_value = "./credpool.toml",
        env = "CREDPOOL_CONFIG"
    )]
    config: PathBuf,
    /// Key file (default: DATA_DIR/credpool.key, or $CREDENTIAL_ENCRYPTION_KEY when set).
    #[arg(long, global = true)]
    key_file: Option<PathBuf>,
    /// Use this policy component instead of the built-in one.
    #[arg(long, global = true, env = "CREDPOOL_COMPONENT")]
    component: Option<PathBuf>,
    /// Log level for diagnostics on stderr (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "warn", env = "CREDPOOL_LOG")]
    log_level: String,
    /// A running `credpool serve` to go through (e.g. http://127.0.0.1:8700)
    /// instead of opening the store: acquire, report, release, list, show,
    /// add, import, stats, challenge, unban, remove and audit.
    #[arg(long, global = true, env = "CREDPOOL_ADDR", value_name = "URL")]
    addr: Option<String>,
    /// The API token for --addr (prefer the environment variable: an
    /// argument is visible in the process list).
    #[arg(
        long,
        global = true,
        env = "CREDPOOL_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<client::ApiToken>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create the data directory and a new encryption key (mode 0600).
    Init,
    /// Add a credential. Secrets come from stdin or flags, never from a URL.
    Add(AddArgs),
    /// List credentials, masked: secret values are never shown.
    List {
        /// Only credentials of this site.
        #[arg(long)]
        site: Option<String>,
        /// Only credentials in this status.
        #[arg(long, value_parser = values::STATUSES)]
        status: Option<String>,
        /// Only credentials of this type.
        #[arg(long = "type", value_parser = values::KINDS)]
        kind: Option<String>,
        /// Only credentials carrying this tag.
        #[arg(long)]
        tag: Option<String>,
        #[command(flatten)]
        level: values::LevelArg,
        /// Print a JSON array of views instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Show one credential; `--reveal` prints its secrets (audited).
    Show {
        /// The credential's id (as `list` shows it).
        id: String,
        #[command(flatten)]
        level: values::LevelArg,
        /// Print the secret values too (the whole record, whatever
        /// --level); recorded in the audit trail first.
        #[arg(long)]
        reveal: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Lease a credential for SITE and print it with its secrets.
    Acquire {
        /// The site to crawl (e.g. jd.com).
        site: String,
        /// Only a credential of this type.
        #[arg(long = "type", value_parser = values::KINDS)]
        kind: Option<String>,
        /// What the lease is for (e.g. search, checkout): the sticky
        /// strategy keeps one credential per purpose while it stays usable.
        #[arg(long)]
        purpose: Option<String>,
        /// Only a credential carrying this tag (repeatable: every one).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Lease length in seconds.
        #[arg(long)]
        ttl: Option<u64>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Report how a leased credential did; ends the lease.
    Report {
        /// The lease id `acquire` printed.
        lease_id: String,
        /// success, blocked, challenged, expired, rate-limited, network or failed.
        outcome: String,
        /// The HTTP status the site answered.
        #[arg(long)]
        status: Option<u16>,
        /// The site's Retry-After as it sent it: whole seconds (120) or an
        /// HTTP-date ("Sun, 06 Nov 1994 08:49:37 GMT").
        #[arg(long, value_name = "SECONDS|HTTP-DATE")]
        retry_after: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// End a lease without a result.
    Release {
        /// The lease id `acquire` printed.
        lease_id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove a credential and its secrets.
    Remove {
        /// The credential's id.
        id: String,
    },
    /// Lift a ban, or end a rest (cooling, suspended) early: a person's
    /// decision; the credential is active again.
    #[command(visible_alias = "resume")]
    Unban {
        /// The credential's id.
        id: String,
    },
    /// Per-site state.
    Stats {
        /// Only this site.
        #[arg(long)]
        site: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run time-driven work once, as one tick of `run` (for cron): lapse
    /// leases, end rests, start the configured sites' due refreshes and
    /// logins and wait for them (up to 10 s).
    Tick {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Challenge tickets: list them, or answer one (the answer is a secret:
    /// give CODE as `-` or leave it out to pipe it on stdin).
    Challenge {
        #[command(subcommand)]
        action: ChallengeAction,
    },
    /// Serve: ticks, refreshes, health checks and notifications in the
    /// foreground until Ctrl-C, then flush state.
    Run {
        /// Milliseconds between ticks.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// Stop after this many ticks (tests, cron).
        #[arg(long)]
        ticks: Option<u64>,
    },
    /// Rotate the encryption key: a new primary key, every record
    /// re-encrypted with it in batches, old keys retired once unused. Run it
    /// again to finish one that was interrupted.
    Rekey {
        /// Records per transaction.
        #[arg(long, default_value_t = 512)]
        batch: usize,
        /// Keep old keys in the key file (decrypt-only).
        #[arg(long)]
        keep_old: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Import credentials: our JSON, a Netscape cookies.txt, or a browser
    /// extension's cookie JSON (cookies become one session per site).
    Import {
        /// The file to read.
        file: PathBuf,
        /// json, cookies-txt or cookie-json.
        #[arg(long)]
        format: String,
        /// Put every cookie for this site (and its subdomains) in one session;
        /// for json, the site of records that name none.
        #[arg(long)]
        site: Option<String>,
        /// Import the good records and report the bad ones.
        #[arg(long)]
        skip_invalid: bool,
        /// A session already in the pool (same site, same cookie names) is
        /// replaced by the file's (a new id; the old one is removed);
        /// without it, such a session is skipped and said.
        #[arg(long)]
        replace: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Export one credential with its secrets (plain text; audited).
    Export {
        /// The credential's id.
        id: String,
        /// How to write it.
        #[arg(long, value_parser = ["cookies-txt", "json"])]
        format: String,
        /// Confirms that secret values are to be written.
        #[arg(long)]
        reveal: bool,
        /// Write to this file (mode 0600) instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// A 20-second `simulate`: three hostile sites on loopback, the
    /// lifecycle running, the SLOs measured. No setup.
    Demo {
        /// Seed of the simulated sites.
        #[arg(long, default_value_t = 24)]
        seed: u64,
    },
    /// Crawl simulated hostile sites on loopback with a pool in a
    /// temporary store and report the card's SLOs; or, with --serve-sites,
    /// serve the sites to crawlers outside (Scrapy, Crawlee) through a
    /// `credpool serve`.
    Simulate {
        /// Accounts, split over the three simulated sites (default 200);
        /// with --serve-sites, per site (default 30).
        #[arg(long)]
        accounts: Option<usize>,
        /// Serve the simulated sites on 127.0.0.1 until SIGINT/SIGTERM
        /// instead of crawling them: load their accounts into the store at
        /// --data-dir, write a credpool.toml for `credpool serve`, print the
        /// sites' addresses as a JSON line, and on exit the sites' own
        /// records as another.
        #[arg(long, conflicts_with_all = ["workers", "duration", "requests", "strategy", "compare", "json"])]
        serve_sites: bool,
        /// With --serve-sites: which sites (comma-separated: shop.sim,
        /// forum.sim, api.sim).
        #[arg(long, default_value = "shop.sim", requires = "serve_sites")]
        sites: String,
        /// With --serve-sites: where to write the server's configuration
        /// (default: DATA_DIR/simulated-sites.toml).
        #[arg(long, value_name = "FILE", requires = "serve_sites")]
        config_out: Option<PathBuf>,
        /// With --serve-sites: the life of a session cookie or access token
        /// at the sites.
        #[arg(long, default_value = "20s", requires = "serve_sites")]
        session_ttl: String,
        /// With --serve-sites: when the shop changes its defences (rate
        /// halved, blocks across the site), from its start; none if unset.
        #[arg(long, value_name = "DURATION", requires = "serve_sites")]
        defence_change_at: Option<String>,
        /// Concurrent crawler workers.
        #[arg(long, default_value_t = 16)]
        workers: usize,
        /// How long to crawl (e.g. 60s, 5m); default 60s.
        #[arg(long)]
        duration: Option<String>,
        /// Stop after this many requests instead.
        #[arg(long)]
        requests: Option<u64>,
        /// Seed of the simulated sites (same seed, same site behaviour).
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Allocation strategy instead of the configured one.
        #[arg(long)]
        strategy: Option<String>,
        /// Also run a naive pool and every strategy on the same sites.
        #[arg(long)]
        compare: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Measure acquire+report pairs through the policy (use a release
    /// build), or with --http through a running `credpool serve`.
    Bench {
        /// Credentials loaded into one site.
        #[arg(long, required_unless_present = "http")]
        credentials: Option<usize>,
        /// Acquire+report pairs to time.
        #[arg(long, default_value_t = 1_000_000)]
        pairs: u64,
        /// Pairs run before the timed ones (default: until every
        /// credential has been used once, at least a tenth of --pairs up
        /// to 100,000). First uses (decrypting a credential's secrets, its
        /// durable init -> active write) are timed apart: `first_use_*`.
        #[arg(long)]
        warmup: Option<u64>,
        /// Each pair as one report-and-acquire call (a crawler's loop).
        #[arg(long)]
        combined: bool,
        /// Threads sharing the pool for the timed pairs (a crawler's
        /// workers); --pairs is their total.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// The embedded store (redb) in a temporary directory made inside
        /// DIR (removed afterwards) instead of memory: first uses then
        /// include an fsync on that disk.
        #[arg(long, value_name = "DIR")]
        disk: Option<PathBuf>,
        #[command(flatten)]
        http: bench_http::HttpArgs,
    },
    /// Serve the pool over HTTP to a crawl fleet: owns the store, runs the
    /// lifecycle as `run` does, until SIGINT/SIGTERM.
    Serve(serve::ServeArgs),
    /// The audit trail: every reveal and export of secrets (`show
    /// --reveal`, `export`, and the server's reveal and export), with who
    /// and when; never a secret value. Kept in DATA_DIR/audit.log whatever
    /// the log level.
    Audit {
        /// Only the records of this credential id.
        #[arg(long, value_name = "ID")]
        credential: Option<String>,
        /// Print JSON: {"records": [...], "damaged": [...]}.
        #[arg(long)]
        json: bool,
    },
    /// API tokens for `serve`: create (printed once), list, revoke.
    Token {
        #[command(subcommand)]
        action: token::TokenAction,
    },
}

#[derive(Subcommand, Debug)]
enum ChallengeAction {
    /// Open tickets.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Answer a ticket; the running pool resumes the login with it.
    Answer {
        /// The ticket's id, as `challenge list` shows it.
        ticket: String,
        /// The code; `-` or nothing reads it from standard input (an
        /// argument is visible in the process list).
        code: Option<String>,
    },
    /// Send a credential left `challenged` (its ticket timed out) back to a
    /// fresh login: a person's decision, like `unban`.
    Reset {
        /// The credential's id.
        id: String,
    },
}

/// `Debug` is written by hand below: cookie and header values are secrets.
#[derive(Args)]
struct AddArgs {
    /// The site the credential is for (e.g. jd.com).
    #[arg(long)]
    site: String,
    /// What it is.
    #[arg(long = "type", value_parser = values::KINDS)]
    kind: String,
    /// Its id (default: a new one is made).
    #[arg(long)]
    id: Option<String>,
    /// The account's login name (views show it masked).
    #[arg(long)]
    username: Option<String>,
    /// The account's phone number, for SMS codes (views show it masked).
    #[arg(long)]
    phone: Option<String>,
    /// The account's e-mail address (views show it masked).
    #[arg(long)]
    email: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    password_stdin: bool,
    /// Read an access token from standard input.
    #[arg(long)]
    token_stdin: bool,
    /// Read an API key from standard input.
    #[arg(long)]
    api_key_stdin: bool,
    /// A cookie, NAME=VALUE (repeatable).
    #[arg(long = "cookie")]
    cookies: Vec<String>,
    /// An auth header, NAME:VALUE (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// When the session or token expires (RFC 3339).
    #[arg(long)]
    expires_at: Option<String>,
    /// A tag to select it by (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Leases allowed at once (1 = exclusive).
    #[arg(long)]
    max_concurrent: Option<u32>,
    /// Uses allowed per minute.
    #[arg(long)]
    rate_per_minute: Option<u32>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

impl std::fmt::Debug for AddArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |v: &[String], sep: char| -> Vec<String> {
            v.iter()
                .map(|x| x.split(sep).next().unwrap_or("").trim().to_string())
                .collect()
        };
        f.debug_struct("AddArgs")
            .field("site", &self.site)
            .field("kind", &self.kind)
            .field("id", &self.id)
            .field("cookies", &names(&self.cookies, '='))
            .field("headers", &names(&self.headers, ':'))
            .field("values", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

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
    let cli = match Cli::try_parse() {
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
        let remote = client::Remote::new(addr, cli.token.as_ref())?;
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
        Command::Audit { credential, json } => {
            audit::run(&cli.data_dir, credential.as_deref(), *json)
        }
        _ => {
            let pool = open_pool(&cli)?;
            run_on_pool(&cli, &pool)
        }
    }
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
            json,
        } => acquire::remote(
            r,
            acquire::Args {
                site,
                kind: kind.as_deref(),
                purpose: purpose.as_deref(),
                tags,
                ttl_secs: *ttl,
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
        _ => unreachable!("goes_remote names only the commands above"),
    }
}

fn pool_options(cli: &Cli, config: &ConfigFile) -> PoolOptions {
    let mut options = PoolOptions::on_disk(&cli.data_dir);
    options.key = key_source(cli);
    options.tenant = config.pool.tenant.clone();
    options.policy_config = config.policy_config_json();
    options.component = cli.component.clone();
    options.memory_limit = (config.pool.memory_limit_mb as usize) << 20;
    options.call_deadline = Duration::from_millis(config.pool.call_deadline_ms);
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
            json,
        } => acquire::run(
            pool,
            acquire::Args {
                site,
                kind: kind.as_deref(),
                purpose: purpose.as_deref(),
                tags,
                ttl_secs: *ttl,
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
        | Command::Token { .. } => {
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
