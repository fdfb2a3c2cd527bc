//! Notifiers: every event goes to the log (`events::TracingSink`), and,
//! when configured, to a webhook (POST JSON, a time limit, retries with
//! backoff) and a command (the JSON on stdin). Sending happens on a
//! background thread, so the policy's call never waits on the network.
//! Tickets are also kept in a ticket book (a JSON file of open tickets,
//! metadata only) that `credpool challenge list` reads.
//!
//! Nothing sent carries a secret: alerts and tickets come from the policy,
//! which holds none and masks personal data.

use super::sites::de_duration;
use crate::bindings::log::Level;
use crate::bindings::notify::{Alert, Ticket, TicketClosure};
use crate::events::{EventSink, TracingSink};
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// `[notify]` in `credpool.toml`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySection {
    /// POST every alert and ticket event here as JSON.
    pub webhook_url: Option<String>,
    /// Time limit of one webhook attempt (default 10s).
    #[serde(default, deserialize_with = "de_duration")]
    pub webhook_timeout: Option<Duration>,
    /// Attempts after the first (default 3).
    pub webhook_retries: Option<u32>,
    /// Run this program with each event as JSON on stdin.
    pub command: Option<Vec<String>>,
    /// Variables of credpool's environment the command also gets (besides
    /// PATH, HOME, LANG and TZ).
    #[serde(default)]
    pub command_env: Vec<String>,
}

impl NotifySection {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(u) = &self.webhook_url
            && !reqwest::Url::parse(u).is_ok_and(|u| u.scheme() == "http" || u.scheme() == "https")
        {
            return Err("webhook_url is not an http(s) URL".into());
        }
        if self.command.as_ref().is_some_and(|c| c.is_empty()) {
            return Err("command needs at least the program".into());
        }
        super::command::validate_env("command_env", &self.command_env)
    }
}

/// `Enum::CamelCase` (wasmtime's Debug) -> `camel-case`.
fn kebab(debug: String) -> String {
    let last = debug.rsplit("::").next().unwrap_or(&debug).to_string();
    let mut out = String::new();
    for (i, c) in last.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// An alert as JSON.
pub fn alert_json(a: &Alert) -> Value {
    json!({
        "event": "alert",
        "kind": crate::names::alert_kind(a.kind),
        "severity": kebab(format!("{:?}", a.severity)),
        "site": a.site,
        "credential_id": a.credential_id,
        "message": a.message,
        "raised_at": a.raised_at,
    })
}

/// A ticket as JSON.
pub fn ticket_json(t: &Ticket) -> Value {
    json!({
        "id": t.id,
        "kind": crate::names::challenge_kind(t.kind),
        "credential_id": t.credential_id,
        "site": t.site,
        "masked_contact": t.masked_contact,
        "created_at": t.created_at,
        "deadline": t.deadline,
    })
}

/// The open tickets in a ticket book (empty when there is none).
pub fn read_ticket_book(path: &Path) -> Vec<Value> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<Value>>(&b).ok())
        .unwrap_or_default()
}

fn write_ticket_book(path: &Path, tickets: &[Value]) {
    let body = serde_json::to_vec_pretty(tickets).expect("JSON values serialise");
    if crate::private_fs::write_private(path, &body).is_err() {
        tracing::error!(target: "credpool::notify", "cannot write the ticket book {}", path.display());
    }
}

struct Outbox {
    /// Events queued and not yet delivered.
    pending: Mutex<usize>,
    idle: Condvar,
}

/// The configured notifiers, as an [`EventSink`].
pub struct Notifiers {
    log: TracingSink,
    tx: Mutex<Option<mpsc::Sender<Value>>>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
    outbox: Arc<Outbox>,
    ticket_book: Option<PathBuf>,
    book_lock: Mutex<()>,
    /// Told of ticket closures so a login context and answer are dropped.
    on_ticket: Mutex<Option<Arc<super::Refresher>>>,
}

impl Notifiers {
    /// `ticket_book`: where open tickets are listed (e.g. `DATA_DIR/tickets.json`).
    pub fn new(config: &NotifySection, ticket_book: Option<PathBuf>) -> Arc<Notifiers> {
        let outbox = Arc::new(Outbox {
            pending: Mutex::new(0),
            idle: Condvar::new(),
        });
        let (tx, worker) = if config.webhook_url.is_some() || config.command.is_some() {
            let (tx, rx) = mpsc::channel::<Value>();
            let cfg = config.clone();
            let ob = outbox.clone();
            let worker = std::thread::Builder::new()
                .name("credpool-notify".into())
                .spawn(move || deliver_loop(cfg, rx, ob))
                .expect("spawn the notifier thread");
            (Some(tx), Some(worker))
        } else {
            (None, None)
        };
        Arc::new(Notifiers {
            log: TracingSink,
            tx: Mutex::new(tx),
            worker: Mutex::new(worker),
            outbox,
            ticket_book,
            book_lock: Mutex::new(()),
            on_ticket: Mutex::new(None),
        })
    }

