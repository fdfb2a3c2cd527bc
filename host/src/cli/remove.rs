//! `credpool remove`: a credential and its secrets, gone.

use super::Failed;
use super::client::{Body, Remote};
use crate::pool::Pool;
use reqwest::Method;

pub fn run(pool: &Pool, id: &str) -> Result<(), Failed> {
    pool.remove(id)?;
    println!("removed {id}");
    Ok(())
}

pub fn remote(r: &Remote, id: &str) -> Result<(), Failed> {
    r.call(
        Method::DELETE,
        &["v1", "credentials", id],
        &[],
        Body::None,
        "remove credentials",
    )?;
    println!("removed {id}");
    Ok(())
}
