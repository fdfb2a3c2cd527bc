//! Leases: opened by an acquire, ended by a report, a release, a removal
//! or their lapse.

use super::{Lease, Pool};
use crate::model::*;
use crate::ports::Host;
use std::cmp::Reverse;

impl<H: Host> Pool<H> {
    pub(super) fn open_lease(
        &mut self,
        slot: u32,
        seq: u64,
        nonce: u64,
        granted: Millis,
        expires: Millis,
    ) {
        let rec = self.rec_mut(slot);
        rec.open_leases += 1;
        let si = rec.site as usize;
        let site = &mut self.sites[si];
        site.open_leases += 1;
        site.lease_ends.push(Reverse((expires, seq)));
        self.leases.insert(
            seq,
            Lease {
                slot,
                nonce,
                granted_at: granted,
                expires_at: expires,
                persisted: false,
            },
        );
        // An ended lease leaves its entry until it falls due (a TTL later):
        // drop those now and then, so the heap stays near the open leases
        // at any rate of acquires. Amortised O(1).
        let site = &mut self.sites[si];
        if site.lease_ends.len() > 2 * site.open_leases as usize + 1024 {
            let leases = &self.leases;
            site.lease_ends
                .retain(|Reverse((t, seq))| leases.get(seq).is_some_and(|l| l.expires_at == *t));
        }
    }

    pub(super) fn find_lease(&self, id: LeaseId) -> Result<u64, PoolError> {
        match self.leases.get(&id.seq) {
            Some(l) if l.nonce == id.nonce => Ok(id.seq),
            _ => Err(PoolError::LeaseNotFound(id.to_string())),
        }
    }

    pub(super) fn end_lease(&mut self, seq: u64, now: Millis) {
        let Some(lease) = self.leases.remove(&seq) else {
            return;
        };
        if lease.persisted {
            self.ended_leases.push(LeaseId {
                seq,
                nonce: lease.nonce,
            });
        }
        let rec = self.rec_mut(lease.slot);
        rec.open_leases = rec.open_leases.saturating_sub(1);
        let si = rec.site as usize;
        self.sites[si].open_leases -= 1;
        self.refresh(lease.slot, now);
    }

    /// Ends a lease without a result.
    pub fn release(&mut self, lease: LeaseId) -> Result<(), PoolError> {
        let seq = self.find_lease(lease)?;
        let now = self.host.now();
        self.end_lease(seq, now);
        Ok(())
    }
}
