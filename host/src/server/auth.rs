//! API tokens: 256 random bits shown once, only their SHA-256 stored (in
//! `DATA_DIR/tokens.json`, mode 0600), compared in constant time. Each is
//! bound to one tenant and one role, may expire, and may be revoked.

use super::errors::ApiError;
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Instant, SystemTime};
use subtle::ConstantTimeEq;

/// The token file's name in a data directory.
pub const TOKEN_FILE: &str = "tokens.json";
const PREFIX: &str = "cpt_";

/// What a token may do, mapped onto the card's access levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Acquire, report, release; sees the secrets of its own leases only.
    Crawler,
    /// Public and internal views, stats, metrics.
    Viewer,
    /// Sensitive views, add, import, remove, unban, tickets.
    Operator,
    /// Everything: reveal, export, tokens.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "crawler" => Role::Crawler,
            "viewer" => Role::Viewer,
            "operator" => Role::Operator,
            "admin" => Role::Admin,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Crawler => "crawler",
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// What an endpoint needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Crawl,
    View,
    Operate,
    Admin,
}

impl Need {
    fn allows(self, role: Role) -> bool {
        matches!(
            (self, role),
            (_, Role::Admin)
                | (Need::Crawl, Role::Crawler)
                | (Need::View, Role::Viewer | Role::Operator)
                | (Need::Operate, Role::Operator)
        )
    }
}

/// One stored token: its hash, never the token.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    /// Public handle for list and revoke: the hash's first 12 hex digits.
    pub id: String,
    pub tenant: String,
    pub role: Role,
    /// SHA-256 of the token, hex.
    pub sha256: String,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    tokens: Vec<TokenRecord>,
}

/// Who is calling.
#[derive(Clone, Debug)]
pub struct Principal {
    pub token_id: String,
    pub tenant: String,
    pub role: Role,
}

/// SHA-256 of the token, lower-case hex. On every request: no `format!`
/// per byte (it showed in the server's profile under load).
fn hash_hex(token: &str) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(token.as_bytes());
    let mut hex = String::with_capacity(digest.len() * 2);
    for b in digest {
        hex.push(DIGITS[usize::from(b >> 4)] as char);
        hex.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    hex
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Reads the token file (none yet is an empty book).
pub fn load(path: &Path) -> Result<Vec<TokenRecord>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<TokenFile>(&bytes)
            .map(|f| f.tokens)
            .map_err(|e| format!("{} is damaged: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes the token file atomically, mode 0600, synced.
fn save(path: &Path, tokens: &[TokenRecord]) -> Result<(), String> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let text = serde_json::to_vec_pretty(&TokenFile {
        tokens: tokens.to_vec(),
    })
    .expect("json");
    let tmp = dir.join(format!(".{TOKEN_FILE}.tmp"));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let write = || -> std::io::Result<()> {
        let mut f = opts.open(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Makes a token for `tenant` with `role`; stores its hash; returns the
/// token (shown once) and its record.
pub fn create(
    path: &Path,
    tenant: &str,
    role: Role,
    expires_at: Option<i64>,
) -> Result<(String, TokenRecord), String> {
    if tenant.is_empty()
        || !tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err("a tenant is letters, digits, '-', '_' and '.'".into());
    }
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| format!("no randomness for a token: {e}"))?;
    let token = format!(
        "{PREFIX}{}",
        raw.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    zeroize::Zeroize::zeroize(&mut raw);
    let sha256 = hash_hex(&token);
    let record = TokenRecord {
        id: sha256[..12].to_string(),
        tenant: tenant.into(),
        role,
        sha256,
        created_at: now_ms(),
        expires_at,
        revoked_at: None,
    };
    let mut all = load(path)?;
    all.push(record.clone());
    save(path, &all)?;
    tracing::warn!(target: "credpool::audit", "[AUDIT] token created id={} tenant={tenant} role={}", record.id, role.name());
    Ok((token, record))
}

/// Revokes the token with this id (or unique id prefix of 6+ digits).
pub fn revoke(path: &Path, id: &str) -> Result<TokenRecord, String> {
    let mut all = load(path)?;
    let matches: Vec<usize> = (0..all.len())
        .filter(|i| id.len() >= 6 && all[*i].id.starts_with(id))
        .collect();
    let i = match matches.as_slice() {
        [i] => *i,
        [] => return Err(format!("no token with id {id}")),
        _ => return Err(format!("{id} matches several tokens; give more digits")),
    };
    if all[i].revoked_at.is_none() {
        all[i].revoked_at = Some(now_ms());
        save(path, &all)?;
    }
    tracing::warn!(target: "credpool::audit", "[AUDIT] token revoked id={} tenant={}", all[i].id, all[i].tenant);
    Ok(all[i].clone())
}

/// The server's view of the token file, reloaded when it changes.
pub struct TokenBook {
    path: PathBuf,
    records: RwLock<(Option<SystemTime>, u64, Vec<TokenRecord>)>,
    limiter: RateLimiter,
}

impl TokenBook {
    /// The book of `data_dir`, each token allowed `rate_per_sec` requests a
    /// second with bursts of `burst` (a rate of 0: no limit).
    pub fn open(data_dir: &Path, rate_per_sec: u32, burst: u32) -> Result<TokenBook, String> {
        let book = TokenBook {
            path: data_dir.join(TOKEN_FILE),
            records: RwLock::new((None, 0, Vec::new())),
            limiter: RateLimiter::new(rate_per_sec, burst),
        };
        book.reload()?;
        Ok(book)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the file if its time or size moved; keeps the old book
    /// (and says why) if the new one is damaged.
    pub fn reload(&self) -> Result<(), String> {
        self.load_if(false)
    }

    /// Re-reads the file now (after this process changed it).
    pub fn reload_now(&self) -> Result<(), String> {
        self.load_if(true)
    }

    fn load_if(&self, always: bool) -> Result<(), String> {
        let meta = std::fs::metadata(&self.path).ok();
        let stamp = (
            meta.as_ref().and_then(|m| m.modified().ok()),
            meta.as_ref().map(|m| m.len()).unwrap_or(0),
        );
        {
            let r = self.records.read().unwrap_or_else(|p| p.into_inner());
            if !always && (r.0, r.1) == stamp && r.0.is_some() {
                return Ok(());
            }
        }
        let records = load(&self.path)?;
        *self.records.write().unwrap_or_else(|p| p.into_inner()) = (stamp.0, stamp.1, records);
        Ok(())
    }

    pub fn tenants(&self) -> Vec<String> {
        let r = self.records.read().unwrap_or_else(|p| p.into_inner());
        let mut t: Vec<String> = r.2.iter().map(|x| x.tenant.clone()).collect();
        t.sort();
        t.dedup();
        t
    }

    pub fn list(&self) -> Vec<TokenRecord> {
        self.records
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .2
            .clone()
    }

    /// The caller, if the request's bearer token is valid and allowed `need`.
    /// The tenant of the token `headers` present, if known and live (no
    /// role check, no rate limit: where a request goes, not whether it
    /// may).
    pub fn tenant_of(&self, headers: &HeaderMap) -> Option<String> {
        let presented = headers
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?
            .trim();
        let hash = hash_hex(presented);
        let r = self.records.read().unwrap_or_else(|p| p.into_inner());
        let mut found = None;
        for rec in &r.2 {
            if bool::from(rec.sha256.as_bytes().ct_eq(hash.as_bytes())) {
                found = Some(rec.tenant.clone());
            }
        }
        found
    }

    pub fn authorize(&self, headers: &HeaderMap, need: Need) -> Result<Principal, ApiError> {
        let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                unauthorized("an API token is required: Authorization: Bearer <token>")
            })?;
        let hash = hash_hex(presented);
        let found = {
            let r = self.records.read().unwrap_or_else(|p| p.into_inner());
            // Every record is compared, in constant time each.
            let mut found: Option<TokenRecord> = None;
            for rec in &r.2 {
                if bool::from(rec.sha256.as_bytes().ct_eq(hash.as_bytes())) {
                    found = Some(rec.clone());
                }
            }
            found
        };
        let rec = found.ok_or_else(|| unauthorized("the API token is not known"))?;
        if rec.revoked_at.is_some() {
            return Err(unauthorized("the API token was revoked"));
        }
        if rec.expires_at.is_some_and(|t| t <= now_ms()) {
            return Err(unauthorized("the API token has expired"));
        }
        if !need.allows(rec.role) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("a {} token may not do this", rec.role.name()),
            ));
        }
        if let Some(wait) = self.limiter.take(&rec.id) {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "this token's request rate limit is reached; slow down",
            );
            e.retry_after = Some(wait);
            return Err(e);
        }
        Ok(Principal {
            token_id: rec.id,
            tenant: rec.tenant,
            role: rec.role,
        })
    }
}

