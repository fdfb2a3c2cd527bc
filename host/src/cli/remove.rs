//! `credpool remove`: a credential and its secrets, gone.

use super::Failed;
use crate::pool::Pool;

pub fn run(pool: &Pool, id: &str) -> Result<(), Failed> {
    pool.remove(id)?;
    println!("removed {id}");
    Ok(())
}
