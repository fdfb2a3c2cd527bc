//! How a failed command says so: a line on stderr, or under `--json` the
//! server's error shape on stdout, `{"error": {"code", "message"}}`, so a
//! script reads one JSON document whatever happened.
//!
//! The code is the server's name of the error (`credential_not_found`,
//! `invalid_input`, ...), noted with its message where the error is made
//! (the command's `Failed` carries only the exit code and the message);
//! otherwise it is named by the exit code.

use super::{EXIT_NO_CREDENTIAL, EXIT_UNKNOWN_SITE, EXIT_USAGE};
use serde_json::json;
use std::cell::RefCell;

thread_local! {
    /// The code of the last error made, with its message.
    static NOTED: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

/// Notes the code of the error whose message is `message`.
pub fn note(code: &str, message: &str) {
    NOTED.with(|n| *n.borrow_mut() = Some((code.to_string(), message.to_string())));
}

/// The code of a failure: the noted one when it was noted for this very
/// message, else the exit code's name.
fn code_of(exit: i32, message: &str) -> String {
    let noted = NOTED.with(|n| n.borrow().clone());
    match noted {
        Some((code, m)) if m == message => code,
        _ => match exit {
            EXIT_USAGE => "usage".to_string(),
            EXIT_NO_CREDENTIAL => "no_credential".to_string(),
            _ => "error".to_string(),
        },
    }
}

/// Whether the command line asks for JSON (also when clap refused it).
pub fn json_requested() -> bool {
    std::env::args_os().skip(1).any(|a| a == "--json")
}

/// Says a failure. An empty message was said already (as a JSON answer
/// that holds the failure: `acquire` with nothing free, `audit` with
/// damaged lines); exit codes 3 and 4 (`acquire` refused) carry their own
/// JSON answer too.
pub fn report(exit: i32, message: &str, json: bool) {
    let answered = exit == EXIT_NO_CREDENTIAL || exit == EXIT_UNKNOWN_SITE;
    if json && !answered && !message.is_empty() {
        println!(
            "{}",
            json!({"error": {"code": code_of(exit, message), "message": message}})
        );
    } else if !message.is_empty() {
        eprintln!("credpool: {message}");
    }
}

/// A usage error found by clap, under `--json`: its first line, without
/// clap's `error: ` and colour.
pub fn report_usage(e: &clap::Error) {
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or_default();
    let message = first.strip_prefix("error: ").unwrap_or(first);
    println!(
        "{}",
        json!({"error": {"code": "usage", "message": message}})
    );
}
