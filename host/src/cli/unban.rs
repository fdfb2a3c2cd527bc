//! `credpool unban`: a person lifts a ban.

use super::Failed;
use crate::names;
use crate::pool::Pool;

pub fn run(pool: &Pool, id: &str) -> Result<(), Failed> {
    let meta = pool.unban(id)?;
    println!("{} is {}", meta.id, names::status(meta.status));
    Ok(())
}
