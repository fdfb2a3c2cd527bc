//! What the policy needs from the world, as small traits. The component
//! implements them over its WIT imports (`bindings`); native tests use
//! [`fake::FakeHost`].

use crate::lifecycle::{Closure, StartRefresh, Ticket};
use crate::model::{Alert, Millis, StoreError};

/// Durable key/value storage scoped to this tenant.
pub trait Store {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// `durable = false` lets the host group the write with others.
    fn set(&mut self, key: &str, value: &[u8], durable: bool) -> Result<(), StoreError>;
    fn delete(&mut self, key: &str) -> Result<bool, StoreError>;
    /// Up to `limit` entries under `prefix` after `after`, and the key to
    /// continue from.
    #[allow(clippy::type_complexity)]
    fn scan(
        &mut self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<(String, Vec<u8>)>, Option<String>), StoreError>;
}

/// Wall-clock time.
pub trait Clock {
    fn now(&self) -> Millis;
}

/// Randomness for jitter and random picks.
pub trait Random {
    fn next_u64(&mut self) -> u64;

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        // Lemire's multiply-shift: unbiased enough for picks and jitter.
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// Log levels, as the WIT `log.level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Structured diagnostics. Field values must already be masked.
pub trait Log {
    fn enabled(&self, level: Level) -> bool;
    fn event(&mut self, level: Level, name: &str, fields: &[(&str, String)]);
}

/// Alerts for the host's notifiers (log, webhook, command).
pub trait Notify {
    fn raise(&mut self, alert: &Alert);
    /// Announces a new challenge ticket; `masked_contact` is already masked.
    fn open_ticket(&mut self, ticket: &Ticket, masked_contact: Option<String>);
    /// Announces that a ticket closed.
    fn close_ticket(&mut self, id: &str, closure: Closure);
}

/// Refreshes run by the host (the `refresh.start` import): queued, with the
/// result coming back later through `refresh-completed`.
pub trait Refresh {
    /// Queues `request`; `Err` (a short reason) when the host cannot.
    fn start_refresh(&mut self, request: &StartRefresh) -> Result<(), String>;
}

/// Everything the pool needs, in one bound.
pub trait Host: Store + Clock + Random + Log + Notify + Refresh {}
impl<T: Store + Clock + Random + Log + Notify + Refresh> Host for T {}

/// A small, fast generator (SplitMix64): seeded once from the host's
/// randomness, then free of imports on the hot path.
#[derive(Clone, Debug)]
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// An in-memory host for native tests: a sorted map, a settable clock, a
/// seeded generator and a record of every event.
pub mod fake {
    use super::*;
    use std::collections::BTreeMap;

    /// A recorded log event: level, name, fields.
    pub type Event = (Level, String, Vec<(String, String)>);

    #[derive(Debug)]
    pub struct FakeHost {
        pub data: BTreeMap<String, Vec<u8>>,
        pub now: Millis,
        pub rng: SplitMix,
        pub events: Vec<Event>,
        /// Every alert raised, in order.
        pub alerts: Vec<Alert>,
        /// Keys written with `durable = true`, in order.
        pub durable_writes: Vec<String>,
        /// When set, every write fails with this error.
        pub fail_writes: Option<StoreError>,
        /// Every refresh the policy asked for, in order.
        pub refresh_requests: Vec<StartRefresh>,
        /// When set, `refresh.start` refuses with this reason.
        pub refuse_refresh: Option<String>,
        /// Tickets announced open, with their masked contact.
        pub tickets_opened: Vec<(Ticket, Option<String>)>,
        /// Tickets announced closed.
        pub tickets_closed: Vec<(String, Closure)>,
    }

    impl FakeHost {
        pub fn new(now: Millis) -> Self {
            FakeHost {
                data: BTreeMap::new(),
                now,
                rng: SplitMix(7),
                events: Vec::new(),
                alerts: Vec::new(),
                durable_writes: Vec::new(),
                fail_writes: None,
                refresh_requests: Vec::new(),
                refuse_refresh: None,
                tickets_opened: Vec::new(),
                tickets_closed: Vec::new(),
            }
        }

        pub fn events_named(&self, name: &str) -> usize {
            self.events.iter().filter(|e| e.1 == name).count()
        }

        /// How many alerts of `kind` were raised.
        pub fn alerts_of(&self, kind: crate::model::AlertKind) -> usize {
            self.alerts.iter().filter(|a| a.kind == kind).count()
        }
    }

    impl Store for FakeHost {
        fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self.data.get(key).cloned())
        }
        fn set(&mut self, key: &str, value: &[u8], durable: bool) -> Result<(), StoreError> {
            if let Some(e) = &self.fail_writes {
                return Err(e.clone());
            }
            if durable {
                self.durable_writes.push(key.to_string());
            }
            self.data.insert(key.to_string(), value.to_vec());
            Ok(())
        }
        fn delete(&mut self, key: &str) -> Result<bool, StoreError> {
            if let Some(e) = &self.fail_writes {
                return Err(e.clone());
            }
            Ok(self.data.remove(key).is_some())
        }
        fn scan(
            &mut self,
            prefix: &str,
            after: Option<&str>,
            limit: u32,
        ) -> Result<(Vec<(String, Vec<u8>)>, Option<String>), StoreError> {
            let mut out = Vec::new();
            for (k, v) in self.data.range(prefix.to_string()..) {
                if !k.starts_with(prefix) {
                    break;
                }
                if after.is_some_and(|a| k.as_str() <= a) {
                    continue;
                }
                if out.len() as u32 == limit {
                    let next = out.last().map(|(k, _): &(String, Vec<u8>)| k.clone());
                    return Ok((out, next));
                }
                out.push((k.clone(), v.clone()));
            }
            Ok((out, None))
        }
    }

    impl Clock for FakeHost {
        fn now(&self) -> Millis {
            self.now
        }
    }

    impl Random for FakeHost {
        fn next_u64(&mut self) -> u64 {
            self.rng.next_u64()
        }
    }

    impl Notify for FakeHost {
        fn raise(&mut self, alert: &Alert) {
            self.alerts.push(alert.clone());
        }
        fn open_ticket(&mut self, ticket: &Ticket, masked_contact: Option<String>) {
            self.tickets_opened.push((ticket.clone(), masked_contact));
        }
        fn close_ticket(&mut self, id: &str, closure: Closure) {
            self.tickets_closed.push((id.to_string(), closure));
        }
    }

    impl Refresh for FakeHost {
        fn start_refresh(&mut self, request: &StartRefresh) -> Result<(), String> {
            if let Some(why) = &self.refuse_refresh {
                return Err(why.clone());
            }
            self.refresh_requests.push(request.clone());
            Ok(())
        }
    }

    impl Log for FakeHost {
        fn enabled(&self, _level: Level) -> bool {
            true
        }
        fn event(&mut self, level: Level, name: &str, fields: &[(&str, String)]) {
            let fields = fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            self.events.push((level, name.to_string(), fields));
        }
    }
}
