//! How long a credential rests after a rate limit or a block.
//!
//! Exponential backoff (base doubled per repeat in a row) with upward
//! jitter, capped; a site's `Retry-After` is honoured as given. A new rest
//! never ends before the one already running: a repeat never shortens.

use crate::model::Millis;

/// The rule for one failure class.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// First rest, in milliseconds.
    pub base_ms: u64,
    /// Longest rest, in milliseconds.
    pub cap_ms: u64,
    /// Extra rest drawn in `0..=jitter * rest`, so credentials blocked
    /// together do not come back together.
    pub jitter: f64,
}

impl Backoff {
    /// The rest for the `streak`th failure in a row (1 = first), given a
    /// uniform draw `unit` in [0, 1). Capped, jitter included.
    pub fn rest_ms(&self, streak: u32, unit: f64) -> u64 {
        let doublings = streak.saturating_sub(1).min(32);
        let exp = self.base_ms.saturating_mul(1u64 << doublings);
        let jittered = exp as f64 * (1.0 + self.jitter * unit.clamp(0.0, 1.0));
        (jittered as u64)
            .min(self.cap_ms)
            .max(self.base_ms.min(self.cap_ms))
    }
}

/// When a rest that starts `now` ends: the backoff's rest, or the site's
/// `Retry-After` when it gave one; never before `current` (a running rest).
pub fn rest_until(
    rule: &Backoff,
    streak: u32,
    retry_after_secs: Option<u32>,
    unit: f64,
    now: Millis,
    current: Option<Millis>,
) -> Millis {
    let rest = match retry_after_secs {
        Some(secs) => u64::from(secs) * 1000,
        None => rule.rest_ms(streak, unit),
    };
    let until = now.saturating_add(rest as i64);
    match current {
        Some(c) if c > until => c,
        _ => until,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Backoff = Backoff {
        base_ms: 300_000,
        cap_ms: 3_600_000,
        jitter: 0.1,
    };

    #[test]
    fn the_first_rest_is_the_base_plus_jitter() {
        assert_eq!(RATE.rest_ms(1, 0.0), 300_000);
        assert_eq!(RATE.rest_ms(1, 0.5), 315_000);
    }

    #[test]
    fn repeats_double_up_to_the_cap() {
        assert_eq!(RATE.rest_ms(2, 0.0), 600_000);
        assert_eq!(RATE.rest_ms(3, 0.0), 1_200_000);
        assert_eq!(RATE.rest_ms(4, 0.0), 2_400_000);
        assert_eq!(RATE.rest_ms(5, 0.0), 3_600_000);
        assert_eq!(RATE.rest_ms(60, 0.99), 3_600_000);
    }

    #[test]
    fn jitter_only_lengthens() {
        for i in 0..100 {
            let unit = i as f64 / 100.0;
            let r = RATE.rest_ms(2, unit);
            assert!((600_000..=660_000).contains(&r), "{r}");
        }
    }

    #[test]
    fn retry_after_is_honoured() {
        let until = rest_until(&RATE, 1, Some(7), 0.0, 1_000, None);
        assert_eq!(until, 8_000);
    }

    #[test]
    fn a_repeat_never_shortens_a_running_rest() {
        let running = Some(10_000_000);
        assert_eq!(rest_until(&RATE, 1, Some(1), 0.0, 0, running), 10_000_000);
        assert_eq!(rest_until(&RATE, 1, None, 0.0, 0, running), 10_000_000);
        let longer = rest_until(&RATE, 5, None, 0.0, 9_000_000, running);
        assert_eq!(longer, 9_000_000 + 3_600_000);
    }
}
