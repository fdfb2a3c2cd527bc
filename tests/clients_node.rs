//! The Node client (`clients/node`) and its Crawlee integration, tested by
//! `node --test` against the built `credpool`: client unit tests against a
//! live `credpool serve`, the README's examples, and a CheerioCrawler crawl
//! of the simulated shop through the pool. Node and the package's
//! dependencies (`npm ci --prefix clients/node`) must be installed.

use crate::support::credpool_bin;
use std::path::PathBuf;
use std::process::Command;

fn package_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clients/node")
}

#[test]
fn node_client_tests_pass_against_the_built_server() {
    let dir = package_dir();
    let node = Command::new("node").arg("--version").output();
    let version = match node {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => panic!("`node` (20 or later) is not on PATH: the Node client's tests need it"),
    };
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        major >= 20,
        "node {version} is too old: the Node client needs 20 or later"
    );
    assert!(
        dir.join("node_modules/@crawlee/cheerio").is_dir(),
        "{} has no node_modules: run `npm ci --prefix clients/node` first (it installs Crawlee for the crawl tests)",
        dir.display()
    );
    let mut files: Vec<String> = std::fs::read_dir(dir.join("test"))
        .expect("clients/node/test")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".test.js"))
        .map(|n| format!("test/{n}"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "the Node tests are missing: {files:?}");
    let out = Command::new("node")
        .args(["--test", "--test-concurrency=1", "--test-timeout=240000"])
        .args(&files)
        .current_dir(&dir)
        .env("CREDPOOL_BIN", credpool_bin())
        .env_remove("CREDPOOL_ADDR")
        .env_remove("CREDPOOL_TOKEN")
        .env_remove("CREDENTIAL_ENCRYPTION_KEY")
        .output()
        .expect("run node --test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "node --test failed ({:?}) in {}:\n{stdout}\n{stderr}",
        out.status.code(),
        dir.display()
    );
    // The runner's own tally: something ran, nothing failed or was skipped.
    let count = |key: &str| -> u64 {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# {key} ")))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `# {key}` line in node's output:\n{stdout}"))
    };
    assert!(count("pass") >= 10, "too few Node tests ran:\n{stdout}");
    assert_eq!(count("fail"), 0, "{stdout}");
    assert_eq!(count("skipped"), 0, "{stdout}");
    // The crawl's figures, for the record.
    for line in stdout.lines().filter(|l| l.contains("crawl figures")) {
        println!("{line}");
    }
}
