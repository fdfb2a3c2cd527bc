//! Where the policy's log events, alerts and tickets go. The default sink
//! writes them through `tracing`; tests install a recording sink.

use crate::bindings::log::Level;
use crate::bindings::notify::{Alert, Ticket, TicketClosure};
use crate::names;
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

/// An alert as one line: its severity and kind by their contract names
/// (`warning pool-exhausted`), the credential only when it names one.
fn alert_line(a: &Alert) -> String {
    let mut out = format!(
        "[ALERT] {} {} site={}",
        names::severity(a.severity),
        names::alert_kind(a.kind),
        a.site
    );
    if let Some(id) = a.credential_id.as_deref().filter(|id| !id.is_empty()) {
        out.push_str(" credential=");
        out.push_str(id);
    }
    out.push(' ');
    out.push_str(&a.message);
    out
}

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
        tracing::warn!(target: "credpool::alert", "{}", alert_line(a));
    }

    fn ticket_opened(&self, t: &Ticket) {
        let contact = match t.masked_contact.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => format!(" contact={c}"),
            None => String::new(),
        };
        tracing::warn!(
            target: "credpool::ticket",
            "[TICKET] opened {} {} credential={} site={}{contact}",
            t.id,
            names::challenge_kind(t.kind),
            t.credential_id,
            t.site
        );
    }

    fn ticket_closed(&self, id: &str, closure: TicketClosure) {
        let closure = names::ticket_closure(closure);
        tracing::info!(target: "credpool::ticket", "[TICKET] closed {id} {closure}");
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
    fn an_alert_line_has_contract_names_and_no_empty_credential() {
        use crate::bindings::notify::{Alert, AlertKind, Severity};
        let mut a = Alert {
            kind: AlertKind::PoolExhausted,
            severity: Severity::Warning,
            site: "jd.com".into(),
            credential_id: None,
            message: "no credential to hand out: 1 leased".into(),
            raised_at: 0,
        };
        assert_eq!(
            super::alert_line(&a),
            "[ALERT] warning pool-exhausted site=jd.com no credential to hand out: 1 leased"
        );
        a.credential_id = Some("s1".into());
        assert!(super::alert_line(&a).contains("site=jd.com credential=s1 no credential"));
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
