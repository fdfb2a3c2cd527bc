//! `credpool stats`: per-site state and the card's SLOs.

use super::{EXIT_ERROR, Failed, output};
use crate::pool::Pool;

pub fn run(pool: &Pool, site: Option<&str>, json: bool) -> Result<(), Failed> {
    let stats = pool.stats(site)?;
    if let (true, Some(site)) = (stats.is_empty(), site) {
        return Err(Failed(
            EXIT_ERROR,
            format!("no credentials for site {site}"),
        ));
    }
    output::print_stats(&stats, json);
    Ok(())
}
