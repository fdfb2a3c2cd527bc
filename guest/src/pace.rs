//! Adaptive pacing: each credential's request rate found the way TCP finds
//! a link's capacity. Slow start doubles it until the site first refuses;
//! then a 429 cuts it by 30% and a block by three quarters (from the pace
//! really achieved, as TCP cuts its flight size), and successes bring it
//! back quickly to just under the refused pace, hold it there and probe
//! above it ever faster (CUBIC's shape). A burst of blocks across a site
//! puts a ceiling on the whole site's pace at once.

/// Pace of a credential with no configured rate when pacing is adaptive:
/// cautious, one use a second.
pub const DEFAULT_START: f32 = 60.0;
/// A rate limit cuts the pace by 30% (CUBIC's multiplicative decrease):
/// the credential also rests for the `Retry-After`, and the refused pace
/// was only just over what the site bears.
const RATE_LIMIT_CUT: f32 = 0.7;
/// A block quarters it...
const BLOCK_CUT: f32 = 0.25;
/// ...and puts the pace to approach at half the pace that was blocked: a
/// block says the pace was well over what the site bears, not just over.
const BLOCK_TARGET: f32 = 0.5;
/// A burst of blocks across the site: its ceiling is this share of the pace
/// the blocked credential had.
const BURST_CUT: f32 = 0.5;
/// ...and the pace it returns to is this share of it.
const BURST_AIM: f32 = 0.75;
/// Once refused, a success closes this share of `raise` of the gap to the
/// refused pace (fast while far below it)...
const APPROACH: f32 = 0.25;
/// ...and above it probes away from it by this share of `raise` of the gap
/// (slowly at first, faster the longer the answers stay good).
const PROBE: f32 = 1.0 / 16.0;
/// The least a success adds once refused, as a share of `raise` of the
/// pace: what starts the probe at the refused pace.
const NUDGE: f32 = 1.0 / 256.0;
/// The bounds of adaptive pacing, per minute.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bounds {
    pub min: f32,
    pub max: f32,
    /// How fast the pace grows (`pace_raise`): in slow start a doubling
    /// per `1 / (4 raise)` seconds of uses, once refused the share of the
    /// gap a success closes.
    pub raise: f32,
}

impl Bounds {
    fn clamp(&self, pace: f32) -> f32 {
        pace.clamp(self.min, self.max)
    }
}

/// A credential's learned pace, and the pace the site last refused (the
/// pace it approaches and probes around; none yet = slow start), per
/// minute. As TCP CUBIC finds a link's capacity: multiplicative growth
/// until the first refusal, then back quickly to just under the refused
/// pace, a plateau there, and a probe above it that speeds up while the
/// answers stay good.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Learned {
    pub pace: f32,
    pub refused: Option<f32>,
}

/// After a success.
pub fn after_success(l: Learned, b: Bounds) -> Learned {
    let pace = l.pace;
    let raised = match l.refused {
        // Slow start: a doubling per `1 / (4 raise)` seconds of uses at
        // this pace (a second at `raise = 0.25`; at most per success), as
        // TCP doubles per round trip: fast, yet the pace outruns the answers
        // about it by about one doubling.
        None => {
            let uses_per_doubling = pace / 60.0 / (4.0 * b.raise);
            (pace * 2f32.powf(1.0 / uses_per_doubling.max(1.0))).max(pace + 0.25)
        }
        Some(refused) => {
            let gap = refused - pace;
            let step = if gap > 0.0 {
                gap * b.raise * APPROACH
            } else {
                -gap * b.raise * PROBE
            };
            pace + step.max(pace * b.raise * NUDGE).max(0.01)
        }
    };
    Learned {
        pace: b.clamp(raised),
        refused: l.refused,
    }
}

/// After a rate limit: the refused pace is this one, and the pace is
/// halved. The credential rests for the `Retry-After` (see
/// [`crate::cooldown`]); that is how it is honoured, not by a deeper cut:
/// a site's `Retry-After` is the time to the end of its window, which says
/// nothing of the pace it bears.
///
/// A refusal below the pace refused before says that one was too high
/// (the site's limit fell), and the first refusal comes late, after slow
/// start has run past the limit: the pace to approach is then midway
/// between the cut and the refused pace (CUBIC's fast convergence).
///
/// Both start from the pace the credential really achieved (`achieved`,
/// when known: its recent successes per minute) if that is lower, as TCP
/// halves its flight size, not its window: the site refused what it got,
/// not what the pace would have allowed (slow start runs ahead of the
/// answers).
pub fn after_rate_limit(l: Learned, achieved: Option<f32>, b: Bounds) -> Learned {
    let pace = achieved.map_or(l.pace, |a| a.min(l.pace));
    let cut = pace * RATE_LIMIT_CUT;
    let refused = match l.refused {
        Some(r) if pace >= r => pace,
        // Below the pace refused before, or ending slow start.
        _ => (pace + cut) / 2.0,
    };
    Learned {
        pace: b.clamp(cut),
        refused: Some(b.clamp(refused)),
    }
}

