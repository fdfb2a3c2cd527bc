//! Credentials and per-site stats as each access level may see them.

use super::Pool;
use super::index::{max_concurrent, rate_of};
use crate::mask::mask;
use crate::model::*;
use crate::packed;
use crate::ports::Host;
use crate::standing::{NEVER, Standing};
use crate::words::site_key;

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
    pub token_type: Option<String>,
    pub two_factor: bool,
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
    pub local_storage_names: Vec<String>,
    pub device_id: Option<String>,
    pub fingerprint: Option<String>,
    pub user_agent: Option<String>,
}

impl<H: Host> Pool<H> {
    /// One credential's record.
    pub fn get(&self, id: &str) -> Result<Credential, PoolError> {
        let slot = self.slot_of(id)?;
        Ok(self.snapshot(slot, &self.rec(slot).m))
    }

    /// The credential's record with `m` as its changing fields.
    pub(super) fn snapshot(&self, slot: u32, m: &Standing) -> Credential {
        let r = self.rec(slot);
        let x = r.extra.as_deref().map(packed::unpack).unwrap_or_default();
        let time = |t: Millis| (t != NEVER).then_some(t);
        Credential {
            id: r.id.to_string(),
            site: self.sites[r.site as usize].name.clone(),
            kind: r.kind,
            status: m.status,
            created_at: r.created_at,
            last_used_at: time(r.last_used_at),
            expires_at: time(r.expires_at),
            cooldown_until: time(m.cooldown_until),
            use_count: r.use_count,
            success_count: m.success_count,
            fail_count: m.fail_count,
            consecutive_failures: m.consecutive_failures,
            health: m.health,
            tags: r.tags.to_vec(),
            username: x.username,
            phone: x.phone,
            email: x.email,
            cookie_names: x.cookie_names,
            header_names: x.header_names,
            secret_fields: x.secret_fields,
            token_scope: x.token_scope,
            source_account: x.source_account,
            max_concurrent: (r.max_concurrent != 0).then_some(r.max_concurrent),
            rate_per_minute: (r.rate_per_minute != 0).then_some(r.rate_per_minute),
            labels: x.labels,
            block_streak: u32::from(m.block_streak),
            rate_limit_streak: u32::from(m.rate_limit_streak),
            pace_per_minute: r.pace.round() as u32,
            logged_in_at: time(r.logged_in_at),
            token_type: x.token_type,
            local_storage_names: x.local_storage_names,
            device_id: x.device_id,
            fingerprint: x.fingerprint,
            user_agent: x.user_agent,
            two_factor: x.two_factor,
        }
    }

    /// The credential as `level` may see it.
    pub fn view(&self, id: &str, level: AccessLevel) -> Result<View, PoolError> {
        let slot = self.slot_of(id)?;
        Ok(self.make_view(slot, level))
    }

    /// Credentials matching `filter`, in id order.
    pub fn list(&self, filter: &ListFilter, level: AccessLevel) -> Vec<View> {
        let mut slots: Vec<u32> = match &filter.site {
            Some(site) => self
                .site_index(site)
                .map(|si| self.sites[si as usize].members.clone())
                .unwrap_or_default(),
            None => self.by_id.values().copied().collect(),
        };
        slots.sort_by(|a, b| self.rec(*a).id.cmp(&self.rec(*b).id));
        let limit = filter.limit.map(|l| l as usize).unwrap_or(usize::MAX);
        slots
            .into_iter()
            .map(|s| (s, self.rec(s)))
            .filter(|(_, r)| filter.after.as_deref().is_none_or(|a| &*r.id > a))
            .filter(|(_, r)| filter.kind.is_none_or(|k| r.kind == k))
            .filter(|(_, r)| filter.status.is_none_or(|s| r.m.status == s))
            .filter(|(_, r)| filter.tag.as_ref().is_none_or(|t| r.tags.contains(t)))
            .take(limit)
            .map(|(s, _)| self.make_view(s, level))
            .collect()
    }

    fn make_view(&self, slot: u32, level: AccessLevel) -> View {
        let r = self.rec(slot);
        let c = self.snapshot(slot, &r.m);
        let internal = (level >= AccessLevel::Internal).then(|| InternalView {
            created_at: c.created_at,
            last_used_at: c.last_used_at,
            expires_at: c.expires_at,
            cooldown_until: c.cooldown_until,
            use_count: c.use_count,
            success_count: c.success_count,
            fail_count: c.fail_count,
            consecutive_failures: c.consecutive_failures,
            open_leases: r.open_leases,
            max_concurrent: max_concurrent(r),
            rate_per_minute: rate_of(r, &self.config).map(|r| r.per_minute),
            tags: c.tags.clone(),
            labels: c.labels.clone(),
            source_account: c.source_account.clone(),
            token_type: c.token_type.clone(),
            two_factor: c.two_factor,
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
            local_storage_names: c.local_storage_names.clone(),
            device_id: c.device_id.clone(),
            fingerprint: c.fingerprint.clone(),
            user_agent: c.user_agent.clone(),
        });
        View {
            level,
            id: c.id,
            site: c.site,
            kind: c.kind,
            status: c.status,
            health: c.health,
            internal,
            sensitive,
        }
    }

    /// Per-site state from counters; one site or all. O(sites), plus a walk
    /// of the sites with banned, expired or challenged members for the
    /// ones that wait on a person.
    pub fn stats(&self, site: Option<&str>) -> Vec<SiteStats> {
        let mut out: Vec<SiteStats> = self
            .sites
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.members.is_empty())
            .filter(|(_, s)| site.is_none_or(|name| site_key(name) == s.name))
            .map(|(si, s)| (s, self.needs_person(si)))
            .map(|(s, (needs_person, needs_person_total))| SiteStats {
                site: s.name.clone(),
                total: s.members.len() as u32,
                by_status: s.by_status,
                open_leases: s.open_leases,
                granted: s.counters.granted,
                refused: s.counters.refused,
                successes: s.counters.successes,
                failures: s.counters.failures.iter().map(|(k, v)| (*k, *v)).collect(),
                anomalies: s.anomalies.clone(),
                refresh_attempts: s.counters.refresh_attempts,
                refresh_succeeded: s.counters.refresh_succeeded,
                refresh_failed: s.counters.refresh_failed,
                refresh_in_flight: s.counters.refresh_in_flight,
                refresh_by_method: s
                    .counters
                    .refresh_by_method
                    .iter()
                    .map(|(m, c)| MethodStats {
                        method: *m,
                        counts: *c,
                    })
                    .collect(),
                answer_times: s.counters.answer_times,
                open_tickets: 0,
                pace_per_minute: self.site_pace(s),
                needs_person,
                needs_person_total,
            })
            .collect();
        for t in self.lc.open_tickets() {
            if let Some(s) = out.iter_mut().find(|s| s.site == t.site) {
                s.open_tickets += 1;
            }
        }
        out.sort_by(|a, b| a.site.cmp(&b.site));
        out
    }
}
