//! The example policy users copy (`examples/policy-minimal/`), built for
//! the tests that load it as a pool's component. It is its own Cargo
//! workspace, so it is built here, once per test run, into its own target
//! directory under the workspace's `target/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const TARGET: &str = "wasm32-wasip2";

/// The workspace root (this crate's manifest is `host/Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ sits in the workspace root")
        .to_path_buf()
}

/// The built example policy component; builds it on first use.
pub fn minimal_policy_wasm() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(build_minimal_policy).clone()
}

fn build_minimal_policy() -> PathBuf {
    let root = workspace_root();
    let target_dir = root.join("target").join("policy-minimal");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--release", "--locked", "--target", TARGET])
        .arg("--manifest-path")
        .arg(root.join("examples/policy-minimal/Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir)
        // Flags and wrappers meant for the test build must not reach the
        // wasm build (as host/build.rs does for the built-in policy).
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .expect("run cargo to build examples/policy-minimal");
    assert!(
        out.status.success(),
        "building examples/policy-minimal for {TARGET} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm = target_dir.join(TARGET).join("release/policy_minimal.wasm");
    assert!(wasm.is_file(), "the build produced no {}", wasm.display());
    wasm
}
