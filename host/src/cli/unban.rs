//! `credpool unban` (or `resume`): a person lifts a ban, ends a rest
//! early, or puts back an expired or challenged credential they renewed.

use super::Failed;
use super::client::{Body, Remote};
use crate::names;
use crate::pool::Pool;
use reqwest::Method;

pub fn run(pool: &Pool, id: &str) -> Result<(), Failed> {
    let meta = pool.unban(id)?;
    println!("{} is {}", meta.id, names::status(meta.status));
    Ok(())
}

pub fn remote(r: &Remote, id: &str) -> Result<(), Failed> {
    let meta = r.call(
        Method::POST,
        &["v1", "credentials", id, "unban"],
        &[],
        Body::None,
        "unban credentials",
    )?;
    println!(
        "{} is {}",
        meta["id"].as_str().unwrap_or(id),
        meta["status"].as_str().unwrap_or("-")
    );
    Ok(())
}
