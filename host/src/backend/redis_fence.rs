//! Fencing on Redis: one leader per tenant, and a deposed leader's writes
//! refused by Redis itself (issue 15, item 2).
//!
//! Per tenant, two keys beside its records, in the same hash-tag slot:
//! `credpool:{t:NAME}:lock` holds `EPOCH NODE` with a short TTL (taken
//! with `SET NX PX`, renewed by its holder), and `credpool:{t:NAME}:epoch`
//! is a counter `INCR`ed by every new leader. A leader's [`FencedBackend`]
//! carries the epoch it was elected with; every batch it writes is one
//! script (`EVALSHA`, loaded again on `NOSCRIPT`) that applies the writes
//! only if the epoch key still holds that epoch AND the lock still holds
//! that leader's value. Anything else is [`BackendError::Fenced`]: a
//! refused write is an error, never dropped in silence.
//!
//! Closed answers (the answer to a report or release, for a repeat) live
//! in `credpool:{t:NAME}:closed:<key>` with their own expiry.

use super::redis_store::RedisBackend;
use super::{Backend, BackendError, Write};
use crate::layout::redis_keys::Namespace;
use sha1::{Digest, Sha1};
use std::sync::OnceLock;
use std::time::Duration;

/// Takes or renews the lock. KEYS: lock, epoch. ARGV: node, the epoch
/// the caller holds ("0": none), TTL in ms. Returns `{epoch, holder}`:
/// the caller's epoch when it holds the lock (new or renewed), else 0 and
/// the holder's `EPOCH NODE`.
const TAKE: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  if ARGV[2] ~= '0' and cur == ARGV[2] .. ' ' .. ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    return {tonumber(ARGV[2]), cur}
  end
  return {0, cur}
end
local e = redis.call('INCR', KEYS[2])
local v = tostring(e) .. ' ' .. ARGV[1]
redis.call('SET', KEYS[1], v, 'NX', 'PX', ARGV[3])
return {e, v}
"#;

/// Lets the lock go if it is still the caller's. KEYS: lock. ARGV: value.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// A fenced batch. KEYS: kv, ix, lock, epoch. ARGV: lock value, epoch,
/// then (op, key, value) triples, op `p` (put) or `d` (delete). Returns 1
/// when applied, 0 when refused (nothing written).
const APPLY: &str = r#"
if redis.call('GET', KEYS[4]) ~= ARGV[2] or redis.call('GET', KEYS[3]) ~= ARGV[1] then
  return 0
end
for i = 3, #ARGV, 3 do
  if ARGV[i] == 'p' then
    redis.call('HSET', KEYS[1], ARGV[i + 1], ARGV[i + 2])
    redis.call('ZADD', KEYS[2], 0, ARGV[i + 1])
  else
    redis.call('HDEL', KEYS[1], ARGV[i + 1])
    redis.call('ZREM', KEYS[2], ARGV[i + 1])
  end
end
return 1
"#;

/// A fenced compare-and-swap. KEYS: kv, ix, lock, epoch. ARGV: lock value,
/// epoch, field, has-expected, expected, new, has-new. Returns 1 swapped,
/// 0 unchanged, -1 refused.
const CAS: &str = r#"
if redis.call('GET', KEYS[4]) ~= ARGV[2] or redis.call('GET', KEYS[3]) ~= ARGV[1] then
  return -1
end
local cur = redis.call('HGET', KEYS[1], ARGV[3])
if ARGV[4] == '1' then
  if cur ~= ARGV[5] then return 0 end
elseif cur then
  return 0
end
if ARGV[7] == '1' then
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[6])
  redis.call('ZADD', KEYS[2], 0, ARGV[3])
else
  redis.call('HDEL', KEYS[1], ARGV[3])
  redis.call('ZREM', KEYS[2], ARGV[3])
end
return 1
"#;

/// A fenced `SET key value PX ttl`. KEYS: lock, epoch, key. ARGV: lock
/// value, epoch, value, TTL in ms. Returns 1 set, 0 refused.
const SET_EXPIRING: &str = r#"
if redis.call('GET', KEYS[2]) ~= ARGV[2] or redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
return 1
"#;

/// A script sent by its SHA-1 (`EVALSHA`), and in full only when Redis
/// does not know it (first use, or after a restart).
struct Script {
    source: &'static str,
    sha: OnceLock<String>,
}

impl Script {
    const fn new(source: &'static str) -> Script {
        Script {
            source,
            sha: OnceLock::new(),
        }
    }

