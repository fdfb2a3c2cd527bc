//! `credpool simulate`: what a policy and its configuration do to a site
//! before real accounts meet it. A hostile site runs on loopback
//! ([`site`]), crawler workers use the pool against it, and the report
//! compares what the workers saw with what the site did.

pub mod site;
