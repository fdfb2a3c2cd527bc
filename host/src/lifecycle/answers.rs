//! Answers to challenge tickets. An answer is a secret: held in memory
//! (zeroized) by the process that runs the logins, or left by another
//! process (`credpool challenge answer`) as a file sealed with the tenant's
//! key (AES-256-GCM, bound to tenant and ticket), read once and removed.
//! Never logged, never quoted in an error.

use crate::vault::Vault;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

/// A ticket id safe to use as a file name.
pub fn valid_ticket_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn aad(vault: &Vault, ticket: &str) -> String {
    crate::layout::answer_aad(vault.tenant(), ticket)
}

/// Where the sealed answer to `ticket` waits in `dir`.
pub fn spool_path(dir: &Path, ticket: &str) -> PathBuf {
    dir.join(format!("{ticket}.sealed"))
}

/// Seals `answer` for `ticket` into `dir` (created 0700), for the process
/// running the logins to pick up.
pub fn seal_to_spool(
    vault: &Vault,
    dir: &Path,
    ticket: &str,
    answer: &str,
) -> Result<PathBuf, String> {
    if !valid_ticket_id(ticket) {
        return Err("a ticket id is letters, digits, '-' and '_'".into());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let sealed = vault
        .seal(&aad(vault, ticket), answer.as_bytes())
        .map_err(|e| e.to_string())?;
    let path = spool_path(dir, ticket);
    crate::private_fs::write_private(&path, &sealed)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

pub(crate) struct Answers {
    vault: Arc<Vault>,
    dir: Option<PathBuf>,
    held: Mutex<HashMap<String, Zeroizing<String>>>,
}

impl Answers {
    pub(crate) fn new(vault: Arc<Vault>, dir: Option<PathBuf>) -> Self {
        Answers {
            vault,
            dir,
            held: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn put(&self, ticket: &str, answer: Zeroizing<String>) -> Result<(), String> {
        if !valid_ticket_id(ticket) {
            return Err("a ticket id is letters, digits, '-' and '_'".into());
        }
        if answer.trim().is_empty() {
            return Err("the answer is empty".into());
        }
        self.held.lock().unwrap().insert(ticket.to_string(), answer);
        Ok(())
    }

    /// The answer to `ticket`, used once.
    pub(crate) fn take(&self, ticket: &str) -> Option<Zeroizing<String>> {
        if let Some(a) = self.held.lock().unwrap().remove(ticket) {
            return Some(a);
        }
        let dir = self.dir.as_ref()?;
        if !valid_ticket_id(ticket) {
            return None;
        }
        let path = spool_path(dir, ticket);
        let sealed = std::fs::read(&path).ok()?;
        let _ = std::fs::remove_file(&path);
        let plain = self.vault.open(&aad(&self.vault, ticket), &sealed).ok()?;
        let text = Zeroizing::new(String::from_utf8(plain).ok()?);
        Some(Zeroizing::new(text.trim().to_string()))
    }

    pub(crate) fn discard(&self, ticket: &str) {
        self.held.lock().unwrap().remove(ticket);
        if let Some(dir) = &self.dir
            && valid_ticket_id(ticket)
        {
            let _ = std::fs::remove_file(spool_path(dir, ticket));
        }
    }
}
