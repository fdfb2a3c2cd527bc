//! The only module that touches generated WIT types: it implements the
//! ports over the imports, keeps the tenant's pool in a global, and converts
//! between the policy's types and the contract's.

use crate::config::PolicyConfig;
use crate::lifecycle as lc;
use crate::model as m;
use crate::pool::{Pool, View};
use crate::ports::{Clock, Level, Log, Notify, Random, Refresh, SplitMix, Store};
use std::cell::RefCell;

wit_bindgen::generate!({
    path: "../wit",
    world: "policy",
});

use credpool::policy::{
    log as wlog, notify as wnotify, refresh as wrefresh, store as wstore, types as t,
};
use exports::credpool::policy::pool as p;

/// The ports over the component's imports.
struct WasiHost {
    rng: SplitMix,
    log_floor: Option<Level>,
}

impl WasiHost {
    fn new() -> Self {
        let mut seed = [0u8; 8];
        // wasi:random; a failure would leave a fixed seed, which only makes
        // picks predictable, never unsafe: secrets are not in the guest.
        let _ = getrandom::fill(&mut seed);
        WasiHost {
            rng: SplitMix(u64::from_le_bytes(seed)),
            log_floor: None,
        }
    }
}

impl Store for WasiHost {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, m::StoreError> {
        wstore::get(key).map_err(store_err)
    }
    fn set(&mut self, key: &str, value: &[u8], durable: bool) -> Result<(), m::StoreError> {
        if durable {
            wstore::set(key, value).map_err(store_err)
        } else {
            wstore::set_lazy(key, value).map_err(store_err)
        }
    }
    fn delete(&mut self, key: &str) -> Result<bool, m::StoreError> {
        wstore::delete(key).map_err(store_err)
    }
    fn scan(
        &mut self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<(String, Vec<u8>)>, Option<String>), m::StoreError> {
        let page = wstore::scan(prefix, after, limit).map_err(store_err)?;
        Ok((page.entries, page.next))
    }
}

impl Clock for WasiHost {
    fn now(&self) -> m::Millis {
        // std's SystemTime is wasi:clocks/wall-clock here.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

impl Random for WasiHost {
    fn next_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }
}

impl Log for WasiHost {
    fn enabled(&self, level: Level) -> bool {
        // Asked once per level and cached: the answer does not change while
        // an instance lives, and the hot path should not cross the boundary.
        self.log_floor.is_some_and(|floor| level >= floor)
    }
    fn event(&mut self, level: Level, name: &str, fields: &[(&str, String)]) {
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        wlog::event(to_wlevel(level), name, &fields);
    }
}

impl Notify for WasiHost {
    fn raise(&mut self, alert: &m::Alert) {
        wnotify::raise(&wnotify::Alert {
            kind: to_alert_kind(alert.kind),
            severity: match alert.severity {
                m::Severity::Info => wnotify::Severity::Info,
                m::Severity::Warning => wnotify::Severity::Warning,
                m::Severity::Critical => wnotify::Severity::Critical,
            },
            site: alert.site.clone(),
            credential_id: alert.credential_id.clone(),
            message: alert.message.clone(),
            raised_at: alert.raised_at,
        });
    }
    fn open_ticket(&mut self, ticket: &lc::Ticket, masked_contact: Option<String>) {
        wnotify::open_ticket(&wnotify::Ticket {
            id: ticket.id.clone(),
            kind: to_challenge(ticket.kind),
            credential_id: ticket.credential_id.clone(),
            site: ticket.site.clone(),
            masked_contact,
            created_at: ticket.created_at,
            deadline: ticket.deadline,
        });
    }
    fn close_ticket(&mut self, id: &str, closure: lc::Closure) {
        wnotify::close_ticket(
            id,
            match closure {
                lc::Closure::Answered => wnotify::TicketClosure::Answered,
                lc::Closure::TimedOut => wnotify::TicketClosure::TimedOut,
                lc::Closure::Cancelled => wnotify::TicketClosure::Cancelled,
            },
        );
    }
}

impl Refresh for WasiHost {
    fn start_refresh(&mut self, r: &lc::StartRefresh) -> Result<(), String> {
        wrefresh::start(&wrefresh::RefreshRequest {
            request_id: r.request_id,
            credential_id: r.credential_id.clone(),
            site: r.site.clone(),
            method: to_method(r.method),
            ticket_id: r.ticket_id.clone(),
        })
        .map_err(|e| match e {
            wrefresh::StartError::NotConfigured(s) => format!("not configured: {s}"),
            wrefresh::StartError::Busy => "busy".to_string(),
        })
    }
}

fn to_alert_kind(k: m::AlertKind) -> wnotify::AlertKind {
    match k {
        m::AlertKind::SuccessRateDrop => wnotify::AlertKind::SuccessRateDrop,
        m::AlertKind::BlockBurst => wnotify::AlertKind::BlockBurst,
        m::AlertKind::LowHealth => wnotify::AlertKind::LowHealth,
        m::AlertKind::Banned => wnotify::AlertKind::Banned,
        m::AlertKind::PoolExhausted => wnotify::AlertKind::PoolExhausted,
        m::AlertKind::RefreshFailed => wnotify::AlertKind::RefreshFailed,
        m::AlertKind::TicketTimedOut => wnotify::AlertKind::TicketTimedOut,
    }
}

fn lowest_enabled_level() -> Option<Level> {
    [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
    ]
    .into_iter()
    .find(|l| wlog::enabled(to_wlevel(*l)))
}

fn to_wlevel(l: Level) -> wlog::Level {
    match l {
        Level::Trace => wlog::Level::Trace,
        Level::Debug => wlog::Level::Debug,
        Level::Info => wlog::Level::Info,
        Level::Warn => wlog::Level::Warn,
        Level::Error => wlog::Level::Error,
    }
}

thread_local! {
    static POOL: RefCell<Option<Pool<WasiHost>>> = const { RefCell::new(None) };
}

/// Runs `f` on the tenant's pool, loading it with defaults on first use.
fn with_pool<T>(
    f: impl FnOnce(&mut Pool<WasiHost>) -> Result<T, m::PoolError>,
) -> Result<T, t::PoolError> {
    POOL.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(load(PolicyConfig::default())?);
        }
        f(slot.as_mut().expect("loaded")).map_err(pool_err)
    })
}