/// A token bucket per token, so one runaway client is slowed while the
/// others go on: each bucket holds up to `burst` requests and refills at
/// `rate` a second. A rate of 0 turns it off.
struct RateLimiter {
    rate: f64,
    burst: f64,
    /// Per token id: requests left, and when that was counted.
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    fn new(rate: u32, burst: u32) -> Self {
        RateLimiter {
            rate: rate as f64,
            // A burst below one request would refuse everything.
            burst: burst.max(1) as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `None` when the request may go; else whole seconds to wait (at
    /// least 1, as `Retry-After` counts).
    fn take(&self, id: &str) -> Option<u64> {
        self.take_at(id, Instant::now())
    }

    fn take_at(&self, id: &str, now: Instant) -> Option<u64> {
        if self.rate <= 0.0 {
            return None;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !buckets.contains_key(id) {
            // A new token starts with a full bucket.
            buckets.insert(id.to_string(), (self.burst, now));
        }
        let (left, at) = buckets.get_mut(id)?;
        let refilled = now.saturating_duration_since(*at).as_secs_f64() * self.rate;
        *left = (*left + refilled).min(self.burst);
        *at = now;
        if *left >= 1.0 {
            *left -= 1.0;
            None
        } else {
            Some(((1.0 - *left) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RateLimiter;
    use std::time::{Duration, Instant};

    #[test]
    fn each_token_has_its_own_bucket_that_refills_at_the_rate() {
        let limiter = RateLimiter::new(10, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take_at("a", t0), None);
        }
        // The burst is spent: one more waits a (whole) second.
        assert_eq!(limiter.take_at("a", t0), Some(1));
        // Another token is not slowed by the first.
        assert_eq!(limiter.take_at("b", t0), None);
        // A tenth of a second later one request came back, not two.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(limiter.take_at("a", t1), None);
        assert_eq!(limiter.take_at("a", t1), Some(1));
        // A long rest refills only up to the burst.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limiter.take_at("a", t2), None);
        }
        assert!(limiter.take_at("a", t2).is_some());
    }

    #[test]
    fn a_token_hash_is_its_sha256_in_lower_case_hex() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            super::hash_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_slow_rate_asks_for_the_seconds_it_needs() {
        let limiter = RateLimiter::new(1, 1);
        let t0 = Instant::now();
        assert_eq!(limiter.take_at("a", t0), None);
        assert_eq!(limiter.take_at("a", t0), Some(1));
        let off = RateLimiter::new(0, 0);
        for _ in 0..1000 {
            assert_eq!(off.take_at("a", t0), None);
        }
    }
}