    fn sha(&self) -> &str {
        self.sha.get_or_init(|| {
            Sha1::digest(self.source.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        })
    }

    /// Runs the script with `keys` and `args` on `redis`.
    fn run<T: redis::FromRedisValue>(
        &self,
        redis: &RedisBackend,
        keys: &[String],
        args: &[&[u8]],
    ) -> Result<T, BackendError> {
        let call = |name: &str, first: &str| {
            let mut cmd = redis::cmd(name);
            cmd.arg(first).arg(keys.len());
            for k in keys {
                cmd.arg(k);
            }
            for a in args {
                cmd.arg(*a);
            }
            cmd
        };
        let by_sha = call("EVALSHA", self.sha());
        match redis.run_raw(|c| by_sha.query::<T>(c))? {
            Ok(v) => Ok(v),
            Err(e) if e.code() == Some("NOSCRIPT") => {
                let full = call("EVAL", self.source);
                redis.run(|c| full.query::<T>(c))
            }
            Err(e) => Err(redis.failed(&e)),
        }
    }
}

static TAKE_SCRIPT: Script = Script::new(TAKE);
static RELEASE_SCRIPT: Script = Script::new(RELEASE);
static APPLY_SCRIPT: Script = Script::new(APPLY);
static CAS_SCRIPT: Script = Script::new(CAS);
static SET_EXPIRING_SCRIPT: Script = Script::new(SET_EXPIRING);

/// A Redis key of `tenant` beside its records (same hash tag, same slot).
pub fn tenant_key(tenant: &str, suffix: &str) -> String {
    let kv = Namespace::Tenant(tenant.to_string()).values();
    let base = kv.strip_suffix(":kv").unwrap_or(&kv);
    format!("{base}:{suffix}")
}

/// The lock key of `tenant`'s leadership.
pub fn lock_key(tenant: &str) -> String {
    tenant_key(tenant, "lock")
}

/// The epoch counter of `tenant`'s leadership.
pub fn epoch_key(tenant: &str) -> String {
    tenant_key(tenant, "epoch")
}

/// Who holds a tenant's lock after [`take`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    /// This node, with this epoch.
    Me(u64),
    /// Another node (its advertised URL), with its epoch.
    Other(u64, String),
}

/// Takes `tenant`'s lock for `node` (or renews it, when `held` is the
/// epoch this node holds) for `ttl`.
pub fn take(
    redis: &RedisBackend,
    tenant: &str,
    node: &str,
    held: u64,
    ttl: Duration,
) -> Result<Holder, BackendError> {
    let ttl_ms = ttl.as_millis().max(1).to_string();
    let held = held.to_string();
    let (epoch, holder): (u64, String) = TAKE_SCRIPT.run(
        redis,
        &[lock_key(tenant), epoch_key(tenant)],
        &[node.as_bytes(), held.as_bytes(), ttl_ms.as_bytes()],
    )?;
    if epoch > 0 {
        return Ok(Holder::Me(epoch));
    }
    let (e, who) = holder.split_once(' ').unwrap_or(("0", &holder));
    Ok(Holder::Other(e.parse().unwrap_or(0), who.to_string()))
}

/// Lets `tenant`'s lock go if `node` still holds it with `epoch` (a
/// server that stops hands over at once instead of after the TTL).
pub fn release(
    redis: &RedisBackend,
    tenant: &str,
    node: &str,
    epoch: u64,
) -> Result<(), BackendError> {
    let value = lock_value(epoch, node);
    RELEASE_SCRIPT
        .run::<i64>(redis, &[lock_key(tenant)], &[value.as_bytes()])
        .map(|_| ())
}

fn lock_value(epoch: u64, node: &str) -> String {
    format!("{epoch} {node}")
}

/// The writes of one tenant's leader, refused by Redis once it is no
/// longer the leader it was elected as. Reads go straight through.
pub struct FencedBackend {
    redis: std::sync::Arc<RedisBackend>,
    tenant: String,
    epoch: u64,
    lock_value: String,
    keys: [String; 4],
}

impl FencedBackend {
    /// `tenant`'s writes as `node`, leader at `epoch`, over `redis`.
    pub fn new(
        redis: std::sync::Arc<RedisBackend>,
        tenant: &str,
        node: &str,
        epoch: u64,
    ) -> FencedBackend {
        let ns = Namespace::Tenant(tenant.to_string());
        FencedBackend {
            redis,
            tenant: tenant.to_string(),
            epoch,
            lock_value: lock_value(epoch, node),
            keys: [ns.values(), ns.index(), lock_key(tenant), epoch_key(tenant)],
        }
    }

    fn refused(&self) -> BackendError {
        BackendError::Fenced(format!(
            "this server no longer leads tenant {} (epoch {} is over); the write was refused",
            self.tenant, self.epoch
        ))
    }

    fn ours(&self, key: &str) -> bool {
        matches!(Namespace::of(key), Namespace::Tenant(t) if t == self.tenant)
    }

