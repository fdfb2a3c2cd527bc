//! The Redis engine (`--store redis://host:6379/0`, `rediss://` for TLS):
//! the backend several servers can share. The host seals values before
//! they get here, so Redis holds only ciphertext and the key layout of
//! [`crate::layout`] (see [`crate::layout::redis_keys`] for the Redis key
//! format). Every key of a tenant carries the tenant's hash tag, so a
//! tenant lives in one Redis Cluster slot and one server-side script can
//! touch all of it.
//!
//! A batch ([`Backend::apply`], the group commit of a flush) is one
//! pipelined MULTI/EXEC. A compare-and-swap is one Lua script, atomic in
//! Redis. Durability on return is Redis's: with `appendonly yes` and
//! `appendfsync always` an acknowledged write survives a Redis crash;
//! with `everysec`, up to a second of writes can be lost.
//!
//! Fencing (issue 15): with several servers, a tenant's leader writes
//! through [`super::redis_fence::FencedBackend`], whose batches are one
//! `EVALSHA` each that Redis applies only while the leader's epoch and
//! lock are current.
//!
//! The connection is synchronous (the backend trait is) and re-made after
//! any failure, with short timeouts so a Redis that is down is an error
//! within seconds, never a hang or a panic. The URL's password is kept
//! only inside the client; messages name the store by [`redacted`] URL.

use super::{Backend, BackendError, Write};
use crate::layout::redis_keys::{self, Namespace};
use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

/// How long to wait for Redis to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait for an answer once connected.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Sets `KEYS[1]` field `ARGV[1]` (with its index `KEYS[2]`) to `ARGV[4]`
/// only if it holds `ARGV[3]` (`ARGV[2]` = "1") or nothing (`"0"`);
/// `ARGV[5]` = "0" deletes instead. Returns 1 if applied.
const CAS_SCRIPT: &str = r#"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '1' then
  if cur ~= ARGV[3] then return 0 end
elseif cur then
  return 0
end
if ARGV[5] == '1' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return 1
"#;

/// A store in Redis.
pub struct RedisBackend {
    client: redis::Client,
    /// The URL without its password: the store's name in every message.
    name: String,
    conn: Mutex<Option<redis::Connection>>,
    /// Tenants known to be in the registry: a tenant is registered once,
    /// apart from its writes, so every batch and script stays in the
    /// tenant's own slot.
    registered: Mutex<HashSet<String>>,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("store", &self.name)
            .finish_non_exhaustive()
    }
}

/// `url` with any password replaced by `***` (for messages and logs).
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a redis:// URL)".into();
    };
    // The last `@` ends the user-info, whatever the password holds (a
    // `/` of a base64 password included); the host and path follow it.
    match rest.rsplit_once('@') {
        Some((userinfo, host_and_path)) => {
            let user = userinfo.split_once(':').map_or("", |(u, _)| u);
            format!("{scheme}://{user}:***@{host_and_path}")
        }
        None => url.to_string(),
    }
}

/// A store URL as given (`redis://user:password@host:6379/0`). Its
/// `Debug` and `Display` hide the password; only [`StoreUrl::expose`]
/// hands the whole URL to the Redis client.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct StoreUrl(String);

impl StoreUrl {
    pub fn new(url: impl Into<String>) -> StoreUrl {
        StoreUrl(url.into())
    }

    /// The URL with its password, for the client only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for StoreUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_redis_url(s) {
            Ok(StoreUrl::new(s))
        } else {
            Err(format!(
                "{} is not a store URL: expected redis://host:6379/0 or rediss://...",
                redacted(s)
            ))
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({})", redacted(&self.0))
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redacted(&self.0))
    }
}

/// Whether `store` names a Redis store.
pub fn is_redis_url(store: &str) -> bool {
    store.starts_with("redis://") || store.starts_with("rediss://")
}

