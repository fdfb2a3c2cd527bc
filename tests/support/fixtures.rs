//! Fixtures more than one test file needs: the leak assertion, a webhook
//! that records what it is sent, the login recipe of the loopback login
//! sites, and a private copy of the built binary.

use super::loopback::{Server, reply, serve};
use base64::Engine as _;
use credpool::lifecycle::notifiers::NotifySection;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Fails if any secret appears in any text (the message shows its length
/// and the text's start, never the secret).
pub fn assert_no_leak(texts: &[&str], secrets: &[&str]) {
    for t in texts {
        for s in secrets {
            if let Some(at) = find_secret(t, s) {
                // Where it is, with the secret itself blanked out.
                let from = t.floor_char_boundary(at.saturating_sub(200));
                let to = t.ceil_char_boundary((at + s.len() + 200).min(t.len()));
                let around = t[from..to].replace(s, "<SECRET>");
                panic!("a secret ({} chars) leaked into: ...{around}...", s.len());
            }
        }
    }
}

/// Where `text` holds `secret`. A short all-digit secret (a one-time
/// code) counts only standing alone: six digits inside a longer number (a
/// timestamp in a log line) are not that code.
fn find_secret(text: &str, secret: &str) -> Option<usize> {
    let short_code = secret.len() <= 10 && secret.bytes().all(|b| b.is_ascii_digit());
    if !short_code {
        return text.find(secret);
    }
    let bytes = text.as_bytes();
    text.match_indices(secret).map(|(at, _)| at).find(|&at| {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(at + secret.len()).copied();
        !before.is_some_and(|b| b.is_ascii_digit()) && !after.is_some_and(|b| b.is_ascii_digit())
    })
}

/// A webhook on loopback answering 204, and the notify section naming it.
pub fn webhook() -> (Server, NotifySection) {
    let hook = serve(|_| reply(204, &[], ""));
    let section = NotifySection {
        webhook_url: Some(hook.url("/hook")),
        webhook_timeout: Some(Duration::from_secs(5)),
        webhook_retries: Some(1),
        command: None,
        command_env: Vec::new(),
    };
    (hook, section)
}

/// The `[sites."<site>".login]` recipe of a loopback login form with a
/// TOTP and an SMS second step (`/login`, `/2fa`, `/sms`).
pub fn login_toml(site: &str, server: &Server) -> String {
    format!(
        r#"[sites."{site}".login]
url = "{login}"
username_field = "user"
password_field = "pass"
success = {{ cookie = "sid" }}
[[sites."{site}".login.challenges]]
kind = "two-factor"
detect = {{ body = ["authenticator code"] }}
submit_url = "{tfa}"
field = "otp"
[[sites."{site}".login.challenges]]
kind = "sms-code"
detect = {{ body = ["sent a code to your phone"] }}
submit_url = "{sms}"
field = "code"
"#,
        login = server.url("/login"),
        tfa = server.url("/2fa"),
        sms = server.url("/sms"),
    )
}

/// A private copy of the built `credpool`: several checkouts share one
/// target directory here, and another checkout's build can replace the
/// binary under a running test.
pub fn own_binary(dir: &Path) -> PathBuf {
    let to = dir.join("credpool-under-test");
    std::fs::copy(env!("CARGO_BIN_EXE_credpool"), &to).unwrap();
    // A child another test forks while the copy is open holds its write
    // handle until it execs: running the copy then fails with ETXTBSY.
    for _ in 0..100 {
        match std::process::Command::new(&to).arg("--version").output() {
            Err(e) if e.raw_os_error() == Some(26) => std::thread::sleep(Duration::from_millis(20)),
            _ => break,
        }
    }
    to
}

/// The forms a leaked value could take: raw, hex (both cases), base64 (std
/// and URL-safe, at each of the three alignments inside a longer text) and
/// URL-encoded, and as the decimal byte list a `Debug` of bytes prints.
pub fn encodings(v: &str) -> Vec<String> {
    let mut out = vec![v.to_string()];
    out.push(v.bytes().map(|b| format!("{b:02x}")).collect());
    out.push(v.bytes().map(|b| format!("{b:02X}")).collect());
    for engine in [
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        for shift in 0..3 {
            let mut bytes = vec![b'A'; shift];
            bytes.extend_from_slice(v.as_bytes());
            let enc = engine.encode(&bytes);
            // Drop the characters that depend on what surrounds the value.
            let start = if shift == 0 { 0 } else { 4 };
            let end = enc.len().saturating_sub(3);
            if end > start + 8 {
                out.push(enc[start..end].to_string());
            }
        }
    }
    out.push(
        v.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect(),
    );
    // Bytes as a decimal list, as a `Vec<u8>` prints in `Debug`.
    out.push(
        v.bytes()
            .map(|b| format!("{b}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    out
}
