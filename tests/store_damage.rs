//! A damaged store is an error, not a crash: bytes flipped anywhere in a
//! real `credpool.redb` and files cut short give every command a typed
//! error or the right data, and `credpool check` names the damage;
//! `backup` while `serve` runs and `restore` (never half-written; refused
//! for a damaged backup or one sealed under other keys).

use crate::support::server::{Served, token};
use crate::support::{credpool, initialised, ok, run_credpool, stderr};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

/// The accounts added: id and password.
const ACCOUNTS: [(&str, &str); 5] = [
    ("a1", "pw-one-1111"),
    ("a2", "pw-two-2222"),
    ("a3", "pw-three-3333"),
    ("a4", "pw-four-4444"),
    ("a5", "pw-five-5555"),
];

fn add_accounts(dir: &Path) {
    for (id, pw) in ACCOUNTS {
        ok(&run_credpool(
            dir,
            &[
                "add",
                "--site",
                "jd.com",
                "--type",
                "account",
                "--id",
                id,
                "--username",
                &format!("user-{id}"),
                "--password-stdin",
            ],
            pw,
            &[],
        ));
    }
    ok(&run_credpool(
        dir,
        &[
            "add",
            "--site",
            "taobao.com",
            "--type",
            "session",
            "--id",
            "s1",
            "--cookie",
            "sid=cookie-value-s1",
        ],
        "",
        &[],
    ));
}

fn db(dir: &Path) -> std::path::PathBuf {
    dir.join("data").join("credpool.redb")
}

/// What `list --json` says of each credential that cannot change by
/// reading it: id -> (site, type, username, status).
fn listed(v: &Value) -> BTreeMap<String, String> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                format!(
                    "{} {} {} {}",
                    c["site"], c["type"], c["username"], c["status"]
                ),
            )
        })
        .collect()
}

fn password_of(id: &str) -> &'static str {
    ACCOUNTS
        .iter()
        .find(|(i, _)| *i == id)
        .expect("an account")
        .1
}

/// A command's end that is not a crash: no exit 101, no panic message.
fn assert_no_crash(what: &str, out: &Output) {
    let err = stderr(out);
    assert_ne!(out.status.code(), Some(101), "{what}: exit 101\n{err}");
    assert!(out.status.code().is_some(), "{what}: killed by a signal");
    assert!(
        !err.contains("panicked") && !err.contains("internal error (a bug)"),
        "{what}: {err}"
    );
}

/// Under `--json`: the answer, or the typed error `{"error": {code,
/// message}}` of a damaged store that says what to do.
fn answer_or_damage(what: &str, out: &Output) -> Option<Value> {
    assert_no_crash(what, out);
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}\n{}", stderr(out)));
    if out.status.success() {
        return Some(v);
    }
    assert_eq!(out.status.code(), Some(1), "{what}: {text}");
    assert_eq!(v["error"]["code"], "store_corrupt", "{what}: {text}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("credpool.redb is damaged") && message.contains("credpool restore"),
        "{what}: {message}"
    );
    None
}

