//! What goes into the lifecycle and what comes out: methods, statuses,
//! refresh results, tickets, and the plans and decisions it hands back.

use crate::model::Millis;
use serde::{Deserialize, Serialize};

/// How a site's sessions are kept alive (its configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SiteMethod {
    CookieVisit,
    OauthRefresh,
    Relogin,
    None,
}

/// What to run now (the WIT `refresh-method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunMethod {
    CookieVisit,
    OauthRefresh,
    Relogin,
    HealthCheck,
}

/// The statuses the lifecycle reads and asks for (a subset of the pool's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LcStatus {
    /// Before the first login.
    Init,
    Active,
    Expired,
    Challenged,
    /// Cooling, suspended: resting; nothing is scheduled.
    Resting,
    Banned,
}

/// The status change the lifecycle asks the pool's state machine for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusChange {
    Active,
    Expired,
    Challenged,
    /// Out of rotation until a person acts (an abandoned challenge, a
    /// refused login).
    Suspended,
}

/// A login challenge kind (the WIT `challenge-kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChallengeKind {
    CaptchaImage,
    CaptchaSlider,
    CaptchaClick,
    SmsCode,
    EmailCode,
    TwoFactor,
    DeviceVerify,
    SecurityQuestion,
}

/// Why a refresh failed (the WIT `refresh-failure`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    Network,
    Timeout,
    LoggedOut,
    InvalidGrant,
    Rejected,
    Blocked,
    RateLimited,
    Misconfigured,
    ChallengeTimedOut,
    /// The site failed after the request reached it (a 5xx, or a success
    /// the host could not read or keep): it may have committed a rotation
    /// whose answer was lost.
    ServerError,
    Other,
}

impl FailureKind {
    /// The kind of an `other` failure with its HTTP status: a 5xx or a 2xx
    /// (an answer that came but could not be used) is a [`Self::ServerError`].
    pub fn other_with_status(status: Option<u16>) -> FailureKind {
        match status {
            Some(s) if s >= 500 || (200..300).contains(&s) => FailureKind::ServerError,
            _ => FailureKind::Other,
        }
    }

    /// Whether the site may have acted on the request although no usable
    /// answer came back: the network failed, the time ran out, or the
    /// server failed. Only a prompt retry with the same secret can then
    /// save a rotation the site committed.
    pub fn answer_may_be_lost(self) -> bool {
        matches!(
            self,
            FailureKind::Network | FailureKind::Timeout | FailureKind::ServerError
        )
    }
}

/// How a refresh ended (the WIT `refresh-outcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    Refreshed(Option<Millis>),
    StillValid,
    Challenged(ChallengeKind),
    Failed(FailureKind),
}

/// A finished refresh as the host reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completed {
    pub request_id: u64,
    pub credential_id: String,
    pub outcome: RunOutcome,
}

/// How a ticket was settled (the WIT `challenge-resolution`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    Answered,
    SolvedElsewhere,
    Abandoned,
}

/// Why a ticket closed (the WIT `ticket-closure`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closure {
    Answered,
    TimedOut,
    Cancelled,
}

/// What the lifecycle needs to know of one credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracked {
    pub id: String,
    pub site: String,
    pub status: LcStatus,
    pub expires_at: Option<Millis>,
    /// The last login (or the creation time when never logged in here).
    pub logged_in_at: Millis,
    /// The last health check, if any.
    pub checked_at: Option<Millis>,
}

/// A refresh to start through the `refresh.start` import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartRefresh {
    pub request_id: u64,
    pub credential_id: String,
    pub site: String,
    pub method: RunMethod,
    pub ticket_id: Option<String>,
}

/// A challenge ticket the policy keeps open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub id: String,
    pub kind: ChallengeKind,
    pub credential_id: String,
    pub site: String,
    pub created_at: Millis,
    pub deadline: Millis,
}

/// A ticket that passed its deadline: close it `timed-out`, alert, and
/// set the credential `expired`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimedOut {
    pub ticket: Ticket,
    pub status: StatusChange,
}

/// What a tick asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickPlan {
    pub start: Vec<StartRefresh>,
    pub timed_out: Vec<TimedOut>,
    /// Refreshes the host never reported, given up (already backed off),
    /// with the method each ran.
    pub abandoned: Vec<(String, RunMethod)>,
    pub next_due_at: Option<Millis>,
}

/// An alert the lifecycle wants raised (the pool fills in the message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertNeed {
    /// A refresh failed in a way that needs a person.
    RefreshFailed,
}

/// What a finished refresh does to the credential.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub status: Option<StatusChange>,
    /// `Some(new)` replaces the expiry.
    pub expires_at: Option<Option<Millis>>,
    /// Set when a login succeeded.
    pub logged_in_at: Option<Millis>,
    /// Set when a health check ran.
    pub checked_at: Option<Millis>,
    pub open_ticket: Option<Ticket>,
    pub alert: Option<AlertNeed>,
    pub follow_up: Option<StartRefresh>,
}

/// What settling a ticket does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolveDecision {
    pub status: Option<StatusChange>,
    /// Announce with `notify.close-ticket`; `None` while the resumed login
    /// runs (the ticket closes when its result arrives).
    pub closure: Option<Closure>,
    pub start: Option<StartRefresh>,
}
