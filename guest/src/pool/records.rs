//! Members in and out: adding a credential, placing a record in memory and
//! its site's indexes, removing one, and a configuration change that
//! re-indexes.

use super::index::strategy_weight;
use super::lifecycle::lifecycle_config;
use super::persist::{FREE_PLACE, TICKET_PREFIX, cred_key, hold_key, write_cred};
use super::{Avail, Pool, Record, Site, status_slot};
use crate::anomaly::SuccessRate;
use crate::config::{PolicyConfig, Strategy};
use crate::lifecycle::{Closure, Lifecycle};
use crate::model::*;
use crate::packed::{self, Extra};
use crate::ports::{Host, Level};
use crate::standing::{NEVER, Standing};
use crate::words::site_key;

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
    // A name is part of a store key, where the host refuses a `.` or
    // `..` segment.
    if v == "." || v == ".." {
        return Err(PoolError::invalid(field, "must not be `.` or `..`"));
    }
    Ok(v.to_string())
}

/// The card's data fields: a token type only on a token and a token by
/// RFC 9110's rules (it is sent before the token); names, ids and the user
/// agent free of control characters (they end up in headers and logs).
fn validate_card_fields(mut new: NewCredential, kind: Kind) -> Result<NewCredential, PoolError> {
    if let Some(t) = &new.token_type {
        if kind != Kind::Token {
            return Err(PoolError::invalid(
                "token_type",
                "only a token has a token type",
            ));
        }
        let t = t.trim();
        if t.is_empty() || t.len() > 40 || !t.bytes().all(is_token_byte) {
            return Err(PoolError::invalid(
                "token_type",
                "must be a single word such as Bearer, up to 40 characters",
            ));
        }
        new.token_type = Some(t.to_string());
    }
    for name in &new.local_storage_names {
        validate_name("local_storage", name)?;
    }
    for (field, value) in [
        ("device_id", &mut new.device_id),
        ("fingerprint", &mut new.fingerprint),
    ] {
        if let Some(v) = value {
            *v = validate_name(field, v)?;
        }
    }
    if let Some(ua) = &new.user_agent {
        let ua = ua.trim();
        if ua.is_empty() || ua.len() > 1000 || ua.chars().any(char::is_control) {
            return Err(PoolError::invalid(
                "user_agent",
                "must be one line of at most 1000 bytes",
            ));
        }
        new.user_agent = Some(ua.to_string());
    }
    Ok(new)
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl<H: Host> Pool<H> {
    /// Sets the configuration; rebuilds the indexes of sites whose strategy
    /// changed (O(n), at configure time only).
    pub fn set_config(&mut self, config: PolicyConfig) {
        let lifecycle_changed = config.lifecycle != self.config.lifecycle;
        self.config = config;
        let now = self.host.now();
        if lifecycle_changed {
            // Rebuild the schedule under the new timing; open tickets stay.
            let tickets = self.lc.open_tickets();
            self.lc = Lifecycle::new(lifecycle_config(&self.config));
            for t in tickets {
                self.lc.restore_ticket(t);
            }
            // Running refreshes are forgotten: their results will be stale.
            for site in &mut self.sites {
                site.counters.refresh_in_flight = 0;
            }
            for slot in 0..self.records.len() as u32 {
                if self.records[slot as usize].is_some() {
                    self.track(slot, now);
                }
            }
        }
        for si in 0..self.sites.len() {
            let strategy = self.config.strategy_for(&self.sites[si].name);
            if strategy == self.sites[si].strategy {
                continue;
            }
            let site = &mut self.sites[si];
            site.strategy = strategy;
            site.lru.clear();
            site.sticky.clear();
            for &slot in &site.members {
                let rec = self.records[slot as usize].as_mut().expect("member");
                let w = if rec.avail == Avail::Ready {
                    strategy_weight(strategy, rec.m.health)
                } else {
                    0
                };
                site.weights
                    .add(rec.pos as usize, i64::from(w) - i64::from(rec.weight));
                rec.weight = w;
                if strategy == Strategy::LeastRecentlyUsed && rec.avail == Avail::Ready {
                    site.lru.insert((rec.last_used_at, slot));
                }
            }
        }
        for slot in 0..self.records.len() as u32 {
            if self.records[slot as usize].is_some() {
                self.refresh(slot, now);
            }
        }
    }

    /// Adds a credential; the record is durable when this returns.
    pub fn add(&mut self, new: NewCredential) -> Result<Credential, PoolError> {
        let site = site_key(&validate_name("site", &new.site)?).into_owned();
        let kind = new
            .kind
            .ok_or_else(|| PoolError::invalid("kind", "missing"))?;
        let mut new = validate_card_fields(new, kind)?;
        let id = match new.id.take() {
            Some(id) => validate_name("id", &id)?,
            None => self.fresh_id(kind),
        };
        if self.by_id.contains_key(id.as_str()) {
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
        let now = self.host.now();
        let cred = Credential {
            id: id.clone(),
            site: site.clone(),
            kind,
            // Already past its expiry (an old cookie export): said so.
            status: match new.expires_at {
                Some(t) if t <= now => Status::Expired,
                _ => Status::Init,
            },
            created_at: now,
            last_used_at: None,
            expires_at: new.expires_at,
            cooldown_until: None,
            use_count: 0,
            success_count: 0,
            fail_count: 0,
            consecutive_failures: 0,
            health: self.config.initial_health,
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
            block_streak: 0,
            rate_limit_streak: 0,
            pace_per_minute: 0,
            logged_in_at: None,
            token_type: new.token_type,
            local_storage_names: new.local_storage_names,
            device_id: new.device_id,
            fingerprint: new.fingerprint,
            user_agent: new.user_agent,
            two_factor: new.two_factor,
        };
        let (ctr, tag) = self.new_place();
        let written = write_cred(&mut self.host, &cred, ctr, tag, true);
        if let Err(e) = written {
            self.ctr_free.push(ctr);
            return Err(e);
        }
        self.insert(cred.clone(), ctr, tag, now);
        self.log(
            Level::Info,
            "cred.added",
            &[("id", cred.id.clone()), ("site", cred.site.clone())],
        );
        Ok(cred)
    }

    /// Puts a record into memory and its site's indexes (no I/O).
    pub(super) fn insert(&mut self, c: Credential, ctr: u32, ctr_tag: u32, now: Millis) -> u32 {
        // A record stored before site names were normalised joins its
        // site under the one name (and is written back under it).
        let si = match self.site_index(&c.site) {
            Some(si) => si,
            None => {
                let name = site_key(&c.site).into_owned();
                let si = self.sites.len() as u32;
                let strategy = self.config.strategy_for(&name);
                self.sites.push(Site::new(&name, strategy));
                self.site_by_name.insert(name, si);
                si
            }
        };
        let slot = self.records.len() as u32;
        let extra = Extra {
            username: c.username,
            phone: c.phone,
            email: c.email,
            cookie_names: c.cookie_names,
            header_names: c.header_names,
            secret_fields: c.secret_fields,
            token_scope: c.token_scope,
            source_account: c.source_account,
            labels: c.labels,
            token_type: c.token_type,
            local_storage_names: c.local_storage_names,
            device_id: c.device_id,
            fingerprint: c.fingerprint,
            user_agent: c.user_agent,
            two_factor: c.two_factor,
        };
        let site = &mut self.sites[si as usize];
        let rec = Record {
            id: c.id.into_boxed_str(),
            tags: c.tags.into_boxed_slice(),
            extra: packed::pack(&extra),
            m: Standing {
                status: c.status,
                health: c.health,
                block_streak: c.block_streak.min(255) as u8,
                rate_limit_streak: c.rate_limit_streak.min(255) as u8,
                consecutive_failures: c.consecutive_failures,
                cooldown_until: c.cooldown_until.unwrap_or(NEVER),
                success_count: c.success_count,
                fail_count: c.fail_count,
            },
            created_at: c.created_at,
            last_used_at: c.last_used_at.unwrap_or(NEVER),
            expires_at: c.expires_at.unwrap_or(NEVER),
            use_count: c.use_count,
            next_use_at: 0,
            wake_at: NEVER,
            success: SuccessRate::default(),
            site: si,
            pos: site.members.len() as u32,
            open_leases: 0,
            max_concurrent: c.max_concurrent.unwrap_or(0),
            rate_per_minute: c.rate_per_minute.unwrap_or(0),
            pace: c.pace_per_minute as f32,
            pace_refused: c.pace_per_minute as f32,
            achieved: Default::default(),
            kind: c.kind,
            // Counted as banned until `refresh` places it.
            avail: Avail::Banned,
            weight: 0,
            low_health_flagged: false,
            ctr,
            ctr_tag,
            logged_in_at: c.logged_in_at.unwrap_or(NEVER),
            checked_at: NEVER,
        };
        if rec.purpose_labels().next().is_some() {
            site.purpose_bound += 1;
        }
        site.members.push(slot);
        site.weights.push(0);
        site.by_status[status_slot(rec.m.status)] += 1;
        site.by_avail[Avail::Banned as usize] += 1;
        self.by_id.insert(rec.id.clone(), slot);
        if let Some(place) = self.ctr_slots.get_mut(ctr as usize) {
            *place = slot;
        }
        self.records.push(Some(rec));
        self.refresh(slot, now);
        self.track(slot, now);
        slot
    }

    /// Removes a credential and its leases.
    pub fn remove(&mut self, id: &str) -> Result<(), PoolError> {
        let slot = self.slot_of(id)?;
        self.host.delete(&cred_key(id))?;
        let now = self.host.now();
        let seqs: Vec<u64> = self
            .leases
            .iter()
            .filter(|(_, l)| l.slot == slot)
            .map(|(s, _)| *s)
            .collect();
        for seq in seqs {
            self.end_lease(seq, now);
        }
        if self.lc.in_flight(id) {
            // Its result will find nothing to apply.
            let si = self.rec(slot).site as usize;
            let c = &mut self.sites[si].counters;
            c.refresh_in_flight = c.refresh_in_flight.saturating_sub(1);
        }
        if self.lc.is_held(id) {
            self.host.delete(&hold_key(id))?;
        }
        for ticket in self.lc.untrack(id) {
            self.host.delete(&format!("{TICKET_PREFIX}{ticket}"))?;
            self.host.close_ticket(&ticket, Closure::Cancelled);
        }
        // Its page is rewritten without it at the next flush.
        self.touch(slot);
        let rec = self.records[slot as usize].take().expect("live slot");
        self.ctr_slots[rec.ctr as usize] = FREE_PLACE;
        self.ctr_free.push(rec.ctr);
        self.by_id.remove(id);
        let site = &mut self.sites[rec.site as usize];
        site.by_status[status_slot(rec.m.status)] -= 1;
        site.by_avail[rec.avail as usize] -= 1;
        if rec.avail == Avail::Ready {
            site.ready -= 1;
            site.lru.remove(&(rec.last_used_at, slot));
        }
        if rec.purpose_labels().next().is_some() {
            site.purpose_bound -= 1;
        }
        site.sticky.retain(|_, s| *s != slot);
        site.unflag(AlertKind::LowHealth, Some(id));
        site.unflag(AlertKind::SuccessRateDrop, Some(id));
        // Swap the last member into the hole, in members and weights.
        let pos = rec.pos as usize;
        let last = site.members.len() - 1;
        site.weights.add(pos, -i64::from(rec.weight));
        if pos != last {
            let moved = site.members[last];
            let moved_rec = self.records[moved as usize].as_mut().expect("member");
            site.weights.add(last, -i64::from(moved_rec.weight));
            site.weights.add(pos, i64::from(moved_rec.weight));
            moved_rec.pos = pos as u32;
            site.members[pos] = moved;
        }
        site.members.pop();
        site.weights.pop();
        self.log(Level::Info, "cred.removed", &[("id", id.to_string())]);
        Ok(())
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
            if !self.by_id.contains_key(id.as_str()) {
                return id;
            }
        }
    }
}