#[test]
fn flipped_bytes_and_cut_files_give_a_typed_error_or_the_right_data() {
    let dir = initialised();
    let d = dir.path();
    add_accounts(d);
    let expected = listed(&crate::support::json(&credpool(d, &["list", "--json"])));
    assert_eq!(expected.len(), 6);
    let pristine = std::fs::read(db(d)).unwrap();
    let mut damages: Vec<(String, Vec<u8>)> = Vec::new();
    for offset in (0..pristine.len()).step_by(512) {
        let mut bytes = pristine.clone();
        for b in &mut bytes[offset..(offset + 8).min(pristine.len())] {
            *b = !*b;
        }
        damages.push((format!("8 bytes flipped at {offset}"), bytes));
    }
    let len = pristine.len();
    for cut in [1, 100, 4096, 8192, len / 2, len - 4096, len - 1] {
        damages.push((format!("cut to {cut} bytes"), pristine[..cut].to_vec()));
    }
    damages.push(("cut to 0 bytes".into(), Vec::new()));
    // Each worker has a copy of the data directory (key, compiled policy);
    // the commands wait on the disk more than on the processor.
    let workers: Vec<tempfile::TempDir> = (0..4).map(|_| copy_data_dir(d)).collect();
    let outcomes: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = workers
            .iter()
            .enumerate()
            .map(|(w, wd)| {
                let (damages, expected) = (&damages, &expected);
                scope.spawn(move || {
                    damages
                        .iter()
                        .skip(w)
                        .step_by(4)
                        .map(|(damage, bytes)| one_damage(wd.path(), damage, bytes, expected))
                        .collect::<Vec<bool>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a worker"))
            .collect()
    });
    let served = outcomes.iter().filter(|ok| **ok).count();
    let refused = outcomes.len() - served;
    // Both outcomes happen: damage in pages in use is found, damage in
    // free space is harmless.
    assert!(
        refused > 10 && served > 0,
        "refused {refused}, served {served}"
    );
    eprintln!(
        "{} damaged files: {refused} refused, {served} read correctly",
        damages.len()
    );
}

/// Runs list, show, acquire and check on `bytes` as `dir`'s store; true
/// when check passed it (and every command read the right data), false
/// when check named the damage (and some command refused it).
fn one_damage(d: &Path, damage: &str, bytes: &[u8], expected: &BTreeMap<String, String>) -> bool {
    // Each command gets the damaged file afresh (opening may repair).
    let run = |args: &[&str]| {
        std::fs::write(db(d), bytes).unwrap();
        credpool(d, args)
    };
    let list = answer_or_damage(&format!("{damage}: list"), &run(&["list", "--json"]));
    if let Some(v) = &list {
        assert_eq!(&listed(v), expected, "{damage}: list");
    }
    let show = answer_or_damage(
        &format!("{damage}: show"),
        &run(&["show", "a3", "--reveal", "--json"]),
    );
    if let Some(v) = &show {
        assert_eq!(v["username"], "user-a3", "{damage}: show");
        assert_eq!(
            v["secrets"]["password"],
            password_of("a3"),
            "{damage}: show"
        );
    }
    let acquired = answer_or_damage(
        &format!("{damage}: acquire"),
        &run(&["acquire", "jd.com", "--json"]),
    );
    if let Some(v) = &acquired {
        let c = &v["lease"]["credential"];
        let id = c["id"].as_str().unwrap_or_else(|| panic!("{damage}: {v}"));
        assert_eq!(c["site"], "jd.com", "{damage}: acquire");
        assert_eq!(
            v["lease"]["secrets"]["password"],
            password_of(id),
            "{damage}: acquire"
        );
    }
    let check = run(&["check", "--json"]);
    assert_no_crash(&format!("{damage}: check"), &check);
    let report: Value = serde_json::from_slice(&check.stdout)
        .unwrap_or_else(|e| panic!("{damage}: check: not JSON ({e})\n{}", stderr(&check)));
    let all_answered = list.is_some() && show.is_some() && acquired.is_some();
    if check.status.success() {
        assert_eq!(report["ok"], true, "{damage}: {report}");
        assert!(
            all_answered,
            "{damage}: check passed a store a command refused"
        );
    } else {
        assert_eq!(check.status.code(), Some(1), "{damage}: {report}");
        assert_eq!(report["ok"], false, "{damage}: {report}");
        let problems = report["problems"].as_array().unwrap();
        assert!(
            problems
                .iter()
                .any(|p| p.as_str().unwrap().contains("credpool.redb")),
            "{damage}: check does not name the damage: {report}"
        );
        assert!(
            !all_answered,
            "{damage}: check failed a store every command read"
        );
    }
    check.status.success()
}

/// A copy of `dir`'s data directory without its store.
fn copy_data_dir(dir: &Path) -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else if entry.file_name() != "credpool.redb" {
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
    }
    let out = tempfile::tempdir().unwrap();
    copy(&dir.join("data"), &out.path().join("data"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let data = out.path().join("data");
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(
            data.join("credpool.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    out
}

/// A record whose seal is broken (the storage engine's checks pass):
/// `check` names it and the credential; reading it is a typed error.
#[test]
fn check_names_a_record_whose_seal_is_broken() {
    let dir = initialised();
    let d = dir.path();
    add_accounts(d);
    ok(&credpool(d, &["check"]));
    {
        use credpool::backend::{Backend, RedbBackend, Write};
        let store = RedbBackend::open(&db(d)).unwrap();
        let key = "t/default/s/a2";
        let mut value = store.get(key).unwrap().expect("a2's secrets");
        let last = value.len() - 1;
        value[last] ^= 0x01;
        store.apply(&[Write::Put(key.into(), value)]).unwrap();
    }
    let out = credpool(d, &["check", "--json"]);
    assert_no_crash("check", &out);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let damaged = report["damaged"].as_array().unwrap();
    assert_eq!(damaged.len(), 1, "{report}");
    assert_eq!(damaged[0]["key"], "t/default/s/a2");
    assert_eq!(
        damaged[0]["what"],
        "the secrets of credential a2, tenant default"
    );
    assert!(
        damaged[0]["reason"].as_str().unwrap().contains("tampered"),
        "{report}"
    );
    let text = credpool(d, &["check"]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("record t/default/s/a2"),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );
    assert!(
        stderr(&text).contains("credpool restore"),
        "{}",
        stderr(&text)
    );
    // The other credentials still serve; a2's secrets are a typed error.
    let shown = ok(&credpool(d, &["show", "a1", "--reveal", "--json"]));
    assert!(shown.contains(password_of("a1")));
    let out = credpool(d, &["show", "a2", "--reveal"]);
    assert_no_crash("show a2", &out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("t/default/s/a2") && stderr(&out).contains("tampered"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_backup_taken_while_serving_restores_and_a_foreign_or_damaged_one_is_refused() {
    let dir = initialised();
    let d = dir.path();
    add_accounts(d);
    let admin = token(d, "default", "admin", &[]);
    let crawler = token(d, "default", "crawler", &[]);
    let backup = d.join("backup.redb");
    let server = Served::start(d, &["--listen", "127.0.0.1:0"]);
    // Written through the server just before the backup: in it.
    ok(&server.run_cli(
        d,
        &admin,
        &[
            "add",
            "--site",
            "jd.com",
            "--type",
            "account",
            "--id",
            "late",
            "--password-stdin",
        ],
        "pw-late",
    ));
    let lease =
        crate::support::json(&server.run_cli(d, &admin, &["acquire", "jd.com", "--json"], ""));
    let leased = lease["lease"]["credential"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let refused = server.run_cli(d, &crawler, &["backup", backup.to_str().unwrap()], "");
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("may not"), "{}", stderr(&refused));
    assert!(!backup.exists());
    // Without the server the command says how to reach it.
    let local = credpool(d, &["backup", backup.to_str().unwrap()]);
    assert_eq!(local.status.code(), Some(1));
    assert!(
        stderr(&local).contains("CREDPOOL_ADDR"),
        "{}",
        stderr(&local)
    );
    let said = ok(&server.run_cli(d, &admin, &["backup", backup.to_str().unwrap()], ""));
    assert!(said.contains("still encrypted"), "{said}");
    assert!(!d.join("backup.redb.partial").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&backup).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Never written over.
    let again = server.run_cli(d, &admin, &["backup", backup.to_str().unwrap()], "");
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("exists already"),
        "{}",
        stderr(&again)
    );
    // A restore needs the store itself.
    let busy = credpool(d, &["restore", backup.to_str().unwrap()]);
    assert_eq!(busy.status.code(), Some(1));
    assert!(stderr(&busy).contains("stop it"), "{}", stderr(&busy));
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    // The backup holds no secret in the clear.
    let bytes = std::fs::read(&backup).unwrap();
    for (_, pw) in ACCOUNTS {
        assert!(!bytes.windows(pw.len()).any(|w| w == pw.as_bytes()));
    }
    ok(&credpool(d, &["check", "--file", backup.to_str().unwrap()]));

    // The store is damaged; the backup brings it back.
    let damaged = damage_until(&std::fs::read(db(d)).unwrap(), |bytes| {
        std::fs::write(db(d), bytes).unwrap();
        let out = credpool(d, &["list"]);
        assert_no_crash("list", &out);
        !out.status.success()
    });
    std::fs::write(db(d), &damaged).unwrap();
    let restored = ok(&credpool(d, &["restore", backup.to_str().unwrap()]));
    assert!(restored.contains("kept at"), "{restored}");
    let aside: Vec<_> = std::fs::read_dir(d.join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("credpool.redb.before-restore-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read(d.join("data").join(&aside[0])).unwrap(),
        damaged
    );
    let list = crate::support::json(&credpool(d, &["list", "--json"]));
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a1", "a2", "a3", "a4", "a5", "late", "s1"]);
    let late = crate::support::json(&credpool(d, &["show", "late", "--reveal", "--json"]));
    assert_eq!(late["secrets"]["password"], "pw-late");
    let held = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == leased.as_str())
        .unwrap();
    assert_eq!(
        held["open_leases"], 1,
        "the lease taken before the backup is in it"
    );

    // Another store's key: refused, that store untouched.
    let other = initialised();
    let o = other.path();
    ok(&run_credpool(
        o,
        &[
            "add",
            "--site",
            "x.com",
            "--type",
            "account",
            "--id",
            "own",
            "--password-stdin",
        ],
        "pw-own",
        &[],
    ));
    let before = std::fs::read(db(o)).unwrap();
    let out = credpool(o, &["restore", backup.to_str().unwrap()]);
    assert_no_crash("restore", &out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("sealed under keys the key file does not hold"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(db(o)).unwrap(), before);
    assert!(!o.join("data").join("credpool.redb.restoring").exists());
    ok(&credpool(o, &["show", "own"]));

    // A damaged backup: refused, the store untouched.
    let bad_path = d.join("bad.redb");
    let bad = damage_until(&std::fs::read(&backup).unwrap(), |bytes| {
        std::fs::write(&bad_path, bytes).unwrap();
        let out = credpool(d, &["check", "--file", bad_path.to_str().unwrap()]);
        assert_no_crash("check", &out);
        !out.status.success()
    });
    std::fs::write(&bad_path, &bad).unwrap();
    let before = std::fs::read(db(d)).unwrap();
    let out = credpool(d, &["restore", bad_path.to_str().unwrap(), "--json"]);
    assert_no_crash("restore", &out);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["restored"], false);
    assert_eq!(v["error"]["code"], "restore_refused");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("it is damaged"),
        "{v}"
    );
    assert_eq!(std::fs::read(db(d)).unwrap(), before);
    ok(&credpool(d, &["show", "a1"]));
}

/// `bytes` with 8 bytes overwritten at the first page (from the second
/// on) where `refused` says the damage is found.
fn damage_until(bytes: &[u8], mut refused: impl FnMut(&[u8]) -> bool) -> Vec<u8> {
    for offset in (4096..bytes.len()).step_by(4096) {
        let mut damaged = bytes.to_vec();
        damaged[offset..offset + 8].copy_from_slice(b"XXXXXXXX");
        if refused(&damaged) {
            return damaged;
        }
    }
    panic!("no page of the file is in use");
}
