//! Handing out credentials: acquire (alone or after a report), the grant
//! joined to the credential's id and secrets, and the lease the caller gets.

use super::Pool;
use crate::bindings::Policy;
use crate::bindings::pool::{
    AcquireRequest, AcquireResponse, AcquireStatus, ReportEffect, UnavailableReason,
};
use crate::bindings::types::{CredentialKind, LeaseId, Outcome, PoolError};
use crate::error::{Error, Result};
use crate::secrets::Secrets;
use crate::state::HostState;
use smol_str::SmolStr;
use std::sync::Arc;
use wasmtime::Store;

impl AcquireRequest {
    /// Any credential of `site`.
    pub fn site(site: &str) -> Self {
        AcquireRequest {
            site: site.to_string(),
            kind: None,
            purpose: None,
            tags: Vec::new(),
            lease_ttl_ms: None,
            prefer_fresh: false,
        }
    }
}

/// A granted lease: which credential and, for the caller to use, its
/// secrets. [`Pool::view`] has the rest of the credential.
#[derive(Clone, Debug)]
pub struct Lease {
    pub id: LeaseId,
    pub credential: LeasedCredential,
    pub granted_at: i64,
    pub expires_at: i64,
    /// Shared with the pool's cache of decrypted secrets (read-only).
    pub secrets: Arc<Secrets>,
}

/// Shown as the policy shows it: `l<seq in hex>.<nonce in 16 hex digits>`.
impl std::fmt::Display for LeaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "l{:x}.{:016x}", self.seq, self.nonce)
    }
}

impl std::str::FromStr for LeaseId {
    type Err = Error;

    /// Reads the shown form (what `credpool acquire` printed).
    fn from_str(s: &str) -> Result<LeaseId> {
        let hex = |part: &str| {
            (!part.is_empty() && part.len() <= 16)
                .then(|| u64::from_str_radix(part, 16).ok())
                .flatten()
        };
        let parsed = s.trim().strip_prefix('l').and_then(|rest| {
            let (seq, nonce) = rest.split_once('.')?;
            Some(LeaseId {
                seq: hex(seq)?,
                nonce: hex(nonce)?,
            })
        });
        parsed.ok_or_else(|| Error::Input {
            field: "lease id".into(),
            reason: "expected the form l<hex>.<hex> that acquire printed".into(),
        })
    }
}

impl PartialEq for LeaseId {
    fn eq(&self, other: &LeaseId) -> bool {
        (self.seq, self.nonce) == (other.seq, other.nonce)
    }
}

impl Eq for LeaseId {}

impl std::hash::Hash for LeaseId {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (self.seq, self.nonce).hash(h);
    }
}

impl serde::Serialize for LeaseId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The credential of a lease, as it was when handed out. Its id is kept
/// inline when short (23 bytes or fewer), else shared, and its site is
/// shared with the pool's tables: a lease allocates no string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeasedCredential {
    pub id: SmolStr,
    pub site: Arc<str>,
    pub kind: CredentialKind,
    pub status: crate::Status,
    pub health: u8,
}

/// The answer to an acquire, as the card's GetCredentialResponse.
#[derive(Clone, Debug)]
pub struct Acquired {
    pub status: AcquireStatus,
    pub lease: Option<Lease>,
    pub reason: Option<UnavailableReason>,
    pub next_free_at: Option<i64>,
    pub alternatives: Vec<String>,
    pub warnings: Vec<String>,
}

/// What the host knows of a granted credential: its id, and its secrets
/// when the kept copy is current.
struct Granted {
    id: SmolStr,
    secrets: Option<Arc<Secrets>>,
}

/// A request's handle in the policy and its site, shared with its leases.
type PreparedRequest = (u32, Arc<str>);

impl Pool {
    /// Hands out a credential with its secrets, or says why not.
    pub fn acquire(&self, request: &AcquireRequest) -> Result<Acquired> {
        self.record("export.acquire", request);
        let (resp, grant) = self.call(|p, s| {
            let pool = p.credpool_policy_pool();
            let (resp, site) = match request_handle(p, s, request)? {
                Ok(Some((handle, site))) => (pool.call_acquire_prepared(&mut *s, handle)?, site),
                Ok(None) => (
                    pool.call_acquire(&mut *s, request)?,
                    request.site.as_str().into(),
                ),
                Err(e) => return Ok(Err(e)),
            };
            Ok(resolve_grant(p, s, resp)?.map(|(resp, grant)| (resp, (site, grant))))
        })?;
        if resp.lease.is_some()
            && let Err(e) = self.lease_durable()
        {
            // Not stored, so not handed out: the lease is given back.
            if let Some(l) = &resp.lease {
                let _ = self.release(l.id);
            }
            return Err(e);
        }
        self.acquired(resp, grant)
    }

