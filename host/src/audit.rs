//! The audit trail: every reveal and export of secrets appends one JSON
//! line to `DATA_DIR/audit.log` (0600), whatever the log level. A line
//! says who, what and when, never a secret value. A reveal whose record
//! cannot be written is refused: no secret leaves without its trace.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The audit file's name in the data directory.
pub const AUDIT_FILE: &str = "audit.log";

/// One revealed or exported credential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// RFC 3339, to the millisecond.
    pub at: String,
    /// `reveal` or `export`.
    pub action: String,
    /// The credential's id, as `list` shows it (ids are not secret).
    pub credential: String,
    pub site: String,
    pub tenant: String,
    /// `cli` (the store opened by the command) or `http` (through `serve`).
    pub via: String,
    /// Who: `user NAME (uid N)` for the command, `token ID` over HTTP.
    pub actor: String,
    /// The export's format; none for a reveal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

impl AuditRecord {
    /// A record stamped now.
    pub fn now(action: &str, credential: &str, site: &str, tenant: &str) -> AuditRecord {
        AuditRecord {
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            action: action.to_string(),
            credential: credential.to_string(),
            site: site.to_string(),
            tenant: tenant.to_string(),
            via: "cli".to_string(),
            actor: local_actor(),
            format: None,
        }
    }

    /// Over HTTP, by the holder of an API token.
    pub fn over_http(mut self, token_id: &str) -> AuditRecord {
        self.via = "http".to_string();
        self.actor = format!("token {token_id}");
        self
    }

    pub fn with_format(mut self, format: &str) -> AuditRecord {
        self.format = Some(format.to_string());
        self
    }
}

/// The person running the command: the login name the environment gives
/// and the process's real uid (which the environment cannot change).
fn local_actor() -> String {
    let name = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or_else(|| "?".to_string());
    #[cfg(unix)]
    {
        format!("user {name} (uid {})", rustix::process::getuid().as_raw())
    }
    #[cfg(not(unix))]
    {
        format!("user {name}")
    }
}

/// A line of the audit file that is not a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damaged {
    pub line: usize,
    pub message: String,
}

/// The audit file of one data directory.
#[derive(Clone, Debug)]
pub struct AuditLog {
    path: PathBuf,
}

impl AuditLog {
    pub fn in_dir(data_dir: &Path) -> AuditLog {
        AuditLog {
            path: data_dir.join(AUDIT_FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record (created 0600, synced to disk before returning).
    pub fn append(&self, record: &AuditRecord) -> std::io::Result<()> {
        let mut line = serde_json::to_string(record).map_err(std::io::Error::other)?;
        line.push('\n');
        let mut options = std::fs::OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&self.path)?;
        // One write of a whole line: concurrent writers do not interleave.
        f.write_all(line.as_bytes())?;
        f.sync_data()
    }

    /// Every record, oldest first, and the lines that are not records. A
    /// missing file is an empty trail.
    pub fn read(&self) -> std::io::Result<(Vec<AuditRecord>, Vec<Damaged>)> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(parse(&bytes))
    }
}

/// Parses the file's bytes line by line; a bad line is named, not fatal.
fn parse(bytes: &[u8]) -> (Vec<AuditRecord>, Vec<Damaged>) {
    let mut records = Vec::new();
    let mut damaged = Vec::new();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let why = match std::str::from_utf8(raw) {
            Err(_) => "not UTF-8".to_string(),
            Ok(text) => match serde_json::from_str::<AuditRecord>(text) {
                Ok(r) => {
                    records.push(r);
                    continue;
                }
                // serde's message names a field or a type, never the line's text.
                Err(e) => format!("not an audit record ({})", without_position(&e)),
            },
        };
        damaged.push(Damaged {
            line: i + 1,
            message: why,
        });
    }
    (records, damaged)
}

/// serde's message without its position in the line.
fn without_position(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_lines_are_named_and_the_rest_kept() {
        let good = AuditRecord::now("reveal", "s1", "jd.com", "default");
        let mut bytes = serde_json::to_vec(&good).unwrap();
        bytes.extend_from_slice(b"\n{\"at\":\n\xff\xfe\n\n");
        bytes.extend_from_slice(&serde_json::to_vec(&good).unwrap());
        let (records, damaged) = parse(&bytes);
        assert_eq!(records, vec![good.clone(), good]);
        assert_eq!(
            damaged.iter().map(|d| d.line).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(damaged[1].message, "not UTF-8");
    }
}
