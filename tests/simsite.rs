//! The simulated hostile site (`credpool::simulate::site`), over loopback
//! HTTP: each defence, the logins, and credpool's lifecycle against it.
