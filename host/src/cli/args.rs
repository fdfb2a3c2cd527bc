//! The clap tree of the `credpool` command: the global options, every
//! command and its own options, with the help each shows. `mod.rs`
//! dispatches them.

use super::*;
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "credpool",
    version,
    about = "A credential pool for web crawlers",
    // Every command's help lists these apart from its own options.
    next_help_heading = "Global options"
)]
pub(super) struct Cli {
    /// Where the encrypted store and key file live (when not given: the
    /// config file's `[pool] storage_path`, else the default).
    #[arg(
        long,
        global = true,
        default_value = "./credentials",
        env = "CREDPOOL_DATA_DIR"
    )]
    pub(super) data_dir: PathBuf,
    /// Keep the records in Redis instead of DATA_DIR/credpool.redb:
    /// redis://[user:password@]host:6379/0, or rediss:// for TLS (the key
    /// file stays in DATA_DIR; Redis sees only ciphertext). A URL with a
    /// password: prefer the environment variable or `store` in the
    /// configuration (an argument is visible in the process list).
    #[arg(
        long,
        global = true,
        env = "CREDPOOL_STORE",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub(super) store: Option<crate::backend::StoreUrl>,
    /// Configuration file (optional).
    #[arg(
        long,
        global = true,
        default_value = "./credpool.toml",
        env = "CREDPOOL_CONFIG"
    )]
    pub(super) config: PathBuf,
    /// Key file (default: DATA_DIR/credpool.key, or $CREDENTIAL_ENCRYPTION_KEY when set).
    #[arg(long, global = true)]
    pub(super) key_file: Option<PathBuf>,
    /// Use this policy component instead of the built-in one.
    #[arg(long, global = true, env = "CREDPOOL_COMPONENT")]
    pub(super) component: Option<PathBuf>,
    /// Log level for diagnostics on stderr (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "warn", env = "CREDPOOL_LOG")]
    pub(super) log_level: String,
    /// A running `credpool serve` to go through (e.g. http://127.0.0.1:8700)
    /// instead of opening the store: acquire, report, release, list, show,
    /// add, import, stats, challenge, unban, remove, audit and backup.
    /// Several servers of one deployment, separated by commas: a call goes
    /// to the next when one is down or has no leader.
    #[arg(
        long,
        global = true,
        env = "CREDPOOL_ADDR",
        value_name = "URL[,URL...]"
    )]
    pub(super) addr: Option<String>,
    /// How long one call through --addr goes on trying the next server
    /// while servers are down or have no leader.
    #[arg(
        long,
        global = true,
        env = "CREDPOOL_FAILOVER_DEADLINE",
        default_value = "30",
        value_name = "SECONDS"
    )]
    pub(super) failover_deadline: u64,
    /// The API token for --addr (prefer the environment variable: an
    /// argument is visible in the process list).
    #[arg(
        long,
        global = true,
        env = "CREDPOOL_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub(super) token: Option<client::ApiToken>,
    #[command(subcommand)]
    pub(super) command: Command,
}

