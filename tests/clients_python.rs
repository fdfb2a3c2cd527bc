//! The Python client (`clients/python`) and its Scrapy middleware, tested
//! by their own pytest suite against the built binary: the client against
//! a live `credpool serve`, and real Scrapy crawls of the simulated shop
//! (`credpool simulate --serve-sites`) through the pool and with the usual
//! cookie rotation. Needs Python 3.10+ with the client's test extras.

use crate::support::credpool_bin;
use std::path::PathBuf;
use std::process::Command;

const INSTALL: &str = "pip install './clients/python[scrapy,test]'";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

#[test]
fn python_client_and_scrapy_crawls_pass_their_tests() {
    let root = root();
    let src = root.join("clients/python/src");
    // This checkout's client, whatever copy pip installed.
    let pythonpath = match std::env::var_os("PYTHONPATH") {
        Some(p) if !p.is_empty() => {
            let mut all = vec![src.clone()];
            all.extend(std::env::split_paths(&p));
            std::env::join_paths(all).expect("PYTHONPATH")
        }
        _ => src.clone().into_os_string(),
    };
    let probe = Command::new(python())
        .args([
            "-c",
            "import sys; assert sys.version_info >= (3, 10), sys.version\n\
             import httpx, pytest, scrapy, credpool.scrapy",
        ])
        .env("PYTHONPATH", &pythonpath)
        .output();
    match probe {
        Err(e) => panic!(
            "cannot run {} ({e}): the Python client's tests need Python 3.10+ and `{INSTALL}`",
            python()
        ),
        Ok(out) if !out.status.success() => panic!(
            "the Python client's tests need its packages: run `{INSTALL}` (from the \
             repository root)\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Ok(_) => {}
    }
    let out = Command::new(python())
        .args(["-m", "pytest", "-q", "-s", "-p", "no:cacheprovider"])
        .arg(root.join("clients/python/tests"))
        .current_dir(&root)
        .env("CREDPOOL_BIN", credpool_bin())
        .env("PYTHONPATH", &pythonpath)
        .env_remove("CREDPOOL_ADDR")
        .env_remove("CREDPOOL_TOKEN")
        .env_remove("CREDENTIAL_ENCRYPTION_KEY")
        .output()
        .expect("run pytest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The side-by-side figures, with `cargo test -- --nocapture`.
    println!("{stdout}");
    assert!(
        out.status.success(),
        "pytest clients/python/tests failed (exit {:?}; 5 means no test ran):\n{}\n{}",
        out.status.code(),
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(" passed"),
        "pytest reported no passed test:\n{stdout}"
    );
}
