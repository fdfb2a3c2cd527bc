//! What a reported result or a command does to one credential's standing
//! (status, health, streaks, counts, rest), as pure functions beside the
//! state machine they feed. When blocks in a row become a ban, how much
//! health a result earns or costs, and how long a rest lasts are decided
//! here and nowhere else; the pool writes the answer and raises alerts.

use crate::config::PolicyConfig;
use crate::cooldown::rest_until;
use crate::machine::{self, Event, Illegal};
use crate::model::{FailureClass, Millis, Outcome, Status};

/// "No time" in the compact record (instead of a 16-byte `Option`).
pub const NEVER: Millis = i64::MIN;

/// The fields a report changes, copied out so a durable write can be made
/// before anything in memory changes (nothing acknowledged is lost, nothing
/// unacknowledged is applied).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Standing {
    pub status: Status,
    pub health: u8,
    pub block_streak: u8,
    pub rate_limit_streak: u8,
    pub consecutive_failures: u32,
    /// When the current rest ends, or [`NEVER`].
    pub cooldown_until: Millis,
    pub success_count: u64,
    pub fail_count: u64,
}

/// The standing after `outcome` at `now`, and the event it was for the
/// state machine. `random` gives a uniform `u64`; it is called only when a
/// rest is drawn (a block or rate limit that leaves the credential
/// resting), so the draws others see do not move.
///
/// - A success earns `health_success` (health stays at most 100) and
///   clears the failure, block and rate-limit streaks.
/// - A failure costs `health_failure` (`health_failure_network` for a
///   network failure, when set; health stops at 0).
/// - The `ban_after_blocks`th block in a row is a ban: the rest is dropped,
///   only a person's unban (see [`on_command`]) lets it back.
/// - A block or rate limit that leaves it cooling or suspended rests it by
///   its backoff (or the site's `Retry-After`), never shorter than a rest
///   already running.
#[inline]
pub fn on_outcome(
    before: Standing,
    outcome: Outcome,
    config: &PolicyConfig,
    now: Millis,
    random: impl FnOnce() -> u64,
) -> (Standing, Event) {
    let mut m = before;
    let event = match outcome {
        Outcome::Success => {
            m.success_count += 1;
            m.consecutive_failures = 0;
            m.block_streak = 0;
            m.rate_limit_streak = 0;
            m.health = m.health.saturating_add(config.health_success).min(100);
            Event::Succeeded
        }
        Outcome::Failure(f) => {
            m.fail_count += 1;
            m.consecutive_failures += 1;
            let penalty = match f.class {
                FailureClass::Network => config
                    .health_failure_network
                    .unwrap_or(config.health_failure),
                _ => config.health_failure,
            };
            m.health = m.health.saturating_sub(penalty);
            match f.class {
                FailureClass::Blocked => {
                    m.block_streak = m.block_streak.saturating_add(1);
                    if u32::from(m.block_streak) >= config.ban_after_blocks {
                        Event::BlockedTooOften
                    } else {
                        Event::Blocked
                    }
                }
                FailureClass::RateLimited => {
                    m.rate_limit_streak = m.rate_limit_streak.saturating_add(1);
                    Event::RateLimited
                }
                FailureClass::Challenged => Event::Challenged,
                FailureClass::Expired => Event::SessionExpired,
                FailureClass::Network | FailureClass::Other => Event::Neutral,
            }
        }
    };
    m.status =
        machine::transition(before.status, event).expect("observations are legal in every status");
    if matches!(m.status, Status::Cooling | Status::Suspended)
        && let Outcome::Failure(f) = outcome
        && matches!(f.class, FailureClass::Blocked | FailureClass::RateLimited)
    {
        let (rule, streak) = if f.class == FailureClass::Blocked {
            (config.block_backoff(), m.block_streak)
        } else {
            (config.rate_limit_backoff(), m.rate_limit_streak)
        };
        let unit = (random() >> 11) as f64 / (1u64 << 53) as f64;
        let current =
            (m.cooldown_until != NEVER && m.cooldown_until > now).then_some(m.cooldown_until);
        m.cooldown_until = rest_until(
            &rule,
            u32::from(streak),
            f.retry_after_secs,
            unit,
            now,
            current,
        );
    }
    if m.status == Status::Banned {
        m.cooldown_until = NEVER;
    }
    (m, event)
}

