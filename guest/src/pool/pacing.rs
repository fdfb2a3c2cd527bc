//! The adaptive pace of members and sites: what a result does to it (the
//! rules are [`crate::pace`]), the site's ceiling after a burst of blocks,
//! and the `[CRED]` events that say so.

use super::index::own_pace;
use super::{Pool, Record, Site};
use crate::anomaly::Change;
use crate::model::*;
use crate::pace;
use crate::ports::{Host, Level};

impl<H: Host> Pool<H> {
    /// Puts a member under its site's ceiling as it is used: a ceiling set
    /// by a burst reaches every member at its next use, without a scan.
    pub(super) fn pace_for_use(&mut self, slot: u32) {
        if !self.config.adaptive {
            return;
        }
        let own = learned(self.rec(slot), &self.config);
        let ceiling = self.sites[self.rec(slot).site as usize]
            .pace_ceiling
            .map(|c| c.pace);
        let rec = self.records[slot as usize].as_mut().expect("live slot");
        set(rec, pace::under(own, ceiling));
    }

    /// Moves a member's pace after a result (before the result is
    /// committed, so a durable write carries the new pace); returns the
    /// pace it had, for [`Self::adapt_site_pace`]. A refusal of a use
    /// that was already under way when an earlier refusal put the member
    /// to rest (`resting`) says nothing new: it does not cut again, as TCP
    /// cuts once per window of losses.
    pub(super) fn adapt_member_pace(
        &mut self,
        slot: u32,
        outcome: Outcome,
        resting: bool,
        now: Millis,
    ) -> f32 {
        if !self.config.adaptive {
            return 0.0;
        }
        let b = self.config.pace_bounds();
        let own = learned(self.rec(slot), &self.config);
        let before = own.pace;
        let achieved = self.rec(slot).achieved.per_minute();
        let meter = &mut self.records[slot as usize]
            .as_mut()
            .expect("live slot")
            .achieved;
        match outcome {
            Outcome::Success => meter.success(now, before),
            Outcome::Failure(f)
                if matches!(f.class, FailureClass::RateLimited | FailureClass::Blocked) =>
            {
                meter.refusal()
            }
            Outcome::Failure(_) => {}
        }
        let (after, why) = match outcome {
            Outcome::Success => (pace::after_success(own, b), None),
            Outcome::Failure(f) if f.class == FailureClass::RateLimited => {
                let why = match f.retry_after_secs {
                    Some(s) => format!("a rate limit (retry after {s} s)"),
                    None => "a rate limit".to_string(),
                };
                (pace::after_rate_limit(own, achieved, b), Some(why))
            }
            Outcome::Failure(f) if f.class == FailureClass::Blocked => (
                pace::after_block(own, achieved, b),
                Some("a block".to_string()),
            ),
            Outcome::Failure(_) => (own, None),
        };
        let (after, why) = if resting && why.is_some() {
            (own, None)
        } else {
            (after, why)
        };
        let si = self.rec(slot).site as usize;
        let site = &mut self.sites[si];
        if outcome == Outcome::Success
            && let Some(c) = site.pace_ceiling
        {
            site.pace_ceiling = pace::ceiling_after_success(c, site.members.len(), b);
        }
        let after = pace::under(after, site.pace_ceiling.map(|c| c.pace));
        set(
            self.records[slot as usize].as_mut().expect("live slot"),
            after,
        );
        let after = after.pace;
        self.touch(slot);
        if let Some(why) = why
            && self.host.enabled(Level::Info)
        {
            let (id, site) = (self.rec(slot).id.to_string(), self.sites[si].name.clone());
            self.log(
                Level::Info,
                "cred.pace",
                &[
                    ("id", id),
                    ("site", site),
                    ("from", format!("{before:.0}")),
                    ("to", format!("{after:.0}")),
                    ("why", format!("after {why}")),
                ],
            );
        }
        before
    }

    /// On a burst of blocks across site `si` (`burst` raised), puts a
    /// ceiling on the whole site's pace from `pace_before`, the pace of the
    /// member whose block completed the burst; returns the new ceiling.
    pub(super) fn adapt_site_pace(
        &mut self,
        si: usize,
        burst: Change,
        pace_before: f32,
    ) -> Option<f32> {
        if !self.config.adaptive || burst != Change::Raised {
            return None;
        }
        let b = self.config.pace_bounds();
        let window_s = self.config.block_burst_window_seconds;
        let site = &mut self.sites[si];
        let learned = pace::burst_ceiling(site.pace_ceiling, pace_before, b);
        let from = site.pace_ceiling.map_or(pace_before, |c| c.pace);
        site.pace_ceiling = Some(learned);
        let ceiling = learned.pace;
        let blocks = site.blocks.count();
        let name = site.name.clone();
        let why = format!(
            "site {name} pace {from:.0} -> {ceiling:.0}/min after {blocks} blocks in {window_s} s"
        );
        self.log(
            Level::Warn,
            "cred.pace",
            &[
                ("site", name),
                ("from", format!("{from:.0}")),
                ("to", format!("{ceiling:.0}")),
                ("why", why),
            ],
        );
        Some(ceiling)
    }

    /// A site's adaptive pace for `stats`: the mean of its members' paces,
    /// each under the ceiling. A scan, but `stats` is off the hot path.
    pub(super) fn site_pace(&self, site: &Site) -> Option<u32> {
        if !self.config.adaptive || site.members.is_empty() {
            return None;
        }
        let sum: f64 = site
            .members
            .iter()
            .map(|&slot| {
                let own = own_pace(self.rec(slot), &self.config);
                f64::from(pace::effective(own, site.pace_ceiling.map(|c| c.pace)))
            })
            .sum();
        Some((sum / site.members.len() as f64).round() as u32)
    }
}

/// A member's learned pace and the pace it approaches.
fn learned(r: &Record, config: &crate::config::PolicyConfig) -> pace::Learned {
    pace::Learned {
        pace: own_pace(r, config),
        refused: (r.pace_refused > 0.0).then_some(r.pace_refused),
    }
}

fn set(r: &mut Record, l: pace::Learned) {
    r.pace = l.pace;
    r.pace_refused = l.refused.unwrap_or(0.0);
}
