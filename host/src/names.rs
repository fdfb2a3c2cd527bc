//! Stable lowercase names of the contract's enums, for the command line and
//! JSON output, and parsing them back.

use crate::bindings::pool::{AcquireStatus, UnavailableReason};
use crate::bindings::types::{AccessLevel, CredentialKind, FailureClass, SecretField, Status};

macro_rules! names {
    ($to:ident, $from:ident, $t:ty, [$($v:ident = $s:literal),* $(,)?]) => {
        pub fn $to(x: $t) -> &'static str {
            match x { $(<$t>::$v => $s,)* }
        }
        pub fn $from(s: &str) -> Option<$t> {
            match s { $($s => Some(<$t>::$v),)* _ => None }
        }
    };
}

/// A kind's name, or the card's spelling of one (`api_key`).
pub fn parse_kind(s: &str) -> Option<CredentialKind> {
    match s {
        "api_key" => Some(CredentialKind::ApiKey),
        _ => parse_kind_name(s),
    }
}

names!(
    kind,
    parse_kind_name,
    CredentialKind,
    [
        Account = "account",
        Session = "session",
        Token = "token",
        ApiKey = "api-key",
        Device = "device",
    ]
);
names!(
    status,
    parse_status,
    Status,
    [
        Init = "init",
        Active = "active",
        Cooling = "cooling",
        Challenged = "challenged",
        Suspended = "suspended",
        Banned = "banned",
        Expired = "expired",
    ]
);
names!(
    failure_class,
    parse_failure_class,
    FailureClass,
    [
        Blocked = "blocked",
        Challenged = "challenged",
        Expired = "expired",
        RateLimited = "rate-limited",
        Network = "network",
        Other = "other",
    ]
);
names!(
    access_level,
    parse_access_level,
    AccessLevel,
    [
        Public = "public",
        Internal = "internal",
        Sensitive = "sensitive",
        Secret = "secret",
    ]
);
names!(
    secret_field,
    parse_secret_field,
    SecretField,
    [
        Password = "password",
        AccessToken = "access-token",
        RefreshToken = "refresh-token",
        ApiKey = "api-key",
        SecretKey = "secret-key",
        RecoveryCodes = "recovery-codes",
        TotpSeed = "totp-seed",
    ]
);
names!(
    acquire_status,
    parse_acquire_status,
    AcquireStatus,
    [
        Success = "success",
        NoAvailable = "no-available",
        AllBlocked = "all-blocked",
    ]
);
names!(
    reason,
    parse_reason,
    UnavailableReason,
    [
        NoneMatch = "none-match",
        AllLeased = "all-leased",
        AllRateLimited = "all-rate-limited",
        AllCooling = "all-cooling",
        AllRefreshing = "all-refreshing",
        AllBanned = "all-banned",
        Mixed = "mixed",
        UnknownSite = "unknown-site",
    ]
);

use crate::bindings::refresh::{ChallengeKind, RefreshFailure, RefreshMethod};

names!(
    challenge_kind,
    parse_challenge_kind,
    ChallengeKind,
    [
        CaptchaImage = "captcha-image",
        CaptchaSlider = "captcha-slider",
        CaptchaClick = "captcha-click",
        SmsCode = "sms-code",
        EmailCode = "email-code",
        TwoFactor = "two-factor",
        DeviceVerify = "device-verify",
        SecurityQuestion = "security-question",
    ]
);
names!(
    refresh_method,
    parse_refresh_method,
    RefreshMethod,
    [
        CookieVisit = "cookie-visit",
        OauthRefresh = "oauth-refresh",
        Relogin = "relogin",
        HealthCheck = "health-check",
    ]
);
names!(
    refresh_failure,
    parse_refresh_failure,
    RefreshFailure,
    [
        Network = "network",
        Timeout = "timeout",
        LoggedOut = "logged-out",
        InvalidGrant = "invalid-grant",
        Rejected = "rejected",
        Blocked = "blocked",
        RateLimited = "rate-limited",
        Misconfigured = "misconfigured",
        ChallengeTimedOut = "challenge-timed-out",
        Other = "other",
    ]
);
names!(
    alert_kind,
    parse_alert_kind,
    crate::bindings::notify::AlertKind,
    [
        SuccessRateDrop = "success-rate-drop",
        BlockBurst = "block-burst",
        LowHealth = "low-health",
        Banned = "banned",
        PoolExhausted = "pool-exhausted",
        RefreshFailed = "refresh-failed",
        TicketTimedOut = "ticket-timed-out",
    ]
);
names!(
    severity,
    parse_severity,
    crate::bindings::notify::Severity,
    [Info = "info", Warning = "warning", Critical = "critical",]
);
names!(
    ticket_closure,
    parse_ticket_closure,
    crate::bindings::notify::TicketClosure,
    [
        Answered = "answered",
        TimedOut = "timed-out",
        Cancelled = "cancelled",
    ]
);

/// The one name of a site, as the policy keys it: case-insensitive, no
/// `www.` prefix, no trailing dot (`WWW.JD.com.` is `jd.com`).
pub fn site_key(name: &str) -> String {
    let bare = name.trim().trim_end_matches('.');
    let www = bare.len() > 4 && bare[..4].eq_ignore_ascii_case("www.") && bare[4..].contains('.');
    let bare = if www { &bare[4..] } else { bare };
    bare.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_site_has_one_name() {
        for given in ["jd.com", "JD.COM", "www.jd.com", "WWW.Jd.Com.", " jd.com "] {
            assert_eq!(super::site_key(given), "jd.com", "{given}");
        }
        assert_eq!(super::site_key("www.com"), "www.com");
        assert_eq!(super::site_key("m.jd.com"), "m.jd.com");
    }
}
