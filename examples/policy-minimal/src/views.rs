//! The records the host reads back: a credential's metadata, its view at
//! an access level, and a site's counts. This policy keeps no names or
//! personal data, so its views stop at the `internal` level.

use crate::credpool::policy::types::{
    AccessLevel, CredentialMeta, FailureClass, Status, Timestamp,
};
use crate::exports::credpool::policy::pool::{
    AnswerTimeStats, CredentialView, InternalView, RefreshStats, SiteStats, StatusCounts,
};
use crate::records::Record;

/// Health is all or nothing here: 0 while resting after a block, else 100.
pub fn health(record: &Record, now: Timestamp) -> u8 {
    if record.status(now) == Status::Suspended {
        0
    } else {
        100
    }
}

/// The contract's full record of a credential.
pub fn meta(record: &Record, now: Timestamp) -> CredentialMeta {
    CredentialMeta {
        id: record.id.clone(),
        site: record.site.clone(),
        kind: record.kind(),
        status: record.status(now),
        created_at: record.created_at,
        last_used_at: record.last_used_at,
        expires_at: None,
        cooldown_until: resting_until(record, now),
        use_count: record.use_count,
        success_count: record.success_count,
        fail_count: record.fail_count,
        consecutive_failures: 0,
        health: health(record, now),
        tags: record.tags.clone(),
        username: None,
        phone: None,
        email: None,
        cookie_names: Vec::new(),
        header_names: Vec::new(),
        secret_fields: Vec::new(),
        token_scope: Vec::new(),
        source_account: None,
        max_concurrent: Some(1),
        rate_per_minute: None,
        labels: Vec::new(),
        token_type: None,
        local_storage_names: Vec::new(),
        device_id: None,
        fingerprint: None,
        user_agent: None,
        two_factor: false,
    }
}

/// When its rest ends, if it is resting at `now`.
pub fn resting_until(record: &Record, now: Timestamp) -> Option<Timestamp> {
    record.rest_until.filter(|until| *until > now)
}

/// A credential as `level` may see it.
pub fn view(
    record: &Record,
    level: AccessLevel,
    open_leases: u32,
    now: Timestamp,
) -> CredentialView {
    let internal = (level != AccessLevel::Public).then(|| InternalView {
        created_at: record.created_at,
        last_used_at: record.last_used_at,
        expires_at: None,
        cooldown_until: resting_until(record, now),
        use_count: record.use_count,
        success_count: record.success_count,
        fail_count: record.fail_count,
        consecutive_failures: 0,
        open_leases,
        max_concurrent: 1,
        rate_per_minute: None,
        tags: record.tags.clone(),
        labels: Vec::new(),
        source_account: None,
        token_type: None,
        two_factor: false,
    });
    CredentialView {
        level,
        id: record.id.clone(),
        site: record.site.clone(),
        kind: record.kind(),
        status: record.status(now),
        health: health(record, now),
        internal,
        sensitive: None,
    }
}

/// What one site's acquires and reports came to since the instance started.
#[derive(Default)]
pub struct SiteCounters {
    pub granted: u64,
    pub refused: u64,
    pub failures: Vec<(FailureClass, u64)>,
}

impl SiteCounters {
    pub fn failed(&mut self, class: FailureClass) {
        match self.failures.iter_mut().find(|(c, _)| *c == class) {
            Some((_, n)) => *n += 1,
            None => self.failures.push((class, 1)),
        }
    }
}

/// A site's state: its credentials by status and this instance's counters.
pub fn site_stats<'a>(
    site: &str,
    records: impl Iterator<Item = &'a Record>,
    open_leases: u32,
    counters: Option<&SiteCounters>,
    now: Timestamp,
) -> SiteStats {
    let mut by_status = StatusCounts {
        init: 0,
        active: 0,
        cooling: 0,
        challenged: 0,
        suspended: 0,
        banned: 0,
        expired: 0,
    };
    let (mut total, mut successes) = (0, 0);
    for record in records {
        total += 1;
        successes += record.success_count;
        match record.status(now) {
            Status::Init => by_status.init += 1,
            Status::Active => by_status.active += 1,
            _ => by_status.suspended += 1,
        }
    }
    SiteStats {
        site: site.to_string(),
        total,
        by_status,
        open_leases,
        granted: counters.map_or(0, |c| c.granted),
        refused: counters.map_or(0, |c| c.refused),
        successes,
        failures: counters.map_or_else(Vec::new, |c| c.failures.clone()),
        refresh: RefreshStats {
            attempts: 0,
            succeeded: 0,
            failed: 0,
            in_flight: 0,
        },
        refresh_by_method: Vec::new(),
        answer_times: AnswerTimeStats {
            answered: 0,
            mean_ms: 0,
            max_ms: 0,
        },
        open_tickets: 0,
        anomalies: Vec::new(),
        pace_per_minute: None,
        needs_person: Vec::new(),
        needs_person_total: 0,
    }
}
