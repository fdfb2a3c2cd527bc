//! The site's captcha pictures and its slider check. A slider's gap comes
//! from the pending captcha's draw; a drag track passes when it ends on the
//! gap and moves as a hand does. The rules look at the physics of the
//! track (speed rises then falls, the hand wobbles, a human time, uneven
//! sampling), never at how any particular generator makes one.

use super::seeded;

/// How far from the gap a track may end (pixels).
pub const TOLERANCE: i64 = 5;
/// A drag faster than this is a script.
const MIN_DURATION_MS: i64 = 300;
/// A drag slower than this was given up.
const MAX_DURATION_MS: i64 = 15_000;
/// Fewer samples than this cannot show a hand.
const MIN_POINTS: usize = 8;
/// Pixels per millisecond no hand reaches.
const MAX_SPEED: f64 = 5.0;
/// The first and the last fifth of the drag must be slower than the
/// fastest fifth by this factor: a hand speeds up, then slows down.
const EDGE_SPEED_RATIO: f64 = 0.8;

/// Why a track was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Not `[[x, y, t], …]` of integers, or time going backwards.
    Malformed,
    TooFewPoints,
    /// It does not end within [`TOLERANCE`] of the gap.
    MissedGap,
    TooFast,
    TooSlow,
    /// Perfectly level: no hand does that.
    NoVerticalMovement,
    /// Every sample the same time apart.
    TooRegular,
    /// No speed-up and slow-down.
    ConstantSpeed,
}

/// The gap of a slider captcha whose draw is `captcha` (pixels, 40..=220).
pub fn gap_of(captcha: &str) -> i64 {
    let h = captcha.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    40 + (h % 181) as i64
}

/// The captcha picture's media type.
pub const IMAGE_TYPE: &str = "image/png";

/// The captcha's picture: a 140x48 greyscale PNG of seeded noise (the site
/// does not draw letters; a test's solver, or the site's test hook
/// [`crate::simulate::site::SimSite::answer_of_image`], compares bytes).
pub fn image(captcha: &str) -> Vec<u8> {
    let (w, h) = (140usize, 48usize);
    let seed = gap_of(captcha) as u64 ^ (captcha.len() as u64) << 32;
    let mut r = seeded::rng(seed, 0, seeded::Stream::Captcha, u64::MAX);
    super::png::grey(w as u32, h as u32, &seeded::bytes(&mut r, w * h))
}

/// Reads a submitted track, `[[x, y, t_ms], …]`.
pub fn parse_track(raw: &str) -> Result<Vec<(i64, i64, i64)>, Rejection> {
    let rows: Vec<[i64; 3]> = serde_json::from_str(raw).map_err(|_| Rejection::Malformed)?;
    Ok(rows.into_iter().map(|[x, y, t]| (x, y, t)).collect())
}

/// Whether `track` is a hand's drag onto `gap`.
pub fn check(track: &[(i64, i64, i64)], gap: i64) -> Result<(), Rejection> {
    if track.len() < MIN_POINTS {
        return Err(Rejection::TooFewPoints);
    }
    if track.windows(2).any(|w| w[1].2 <= w[0].2) || track[0].2 < 0 {
        return Err(Rejection::Malformed);
    }
    let (first, last) = (track[0], track[track.len() - 1]);
    if (last.0 - gap).abs() > TOLERANCE {
        return Err(Rejection::MissedGap);
    }
    let duration = last.2 - first.2;
    if duration < MIN_DURATION_MS {
        return Err(Rejection::TooFast);
    }
    if duration > MAX_DURATION_MS {
        return Err(Rejection::TooSlow);
    }
    let top_speed = track
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).abs() as f64 / (w[1].2 - w[0].2) as f64)
        .fold(0.0, f64::max);
    if top_speed > MAX_SPEED {
        return Err(Rejection::TooFast);
    }
    let (ymin, ymax) = track.iter().fold((i64::MAX, i64::MIN), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    if ymax == ymin {
        return Err(Rejection::NoVerticalMovement);
    }
    let mut steps: Vec<i64> = track.windows(2).map(|w| w[1].2 - w[0].2).collect();
    steps.sort_unstable();
    steps.dedup();
    if steps.len() < 3 || steps[steps.len() - 1] - steps[0] < 3 {
        return Err(Rejection::TooRegular);
    }
    // Mean speed over five equal spans of time.
    let at = |t: f64| x_at(track, t);
    let fifth = duration as f64 / 5.0;
    let speeds: Vec<f64> = (0..5)
        .map(|i| {
            let t0 = first.2 as f64 + i as f64 * fifth;
            (at(t0 + fifth) - at(t0)) / fifth
        })
        .collect();
    let peak = speeds.iter().copied().fold(f64::MIN, f64::max);
    if peak <= 0.0 || speeds[0] > EDGE_SPEED_RATIO * peak || speeds[4] > EDGE_SPEED_RATIO * peak {
        return Err(Rejection::ConstantSpeed);
    }
    Ok(())
}

