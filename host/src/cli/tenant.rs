//! `credpool tenant remove NAME --yes` and `credpool rekey --tenant NAME`:
//! one tenant's data key, on the store itself (not in use by a server:
//! a running server does the same through `DELETE /v1/tenant` and
//! `POST /v1/tenant/rekey`).

use super::{Cli, EXIT_ERROR, Failed, key_source, usage};
use crate::backend::{Backend, BackendError, IN_USE, RedbBackend, RedisBackend};
use crate::crypto::load_keys;
use crate::error::Error;
use crate::layout::DB_FILE;
use crate::rekey::RekeyOptions;
use crate::server::auth::{self, TOKEN_FILE};
use crate::tenant_keys;
use clap::Subcommand;
use serde_json::json;
use std::sync::Arc;

#[derive(Subcommand, Debug)]
pub enum TenantAction {
    /// Remove a tenant: its data key is destroyed first (its records, and
    /// any copy of them, no longer open), then its records are deleted and
    /// its API tokens revoked. Cannot be undone.
    Remove {
        /// The tenant's name.
        name: String,
        /// Confirm: this destroys the tenant's data for good.
        #[arg(long)]
        yes: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// The store itself (a file no other process has open, or Redis), with
/// the server key checked against it.
fn open_store(cli: &Cli) -> Result<(Arc<dyn Backend>, crate::crypto::KeyRing), Failed> {
    let keys = load_keys(&key_source(cli)).map_err(Error::from)?;
    let backend: Arc<dyn Backend> = match super::store_url(cli)? {
        Some(url) => Arc::new(RedisBackend::open(&url).map_err(store_error)?),
        None => {
            let path = cli.data_dir.join(DB_FILE);
            if !path.is_file() {
                return Err(Failed(
                    EXIT_ERROR,
                    format!("no store at {}", path.display()),
                ));
            }
            Arc::new(RedbBackend::open(&path).map_err(store_error)?)
        }
    };
    crate::rekey::verify_key(&*backend, &keys).map_err(Error::from)?;
    Ok((backend, keys))
}

fn store_error(e: BackendError) -> Failed {
    match e {
        BackendError::Unavailable(m) if m.contains(IN_USE) => super::in_use_failure(format!(
            "{m} (a `credpool serve`?): stop it, or do this through it \
             (`DELETE /v1/tenant`, `POST /v1/tenant/rekey` with the tenant's admin token)"
        )),
        other => Failed::from(Error::Store(other.into())),
    }
}

pub fn run(cli: &Cli, action: &TenantAction) -> Result<(), Failed> {
    match action {
        TenantAction::Remove { name, yes, json } => remove(cli, name, *yes, *json),
    }
}

fn remove(cli: &Cli, name: &str, yes: bool, json: bool) -> Result<(), Failed> {
    if !yes {
        return Err(usage(format!(
            "removing tenant {name} destroys its data key and every record of it, for good; \
             add --yes to go ahead"
        )));
    }
    let (backend, _keys) = open_store(cli)?;
    let report = tenant_keys::remove(&*backend, name).map_err(Error::from)?;
    drop(backend);
    let token_file = cli.data_dir.join(TOKEN_FILE);
    let mut revoked = 0;
    if token_file.is_file() {
        for t in auth::load(&token_file).map_err(|m| Failed(EXIT_ERROR, m))? {
            if t.tenant == name && t.revoked_at.is_none() {
                auth::revoke(&token_file, &t.id).map_err(|m| Failed(EXIT_ERROR, m))?;
                revoked += 1;
            }
        }
    }
    if json {
        println!(
            "{}",
            json!({
                "tenant": name,
                "data_key_destroyed": report.data_key_destroyed,
                "records_deleted": report.records_deleted,
                "tokens_revoked": revoked,
            })
        );
    } else {
        println!(
            "tenant {name} removed: {}, {} records deleted, {revoked} token(s) revoked",
            if report.data_key_destroyed {
                "data key destroyed"
            } else {
                "it had no data key"
            },
            report.records_deleted
        );
    }
    Ok(())
}

/// `credpool rekey --tenant NAME`: that tenant's data key only.
pub fn rekey(cli: &Cli, name: &str, batch: usize, json: bool) -> Result<(), Failed> {
    if !crate::config::tenants::valid_name(name) {
        return Err(usage(format!(
            "--tenant {name:?}: a tenant name is 1 to 64 of A-Z a-z 0-9 . _ -"
        )));
    }
    let (backend, keys) = open_store(cli)?;
    let ring = tenant_keys::open_or_create(&backend, &keys, name).map_err(Error::from)?;
    let options = RekeyOptions {
        batch: batch.max(1),
        ..RekeyOptions::default()
    };
    let report =
        tenant_keys::rekey_tenant(&*backend, &keys, &ring, name, &options).map_err(Error::from)?;
    if json {
        println!(
            "{}",
            json!({
                "tenant": report.tenant,
                "primary": report.primary,
                "rewrapped": report.rewrapped,
                "changed_meanwhile": report.changed_meanwhile,
                "unreadable": report.unreadable,
                "retired": report.retired,
            })
        );
    } else {
        println!(
            "tenant {name}: data key {} is primary; {} records re-encrypted; old data key(s) {:?} destroyed",
            report.primary, report.rewrapped, report.retired
        );
        for key in &report.unreadable {
            eprintln!("  does not open: {key}");
        }
    }
    if report.unreadable.is_empty() {
        Ok(())
    } else {
        Err(Failed(
            EXIT_ERROR,
            format!(
                "{} record(s) of tenant {name} do not open; they were left as they are \
                 (`credpool check` names them)",
                report.unreadable.len()
            ),
        ))
    }
}
