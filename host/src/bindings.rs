//! Generated bindings for the `policy` world, isolated here so the rest of
//! the host names types through this module.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "policy",
});

pub use self::credpool::policy::{log, notify, refresh, store, types};
pub use self::exports::credpool::policy::pool;
