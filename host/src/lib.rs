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
//! The public API:
//! - [`pool`]: [`Pool`], its options and answers.
//! - [`backend`]: the storage trait and its engines (memory, redb, Redis),
//!   and Redis fencing (`redis_fence`: one leader per tenant, a deposed
//!   leader's writes refused by Redis).
//! - [`layout`]: every stored key and how it is sealed: the on-disk format.
//! - [`vault`]: a tenant's encrypted slice of a backend.
//! - [`crypto`]: AES-256-GCM sealing, key files and key rings.
//! - [`rekey`]: key rotation, rewrap, and the count of encryptions per key.
//! - [`check`]: verifies a store file and every sealed record (`credpool check`).
//! - [`backup`]: a consistent, still sealed copy of a store, and its restore.
//! - [`audit`]: the append-only record of who revealed or exported what.
//! - [`transfer`]: import and export (our JSON, cookies.txt, cookie JSON).
//! - [`secrets`]: the secret bundle that never crosses into the policy.
//! - [`events`]: where logs, alerts and tickets go.
//! - [`lifecycle`]: refreshes, re-logins, challenges, TOTP, notifiers and
//!   health checks: the HTTP the policy asks for, with the secrets it never sees.
//! - [`config`]: the `credpool.toml` file.
//! - [`limits`]: what one tenant's policy sandbox may use.
//! - [`clock`]: a hand-moved wall clock for tests and simulations.
//! - [`names`]: stable names of the contract's enums for CLI and JSON.
//! - [`error`]: the crate's error.
//!
//! Inside (not public):
//! - `runtime`: the wasmtime engine, the compiled component and its
//!   `InstancePre`, built once per process; CPU deadlines by epoch
//!   ([`Runtime`] is re-exported to load or share a component).
//! - `state`: the per-tenant store data: WASI context, limits, vault.
//! - `handles`: an instance's credential handles (resolved once to ids and
//!   secrets) and prepared requests.
//! - `imports`: one file per imported interface (`store`, `refresh`,
//!   `notify`, `log`), each a small `impl Host for HostState`.
//! - `private_fs`: files and directories only the owner can read (0600/0700).
//! - `jwt`: the expiry (`exp`) of an access token that is a JWT, read, not
//!   verified.
//! - `bindings`: the generated WIT bindings, isolated; the contract's data
//!   types are re-exported at the crate root.
//!
//! Behind cargo features (on by default; an embedder turns them off with
//! `default-features = false`):
//! - `cli` → `cli`: the `credpool` command, `bench` among its commands
//!   (brings `server` and `simulate`).
//! - `server` → `server`: `credpool serve`, the pool over HTTP for a crawl
//!   fleet: routes, tokens, metrics.
//! - `simulate` → `simulate`: `credpool simulate`: a hostile site on loopback
//!   to try a policy against before real accounts meet it.

pub mod audit;
pub mod backend;
pub mod backup;
mod bindings;
pub mod check;
#[cfg(feature = "cli")]
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod error;
pub mod events;
mod handles;
mod imports;
mod jwt;
pub mod layout;
pub mod lifecycle;
pub mod limits;
pub mod names;
pub mod pool;
mod private_fs;
pub mod rekey;
#[cfg(feature = "server")]
mod retry_after;
mod runtime;
pub mod secrets;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "simulate")]
pub mod simulate;
mod state;
pub mod transfer;
pub mod vault;

pub use bindings::log::Level;
pub use bindings::notify::{Alert, AlertKind, Severity, Ticket, TicketClosure};
// The contract's data types, by their WIT names; the generated plumbing
// (host traits, the world's struct, linker functions) stays inside.
pub use bindings::pool::{
    AcquireRequest, AcquireStatus, Anomaly, AnswerTimeStats, ChallengeResolution, CredentialView,
    InternalView, ListFilter, MethodRefreshStats, RefreshStats, ReportEffect, SensitiveView,
    SiteStats, StatusCounts, TickSummary, UnavailableReason,
};
pub use bindings::refresh::{
    ChallengeKind, RefreshFailure, RefreshMethod, RefreshOutcome, RefreshRequest, RefreshResult,
    StartError,
};
pub use bindings::types::{
    AccessLevel, CredentialKind, CredentialMeta, Failure, FailureClass, IllegalTransition,
    InvalidField, LeaseId, Outcome, PoolError, SecretField, Status, StoreError,
};
pub use clock::ManualClock;
pub use error::{Error, Result};
pub use pool::{
    Acquired, AddAllError, Lease, LeasedCredential, NewCredential, Pool, PoolOptions, Storage,
};
pub use runtime::{BUILTIN_POLICY, Runtime};
pub use secrets::Secrets;
/// The type of a lease's credential id (a `str` that keeps short ids inline).
pub use smol_str::SmolStr;
