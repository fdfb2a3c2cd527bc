//! `credpool list`: credentials at an access level, masked; never a secret.

use super::{Failed, output, usage};
use crate::names;
use crate::pool::Pool;
use crate::{AccessLevel, ListFilter};

pub fn run(
    pool: &Pool,
    site: Option<&str>,
    status: Option<&str>,
    level: &str,
    json: bool,
) -> Result<(), Failed> {
    let level = names::parse_access_level(level)
        .filter(|l| *l != AccessLevel::Secret)
        .ok_or_else(|| {
            usage("--level must be public, internal or sensitive (secrets only via show --reveal)")
        })?;
    let mut filter = ListFilter::all();
    filter.site = site.map(str::to_string);
    filter.status = match status {
        Some(s) => {
            Some(names::parse_status(s).ok_or_else(|| usage(format!("unknown status {s:?}")))?)
        }
        None => None,
    };
    let views = pool.list(&filter, level)?;
    output::print_views(&views, json);
    Ok(())
}
