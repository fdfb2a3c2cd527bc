//! `credpool release`: gives a lease back unused.

use super::client::{Body, Remote};
use super::{Failed, parse_lease};
use crate::pool::Pool;
use reqwest::Method;

pub fn run(pool: &Pool, lease_id: &str, json: bool) -> Result<(), Failed> {
    pool.release(parse_lease(lease_id)?)?;
    print_released(lease_id, json);
    Ok(())
}

/// As the API answers: `{"lease": ID, "released": true}`.
fn print_released(lease_id: &str, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({"lease": lease_id, "released": true})
        );
    } else {
        println!("released {lease_id}");
    }
}

pub fn remote(r: &Remote, lease_id: &str, json: bool) -> Result<(), Failed> {
    parse_lease(lease_id)?;
    r.call(
        Method::POST,
        &["v1", "leases", lease_id, "release"],
        &[],
        Body::None,
        "release leases",
    )?;
    print_released(lease_id, json);
    Ok(())
}
