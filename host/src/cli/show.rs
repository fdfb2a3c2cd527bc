//! `credpool show`: one credential, masked; `--reveal` prints its secrets
//! (recorded in the audit trail first).

use super::audit::Trail;
use super::client::{Body, Remote};
use super::{Failed, output, usage};
use crate::AccessLevel;
use crate::names;
use crate::pool::Pool;
use reqwest::Method;

fn parse_level(level: &str) -> Result<AccessLevel, Failed> {
    names::parse_access_level(level)
        .filter(|l| *l != AccessLevel::Secret)
        .ok_or_else(|| {
            usage("--level must be public, internal or sensitive; use --reveal for secrets")
        })
}

pub fn run(
    pool: &Pool,
    trail: &Trail,
    id: &str,
    level: &str,
    reveal: bool,
    json: bool,
) -> Result<(), Failed> {
    if reveal {
        let (view, secrets) = pool.reveal(id)?;
        trail.record("reveal", &view, None)?;
        output::print_revealed(&view, &secrets, json);
    } else {
        let level = parse_level(level)?;
        output::print_view_value(&output::view_json(&pool.view(id, level)?), json);
    }
    Ok(())
}

/// Through a server: a reveal needs an admin token (audited there).
pub fn remote(
    r: &Remote,
    id: &str,
    level: Option<&str>,
    reveal: bool,
    json: bool,
) -> Result<(), Failed> {
    if reveal {
        let got = r.call(
            Method::GET,
            &["v1", "credentials", id, "reveal"],
            &[],
            Body::None,
            "reveal secrets",
        )?;
        output::print_revealed_value(&got, json);
        return Ok(());
    }
    let query: Vec<(&str, &str)> = match level {
        Some(l) => {
            parse_level(l)?;
            vec![("level", l)]
        }
        None => Vec::new(),
    };
    let view = r.call(
        Method::GET,
        &["v1", "credentials", id],
        &query,
        Body::None,
        "view credentials",
    )?;
    output::print_view_value(&view, json);
    Ok(())
}
