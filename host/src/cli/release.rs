//! `credpool release`: gives a lease back unused.

use super::client::{Body, Remote};
use super::{Failed, parse_lease};
use crate::pool::Pool;
use reqwest::Method;

pub fn run(pool: &Pool, lease_id: &str) -> Result<(), Failed> {
    pool.release(parse_lease(lease_id)?)?;
    println!("released {lease_id}");
    Ok(())
}

pub fn remote(r: &Remote, lease_id: &str) -> Result<(), Failed> {
    parse_lease(lease_id)?;
    r.call(
        Method::POST,
        &["v1", "leases", lease_id, "release"],
        &[],
        Body::None,
        "release leases",
    )?;
    println!("released {lease_id}");
    Ok(())
}
