//! A slider captcha's drag track, as a person's hand makes it (the card's
//! `_generate_slider_track`): given the gap distance, the pointer speeds up
//! and slows down, goes a few pixels past the gap and comes back, wobbles
//! vertically, and is sampled at uneven intervals over a plausible time.
//! Seeded: the same distance and seed give the same track.

use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng};

/// One sample of the pointer, relative to where the drag started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TrackPoint {
    /// Pixels to the right.
    pub x: i32,
    /// Pixels down (negative: up).
    pub y: i32,
    /// Milliseconds since the press.
    pub t: u32,
}

/// The largest gap distance a track is made for (pixels); wider sliders
/// do not exist in practice.
pub const MAX_DISTANCE: f64 = 2000.0;

/// A track that ends at `distance` pixels (rounded), drawn from `seed`.
/// `distance` is clamped to `[1, MAX_DISTANCE]`.
pub fn generate(distance: f64, seed: u64) -> Vec<TrackPoint> {
    let mut rng = StdRng::seed_from_u64(seed);
    let d = if distance.is_finite() {
        distance.clamp(1.0, MAX_DISTANCE)
    } else {
        1.0
    };
    let overshoot = rng.random_range(2.0..=6.0);
    let target = d + overshoot;
    // Longer drags take longer; about a second for a usual gap.
    let main_ms = (550.0 + 2.4 * d + rng.random_range(0.0..=300.0)).min(3500.0);
    // A warp below 1 moves the speed peak earlier: people start briskly.
    let warp: f64 = rng.random_range(0.85..=1.0);
    let mut y = 0i32;
    let mut points = vec![TrackPoint { x: 0, y: 0, t: 0 }];
    let mut t = 0.0f64;
    // Press, pause a moment, then drag.
    t += rng.random_range(30.0..=90.0);
    loop {
        let u = (t / main_ms).min(1.0);
        let x = target * smoothstep(u.powf(warp));
        y = wobble(&mut rng, y);
        points.push(point(x, y, t));
        if u >= 1.0 {
            break;
        }
        t += rng.random_range(9.0..=26.0);
    }
    // Hold past the gap, then pull back onto it.
    t += rng.random_range(60.0..=160.0);
    points.push(point(target, y, t));
    let steps = rng.random_range(3..=6);
    for i in 1..=steps {
        t += rng.random_range(18.0..=45.0);
        let x = target - overshoot * smoothstep(i as f64 / steps as f64);
        if i < steps {
            y = wobble(&mut rng, y);
        }
        points.push(point(x, y, t));
    }
    if points.iter().all(|p| p.y == 0) {
        // Nobody drags perfectly level.
        let mid = points.len() / 2;
        points[mid].y = if rng.random_bool(0.5) { 1 } else { -1 };
    }
    // The end is exactly on the gap.
    if let Some(last) = points.last_mut() {
        last.x = d.round() as i32;
    }
    points
}

/// `3u² - 2u³`: zero speed at both ends, fastest in the middle.
fn smoothstep(u: f64) -> f64 {
    let u = u.clamp(0.0, 1.0);
    u * u * (3.0 - 2.0 * u)
}

/// A hand drifts a pixel up or down now and then, within a few pixels.
fn wobble(rng: &mut StdRng, y: i32) -> i32 {
    if rng.random_bool(0.3) {
        let step = if rng.random_bool(0.5) { 1 } else { -1 };
        (y + step).clamp(-4, 4)
    } else {
        y
    }
}

fn point(x: f64, y: i32, t: f64) -> TrackPoint {
    TrackPoint {
        x: x.round() as i32,
        y,
        t: t.round() as u32,
    }
}

/// The track as the JSON a site's form gets: `[[x, y, t], …]`.
pub fn to_json(track: &[TrackPoint]) -> String {
    let rows: Vec<[i64; 3]> = track
        .iter()
        .map(|p| [p.x as i64, p.y as i64, p.t as i64])
        .collect();
    serde_json::to_string(&rows).expect("integers serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_track_other_seed_other_track() {
        assert_eq!(generate(150.0, 7), generate(150.0, 7));
        assert_ne!(generate(150.0, 7), generate(150.0, 8));
    }

    #[test]
    fn tracks_end_on_the_gap_after_passing_it() {
        for seed in 0..200 {
            for d in [20.0, 87.4, 150.0, 260.0] {
                let tr = generate(d, seed);
                assert_eq!(tr.first().unwrap(), &TrackPoint { x: 0, y: 0, t: 0 });
                assert_eq!(tr.last().unwrap().x, d.round() as i32);
                let max = tr.iter().map(|p| p.x).max().unwrap();
                assert!(max as f64 >= d + 1.0, "overshoot, seed {seed}");
                assert!(tr.windows(2).all(|w| w[1].t > w[0].t), "time moves on");
                assert!(tr.iter().any(|p| p.y != 0), "vertical jitter");
                let total = tr.last().unwrap().t;
                assert!((500..=4500).contains(&total), "{total} ms");
            }
        }
    }

    #[test]
    fn nonsense_distances_are_clamped() {
        assert_eq!(generate(f64::NAN, 1).last().unwrap().x, 1);
        assert_eq!(generate(-5.0, 1).last().unwrap().x, 1);
        assert_eq!(generate(1e9, 1).last().unwrap().x, MAX_DISTANCE as i32);
    }

    #[test]
    fn json_is_rows_of_three_integers() {
        let tr = [
            TrackPoint { x: 0, y: 0, t: 0 },
            TrackPoint { x: 3, y: -1, t: 17 },
        ];
        assert_eq!(to_json(&tr), "[[0,0,0],[3,-1,17]]");
    }
}
