//! `credpool show`: one credential, masked; `--reveal` prints its secrets
//! (audited by the pool).

use super::{Failed, output, usage};
use crate::AccessLevel;
use crate::names;
use crate::pool::Pool;

pub fn run(pool: &Pool, id: &str, level: &str, reveal: bool, json: bool) -> Result<(), Failed> {
    if reveal {
        let (view, secrets) = pool.reveal(id)?;
        output::print_revealed(&view, &secrets, json);
    } else {
        let level = names::parse_access_level(level)
            .filter(|l| *l != AccessLevel::Secret)
            .ok_or_else(|| {
                usage("--level must be public, internal or sensitive; use --reveal for secrets")
            })?;
        output::print_views(&[pool.view(id, level)?], json);
    }
    Ok(())
}
