//! The credpool policy: which credential to hand out, how health and status
//! move with each result, when a credential rests, and what each access
//! level may see. It never holds a secret value: the host keeps those.
//!
//! # Layout
//! - [`model`]: the policy's own types, mirroring the WIT contract.
//! - [`ports`]: what the policy needs from the world (store, clock,
//!   randomness, log, notify) as small traits, with an in-memory fake for tests.
//! - [`config`]: the policy's tunables, parsed from the JSON the host passes.
//! - [`pool`]: the records, their per-site indexes, and every operation
//!   (one file per concern; its doc says which decision lives where).
//! - [`machine`]: the card's state machine, one pure transition function.
//! - [`standing`]: what a result or a command does to a credential (health,
//!   streaks, when blocks become a ban, how long it rests), pure.
//! - [`cooldown`]: exponential backoff with jitter, capped, never shorter.
//! - [`counters`]: hot counters as compact binary pages, written per flush.
//! - [`ratelimit`]: per-credential token bucket as one timestamp (GCRA).
//! - [`pace`]: adaptive pacing, the rate each credential and site learns.
//! - [`fenwick`]: the weighted tree behind O(log n) selection.
//! - [`anomaly`]: success-rate falls, block bursts and low health, raised
//!   once and cleared once.
//! - [`lifecycle`]: refresh scheduling, failure backoff and challenge
//!   tickets, as pure decisions the pool carries out (hook points in its doc).
//! - [`mask`]: masking of personal data in views and logs.
//! - [`packed`]: a credential's names and personal data in one allocation.
//! - [`words`]: enum words and RFC 3339 times for log lines and answers.
//! - `bindings` (wasm32 only): the one module that touches generated types;
//!   it adapts the WIT imports to the ports and the exports to the pool.

pub mod anomaly;
pub mod config;
pub mod cooldown;
pub mod counters;
pub mod fenwick;
pub mod lifecycle;
pub mod machine;
pub mod mask;
pub mod model;
pub mod pace;
pub mod packed;
pub mod pool;
pub mod ports;
pub mod ratelimit;
pub mod standing;
pub mod words;

#[cfg(target_arch = "wasm32")]
mod bindings;

#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod prop_tests;
