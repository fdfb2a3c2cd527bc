//! A minimal credpool policy, written to be copied: **strict round-robin per
//! site, and a fixed rest after a block.**
//!
//! A policy is a WASI P2 component of the `credpool:policy` world
//! (`wit/world.wit`). It decides which credential a crawler gets and what a
//! result does to it; the host stores, encrypts, holds every secret value
//! (the policy never sees one) and enforces the sandbox's limits.
//!
//! What this one decides:
//! - `acquire` hands out the site's next credential in id order after the
//!   one handed out last (wrapping round), skipping those resting or
//!   leased: one lease per credential at a time.
//! - `report` of a `blocked` failure rests the credential (`suspended`)
//!   for `rest_seconds` (default 600); any success makes it `active`.
//! - Leases lapse after `lease_seconds` (default 300) or the request's TTL.
//!
//! Configuration (the `[policy]` table, as JSON):
//! `{"rest_seconds": 600, "lease_seconds": 300}`; any other key is refused.
//!
//! What it leaves out, to stay short: refresh, challenges and tickets
//! (`unsupported`, none open), rate limits, health beyond rested or not,
//! names and personal data (views stop at `internal`). The acquire and
//! refusal counters of `stats` live in memory (they restart from zero with
//! the instance); records, open leases and the rotation's place are stored
//! under `minimal/` keys.
//!
//! Layout: `records` (what is stored, and how), `views` (what the host
//! reads back), this file (the decisions).

mod records;
mod views;

wit_bindgen::generate!({
    path: "../../wit",
    world: "policy",
    additional_derives: [PartialEq],
});

use credpool::policy::types::{
    AccessLevel, CredentialMeta, FailureClass, IllegalTransition, InvalidField, Lease, LeaseId,
    NewCredential, Outcome, PoolError, Status, Timestamp,
};
use exports::credpool::policy::pool::{
    AcquireRequest, AcquireResponse, AcquireStatus, ChallengeResolution, CredentialView, Guest,
    ListFilter, RefreshResult, ReportEffect, SiteStats, TickSummary, Ticket, UnavailableReason,
};
use records::{OpenLease, Record};
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use views::SiteCounters;

/// The `[policy]` settings this policy takes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    /// How long a credential rests after a block.
    rest_seconds: u64,
    /// A lease's length when the request names none.
    lease_seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rest_seconds: 600,
            lease_seconds: 300,
        }
    }
}

/// Everything the instance holds. One instance serves one tenant, one call
/// at a time, so a thread-local is all the sharing there is.
#[derive(Default)]
struct State {
    config: Config,
    /// Credentials by id: the rotation's order.
    records: BTreeMap<String, Record>,
    /// A credential's handle is its index here, stable while the instance lives.
    handles: Vec<String>,
    handle_of: HashMap<String, u32>,
    /// Per site, the id handed out last.
    cursors: HashMap<String, String>,
    /// Open leases by sequence number.
    leases: HashMap<u64, OpenLease>,
    next_seq: u64,
    /// Prepared requests; a request's handle is its index.
    requests: Vec<AcquireRequest>,
    counters: HashMap<String, SiteCounters>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn with_state<T>(f: impl FnOnce(&mut State) -> T) -> T {
    STATE.with(|cell| f(&mut cell.borrow_mut()))
}

/// The wall clock, `wasi:clocks` underneath (the host may run it by hand).
fn now() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Timestamp)
}

fn invalid(field: &str, reason: &str) -> PoolError {
    PoolError::InvalidInput(InvalidField {
        field: field.into(),
        reason: reason.into(),
    })
}

/// A lease id as hosts print it.
fn lease_name(id: LeaseId) -> String {
    format!("l{:x}.{:016x}", id.seq, id.nonce)
}

impl State {
    fn handle(&mut self, id: &str) -> u32 {
        if let Some(h) = self.handle_of.get(id) {
            return *h;
        }
        let h = self.handles.len() as u32;
        self.handles.push(id.to_string());
        self.handle_of.insert(id.to_string(), h);
        h
    }

