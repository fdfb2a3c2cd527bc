//! `credpool acquire`: a lease on a credential of a site, printed with the
//! secrets its holder needs; exit code 3 when none is available, 4 when
//! the pool has none at all for the site.

use super::client::{Body, Remote};
use super::{EXIT_NO_CREDENTIAL, EXIT_UNKNOWN_SITE, Failed, output, parse_kind_opt};
use crate::pool::Pool;
use crate::{AccessLevel, AcquireRequest};
use reqwest::Method;
use serde_json::{Value, json};

pub struct Args<'a> {
    pub site: &'a str,
    pub kind: Option<&'a str>,
    pub purpose: Option<&'a str>,
    pub tags: &'a [String],
    pub ttl_secs: Option<u64>,
    pub prefer_fresh: bool,
    pub json: bool,
}

pub fn run(pool: &Pool, a: Args<'_>) -> Result<(), Failed> {
    let mut req = AcquireRequest::site(a.site);
    req.kind = parse_kind_opt(a.kind)?;
    req.purpose = a.purpose.map(str::to_string);
    req.tags = a.tags.to_vec();
    req.lease_ttl_ms = a.ttl_secs.map(|s| s.saturating_mul(1000));
    req.prefer_fresh = a.prefer_fresh;
    let got = pool.acquire(&req)?;
    // The lease is slim; the JSON shows the credential's record.
    let view = match (&got.lease, a.json) {
        (Some(l), true) => Some(pool.view(&l.credential.id, AccessLevel::Sensitive)?),
        _ => None,
    };
    finish(a.site, &output::acquired_json(&got, view.as_ref()), a.json)
}

/// Through a server: the card's acquire request; with `--json`, the
/// leased credential's view too, as the local command shows it.
pub fn remote(r: &Remote, a: Args<'_>) -> Result<(), Failed> {
    parse_kind_opt(a.kind)?;
    let body = json!({
        "site": a.site,
        "type": a.kind,
        "purpose": a.purpose,
        "tags": a.tags,
        "ttl_seconds": a.ttl_secs,
        "prefer_fresh": a.prefer_fresh,
    });
    let query: &[(&str, &str)] = if a.json {
        &[("level", "sensitive")]
    } else {
        &[]
    };
    // A site the server has no credential for is a 404 `unknown_site`
    // whose body is the acquire answer itself.
    let got = r.call_keeping(
        Method::POST,
        &["v1", "acquire"],
        query,
        Body::Json(&body),
        "acquire leases",
        output::UNKNOWN_SITE_CODE,
    )?;
    finish(a.site, &got, a.json)
}

fn finish(site: &str, got: &Value, json: bool) -> Result<(), Failed> {
    output::print_acquired_value(got, json);
    if output::acquired_success(got) {
        return Ok(());
    }
    let code = if output::unknown_site(got) {
        EXIT_UNKNOWN_SITE
    } else {
        EXIT_NO_CREDENTIAL
    };
    Err(Failed(code, output::no_credential_line(site, got)))
}