/// After a block: quartered, and the pace to approach is half this one
/// (both from the pace achieved, as for a rate limit).
pub fn after_block(l: Learned, achieved: Option<f32>, b: Bounds) -> Learned {
    let pace = achieved.map_or(l.pace, |a| a.min(l.pace));
    let target = b.clamp(pace * BLOCK_TARGET);
    Learned {
        pace: b.clamp(pace * BLOCK_CUT),
        refused: Some(l.refused.map_or(target, |r| r.min(target))),
    }
}

/// A site's ceiling after a burst of blocks, given the pace the credential
/// whose block completed the burst had before it: cut to half that pace,
/// and aimed back at three quarters of it. A burst says the site's limit
/// fell, not by how much; some of its blocks may be ones no pace avoids.
pub fn burst_ceiling(current: Option<Learned>, pace_before: f32, b: Bounds) -> Learned {
    let cut = b.clamp(pace_before * BURST_CUT);
    let aim = b.clamp(pace_before * BURST_AIM);
    Learned {
        pace: current.map_or(cut, |c| c.pace.min(cut)),
        refused: Some(current.and_then(|c| c.refused).map_or(aim, |r| r.min(aim))),
    }
}

/// The ceiling after a success on its site: it moves as a credential's
/// pace would after a success (back quickly to its aim, then probing
/// above it), spread over the site's `members`; lifted (none) once at the
/// upper bound.
pub fn ceiling_after_success(ceiling: Learned, members: usize, b: Bounds) -> Option<Learned> {
    let step = (after_success(ceiling, b).pace - ceiling.pace) / members.max(1) as f32;
    let raised = ceiling.pace + step;
    (raised < b.max).then_some(Learned {
        pace: raised,
        refused: ceiling.refused,
    })
}

/// A credential under its site's ceiling: its pace no higher, and out of
/// slow start. The pace it aims at stays, so it follows the ceiling back up
/// as the ceiling returns.
pub fn under(l: Learned, ceiling: Option<f32>) -> Learned {
    match ceiling {
        None => l,
        Some(c) => Learned {
            pace: l.pace.min(c),
            refused: Some(l.refused.unwrap_or(c)),
        },
    }
}

/// Successes per minute a credential achieves, as a moving mean of the
/// time between them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Achieved {
    /// The last success (ms), or none since the last refusal: the time
    /// across a rest is no measure of pace.
    last_ok_at: Option<i64>,
    /// The moving mean of the gap between successes, ms; 0 = none yet.
    gap_ms: f32,
}

impl Achieved {
    /// Records a success at `now` (ms), the credential's pace being
    /// `pace` a minute. A gap of more than four of the pace's spacings is
    /// idleness (the crawl asked for nothing), not a measure of what the
    /// site bears: it is not counted.
    pub fn success(&mut self, now: i64, pace: f32) {
        let idle = 4.0 * 60_000.0 / pace.max(0.01);
        if let Some(at) = self.last_ok_at
            && ((now - at) as f32) <= idle
        {
            let sample = (now - at).max(1) as f32;
            self.gap_ms = if self.gap_ms == 0.0 {
                sample
            } else {
                self.gap_ms + (sample - self.gap_ms) / 4.0
            };
        }
        self.last_ok_at = Some(now);
    }

    /// Records a refusal: the next gap would span a rest.
    pub fn refusal(&mut self) {
        self.last_ok_at = None;
    }

    /// The achieved successes per minute, once measured.
    pub fn per_minute(&self) -> Option<f32> {
        (self.gap_ms > 0.0).then(|| 60_000.0 / self.gap_ms)
    }
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

    fn fresh(pace: f32) -> Learned {
        Learned {
            pace,
            refused: None,
        }
    }

    #[test]
    fn slow_start_doubles_per_stretch_of_uses_up_to_the_bound() {
        // raise 1/16: a doubling per 4 s of uses; at 60/min that is every
        // 4 uses, so each success adds a fourth root of two.
        let p = after_success(fresh(60.0), B).pace;
        assert!((p - 60.0 * 2f32.powf(0.25)).abs() < 0.01, "{p}");
        // At 6/min a use is 10 s apart: no more than a doubling per use.
        assert_eq!(after_success(fresh(6.0), B).pace, 12.0);
        let mut l = fresh(60.0);
        let mut steps = 0;
        while l.pace < 600.0 {
            l = after_success(l, B);
            steps += 1;
        }
        assert_eq!(l.pace, 600.0);
        // 60 -> 600 is 3.3 doublings of 4 s each at a rising pace.
        assert!((40..=120).contains(&steps), "{steps} successes");
        assert_eq!(after_success(l, B).pace, 600.0);
    }

    #[test]
    fn a_first_rate_limit_ends_slow_start_below_the_refused_pace() {
        let l = after_rate_limit(fresh(400.0), None, B);
        assert_eq!(l.pace, 280.0, "cut by 30%");
        // Slow start ran past the limit: approach midway.
        assert_eq!(l.refused, Some(340.0));
        // Measured successes below the pace: cut from what was achieved.
        let l = after_rate_limit(fresh(400.0), Some(200.0), B);
        assert_eq!((l.pace, l.refused), (140.0, Some(170.0)));
        // Achieved above the pace (a burst) changes nothing.
        assert_eq!(
            after_rate_limit(fresh(400.0), Some(900.0), B),
            after_rate_limit(fresh(400.0), None, B)
        );
    }

