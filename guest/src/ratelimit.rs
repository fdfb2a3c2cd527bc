//! Per-credential request rate as a token bucket, kept as one timestamp
//! (the generic cell rate algorithm): O(1) and 8 bytes per credential.

use crate::model::Millis;

/// `per_minute` uses a minute, with bursts of up to `burst` back to back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

impl Rate {
    fn interval(&self) -> i64 {
        60_000 / i64::from(self.per_minute.max(1))
    }

    /// The earliest time a use is allowed, given the bucket's state `tat`
    /// (theoretical arrival time of the next use; 0 for a fresh bucket).
    pub fn next_allowed(&self, tat: Millis) -> Millis {
        tat - self.interval() * i64::from(self.burst.max(1) - 1)
    }

    /// Takes one token at `now`; returns the bucket's new state.
    pub fn take(&self, tat: Millis, now: Millis) -> Millis {
        tat.max(now) + self.interval()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uses_are_spaced_by_the_rate() {
        let r = Rate {
            per_minute: 30,
            burst: 1,
        };
        let mut tat = 0;
        let now = 1_000_000;
        assert!(r.next_allowed(tat) <= now);
        tat = r.take(tat, now);
        assert_eq!(r.next_allowed(tat), now + 2_000);
        tat = r.take(tat, now + 2_000);
        assert_eq!(r.next_allowed(tat), now + 4_000);
    }

    #[test]
    fn a_burst_allows_back_to_back_uses_then_waits() {
        let r = Rate {
            per_minute: 60,
            burst: 3,
        };
        let now = 5_000_000;
        let mut tat = 0;
        for _ in 0..3 {
            assert!(r.next_allowed(tat) <= now);
            tat = r.take(tat, now);
        }
        assert_eq!(r.next_allowed(tat), now + 1_000);
    }

    #[test]
    fn an_idle_bucket_does_not_bank_more_than_its_burst() {
        let r = Rate {
            per_minute: 60,
            burst: 2,
        };
        let mut tat = r.take(0, 0);
        let later = 3_600_000;
        tat = r.take(tat, later);
        tat = r.take(tat, later);
        assert!(r.next_allowed(tat) > later);
    }
}
