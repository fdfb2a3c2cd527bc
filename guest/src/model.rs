//! The policy's own types, mirroring the WIT contract without depending on
//! generated code, so the policy compiles and tests natively.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// What a credential is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Account,
    Session,
    Token,
    /// `api_key` is the card's spelling.
    #[serde(alias = "api_key")]
    ApiKey,
    Device,
}

/// Where a credential is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Init,
    Active,
    Cooling,
    Challenged,
    Suspended,
    Banned,
    Expired,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Init,
        Status::Active,
        Status::Cooling,
        Status::Challenged,
        Status::Suspended,
        Status::Banned,
        Status::Expired,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Status::Init => "init",
            Status::Active => "active",
            Status::Cooling => "cooling",
            Status::Challenged => "challenged",
            Status::Suspended => "suspended",
            Status::Banned => "banned",
            Status::Expired => "expired",
        }
    }
}

/// A secret field the host holds; the policy only knows it exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecretField {
    Password,
    AccessToken,
    RefreshToken,
    ApiKey,
    SecretKey,
    RecoveryCodes,
    TotpSeed,
}

/// A credential's metadata: everything but secret values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Credential {
    pub id: String,
    pub site: String,
    pub kind: Kind,
    pub status: Status,
    pub created_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_until: Option<Millis>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub use_count: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub success_count: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fail_count: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub consecutive_failures: u32,
    pub health: u8,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cookie_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub header_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_fields: Vec<SecretField>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_scope: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<(String, String)>,
    /// Blocks in a row since the last success (drives backoff and bans).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub block_streak: u32,
    /// Rate limits in a row since the last success (drives backoff).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rate_limit_streak: u32,
    /// The learned adaptive pace per minute (0 = none learned yet).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pace_per_minute: u32,
    /// The last successful login by the host (re-login, or a challenge
    /// answered); drives `max_age`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logged_in_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local_storage_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub two_factor: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Counters at zero are left out of the stored JSON (fewer bytes to write
/// on every flush); `default` reads them back as zero.
fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

/// What a caller gives to add a credential.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewCredential {
    pub id: Option<String>,
    pub site: String,
    pub kind: Option<Kind>,
    pub expires_at: Option<Millis>,
    pub tags: Vec<String>,
    pub username: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub cookie_names: Vec<String>,
    pub header_names: Vec<String>,
    pub secret_fields: Vec<SecretField>,
    pub token_scope: Vec<String>,
    pub source_account: Option<String>,
    pub max_concurrent: Option<u32>,
    pub rate_per_minute: Option<u32>,
    pub labels: Vec<(String, String)>,
    pub token_type: Option<String>,
    pub local_storage_names: Vec<String>,
    pub device_id: Option<String>,
    pub fingerprint: Option<String>,
    pub user_agent: Option<String>,
    pub two_factor: bool,
}

/// Why a use failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureClass {
    Blocked,
    Challenged,
    Expired,
    RateLimited,
    Network,
    Other,
}

impl FailureClass {
    pub const ALL: [FailureClass; 6] = [
        FailureClass::Blocked,
        FailureClass::Challenged,
        FailureClass::Expired,
        FailureClass::RateLimited,
        FailureClass::Network,
        FailureClass::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FailureClass::Blocked => "blocked",
            FailureClass::Challenged => "challenged",
            FailureClass::Expired => "expired",
            FailureClass::RateLimited => "rate-limited",
            FailureClass::Network => "network",
            FailureClass::Other => "other",
        }
    }
}

/// A failed use, as the caller saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    pub class: FailureClass,
    pub http_status: Option<u16>,
    pub retry_after_secs: Option<u32>,
}

/// How a use went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(Failure),
}

/// An open lease, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub id: String,
    pub credential_id: String,
    pub granted_at: Millis,
    pub expires_at: Millis,
}

