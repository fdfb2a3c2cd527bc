//! Builds the policy component from `../guest` for `wasm32-wasip2`, so
//! `cargo run` and `cargo test` stay one command each. The guest gets its own
//! target directory: the outer cargo holds the lock on ours.
//!
//! The `wasm32-wasip2` target is named in `rust-toolchain.toml`, but rustup
//! only installs it on its own when automatic installation is on; with
//! `RUSTUP_AUTO_INSTALL=0` (common on CI images) it never arrives. So the
//! target is checked here, added through rustup when rustup is present, and
//! otherwise the build stops naming the one command to run.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().expect("host/ sits in the workspace root");
    // Relative to host/, so the check follows whichever checkout builds.
    for watched in [
        "../guest/src",
        "../guest/Cargo.toml",
        "../wit",
        "../Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={watched}");
    }
    println!("cargo:rerun-if-env-changed=CREDPOOL_SKIP_GUEST_BUILD");

    // Per checkout, not per CARGO_TARGET_DIR: two checkouts sharing a target
    // directory must not overwrite each other's component.
    let target_dir = root.join("target").join("guest");
    ensure_target_installed();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "-p",
            "credpool-guest",
            "--release",
            "--target",
            TARGET,
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        // The guest ships small: no debug info in the component.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
        // Flags and wrappers meant for the host build (clippy, coverage) must
        // not leak into the wasm build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET");
    let status = cmd.status().expect("run cargo to build the guest");
    if !status.success() {
        panic!("building the policy component (guest/) for {TARGET} failed; see the errors above");
    }
    let wasm = target_dir.join("wasm32-wasip2/release/credpool_guest.wasm");
    assert!(wasm.exists(), "guest build produced no {}", wasm.display());
    println!("cargo:rustc-env=CREDPOOL_POLICY_WASM={}", wasm.display());
}

/// Whether the compiler's sysroot holds the standard library for `TARGET`.
fn target_installed(rustc: &str) -> bool {
    let Ok(out) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&sysroot)
        .join("lib/rustlib")
        .join(TARGET)
        .join("lib")
        .is_dir()
}

/// Adds the component target through rustup if it is missing, for the
/// toolchain this build runs on; stops with the command to run otherwise.
fn ensure_target_installed() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    if target_installed(&rustc) {
        return;
    }
    let mut add = Command::new("rustup");
    add.args(["target", "add", TARGET]);
    // The proxy that started this build says which toolchain it chose
    // (rust-toolchain.toml's channel); add the target to that one.
    if let Ok(toolchain) = std::env::var("RUSTUP_TOOLCHAIN") {
        add.args(["--toolchain", &toolchain]);
    }
    println!("cargo:warning=the {TARGET} target is missing; running: rustup target add {TARGET}");
    match add.status() {
        Ok(status) if status.success() && target_installed(&rustc) => {}
        Ok(_) => panic!(
            "the {TARGET} target is not installed and `rustup target add {TARGET}` failed \
             (see above); run it yourself, then build again"
        ),
        Err(_) => panic!(
            "the {TARGET} target is not installed and rustup was not found; \
             install the target for this toolchain (with rustup: rustup target add {TARGET}), \
             then build again"
        ),
    }
}
