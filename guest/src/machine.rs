//! The card's state machine as one pure function over (status, event).
//!
//! Two families of events: *observations* (what a report says happened)
//! never fail, because a late report about a credential that already moved
//! on is normal under concurrency and must be absorbed, not refused;
//! *commands* (unban, refresh, challenge resolved, cooldown ended) are only
//! legal from the states the card draws them from, and anything else is a
//! typed error.

use crate::model::Status;

/// Something that may move a credential to another status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A use worked (or a first login did).
    Succeeded,
    /// The site said slow down.
    RateLimited,
    /// The site refused the credential.
    Blocked,
    /// The site refused it for the Nth time in a row: a ban.
    BlockedTooOften,
    /// The site asked for a captcha, code or 2FA.
    Challenged,
    /// The session or token is no longer valid.
    SessionExpired,
    /// A failure that says nothing about the credential (network, other).
    Neutral,
    /// Its rest is over.
    CooldownEnded,
    /// A refresh or re-login worked.
    Refreshed,
    /// A person or the host answered its challenge.
    ChallengeResolved,
    /// A person lifted its ban or ended its rest early.
    Unban,
}

impl Event {
    /// The name used in `illegal-transition` errors and logs.
    pub fn name(self) -> &'static str {
        match self {
            Event::Succeeded => "succeeded",
            Event::RateLimited => "rate-limited",
            Event::Blocked => "blocked",
            Event::BlockedTooOften => "blocked-too-often",
            Event::Challenged => "challenged",
            Event::SessionExpired => "session-expired",
            Event::Neutral => "neutral",
            Event::CooldownEnded => "cooldown-ended",
            Event::Refreshed => "refresh-succeeded",
            Event::ChallengeResolved => "challenge-resolved",
            Event::Unban => "unban",
        }
    }

    pub const ALL: [Event; 11] = [
        Event::Succeeded,
        Event::RateLimited,
        Event::Blocked,
        Event::BlockedTooOften,
        Event::Challenged,
        Event::SessionExpired,
        Event::Neutral,
        Event::CooldownEnded,
        Event::Refreshed,
        Event::ChallengeResolved,
        Event::Unban,
    ];
}

/// The state machine refused `event` in status `from`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Illegal {
    pub from: Status,
    pub event: Event,
}