    /// Links the refresher that holds login contexts and answers.
    pub fn attach(&self, refresher: Arc<super::Refresher>) {
        *self.on_ticket.lock().unwrap() = Some(refresher);
    }

    fn send(&self, event: Value) {
        if let Some(tx) = self.tx.lock().unwrap().as_ref() {
            *self.outbox.pending.lock().unwrap() += 1;
            if tx.send(event).is_err() {
                *self.outbox.pending.lock().unwrap() -= 1;
            }
        }
    }

    /// Waits up to `timeout` for queued events to be delivered (or given up).
    pub fn flush(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        let mut p = self.outbox.pending.lock().unwrap();
        while *p > 0 {
            let Some(left) = end.checked_duration_since(Instant::now()) else {
                return false;
            };
            p = self.outbox.idle.wait_timeout(p, left).unwrap().0;
        }
        true
    }

    /// Delivers what is queued and stops the sender thread.
    pub fn close(&self, timeout: Duration) {
        self.flush(timeout);
        self.tx.lock().unwrap().take();
        if let Some(w) = self.worker.lock().unwrap().take() {
            let _ = w.join();
        }
    }

    fn book_update(&self, f: impl FnOnce(&mut Vec<Value>)) {
        if let Some(path) = &self.ticket_book {
            let _g = self.book_lock.lock().unwrap();
            let mut tickets = read_ticket_book(path);
            f(&mut tickets);
            write_ticket_book(path, &tickets);
        }
    }
}

impl Drop for Notifiers {
    fn drop(&mut self) {
        self.close(Duration::from_secs(5));
    }
}

fn deliver_loop(cfg: NotifySection, rx: mpsc::Receiver<Value>, outbox: Arc<Outbox>) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let client = {
        let _g = rt.enter();
        super::http::client()
    };
    let timeout = cfg.webhook_timeout.unwrap_or(Duration::from_secs(10));
    let retries = cfg.webhook_retries.unwrap_or(3);
    while let Ok(event) = rx.recv() {
        if let Some(url) = &cfg.webhook_url {
            let mut delivered = false;
            for attempt in 0..=retries {
                // reqwest arms the request's timer when it is built: build
                // it inside the runtime.
                let r = rt.block_on(async {
                    client.post(url).timeout(timeout).json(&event).send().await
                });
                if r.is_ok_and(|r| r.status().is_success()) {
                    delivered = true;
                    break;
                }
                if attempt < retries {
                    std::thread::sleep(Duration::from_millis(200 << attempt.min(6)));
                }
            }
            if !delivered {
                tracing::error!(target: "credpool::notify", "webhook gave up after {} attempts", retries + 1);
            }
        }
        if let Some(cmd) = &cfg.command {
            let body = event.to_string();
            // Bounded as every external command (own process group, a
            // cleared environment); what it prints is not used.
            let ok = rt
                .block_on(super::command::run(
                    cmd,
                    &cfg.command_env,
                    body.as_bytes(),
                    timeout,
                ))
                .is_ok();
            if !ok {
                tracing::error!(target: "credpool::notify", "notify command failed");
            }
        }
        let mut p = outbox.pending.lock().unwrap();
        *p -= 1;
        if *p == 0 {
            outbox.idle.notify_all();
        }
    }
}

impl EventSink for Notifiers {
    fn enabled(&self, level: Level) -> bool {
        self.log.enabled(level)
    }

    fn log(&self, level: Level, name: &str, fields: &[(String, String)]) {
        self.log.log(level, name, fields);
    }

    fn alert(&self, alert: &Alert) {
        self.log.alert(alert);
        self.send(alert_json(alert));
    }

    fn ticket_opened(&self, ticket: &Ticket) {
        self.log.ticket_opened(ticket);
        let t = ticket_json(ticket);
        self.book_update(|b| {
            b.retain(|x| x["id"] != t["id"]);
            b.push(t.clone());
        });
        let mut ev = t;
        ev["event"] = json!("ticket-opened");
        self.send(ev);
    }

    fn ticket_closed(&self, id: &str, closure: TicketClosure) {
        self.log.ticket_closed(id, closure);
        self.book_update(|b| b.retain(|x| x["id"] != id));
        if let Some(r) = self.on_ticket.lock().unwrap().as_ref() {
            r.ticket_closed(id, closure == TicketClosure::TimedOut);
        }
        self.send(json!({
            "event": "ticket-closed",
            "id": id,
            "closure": kebab(format!("{closure:?}")),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::notify::{AlertKind, Severity};

    #[test]
    fn enum_names_are_kebab_case() {
        assert_eq!(kebab(format!("{:?}", TicketClosure::TimedOut)), "timed-out");
        assert_eq!(
            kebab(format!("{:?}", AlertKind::RefreshFailed)),
            "refresh-failed"
        );
        assert_eq!(kebab(format!("{:?}", Severity::Critical)), "critical");
    }
}