fn load(config: PolicyConfig) -> Result<Pool<WasiHost>, t::PoolError> {
    let mut host = WasiHost::new();
    host.log_floor = lowest_enabled_level();
    Pool::load(host, config).map_err(pool_err)
}

struct Component;

impl p::Guest for Component {
    fn configure(config_json: String) -> Result<(), t::PoolError> {
        let config = PolicyConfig::from_json(&config_json).map_err(pool_err)?;
        POOL.with(|cell| {
            let mut slot = cell.borrow_mut();
            match slot.as_mut() {
                Some(pool) => pool.set_config(config),
                None => *slot = Some(load(config)?),
            }
            Ok(())
        })
    }

    fn add(credential: t::NewCredential) -> Result<t::CredentialMeta, t::PoolError> {
        let new = from_new(credential);
        with_pool(|pool| pool.add(new)).map(into_meta)
    }

    fn remove(id: String) -> Result<(), t::PoolError> {
        with_pool(|pool| pool.remove(&id))
    }

    fn report_and_acquire(
        lease: t::LeaseId,
        outcome: t::Outcome,
        next: p::RequestHandle,
    ) -> Result<(p::ReportEffect, p::AcquireResponse), t::PoolError> {
        let (effect, resp) = with_pool(|pool| {
            pool.report_and_acquire(from_lease_id(lease), from_outcome(outcome), next)
        })?;
        Ok((to_effect(effect), to_response(resp)))
    }

    fn prepare(request: p::AcquireRequest) -> Result<p::RequestHandle, t::PoolError> {
        with_pool(|pool| pool.prepare(from_request(request)))
    }

    fn acquire_prepared(request: p::RequestHandle) -> Result<p::AcquireResponse, t::PoolError> {
        with_pool(|pool| pool.acquire_prepared(request)).map(to_response)
    }

    fn acquire(request: p::AcquireRequest) -> Result<p::AcquireResponse, t::PoolError> {
        let req = from_request(request);
        with_pool(|pool| pool.acquire(&req)).map(to_response)
    }

    fn report(lease: t::LeaseId, outcome: t::Outcome) -> Result<p::ReportEffect, t::PoolError> {
        let outcome = from_outcome(outcome);
        with_pool(|pool| pool.report(from_lease_id(lease), outcome)).map(to_effect)
    }

    fn release(lease: t::LeaseId) -> Result<(), t::PoolError> {
        with_pool(|pool| pool.release(from_lease_id(lease)))
    }

