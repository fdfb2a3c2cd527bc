//! The values options take, for clap to check and to list in help and in
//! its error when one is wrong (`list --status bogus`).

use clap::Args;
use clap::builder::{PossibleValue, PossibleValuesParser};

/// A credential's status (`names::status`).
pub const STATUSES: [&str; 7] = [
    "init",
    "active",
    "cooling",
    "challenged",
    "suspended",
    "banned",
    "expired",
];

/// A credential's type (`names::kind`); the card's `api_key` is taken as
/// `api-key` (`names::parse_kind`).
pub fn kinds() -> PossibleValuesParser {
    PossibleValuesParser::new([
        PossibleValue::new("account"),
        PossibleValue::new("session"),
        PossibleValue::new("token"),
        PossibleValue::new("api-key").alias("api_key"),
        PossibleValue::new("device"),
    ])
}

/// The access levels a view may be asked at, each with what it shows.
fn levels() -> PossibleValuesParser {
    PossibleValuesParser::new([
        PossibleValue::new("public").help("id, site, type, status and health"),
        PossibleValue::new("internal").help(
            "public, plus times (created, last used, expiry, rest), use and \
             failure counters, open leases, limits and tags",
        ),
        PossibleValue::new("sensitive").help(
            "internal, plus the username, phone and e-mail masked (***5678), \
             cookie and header names (values as ***) and which secret fields \
             are held; the default",
        ),
    ])
}

/// `--level` of `list` and `show`.
#[derive(Args, Debug)]
pub struct LevelArg {
    /// How much of each credential to show (default: sensitive; through a
    /// server, the most the token's role may see). No level prints a secret
    /// value: only `show --reveal` and `export --reveal` do, recorded in the
    /// audit trail.
    #[arg(long, value_parser = levels())]
    pub level: Option<String>,
}
