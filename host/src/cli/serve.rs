//! `credpool serve`: the store's owner for a fleet, over HTTP.

use super::{Cli, EXIT_ERROR, Failed, pool_options, usage};
use crate::config::ConfigFile;
use crate::server::{ServeOptions, serve};
use clap::Args;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (loopback only in this build).
    #[arg(long, default_value = "127.0.0.1:8700", env = "CREDPOOL_LISTEN")]
    listen: String,
    /// Milliseconds between lifecycle ticks.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Requests a second allowed per token (0: no limit).
    #[arg(long, default_value_t = 0)]
    rate_limit: u32,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_body: usize,
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
    serve(ServeOptions {
        listen,
        data_dir: cli.data_dir.clone(),
        config,
        pool,
        interval: Duration::from_millis(args.interval_ms.max(10)),
        rate_limit: args.rate_limit,
        max_body: args.max_body.max(1024),
    })
    .map_err(|m| Failed(EXIT_ERROR, m))
}