    fn credential_id(credential: t::CredentialHandle) -> Option<String> {
        with_pool(|pool| Ok(pool.credential_id(credential).map(str::to_string))).unwrap_or(None)
    }

    fn view(id: String, level: t::AccessLevel) -> Result<p::CredentialView, t::PoolError> {
        let level = from_level(level);
        with_pool(|pool| pool.view(&id, level)).map(to_view)
    }

    fn list(
        filter: p::ListFilter,
        level: t::AccessLevel,
    ) -> Result<Vec<p::CredentialView>, t::PoolError> {
        let filter = m::ListFilter {
            site: filter.site,
            kind: filter.kind.map(from_kind),
            status: filter.status.map(from_status),
            tag: filter.tag,
            after: filter.after,
            limit: filter.limit,
        };
        let level = from_level(level);
        with_pool(|pool| Ok(pool.list(&filter, level)))
            .map(|v| v.into_iter().map(to_view).collect())
    }

    fn stats(site: Option<String>) -> Result<Vec<p::SiteStats>, t::PoolError> {
        let stats = with_pool(|pool| Ok(pool.stats(site.as_deref())))?;
        Ok(stats
            .into_iter()
            .map(|s| {
                let b = s.by_status;
                p::SiteStats {
                    site: s.site,
                    total: s.total,
                    by_status: p::StatusCounts {
                        init: b[0],
                        active: b[1],
                        cooling: b[2],
                        challenged: b[3],
                        suspended: b[4],
                        banned: b[5],
                        expired: b[6],
                    },
                    open_leases: s.open_leases,
                    granted: s.granted,
                    refused: s.refused,
                    successes: s.successes,
                    failures: s
                        .failures
                        .into_iter()
                        .map(|(c, n)| (to_class(c), n))
                        .collect(),
                    refresh: p::RefreshStats {
                        attempts: s.refresh_attempts,
                        succeeded: s.refresh_succeeded,
                        failed: s.refresh_failed,
                        in_flight: s.refresh_in_flight,
                    },
                    refresh_by_method: s
                        .refresh_by_method
                        .iter()
                        .map(|m| p::MethodRefreshStats {
                            method: to_method(m.method),
                            attempts: m.counts.attempts,
                            succeeded: m.counts.succeeded,
                            failed: m.counts.failed,
                        })
                        .collect(),
                    answer_times: p::AnswerTimeStats {
                        answered: s.answer_times.answered,
                        mean_ms: s.answer_times.mean_ms().unwrap_or(0),
                        max_ms: s.answer_times.max_ms,
                    },
                    open_tickets: s.open_tickets,
                    pace_per_minute: s.pace_per_minute,
                    anomalies: s
                        .anomalies
                        .into_iter()
                        .map(|a| p::Anomaly {
                            kind: to_alert_kind(a.kind),
                            credential_id: a.credential_id,
                            detected_at: a.detected_at,
                            detail: a.detail,
                        })
                        .collect(),
                    needs_person: s
                        .needs_person
                        .into_iter()
                        .map(|n| p::PersonAction {
                            credential_id: n.credential_id,
                            status: to_status(n.status),
                            action: n.action,
                        })
                        .collect(),
                    needs_person_total: s.needs_person_total,
                }
            })
            .collect())
    }

    fn tick() -> Result<p::TickSummary, t::PoolError> {
        let s = with_pool(|pool| pool.tick())?;
        Ok(p::TickSummary {
            leases_expired: s.leases_expired,
            cooldowns_ended: s.cooldowns_ended,
            refreshes_started: s.refreshes_started,
            tickets_timed_out: s.tickets_timed_out,
            next_due_at: s.next_due_at,
        })
    }

    fn flush() -> Result<u32, t::PoolError> {
        with_pool(|pool| pool.flush())
    }

