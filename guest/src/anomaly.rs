//! Pattern detectors over the stream of results, each with hysteresis so an
//! anomaly is raised once when it starts and cleared once when it ends (not
//! re-raised on every request).

use crate::model::Millis;
use std::collections::VecDeque;

/// What a detector says after an observation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing new.
    None,
    /// The anomaly just started: raise it.
    Raised,
    /// The anomaly just ended: clear it.
    Cleared,
}

/// A sudden fall in success rate: a fast moving average (about the last
/// 16 results) falls `drop` below a slow one (about the last 256).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SuccessRate {
    fast: f32,
    slow: f32,
    seen: u32,
    flagged: bool,
}

impl SuccessRate {
    const FAST: f32 = 1.0 / 16.0;
    const SLOW: f32 = 1.0 / 256.0;

    /// Feeds one result; `min_seen` results are needed before judging.
    pub fn observe(&mut self, ok: bool, drop: f32, min_seen: u32) -> Change {
        let x = if ok { 1.0 } else { 0.0 };
        if self.seen == 0 {
            // Start from the first result, not from zero.
            (self.fast, self.slow) = (x, x);
        }
        self.seen = self.seen.saturating_add(1);
        self.fast += (x - self.fast) * Self::FAST;
        self.slow += (x - self.slow) * Self::SLOW;
        if self.seen < min_seen {
            return Change::None;
        }
        let fallen = self.slow - self.fast;
        if !self.flagged && fallen >= drop {
            self.flagged = true;
            return Change::Raised;
        }
        // Clear only once well recovered, so a rate hovering at the
        // threshold does not flap.
        if self.flagged && fallen < drop / 2.0 {
            self.flagged = false;
            return Change::Cleared;
        }
        Change::None
    }

    /// The fast and slow rates, for messages.
    pub fn rates(&self) -> (f32, f32) {
        (self.fast, self.slow)
    }
}

/// Many blocks within a window across a site: its defences changed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BlockBurst {
    times: VecDeque<Millis>,
    flagged: bool,
}

impl BlockBurst {
    fn expire(&mut self, now: Millis, window_ms: i64) {
        while self.times.front().is_some_and(|&t| t <= now - window_ms) {
            self.times.pop_front();
        }
    }

    /// Records a block at `now`.
    pub fn block(&mut self, now: Millis, window_ms: i64, threshold: u32) -> Change {
        self.expire(now, window_ms);
        self.times.push_back(now);
        if !self.flagged && self.times.len() as u32 >= threshold {
            self.flagged = true;
            return Change::Raised;
        }
        Change::None
    }

    /// Lets time pass: the burst ends once the window holds no block.
    pub fn tick(&mut self, now: Millis, window_ms: i64) -> Change {
        self.expire(now, window_ms);
        if self.flagged && self.times.is_empty() {
            self.flagged = false;
            return Change::Cleared;
        }
        Change::None
    }

    /// Blocks in the current window.
    pub fn count(&self) -> usize {
        self.times.len()
    }
}

/// Health below a threshold, cleared `margin` above it.
pub fn low_health(before: u8, after: u8, threshold: u8, margin: u8, flagged: bool) -> Change {
    if !flagged && after < threshold && before >= after {
        Change::Raised
    } else if flagged && after >= threshold.saturating_add(margin) {
        Change::Cleared
    } else {
        Change::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_rate_raises_nothing_and_a_fall_raises_once() {
        let mut s = SuccessRate::default();
        for i in 0..500 {
            assert_eq!(s.observe(i % 10 != 0, 0.4, 32), Change::None, "at {i}");
        }
        let raised: Vec<Change> = (0..40).map(|_| s.observe(false, 0.4, 32)).collect();
        assert_eq!(raised.iter().filter(|c| **c == Change::Raised).count(), 1);
        assert!(!raised.contains(&Change::Cleared));
        let recovered: Vec<Change> = (0..100).map(|_| s.observe(true, 0.4, 32)).collect();
        assert_eq!(
            recovered.iter().filter(|c| **c == Change::Cleared).count(),
            1
        );
    }

    #[test]
    fn too_few_results_are_not_judged() {
        let mut s = SuccessRate::default();
        for _ in 0..10 {
            s.observe(true, 0.4, 32);
        }
        for _ in 0..10 {
            assert_eq!(s.observe(false, 0.4, 32), Change::None);
        }
    }

    #[test]
    fn a_burst_of_blocks_raises_once_and_clears_after_the_window() {
        let mut b = BlockBurst::default();
        let window = 600_000;
        assert_eq!(b.block(0, window, 3), Change::None);
        assert_eq!(b.block(1_000, window, 3), Change::None);
        assert_eq!(b.block(2_000, window, 3), Change::Raised);
        assert_eq!(b.block(3_000, window, 3), Change::None);
        assert_eq!(b.tick(100_000, window), Change::None);
        assert_eq!(b.tick(700_000, window), Change::Cleared);
        assert_eq!(b.count(), 0);
    }

    #[test]
    fn spread_out_blocks_are_no_burst() {
        let mut b = BlockBurst::default();
        for i in 0..10 {
            assert_eq!(b.block(i * 700_000, 600_000, 3), Change::None);
        }
    }

    #[test]
    fn low_health_raises_on_crossing_and_clears_above_the_margin() {
        assert_eq!(low_health(35, 25, 30, 10, false), Change::Raised);
        assert_eq!(low_health(25, 15, 30, 10, true), Change::None);
        assert_eq!(low_health(35, 36, 30, 10, true), Change::None);
        assert_eq!(low_health(39, 40, 30, 10, true), Change::Cleared);
        assert_eq!(low_health(80, 81, 30, 10, false), Change::None);
    }
}
