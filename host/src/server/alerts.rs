//! The alerts a tenant's policy raised, kept for `GET /v1/alerts` and the
//! metrics, then passed on to the configured notifiers; and, for the
//! operator's console, a bounded history of each credential (status
//! changes, refresh results, tickets) from the policy's events.

use crate::bindings::log::Level;
use crate::bindings::notify::{Alert, Ticket, TicketClosure};
use crate::events::EventSink;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

const KEEP: usize = 256;
/// An alert counts as active this long after it was raised.
pub const ACTIVE_FOR_MS: i64 = 3_600_000;

/// Events kept per credential, newest last.
const HISTORY_KEEP: usize = 50;
/// Credentials with a history; past this the one least recently written
/// to is dropped (the history is bounded whatever the pool's size).
const HISTORY_CREDENTIALS: usize = 10_000;

/// The policy's events that make a credential's history.
const HISTORY_EVENTS: &[&str] = &[
    "cred.added",
    "cred.status",
    "cred.blocked",
    "cred.anomaly",
    "refresh.result",
    "refresh.lost",
    "challenge.reset",
    "lease.late_report",
];

/// One line of a credential's history. Field values are the policy's,
/// masked by it.
#[derive(Clone, Debug)]
pub struct HistoryEntry {
    /// Milliseconds since the epoch (the server's clock).
    pub at: i64,
    /// The event's name (`cred.status`, `ticket.opened`, …).
    pub event: String,
    /// Its fields but the credential's id.
    pub fields: Vec<(String, String)>,
}

#[derive(Default)]
struct Histories {
    by_credential: HashMap<String, (u64, VecDeque<HistoryEntry>)>,
    /// Open ticket -> credential, to name the credential when it closes.
    tickets: HashMap<String, String>,
    writes: u64,
}

impl Histories {
    fn push(&mut self, id: &str, event: &str, fields: Vec<(String, String)>) {
        self.writes += 1;
        if !self.by_credential.contains_key(id) && self.by_credential.len() >= HISTORY_CREDENTIALS {
            let oldest = self
                .by_credential
                .iter()
                .min_by_key(|(_, (w, _))| *w)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.by_credential.remove(&k);
            }
        }
        let writes = self.writes;
        let (w, h) = self.by_credential.entry(id.to_string()).or_default();
        *w = writes;
        if h.len() == HISTORY_KEEP {
            h.pop_front();
        }
        h.push_back(HistoryEntry {
            at: chrono::Utc::now().timestamp_millis(),
            event: event.to_string(),
            fields,
        });
    }
}

pub struct AlertBook {
    inner: Arc<dyn EventSink>,
    recent: Mutex<VecDeque<Alert>>,
    history: Mutex<Histories>,
}

impl AlertBook {
    pub fn new(inner: Arc<dyn EventSink>) -> Arc<AlertBook> {
        Arc::new(AlertBook {
            inner,
            recent: Mutex::new(VecDeque::new()),
            history: Mutex::new(Histories::default()),
        })
    }

    /// Newest last.
    pub fn recent(&self) -> Vec<Alert> {
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Credential `id`'s history since the server started, newest last.
    pub fn history(&self, id: &str) -> Vec<HistoryEntry> {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_credential
            .get(id)
            .map(|(_, h)| h.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn remember(&self, id: &str, event: &str, fields: Vec<(String, String)>) {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(id, event, fields);
    }

    pub fn active(&self, now_ms: i64) -> usize {
        self.recent()
            .iter()
            .filter(|a| now_ms - a.raised_at < ACTIVE_FOR_MS)
            .count()
    }
}

impl EventSink for AlertBook {
    fn enabled(&self, level: Level) -> bool {
        // The history's events are at info and above, whatever is logged.
        !matches!(level, Level::Trace | Level::Debug) || self.inner.enabled(level)
    }
    fn log(&self, level: Level, name: &str, fields: &[(String, String)]) {
        if HISTORY_EVENTS.contains(&name)
            && let Some((_, id)) = fields.iter().find(|(k, _)| k == "id")
        {
            let rest = fields.iter().filter(|(k, _)| k != "id").cloned().collect();
            self.remember(id, name, rest);
        }
        if self.inner.enabled(level) {
            self.inner.log(level, name, fields)
        }
    }
    fn alert(&self, alert: &Alert) {
        {
            let mut r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            if r.len() == KEEP {
                r.pop_front();
            }
            r.push_back(alert.clone());
        }
        if let Some(id) = &alert.credential_id {
            let fields = vec![
                (
                    "kind".to_string(),
                    crate::names::alert_kind(alert.kind).to_string(),
                ),
                ("message".to_string(), alert.message.clone()),
            ];
            self.remember(id, "alert", fields);
        }
        self.inner.alert(alert)
    }
    fn ticket_opened(&self, ticket: &Ticket) {
        {
            let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
            h.tickets
                .insert(ticket.id.clone(), ticket.credential_id.clone());
            let kind = crate::names::challenge_kind(ticket.kind).to_string();
            h.push(
                &ticket.credential_id,
                "ticket.opened",
                vec![("ticket".into(), ticket.id.clone()), ("kind".into(), kind)],
            );
        }
        self.inner.ticket_opened(ticket)
    }
    fn ticket_closed(&self, id: &str, closure: TicketClosure) {
        {
            let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(credential) = h.tickets.remove(id) {
                let how = match closure {
                    TicketClosure::Answered => "answered",
                    TicketClosure::TimedOut => "timed-out",
                    TicketClosure::Cancelled => "cancelled",
                };
                h.push(
                    &credential,
                    "ticket.closed",
                    vec![
                        ("ticket".into(), id.to_string()),
                        ("closure".into(), how.into()),
                    ],
                );
            }
        }
        self.inner.ticket_closed(id, closure)
    }
}