/// The standing after a command (unban, refresh, challenge answered, rest
/// over); an event the state machine refuses in this status is the error.
/// Any rest ends; an unban also clears the failure and block streaks, so
/// the next block starts a new count towards a ban.
pub fn on_command(before: Standing, event: Event) -> Result<Standing, Illegal> {
    let mut m = before;
    m.status = machine::transition(before.status, event)?;
    m.cooldown_until = NEVER;
    // Lifting a ban forgives the record; ending a rest early keeps the
    // streaks, so a block soon after rests longer, as it would have.
    if event == Event::Unban && before.status == Status::Banned {
        m.consecutive_failures = 0;
        m.block_streak = 0;
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Failure;

    const NOW: Millis = 1_700_000_000_000;

    fn fresh() -> Standing {
        Standing {
            status: Status::Active,
            health: 100,
            block_streak: 0,
            rate_limit_streak: 0,
            consecutive_failures: 0,
            cooldown_until: NEVER,
            success_count: 0,
            fail_count: 0,
        }
    }

    fn failure(class: FailureClass) -> Outcome {
        Outcome::Failure(Failure {
            class,
            http_status: None,
            retry_after_secs: None,
        })
    }

    /// Applies `outcomes` in turn, each at `NOW`, with a fixed draw.
    fn run(start: Standing, outcomes: &[Outcome], config: &PolicyConfig) -> Vec<(Standing, Event)> {
        let mut m = start;
        outcomes
            .iter()
            .map(|&o| {
                let step = on_outcome(m, o, config, NOW, || 0);
                m = step.0;
                step
            })
            .collect()
    }

    #[test]
    fn the_third_block_in_a_row_bans_and_drops_the_rest() {
        let config = PolicyConfig::default();
        assert_eq!(config.ban_after_blocks, 3);
        let blocked = failure(FailureClass::Blocked);
        let steps = run(fresh(), &[blocked, blocked, blocked], &config);
        let events: Vec<Event> = steps.iter().map(|s| s.1).collect();
        assert_eq!(
            events,
            [Event::Blocked, Event::Blocked, Event::BlockedTooOften]
        );
        assert_eq!(steps[0].0.status, Status::Suspended);
        assert_eq!(steps[1].0.status, Status::Suspended);
        let last = steps[2].0;
        assert_eq!(last.status, Status::Banned);
        assert_eq!(last.block_streak, 3);
        assert_eq!(last.cooldown_until, NEVER);
    }

    #[test]
    fn a_success_between_blocks_starts_the_count_again() {
        let config = PolicyConfig::default();
        let blocked = failure(FailureClass::Blocked);
        // Blocks while suspended keep it suspended; a late success does not
        // end the rest but does clear the streak.
        let steps = run(
            fresh(),
            &[blocked, blocked, Outcome::Success, blocked, blocked],
            &config,
        );
        assert!(steps.iter().all(|s| s.0.status != Status::Banned));
        assert_eq!(steps[2].0.block_streak, 0);
        assert_eq!(steps[4].0.block_streak, 2);
        let third = on_outcome(steps[4].0, blocked, &config, NOW, || 0);
        assert_eq!(third.1, Event::BlockedTooOften);
        assert_eq!(third.0.status, Status::Banned);
    }

    #[test]
    fn other_failures_never_count_towards_a_ban() {
        let config = PolicyConfig::default();
        let many: Vec<Outcome> = [
            FailureClass::Network,
            FailureClass::Other,
            FailureClass::RateLimited,
        ]
        .iter()
        .cycle()
        .take(30)
        .map(|&c| failure(c))
        .collect();
        let steps = run(fresh(), &many, &config);
        assert!(
            steps
                .iter()
                .all(|s| s.0.status != Status::Banned && s.0.block_streak == 0)
        );
        assert_eq!(steps.last().unwrap().0.consecutive_failures, 30);
    }

    #[test]
    fn ban_after_blocks_is_the_configured_count() {
        let config = PolicyConfig {
            ban_after_blocks: 1,
            ..PolicyConfig::default()
        };
        let (m, event) = on_outcome(fresh(), failure(FailureClass::Blocked), &config, NOW, || 0);
        assert_eq!((m.status, event), (Status::Banned, Event::BlockedTooOften));
    }

    #[test]
    fn health_moves_by_the_config_and_clamps_at_0_and_100() {
        let config = PolicyConfig {
            health_success: 7,
            health_failure: 30,
            health_failure_network: Some(2),
            ..PolicyConfig::default()
        };
        let near_top = Standing {
            health: 97,
            ..fresh()
        };
        let (m, _) = on_outcome(near_top, Outcome::Success, &config, NOW, || 0);
        assert_eq!(m.health, 100);
        let (m, _) = on_outcome(m, Outcome::Success, &config, NOW, || 0);
        assert_eq!(m.health, 100);
        let (m, _) = on_outcome(m, failure(FailureClass::Network), &config, NOW, || 0);
        assert_eq!(m.health, 98, "the network penalty");
        let low = Standing {
            health: 20,
            ..fresh()
        };
        let (m, _) = on_outcome(low, failure(FailureClass::Other), &config, NOW, || 0);
        assert_eq!(m.health, 0);
        let (m, _) = on_outcome(m, failure(FailureClass::Other), &config, NOW, || 0);
        assert_eq!(m.health, 0);
        assert_eq!((m.fail_count, m.consecutive_failures), (2, 2));
    }

    #[test]
    fn a_success_clears_the_streaks_and_counts() {
        let config = PolicyConfig::default();
        let worn = Standing {
            block_streak: 2,
            rate_limit_streak: 4,
            consecutive_failures: 6,
            fail_count: 6,
            ..fresh()
        };
        let (m, event) = on_outcome(worn, Outcome::Success, &config, NOW, || 0);
        assert_eq!(event, Event::Succeeded);
        assert_eq!(
            (m.block_streak, m.rate_limit_streak, m.consecutive_failures),
            (0, 0, 0)
        );
        assert_eq!((m.success_count, m.fail_count), (1, 6));
    }

    #[test]
    fn a_rate_limit_rests_by_its_backoff_or_retry_after_and_draws_only_then() {
        let config = PolicyConfig {
            cooldown_jitter: 0.0,
            ..PolicyConfig::default()
        };
        let mut draws = 0;
        let (m, event) = on_outcome(
            fresh(),
            failure(FailureClass::RateLimited),
            &config,
            NOW,
            || {
                draws += 1;
                0
            },
        );
        assert_eq!((m.status, event), (Status::Cooling, Event::RateLimited));
        assert_eq!(m.cooldown_until, NOW + 300_000);
        assert_eq!(draws, 1);
        let told = Outcome::Failure(Failure {
            class: FailureClass::RateLimited,
            http_status: Some(429),
            retry_after_secs: Some(5),
        });
        // Retry-After is shorter than the running rest: the rest stands.
        let (m2, _) = on_outcome(m, told, &config, NOW, || 0);
        assert_eq!(m2.cooldown_until, NOW + 300_000);
        let (m3, _) = on_outcome(fresh(), told, &config, NOW, || 0);
        assert_eq!(m3.cooldown_until, NOW + 5_000);
        // Results that do not rest it draw nothing.
        for o in [
            Outcome::Success,
            failure(FailureClass::Network),
            failure(FailureClass::Challenged),
            failure(FailureClass::Expired),
        ] {
            let mut drawn = false;
            let (m, _) = on_outcome(fresh(), o, &config, NOW, || {
                drawn = true;
                0
            });
            assert!(!drawn, "{o:?}");
            assert_eq!(m.cooldown_until, NEVER, "{o:?}");
        }
    }

    #[test]
    fn a_banned_credential_stays_banned_whatever_it_reports() {
        let config = PolicyConfig::default();
        let banned = Standing {
            status: Status::Banned,
            block_streak: 3,
            ..fresh()
        };
        for o in [
            Outcome::Success,
            failure(FailureClass::Blocked),
            failure(FailureClass::RateLimited),
        ] {
            let (m, _) = on_outcome(banned, o, &config, NOW, || 0);
            assert_eq!(m.status, Status::Banned, "{o:?}");
            assert_eq!(m.cooldown_until, NEVER, "{o:?}");
        }
    }

    #[test]
    fn an_unban_clears_the_block_count_and_any_rest() {
        let banned = Standing {
            status: Status::Banned,
            block_streak: 3,
            consecutive_failures: 3,
            cooldown_until: NOW + 1,
            ..fresh()
        };
        let m = on_command(banned, Event::Unban).unwrap();
        assert_eq!(m.status, Status::Active);
        assert_eq!((m.block_streak, m.consecutive_failures), (0, 0));
        assert_eq!(m.cooldown_until, NEVER);
        // Two blocks after an unban do not ban again (the default is 3).
        let config = PolicyConfig::default();
        let blocked = failure(FailureClass::Blocked);
        let steps = run(m, &[blocked, blocked], &config);
        assert_eq!(steps[1].0.status, Status::Suspended);
        assert_eq!(
            on_command(fresh(), Event::Unban),
            Err(Illegal {
                from: Status::Active,
                event: Event::Unban
            })
        );
    }

    #[test]
    fn the_end_of_a_rest_keeps_the_streaks() {
        let cooling = Standing {
            status: Status::Cooling,
            rate_limit_streak: 2,
            block_streak: 1,
            cooldown_until: NOW,
            ..fresh()
        };
        let m = on_command(cooling, Event::CooldownEnded).unwrap();
        assert_eq!(m.status, Status::Active);
        assert_eq!((m.rate_limit_streak, m.block_streak), (2, 1));
        assert_eq!(m.cooldown_until, NEVER);
    }
}
