//! The site's time: the system's, or a hand-moved one in tests.

use crate::ManualClock;
use std::time::Instant;

/// The site's time, replaceable in tests. Elapsed time is measured from
/// [`SimSite::start`](super::SimSite::start); TOTP codes use the time since the epoch.
pub trait SiteClock: Send + Sync + 'static {
    /// Milliseconds since the epoch.
    fn now_ms(&self) -> i64;
}

/// The system's time: the epoch time at creation, moved on by a monotonic
/// clock (a wall-clock step does not jump the site's windows).
pub struct SystemClock {
    epoch_ms: i64,
    started: Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        SystemClock {
            epoch_ms: chrono::Utc::now().timestamp_millis(),
            started: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl SiteClock for SystemClock {
    fn now_ms(&self) -> i64 {
        self.epoch_ms + self.started.elapsed().as_millis() as i64
    }
}

/// A test can move the site's time by hand, and share it with the pool.
impl SiteClock for ManualClock {
    fn now_ms(&self) -> i64 {
        ManualClock::now_ms(self)
    }
}