    #[test]
    fn once_refused_the_pace_returns_fast_plateaus_then_probes() {
        let mut l = Learned {
            pace: 280.0,
            refused: Some(400.0),
        };
        let mut to_near = 0;
        while l.pace < 390.0 {
            l = after_success(l, B);
            to_near += 1;
        }
        let mut plateau = 0;
        while l.pace < 400.0 {
            l = after_success(l, B);
            plateau += 1;
        }
        let mut probe = 0;
        while l.pace < 440.0 {
            l = after_success(l, B);
            probe += 1;
        }
        // Most of the way back quickly, the last 10 slowly, then a probe
        // that speeds up: 40 above took fewer successes than it would at
        // the plateau's step.
        assert!(to_near < plateau * 4, "{to_near} vs {plateau}");
        assert!(probe < 40 * plateau / 10, "{probe} vs {plateau}");
        assert_eq!(l.refused, Some(400.0));
    }

    #[test]
    fn a_refusal_at_or_above_the_refused_pace_moves_it_up_and_below_it_converges() {
        let l = Learned {
            pace: 420.0,
            refused: Some(400.0),
        };
        let after = after_rate_limit(l, None, B);
        assert_eq!((after.pace, after.refused), (294.0, Some(420.0)));
        let l = Learned {
            pace: 300.0,
            refused: Some(400.0),
        };
        let after = after_rate_limit(l, None, B);
        assert_eq!((after.pace, after.refused), (210.0, Some(255.0)));
    }

    #[test]
    fn a_block_quarters_and_aims_at_half_never_below_the_bound() {
        let l = after_block(fresh(120.0), None, B);
        assert_eq!((l.pace, l.refused), (30.0, Some(60.0)));
        let l = after_block(
            Learned {
                pace: 120.0,
                refused: Some(40.0),
            },
            None,
            B,
        );
        assert_eq!(l.refused, Some(40.0), "never raised by a block");
        assert_eq!(after_block(fresh(10.0), None, B).pace, 6.0);
        assert_eq!(after_rate_limit(fresh(8.0), None, B).pace, 6.0);
    }

    #[test]
    fn the_achieved_pace_is_measured_between_successes_and_not_across_rests_or_idleness() {
        let mut a = Achieved::default();
        assert_eq!(a.per_minute(), None);
        for t in 0..5 {
            a.success(t * 500, 120.0);
        }
        assert_eq!(a.per_minute(), Some(120.0));
        a.refusal();
        // The next success follows a rest: it starts a new measure.
        a.success(10_000, 120.0);
        assert_eq!(a.per_minute(), Some(120.0));
        // 3 s at a pace of 120 (0.5 s apart) is more than four spacings.
        a.success(13_000, 120.0);
        assert_eq!(a.per_minute(), Some(120.0));
        a.success(13_250, 120.0);
        let faster = a.per_minute().unwrap();
        assert!(faster > 120.0 && faster < 240.0, "{faster}");
    }

    #[test]
    fn a_burst_sets_a_site_ceiling_that_only_falls_and_returns_to_its_aim() {
        let c = burst_ceiling(None, 400.0, B);
        assert_eq!((c.pace, c.refused), (200.0, Some(300.0)));
        let again = burst_ceiling(Some(c), 600.0, B);
        assert_eq!((again.pace, again.refused), (200.0, Some(300.0)));
        let lower = burst_ceiling(Some(c), 100.0, B);
        assert_eq!((lower.pace, lower.refused), (50.0, Some(75.0)));
        assert_eq!(effective(300.0, Some(c.pace)), 200.0);
        assert_eq!(effective(100.0, Some(c.pace)), 100.0);
        assert_eq!(effective(100.0, None), 100.0);
        // A member under it neither runs nor aims above it.
        let l = under(fresh(300.0), Some(c.pace));
        assert_eq!((l.pace, l.refused), (200.0, Some(200.0)));
        assert_eq!(under(fresh(300.0), None), fresh(300.0));
        // Ten members: ten successes move it as one would a credential.
        let mut ten = c;
        for _ in 0..10 {
            ten = ceiling_after_success(ten, 10, B).unwrap();
        }
        let one = ceiling_after_success(c, 1, B).unwrap();
        assert!((ten.pace - one.pace).abs() < 0.5, "{ten:?} {one:?}");
        // Back towards its aim: most of the way in a few hundred successes
        // of one member, never past it quickly.
        let mut back = c;
        let mut steps = 0;
        while back.pace < 290.0 {
            back = ceiling_after_success(back, 1, B).unwrap();
            steps += 1;
        }
        assert!((10..400).contains(&steps), "{steps}");
        let top = Learned {
            pace: 599.99,
            refused: Some(600.0),
        };
        assert_eq!(ceiling_after_success(top, 1, B), None);
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
