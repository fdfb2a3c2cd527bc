//! The handles of one policy instance: numbers that cross the boundary
//! with nothing to allocate, where strings would be copied on every call.
//! - Credential handles: a lease names its credential by handle; the host
//!   asks the policy for the id the first time it meets one and keeps it
//!   here with the decrypted secrets, so a lease costs no string lookup.
//! - Request handles: the policy keeps each distinct acquire request once
//!   (`prepare`); the host finds the handle of a request here.
//!
//! Handles belong to their instance: a new instance starts with empty
//! tables.

use crate::AcquireRequest;
use crate::secrets::Secrets;
use smol_str::SmolStr;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

/// Requests a host prepares per instance at most; past that it sends the
/// request itself (the policy's own bound is higher).
pub(crate) const MAX_REQUESTS: usize = 1024;

/// A prepared request: its handle, and its site to share with leases.
struct Prepared {
    request: AcquireRequest,
    handle: u32,
    site: Arc<str>,
}

/// Prepared requests, found by a hash of their fields.
#[derive(Default)]
pub(crate) struct Requests {
    prepared: Vec<Prepared>,
    /// Hash of a request -> its places in `prepared`.
    by_hash: HashMap<u64, Vec<usize>>,
    /// The place of the request last looked up: a crawler loop asks the
    /// same thing again, and comparing it costs less than hashing it.
    last: Option<usize>,
}

impl Requests {
    /// The handle `req` was prepared under, and its site, if it was.
    pub fn get(&mut self, req: &AcquireRequest) -> Option<(u32, Arc<str>)> {
        let at = match self.last {
            Some(i) if same(&self.prepared[i].request, req) => i,
            _ => {
                let places = self.by_hash.get(&request_hash(req))?;
                let i = *places
                    .iter()
                    .find(|&&i| same(&self.prepared[i].request, req))?;
                self.last = Some(i);
                i
            }
        };
        let p = &self.prepared[at];
        Some((p.handle, p.site.clone()))
    }

    pub fn is_full(&self) -> bool {
        self.prepared.len() >= MAX_REQUESTS
    }

    /// Notes that `req` was prepared as `handle`; returns the handle and
    /// the site as `get` will (the first handle, if it was noted before).
    pub fn insert(&mut self, req: &AcquireRequest, handle: u32) -> (u32, Arc<str>) {
        if let Some(found) = self.get(req) {
            return found;
        }
        let site: Arc<str> = req.site.as_str().into();
        self.by_hash
            .entry(request_hash(req))
            .or_default()
            .push(self.prepared.len());
        self.prepared.push(Prepared {
            request: req.clone(),
            handle,
            site: site.clone(),
        });
        (handle, site)
    }
}

// The generated request type has no Hash or Eq: hash and compare its
// fields here rather than copying it into a key on every call.
fn request_hash(r: &AcquireRequest) -> u64 {
    let mut h = DefaultHasher::new();
    r.site.hash(&mut h);
    r.kind.map(|k| k as u8).hash(&mut h);
    r.purpose.hash(&mut h);
    r.tags.hash(&mut h);
    r.lease_ttl_ms.hash(&mut h);
    r.prefer_fresh.hash(&mut h);
    h.finish()
}

fn same(a: &AcquireRequest, b: &AcquireRequest) -> bool {
    a.site == b.site
        && a.kind.map(|k| k as u8) == b.kind.map(|k| k as u8)
        && a.purpose == b.purpose
        && a.tags == b.tags
        && a.lease_ttl_ms == b.lease_ttl_ms
        && a.prefer_fresh == b.prefer_fresh
}

#[derive(Default)]
pub(crate) struct Handles {
    entries: Vec<Option<Entry>>,
}

struct Entry {
    /// Inline when short: a lease copies it from this entry, whose line
    /// is loaded anyway, instead of touching a shared count elsewhere.
    id: SmolStr,
    /// The secrets and the vault's write count read before they were
    /// fetched: they are current while the count has not moved.
    secrets: Option<(u64, Arc<Secrets>)>,
}

impl Handles {
    fn entry(&self, handle: u32) -> Option<&Entry> {
        self.entries.get(handle as usize)?.as_ref()
    }

    /// The credential id behind a known `handle`, and its kept secrets
    /// if the vault has written no bundle since they were fetched
    /// (`written` is its count now).
    pub fn known(&self, handle: u32, written: u64) -> Option<(SmolStr, Option<Arc<Secrets>>)> {
        let e = self.entry(handle)?;
        let secrets = match &e.secrets {
            Some((at, secrets)) if *at == written => Some(secrets.clone()),
            _ => None,
        };
        Some((e.id.clone(), secrets))
    }

    /// Notes the id the policy gave for `handle`.
    pub fn learn(&mut self, handle: u32, id: SmolStr) {
        let i = handle as usize;
        if self.entries.len() <= i {
            self.entries.resize_with(i + 1, || None);
        }
        self.entries[i] = Some(Entry { id, secrets: None });
    }

    /// Keeps secrets fetched for `handle` when the vault's count was
    /// `written`, unless the handle now names another credential.
    pub fn keep_secrets(&mut self, handle: u32, id: &str, written: u64, secrets: Arc<Secrets>) {
        if let Some(Some(e)) = self.entries.get_mut(handle as usize)
            && &*e.id == id
        {
            e.secrets = Some((written, secrets));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CredentialKind;

    #[test]
    fn requests_are_found_by_every_field_and_bounded() {
        let mut r = Requests::default();
        let plain = AcquireRequest::site("jd.com");
        let tokens = AcquireRequest {
            kind: Some(CredentialKind::Token),
            ..AcquireRequest::site("jd.com")
        };
        r.insert(&plain, 0);
        r.insert(&tokens, 1);
        assert_eq!(r.insert(&plain, 7).0, 0, "the first handle stays");
        let handle = |r: &mut Requests, q: &AcquireRequest| r.get(q).map(|(h, _)| h);
        assert_eq!(handle(&mut r, &plain), Some(0));
        assert_eq!(handle(&mut r, &tokens), Some(1));
        // Again, now from the last-looked-up entry.
        assert_eq!(
            r.get(&tokens).map(|(h, s)| (h, s.to_string())),
            Some((1, "jd.com".into()))
        );
        let other_ttl = AcquireRequest {
            lease_ttl_ms: Some(5),
            ..AcquireRequest::site("jd.com")
        };
        assert_eq!(handle(&mut r, &other_ttl), None);
        for i in 2..MAX_REQUESTS {
            r.insert(&AcquireRequest::site(&format!("s{i}")), i as u32);
        }
        assert!(r.is_full());
        assert_eq!(handle(&mut r, &AcquireRequest::site("s9")), Some(9));
    }

    #[test]
    fn secrets_are_reused_only_while_the_vault_wrote_nothing() {
        let mut h = Handles::default();
        let id = |h: &Handles| h.known(3, 0).map(|(id, _)| id.to_string());
        let kept = |h: &Handles, written| h.known(3, written).and_then(|(_, s)| s).is_some();
        assert!(id(&h).is_none());
        h.learn(3, "c3".into());
        assert_eq!(id(&h).as_deref(), Some("c3"));
        assert!(!kept(&h, 7));
        h.keep_secrets(3, "c3", 7, Arc::new(Secrets::default()));
        assert!(kept(&h, 7));
        assert!(!kept(&h, 8), "a bundle write since: fetch again");
        // Secrets fetched for another credential are not kept.
        h.keep_secrets(3, "other", 9, Arc::new(Secrets::default()));
        assert!(!kept(&h, 9));
        assert!(h.known(1, 0).is_none());
    }
}