/// How much of a credential a view shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AccessLevel {
    Public,
    Internal,
    Sensitive,
    Secret,
}

/// Why a store call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    Unavailable(String),
    Corrupt(String),
    TooLarge,
    QuotaExceeded,
    InvalidKey(String),
}

/// A named pool error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolError {
    CredentialNotFound(String),
    AlreadyExists(String),
    LeaseNotFound(String),
    TicketNotFound(String),
    InvalidInput { field: String, reason: String },
    InvalidConfig { field: String, reason: String },
    IllegalTransition { from: Status, event: String },
    Storage(StoreError),
    Unsupported(String),
}

impl PoolError {
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        PoolError::InvalidInput {
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    pub fn config(field: &str, reason: impl Into<String>) -> Self {
        PoolError::InvalidConfig {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

impl From<StoreError> for PoolError {
    fn from(e: StoreError) -> Self {
        PoolError::Storage(e)
    }
}

/// The answer's headline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcquireStatus {
    Success,
    NoAvailable,
    AllBlocked,
}

/// Why nothing was handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnavailableReason {
    NoneMatch,
    AllLeased,
    AllRateLimited,
    AllCooling,
    AllRefreshing,
    AllBanned,
    Mixed,
    /// No credential at all for the site.
    UnknownSite,
}

/// What a crawler asks for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AcquireRequest {
    pub site: String,
    pub kind: Option<Kind>,
    pub purpose: Option<String>,
    pub tags: Vec<String>,
    pub lease_ttl_ms: Option<u64>,
    /// The card's `prefer_fresh`: the most recently renewed match.
    pub prefer_fresh: bool,
}

/// A lease's id: `seq` finds the lease, the random `nonce` makes the id
/// unguessable and never reused across restarts. Shown as
/// `l<seq hex>.<nonce hex>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseId {
    pub seq: u64,
    pub nonce: u64,
}

impl LeaseId {
    /// Reads the shown form back; `None` for anything else.
    pub fn parse(id: &str) -> Option<LeaseId> {
        fn hex(s: &str) -> Option<u64> {
            if s.is_empty() || s.len() > 16 {
                return None;
            }
            s.bytes().try_fold(0u64, |acc, b| {
                let d = (b as char).to_digit(16)?;
                Some(acc << 4 | u64::from(d))
            })
        }
        let (seq, nonce) = id.strip_prefix('l')?.split_once('.')?;
        Some(LeaseId {
            seq: hex(seq)?,
            nonce: hex(nonce)?,
        })
    }
}

impl std::fmt::Display for LeaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "l{:x}.{:016x}", self.seq, self.nonce)
    }
}

/// A granted lease and what the caller needs of its credential (`get` or
/// `view` have the rest).
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    pub lease: LeaseId,
    /// The credential's slot in this pool (see `Pool::credential_id`).
    pub credential: u32,
    pub granted_at: Millis,
    pub expires_at: Millis,
    pub kind: Kind,
    pub status: Status,
    pub health: u8,
}

/// The answer to an acquire.
#[derive(Clone, Debug, PartialEq)]
pub struct AcquireResponse {
    pub status: AcquireStatus,
    pub grant: Option<Grant>,
    pub reason: Option<UnavailableReason>,
    pub next_free_at: Option<Millis>,
    pub alternatives: Vec<String>,
    pub warnings: Vec<String>,
}

/// What a report did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportEffect {
    pub status: Status,
    pub health: u8,
    pub cooldown_until: Option<Millis>,
    /// The lease had lapsed before the report came; the result was applied
    /// to the credential all the same.
    pub late: bool,
}

/// Which credentials `list` returns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListFilter {
    pub site: Option<String>,
    pub kind: Option<Kind>,
    pub status: Option<Status>,
    pub tag: Option<String>,
    pub after: Option<String>,
    pub limit: Option<u32>,
}

