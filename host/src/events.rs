//! Where the policy's log events, alerts and tickets go. The default sink
//! writes them through `tracing`; tests install a recording sink.

use crate::bindings::log::Level;
use crate::bindings::notify::{Alert, Ticket, TicketClosure};
use std::sync::Mutex;

/// Receives what the policy emits. Everything arriving here is already
/// masked by the policy, which never holds a secret.
pub trait EventSink: Send + Sync {
    fn enabled(&self, level: Level) -> bool;
    fn log(&self, level: Level, name: &str, fields: &[(String, String)]);
    fn alert(&self, alert: &Alert);
    fn ticket_opened(&self, ticket: &Ticket);
    fn ticket_closed(&self, id: &str, closure: TicketClosure);
}

/// Writes events through `tracing` (target `credpool::policy`).
pub struct TracingSink;

fn line(name: &str, fields: &[(String, String)]) -> String {
    let mut out = format!("[CRED] {name}");
    // A field with no value (no username, say) says nothing: leave it out.
    for (k, v) in fields.iter().filter(|(_, v)| !v.is_empty()) {
        out.push(' ');
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

impl EventSink for TracingSink {
    fn enabled(&self, level: Level) -> bool {
        match level {
            Level::Trace => tracing::enabled!(target: "credpool::policy", tracing::Level::TRACE),
            Level::Debug => tracing::enabled!(target: "credpool::policy", tracing::Level::DEBUG),
            Level::Info => tracing::enabled!(target: "credpool::policy", tracing::Level::INFO),
            Level::Warn => tracing::enabled!(target: "credpool::policy", tracing::Level::WARN),
            Level::Error => tracing::enabled!(target: "credpool::policy", tracing::Level::ERROR),
        }
    }

    fn log(&self, level: Level, name: &str, fields: &[(String, String)]) {
        let msg = line(name, fields);
        match level {
            Level::Trace => tracing::trace!(target: "credpool::policy", "{msg}"),
            Level::Debug => tracing::debug!(target: "credpool::policy", "{msg}"),
            Level::Info => tracing::info!(target: "credpool::policy", "{msg}"),
            Level::Warn => tracing::warn!(target: "credpool::policy", "{msg}"),
            Level::Error => tracing::error!(target: "credpool::policy", "{msg}"),
        }
    }

    fn alert(&self, a: &Alert) {
        tracing::warn!(
            target: "credpool::alert",
            "[ALERT] {:?} {:?} site={} credential={} {}",
            a.severity,
            a.kind,
            a.site,
            a.credential_id.as_deref().unwrap_or("-"),
            a.message
        );
    }

    fn ticket_opened(&self, t: &Ticket) {
        tracing::warn!(
            target: "credpool::ticket",
            "[TICKET] opened {} {:?} credential={} site={} contact={}",
            t.id,
            t.kind,
            t.credential_id,
            t.site,
            t.masked_contact.as_deref().unwrap_or("-")
        );
    }

    fn ticket_closed(&self, id: &str, closure: TicketClosure) {
        tracing::info!(target: "credpool::ticket", "[TICKET] closed {id} {closure:?}");
    }
}

/// Keeps every event as text, for tests and the demo's summary.
#[derive(Default)]
pub struct MemorySink {
    pub lines: Mutex<Vec<String>>,
}

impl MemorySink {
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl EventSink for MemorySink {
    fn enabled(&self, _level: Level) -> bool {
        true
    }
    fn log(&self, level: Level, name: &str, fields: &[(String, String)]) {
        self.lines
            .lock()
            .unwrap()
            .push(format!("{level:?} {}", line(name, fields)));
    }
    fn alert(&self, a: &Alert) {
        self.lines.lock().unwrap().push(format!("ALERT {a:?}"));
    }
    fn ticket_opened(&self, t: &Ticket) {
        self.lines.lock().unwrap().push(format!("TICKET {t:?}"));
    }
    fn ticket_closed(&self, id: &str, closure: TicketClosure) {
        self.lines
            .lock()
            .unwrap()
            .push(format!("TICKET-CLOSED {id} {closure:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::line;

    fn field(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn a_field_without_a_value_is_left_out_of_the_line() {
        let fields = [
            field("credential", "c1"),
            field("user", ""),
            field("status", "active"),
        ];
        assert_eq!(
            line("cred.status", &fields),
            "[CRED] cred.status credential=c1 status=active"
        );
        let with_user = [field("credential", "c1"), field("user", "***ve")];
        assert_eq!(
            line("cred.status", &with_user),
            "[CRED] cred.status credential=c1 user=***ve"
        );
    }
}