#[derive(Subcommand, Debug)]
pub(super) enum Command {
    /// Create the data directory and a new encryption key (mode 0600).
    Init,
    /// Add a credential. Secrets come from stdin or flags, never from a URL.
    Add(Box<AddArgs>),
    /// List credentials, masked: secret values are never shown.
    List {
        /// Only credentials of this site.
        #[arg(long)]
        site: Option<String>,
        /// Only credentials in this status.
        #[arg(long, value_parser = values::STATUSES)]
        status: Option<String>,
        /// Only credentials of this type.
        #[arg(long = "type", value_parser = values::kinds())]
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
        #[arg(long = "type", value_parser = values::kinds())]
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
        /// The most recently logged-in or refreshed match (ties: the most
        /// time left before expiry), not the strategy's pick.
        #[arg(long)]
        prefer_fresh: bool,
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
    /// Lift a ban, end a rest (cooling, suspended) early, or put back an
    /// expired or challenged credential you renewed or solved elsewhere: a
    /// person's decision; the credential is active again.
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
        /// Rotate only this tenant's data key (its records sealed again,
        /// the old data key destroyed); the key file is not touched.
        #[arg(long, value_name = "NAME")]
        tenant: Option<String>,
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
    /// Verify the store file (every page) and every sealed record in it
    /// with the keys held; name what is damaged. Exit 1 if anything is.
    Check {
        /// Check this file (a backup) instead of the store; it is not changed.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write a consistent copy of the store to FILE, still encrypted (the
    /// key file is not in it). Through a running `serve` with CREDPOOL_ADDR
    /// and an admin token.
    Backup {
        /// The backup file to write (must not exist).
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Put a backup in place of the store, once it checks clean with the
    /// keys held; the store it replaces is kept aside. Stop `serve` first.
    Restore {
        /// The backup file (from `credpool backup`).
        file: PathBuf,
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
        /// With --serve-sites: what the form sites' captchas ask, letters
        /// (text) or a drag into a gap (slider).
        #[arg(long, default_value = "text", value_parser = ["text", "slider"], requires = "serve_sites")]
        captcha_style: String,
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
    /// A tenant's data in the store: `remove` (crypto-shredding).
    Tenant {
        #[command(subcommand)]
        action: tenant::TenantAction,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum ChallengeAction {
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
pub(super) struct AddArgs {
    /// The site the credential is for (e.g. jd.com).
    #[arg(long)]
    pub(super) site: String,
    /// What it is.
    #[arg(long = "type", value_parser = values::kinds())]
    pub(super) kind: String,
    /// Its id (default: a new one is made).
    #[arg(long)]
    pub(super) id: Option<String>,
    /// The account's login name (views show it masked).
    #[arg(long)]
    pub(super) username: Option<String>,
    /// The account's phone number, for SMS codes (views show it masked).
    #[arg(long)]
    pub(super) phone: Option<String>,
    /// The account's e-mail address (views show it masked).
    #[arg(long)]
    pub(super) email: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub(super) password_stdin: bool,
    /// Read an access token from standard input.
    #[arg(long)]
    pub(super) token_stdin: bool,
    /// Read an API key from standard input.
    #[arg(long)]
    pub(super) api_key_stdin: bool,
    /// A cookie, NAME=VALUE (repeatable).
    #[arg(long = "cookie")]
    pub(super) cookies: Vec<String>,
    /// An auth header, NAME:VALUE (repeatable).
    #[arg(long = "header")]
    pub(super) headers: Vec<String>,
    /// When the session or token expires (RFC 3339).
    #[arg(long)]
    pub(super) expires_at: Option<String>,
    /// A tag to select it by (repeatable).
    #[arg(long = "tag")]
    pub(super) tags: Vec<String>,
    /// Leases allowed at once (1 = exclusive).
    #[arg(long)]
    pub(super) max_concurrent: Option<u32>,
    /// Uses allowed per minute.
    #[arg(long)]
    pub(super) rate_per_minute: Option<u32>,
    /// Read a refresh token from standard input.
    #[arg(long)]
    pub(super) refresh_token_stdin: bool,
    /// Read the OAuth client secret from standard input (sent on refresh
    /// when the site names no `client_secret_env`).
    #[arg(long)]
    pub(super) client_secret_stdin: bool,
    /// Read a TOTP seed (base32) from standard input; turns --two-factor on.
    #[arg(long)]
    pub(super) totp_seed_stdin: bool,
    /// Read several secrets from standard input, one NAME=VALUE a line:
    /// password, access_token, refresh_token, client_secret, api_key,
    /// secret_key, totp_seed, recovery_code, cookie.NAME, header.NAME,
    /// local_storage.NAME.
    #[arg(long)]
    pub(super) secrets_stdin: bool,
    /// A label KEY=VALUE, not secret (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub(super) labels: Vec<String>,
    /// A token's OAuth scope (repeatable, or several separated by spaces).
    #[arg(long = "scope")]
    pub(super) scopes: Vec<String>,
    /// The account this session or token was made from.
    #[arg(long)]
    pub(super) source_account: Option<String>,
    /// A token's type (default Bearer).
    #[arg(long)]
    pub(super) token_type: Option<String>,
    /// A device credential's device id.
    #[arg(long)]
    pub(super) device_id: Option<String>,
    /// The browser or device fingerprint id it is bound to.
    #[arg(long)]
    pub(super) fingerprint: Option<String>,
    /// The user agent to send with it.
    #[arg(long)]
    pub(super) user_agent: Option<String>,
    /// The account has two-factor login on.
    #[arg(long)]
    pub(super) two_factor: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(super) json: bool,
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