/// The status after `event` in status `from`.
pub fn transition(from: Status, event: Event) -> Result<Status, Illegal> {
    use Event as E;
    use Status as S;
    let illegal = Err(Illegal { from, event });
    Ok(match (from, event) {
        // A ban beats everything but a person's unban.
        (S::Banned, E::Unban) => S::Active,
        (S::Banned, E::CooldownEnded | E::Refreshed | E::ChallengeResolved) => return illegal,
        (S::Banned, _) => S::Banned,
        (S::Init | S::Active, E::Unban) => return illegal,
        // A person says it works again (they renewed it or solved its
        // challenge elsewhere): the way back when nothing else brings it.
        (S::Challenged | S::Expired, E::Unban) => S::Active,
        (_, E::BlockedTooOften) => S::Banned,

        // Usable states: observations move them along the card's arrows.
        (S::Init | S::Active, E::Succeeded | E::Refreshed) => S::Active,
        (S::Init, E::Neutral) => S::Init,
        (S::Active, E::Neutral) => S::Active,
        (S::Init | S::Active, E::RateLimited) => S::Cooling,
        (S::Init | S::Active, E::Blocked) => S::Suspended,
        (S::Init | S::Active, E::Challenged) => S::Challenged,
        (S::Init | S::Active, E::SessionExpired) => S::Expired,
        (S::Init | S::Active, E::CooldownEnded | E::ChallengeResolved) => return illegal,

        // Resting: a stronger signal escalates, late good news does not
        // cut the rest short; only the end of the rest (or a person ending
        // it early) reactivates.
        (S::Cooling | S::Suspended, E::CooldownEnded | E::Unban) => S::Active,
        (S::Cooling, E::Blocked) => S::Suspended,
        (S::Cooling | S::Suspended, E::Challenged) => S::Challenged,
        (S::Cooling | S::Suspended, E::SessionExpired) => S::Expired,
        (
            S::Cooling | S::Suspended,
            E::Succeeded | E::Neutral | E::RateLimited | E::Blocked | E::Refreshed,
        ) => from,
        (S::Cooling | S::Suspended, E::ChallengeResolved) => return illegal,

        // Waiting on a person or a refresh: only that answer reactivates.
        (S::Challenged, E::ChallengeResolved) => S::Active,
        (S::Challenged, E::CooldownEnded | E::Refreshed) => return illegal,
        (S::Expired, E::Refreshed) => S::Active,
        // A fresh login that meets an SMS step or a captcha now waits on
        // a person (its ticket), not on another refresh.
        (S::Expired, E::Challenged) => S::Challenged,
        (S::Expired, E::CooldownEnded | E::ChallengeResolved) => return illegal,
        (S::Challenged | S::Expired, E::Blocked) => S::Suspended,
        (S::Challenged | S::Expired, _) => from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Event as E;
    use Status as S;

    /// Every (status, event) pair, with the expected answer; `None` means
    /// illegal. Written out in full so a change to the machine shows here.
    const TABLE: [(S, [Option<S>; 11]); 7] = {
        // Columns in Event::ALL order: Succeeded, RateLimited, Blocked,
        // BlockedTooOften, Challenged, SessionExpired, Neutral,
        // CooldownEnded, Refreshed, ChallengeResolved, Unban.
        const A: Option<S> = Some(S::Active);
        const C: Option<S> = Some(S::Cooling);
        const SU: Option<S> = Some(S::Suspended);
        const B: Option<S> = Some(S::Banned);
        const CH: Option<S> = Some(S::Challenged);
        const EX: Option<S> = Some(S::Expired);
        const I: Option<S> = Some(S::Init);
        const X: Option<S> = None;
        [
            (S::Init, [A, C, SU, B, CH, EX, I, X, A, X, X]),
            (S::Active, [A, C, SU, B, CH, EX, A, X, A, X, X]),
            (S::Cooling, [C, C, SU, B, CH, EX, C, A, C, X, A]),
            (S::Suspended, [SU, SU, SU, B, CH, EX, SU, A, SU, X, A]),
            (S::Challenged, [CH, CH, SU, B, CH, CH, CH, X, X, A, A]),
            (S::Banned, [B, B, B, B, B, B, B, X, X, X, A]),
            (S::Expired, [EX, EX, SU, B, CH, EX, EX, X, A, X, A]),
        ]
    };

    #[test]
    fn every_transition_matches_the_table() {
        for (from, row) in TABLE {
            for (event, expected) in E::ALL.into_iter().zip(row) {
                let got = transition(from, event).ok();
                assert_eq!(got, expected, "{from:?} on {event:?}");
                if expected.is_none() {
                    assert_eq!(transition(from, event), Err(Illegal { from, event }));
                }
            }
        }
    }

    #[test]
    fn the_card_arrows_hold() {
        assert_eq!(transition(S::Init, E::Succeeded), Ok(S::Active));
        assert_eq!(transition(S::Active, E::SessionExpired), Ok(S::Expired));
        assert_eq!(transition(S::Active, E::Challenged), Ok(S::Challenged));
        assert_eq!(transition(S::Active, E::Blocked), Ok(S::Suspended));
        assert_eq!(transition(S::Active, E::RateLimited), Ok(S::Cooling));
        assert_eq!(transition(S::Expired, E::Refreshed), Ok(S::Active));
        assert_eq!(
            transition(S::Challenged, E::ChallengeResolved),
            Ok(S::Active)
        );
        assert_eq!(transition(S::Suspended, E::CooldownEnded), Ok(S::Active));
        assert_eq!(transition(S::Suspended, E::BlockedTooOften), Ok(S::Banned));
        assert_eq!(transition(S::Banned, E::Unban), Ok(S::Active));
    }

    #[test]
    fn only_a_credential_out_of_rotation_can_be_put_back() {
        for from in S::ALL {
            let r = transition(from, E::Unban);
            let lifted = !matches!(from, S::Init | S::Active);
            assert_eq!(r.is_ok(), lifted, "{from:?}");
        }
    }

    #[test]
    fn observations_are_never_illegal() {
        let observations = [
            E::Succeeded,
            E::RateLimited,
            E::Blocked,
            E::BlockedTooOften,
            E::Challenged,
            E::SessionExpired,
            E::Neutral,
        ];
        for from in S::ALL {
            for e in observations {
                assert!(transition(from, e).is_ok(), "{from:?} {e:?}");
            }
        }
    }
}