    /// Reports how a use went and acquires the next credential, in one call
    /// into the policy (a crawler's loop: half the sandbox crossings of a
    /// `report` and an `acquire`). A refused report is the error, and
    /// nothing is acquired.
    pub fn report_and_acquire(
        &self,
        lease: LeaseId,
        outcome: Outcome,
        next: &AcquireRequest,
    ) -> Result<(ReportEffect, Acquired)> {
        self.record("export.report-and-acquire", (lease, outcome, next));
        let (effect, (resp, grant)) = self.call(|p, s| {
            let pool = p.credpool_policy_pool();
            let (answer, site) = match request_handle(p, s, next)? {
                Ok(Some((handle, site))) => (
                    pool.call_report_and_acquire(&mut *s, lease, outcome, handle)?,
                    site,
                ),
                // Past the prepared requests this host keeps: two calls.
                Ok(None) => {
                    let answer = match pool.call_report(&mut *s, lease, outcome)? {
                        Ok(effect) => pool.call_acquire(&mut *s, next)?.map(|resp| (effect, resp)),
                        Err(e) => Err(e),
                    };
                    (answer, next.site.as_str().into())
                }
                Err(e) => return Ok(Err(e)),
            };
            Ok(match answer {
                Ok((effect, resp)) => resolve_grant(p, s, Ok(resp))?
                    .map(|(resp, grant)| (effect, (resp, (site, grant)))),
                Err(e) => Err(e),
            })
        })?;
        if let Err(e) = self.lease_durable() {
            if let Some(l) = &resp.lease {
                let _ = self.release(l.id);
            }
            return Err(e);
        }
        Ok((effect, self.acquired(resp, grant)?))
    }

    /// The caller's answer: the policy's, with the credential's id and
    /// secrets joined to the lease.
    fn acquired(
        &self,
        resp: AcquireResponse,
        (site, grant): (Arc<str>, Option<Granted>),
    ) -> Result<Acquired> {
        let lease = match (resp.lease, grant) {
            (Some(l), Some(grant)) => {
                let secrets = match grant.secrets {
                    Some(secrets) => secrets,
                    None => match self.fetch_secrets(&site, l.credential, &grant.id) {
                        Ok(secrets) => secrets,
                        Err(e) => {
                            let _ = self.release(l.id);
                            return Err(e);
                        }
                    },
                };
                Some(Lease {
                    id: l.id,
                    credential: LeasedCredential {
                        id: grant.id,
                        site,
                        kind: l.kind,
                        status: l.status,
                        health: l.health,
                    },
                    granted_at: l.granted_at,
                    expires_at: l.expires_at,
                    secrets,
                })
            }
            _ => None,
        };
        Ok(Acquired {
            status: resp.status,
            lease,
            reason: resp.reason,
            next_free_at: resp.next_free_at,
            alternatives: resp.alternatives,
            warnings: resp.warnings,
        })
    }

    /// A credential's secrets from the vault's cache (none stored is an
    /// empty bundle), kept beside its handle for the next lease. Outside
    /// the policy's lock: a first use may decrypt.
    fn fetch_secrets(&self, site: &str, handle: u32, id: &str) -> Result<Arc<Secrets>> {
        let written = self.vault.secrets_written();
        let secrets = self
            .vault
            .cached_secrets(site, id)?
            .unwrap_or_else(|| Arc::new(Secrets::default()));
        let mut guard = self.instance.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .store
            .data_mut()
            .handles
            .keep_secrets(handle, id, written, secrets.clone());
        Ok(secrets)
    }
}

/// The policy's handle for `request` and its site, preparing it the first
/// time; none once this host keeps as many as it will (the caller sends
/// the request).
fn request_handle(
    policy: &Policy,
    store: &mut Store<HostState>,
    request: &AcquireRequest,
) -> wasmtime::Result<Result<Option<PreparedRequest>, PoolError>> {
    let requests = &mut store.data_mut().requests;
    if let Some(found) = requests.get(request) {
        return Ok(Ok(Some(found)));
    }
    if requests.is_full() {
        return Ok(Ok(None));
    }
    let prepared = policy
        .credpool_policy_pool()
        .call_prepare(&mut *store, request)?;
    Ok(prepared.map(|handle| Some(store.data_mut().requests.insert(request, handle))))
}

/// Joins a grant's credential handle to what the host knows of it, asking
/// the policy for the id the first time this instance hands the handle out.
fn resolve_grant(
    policy: &Policy,
    store: &mut Store<HostState>,
    resp: Result<AcquireResponse, PoolError>,
) -> wasmtime::Result<Result<(AcquireResponse, Option<Granted>), PoolError>> {
    let resp = match resp {
        Ok(resp) => resp,
        Err(e) => return Ok(Err(e)),
    };
    let Some(handle) = resp.lease.as_ref().map(|l| l.credential) else {
        return Ok(Ok((resp, None)));
    };
    let state = store.data();
    if let Some((id, secrets)) = state.handles.known(handle, state.vault.secrets_written()) {
        return Ok(Ok((resp, Some(Granted { id, secrets }))));
    }
    let Some(id) = policy
        .credpool_policy_pool()
        .call_credential_id(&mut *store, handle)?
    else {
        // A policy that cannot name what it just handed out is broken:
        // a trap, so the instance is replaced.
        wasmtime::bail!("the policy granted credential handle {handle} and cannot name it");
    };
    let id = SmolStr::from(id);
    store.data_mut().handles.learn(handle, id.clone());
    Ok(Ok((resp, Some(Granted { id, secrets: None }))))
}
