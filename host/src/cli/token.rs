//! `credpool token create|list|revoke`: API tokens for `credpool serve`.
//! Only a token's hash is stored; the token is printed once. A running
//! server sees changes within a fraction of a second.

use super::{EXIT_ERROR, Failed, usage};
use crate::server::auth::{self, Role, TOKEN_FILE};
use clap::Subcommand;
use std::path::Path;

#[derive(Subcommand, Debug)]
pub enum TokenAction {
    /// Make a token for a tenant and role; prints it once.
    Create {
        /// The tenant whose pool the token reaches.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// What the token may do.
        #[arg(long, value_parser = ["crawler", "viewer", "operator", "admin"])]
        role: String,
        /// Lifetime, e.g. 30d, 12h, 90m, 3600s.
        #[arg(long)]
        expires: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Every token's id, tenant, role and dates (never the token).
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id.
    Revoke {
        /// The token's id, as `token list` shows it.
        id: String,
    },
}

/// "30d", "12h", "90m", "3600s" or plain seconds, in milliseconds.
fn parse_lifetime(s: &str) -> Option<i64> {
    let (num, unit) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: i64 = num.parse().ok().filter(|n| *n > 0)?;
    let secs = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    n.checked_mul(secs)?.checked_mul(1000)
}

fn time(ms: Option<i64>) -> String {
    match ms.map(crate::cli::output::time) {
        Some(serde_json::Value::String(s)) => s,
        _ => "-".into(),
    }
}

pub fn run(data_dir: &Path, action: &TokenAction) -> Result<(), Failed> {
    if !data_dir.is_dir() {
        return Err(Failed(
            EXIT_ERROR,
            format!(
                "data directory {} does not exist; create it with `credpool init`",
                data_dir.display()
            ),
        ));
    }
    let path = data_dir.join(TOKEN_FILE);
    let fail = |m: String| Failed(EXIT_ERROR, m);
    match action {
        TokenAction::Create {
            tenant,
            role,
            expires,
            json,
        } => {
            let role = Role::parse(role)
                .ok_or_else(|| usage("--role must be crawler, viewer, operator or admin"))?;
            let expires_at = match expires {
                Some(e) => Some(
                    chrono::Utc::now().timestamp_millis()
                        + parse_lifetime(e).ok_or_else(|| {
                            usage(format!(
                                "--expires {e:?} is not a lifetime like 30d, 12h, 90m or 3600s"
                            ))
                        })?,
                ),
                None => None,
            };
            let (token, rec) = auth::create(&path, tenant, role, expires_at).map_err(fail)?;
            if *json {
                println!(
                    "{}",
                    serde_json::json!({"id": rec.id, "tenant": rec.tenant, "role": role.name(),
                        "expires_at": rec.expires_at.map(crate::cli::output::time), "token": token})
                );
            } else {
                println!("{token}");
                eprintln!(
                    "token {} for tenant {} as {} (expires {}); shown once: only its hash is kept",
                    rec.id,
                    rec.tenant,
                    role.name(),
                    time(rec.expires_at)
                );
            }
            Ok(())
        }
        TokenAction::List { json } => {
            let all = auth::load(&path).map_err(fail)?;
            if *json {
                let out: Vec<_> = all
                    .iter()
                    .map(|t| {
                        serde_json::json!({"id": t.id, "tenant": t.tenant, "role": t.role.name(),
                        "created_at": crate::cli::output::time(t.created_at),
                        "expires_at": t.expires_at.map(crate::cli::output::time),
                        "revoked_at": t.revoked_at.map(crate::cli::output::time)})
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(out));
            } else if all.is_empty() {
                println!("no tokens; make one with `credpool token create --role crawler`");
            } else {
                println!(
                    "{:<14} {:<16} {:<9} {:<22} {:<22} REVOKED",
                    "ID", "TENANT", "ROLE", "CREATED", "EXPIRES"
                );
                for t in &all {
                    println!(
                        "{:<14} {:<16} {:<9} {:<22} {:<22} {}",
                        t.id,
                        t.tenant,
                        t.role.name(),
                        time(Some(t.created_at)),
                        time(t.expires_at),
                        time(t.revoked_at)
                    );
                }
            }
            Ok(())
        }
        TokenAction::Revoke { id } => {
            let rec = auth::revoke(&path, id).map_err(fail)?;
            println!(
                "revoked token {} (tenant {}, {})",
                rec.id,
                rec.tenant,
                rec.role.name()
            );
            Ok(())
        }
    }
}
