//! The alerts a tenant's policy raised, kept for `GET /v1/alerts` and the
//! metrics, then passed on to the configured notifiers.

use crate::bindings::log::Level;
use crate::bindings::notify::{Alert, Ticket, TicketClosure};
use crate::events::EventSink;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

const KEEP: usize = 256;
/// An alert counts as active this long after it was raised.
pub const ACTIVE_FOR_MS: i64 = 3_600_000;

pub struct AlertBook {
    inner: Arc<dyn EventSink>,
    recent: Mutex<VecDeque<Alert>>,
}

impl AlertBook {
    pub fn new(inner: Arc<dyn EventSink>) -> Arc<AlertBook> {
        Arc::new(AlertBook {
            inner,
            recent: Mutex::new(VecDeque::new()),
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

    pub fn active(&self, now_ms: i64) -> usize {
        self.recent()
            .iter()
            .filter(|a| now_ms - a.raised_at < ACTIVE_FOR_MS)
            .count()
    }
}

impl EventSink for AlertBook {
    fn enabled(&self, level: Level) -> bool {
        self.inner.enabled(level)
    }
    fn log(&self, level: Level, name: &str, fields: &[(String, String)]) {
        self.inner.log(level, name, fields)
    }
    fn alert(&self, alert: &Alert) {
        {
            let mut r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            if r.len() == KEEP {
                r.pop_front();
            }
            r.push_back(alert.clone());
        }
        self.inner.alert(alert)
    }
    fn ticket_opened(&self, ticket: &Ticket) {
        self.inner.ticket_opened(ticket)
    }
    fn ticket_closed(&self, id: &str, closure: TicketClosure) {
        self.inner.ticket_closed(id, closure)
    }
}
