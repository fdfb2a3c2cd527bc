//! The host side of each imported interface, one file each.

mod log;
mod notify;
mod refresh;
mod store;

impl crate::bindings::types::Host for crate::state::HostState {}