/// x at time `t`, linear between samples.
fn x_at(track: &[(i64, i64, i64)], t: f64) -> f64 {
    let i = track.partition_point(|p| (p.2 as f64) <= t);
    if i == 0 {
        return track[0].0 as f64;
    }
    if i >= track.len() {
        return track[track.len() - 1].0 as f64;
    }
    let (a, b) = (track[i - 1], track[i]);
    let f = (t - a.2 as f64) / (b.2 - a.2) as f64;
    a.0 as f64 + f * (b.0 - a.0) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::slider;

    fn host_track(gap: i64, seed: u64) -> Vec<(i64, i64, i64)> {
        parse_track(&slider::to_json(&slider::generate(gap as f64, seed))).unwrap()
    }

    /// `n` samples `dt` ms apart at constant speed, `y` from `wobble`.
    fn linear(gap: i64, n: i64, dt: i64, wobble: impl Fn(i64) -> i64) -> Vec<(i64, i64, i64)> {
        (0..=n).map(|i| (gap * i / n, wobble(i), i * dt)).collect()
    }

    #[test]
    fn the_hosts_tracks_pass() {
        for seed in 0..500 {
            for gap in [40, 97, 150, 220] {
                assert_eq!(
                    check(&host_track(gap, seed), gap),
                    Ok(()),
                    "seed {seed} gap {gap}"
                );
            }
        }
    }

    #[test]
    fn robotic_tracks_are_refused() {
        let gap = 150;
        // Constant speed, level, evenly sampled: the naive script.
        assert_eq!(
            check(&linear(gap, 30, 20, |_| 0), gap),
            Err(Rejection::NoVerticalMovement)
        );
        // Constant speed with a wobble and uneven steps.
        let mut t = 0;
        let mut steady = Vec::new();
        for i in 0..40 {
            steady.push((t, i % 3 - 1, t));
            t += [15, 20, 25, 18][i as usize % 4];
        }
        let end = steady.last().unwrap().2;
        let steady: Vec<_> = steady
            .into_iter()
            .map(|(_, y, t)| (gap * t / end, y, t))
            .collect();
        assert_eq!(check(&steady, gap), Err(Rejection::ConstantSpeed));
        // A good shape, all in about a sixth of the time.
        let fast: Vec<_> = host_track(gap, 1)
            .into_iter()
            .map(|(x, y, t)| (x, y, t / 6))
            .collect();
        assert_eq!(check(&fast, gap), Err(Rejection::TooFast));
        // A good shape, flattened.
        let level: Vec<_> = host_track(gap, 2)
            .into_iter()
            .map(|(x, _, t)| (x, 0, t))
            .collect();
        assert_eq!(check(&level, gap), Err(Rejection::NoVerticalMovement));
        // A good shape, resampled every 20 ms.
        let good = host_track(gap, 3);
        let end = good.last().unwrap().2;
        let regular: Vec<_> = (0..=end / 20)
            .map(|i| (x_at(&good, (i * 20) as f64).round() as i64, i % 2, i * 20))
            .chain(std::iter::once((gap, 0, end / 20 * 20 + 20)))
            .collect();
        assert_eq!(check(&regular, gap), Err(Rejection::TooRegular));
        // A good track onto the wrong place.
        assert_eq!(
            check(&host_track(gap + 20, 4), gap),
            Err(Rejection::MissedGap)
        );
        // Three points.
        assert_eq!(check(&good[..3], gap), Err(Rejection::TooFewPoints));
        assert_eq!(parse_track("[[1,2]]"), Err(Rejection::Malformed));
    }

    #[test]
    fn gaps_and_pictures_come_from_the_draw() {
        assert_eq!(gap_of("K7P2Q"), gap_of("K7P2Q"));
        assert!((40..=220).contains(&gap_of("K7P2Q")));
        assert_eq!(image("K7P2Q"), image("K7P2Q"));
        assert_ne!(image("K7P2Q"), image("K7P2R"));
        assert!(image("K7P2Q").starts_with(b"\x89PNG\r\n\x1a\n"));
    }
}