    fn leases_of(&self, id: &str) -> u32 {
        self.leases.values().filter(|l| l.id == id).count() as u32
    }

    /// Frees leases past their end; returns how many.
    fn lapse_leases(&mut self, now: Timestamp) -> Result<u32, PoolError> {
        let lapsed: Vec<u64> = self
            .leases
            .values()
            .filter(|l| l.expires_at <= now)
            .map(|l| l.seq)
            .collect();
        for seq in &lapsed {
            records::end_lease(*seq)?;
            self.leases.remove(seq);
        }
        Ok(lapsed.len() as u32)
    }

    /// Ends the open lease `lease`, if it is one.
    fn end(&mut self, lease: LeaseId) -> Result<OpenLease, PoolError> {
        match self.leases.get(&lease.seq) {
            Some(open) if open.nonce == lease.nonce => {
                records::end_lease(lease.seq)?;
                Ok(self.leases.remove(&lease.seq).expect("found"))
            }
            _ => Err(PoolError::LeaseNotFound(lease_name(lease))),
        }
    }

    fn acquire(&mut self, request: &AcquireRequest) -> Result<AcquireResponse, PoolError> {
        let now = now();
        self.lapse_leases(now)?;
        let on_site: Vec<&Record> = self
            .records
            .values()
            .filter(|r| r.site == request.site)
            .collect();
        let matching: Vec<String> = on_site
            .iter()
            .filter(|r| request.kind.is_none_or(|k| r.kind() == k))
            .filter(|r| request.tags.iter().all(|t| r.tags.contains(t)))
            .map(|r| r.id.clone())
            .collect();
        // The rotation: the ids after the last one handed out, then the rest.
        let last = self.cursors.get(&request.site).cloned().unwrap_or_default();
        let (before, after): (Vec<&String>, Vec<&String>) =
            matching.iter().partition(|id| **id <= last);
        let pick = after
            .into_iter()
            .chain(before)
            .find(|id| {
                self.records[*id].status(now) != Status::Suspended && self.leases_of(id) == 0
            })
            .cloned();
        let counters = self.counters.entry(request.site.clone()).or_default();
        let Some(id) = pick else {
            counters.refused += 1;
            return Ok(self.refusal(
                request,
                on_site_empty(&self.records, &request.site),
                &matching,
                now,
            ));
        };
        counters.granted += 1;
        let ttl = request
            .lease_ttl_ms
            .unwrap_or(self.config.lease_seconds * 1000) as Timestamp;
        let lease_id = LeaseId {
            seq: self.next_seq,
            nonce: random_u64(),
        };
        self.next_seq += 1;
        let record = self.records.get_mut(&id).expect("picked from the records");
        record.use_count += 1;
        record.last_used_at = Some(now);
        records::save(record)?;
        records::save_cursor(&request.site, &id)?;
        let (kind, status, health) = (
            record.kind(),
            record.status(now),
            views::health(record, now),
        );
        self.cursors.insert(request.site.clone(), id.clone());
        let open = OpenLease {
            seq: lease_id.seq,
            nonce: lease_id.nonce,
            id: id.clone(),
            expires_at: now + ttl,
        };
        records::save_lease(&open)?;
        self.leases.insert(lease_id.seq, open);
        let lease = Lease {
            id: lease_id,
            credential: self.handle(&id),
            kind,
            status,
            health,
            granted_at: now,
            expires_at: now + ttl,
        };
        Ok(AcquireResponse {
            status: AcquireStatus::Success,
            lease: Some(lease),
            reason: None,
            next_free_at: None,
            alternatives: Vec::new(),
            warnings: Vec::new(),
        })
    }

