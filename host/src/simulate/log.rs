//! The run's log file: everything the pool and its lifecycle log during a
//! simulated crawl (at debug level for credpool) goes to a file in the
//! run's directory, so the leak scan reads what an operator's log would
//! hold. The CLI installs [`layer`] once; each run points it at its file.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use tracing_subscriber::fmt::MakeWriter;

static LOG: Mutex<Option<File>> = Mutex::new(None);

/// Sends the captured log to `path` (created), or stops capturing.
pub fn capture_log(path: Option<&Path>) -> std::io::Result<()> {
    let file = path.map(File::create).transpose()?;
    let mut log = LOG.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(old) = log.as_mut() {
        old.flush()?;
    }
    *log = file;
    Ok(())
}

/// Writes into the current capture file; nothing while none is set.
#[derive(Clone, Copy, Default)]
pub struct CaptureWriter;

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match LOG.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(f) => f.write(buf),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match LOG.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl<'a> MakeWriter<'a> for CaptureWriter {
    type Writer = CaptureWriter;
    fn make_writer(&'a self) -> Self::Writer {
        CaptureWriter
    }
}