impl RedisBackend {
    /// Connects to the Redis at `url` (checks it answers).
    pub fn open(url: &StoreUrl) -> Result<RedisBackend, BackendError> {
        let url = url.expose();
        let name = redacted(url);
        if !is_redis_url(url) {
            return Err(BackendError::Unavailable(format!(
                "store {name}: expected a redis:// or rediss:// URL"
            )));
        }
        let client = redis::Client::open(url).map_err(|e| {
            BackendError::Unavailable(format!("store {name}: not a usable Redis URL ({e})"))
        })?;
        let backend = RedisBackend {
            client,
            name,
            conn: Mutex::new(None),
            registered: Mutex::new(HashSet::new()),
        };
        backend.run(|c| redis::cmd("PING").query::<String>(c))?;
        Ok(backend)
    }

    /// Runs `f` on the connection, connecting first if needed; a failure
    /// drops the connection so the next call starts afresh.
    pub(super) fn run<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, BackendError> {
        self.run_raw(f)?.map_err(|e| self.failed(&e))
    }

    /// [`RedisBackend::run`] handing back Redis's own error (the caller
    /// tells a `NOSCRIPT` from a failure); only a failed connection is a
    /// [`BackendError`] here.
    pub(super) fn run_raw<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<redis::RedisResult<T>, BackendError> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(self.connect()?);
        }
        let conn = guard.as_mut().expect("connected above");
        let result = f(conn);
        if let Err(e) = &result
            && e.code() != Some("NOSCRIPT")
        {
            *guard = None;
            // Redis may come back without what it had: register again.
            self.registered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        }
        Ok(result)
    }

    fn connect(&self) -> Result<redis::Connection, BackendError> {
        let conn = self
            .client
            .get_connection_with_timeout(CONNECT_TIMEOUT)
            .map_err(|e| self.failed(&e))?;
        conn.set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|()| conn.set_write_timeout(Some(IO_TIMEOUT)))
            .map_err(|e| self.failed(&e))?;
        Ok(conn)
    }

    pub(super) fn failed(&self, e: &redis::RedisError) -> BackendError {
        let what = if e.is_timeout() {
            "did not answer in time"
        } else if e.is_connection_refusal() || e.is_io_error() || e.is_connection_dropped() {
            "cannot be reached"
        } else {
            "answered with an error"
        };
        // One line, whatever the client's message holds.
        let detail = e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        BackendError::Unavailable(format!("Redis store {} {what}: {detail}", self.name))
    }

    /// Lists `tenant` in the registry (scans across tenants read it) before
    /// its first write. A registered tenant with no keys is harmless.
    pub(super) fn register(&self, tenant: &str) -> Result<(), BackendError> {
        let known = |t: &str| {
            self.registered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(t)
        };
        if known(tenant) {
            return Ok(());
        }
        self.run(|c| {
            redis::cmd("ZADD")
                .arg(redis_keys::TENANTS)
                .arg(0)
                .arg(redis_keys::tenant_prefix(tenant))
                .query::<()>(c)
        })?;
        self.registered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.to_string());
        Ok(())
    }

    /// The sorted keys of `ns` in `[low, high)` after `after`, up to `limit`.
    fn range(
        &self,
        ns: &Namespace,
        low: &[u8],
        high: &[u8],
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, BackendError> {
        let min = match after {
            Some(a) if a.as_bytes() >= low => [b"(".as_slice(), a.as_bytes()].concat(),
            _ => lex_min(low),
        };
        let max = [b"(".as_slice(), high].concat();
        let count = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(|c| {
            redis::cmd("ZRANGEBYLEX")
                .arg(ns.index())
                .arg(min)
                .arg(max)
                .arg("LIMIT")
                .arg(0)
                .arg(count)
                .query(c)
        })
    }

    /// The values of `keys` (all in `ns`), paired; a key deleted between
    /// the range and this read is left out.
    fn values(
        &self,
        ns: &Namespace,
        keys: Vec<String>,
    ) -> Result<Vec<(String, Vec<u8>)>, BackendError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let vals: Vec<Option<Vec<u8>>> =
            self.run(|c| redis::cmd("HMGET").arg(ns.values()).arg(&keys).query(c))?;
        Ok(keys
            .into_iter()
            .zip(vals)
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect())
    }

    /// The tenants' namespaces that may hold keys starting with `prefix`.
    fn tenants_under(&self, prefix: &str) -> Result<Vec<String>, BackendError> {
        // The tenants whose prefix `t/NAME/` starts with `prefix`.
        let low = lex_min(prefix.as_bytes());
        let high = [b"(".as_slice(), &upper_bound(prefix.as_bytes())].concat();
        let mut found: Vec<String> = self.run(|c| {
            redis::cmd("ZRANGEBYLEX")
                .arg(redis_keys::TENANTS)
                .arg(low)
                .arg(high)
                .query(c)
        })?;
        // (A prefix inside one tenant never gets here: `scan` reads that
        // tenant's index alone.)
        found.sort();
        Ok(found)
    }
}

