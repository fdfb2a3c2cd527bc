//! `notify`: alerts and challenge tickets, handed to the event sink; past
//! the tenant's `notify_per_minute` they are dropped and counted.

use crate::bindings::notify::{Alert, Host, Ticket, TicketClosure};
use crate::state::HostState;

impl Host for HostState {
    fn raise(&mut self, alert: Alert) {
        self.record("notify.raise", &alert);
        if !self.admit_event(false) {
            return;
        }
        self.events.alert(&alert);
    }

    fn open_ticket(&mut self, ticket: Ticket) {
        self.record("notify.open-ticket", &ticket);
        if !self.admit_event(false) {
            return;
        }
        let handler = match &self.refresher {
            Some(r) => {
                r.ticket_opened(&ticket.id, &ticket.credential_id);
                if r.auto_answer(&ticket) {
                    "totp"
                } else {
                    "person"
                }
            }
            None => "person",
        };
        // The card's `[CRED] 处理挑战: {handler}`: who answers it.
        tracing::info!(
            target: "credpool::refresh",
            "[CRED] challenge handler credential={} site={} kind={} ticket={} handler={handler}",
            ticket.credential_id,
            ticket.site,
            crate::names::challenge_kind(ticket.kind),
            ticket.id
        );
        self.events.ticket_opened(&ticket);
    }

    fn close_ticket(&mut self, id: String, closure: TicketClosure) {
        self.record("notify.close-ticket", (&id, closure));
        // The host's own bookkeeping (the ticket's sealed captcha image) ends
        // with the ticket even when a flood drops the event itself.
        if let Some(r) = &self.refresher {
            r.ticket_ended(&id);
        }
        if !self.admit_event(false) {
            return;
        }
        self.events.ticket_closed(&id, closure);
    }
}