    /// Why nothing matching could be handed out.
    fn refusal(
        &self,
        request: &AcquireRequest,
        site_unknown: bool,
        matching: &[String],
        now: Timestamp,
    ) -> AcquireResponse {
        let rests = matching
            .iter()
            .filter_map(|id| views::resting_until(&self.records[id], now));
        let (status, reason, next_free_at) = if site_unknown {
            (
                AcquireStatus::NoAvailable,
                UnavailableReason::UnknownSite,
                None,
            )
        } else if matching.is_empty() {
            (
                AcquireStatus::NoAvailable,
                UnavailableReason::NoneMatch,
                None,
            )
        } else if rests.clone().count() == matching.len() {
            (
                AcquireStatus::AllBlocked,
                UnavailableReason::AllCooling,
                rests.min(),
            )
        } else {
            let lease_ends = self
                .leases
                .values()
                .filter(|l| matching.contains(&l.id))
                .map(|l| l.expires_at);
            (
                AcquireStatus::NoAvailable,
                UnavailableReason::AllLeased,
                lease_ends.min(),
            )
        };
        let alternatives = if site_unknown {
            vec![format!("no credential is stored for site {}", request.site)]
        } else {
            Vec::new()
        };
        AcquireResponse {
            status,
            lease: None,
            reason: Some(reason),
            next_free_at,
            alternatives,
            warnings: Vec::new(),
        }
    }

    fn report(&mut self, lease: LeaseId, outcome: Outcome) -> Result<ReportEffect, PoolError> {
        let now = now();
        self.lapse_leases(now)?;
        let open = self.end(lease)?;
        let rest_ms = self.config.rest_seconds as Timestamp * 1000;
        let record = self
            .records
            .get_mut(&open.id)
            .ok_or_else(|| PoolError::CredentialNotFound(open.id.clone()))?;
        let counters = self.counters.entry(record.site.clone()).or_default();
        match outcome {
            Outcome::Success => {
                record.success_count += 1;
                record.used_ok = true;
            }
            Outcome::Failure(failure) => {
                record.fail_count += 1;
                counters.failed(failure.class);
                if failure.class == FailureClass::Blocked {
                    record.rest_until = Some(now + rest_ms);
                }
            }
        }
        records::save(record)?;
        Ok(ReportEffect {
            status: record.status(now),
            health: views::health(record, now),
            cooldown_until: views::resting_until(record, now),
            late: false,
        })
    }

    fn prepared(&self, handle: u32) -> Result<AcquireRequest, PoolError> {
        self.requests
            .get(handle as usize)
            .cloned()
            .ok_or_else(|| invalid("request", "no request was prepared under this handle"))
    }
}

fn on_site_empty(records: &BTreeMap<String, Record>, site: &str) -> bool {
    !records.values().any(|r| r.site == site)
}

