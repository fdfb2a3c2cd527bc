//! `credpool acquire`: a lease on a credential of a site, printed with the
//! secrets its holder needs; exit code 3 when none is available.

use super::{EXIT_NO_CREDENTIAL, Failed, output, parse_kind_opt};
use crate::pool::Pool;
use crate::{AccessLevel, AcquireRequest, AcquireStatus};

pub struct Args<'a> {
    pub site: &'a str,
    pub kind: Option<&'a str>,
    pub purpose: Option<&'a str>,
    pub tags: &'a [String],
    pub ttl_secs: Option<u64>,
    pub json: bool,
}

pub fn run(pool: &Pool, a: Args<'_>) -> Result<(), Failed> {
    let mut req = AcquireRequest::site(a.site);
    req.kind = parse_kind_opt(a.kind)?;
    req.purpose = a.purpose.map(str::to_string);
    req.tags = a.tags.to_vec();
    req.lease_ttl_ms = a.ttl_secs.map(|s| s.saturating_mul(1000));
    let got = pool.acquire(&req)?;
    // The lease is slim; the JSON shows the credential's record.
    let view = match (&got.lease, a.json) {
        (Some(l), true) => Some(pool.view(&l.credential.id, AccessLevel::Sensitive)?),
        _ => None,
    };
    output::print_acquired(&got, view.as_ref(), a.json);
    if got.status == AcquireStatus::Success {
        Ok(())
    } else {
        Err(Failed(
            EXIT_NO_CREDENTIAL,
            output::no_credential_line(a.site, &got),
        ))
    }
}
