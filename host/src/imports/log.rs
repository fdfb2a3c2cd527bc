//! `log`: the policy's structured events, handed to the event sink; past
//! the tenant's `log_per_minute` they are dropped and counted.

use crate::bindings::log::{Host, Level};
use crate::state::HostState;

impl Host for HostState {
    fn enabled(&mut self, level: Level) -> bool {
        self.events.enabled(level)
    }

    fn event(&mut self, level: Level, name: String, fields: Vec<(String, String)>) {
        self.record("log.event", (&name, &fields));
        if !self.admit_event(true) {
            return;
        }
        self.events.log(level, &name, &fields);
    }
}
