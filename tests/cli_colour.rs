//! Issue 18 item 14: no colour codes into a pipe or a file, and none at a
//! terminal when `NO_COLOR` is set; colour only for a person at a terminal.

use crate::support;

use std::path::Path;
use std::process::Command;
use support::{credpool, credpool_bin, initialised, ok, run_credpool, stderr};

const ESC: char = '\u{1b}';

fn add_session(dir: &Path) {
    ok(&credpool(
        dir,
        &[
            "add", "--site", "jd.com", "--type", "session", "--id", "s1", "--cookie", "sid=v",
        ],
    ));
}

#[test]
fn no_colour_codes_go_into_a_pipe() {
    let dir = initialised();
    add_session(dir.path());
    // A WARN log line (the export's [AUDIT]) and a usage error: what a
    // terminal would colour.
    let out = credpool(
        dir.path(),
        &["export", "s1", "--format", "json", "--reveal"],
    );
    let err = stderr(&out);
    assert!(err.contains("WARN") && err.contains("[AUDIT]"), "{err}");
    assert!(!err.contains(ESC), "colour in a pipe: {err:?}");
    assert!(!ok(&out).contains(ESC));
    let bad = credpool(dir.path(), &["list", "--status", "bogus"]);
    assert!(stderr(&bad).contains("error:"), "{}", stderr(&bad));
    assert!(!stderr(&bad).contains(ESC), "{:?}", stderr(&bad));
    let help = ok(&credpool(dir.path(), &["list", "--help"]));
    assert!(!help.contains(ESC));
    // A log file through `2> file` is the same stream kind: a file.
    let file = dir.path().join("err.log");
    let status = Command::new(credpool_bin())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--config", "/nonexistent/credpool.toml"])
        .args(["export", "s1", "--format", "json", "--reveal"])
        .env_remove("CREDPOOL_LOG")
        .env_remove("NO_COLOR")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&file).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    let logged = std::fs::read_to_string(&file).unwrap();
    assert!(
        logged.contains("[AUDIT]") && !logged.contains(ESC),
        "{logged:?}"
    );
    // NO_COLOR in the environment changes nothing here either.
    let out = run_credpool(
        dir.path(),
        &["export", "s1", "--format", "json", "--reveal"],
        "",
        &[("NO_COLOR", "1")],
    );
    assert!(!stderr(&out).contains(ESC));
}

/// At a terminal (a pseudo-terminal made by script(1)): colour, unless
/// NO_COLOR is set.
#[test]
fn at_a_terminal_colour_unless_no_color() {
    // script(1) is in Debian's essential bsdutils: never skipped.
    Command::new("script")
        .arg("--version")
        .output()
        .expect("script(1) (Debian: bsdutils) makes the terminal");
    let dir = initialised();
    add_session(dir.path());
    let data = dir.path().join("data");
    let line = format!(
        "'{}' --data-dir '{}' --config /nonexistent/credpool.toml export s1 --format json --reveal >/dev/null; '{}' --data-dir '{}' list --status bogus",
        credpool_bin().display(),
        data.display(),
        credpool_bin().display(),
        data.display()
    );
    let at_terminal = |no_color: Option<&str>| -> String {
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"])
            .env_remove("CREDPOOL_LOG")
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR_FORCE")
            .env_remove("CREDENTIAL_ENCRYPTION_KEY");
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        String::from_utf8_lossy(&cmd.output().unwrap().stdout).to_string()
    };
    let coloured = at_terminal(None);
    assert!(
        coloured.contains("[AUDIT]") && coloured.contains("bogus"),
        "{coloured:?}"
    );
    assert!(
        coloured.contains(ESC),
        "no colour at a terminal: {coloured:?}"
    );
    let plain = at_terminal(Some("1"));
    assert!(
        plain.contains("[AUDIT]") && plain.contains("bogus"),
        "{plain:?}"
    );
    assert!(!plain.contains(ESC), "colour despite NO_COLOR: {plain:?}");
}
