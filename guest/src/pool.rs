//! The pool: records in memory, indexed per site, written through the
//! store. Status changes are written durably at once; counters, health and
//! leases are marked dirty and written by `flush`, so the hot path does no
//! I/O.

use crate::config::PolicyConfig;
use crate::mask::mask;
use crate::model::*;
use crate::ports::{Host, Level};
use std::collections::{BTreeMap, HashMap, HashSet};

const CRED_PREFIX: &str = "cred/";
const LEASE_PREFIX: &str = "lease/";
const SCAN_PAGE: u32 = 1000;

/// A credential and what the pool tracks about it beyond its record.
#[derive(Clone, Debug)]
struct Entry {
    cred: Credential,
    open_leases: u32,
}

/// One site's members in insertion order, for round-robin.
#[derive(Clone, Debug, Default)]
struct SiteIndex {
    members: Vec<String>,
    cursor: usize,
    counters: SiteCounters,
}

#[derive(Clone, Debug, Default)]
struct SiteCounters {
    granted: u64,
    refused: u64,
    successes: u64,
    failures: BTreeMap<FailureClass, u64>,
}

/// The policy's state for one tenant.
pub struct Pool<H: Host> {
    pub host: H,
    config: PolicyConfig,
    entries: HashMap<String, Entry>,
    sites: BTreeMap<String, SiteIndex>,
    leases: HashMap<String, LeaseRecord>,
    dirty_creds: HashSet<String>,
    dirty_leases: HashSet<String>,
}

