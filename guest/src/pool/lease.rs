//! Leases: opened by an acquire, ended by a report, a release, a removal
//! or their lapse.

use super::{LATE_REPORT_WINDOW_MS, Lapsed, Lease, Pool};
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
        self.close_lease(seq, now, false);
    }

    /// Ends a lease whose TTL passed with no report: its slot is free, but
    /// it is kept (with its stored record) for a late report.
    pub(super) fn lapse_lease(&mut self, seq: u64, now: Millis) {
        let Some(lease) = self.close_lease(seq, now, true) else {
            return;
        };
        let credential = self.rec(lease.slot).id.clone();
        self.keep_lapsed(
            seq,
            lease.nonce,
            credential,
            lease.expires_at,
            lease.persisted,
        );
    }

    pub(super) fn keep_lapsed(
        &mut self,
        seq: u64,
        nonce: u64,
        credential: Box<str>,
        expires_at: Millis,
        persisted: bool,
    ) {
        self.lapsed.insert(
            seq,
            Lapsed {
                nonce,
                credential,
                expires_at,
                persisted,
            },
        );
        self.lapsed_order.push_back((expires_at, seq));
    }

    /// Lets go of lapsed leases past the late-report window (and deletes
    /// their records). Cost: the leases let go.
    pub(super) fn forget_lapsed(&mut self, now: Millis) {
        while let Some(&(t, seq)) = self.lapsed_order.front() {
            if t.saturating_add(LATE_REPORT_WINDOW_MS) > now {
                break;
            }
            self.lapsed_order.pop_front();
            if let Some(l) = self.lapsed.get(&seq)
                && l.expires_at == t
            {
                self.let_go_lapsed(seq);
            }
        }
    }

    fn let_go_lapsed(&mut self, seq: u64) -> Option<Lapsed> {
        let l = self.lapsed.remove(&seq)?;
        if l.persisted {
            self.ended_leases.push(LeaseId {
                seq,
                nonce: l.nonce,
            });
        }
        Some(l)
    }

    /// The credential of a lapsed lease, which a late report ends for good;
    /// `None` for an id never granted, already reported, past the window,
    /// or whose credential was removed.
    pub(super) fn take_lapsed(&mut self, id: LeaseId) -> Option<u32> {
        if self.lapsed.get(&id.seq)?.nonce != id.nonce {
            return None;
        }
        let l = self.let_go_lapsed(id.seq)?;
        self.by_id.get(&l.credential).copied()
    }

    /// Frees a lease's slot; with `keep_row`, its stored record stays.
    fn close_lease(&mut self, seq: u64, now: Millis, keep_row: bool) -> Option<Lease> {
        let lease = self.leases.remove(&seq)?;
        if lease.persisted && !keep_row {
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
        Some(lease)
    }

    /// Ends a lease without a result; a lapsed one is let go.
    pub fn release(&mut self, lease: LeaseId) -> Result<(), PoolError> {
        let now = self.host.now();
        match self.find_lease(lease) {
            Ok(seq) => self.end_lease(seq, now),
            Err(e) => {
                self.take_lapsed(lease).ok_or(e)?;
            }
        }
        Ok(())
    }
}