    /// Debug builds only: `CREDPOOL_DEBUG_WRITE_DELAY=MS:TEXT` holds a
    /// batch or swap with a key containing TEXT for MS before it is sent,
    /// so a test can pause the process in the middle of a write.
    #[cfg(debug_assertions)]
    fn debug_delay(&self, writes: &[Write]) {
        let Ok(spec) = std::env::var("CREDPOOL_DEBUG_WRITE_DELAY") else {
            return;
        };
        let Some((ms, text)) = spec.split_once(':') else {
            return;
        };
        let hit = writes.iter().any(|w| match w {
            Write::Put(k, _) | Write::Delete(k) => k.contains(text),
        });
        if hit && let Ok(ms) = ms.parse() {
            std::thread::sleep(Duration::from_millis(ms));
        }
    }

    /// Writes `value` at the key `name` of this tenant for `ttl`, fenced.
    fn set_expiring(&self, name: &str, value: &[u8], ttl: Duration) -> Result<(), BackendError> {
        let ttl_ms = ttl.as_millis().max(1).to_string();
        let applied: i64 = SET_EXPIRING_SCRIPT.run(
            &self.redis,
            &[
                self.keys[2].clone(),
                self.keys[3].clone(),
                tenant_key(&self.tenant, name),
            ],
            &[
                self.lock_value.as_bytes(),
                self.epoch.to_string().as_bytes(),
                value,
                ttl_ms.as_bytes(),
            ],
        )?;
        if applied == 1 {
            Ok(())
        } else {
            Err(self.refused())
        }
    }
}

impl Backend for FencedBackend {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.redis.get(key)
    }

    fn apply(&self, writes: &[Write]) -> Result<(), BackendError> {
        // Keys outside the tenant (the global key ledger) are not the
        // leader's to fence: they go as before.
        let (ours, others): (Vec<&Write>, Vec<&Write>) = writes.iter().partition(|w| match w {
            Write::Put(k, _) | Write::Delete(k) => self.ours(k),
        });
        if !others.is_empty() {
            let others: Vec<Write> = others.into_iter().cloned().collect();
            self.redis.apply(&others)?;
        }
        if ours.is_empty() {
            return Ok(());
        }
        #[cfg(debug_assertions)]
        self.debug_delay(writes);
        self.redis.register(&self.tenant)?;
        let epoch = self.epoch.to_string();
        let mut args: Vec<&[u8]> = Vec::with_capacity(2 + ours.len() * 3);
        args.push(self.lock_value.as_bytes());
        args.push(epoch.as_bytes());
        for w in &ours {
            match w {
                Write::Put(k, v) => args.extend([b"p".as_slice(), k.as_bytes(), v.as_slice()]),
                Write::Delete(k) => args.extend([b"d".as_slice(), k.as_bytes(), b"".as_slice()]),
            }
        }
        let applied: i64 = APPLY_SCRIPT.run(&self.redis, &self.keys, &args)?;
        if applied == 1 {
            Ok(())
        } else {
            Err(self.refused())
        }
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, BackendError> {
        if !self.ours(key) {
            return self.redis.compare_and_swap(key, expected, new);
        }
        #[cfg(debug_assertions)]
        self.debug_delay(&[Write::Delete(key.to_string())]);
        self.redis.register(&self.tenant)?;
        let epoch = self.epoch.to_string();
        let flag = |b: bool| if b { b"1".as_slice() } else { b"0".as_slice() };
        let swapped: i64 = CAS_SCRIPT.run(
            &self.redis,
            &self.keys,
            &[
                self.lock_value.as_bytes(),
                epoch.as_bytes(),
                key.as_bytes(),
                flag(expected.is_some()),
                expected.unwrap_or_default(),
                new.unwrap_or_default(),
                flag(new.is_some()),
            ],
        )?;
        match swapped {
            -1 => Err(self.refused()),
            n => Ok(n == 1),
        }
    }

    fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, BackendError> {
        self.redis.scan(prefix, after, limit)
    }

    fn keeps_expiring(&self) -> bool {
        true
    }

    fn put_expiring(&self, name: &str, value: &[u8], ttl: Duration) -> Result<bool, BackendError> {
        self.set_expiring(name, value, ttl).map(|()| true)
    }

    fn get_expiring(&self, name: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let key = tenant_key(&self.tenant, name);
        self.redis.run(|c| redis::cmd("GET").arg(&key).query(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_and_epoch_share_the_tenants_slot() {
        assert_eq!(lock_key("acme"), "credpool:{t:acme}:lock");
        assert_eq!(epoch_key("acme"), "credpool:{t:acme}:epoch");
        assert_eq!(
            tenant_key("a}b", "closed:x"),
            "credpool:{t=617d62}:closed:x"
        );
    }

    #[test]
    fn a_scripts_sha_is_its_sha1() {
        // SHA-1 of the empty string, as Redis would name an empty script.
        let s = Script::new("");
        assert_eq!(s.sha(), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }
}
