//! Files and directories only their owner can read: every file credpool
//! writes in its data directory is created 0600 (not left to the umask),
//! and a data directory that group or others can enter is tightened to
//! 0700 when a pool opens or `credpool init` runs, or refused when it
//! cannot be (not ours).

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file created 0600 beside
/// it, then renamed over it: a reader sees the old or the new whole file.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{}.tmp", name.unwrap_or_default()));
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = options.open(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    match result.and_then(|_| std::fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// The permission bits group and others have on `dir`, when any.
#[cfg(unix)]
fn open_bits(dir: &Path) -> std::io::Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(dir)?.permissions().mode() & 0o077)
}

/// Refuses a data directory that group or others can read or enter.
pub fn check_private_dir(dir: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        let bits = open_bits(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        if bits != 0 {
            return Err(format!(
                "data directory {} can be read by group or others (mode {:03o}): \
                 run `chmod 700 {}` or `credpool init`",
                dir.display(),
                0o700 | bits,
                dir.display()
            ));
        }
    }
    Ok(())
}

/// Takes group's and others' access away from `dir`.
pub fn tighten_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))?;
        }
    }
    Ok(())
}

/// Makes `dir` private (0700) when group or others have access, or names
/// why it cannot be.
pub fn ensure_private_dir(dir: &Path) -> Result<(), String> {
    if check_private_dir(dir).is_ok() {
        return Ok(());
    }
    tighten_dir(dir).map_err(|e| format!("cannot make {} private: {e}", dir.display()))?;
    check_private_dir(dir)
}