fn corrupt(key: &str, e: serde_json::Error) -> PoolError {
    PoolError::Storage(credpool::policy::types::StoreError::Corrupt(format!(
        "{key}: {e}"
    )))
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // wasi:random; a failure leaves zeros, which only makes nonces guessable
    // to someone who already holds the host's API.
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

struct Minimal;

impl Guest for Minimal {
    fn configure(config_json: String) -> Result<(), PoolError> {
        let config: Config = if config_json.trim().is_empty() {
            Config::default()
        } else {
            serde_json::from_str(&config_json).map_err(|e| {
                PoolError::InvalidConfig(InvalidField {
                    field: "policy".into(),
                    reason: e.to_string(),
                })
            })?
        };
        let mut loaded = BTreeMap::new();
        for (key, value) in records::load_all(records::CRED_PREFIX)? {
            let record: Record = serde_json::from_slice(&value).map_err(|e| corrupt(&key, e))?;
            loaded.insert(record.id.clone(), record);
        }
        let mut cursors = HashMap::new();
        for (key, value) in records::load_all(records::CURSOR_PREFIX)? {
            let site = key.trim_start_matches(records::CURSOR_PREFIX).to_string();
            cursors.insert(site, String::from_utf8_lossy(&value).into_owned());
        }
        let mut leases = HashMap::new();
        for (key, value) in records::load_all(records::LEASE_PREFIX)? {
            let lease: OpenLease = serde_json::from_slice(&value).map_err(|e| corrupt(&key, e))?;
            leases.insert(lease.seq, lease);
        }
        with_state(|s| {
            s.config = config;
            s.records = loaded;
            s.cursors = cursors;
            // Nonces keep ids unique; sequence numbers just go on upwards.
            s.next_seq = leases.keys().max().map_or(0, |m| m + 1);
            s.leases = leases;
        });
        Ok(())
    }

    fn add(credential: NewCredential) -> Result<CredentialMeta, PoolError> {
        if credential.site.trim().is_empty() {
            return Err(invalid("site", "is empty"));
        }
        let id = match credential.id {
            Some(id) if id.trim().is_empty() => return Err(invalid("id", "is empty")),
            Some(id) => id,
            None => format!("c{:016x}", random_u64()),
        };
        with_state(|s| {
            if s.records.contains_key(&id) {
                return Err(PoolError::AlreadyExists(id));
            }
            let record = Record {
                id: id.clone(),
                site: credential.site,
                kind: records::name(credential.kind),
                tags: credential.tags,
                created_at: now(),
                rest_until: None,
                used_ok: false,
                use_count: 0,
                success_count: 0,
                fail_count: 0,
                last_used_at: None,
            };
            records::save(&record)?;
            let meta = views::meta(&record, now());
            s.records.insert(id, record);
            Ok(meta)
        })
    }

    fn remove(id: String) -> Result<(), PoolError> {
        with_state(|s| {
            if s.records.remove(&id).is_none() {
                return Err(PoolError::CredentialNotFound(id));
            }
            let ended: Vec<u64> = s
                .leases
                .values()
                .filter(|l| l.id == id)
                .map(|l| l.seq)
                .collect();
            for seq in ended {
                records::end_lease(seq)?;
                s.leases.remove(&seq);
            }
            records::forget(&id)
        })
    }

    fn acquire(request: AcquireRequest) -> Result<AcquireResponse, PoolError> {
        with_state(|s| s.acquire(&request))
    }

    fn prepare(request: AcquireRequest) -> Result<u32, PoolError> {
        with_state(|s| {
            if let Some(i) = s.requests.iter().position(|r| *r == request) {
                return Ok(i as u32);
            }
            if s.requests.len() >= 4096 {
                return Err(invalid(
                    "request",
                    "this instance keeps at most 4096 requests",
                ));
            }
            s.requests.push(request);
            Ok(s.requests.len() as u32 - 1)
        })
    }

    fn acquire_prepared(request: u32) -> Result<AcquireResponse, PoolError> {
        with_state(|s| {
            let request = s.prepared(request)?;
            s.acquire(&request)
        })
    }

    fn report(lease: LeaseId, outcome: Outcome) -> Result<ReportEffect, PoolError> {
        with_state(|s| s.report(lease, outcome))
    }

    fn release(lease: LeaseId) -> Result<(), PoolError> {
        with_state(|s| s.end(lease).map(|_| ()))
    }

    fn report_and_acquire(
        lease: LeaseId,
        outcome: Outcome,
        next: u32,
    ) -> Result<(ReportEffect, AcquireResponse), PoolError> {
        with_state(|s| {
            let request = s.prepared(next)?;
            let effect = s.report(lease, outcome)?;
            Ok((effect, s.acquire(&request)?))
        })
    }

    fn credential_id(credential: u32) -> Option<String> {
        with_state(|s| {
            let id = s.handles.get(credential as usize)?;
            s.records.contains_key(id).then(|| id.clone())
        })
    }

    fn view(id: String, level: AccessLevel) -> Result<CredentialView, PoolError> {
        with_state(|s| {
            let record = s
                .records
                .get(&id)
                .ok_or_else(|| PoolError::CredentialNotFound(id.clone()))?;
            Ok(views::view(record, level, s.leases_of(&id), now()))
        })
    }

    fn list(filter: ListFilter, level: AccessLevel) -> Result<Vec<CredentialView>, PoolError> {
        let now = now();
        with_state(|s| {
            let after = filter.after.unwrap_or_default();
            Ok(s.records
                .values()
                .filter(|r| r.id > after)
                .filter(|r| filter.site.as_ref().is_none_or(|site| r.site == *site))
                .filter(|r| filter.kind.is_none_or(|k| r.kind() == k))
                .filter(|r| filter.status.is_none_or(|st| r.status(now) == st))
                .filter(|r| filter.tag.as_ref().is_none_or(|t| r.tags.contains(t)))
                .take(filter.limit.map_or(usize::MAX, |n| n as usize))
                .map(|r| views::view(r, level, s.leases_of(&r.id), now))
                .collect())
        })
    }

    fn stats(site: Option<String>) -> Result<Vec<SiteStats>, PoolError> {
        let now = now();
        with_state(|s| {
            let mut sites: Vec<String> = s.records.values().map(|r| r.site.clone()).collect();
            sites.sort();
            sites.dedup();
            if let Some(only) = site {
                sites.retain(|s| *s == only);
            }
            Ok(sites
                .iter()
                .map(|site| {
                    let open = s
                        .leases
                        .values()
                        .filter(|l| s.records.get(&l.id).is_some_and(|r| r.site == *site))
                        .count() as u32;
                    let records = s.records.values().filter(|r| r.site == *site);
                    views::site_stats(site, records, open, s.counters.get(site), now)
                })
                .collect())
        })
    }

    fn tick() -> Result<TickSummary, PoolError> {
        let now = now();
        with_state(|s| {
            let leases_expired = s.lapse_leases(now)?;
            let mut cooldowns_ended = 0;
            for record in s.records.values_mut() {
                if record.rest_until.is_some_and(|until| until <= now) {
                    record.rest_until = None;
                    records::save(record)?;
                    cooldowns_ended += 1;
                }
            }
            let rests = s.records.values().filter_map(|r| r.rest_until);
            let lease_ends = s.leases.values().map(|l| l.expires_at);
            Ok(TickSummary {
                leases_expired,
                cooldowns_ended,
                refreshes_started: 0,
                tickets_timed_out: 0,
                next_due_at: rests.chain(lease_ends).min(),
            })
        })
    }

    fn flush() -> Result<u32, PoolError> {
        // Every write above is durable when made: nothing waits here.
        Ok(0)
    }

    fn refresh_completed(_finished: RefreshResult) -> Result<Status, PoolError> {
        Err(PoolError::Unsupported(
            "refresh: this policy starts none".into(),
        ))
    }

    fn tickets() -> Result<Vec<Ticket>, PoolError> {
        Ok(Vec::new())
    }

    fn resolve_challenge(
        ticket_id: String,
        _resolution: ChallengeResolution,
    ) -> Result<Status, PoolError> {
        Err(PoolError::TicketNotFound(ticket_id))
    }

    fn unban(id: String) -> Result<CredentialMeta, PoolError> {
        let now = now();
        with_state(|s| {
            let record = s
                .records
                .get_mut(&id)
                .ok_or_else(|| PoolError::CredentialNotFound(id.clone()))?;
            let status = record.status(now);
            if status != Status::Suspended {
                return Err(PoolError::IllegalTransition(IllegalTransition {
                    from: status,
                    event: "unban".into(),
                }));
            }
            record.rest_until = None;
            record.used_ok = true;
            records::save(record)?;
            Ok(views::meta(record, now))
        })
    }

    fn reset_challenge(id: String) -> Result<CredentialMeta, PoolError> {
        let now = now();
        with_state(|s| {
            let record = s
                .records
                .get(&id)
                .ok_or_else(|| PoolError::CredentialNotFound(id.clone()))?;
            Err(PoolError::IllegalTransition(IllegalTransition {
                from: record.status(now),
                event: "reset-challenge".into(),
            }))
        })
    }
}

export!(Minimal);
