//! The host's error: one clear line naming what was wrong, never a value.

use crate::bindings::types::{PoolError, StoreError};
use crate::crypto::KeyError;
use crate::rekey::RekeyError;
use crate::vault::VaultError;
use std::fmt;

#[derive(Debug)]
pub enum Error {
    /// The policy refused the operation, with a named reason.
    Pool(PoolError),
    /// The encryption key is missing, unsafe or wrong.
    Key(KeyError),
    /// Storage or encryption failed; nothing was changed.
    Store(VaultError),
    /// `credpool.toml` or an option is wrong.
    Config(String),
    /// An input field is wrong (checked by the host, before the policy).
    Input { field: String, reason: String },
    /// The policy component trapped or hit a sandbox limit.
    Policy(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Pool(e) => fmt_pool_error(e, f),
            Error::Key(e) => write!(f, "{e}"),
            Error::Store(e) => write!(f, "{e}"),
            Error::Config(m) => write!(f, "{m}"),
            Error::Input { field, reason } => write!(f, "invalid {field}: {reason}"),
            Error::Policy(m) => write!(f, "policy component failed: {m}"),
        }
    }
}

fn fmt_pool_error(e: &PoolError, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match e {
        PoolError::CredentialNotFound(id) => write!(f, "no credential with id {id}"),
        PoolError::AlreadyExists(id) => write!(f, "a credential with id {id} already exists"),
        PoolError::LeaseNotFound(id) => {
            write!(
                f,
                "no open lease {id} (never granted, already ended, or lapsed more than a day ago)"
            )
        }
        PoolError::TicketNotFound(id) => write!(f, "no open challenge ticket {id}"),
        PoolError::InvalidInput(x) => write!(f, "invalid {}: {}", x.field, x.reason),
        PoolError::InvalidConfig(x) => {
            write!(f, "invalid policy setting {}: {}", x.field, x.reason)
        }
        PoolError::IllegalTransition(t) => write!(
            f,
            "cannot {} a credential that is {}",
            t.event,
            crate::names::status(t.from)
        ),
        PoolError::Storage(s) => match s {
            StoreError::Unavailable(m) => write!(f, "store unavailable: {m}"),
            StoreError::Corrupt(m) => write!(f, "store corrupt: {m}"),
            StoreError::TooLarge => write!(f, "record too large for the store"),
            StoreError::QuotaExceeded => write!(f, "tenant store quota exceeded"),
        },
        PoolError::Unsupported(op) => write!(f, "this policy does not support {op}"),
    }
}

impl Error {
    /// The error's name in JSON answers: the server's `error.code`, and the
    /// command's under `--json`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Pool(e) => match e {
                PoolError::CredentialNotFound(_) => "credential_not_found",
                PoolError::LeaseNotFound(_) => "lease_not_found",
                PoolError::TicketNotFound(_) => "ticket_not_found",
                PoolError::AlreadyExists(_) => "already_exists",
                PoolError::IllegalTransition(_) => "illegal_transition",
                PoolError::InvalidInput(_) => "invalid_input",
                PoolError::InvalidConfig(_) => "invalid_config",
                PoolError::Storage(StoreError::Corrupt(_)) => "store_corrupt",
                PoolError::Storage(_) => "store_unavailable",
                PoolError::Unsupported(_) => "unsupported",
            },
            Error::Input { .. } => "invalid_input",
            Error::Store(VaultError::Backend(crate::backend::BackendError::Corrupt(_))) => {
                "store_corrupt"
            }
            Error::Store(VaultError::Backend(crate::backend::BackendError::Fenced(_))) => {
                "not_leader"
            }
            Error::Store(_) => "store_unavailable",
            Error::Config(_) => "invalid_config",
            Error::Key(_) => "key",
            Error::Policy(_) => "policy_failed",
        }
    }
}

impl std::error::Error for Error {}

impl From<PoolError> for Error {
    fn from(e: PoolError) -> Self {
        Error::Pool(e)
    }
}

impl From<VaultError> for Error {
    fn from(e: VaultError) -> Self {
        Error::Store(e)
    }
}

impl From<KeyError> for Error {
    fn from(e: KeyError) -> Self {
        Error::Key(e)
    }
}

impl From<RekeyError> for Error {
    fn from(e: RekeyError) -> Self {
        match e {
            RekeyError::NotRotatable(m) => Error::Key(KeyError(m)),
            RekeyError::Key(k) => Error::Key(k),
            RekeyError::Backend(b) => Error::Store(b.into()),
            RekeyError::Crypto(c) => Error::Store(VaultError::Seal(c)),
        }
    }
}