/// Per-site counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SiteStats {
    pub site: String,
    pub total: u32,
    pub by_status: [u32; 7],
    pub open_leases: u32,
    pub granted: u64,
    pub refused: u64,
    pub successes: u64,
    pub failures: Vec<(FailureClass, u64)>,
    pub refresh_attempts: u64,
    pub refresh_succeeded: u64,
    pub refresh_failed: u64,
    pub refresh_in_flight: u32,
    /// Refresh counts by method, for the methods tried.
    pub refresh_by_method: Vec<MethodStats>,
    /// Tickets answered and how long they waited for it.
    pub answer_times: AnswerTimes,
    pub open_tickets: u32,
    /// The site's adaptive pace per credential per minute (the mean of its
    /// members', under its ceiling); none when pacing is fixed.
    pub pace_per_minute: Option<u32>,
    pub anomalies: Vec<Anomaly>,
    /// Members only a person can bring back, with what to run (capped).
    pub needs_person: Vec<PersonAction>,
    /// How many members wait on a person in all.
    pub needs_person_total: u32,
}

/// A member out of rotation that only a person can bring back.
#[derive(Clone, Debug, PartialEq)]
pub struct PersonAction {
    pub credential_id: String,
    pub status: Status,
    /// What to do, with the command to run.
    pub action: String,
}

/// One method's refresh counts on one site.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MethodCounts {
    pub attempts: u64,
    pub succeeded: u64,
    pub failed: u64,
}

/// [`MethodCounts`] with its method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MethodStats {
    pub method: crate::lifecycle::RunMethod,
    pub counts: MethodCounts,
}

/// Time from a ticket's opening to its answer, over the answered tickets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AnswerTimes {
    pub answered: u64,
    pub total_ms: u64,
    pub max_ms: u64,
}

impl AnswerTimes {
    /// Counts one answer that came `ms` after the ticket opened.
    pub fn record(&mut self, ms: u64) {
        self.answered += 1;
        self.total_ms = self.total_ms.saturating_add(ms);
        self.max_ms = self.max_ms.max(ms);
    }

    /// The mean, or `None` before any answer.
    pub fn mean_ms(&self) -> Option<u64> {
        (self.answered > 0).then(|| self.total_ms / self.answered)
    }
}

/// What a tick did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TickSummary {
    pub leases_expired: u32,
    pub cooldowns_ended: u32,
    pub refreshes_started: u32,
    pub tickets_timed_out: u32,
    pub next_due_at: Option<Millis>,
}

/// What an alert is about, as the WIT `notify.alert-kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AlertKind {
    SuccessRateDrop,
    BlockBurst,
    LowHealth,
    Banned,
    PoolExhausted,
    RefreshFailed,
    TicketTimedOut,
}

/// How urgent an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// One alert for the host's notifiers (masked data only).
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub kind: AlertKind,
    pub severity: Severity,
    pub site: String,
    pub credential_id: Option<String>,
    pub message: String,
    pub raised_at: Millis,
}

/// An anomaly flagged and not yet cleared, as shown in stats.
#[derive(Clone, Debug, PartialEq)]
pub struct Anomaly {
    pub kind: AlertKind,
    pub credential_id: Option<String>,
    pub detected_at: Millis,
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::LeaseId;

    #[test]
    fn lease_ids_round_trip_and_reject_junk() {
        for (seq, nonce) in [(1, 0), (0xabc, u64::MAX), (u64::MAX, 0x0123_4567_89ab_cdef)] {
            let id = LeaseId { seq, nonce };
            let shown = id.to_string();
            assert_eq!(shown, format!("l{seq:x}.{nonce:016x}"));
            assert_eq!(LeaseId::parse(&shown), Some(id));
        }
        for junk in [
            "",
            "l",
            "l.",
            "x1.0",
            "l1.",
            "l1.zz",
            "l11111111111111111.0",
        ] {
            assert_eq!(LeaseId::parse(junk), None, "{junk}");
        }
    }
}
