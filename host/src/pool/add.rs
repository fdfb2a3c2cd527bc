//! Adding credentials: the secrets sealed and stored first, the policy's
//! record second; one at a time or a batch with one flush to disk.

use super::Pool;
use super::instance::Flush;
use crate::bindings::types::{self, AccessLevel, CredentialKind, CredentialMeta, PoolError};
use crate::error::{Error, Result};
use crate::secrets::Secrets;

/// A credential to add: its metadata and its secrets.
#[derive(Clone, Debug)]
pub struct NewCredential {
    pub id: Option<String>,
    pub site: String,
    pub kind: CredentialKind,
    /// Milliseconds since the epoch.
    pub expires_at: Option<i64>,
    pub tags: Vec<String>,
    pub username: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub token_scope: Vec<String>,
    pub source_account: Option<String>,
    pub max_concurrent: Option<u32>,
    pub rate_per_minute: Option<u32>,
    pub labels: Vec<(String, String)>,
    /// A token's type (`Bearer` for a token when none is given).
    pub token_type: Option<String>,
    /// A device credential's device id.
    pub device_id: Option<String>,
    /// The browser or device fingerprint id it is bound to.
    pub fingerprint: Option<String>,
    /// The user agent to send with it.
    pub user_agent: Option<String>,
    /// Whether the account has two-factor login on (set by a TOTP seed).
    pub two_factor: bool,
    pub secrets: Secrets,
}

impl NewCredential {
    pub fn new(site: &str, kind: CredentialKind) -> Self {
        NewCredential {
            id: None,
            site: site.to_string(),
            kind,
            expires_at: None,
            tags: Vec::new(),
            username: None,
            phone: None,
            email: None,
            token_scope: Vec::new(),
            source_account: None,
            max_concurrent: None,
            rate_per_minute: None,
            labels: Vec::new(),
            token_type: None,
            device_id: None,
            fingerprint: None,
            user_agent: None,
            two_factor: false,
            secrets: Secrets::default(),
        }
    }

    pub fn with_id(mut self, id: &str) -> Self {
        self.id = Some(id.to_string());
        self
    }
}

/// [`Pool::add_all`] flushes to disk after this many adds, so an import's
/// unflushed writes stay a few MB however large the file.
const ADD_ALL_FLUSH_EVERY: usize = 4096;

/// Why [`Pool::add_all`] stopped.
#[derive(Debug)]
pub struct AddAllError {
    /// Added and on disk.
    pub added: Vec<CredentialMeta>,
    /// The place of the credential that failed; none when a flush to disk
    /// failed (then only those flushed before it count as added).
    pub at: Option<usize>,
    pub error: Error,
}

impl Pool {
    /// Adds a credential; its secrets are encrypted before they are stored.
    /// If anything fails, nothing is stored. The secrets are written first
    /// and the record second, so a crash between the two leaves at most an
    /// unreachable secret bundle (replaced by the next add of that id), never
    /// a credential without its secrets.
    pub fn add(&self, new: NewCredential) -> Result<CredentialMeta> {
        let added = self.add_unflushed(new);
        self.flush_to_disk()?;
        added
    }

    /// Adds credentials in order as [`Pool::add`] does, with one flush to
    /// disk for all of them (an import: a flush per add would be most of
    /// its time). Stops at the first that fails: the error comes with the
    /// credentials added before it, which are kept (and flushed).
    pub fn add_all(
        &self,
        news: impl IntoIterator<Item = NewCredential>,
    ) -> std::result::Result<Vec<CredentialMeta>, AddAllError> {
        let mut added = Vec::new();
        // How many of `added` a flush has made durable: only those count
        // when a flush fails.
        let mut flushed = 0;
        let flush_failed = |mut added: Vec<CredentialMeta>, flushed, error| {
            added.truncate(flushed);
            AddAllError {
                added,
                at: None,
                error,
            }
        };
        let mut failed = None;
        for new in news {
            match self.add_unflushed(new) {
                Ok(meta) => added.push(meta),
                Err(e) => {
                    failed = Some((added.len(), e));
                    break;
                }
            }
            // Unflushed writes wait in memory: bound them in a large import.
            if added.len() - flushed == ADD_ALL_FLUSH_EVERY {
                if let Err(error) = self.flush_to_disk() {
                    return Err(flush_failed(added, flushed, error));
                }
                flushed = added.len();
            }
        }
        if let Err(error) = self.flush_to_disk() {
            return Err(flush_failed(added, flushed, error));
        }
        match failed {
            None => Ok(added),
            Some((at, error)) => Err(AddAllError {
                added,
                at: Some(at),
                error,
            }),
        }
    }

