//! What the host checks in the policy's answers before acting on them: a
//! policy is a tenant's own code, and a broken or hostile one must not make
//! the host hand out a lease it cannot back, pass on a warning the size of
//! its memory, or show a view above the level that was asked. A refused
//! answer fails the call with the limit `policy_answer`.

use crate::bindings::pool::{AcquireResponse, AcquireStatus, CredentialView};
use crate::bindings::types::{AccessLevel, PoolError, StoreError};
use crate::limits::{LimitHit, MAX_ANSWER_ITEMS, MAX_ANSWER_TEXT, MAX_KEY_BYTES};

fn refused(detail: String) -> Option<LimitHit> {
    Some(LimitHit::new("policy_answer", detail))
}

/// A list of texts the caller would get: at most [`MAX_ANSWER_ITEMS`] of at
/// most [`MAX_ANSWER_TEXT`] bytes.
fn texts_problem(what: &str, texts: &[String]) -> Option<LimitHit> {
    if texts.len() > MAX_ANSWER_ITEMS {
        return refused(format!(
            "{} {what} (at most {MAX_ANSWER_ITEMS})",
            texts.len()
        ));
    }
    let longest = texts.iter().map(String::len).max().unwrap_or(0);
    if longest > MAX_ANSWER_TEXT {
        return refused(format!(
            "one of its {what} is {longest} bytes long (at most {MAX_ANSWER_TEXT})"
        ));
    }
    None
}

/// An acquire's answer: a lease exactly when it says success, and
/// alternatives and warnings of a sane size.
pub(crate) fn acquire_problem(resp: &AcquireResponse) -> Option<LimitHit> {
    let success = matches!(resp.status, AcquireStatus::Success);
    if success != resp.lease.is_some() {
        return refused(if success {
            "an acquire answered success without a lease".into()
        } else {
            "an acquire answered a lease without success".into()
        });
    }
    texts_problem("alternatives", &resp.alternatives)
        .or_else(|| texts_problem("warnings", &resp.warnings))
}

/// A credential id the policy names (a grant's, a view's): the host uses
/// it as a store key and shows it.
pub(crate) fn id_problem(id: &str) -> Option<LimitHit> {
    if id.is_empty() || id.len() > MAX_KEY_BYTES || id.chars().any(char::is_control) {
        return refused(format!(
            "a credential id of {} bytes that is empty, longer than {MAX_KEY_BYTES} bytes \
             or holds a control character",
            id.len()
        ));
    }
    None
}

fn rank(level: AccessLevel) -> u8 {
    match level {
        AccessLevel::Public => 0,
        AccessLevel::Internal => 1,
        AccessLevel::Sensitive => 2,
        AccessLevel::Secret => 3,
    }
}

/// Views for a caller at `level`: none above it, no more than `limit`.
pub(crate) fn views_problem(
    views: &[CredentialView],
    level: AccessLevel,
    limit: Option<u32>,
) -> Option<LimitHit> {
    if let Some(limit) = limit
        && views.len() > limit as usize
    {
        return refused(format!(
            "{} views where at most {limit} were asked",
            views.len()
        ));
    }
    for v in views {
        let shown = match (&v.sensitive, &v.internal) {
            (Some(_), _) => AccessLevel::Sensitive,
            (None, Some(_)) => AccessLevel::Internal,
            (None, None) => AccessLevel::Public,
        };
        if rank(v.level) > rank(level) || rank(shown) > rank(level) {
            return refused(format!(
                "a view above the {} level that was asked",
                crate::names::access_level(level)
            ));
        }
        if v.health > 100 {
            return refused(format!("a health of {} (at most 100)", v.health));
        }
        if let Some(hit) = id_problem(&v.id) {
            return Some(hit);
        }
    }
    None
}

/// A refusal's texts, which reach the caller's error message.
pub(crate) fn error_problem(e: &PoolError) -> Option<LimitHit> {
    let texts: Vec<&str> = match e {
        PoolError::CredentialNotFound(s)
        | PoolError::AlreadyExists(s)
        | PoolError::LeaseNotFound(s)
        | PoolError::TicketNotFound(s)
        | PoolError::Unsupported(s) => vec![s],
        PoolError::InvalidInput(f) | PoolError::InvalidConfig(f) => vec![&f.field, &f.reason],
        PoolError::IllegalTransition(t) => vec![&t.event],
        PoolError::Storage(StoreError::Unavailable(s) | StoreError::Corrupt(s))
        | PoolError::Storage(StoreError::InvalidKey(s)) => vec![s],
        PoolError::Storage(StoreError::TooLarge | StoreError::QuotaExceeded) => vec![],
    };
    let longest = texts.iter().map(|t| t.len()).max().unwrap_or(0);
    if longest > MAX_ANSWER_TEXT {
        return refused(format!(
            "an error whose text is {longest} bytes long (at most {MAX_ANSWER_TEXT})"
        ));
    }
    None
}
