//! `credpool tick`: time-driven work once (lapse leases, end rests), for
//! cron when nothing runs `credpool run`.

use super::{Failed, output};
use crate::pool::Pool;

pub fn run(pool: &Pool, json: bool) -> Result<(), Failed> {
    let summary = pool.tick()?;
    output::print_tick(&summary, json);
    Ok(())
}