impl<H: Host> Pool<H> {
    /// Loads every record of the tenant from the store.
    pub fn load(mut host: H, config: PolicyConfig) -> Result<Self, PoolError> {
        let mut entries = HashMap::new();
        let mut sites: BTreeMap<String, SiteIndex> = BTreeMap::new();
        for (key, bytes) in scan_all(&mut host, CRED_PREFIX)? {
            let cred: Credential = serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))?;
            sites
                .entry(cred.site.clone())
                .or_default()
                .members
                .push(cred.id.clone());
            entries.insert(
                cred.id.clone(),
                Entry {
                    cred,
                    open_leases: 0,
                },
            );
        }
        let now = host.now();
        let mut leases = HashMap::new();
        for (key, bytes) in scan_all(&mut host, LEASE_PREFIX)? {
            let lease: LeaseRecord = serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))?;
            match entries.get_mut(&lease.credential_id) {
                Some(entry) if lease.expires_at > now => {
                    entry.open_leases += 1;
                    leases.insert(lease.id.clone(), lease);
                }
                // A lapsed lease or one whose credential is gone: drop it.
                _ => {
                    host.delete(&key)?;
                }
            }
        }
        Ok(Pool {
            host,
            config,
            entries,
            sites,
            leases,
            dirty_creds: HashSet::new(),
            dirty_leases: HashSet::new(),
        })
    }

    pub fn set_config(&mut self, config: PolicyConfig) {
        self.config = config;
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// Adds a credential; the record is durable when this returns.
    pub fn add(&mut self, new: NewCredential) -> Result<Credential, PoolError> {
        let site = validate_name("site", &new.site)?;
        let kind = new
            .kind
            .ok_or_else(|| PoolError::invalid("kind", "missing"))?;
        let id = match new.id {
            Some(id) => validate_name("id", &id)?,
            None => self.fresh_id(kind),
        };
        if self.entries.contains_key(&id) {
            return Err(PoolError::AlreadyExists(id));
        }
        for tag in &new.tags {
            validate_name("tag", tag)?;
        }
        if new.max_concurrent == Some(0) {
            return Err(PoolError::invalid("max_concurrent", "must be at least 1"));
        }
        if new.rate_per_minute == Some(0) {
            return Err(PoolError::invalid("rate_per_minute", "must be at least 1"));
        }
        let cred = Credential {
            id: id.clone(),
            site: site.clone(),
            kind,
            status: Status::Init,
            created_at: self.host.now(),
            last_used_at: None,
            expires_at: new.expires_at,
            cooldown_until: None,
            use_count: 0,
            success_count: 0,
            fail_count: 0,
            consecutive_failures: 0,
            health: 100,
            tags: new.tags,
            username: new.username,
            phone: new.phone,
            email: new.email,
            cookie_names: new.cookie_names,
            header_names: new.header_names,
            secret_fields: new.secret_fields,
            token_scope: new.token_scope,
            source_account: new.source_account,
            max_concurrent: new.max_concurrent,
            rate_per_minute: new.rate_per_minute,
            labels: new.labels,
        };
        self.write_cred(&cred, true)?;
        self.sites.entry(site).or_default().members.push(id.clone());
        self.entries.insert(
            id,
            Entry {
                cred: cred.clone(),
                open_leases: 0,
            },
        );
        self.log(
            Level::Info,
            "cred.added",
            &[("id", cred.id.clone()), ("site", cred.site.clone())],
        );
        Ok(cred)
    }

    /// Removes a credential and its leases.
    pub fn remove(&mut self, id: &str) -> Result<(), PoolError> {
        let Some(entry) = self.entries.get(id) else {
            return Err(PoolError::CredentialNotFound(id.to_string()));
        };
        let site = entry.cred.site.clone();
        self.host.delete(&cred_key(id))?;
        let lease_ids: Vec<String> = self
            .leases
            .values()
            .filter(|l| l.credential_id == id)
            .map(|l| l.id.clone())
            .collect();
        for lease_id in lease_ids {
            self.leases.remove(&lease_id);
            self.dirty_leases.insert(lease_id);
        }
        self.entries.remove(id);
        self.dirty_creds.remove(id);
        if let Some(index) = self.sites.get_mut(&site) {
            index.members.retain(|m| m != id);
            if index.members.is_empty() {
                self.sites.remove(&site);
            }
        }
        self.log(Level::Info, "cred.removed", &[("id", id.to_string())]);
        Ok(())
    }

    /// Hands out a credential of the site, round-robin over usable ones.
    pub fn acquire(&mut self, req: &AcquireRequest) -> Result<AcquireResponse, PoolError> {
        let now = self.host.now();
        if self.host.enabled(Level::Debug) {
            let kind = req.kind.map(|k| format!("{k:?}")).unwrap_or_default();
            self.log(
                Level::Debug,
                "cred.request",
                &[("site", req.site.clone()), ("kind", kind)],
            );
        }
        let ttl_ms = req
            .lease_ttl_ms
            .unwrap_or(self.config.lease_ttl_seconds * 1000)
            .max(1) as i64;
        let Some(index) = self.sites.get_mut(&req.site) else {
            return Ok(self.refuse(req, UnavailableReason::NoneMatch, None));
        };
        let n = index.members.len();
        let mut chosen = None;
        for step in 0..n {
            let i = (index.cursor + step) % n;
            let entry = &self.entries[&index.members[i]];
            if matches_request(&entry.cred, req) && is_usable(entry, now) {
                chosen = Some(i);
                index.cursor = (i + 1) % n;
                break;
            }
        }
        let Some(i) = chosen else {
            let reason = self.why_unavailable(req, now);
            return Ok(self.refuse(req, reason.0, reason.1));
        };
        let index = self.sites.get_mut(&req.site).expect("site exists");
        index.counters.granted += 1;
        let id = index.members[i].clone();
        let lease = LeaseRecord {
            id: self.fresh_lease_id(),
            credential_id: id.clone(),
            granted_at: now,
            expires_at: now + ttl_ms,
        };
        let entry = self.entries.get_mut(&id).expect("member exists");
        entry.open_leases += 1;
        entry.cred.use_count += 1;
        entry.cred.last_used_at = Some(now);
        let credential = entry.cred.clone();
        self.dirty_creds.insert(id.clone());
        self.dirty_leases.insert(lease.id.clone());
        self.leases.insert(lease.id.clone(), lease.clone());
        if self.host.enabled(Level::Debug) {
            self.log(
                Level::Debug,
                "cred.chosen",
                &[("id", id), ("health", credential.health.to_string())],
            );
        }
        Ok(AcquireResponse {
            status: AcquireStatus::Success,
            grant: Some(Grant { lease, credential }),
            reason: None,
            next_free_at: None,
            alternatives: Vec::new(),
            warnings: Vec::new(),
        })
    }

    /// Reports how a use went and ends its lease.
    pub fn report(&mut self, lease_id: &str, outcome: Outcome) -> Result<ReportEffect, PoolError> {
        let now = self.host.now();
        let lease = self
            .leases
            .get(lease_id)
            .cloned()
            .ok_or_else(|| PoolError::LeaseNotFound(lease_id.to_string()))?;
        let entry = self
            .entries
            .get(&lease.credential_id)
            .ok_or_else(|| PoolError::CredentialNotFound(lease.credential_id.clone()))?;
        let before = entry.cred.clone();
        let mut cred = before.clone();
        match outcome {
            Outcome::Success => {
                cred.success_count += 1;
                cred.consecutive_failures = 0;
                cred.health = cred
                    .health
                    .saturating_add(self.config.health_success)
                    .min(100);
                if cred.status == Status::Init {
                    cred.status = Status::Active;
                }
            }
            Outcome::Failure(failure) => {
                cred.fail_count += 1;
                cred.consecutive_failures += 1;
                cred.health = cred.health.saturating_sub(self.config.health_failure);
                self.apply_failure(&mut cred, failure, now);
            }
        }
        // A status change is acknowledged only once it is durable.
        let status_changed = cred.status != before.status;
        if status_changed {
            self.write_cred(&cred, true)?;
        } else {
            self.dirty_creds.insert(cred.id.clone());
        }
        self.end_lease(lease_id);
        let site = self.sites.get_mut(&cred.site).expect("site of a member");
        match outcome {
            Outcome::Success => site.counters.successes += 1,
            Outcome::Failure(f) => *site.counters.failures.entry(f.class).or_default() += 1,
        }
        if status_changed {
            self.log(
                Level::Info,
                "cred.status",
                &[
                    ("id", cred.id.clone()),
                    ("from", before.status.name().to_string()),
                    ("to", cred.status.name().to_string()),
                ],
            );
        }
        if cred.health < before.health {
            self.log(
                Level::Debug,
                "cred.health_drop",
                &[
                    ("id", cred.id.clone()),
                    ("from", before.health.to_string()),
                    ("to", cred.health.to_string()),
                ],
            );
        }
        let effect = ReportEffect {
            status: cred.status,
            health: cred.health,
            cooldown_until: cred.cooldown_until,
        };
        let id = cred.id.clone();
        self.entries.get_mut(&id).expect("member").cred = cred;
        Ok(effect)
    }

    fn apply_failure(&mut self, cred: &mut Credential, failure: Failure, now: Millis) {
        let rest = |secs: u64| now + (secs as i64) * 1000;
        match failure.class {
            FailureClass::Blocked => {
                cred.status = Status::Suspended;
                cred.cooldown_until = Some(rest(self.config.block_cooldown_seconds));
                self.log(
                    Level::Warn,
                    "cred.blocked",
                    &[
                        ("id", cred.id.clone()),
                        ("status", opt_num(failure.http_status)),
                    ],
                );
            }
            FailureClass::Challenged => cred.status = Status::Challenged,
            FailureClass::Expired => cred.status = Status::Expired,
            FailureClass::RateLimited => {
                let secs = failure
                    .retry_after_secs
                    .map(u64::from)
                    .unwrap_or(self.config.cooldown_seconds);
                cred.status = Status::Cooling;
                cred.cooldown_until = Some(rest(secs));
            }
            FailureClass::Network | FailureClass::Other => {}
        }
    }

    /// Ends a lease without a result.
    pub fn release(&mut self, lease_id: &str) -> Result<(), PoolError> {
        if !self.leases.contains_key(lease_id) {
            return Err(PoolError::LeaseNotFound(lease_id.to_string()));
        }
        self.end_lease(lease_id);
        Ok(())
    }

    fn end_lease(&mut self, lease_id: &str) {
        if let Some(lease) = self.leases.remove(lease_id) {
            if let Some(entry) = self.entries.get_mut(&lease.credential_id) {
                entry.open_leases = entry.open_leases.saturating_sub(1);
            }
            self.dirty_leases.insert(lease.id);
        }
    }

    /// One credential's record.
    pub fn get(&self, id: &str) -> Result<&Credential, PoolError> {
        self.entries
            .get(id)
            .map(|e| &e.cred)
            .ok_or_else(|| PoolError::CredentialNotFound(id.to_string()))
    }

    /// The credential as `level` may see it.
    pub fn view(&self, id: &str, level: AccessLevel) -> Result<View, PoolError> {
        let entry = self
            .entries
            .get(id)
            .ok_or_else(|| PoolError::CredentialNotFound(id.to_string()))?;
        Ok(self.make_view(entry, level))
    }

    /// Credentials matching `filter`, in id order.
    pub fn list(&self, filter: &ListFilter, level: AccessLevel) -> Vec<View> {
        let mut ids: Vec<&String> = match &filter.site {
            Some(site) => self
                .sites
                .get(site)
                .map(|s| s.members.iter().collect())
                .unwrap_or_default(),
            None => self.entries.keys().collect(),
        };
        ids.sort();
        let limit = filter.limit.map(|l| l as usize).unwrap_or(usize::MAX);
        ids.into_iter()
            .filter(|id| {
                filter
                    .after
                    .as_ref()
                    .is_none_or(|a| id.as_str() > a.as_str())
            })
            .map(|id| &self.entries[id])
            .filter(|e| filter.kind.is_none_or(|k| e.cred.kind == k))
            .filter(|e| filter.status.is_none_or(|s| e.cred.status == s))
            .filter(|e| filter.tag.as_ref().is_none_or(|t| e.cred.tags.contains(t)))
            .take(limit)
            .map(|e| self.make_view(e, level))
            .collect()
    }

    fn make_view(&self, entry: &Entry, level: AccessLevel) -> View {
        let c = &entry.cred;
        let internal = (level >= AccessLevel::Internal).then(|| InternalView {
            created_at: c.created_at,
            last_used_at: c.last_used_at,
            expires_at: c.expires_at,
            cooldown_until: c.cooldown_until,
            use_count: c.use_count,
            success_count: c.success_count,
            fail_count: c.fail_count,
            consecutive_failures: c.consecutive_failures,
            open_leases: entry.open_leases,
            max_concurrent: max_concurrent(c),
            rate_per_minute: c.rate_per_minute,
            tags: c.tags.clone(),
            labels: c.labels.clone(),
            source_account: c.source_account.clone(),
        });
        let personal = |v: &Option<String>| {
            v.as_ref().map(|s| {
                if level == AccessLevel::Secret {
                    s.clone()
                } else {
                    mask(s)
                }
            })
        };
        let sensitive = (level >= AccessLevel::Sensitive).then(|| SensitiveView {
            username: personal(&c.username),
            phone: personal(&c.phone),
            email: personal(&c.email),
            cookie_names: c.cookie_names.clone(),
            header_names: c.header_names.clone(),
            secret_fields: c.secret_fields.clone(),
            token_scope: c.token_scope.clone(),
        });
        View {
            level,
            id: c.id.clone(),
            site: c.site.clone(),
            kind: c.kind,
            status: c.status,
            health: c.health,
            internal,
            sensitive,
        }
    }

    /// Per-site state; one site or all.
    pub fn stats(&self, site: Option<&str>) -> Vec<SiteStats> {
        self.sites
            .iter()
            .filter(|(name, _)| site.is_none_or(|s| s == name.as_str()))
            .map(|(name, index)| {
                let mut s = SiteStats {
                    site: name.clone(),
                    total: index.members.len() as u32,
                    granted: index.counters.granted,
                    refused: index.counters.refused,
                    successes: index.counters.successes,
                    failures: index
                        .counters
                        .failures
                        .iter()
                        .map(|(k, v)| (*k, *v))
                        .collect(),
                    ..Default::default()
                };
                for id in &index.members {
                    let e = &self.entries[id];
                    s.by_status[status_slot(e.cred.status)] += 1;
                    s.open_leases += e.open_leases;
                }
                s
            })
            .collect()
    }

    /// Lapses overdue leases, ends finished rests and flushes.
    pub fn tick(&mut self) -> Result<TickSummary, PoolError> {
        let now = self.host.now();
        let mut summary = TickSummary::default();
        let lapsed: Vec<String> = self
            .leases
            .values()
            .filter(|l| l.expires_at <= now)
            .map(|l| l.id.clone())
            .collect();
        for id in lapsed {
            self.end_lease(&id);
            summary.leases_expired += 1;
        }
        let rested: Vec<String> = self
            .entries
            .values()
            .filter(|e| matches!(e.cred.status, Status::Cooling | Status::Suspended))
            .filter(|e| e.cred.cooldown_until.is_some_and(|t| t <= now))
            .map(|e| e.cred.id.clone())
            .collect();
        for id in rested {
            let mut cred = self.entries[&id].cred.clone();
            cred.status = Status::Active;
            cred.cooldown_until = None;
            self.write_cred(&cred, true)?;
            self.entries.get_mut(&id).expect("member").cred = cred;
            summary.cooldowns_ended += 1;
        }
        self.flush()?;
        summary.next_due_at = self
            .leases
            .values()
            .map(|l| l.expires_at)
            .chain(self.entries.values().filter_map(|e| e.cred.cooldown_until))
            .min();
        Ok(summary)
    }

    /// Lifts a ban.
    pub fn unban(&mut self, id: &str) -> Result<Credential, PoolError> {
        let mut cred = self.get(id)?.clone();
        if cred.status != Status::Banned {
            return Err(PoolError::IllegalTransition {
                from: cred.status,
                event: "unban".to_string(),
            });
        }
        cred.status = Status::Active;
        cred.consecutive_failures = 0;
        cred.cooldown_until = None;
        self.write_cred(&cred, true)?;
        self.entries.get_mut(id).expect("member").cred = cred.clone();
        Ok(cred)
    }

    /// Writes dirty counters and lease changes as lazy writes.
    pub fn flush(&mut self) -> Result<u32, PoolError> {
        let mut written = 0;
        for id in std::mem::take(&mut self.dirty_creds) {
            if let Some(entry) = self.entries.get(&id) {
                let cred = entry.cred.clone();
                self.write_cred(&cred, false)?;
                written += 1;
            }
        }
        for id in std::mem::take(&mut self.dirty_leases) {
            let key = format!("{LEASE_PREFIX}{id}");
            match self.leases.get(&id) {
                Some(lease) => {
                    let bytes = serde_json::to_vec(lease).expect("lease serialises");
                    self.host.set(&key, &bytes, false)?;
                }
                None => {
                    self.host.delete(&key)?;
                }
            }
            written += 1;
        }
        Ok(written)
    }

    fn write_cred(&mut self, cred: &Credential, durable: bool) -> Result<(), PoolError> {
        let bytes = serde_json::to_vec(cred).expect("credential serialises");
        self.host.set(&cred_key(&cred.id), &bytes, durable)?;
        if durable {
            self.dirty_creds.remove(&cred.id);
        }
        Ok(())
    }

    fn refuse(
        &mut self,
        req: &AcquireRequest,
        reason: UnavailableReason,
        next_free_at: Option<Millis>,
    ) -> AcquireResponse {
        if let Some(index) = self.sites.get_mut(&req.site) {
            index.counters.refused += 1;
        }
        let total = self.sites.get(&req.site).map_or(0, |s| s.members.len());
        self.log(
            Level::Warn,
            "cred.no_available",
            &[
                ("site", req.site.clone()),
                ("total", total.to_string()),
                ("reason", format!("{reason:?}")),
            ],
        );
        let status = match reason {
            UnavailableReason::AllBanned => AcquireStatus::AllBlocked,
            _ => AcquireStatus::NoAvailable,
        };
        let mut alternatives = Vec::new();
        match reason {
            UnavailableReason::NoneMatch => alternatives.push(format!(
                "add credentials for {} (credpool add --site {})",
                req.site, req.site
            )),
            UnavailableReason::AllBanned => {
                alternatives.push("add fresh accounts, or review and unban".to_string())
            }
            _ => alternatives.push("retry after next_free_at".to_string()),
        }
        AcquireResponse {
            status,
            grant: None,
            reason: Some(reason),
            next_free_at,
            alternatives,
            warnings: Vec::new(),
        }
    }

    /// Says why nothing matched: the dominant reason and when something frees.
    fn why_unavailable(
        &self,
        req: &AcquireRequest,
        now: Millis,
    ) -> (UnavailableReason, Option<Millis>) {
        let Some(index) = self.sites.get(&req.site) else {
            return (UnavailableReason::NoneMatch, None);
        };
        let mut reasons = HashSet::new();
        let mut next: Option<Millis> = None;
        let mut earliest = |t: Millis| next = Some(next.map_or(t, |n: Millis| n.min(t)));
        for id in &index.members {
            let e = &self.entries[id];
            if !matches_request(&e.cred, req) {
                continue;
            }
            let reason = match e.cred.status {
                Status::Banned => UnavailableReason::AllBanned,
                Status::Cooling | Status::Suspended => {
                    if let Some(t) = e.cred.cooldown_until {
                        earliest(t);
                    }
                    UnavailableReason::AllCooling
                }
                Status::Expired | Status::Challenged => UnavailableReason::AllRefreshing,
                _ if e.cred.expires_at.is_some_and(|t| t <= now) => {
                    UnavailableReason::AllRefreshing
                }
                _ => {
                    let lease_end = self
                        .leases
                        .values()
                        .filter(|l| &l.credential_id == id)
                        .map(|l| l.expires_at)
                        .min();
                    if let Some(t) = lease_end {
                        earliest(t);
                    }
                    UnavailableReason::AllLeased
                }
            };
            reasons.insert(reason);
        }
        let reason = match reasons.len() {
            0 => UnavailableReason::NoneMatch,
            1 => *reasons.iter().next().expect("one"),
            _ => UnavailableReason::Mixed,
        };
        // A pool that is only suspended or banned is "all blocked" for the card.
        let only_blocked = index.members.iter().all(|id| {
            let e = &self.entries[id];
            !matches_request(&e.cred, req)
                || matches!(e.cred.status, Status::Banned | Status::Suspended)
        });
        if only_blocked && reasons.contains(&UnavailableReason::AllBanned) {
            return (UnavailableReason::AllBanned, next);
        }
        (reason, next)
    }

    fn fresh_id(&mut self, kind: Kind) -> String {
        let prefix = match kind {
            Kind::Account => "acct",
            Kind::Session => "sess",
            Kind::Token => "tok",
            Kind::ApiKey => "key",
            Kind::Device => "dev",
        };
        loop {
            let id = format!("{prefix}-{:012x}", self.host.next_u64() >> 16);
            if !self.entries.contains_key(&id) {
                return id;
            }
        }
    }

    fn fresh_lease_id(&mut self) -> String {
        format!(
            "l-{:016x}{:016x}",
            self.host.next_u64(),
            self.host.next_u64()
        )
    }

    fn log(&mut self, level: Level, name: &str, fields: &[(&str, String)]) {
        if self.host.enabled(level) {
            self.host.event(level, name, fields);
        }
    }
}

