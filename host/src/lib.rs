//! credpool: a credential pool for web crawlers. A sandboxed policy
//! component decides which credential to hand out and how each result
//! changes it; this crate is the host that stores, encrypts and serves.
//!
//! ```no_run
//! use credpool::{AcquireRequest, Outcome, Pool, PoolOptions};
//! let pool = Pool::open(PoolOptions::on_disk("./credentials".as_ref()))?;
//! let got = pool.acquire(&AcquireRequest::site("jd.com"))?;
//! if let Some(lease) = got.lease {
//!     // ... use lease.secrets.cookies for the request, then:
//!     pool.report(lease.id, Outcome::Success)?;
//! }
//! # Ok::<(), credpool::Error>(())
//! ```
//!
//! # Layout
//! - [`pool`]: the public API: [`Pool`], its options and answers.
//! - [`runtime`]: the wasmtime engine, the compiled component and its
//!   `InstancePre`, built once per process; CPU deadlines by epoch.
//! - [`state`]: the per-tenant store data: WASI context, limits, vault.
//! - `handles`: an instance's credential handles (resolved once to ids and
//!   secrets) and prepared requests.
//! - `imports`: one file per imported interface (`store`, `refresh`,
//!   `notify`, `log`), each a small `impl Host for HostState`.
//! - [`bindings`]: the generated WIT bindings, isolated.
//! - [`backend`]: the storage trait and its engines (memory, redb).
//! - [`vault`]: a tenant's encrypted slice of a backend.
//! - [`crypto`]: AES-256-GCM sealing, key files and key rings.
//! - [`rekey`]: key rotation, rewrap, and the count of encryptions per key.
//! - [`transfer`]: import and export (our JSON, cookies.txt, cookie JSON).
//! - [`secrets`]: the secret bundle that never crosses into the policy.
//! - [`events`]: where logs, alerts and tickets go.
//! - [`lifecycle`]: refreshes, re-logins, challenges, TOTP, notifiers and
//!   health checks: the HTTP the policy asks for, with the secrets it never sees.
//! - [`config`]: the `credpool.toml` file.
//! - [`clock`]: a hand-moved wall clock for tests and simulations.
//! - [`simulate`]: `credpool simulate`: a hostile site on loopback to try a
//!   policy against before real accounts meet it.
//! - [`names`]: stable names of the contract's enums for CLI and JSON.
//! - `server`: `credpool serve`, the pool over HTTP for a fleet (feature
//!   `server`, on by default).
//! - [`cli`]: the `credpool` command.

pub mod backend;
pub mod bindings;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod error;
pub mod events;
mod handles;
mod imports;
pub mod lifecycle;
pub mod names;
pub mod pool;
pub mod rekey;
pub mod runtime;
pub mod secrets;
#[cfg(feature = "server")]
pub mod server;
pub mod simulate;
pub mod state;
pub mod transfer;
pub mod vault;

pub use bindings::pool::{
    AcquireRequest, AcquireStatus, CredentialView, ListFilter, ReportEffect, SiteStats,
    TickSummary, UnavailableReason,
};
pub use bindings::types::{
    AccessLevel, CredentialKind, CredentialMeta, Failure, FailureClass, LeaseId, Outcome,
    PoolError, Status,
};
pub use clock::ManualClock;
pub use error::{Error, Result};
pub use pool::{
    Acquired, AddAllError, Lease, LeasedCredential, NewCredential, Pool, PoolOptions, Storage,
};
pub use secrets::Secrets;
/// The type of a lease's credential id (a `str` that keeps short ids inline).
pub use smol_str::SmolStr;
