//! `credpool report`: how a leased credential did; ends the lease.

use super::client::{Body, Remote};
use super::{Failed, output, parse_lease, usage};
use crate::names;
use crate::pool::Pool;
use crate::{Failure, FailureClass, Outcome};
use reqwest::Method;
use serde_json::json;

pub fn run(
    pool: &Pool,
    lease_id: &str,
    outcome: &str,
    status: Option<u16>,
    retry_after: Option<&str>,
    json: bool,
) -> Result<(), Failed> {
    let outcome = parse_outcome(outcome, status, retry_after)?;
    let effect = pool.report(parse_lease(lease_id)?, outcome)?;
    output::print_effect_value(&output::effect_json(lease_id, &effect), json);
    Ok(())
}

/// Through a server; the words are checked here first, as locally.
pub fn remote(
    r: &Remote,
    lease_id: &str,
    outcome: &str,
    status: Option<u16>,
    retry_after: Option<&str>,
    json: bool,
) -> Result<(), Failed> {
    parse_outcome(outcome, status, retry_after)?;
    parse_lease(lease_id)?;
    let body = json!({"outcome": outcome, "http_status": status, "retry_after": retry_after});
    let effect = r.call(
        Method::POST,
        &["v1", "leases", lease_id, "report"],
        &[],
        Body::Json(&body),
        "report outcomes",
    )?;
    output::print_effect_value(&effect, json);
    Ok(())
}

/// The outcome word of the command line, with the site's status and
/// Retry-After (seconds or an HTTP-date) when it gave them.
pub fn parse_outcome(
    word: &str,
    status: Option<u16>,
    retry_after: Option<&str>,
) -> Result<Outcome, Failed> {
    let class = match word {
        "success" | "ok" => return Ok(Outcome::Success),
        "failed" | "other" => FailureClass::Other,
        other => names::parse_failure_class(other).ok_or_else(|| {
            usage(format!(
                "unknown outcome {other:?}: expected success, blocked, challenged, expired, rate-limited, network or failed"
            ))
        })?,
    };
    let retry_after_secs = retry_after
        .map(|t| crate::retry_after::seconds(t, chrono::Utc::now().timestamp_millis()))
        .transpose()
        .map_err(|e| usage(format!("--retry-after: {e}")))?;
    Ok(Outcome::Failure(Failure {
        class,
        http_status: status,
        retry_after_secs,
    }))
}
