//! Builds the policy component from `../guest` for `wasm32-wasip2`, so
//! `cargo run` and `cargo test` stay one command each. The guest gets its own
//! target directory: the outer cargo holds the lock on ours.

use std::path::PathBuf;
use std::process::Command;

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
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "-p",
            "credpool-guest",
            "--release",
            "--target",
            "wasm32-wasip2",
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
        panic!(
            "building the policy component failed; is the target installed? \
             run: rustup target add wasm32-wasip2"
        );
    }
    let wasm = target_dir.join("wasm32-wasip2/release/credpool_guest.wasm");
    assert!(wasm.exists(), "guest build produced no {}", wasm.display());
    println!("cargo:rustc-env=CREDPOOL_POLICY_WASM={}", wasm.display());
}