    fn refresh_completed(finished: wrefresh::RefreshResult) -> Result<t::Status, t::PoolError> {
        use wrefresh::RefreshFailure as F;
        let outcome = match finished.outcome {
            wrefresh::RefreshOutcome::Refreshed(expiry) => lc::RunOutcome::Refreshed(expiry),
            wrefresh::RefreshOutcome::StillValid => lc::RunOutcome::StillValid,
            wrefresh::RefreshOutcome::Challenged(k) => {
                lc::RunOutcome::Challenged(from_challenge(k))
            }
            wrefresh::RefreshOutcome::Failed((f, status)) => lc::RunOutcome::Failed(match f {
                F::Network => lc::FailureKind::Network,
                F::Timeout => lc::FailureKind::Timeout,
                F::LoggedOut => lc::FailureKind::LoggedOut,
                F::InvalidGrant => lc::FailureKind::InvalidGrant,
                F::Rejected => lc::FailureKind::Rejected,
                F::Blocked => lc::FailureKind::Blocked,
                F::RateLimited => lc::FailureKind::RateLimited,
                F::Misconfigured => lc::FailureKind::Misconfigured,
                F::ChallengeTimedOut => lc::FailureKind::ChallengeTimedOut,
                F::Other => lc::FailureKind::other_with_status(status),
            }),
        };
        let done = lc::Completed {
            request_id: finished.request_id,
            credential_id: finished.credential_id,
            outcome,
        };
        with_pool(|pool| pool.refresh_completed(&done)).map(to_status)
    }

    fn tickets() -> Result<Vec<wnotify::Ticket>, t::PoolError> {
        let tickets = with_pool(|pool| {
            Ok(pool
                .tickets()
                .into_iter()
                .map(|tk| {
                    let contact = pool.masked_contact(&tk);
                    (tk, contact)
                })
                .collect::<Vec<_>>())
        })?;
        Ok(tickets
            .into_iter()
            .map(|(tk, masked_contact)| wnotify::Ticket {
                id: tk.id,
                kind: to_challenge(tk.kind),
                credential_id: tk.credential_id,
                site: tk.site,
                masked_contact,
                created_at: tk.created_at,
                deadline: tk.deadline,
            })
            .collect())
    }

    fn resolve_challenge(
        ticket_id: String,
        resolution: p::ChallengeResolution,
    ) -> Result<t::Status, t::PoolError> {
        let resolution = match resolution {
            p::ChallengeResolution::Answered => lc::Resolution::Answered,
            p::ChallengeResolution::SolvedElsewhere => lc::Resolution::SolvedElsewhere,
            p::ChallengeResolution::Abandoned => lc::Resolution::Abandoned,
        };
        with_pool(|pool| pool.resolve_challenge(&ticket_id, resolution)).map(to_status)
    }

    fn unban(id: String) -> Result<t::CredentialMeta, t::PoolError> {
        with_pool(|pool| pool.unban(&id)).map(into_meta)
    }

    fn reset_challenge(id: String) -> Result<t::CredentialMeta, t::PoolError> {
        with_pool(|pool| pool.reset_challenge(&id)).map(into_meta)
    }
}

export!(Component);

fn store_err(e: t::StoreError) -> m::StoreError {
    match e {
        t::StoreError::Unavailable(s) => m::StoreError::Unavailable(s),
        t::StoreError::Corrupt(s) => m::StoreError::Corrupt(s),
        t::StoreError::TooLarge => m::StoreError::TooLarge,
        t::StoreError::QuotaExceeded => m::StoreError::QuotaExceeded,
        t::StoreError::InvalidKey(s) => m::StoreError::InvalidKey(s),
    }
}

fn pool_err(e: m::PoolError) -> t::PoolError {
    match e {
        m::PoolError::CredentialNotFound(s) => t::PoolError::CredentialNotFound(s),
        m::PoolError::AlreadyExists(s) => t::PoolError::AlreadyExists(s),
        m::PoolError::LeaseNotFound(s) => t::PoolError::LeaseNotFound(s),
        m::PoolError::TicketNotFound(s) => t::PoolError::TicketNotFound(s),
        m::PoolError::InvalidInput { field, reason } => {
            t::PoolError::InvalidInput(t::InvalidField { field, reason })
        }
        m::PoolError::InvalidConfig { field, reason } => {
            t::PoolError::InvalidConfig(t::InvalidField { field, reason })
        }
        m::PoolError::IllegalTransition { from, event } => {
            t::PoolError::IllegalTransition(t::IllegalTransition {
                from: to_status(from),
                event,
            })
        }
        m::PoolError::Storage(s) => t::PoolError::Storage(match s {
            m::StoreError::Unavailable(s) => t::StoreError::Unavailable(s),
            m::StoreError::Corrupt(s) => t::StoreError::Corrupt(s),
            m::StoreError::TooLarge => t::StoreError::TooLarge,
            m::StoreError::QuotaExceeded => t::StoreError::QuotaExceeded,
            m::StoreError::InvalidKey(s) => t::StoreError::InvalidKey(s),
        }),
        m::PoolError::Unsupported(s) => t::PoolError::Unsupported(s),
    }
}

