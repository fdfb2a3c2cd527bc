//! A report or release repeated (the client retried after a lost answer,
//! or after a change of leader) gets the first call's answer again, with
//! `"repeat": true`, instead of `lease_not_found`. Answers are kept in
//! memory, and, over Redis with several servers, sealed in Redis with an
//! expiry longer than the longest lease, so a new leader knows them too.

use crate::pool::Pool;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a closed lease's answer is kept: longer than the longest
/// lease TTL the policy grants (an hour).
pub const KEEP: Duration = Duration::from_secs(70 * 60);
/// Answers kept in memory at most (the oldest go first).
const KEPT_IN_MEMORY: usize = 100_000;

/// Which call closed the lease.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    Report,
    Release,
}

impl Closing {
    fn name(self) -> &'static str {
        match self {
            Closing::Report => "report",
            Closing::Release => "release",
        }
    }
}

/// A lease by tenant and id.
type Key = (String, String);

/// The answers kept, each with when, and their order of arrival.
type Recent = (HashMap<Key, (Instant, Value)>, VecDeque<Key>);

#[derive(Default)]
pub struct ClosedBook {
    recent: Mutex<Recent>,
}

impl ClosedBook {
    /// Keeps `answer`, the answer `how` gave for `lease` of `pool`'s
    /// tenant. Not kept in Redis is logged, not failed: the call itself
    /// was done.
    pub fn keep(&self, pool: &Pool, lease: &str, how: Closing, answer: &Value) {
        let stored = json!({"closing": how.name(), "answer": answer});
        let key = (pool.tenant().to_string(), lease.to_string());
        {
            let mut g = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            let (map, order) = &mut *g;
            if map
                .insert(key.clone(), (Instant::now(), stored.clone()))
                .is_none()
            {
                order.push_back(key);
            }
            while order.len() > KEPT_IN_MEMORY {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
        let vault = pool.vault();
        // A single server remembers in memory only: no seal (an encryption
        // counted against the data key) on every report for nothing.
        if !vault.backend().keeps_expiring() {
            return;
        }
        let name = redis_name(lease);
        let sealed = match vault.seal(&aad(pool.tenant(), lease), stored.to_string().as_bytes()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(target: "credpool::serve", "lease {lease}: its answer is not kept for a repeat: {e}");
                return;
            }
        };
        if let Err(e) = vault.backend().put_expiring(&name, &sealed, KEEP) {
            tracing::warn!(target: "credpool::serve", "lease {lease}: its answer is kept on this server only: {e}");
        }
    }

    /// The first answer to `how` for `lease`, marked `"repeat": true`.
    pub fn find(&self, pool: &Pool, lease: &str, how: Closing) -> Option<Value> {
        let key = (pool.tenant().to_string(), lease.to_string());
        let mem = {
            let g = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            g.0.get(&key)
                .filter(|(at, _)| at.elapsed() < KEEP)
                .map(|(_, v)| v.clone())
        };
        let stored = match mem {
            Some(v) => v,
            None => {
                let sealed = pool
                    .vault()
                    .backend()
                    .get_expiring(&redis_name(lease))
                    .ok()??;
                let plain = pool
                    .vault()
                    .open(&aad(pool.tenant(), lease), &sealed)
                    .ok()?;
                serde_json::from_slice(&plain).ok()?
            }
        };
        if stored["closing"] != how.name() {
            return None;
        }
        let mut answer = stored["answer"].clone();
        answer["repeat"] = json!(true);
        Some(answer)
    }
}

fn redis_name(lease: &str) -> String {
    format!("closed:{lease}")
}

/// The sealed answer is bound to its tenant and lease.
fn aad(tenant: &str, lease: &str) -> String {
    format!("{}{tenant}/closed/{lease}", crate::layout::TENANT_PREFIX)
}
