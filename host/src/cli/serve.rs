//! `credpool serve`: the store's owner for a fleet, over HTTP.

use super::{Cli, EXIT_ERROR, Failed, pool_options, usage};
use crate::config::ConfigFile;
use crate::server::tls::TlsFiles;
use crate::server::{ServeOptions, serve};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// Requests a second per token by default: a fleet of 100 workers each
/// taking and reporting 20 leases a second is 4,000.
const DEFAULT_RATE_LIMIT: u32 = 5_000;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on. One that is not loopback needs --tls-cert and
    /// --tls-key, or --insecure-http.
    #[arg(long, default_value = "127.0.0.1:8700", env = "CREDPOOL_LISTEN")]
    listen: String,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, RSA or EC).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Allow plain HTTP on an address that is not loopback (tokens and
    /// secrets then cross the network unencrypted).
    #[arg(long, conflicts_with = "tls_cert")]
    insecure_http: bool,
    /// Milliseconds between lifecycle ticks.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Requests a second allowed per API token (0: no limit): far above a
    /// crawl fleet's pace on one token, it stops one runaway client from
    /// starving the others. Over it: 429 with Retry-After.
    #[arg(long, default_value_t = DEFAULT_RATE_LIMIT)]
    rate_limit: u32,
    /// Requests a token may make at once above --rate-limit's pace
    /// (default: two seconds' worth).
    #[arg(long)]
    rate_burst: Option<u32>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_body: usize,
    /// Several servers over one Redis (--store redis://...): this server's
    /// URL as the other servers reach it. Turns on one leader per tenant
    /// (a fenced lock in Redis), forwarding to the leader, and leases
    /// stored in Redis before they are handed out.
    #[arg(long, value_name = "URL")]
    advertise: Option<String>,
    /// How long a tenant's leadership lock lives unless renewed (renewed
    /// every third of it): a dead leader is replaced within about twice
    /// this.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = lock_ttl)]
    lock_ttl: Duration,
}

/// A lock TTL: `5s`, `1500ms`; at least 300 ms, so a renewal every third
/// of it has time to answer.
fn lock_ttl(s: &str) -> Result<Duration, String> {
    let d = crate::lifecycle::sites::parse_duration(s)?;
    if d < Duration::from_millis(300) {
        return Err(format!(
            "{s:?} is too short for a lock TTL (at least 300ms)"
        ));
    }
    Ok(d)
}

pub fn run(cli: &Cli, args: &ServeArgs) -> Result<(), Failed> {
    let listen = args.listen.parse().map_err(|_| {
        usage(format!(
            "--listen {:?} is not an address like 127.0.0.1:8700",
            args.listen
        ))
    })?;
    let config = ConfigFile::load(&cli.config)?;
    let pool = pool_options(cli, &config);
    if let Some(url) = &args.advertise
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(usage(format!(
            "--advertise {url:?} is not a URL like http://10.0.0.5:8700"
        )));
    }
    serve(ServeOptions {
        listen,
        data_dir: cli.data_dir.clone(),
        config,
        pool,
        interval: Duration::from_millis(args.interval_ms.max(10)),
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
        insecure_http: args.insecure_http,
        rate_limit: args.rate_limit,
        rate_burst: args
            .rate_burst
            .unwrap_or_else(|| args.rate_limit.saturating_mul(2)),
        max_body: args.max_body.max(1024),
        advertise: args.advertise.clone(),
        lock_ttl: args.lock_ttl,
    })
    .map_err(|m| Failed(EXIT_ERROR, m))
}
