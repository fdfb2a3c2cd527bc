//! `credpool list`: credentials at an access level, masked; never a secret.

use super::client::{Body, Remote};
use super::{Failed, output, parse_kind_opt, usage};
use crate::names;
use crate::pool::Pool;
use crate::{AccessLevel, ListFilter, Status};
use reqwest::Method;

fn parse_level(level: &str) -> Result<AccessLevel, Failed> {
    names::parse_access_level(level)
        .filter(|l| *l != AccessLevel::Secret)
        .ok_or_else(|| {
            usage("--level must be public, internal or sensitive (secrets only via show --reveal)")
        })
}

/// What `list` keeps: each given field must match.
pub struct Filter<'a> {
    pub site: Option<&'a str>,
    pub status: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub tag: Option<&'a str>,
}

fn parse_status(status: Option<&str>) -> Result<Option<Status>, Failed> {
    status
        .map(|s| {
            names::parse_status(s).ok_or_else(|| {
                usage(format!(
                    "unknown status {s:?}: expected one of {}",
                    super::values::STATUSES.join(", ")
                ))
            })
        })
        .transpose()
}

pub fn run(pool: &Pool, f: &Filter<'_>, level: &str, json: bool) -> Result<(), Failed> {
    let level = parse_level(level)?;
    let mut filter = ListFilter::all();
    filter.site = f.site.map(str::to_string);
    filter.status = parse_status(f.status)?;
    filter.kind = parse_kind_opt(f.kind)?;
    filter.tag = f.tag.map(str::to_string);
    let views = pool.list(&filter, level)?;
    output::print_views(&views, json);
    Ok(())
}

/// Through a server: without `--level`, the most the token's role may see.
pub fn remote(r: &Remote, f: &Filter<'_>, level: Option<&str>, json: bool) -> Result<(), Failed> {
    if let Some(l) = level {
        parse_level(l)?;
    }
    parse_status(f.status)?;
    parse_kind_opt(f.kind)?;
    let query: Vec<(&str, &str)> = [
        ("site", f.site),
        ("status", f.status),
        ("type", f.kind),
        ("tag", f.tag),
        ("level", level),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let views = r.call(
        Method::GET,
        &["v1", "credentials"],
        &query,
        Body::None,
        "list credentials",
    )?;
    output::print_view_values(views.as_array().map_or(&[], Vec::as_slice), json);
    Ok(())
}