fn from_new(n: t::NewCredential) -> m::NewCredential {
    m::NewCredential {
        id: n.id,
        site: n.site,
        kind: Some(from_kind(n.kind)),
        expires_at: n.expires_at,
        tags: n.tags,
        username: n.username,
        phone: n.phone,
        email: n.email,
        cookie_names: n.cookie_names,
        header_names: n.header_names,
        secret_fields: n.secret_fields.into_iter().map(from_field).collect(),
        token_scope: n.token_scope,
        source_account: n.source_account,
        max_concurrent: n.max_concurrent,
        rate_per_minute: n.rate_per_minute,
        labels: n.labels,
        token_type: n.token_type,
        local_storage_names: n.local_storage_names,
        device_id: n.device_id,
        fingerprint: n.fingerprint,
        user_agent: n.user_agent,
        two_factor: n.two_factor,
    }
}

/// Moves the policy's record into the contract's (no copy of its strings).
fn into_meta(c: m::Credential) -> t::CredentialMeta {
    t::CredentialMeta {
        id: c.id,
        site: c.site,
        kind: to_kind(c.kind),
        status: to_status(c.status),
        created_at: c.created_at,
        last_used_at: c.last_used_at,
        expires_at: c.expires_at,
        cooldown_until: c.cooldown_until,
        use_count: c.use_count,
        success_count: c.success_count,
        fail_count: c.fail_count,
        consecutive_failures: c.consecutive_failures,
        health: c.health,
        tags: c.tags,
        username: c.username,
        phone: c.phone,
        email: c.email,
        cookie_names: c.cookie_names,
        header_names: c.header_names,
        secret_fields: c.secret_fields.into_iter().map(to_field).collect(),
        token_scope: c.token_scope,
        source_account: c.source_account,
        max_concurrent: c.max_concurrent,
        rate_per_minute: c.rate_per_minute,
        labels: c.labels,
        token_type: c.token_type,
        local_storage_names: c.local_storage_names,
        device_id: c.device_id,
        fingerprint: c.fingerprint,
        user_agent: c.user_agent,
        two_factor: c.two_factor,
    }
}

fn to_view(v: View) -> p::CredentialView {
    p::CredentialView {
        level: to_level(v.level),
        id: v.id,
        site: v.site,
        kind: to_kind(v.kind),
        status: to_status(v.status),
        health: v.health,
        internal: v.internal.map(|i| p::InternalView {
            created_at: i.created_at,
            last_used_at: i.last_used_at,
            expires_at: i.expires_at,
            cooldown_until: i.cooldown_until,
            use_count: i.use_count,
            success_count: i.success_count,
            fail_count: i.fail_count,
            consecutive_failures: i.consecutive_failures,
            open_leases: i.open_leases,
            max_concurrent: i.max_concurrent,
            rate_per_minute: i.rate_per_minute,
            tags: i.tags,
            labels: i.labels,
            source_account: i.source_account,
            token_type: i.token_type,
            two_factor: i.two_factor,
        }),
        sensitive: v.sensitive.map(|s| p::SensitiveView {
            username: s.username,
            phone: s.phone,
            email: s.email,
            cookie_names: s.cookie_names,
            header_names: s.header_names,
            secret_fields: s.secret_fields.into_iter().map(to_field).collect(),
            token_scope: s.token_scope,
            local_storage_names: s.local_storage_names,
            device_id: s.device_id,
            fingerprint: s.fingerprint,
            user_agent: s.user_agent,
        }),
    }
}

/// Declares a pair of one-to-one enum conversions.
macro_rules! enum_map {
    ($to:ident, $from:ident, $m:ty, $t:ty, [$($v:ident),* $(,)?]) => {
        fn $to(x: $m) -> $t {
            match x { $(<$m>::$v => <$t>::$v,)* }
        }
        fn $from(x: $t) -> $m {
            match x { $(<$t>::$v => <$m>::$v,)* }
        }
    };
}

