//! `credpool init`: the data directory and a new key file, both private.

use super::{Cli, EXIT_ERROR, Failed};
use crate::crypto;
use crate::pool::KEY_FILE;
use std::path::Path;

pub fn run(cli: &Cli) -> Result<(), Failed> {
    let dir = &cli.data_dir;
    create_private_dir(dir)
        .and_then(|_| crate::private_fs::tighten_dir(dir))
        .map_err(|e| Failed(EXIT_ERROR, format!("cannot create {}: {e}", dir.display())))?;
    let key_path = cli.key_file.clone().unwrap_or_else(|| dir.join(KEY_FILE));
    crypto::create_key_file(&key_path).map_err(|e| Failed(EXIT_ERROR, e.to_string()))?;
    println!(
        "created {} and key file {} (mode 0600)",
        dir.display(),
        key_path.display()
    );
    println!("back the key file up somewhere safe: without it the store cannot be read");
    Ok(())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}
