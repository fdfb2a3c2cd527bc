//! Property test: no sequence of acquire / report / release / tick / time
//! passing ever hands out more leases than a credential allows, a
//! credential that is not usable (active, init, or resting with its rest
//! over), or one ahead of its rate; and the indexes always agree with a
//! recount from the records.

use crate::config::PolicyConfig;
use crate::model::*;
use crate::pool::Pool;
use crate::ports::fake::FakeHost;
use proptest::prelude::*;
use std::collections::HashMap;

const T0: Millis = 1_700_000_000_000;
const RATE_PER_MINUTE: u32 = 20;
const INTERVAL_MS: Millis = 60_000 / RATE_PER_MINUTE as Millis;

#[derive(Clone, Debug)]
enum Op {
    Acquire {
        filter_kind: bool,
        purpose: Option<u8>,
    },
    Report {
        pick: usize,
        outcome: u8,
    },
    Release {
        pick: usize,
    },
    Tick,
    Wait {
        ms: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<bool>(), prop::option::of(0u8..3))
            .prop_map(|(filter_kind, purpose)| Op::Acquire { filter_kind, purpose }),
        3 => (any::<usize>(), 0u8..8).prop_map(|(pick, outcome)| Op::Report { pick, outcome }),
        1 => any::<usize>().prop_map(|pick| Op::Release { pick }),
        1 => Just(Op::Tick),
        2 => (0u32..400_000).prop_map(|ms| Op::Wait { ms }),
    ]
}

fn outcome(code: u8) -> Outcome {
    let class = match code {
        0..=2 => return Outcome::Success,
        3 => FailureClass::Blocked,
        4 => FailureClass::RateLimited,
        5 => FailureClass::Network,
        6 => FailureClass::Challenged,
        _ => FailureClass::Other,
    };
    Outcome::Failure(Failure {
        class,
        http_status: None,
        retry_after_secs: (code == 4).then_some(30),
    })
}

fn run(strategy: &str, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let config = format!(
        r#"{{"strategy": "{strategy}", "rate_per_minute": {RATE_PER_MINUTE},
             "block_cooldown_seconds": 600, "lease_ttl_seconds": 120,
             "ban_after_blocks": 4}}"#
    );
    let mut p = Pool::load(FakeHost::new(T0), PolicyConfig::from_json(&config).unwrap()).unwrap();
    let kinds = [Kind::Session, Kind::Account, Kind::Token, Kind::ApiKey];
    for i in 0..6 {
        p.add(NewCredential {
            id: Some(format!("c{i}")),
            site: "s.com".into(),
            kind: Some(kinds[i % kinds.len()]),
            max_concurrent: (i == 2).then_some(2),
            ..Default::default()
        })
        .unwrap();
    }
    // Open leases: id and when they lapse.
    let mut open: Vec<(LeaseId, Millis)> = Vec::new();
    let mut last_grant: HashMap<String, Millis> = HashMap::new();
    for op in ops {
        match op {
            Op::Acquire {
                filter_kind,
                purpose,
            } => {
                let before: HashMap<String, Credential> = (0..6)
                    .map(|i| format!("c{i}"))
                    .map(|id| (id.clone(), p.get(&id).unwrap()))
                    .collect();
                let req = AcquireRequest {
                    site: "s.com".into(),
                    kind: filter_kind.then_some(Kind::Token),
                    purpose: purpose.map(|p| format!("purpose-{p}")),
                    ..Default::default()
                };
                let r = p.acquire(&req).unwrap();
                if let Some(g) = r.grant {
                    let id = p
                        .credential_id(g.credential)
                        .expect("a live credential")
                        .to_string();
                    let was = &before[&id];
                    let now = p.host.now;
                    let usable = match was.status {
                        Status::Active | Status::Init => true,
                        Status::Cooling | Status::Suspended => {
                            was.cooldown_until.is_none_or(|t| t <= now)
                        }
                        _ => false,
                    };
                    prop_assert!(usable, "{id} handed out in {:?}", was.status);
                    prop_assert!(was.expires_at.is_none_or(|t| t > now));
                    if filter_kind {
                        prop_assert_eq!(g.kind, Kind::Token);
                    }
                    if let Some(prev) = last_grant.insert(id.clone(), now) {
                        prop_assert!(now - prev >= INTERVAL_MS, "{id} ahead of its rate");
                    }
                    open.push((g.lease, g.expires_at));
                    let internal = p
                        .view(&id, AccessLevel::Internal)
                        .unwrap()
                        .internal
                        .unwrap();
                    prop_assert!(internal.open_leases <= internal.max_concurrent);
                }
            }
            Op::Report {
                pick,
                outcome: code,
            } if !open.is_empty() => {
                let (lease, _) = open.swap_remove(pick % open.len());
                p.report(lease, outcome(code)).unwrap();
            }
            Op::Release { pick } if !open.is_empty() => {
                let (lease, _) = open.swap_remove(pick % open.len());
                p.release(lease).unwrap();
            }
            Op::Tick => {
                p.tick().unwrap();
                // Leases that lapsed in the tick are gone.
                let now = p.host.now;
                open.retain(|(_, expires)| *expires > now);
            }
            Op::Wait { ms } => p.host.now += Millis::from(ms),
            _ => {}
        }
        p.check_invariants();
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn limits_hold_under_health_weighted(ops in prop::collection::vec(op(), 1..120)) {
        run("health-weighted", ops)?;
    }

    #[test]
    fn limits_hold_under_round_robin(ops in prop::collection::vec(op(), 1..120)) {
        run("round-robin", ops)?;
    }

    #[test]
    fn limits_hold_under_least_recently_used(ops in prop::collection::vec(op(), 1..120)) {
        run("least-recently-used", ops)?;
    }

    #[test]
    fn limits_hold_under_random(ops in prop::collection::vec(op(), 1..120)) {
        run("random", ops)?;
    }

    #[test]
    fn limits_hold_under_sticky(ops in prop::collection::vec(op(), 1..120)) {
        run("sticky", ops)?;
    }
}
