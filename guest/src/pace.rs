//! Adaptive pacing: each credential's request rate found the way TCP finds
//! a link's capacity. Raised slowly while answers are good, cut sharply on a
//! rate limit and harder on a block; a burst of blocks across a site puts a
//! ceiling on the whole site's pace at once.

/// Pace of a credential with no configured rate when pacing is adaptive:
/// cautious, one use a second.
pub const DEFAULT_START: f32 = 60.0;
/// A rate limit halves the pace.
const RATE_LIMIT_CUT: f32 = 0.5;
/// A block quarters it.
const BLOCK_CUT: f32 = 0.25;
/// A burst of blocks across the site: its ceiling is this share of the pace
/// the blocked credential had.
const BURST_CUT: f32 = 0.5;

/// The bounds of adaptive pacing, per minute.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bounds {
    pub min: f32,
    pub max: f32,
    /// The share of its pace a success adds: growth speeds up with the
    /// pace, as a credential serving at its pace sees more successes.
    pub raise: f32,
}

impl Bounds {
    fn clamp(&self, pace: f32) -> f32 {
        pace.clamp(self.min, self.max)
    }
}

/// The pace after a success.
pub fn after_success(pace: f32, b: Bounds) -> f32 {
    b.clamp(pace + (pace * b.raise).max(0.25))
}

/// The pace after a rate limit. A `Retry-After` longer than the pace's own
/// spacing says the site wants fewer uses than the pace gave: the pace is
/// cut to at most one use per `Retry-After`.
pub fn after_rate_limit(pace: f32, retry_after_secs: Option<u32>, b: Bounds) -> f32 {
    let mut cut = pace * RATE_LIMIT_CUT;
    if let Some(secs) = retry_after_secs.filter(|s| *s > 0) {
        let asked = 60.0 / secs as f32;
        if asked < pace {
            cut = cut.min(asked.max(pace * BLOCK_CUT));
        }
    }
    b.clamp(cut)
}

/// The pace after a block.
pub fn after_block(pace: f32, b: Bounds) -> f32 {
    b.clamp(pace * BLOCK_CUT)
}

/// A site's ceiling after a burst of blocks, given the pace the credential
/// whose block completed the burst had before it.
pub fn burst_ceiling(current: Option<f32>, pace_before: f32, b: Bounds) -> f32 {
    let cut = b.clamp(pace_before * BURST_CUT);
    current.map_or(cut, |c| c.min(cut))
}

/// The ceiling after a success on its site: it rises as one credential's
/// pace would, spread over the site's `members`, and is lifted (none) once
/// at the upper bound.
pub fn ceiling_after_success(ceiling: f32, members: usize, b: Bounds) -> Option<f32> {
    let raised = ceiling + (ceiling * b.raise).max(0.25) / members.max(1) as f32;
    (raised < b.max).then_some(raised)
}

/// The pace a credential runs at: its own, under its site's ceiling.
pub fn effective(own: f32, ceiling: Option<f32>) -> f32 {
    ceiling.map_or(own, |c| own.min(c))
}

/// A pace in one byte for the counter pages: 0 = none learned, else
/// `2^(code/16) / 4` per minute (steps of about 4%, up to about 15,000 a
/// minute), so the learned pace survives restarts in a byte that was spare.
pub fn encode(pace: f32) -> u8 {
    if pace.is_nan() || pace <= 0.0 {
        return 0;
    }
    ((pace * 4.0).log2() * 16.0).round().clamp(1.0, 255.0) as u8
}

/// The pace of a code written by [`encode`]; `None` for 0.
pub fn decode(code: u8) -> Option<f32> {
    (code != 0).then(|| 2f32.powf(f32::from(code) / 16.0) / 4.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Bounds = Bounds {
        min: 6.0,
        max: 600.0,
        raise: 1.0 / 16.0,
    };

    #[test]
    fn successes_raise_the_pace_slowly_up_to_the_bound() {
        let p = after_success(60.0, B);
        assert!(p > 60.0 && p < 66.0, "{p}");
        let mut p = 60.0;
        let mut steps = 0;
        while p < 600.0 {
            p = after_success(p, B);
            steps += 1;
        }
        assert_eq!(p, 600.0);
        assert!(steps > 30, "raised too fast: {steps} successes");
        assert_eq!(after_success(600.0, B), 600.0);
    }

    #[test]
    fn a_rate_limit_halves_and_a_block_quarters() {
        assert_eq!(after_rate_limit(120.0, None, B), 60.0);
        assert_eq!(after_block(120.0, B), 30.0);
        // Never under the lower bound.
        assert_eq!(after_block(10.0, B), 6.0);
        assert_eq!(after_rate_limit(8.0, None, B), 6.0);
    }

    #[test]
    fn retry_after_cuts_to_its_spacing_but_not_below_a_block_cut() {
        // Asked to wait 2 s at 120/min: at most 30/min.
        assert_eq!(after_rate_limit(120.0, Some(2), B), 30.0);
        // A Retry-After within the halved spacing changes nothing.
        assert_eq!(after_rate_limit(120.0, Some(0), B), 60.0);
        assert_eq!(after_rate_limit(120.0, Some(1), B), 60.0);
        assert_eq!(after_rate_limit(600.0, Some(1), B), 150.0);
        // A day-long Retry-After is a budget, not a pace: no deeper than a
        // block's cut.
        assert_eq!(after_rate_limit(120.0, Some(86_400), B), 30.0);
    }

    #[test]
    fn a_burst_sets_a_site_ceiling_that_only_falls_and_rises_slowly() {
        let c = burst_ceiling(None, 400.0, B);
        assert_eq!(c, 200.0);
        assert_eq!(burst_ceiling(Some(c), 600.0, B), 200.0);
        assert_eq!(burst_ceiling(Some(c), 100.0, B), 50.0);
        assert_eq!(effective(300.0, Some(c)), 200.0);
        assert_eq!(effective(100.0, Some(c)), 100.0);
        assert_eq!(effective(100.0, None), 100.0);
        // Ten members: ten successes raise it as one would a credential.
        let mut ten = Some(c);
        for _ in 0..10 {
            ten = ceiling_after_success(ten.unwrap(), 10, B);
        }
        let one = ceiling_after_success(c, 1, B).unwrap();
        assert!((ten.unwrap() - one).abs() < 0.5, "{ten:?} {one}");
        assert_eq!(ceiling_after_success(599.9, 1, B), None);
    }

    #[test]
    fn a_pace_survives_its_byte_within_five_percent() {
        assert_eq!(encode(0.0), 0);
        assert_eq!(decode(0), None);
        for pace in [1.0f32, 6.0, 42.0, 60.0, 480.0, 600.0, 10_000.0] {
            let back = decode(encode(pace)).unwrap();
            assert!((back - pace).abs() / pace < 0.05, "{pace} -> {back}");
        }
    }
}
