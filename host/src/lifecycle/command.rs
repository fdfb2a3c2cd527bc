//! Running an external program (a login command, a captcha solver, a
//! notify command) inside bounds:
//!
//! - its environment is cleared and holds only [`BASE_ENV`] and the
//!   variables its configuration names: never the master key, never a
//!   client secret it was not given;
//! - it runs in its own process group, and the whole group is killed at
//!   its time limit, when its output is too long, or when the caller gives
//!   up (the future is dropped at shutdown), so no grandchild outlives it;
//! - at most [`MAX_OUTPUT`] bytes of its stdout are read: past that the
//!   answer is refused without reading (or buffering) the rest.
//!
//! stderr is discarded: it might echo a secret.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

/// What a command may print before its answer is refused.
pub const MAX_OUTPUT: usize = 1 << 20;

/// Variables every command gets (when credpool has them).
pub const BASE_ENV: [&str; 4] = ["PATH", "HOME", "LANG", "TZ"];

/// Why a command gave no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// It could not be started (no such program, not executable).
    Spawn,
    /// Reading or writing its pipes failed.
    Io,
    /// It printed more than [`MAX_OUTPUT`].
    TooLong,
    /// It exited unsuccessfully.
    Failed,
    /// It ran past its time limit.
    Timeout,
}

/// Checks an `env` list of a command's configuration: variable names, and
/// never the master key's.
pub fn validate_env(key: &str, names: &[String]) -> Result<(), String> {
    for n in names {
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("{key} must list environment variable names"));
        }
        if n == crate::crypto::KEY_ENV {
            return Err(format!(
                "{key} may not pass {} to a command",
                crate::crypto::KEY_ENV
            ));
        }
    }
    Ok(())
}

/// Kills the command's process group unless disarmed (after the command
/// was reaped: its group id could then be reused).
struct GroupGuard {
    pgid: Option<rustix::process::Pid>,
}

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // ESRCH (the group is gone) is the wanted state already.
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `argv` with `input` on stdin under `timeout`, with `env` (names)
/// added to [`BASE_ENV`]; its stdout when it exits successfully.
pub async fn run(
    argv: &[String],
    env: &[String],
    input: &[u8],
    timeout: Duration,
) -> Result<Zeroizing<Vec<u8>>, CommandError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(CommandError::Spawn);
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).env_clear();
    for name in BASE_ENV
        .iter()
        .copied()
        .chain(env.iter().map(String::as_str))
    {
        if name == crate::crypto::KEY_ENV {
            continue;
        }
        if let Some(v) = std::env::var_os(name) {
            cmd.env(name, v);
        }
    }
    let mut child = cmd
        .process_group(0)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|_| CommandError::Spawn)?;
    // Its pid is its process group's id (process_group(0)).
    let mut group = GroupGuard {
        pgid: child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(id as i32)),
    };
    let mut stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let work = async {
        // A command that does not read its input must not block us: the
        // write ends when it exits or at the time limit.
        let _ = stdin.write_all(input).await;
        drop(stdin);
        let mut out = Zeroizing::new(Vec::new());
        // One byte more than allowed tells "too long" from "exactly full".
        stdout
            .take(MAX_OUTPUT as u64 + 1)
            .read_to_end(&mut out)
            .await
            .map_err(|_| CommandError::Io)?;
        if out.len() > MAX_OUTPUT {
            return Err(CommandError::TooLong);
        }
        let status = child.wait().await.map_err(|_| CommandError::Io)?;
        Ok((out, status))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok((out, status))) => {
            // Reaped: its group id may be reused, do not signal it.
            group.pgid = None;
            if status.success() {
                Ok(out)
            } else {
                Err(CommandError::Failed)
            }
        }
        Ok(Err(e)) => {
            group.kill();
            Err(e)
        }
        Err(_) => {
            group.kill();
            Err(CommandError::Timeout)
        }
    }
}
