//! `credpool simulate`: what a policy and its configuration do to a site
//! before real accounts meet it. A hostile site runs on loopback
//! ([`site`]), crawler workers use the pool against it, and the report
//! compares what the workers saw with what the site did.
//!
//! # Layout
//! - [`site`]: the seeded hostile site (logins, sessions, OAuth, defences).
//! - [`scenario`]: the default sites of a run and the demo.
//! - [`run`]: one run: the pool, its lifecycle, the simulated person, the
//!   crawler workers, and what they saw.
//! - `worker`: a crawler worker: acquire, one real request, report.
//! - [`report`]: the SLOs and operator figures, computed from what was seen.
//! - [`leaks`]: the search of the run's files for the accounts' secrets.
//! - [`log`]: the run's log file, which the leak search reads.

pub mod leaks;
pub mod log;
pub mod report;
pub mod run;
pub mod scenario;
pub mod site;
mod worker;

pub use log::{CaptureWriter, capture_log};