/// The ZRANGEBYLEX bound "from `low` on, inclusive" (`-` when empty).
fn lex_min(low: &[u8]) -> Vec<u8> {
    if low.is_empty() {
        b"-".to_vec()
    } else {
        [b"[".as_slice(), low].concat()
    }
}

/// The smallest byte string above every string starting with `prefix`
/// (keys are UTF-8, which never holds 0xff).
fn upper_bound(prefix: &[u8]) -> Vec<u8> {
    [prefix, &[0xff]].concat()
}

impl Backend for RedisBackend {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let ns = Namespace::of(key);
        self.run(|c| redis::cmd("HGET").arg(ns.values()).arg(key).query(c))
    }

    fn apply(&self, writes: &[Write]) -> Result<(), BackendError> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut tenants = BTreeSet::new();
        for w in writes {
            match w {
                Write::Put(k, v) => {
                    let ns = Namespace::of(k);
                    pipe.cmd("HSET").arg(ns.values()).arg(k).arg(v).ignore();
                    pipe.cmd("ZADD").arg(ns.index()).arg(0).arg(k).ignore();
                    if let Namespace::Tenant(name) = ns {
                        tenants.insert(name);
                    }
                }
                Write::Delete(k) => {
                    let ns = Namespace::of(k);
                    pipe.cmd("HDEL").arg(ns.values()).arg(k).ignore();
                    pipe.cmd("ZREM").arg(ns.index()).arg(k).ignore();
                }
            }
        }
        for name in tenants {
            self.register(&name)?;
        }
        self.run(|c| pipe.query::<()>(c))
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, BackendError> {
        let ns = Namespace::of(key);
        if let (Namespace::Tenant(name), Some(_)) = (&ns, new) {
            self.register(name)?;
        }
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(CAS_SCRIPT).arg(2).arg(ns.values()).arg(ns.index());
        cmd.arg(key)
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(new.unwrap_or_default())
            .arg(if new.is_some() { "1" } else { "0" });
        let applied: i64 = self.run(|c| cmd.query(c))?;
        Ok(applied == 1)
    }

    fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, BackendError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let low = prefix.as_bytes();
        let high = upper_bound(low);
        // Within one tenant: that tenant's index alone.
        if let ns @ Namespace::Tenant(_) = Namespace::of(prefix) {
            let keys = self.range(&ns, low, &high, after, limit)?;
            return self.values(&ns, keys);
        }
        // Across namespaces: the tenants in order (their ranges do not
        // overlap), then merged with the other keys.
        let mut found = Vec::new();
        for tenant in self.tenants_under(prefix)? {
            if after.is_some_and(|a| a.as_bytes() >= upper_bound(tenant.as_bytes()).as_slice()) {
                continue;
            }
            let ns = Namespace::of(&tenant);
            let keys = self.range(&ns, low, &high, after, limit - found.len())?;
            found.extend(self.values(&ns, keys)?);
            if found.len() >= limit {
                break;
            }
        }
        let keys = self.range(&Namespace::Global, low, &high, after, limit)?;
        found.extend(self.values(&Namespace::Global, keys)?);
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found.truncate(limit);
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn the_password_is_hidden_whatever_it_holds() {
        for (url, shown) in [
            ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
            ("redis://u:s3cret@h:6379/0", "redis://u:***@h:6379/0"),
            // A base64 password with `/` and `@` in it.
            (
                "rediss://u:ab/c@d+s3cret=@h:6380/1",
                "rediss://u:***@h:6380/1",
            ),
            ("redis://h:6379/0", "redis://h:6379/0"),
        ] {
            assert_eq!(redacted(url), shown);
        }
    }
}
