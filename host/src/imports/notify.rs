//! `notify`: alerts and challenge tickets, handed to the event sink.

use crate::bindings::notify::{Alert, Host, Ticket, TicketClosure};
use crate::state::HostState;

impl Host for HostState {
    fn raise(&mut self, alert: Alert) {
        self.record("notify.raise", &alert);
        self.events.alert(&alert);
    }

    fn open_ticket(&mut self, ticket: Ticket) {
        self.record("notify.open-ticket", &ticket);
        if let Some(r) = &self.refresher {
            r.ticket_opened(&ticket.id, &ticket.credential_id);
            r.auto_answer(&ticket);
        }
        self.events.ticket_opened(&ticket);
    }

    fn close_ticket(&mut self, id: String, closure: TicketClosure) {
        self.record("notify.close-ticket", (&id, closure));
        self.events.ticket_closed(&id, closure);
    }
}
