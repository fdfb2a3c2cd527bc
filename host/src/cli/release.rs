//! `credpool release`: gives a lease back unused.

use super::{Failed, parse_lease};
use crate::pool::Pool;

pub fn run(pool: &Pool, lease_id: &str) -> Result<(), Failed> {
    pool.release(parse_lease(lease_id)?)?;
    println!("released {lease_id}");
    Ok(())
}