    /// [`Pool::add`] without the flush to disk.
    fn add_unflushed(&self, mut new: NewCredential) -> Result<CredentialMeta> {
        new.secrets
            .validate()
            .map_err(|(field, reason)| Error::Input { field, reason })?;
        // A session is its cookies or auth headers: with neither it would
        // be handed out with nothing to send.
        if new.kind == CredentialKind::Session
            && new.secrets.cookies.is_empty()
            && new.secrets.headers.is_empty()
            && new.secrets.local_storage.is_empty()
        {
            return Err(Error::Input {
                field: "session".into(),
                reason: "it has no cookie and no header (nor local-storage entry): give at \
                         least one (the CLI's --cookie NAME=VALUE, --header 'NAME: VALUE', or \
                         cookie.NAME=VALUE or local_storage.NAME=VALUE on --secrets-stdin)"
                    .into(),
            });
        }
        // The policy keys sites by this one name: the bundle is bound to it.
        new.site = crate::names::site_key(&new.site);
        let id = match &new.id {
            Some(id) => id.trim().to_string(),
            None => fresh_id(new.kind)?,
        };
        new.id = Some(id.clone());
        // A re-login submits the login name; it is not secret, but the host
        // needs it without asking the policy.
        if new.secrets.username.is_none() {
            new.secrets.username = new.username.clone();
        }
        card_defaults(&mut new);
        let meta_in = types::NewCredential {
            id: new.id.clone(),
            site: new.site.clone(),
            kind: new.kind,
            expires_at: new.expires_at,
            tags: new.tags.clone(),
            username: new.username.clone(),
            phone: new.phone.clone(),
            email: new.email.clone(),
            cookie_names: new.secrets.cookie_names(),
            header_names: new.secrets.header_names(),
            secret_fields: new.secrets.fields(),
            token_scope: new.token_scope.clone(),
            source_account: new.source_account.clone(),
            max_concurrent: new.max_concurrent,
            rate_per_minute: new.rate_per_minute,
            labels: new.labels.clone(),
            token_type: new.token_type.clone(),
            local_storage_names: new.secrets.local_storage_names(),
            device_id: new.device_id.clone(),
            fingerprint: new.fingerprint.clone(),
            user_agent: new.user_agent.clone(),
            two_factor: new.two_factor,
        };
        self.record("export.add", &meta_in);
        // A bundle under this id with no record is left from an add that
        // crashed: it may be replaced. With a record, the id is taken.
        let existing = self.vault.secrets_raw(&id)?;
        if existing.is_some() && self.view(&id, AccessLevel::Public).is_ok() {
            return Err(Error::Pool(PoolError::AlreadyExists(id)));
        }
        let Some(written) =
            self.vault
                .put_secrets_if(&new.site, &id, &new.secrets, existing.as_deref())?
        else {
            return Err(Error::Pool(PoolError::AlreadyExists(id)));
        };
        match self.call_then(Flush::Later, |p, s| {
            p.credpool_policy_pool().call_add(s, &meta_in)
        }) {
            Ok(meta) => Ok(meta),
            Err(e) => {
                // Undo the bundle so nothing half-stored remains.
                let _ = self.vault.delete_secrets_if(&id, &written);
                Err(e)
            }
        }
    }
}

/// The card's defaults: a token's type is `Bearer`; an access token that is
/// a JWT expires at its `exp` claim when no expiry is given; an account
/// with a TOTP seed has two-factor login on.
fn card_defaults(new: &mut NewCredential) {
    if new.kind == CredentialKind::Token && new.token_type.is_none() {
        new.token_type = Some("Bearer".into());
    }
    if new.expires_at.is_none()
        && let Some(token) = &new.secrets.access_token
    {
        new.expires_at = crate::jwt::expiry_ms(token);
    }
    if new.secrets.totp_seed.is_some() {
        new.two_factor = true;
    }
}

/// An id for a credential added without one, in the policy's own style
/// (`sess-` and 12 hex digits), made here so the secrets can be stored
/// before the record.
fn fresh_id(kind: CredentialKind) -> Result<String> {
    let prefix = match kind {
        CredentialKind::Account => "acct",
        CredentialKind::Session => "sess",
        CredentialKind::Token => "tok",
        CredentialKind::ApiKey => "key",
        CredentialKind::Device => "dev",
    };
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|_| {
        Error::Store(crate::vault::VaultError::Seal(
            crate::crypto::CryptoError::Random,
        ))
    })?;
    Ok(format!("{prefix}-{:012x}", u64::from_le_bytes(b) >> 16))
}