/// A credential as an access level sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    pub level: AccessLevel,
    pub id: String,
    pub site: String,
    pub kind: Kind,
    pub status: Status,
    pub health: u8,
    pub internal: Option<InternalView>,
    pub sensitive: Option<SensitiveView>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct InternalView {
    pub created_at: Millis,
    pub last_used_at: Option<Millis>,
    pub expires_at: Option<Millis>,
    pub cooldown_until: Option<Millis>,
    pub use_count: u64,
    pub success_count: u64,
    pub fail_count: u64,
    pub consecutive_failures: u32,
    pub open_leases: u32,
    pub max_concurrent: u32,
    pub rate_per_minute: Option<u32>,
    pub tags: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub source_account: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SensitiveView {
    pub username: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub cookie_names: Vec<String>,
    pub header_names: Vec<String>,
    pub secret_fields: Vec<SecretField>,
    pub token_scope: Vec<String>,
}

/// Accounts and sessions are exclusive by default: sites ban shared logins.
pub fn max_concurrent(c: &Credential) -> u32 {
    c.max_concurrent.unwrap_or(match c.kind {
        Kind::Account | Kind::Session => 1,
        Kind::Token | Kind::ApiKey | Kind::Device => u32::MAX,
    })
}

fn is_usable(e: &Entry, now: Millis) -> bool {
    matches!(e.cred.status, Status::Active | Status::Init)
        && e.cred.expires_at.is_none_or(|t| t > now)
        && e.cred.cooldown_until.is_none_or(|t| t <= now)
        && e.open_leases < max_concurrent(&e.cred)
}

fn matches_request(c: &Credential, req: &AcquireRequest) -> bool {
    req.kind.is_none_or(|k| c.kind == k) && req.tags.iter().all(|t| c.tags.contains(t))
}

fn status_slot(s: Status) -> usize {
    Status::ALL
        .iter()
        .position(|x| *x == s)
        .expect("every status listed")
}

fn cred_key(id: &str) -> String {
    format!("{CRED_PREFIX}{id}")
}

fn opt_num(v: Option<u16>) -> String {
    v.map(|n| n.to_string()).unwrap_or_default()
}

/// Names (ids, sites, tags) are non-empty, short, printable and free of `/`
/// so they are safe as store keys and on a terminal.
fn validate_name(field: &str, value: &str) -> Result<String, PoolError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(PoolError::invalid(field, "must not be empty"));
    }
    if v.len() > 200 {
        return Err(PoolError::invalid(field, "longer than 200 bytes"));
    }
    if v.chars()
        .any(|c| c.is_control() || c == '/' || c.is_whitespace())
    {
        return Err(PoolError::invalid(
            field,
            "must not contain spaces, control characters or '/'",
        ));
    }
    Ok(v.to_string())
}

fn scan_all<H: Host>(host: &mut H, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, PoolError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (page, next) = host.scan(prefix, after.as_deref(), SCAN_PAGE)?;
        out.extend(page);
        match next {
            Some(n) => after = Some(n),
            None => return Ok(out),
        }
    }
}