enum_map!(
    to_kind,
    from_kind,
    m::Kind,
    t::CredentialKind,
    [Account, Session, Token, ApiKey, Device]
);
enum_map!(
    to_status,
    from_status,
    m::Status,
    t::Status,
    [
        Init, Active, Cooling, Challenged, Suspended, Banned, Expired
    ]
);
enum_map!(
    to_field,
    from_field,
    m::SecretField,
    t::SecretField,
    [
        Password,
        AccessToken,
        RefreshToken,
        ApiKey,
        SecretKey,
        RecoveryCodes,
        TotpSeed
    ]
);
enum_map!(
    to_class,
    from_class,
    m::FailureClass,
    t::FailureClass,
    [Blocked, Challenged, Expired, RateLimited, Network, Other]
);
enum_map!(
    to_level,
    from_level,
    m::AccessLevel,
    t::AccessLevel,
    [Public, Internal, Sensitive, Secret]
);

fn to_reason(r: m::UnavailableReason) -> p::UnavailableReason {
    match r {
        m::UnavailableReason::NoneMatch => p::UnavailableReason::NoneMatch,
        m::UnavailableReason::AllLeased => p::UnavailableReason::AllLeased,
        m::UnavailableReason::AllRateLimited => p::UnavailableReason::AllRateLimited,
        m::UnavailableReason::AllCooling => p::UnavailableReason::AllCooling,
        m::UnavailableReason::AllRefreshing => p::UnavailableReason::AllRefreshing,
        m::UnavailableReason::AllBanned => p::UnavailableReason::AllBanned,
        m::UnavailableReason::Mixed => p::UnavailableReason::Mixed,
        m::UnavailableReason::UnknownSite => p::UnavailableReason::UnknownSite,
    }
}

enum_map!(
    to_challenge,
    from_challenge,
    lc::ChallengeKind,
    wrefresh::ChallengeKind,
    [
        CaptchaImage,
        CaptchaSlider,
        CaptchaClick,
        SmsCode,
        EmailCode,
        TwoFactor,
        DeviceVerify,
        SecurityQuestion
    ]
);

fn to_method(m: lc::RunMethod) -> wrefresh::RefreshMethod {
    match m {
        lc::RunMethod::CookieVisit => wrefresh::RefreshMethod::CookieVisit,
        lc::RunMethod::OauthRefresh => wrefresh::RefreshMethod::OauthRefresh,
        lc::RunMethod::Relogin => wrefresh::RefreshMethod::Relogin,
        lc::RunMethod::HealthCheck => wrefresh::RefreshMethod::HealthCheck,
    }
}

fn from_lease_id(id: t::LeaseId) -> m::LeaseId {
    m::LeaseId {
        seq: id.seq,
        nonce: id.nonce,
    }
}

fn from_request(request: p::AcquireRequest) -> m::AcquireRequest {
    m::AcquireRequest {
        site: request.site,
        kind: request.kind.map(from_kind),
        purpose: request.purpose,
        tags: request.tags,
        lease_ttl_ms: request.lease_ttl_ms,
        prefer_fresh: request.prefer_fresh,
    }
}

fn from_outcome(outcome: t::Outcome) -> m::Outcome {
    match outcome {
        t::Outcome::Success => m::Outcome::Success,
        t::Outcome::Failure(f) => m::Outcome::Failure(m::Failure {
            class: from_class(f.class),
            http_status: f.http_status,
            retry_after_secs: f.retry_after_secs,
        }),
    }
}

fn to_effect(e: m::ReportEffect) -> p::ReportEffect {
    p::ReportEffect {
        status: to_status(e.status),
        health: e.health,
        cooldown_until: e.cooldown_until,
        late: e.late,
    }
}

fn to_response(resp: m::AcquireResponse) -> p::AcquireResponse {
    p::AcquireResponse {
        status: match resp.status {
            m::AcquireStatus::Success => p::AcquireStatus::Success,
            m::AcquireStatus::NoAvailable => p::AcquireStatus::NoAvailable,
            m::AcquireStatus::AllBlocked => p::AcquireStatus::AllBlocked,
        },
        lease: resp.grant.map(|g| t::Lease {
            id: t::LeaseId {
                seq: g.lease.seq,
                nonce: g.lease.nonce,
            },
            credential: g.credential,
            kind: to_kind(g.kind),
            status: to_status(g.status),
            health: g.health,
            granted_at: g.granted_at,
            expires_at: g.expires_at,
        }),
        reason: resp.reason.map(to_reason),
        next_free_at: resp.next_free_at,
        alternatives: resp.alternatives,
        warnings: resp.warnings,
    }
}
