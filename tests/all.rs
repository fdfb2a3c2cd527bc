//! Every end-to-end test in one binary: the real component loaded by the
//! real host, real files, HTTP on loopback, and the built `credpool`.
//!
//! One binary links wasmtime once instead of once per file (as wasmtime's
//! own `crates/wasi/tests/all`). Each file below is a module; a test is
//! named by its file, e.g. `cargo test --test all lifecycle::`.

mod support;

mod audit;
mod boundary;
mod byo_policy;
mod captcha;
mod card_data;
mod cli;
mod cli_answers;
mod cli_client;
mod cli_colour;
mod cli_help;
mod cli_json;
mod cli_truth;
mod clients_cli;
mod clients_node;
mod clients_python;
mod console;
mod crash;
mod failover;
mod hardening;
mod hostile;
mod jco_host;
mod leadership;
mod lifecycle;
mod lifecycle_e2e;
mod pace;
mod policy;
mod pool;
mod redis_canary;
mod redis_store;
mod refresh_lost;
mod security;
mod serve;
mod serve_load;
mod serve_sites;
mod serve_tls;
mod simsite;
mod simulate;
mod store_damage;
mod tenants;
mod transfer;
mod way_back;
