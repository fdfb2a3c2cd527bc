//! `credpool stats`: per-site state and the card's SLOs.

use super::client::{Body, Remote};
use super::{EXIT_ERROR, Failed, output};
use crate::pool::Pool;
use reqwest::Method;

pub fn run(pool: &Pool, site: Option<&str>, json: bool) -> Result<(), Failed> {
    let stats = pool.stats(site)?;
    if let (true, Some(site)) = (stats.is_empty(), site) {
        return Err(no_site(site));
    }
    output::print_stats(&stats, json);
    Ok(())
}

fn no_site(site: &str) -> Failed {
    Failed(EXIT_ERROR, format!("no credentials for site {site}"))
}

pub fn remote(r: &Remote, site: Option<&str>, json: bool) -> Result<(), Failed> {
    let query: Vec<(&str, &str)> = site.map(|s| ("site", s)).into_iter().collect();
    let stats = r.call(
        Method::GET,
        &["v1", "stats"],
        &query,
        Body::None,
        "see stats",
    )?;
    let stats = stats.as_array().map_or(&[][..], Vec::as_slice);
    if let (true, Some(site)) = (stats.is_empty(), site) {
        return Err(no_site(site));
    }
    output::print_stats_values(stats, json);
    Ok(())
}
