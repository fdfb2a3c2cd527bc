//! Security of the store: tampering, keys, rotation, and a canary hunt for
//! plaintext leaks through every command, log line, error and `Debug`.

use crate::support;

use base64::Engine as _;
use credpool::backend::{Backend, MemoryBackend, RedbBackend};
use credpool::crypto::{KeySource, create_key_file, load_keys};
use credpool::pool::{DB_FILE, Storage};
use credpool::rekey::{self, RekeyOptions};
use credpool::tenant_keys;
use credpool::vault::VaultError;
use credpool::{AcquireRequest, CredentialKind, Error, NewCredential, Pool, PoolOptions};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Instant;
use support::fixtures::encodings;
use support::{canary, run_credpool, session};

// ---------------------------------------------------------------- tamper

fn shared_pool(backend: &Arc<MemoryBackend>) -> Pool {
    let mut options = PoolOptions::in_memory();
    options.storage = Storage::Shared(backend.clone());
    Pool::open(options).unwrap()
}

fn flip_random_bit(v: &mut [u8]) {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    let bit = (u64::from_le_bytes(b) % (v.len() as u64 * 8)) as usize;
    v[bit / 8] ^= 1 << (bit % 8);
}

/// A pool on `backend` holding `n` sessions `s0..`, cookie `sid=v<i>`.
fn sessions(backend: &Arc<MemoryBackend>, n: usize) -> Pool {
    let pool = shared_pool(backend);
    for i in 0..n {
        pool.add(session(
            "jd.com",
            &format!("s{i}"),
            &[("sid", &format!("v{i}"))],
        ))
        .unwrap();
    }
    pool
}

#[test]
fn a_flipped_bit_in_any_of_thousands_of_records_is_a_typed_error() {
    let backend = Arc::new(MemoryBackend::new());
    let pool = sessions(&backend, 1000);
    pool.flush().unwrap();
    let before = pool.audit().unwrap();
    assert!(before.unreadable.is_empty());
    let sealed = before.sealed();
    assert!(sealed >= 2000, "{sealed} sealed records");
    // One random bit flipped in every stored value.
    let mut tampered = 0;
    for (key, mut value) in backend.dump() {
        if key.starts_with("k/uses/") || key == "k/rekey" {
            continue;
        }
        flip_random_bit(&mut value);
        backend.put_raw(&key, value);
        tampered += 1;
    }
    let after = pool.audit().unwrap();
    assert_eq!(after.sealed(), 0, "a tampered record opened: {after:?}");
    assert_eq!(after.unreadable.len() + after.checks, tampered);
    // Through the API: a typed error naming the record, never garbage.
    for i in (0..1000).step_by(7) {
        let id = format!("s{i}");
        match pool.reveal(&id) {
            Err(Error::Store(VaultError::Crypto { key, .. })) => assert!(key.ends_with(&id)),
            // The policy holds the record in memory; its stored copy is
            // what was flipped, so the secret bundle is what fails.
            other => panic!("{id}: expected a crypto error, got {other:?}"),
        }
    }
    // Reopening on tampered records fails cleanly (no panic).
    let mut options = PoolOptions::in_memory();
    options.storage = Storage::Shared(backend.clone());
    assert!(Pool::open(options).is_err());
    eprintln!("tamper: {tampered} records flipped, all refused");
}

#[test]
fn every_bit_of_one_secret_bundle_and_swapped_bundles_are_refused() {
    let backend = Arc::new(MemoryBackend::new());
    let pool = sessions(&backend, 1000);
    let key = "t/default/s/s0";
    let original = backend.get(key).unwrap().unwrap();
    for bit in 0..original.len() * 8 {
        let mut bad = original.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        backend.put_raw(key, bad);
        assert!(
            matches!(pool.reveal("s0"), Err(Error::Store(_))),
            "bit {bit} undetected"
        );
    }
    backend.put_raw(key, original);
    assert_eq!(pool.reveal("s0").unwrap().1.cookies[0].1, "v0");
    // Swap bundles pairwise, and policy records pairwise: 1,000 records.
    let all = backend.dump();
    let bundles: Vec<&(String, Vec<u8>)> = all
        .iter()
        .filter(|(k, _)| k.starts_with("t/default/s/"))
        .collect();
    assert_eq!(bundles.len(), 1000);
    for pair in bundles.chunks(2) {
        backend.put_raw(&pair[0].0, pair[1].1.clone());
        backend.put_raw(&pair[1].0, pair[0].1.clone());
    }
    let records: Vec<&(String, Vec<u8>)> = all
        .iter()
        .filter(|(k, _)| k.starts_with("t/default/p/"))
        .collect();
    for pair in records.chunks(2).filter(|p| p.len() == 2) {
        backend.put_raw(&pair[0].0, pair[1].1.clone());
        backend.put_raw(&pair[1].0, pair[0].1.clone());
    }
    for i in 0..1000 {
        assert!(
            matches!(pool.reveal(&format!("s{i}")), Err(Error::Store(_))),
            "s{i} opened a moved bundle"
        );
    }
    let audit = pool.audit().unwrap();
    assert_eq!(audit.sealed(), usize::from(records.len() % 2 == 1));
}

// ---------------------------------------------------------------- keys

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

#[test]
fn keys_wrong_unsafe_missing_from_env_and_after_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| run_credpool(dir.path(), args, "", env);
    // No key: an error that says how to make one; nothing generated.
    let out = run(&["list"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("credpool init"));
    assert!(!dir.path().join("data/credpool.key").exists());
    assert!(run(&["init"], &[]).status.success());
    assert!(
        run(
            &[
                "add", "--site", "a.com", "--type", "session", "--cookie", "a=b"
            ],
            &[]
        )
        .status
        .success()
    );
    // Another key through --key-file, then through the environment.
    let other = dir.path().join("other.key");
    create_key_file(&other).unwrap();
    let out = run(&["list", "--key-file", other.to_str().unwrap()], &[]);
    assert!(
        text(&out.stderr).contains("wrong key"),
        "{}",
        text(&out.stderr)
    );
    let env_key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let out = run(&["list"], &[("CREDENTIAL_ENCRYPTION_KEY", &env_key)]);
    assert!(
        text(&out.stderr).contains("wrong key"),
        "{}",
        text(&out.stderr)
    );
    // A 0644 key file given with --key-file is refused too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = run(&["list", "--key-file", other.to_str().unwrap()], &[]);
        assert!(text(&out.stderr).contains("readable by group or others"));
    }
    // After a rekey, the old key alone is a wrong key.
    let old = std::fs::read_to_string(dir.path().join("data/credpool.key")).unwrap();
    let out = run(&["rekey"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let old_file = dir.path().join("old.key");
    std::fs::write(&old_file, old).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&old_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let out = run(&["list", "--key-file", old_file.to_str().unwrap()], &[]);
    assert!(
        text(&out.stderr).contains("wrong key"),
        "{}",
        text(&out.stderr)
    );
    // The rotated key file is still private and one key long.
    let key_text = std::fs::read_to_string(dir.path().join("data/credpool.key")).unwrap();
    assert_eq!(key_text.lines().filter(|l| l.starts_with("2:")).count(), 1);
    assert_eq!(key_text.lines().filter(|l| l.starts_with("1:")).count(), 0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("data/credpool.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // An environment key cannot be rotated on disk: said plainly.
    let env_dir = tempfile::tempdir().unwrap();
    let out = run_credpool(
        env_dir.path(),
        &["rekey"],
        "",
        &[("CREDENTIAL_ENCRYPTION_KEY", &env_key)],
    );
    std::fs::create_dir_all(env_dir.path().join("data")).unwrap();
    let out2 = run_credpool(
        env_dir.path(),
        &["rekey"],
        "",
        &[("CREDENTIAL_ENCRYPTION_KEY", &env_key)],
    );
    assert_eq!(out2.status.code(), Some(1));
    assert!(
        text(&out2.stderr).contains("cannot rotate"),
        "{} / {}",
        text(&out.stderr),
        text(&out2.stderr)
    );
}

#[test]
fn rekey_moves_every_record_to_the_new_key_and_retires_the_old() {
    let dir = tempfile::tempdir().unwrap();
    create_key_file(&dir.path().join("credpool.key")).unwrap();
    let n = 2000;
    {
        let pool = Pool::open(PoolOptions::on_disk(dir.path())).unwrap();
        for i in 0..n {
            pool.add(session(
                "jd.com",
                &format!("s{i}"),
                &[("sid", &format!("v{i}"))],
            ))
            .unwrap();
        }
        let started = Instant::now();
        let report = pool.rekey(&RekeyOptions::default()).unwrap();
        eprintln!(
            "rekey: {} records re-encrypted in {:?} (pool.rekey {:?})",
            report.rewrapped,
            report.elapsed,
            started.elapsed()
        );
        assert_eq!(report.primary, 2);
        assert_eq!(report.retired, vec![1]);
        assert_eq!(
            report.audit.by_key.keys().copied().collect::<Vec<_>>(),
            vec![2]
        );
        assert!(report.rewrapped >= 2 * n);
        // The pool keeps working on the new key.
        let lease = pool
            .acquire(&AcquireRequest::site("jd.com"))
            .unwrap()
            .lease
            .unwrap();
        assert!(lease.secrets.cookies[0].1.starts_with('v'));
    }
    let pool = Pool::open(PoolOptions::on_disk(dir.path())).unwrap();
    assert_eq!(pool.reveal("s1999").unwrap().1.cookies[0].1, "v1999");
}

#[test]
fn the_data_key_rotates_by_itself_after_its_encryption_budget() {
    let dir = tempfile::tempdir().unwrap();
    create_key_file(&dir.path().join("credpool.key")).unwrap();
    let mut options = PoolOptions::on_disk(dir.path());
    options.rotate_after = 3000;
    let pool = Pool::open(options).unwrap();
    for i in 0..2500 {
        pool.add(session(
            "jd.com",
            &format!("s{i}"),
            &[("sid", &format!("v{i}"))],
        ))
        .unwrap();
    }
    drop(pool);
    let ring = load_keys(&KeySource::File(dir.path().join("credpool.key"))).unwrap();
    // The tenant's data key seals its records, so it is the one that wears
    // and rotates; the server key only wraps data keys.
    assert_eq!(ring.primary_id(), 1);
    let backend: Arc<dyn Backend> = Arc::new(RedbBackend::open(&dir.path().join(DB_FILE)).unwrap());
    let first = credpool::crypto::DATA_KEY_BASE + 1;
    // Encryptions were counted durably, in blocks.
    let used = backend
        .get(&credpool::layout::tenant_uses_key("default", first))
        .unwrap()
        .map(|v| u64::from_be_bytes(v.as_slice().try_into().unwrap()))
        .unwrap_or(0);
    assert!(used >= 3000, "{used} encryptions counted");
    let (keys, _) = tenant_keys::read(&*backend, &ring, "default")
        .unwrap()
        .unwrap();
    assert!(keys.len() >= 2, "no rotation of the data key");
    let audit = rekey::audit(&*backend, &ring).unwrap();
    assert!(audit.unreadable.is_empty());
    assert!(audit.by_data_key["default"].len() >= 2, "{audit:?}");
    // A rekey of the tenant moves the rest and destroys the old data keys.
    let data = tenant_keys::open_or_create(&backend, &ring, "default").unwrap();
    let report =
        tenant_keys::rekey_tenant(&*backend, &ring, &data, "default", &RekeyOptions::default())
            .unwrap();
    assert!(
        report.unreadable.is_empty() && !report.retired.is_empty(),
        "{report:?}"
    );
    let audit = rekey::audit(&*backend, &ring).unwrap();
    assert_eq!(
        audit.by_data_key["default"]
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        vec![report.primary]
    );
    assert_eq!(data.ids(), vec![report.primary]);
}

#[test]
fn personal_metadata_is_not_plain_in_the_database() {
    let dir = tempfile::tempdir().unwrap();
    create_key_file(&dir.path().join("credpool.key")).unwrap();
    let (user, phone, email) = (canary("USER"), canary("PHONE"), canary("MAIL"));
    {
        let pool = Pool::open(PoolOptions::on_disk(dir.path())).unwrap();
        let mut new = NewCredential::new("jd.com", CredentialKind::Account);
        new.username = Some(user.clone());
        new.phone = Some(phone.clone());
        new.email = Some(email.clone());
        new.secrets.password = Some(canary("PW"));
        pool.add(new).unwrap();
        pool.flush().unwrap();
    }
    let raw = std::fs::read(dir.path().join(DB_FILE)).unwrap();
    for v in [&user, &phone, &email] {
        assert_eq!(hits(&raw, v), Vec::<String>::new(), "{v} in plain text");
    }
}

// ---------------------------------------------------------------- canaries

/// Which encodings of `secret` occur in `haystack` (case-insensitively:
/// hex and percent-encoding come in both cases).
fn hits(haystack: &[u8], secret: &str) -> Vec<String> {
    let hay = String::from_utf8_lossy(haystack).to_ascii_lowercase();
    encodings(secret)
        .into_iter()
        .filter(|e| !e.is_empty() && hay.contains(&e.to_ascii_lowercase()))
        .collect()
}

/// A canary with characters that URL-encoding changes.
fn secret(label: &str) -> String {
    format!("{}+/!", canary(label))
}

/// Every log line at the most verbose level, except the compiler's dump of
/// the policy's machine code (cranelift at trace writes gigabytes; it never
/// sees host data).
const TRACE: &str = "trace,cranelift_codegen=info,regalloc2=info,wasmtime_cranelift=info,\
cranelift_frontend=info,wasmtime_internal_cranelift=info,wasmtime_environ=info,\
wasmtime_internal_environ=info";

struct Hunt {
    dir: tempfile::TempDir,
    /// Text that must hold no canary: stderr of every run, stdout of every
    /// run but acquire / --reveal / export.
    scanned: Vec<(String, Vec<u8>)>,
    /// The output that may hold secrets (acquire, reveal, export).
    allowed: Vec<(String, Vec<u8>)>,
}

impl Hunt {
    fn run(&mut self, args: &[&str], stdin: &str, secrets_allowed: bool) -> Output {
        let mut full = vec!["--log-level", TRACE];
        full.extend_from_slice(args);
        let out = run_credpool(self.dir.path(), &full, stdin, &[]);
        let label = args.join(" ");
        self.scanned
            .push((format!("stderr of {label}"), out.stderr.clone()));
        if secrets_allowed {
            self.allowed.push((label, out.stdout.clone()));
        } else {
            self.scanned
                .push((format!("stdout of {label}"), out.stdout.clone()));
        }
        out
    }

    fn file(&self, name: &str, body: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_string()
    }
}

#[test]
fn canaries_of_every_secret_kind_leak_nowhere() {
    let mut h = Hunt {
        dir: tempfile::tempdir().unwrap(),
        scanned: Vec::new(),
        allowed: Vec::new(),
    };
    let pw = secret("PW");
    let cookie = secret("COOKIE");
    let header = secret("HEADER");
    let (at, rt, ak, sk, rc) = (
        secret("AT"),
        secret("RT"),
        secret("AK"),
        secret("SK"),
        secret("RC"),
    );
    let (txt_cookie, json_cookie, bad_cookie, bad_header) = (
        secret("TXT"),
        secret("CJSON"),
        secret("BADCOOKIE"),
        secret("BADHEADER"),
    );
    let canaries = vec![
        pw.clone(),
        cookie.clone(),
        header.clone(),
        at.clone(),
        rt.clone(),
        ak.clone(),
        sk.clone(),
        rc.clone(),
        txt_cookie.clone(),
        json_cookie.clone(),
        bad_cookie.clone(),
        bad_header.clone(),
    ];
    let ok = |o: &Output| {
        assert!(o.status.success(), "{}", text(&o.stderr));
    };
    ok(&h.run(&["init"], "", false));
    // add: password on stdin, cookie and header as flags.
    ok(&h.run(
        &[
            "add",
            "--site",
            "jd.com",
            "--type",
            "account",
            "--id",
            "a1",
            "--username",
            "alice",
            "--password-stdin",
        ],
        &pw,
        false,
    ));
    ok(&h.run(
        &[
            "add",
            "--site",
            "jd.com",
            "--type",
            "session",
            "--id",
            "s1",
            "--cookie",
            &format!("sid={cookie}"),
            "--header",
            &format!("Authorization: Bearer {header}"),
        ],
        "",
        false,
    ));
    // import: our JSON with every other kind, a cookies.txt, a cookie JSON.
    let json = serde_json::json!([{
        "id": "t1", "site": "api.example", "type": "token",
        "secrets": {"access_token": at, "refresh_token": rt, "api_key": ak,
                    "secret_key": sk, "recovery_codes": [rc], "password": pw}
    }]);
    let f = h.file("in.json", &json.to_string());
    ok(&h.run(&["import", &f, "--format", "json"], "", false));
    let f = h.file(
        "c.txt",
        &format!(
            "# Netscape HTTP Cookie File\n#HttpOnly_.jd.com\tTRUE\t/\tFALSE\t0\tpt\t{txt_cookie}\n"
        ),
    );
    ok(&h.run(
        &["import", &f, "--format", "cookies-txt", "--site", "jd.com"],
        "",
        false,
    ));
    let f = h.file(
        "c.json",
        &serde_json::json!([{"name": "x", "value": json_cookie, "domain": ".jd.com", "path": "/"}])
            .to_string(),
    );
    ok(&h.run(&["import", &f, "--format", "cookie-json"], "", false));
    // errors that carry a secret in their input.
    let f = h.file(
        "bad.txt",
        &format!(".jd.com\tMAYBE\t/\tFALSE\t0\tpt\t{bad_cookie}\n.jd.com\tTRUE\t/\tFALSE\t0\tbad name\t{bad_cookie}\n"),
    );
    assert_eq!(
        h.run(&["import", &f, "--format", "cookies-txt"], "", false)
            .status
            .code(),
        Some(1)
    );
    let f = h.file(
        "bad.json",
        &serde_json::json!([{"site": "a", "type": "session", "secrets": {"cookies": {"bad name": bad_cookie}}},
                            {"site": "a", "type": "nope", "secrets": {"password": bad_cookie}},
                            {"site": "a", "type": "session", "secrets": {"password": [bad_cookie]}}])
            .to_string(),
    );
    assert_eq!(
        h.run(&["import", &f, "--format", "json"], "", false)
            .status
            .code(),
        Some(1)
    );
    let f = h.file(
        "broken.json",
        &format!("[{{\"password\": \"{bad_cookie}\" oops"),
    );
    assert_eq!(
        h.run(&["import", &f, "--format", "json"], "", false)
            .status
            .code(),
        Some(1)
    );
    assert_ne!(
        h.run(
            &[
                "add",
                "--site",
                "jd.com",
                "--type",
                "session",
                "--header",
                &format!("Bad Name: {bad_header}")
            ],
            "",
            false
        )
        .status
        .code(),
        Some(0)
    );
    assert_ne!(
        h.run(
            &[
                "add",
                "--site",
                "jd.com",
                "--type",
                "session",
                "--cookie",
                &format!("x={bad_header};")
            ],
            "",
            false
        )
        .status
        .code(),
        Some(0)
    );
    assert_eq!(
        h.run(&["export", "s1", "--format", "json"], "", false)
            .status
            .code(),
        Some(2)
    );
    assert_ne!(
        h.run(&["report", "no-such-lease", "success"], "", false)
            .status
            .code(),
        Some(0)
    );
    // acquire and report, on every credential.
    for site in ["jd.com", "api.example"] {
        for _ in 0..4 {
            let out = h.run(&["acquire", site, "--json"], "", true);
            if !out.status.success() {
                break;
            }
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let lease = v["lease"]["id"].as_str().unwrap().to_string();
            ok(&h.run(
                // A long rest: each acquire then gets another credential,
                // whatever the strategy, so every one is handed out once.
                &["report", &lease, "rate-limited", "--retry-after", "3600"],
                "",
                false,
            ));
        }
    }
    // rekey, stats, list at every level, show, tick.
    ok(&h.run(&["rekey"], "", false));
    ok(&h.run(&["rekey", "--json"], "", false));
    ok(&h.run(&["stats"], "", false));
    ok(&h.run(&["stats", "--json"], "", false));
    for level in ["public", "internal", "sensitive"] {
        ok(&h.run(&["list", "--level", level], "", false));
        ok(&h.run(&["list", "--level", level, "--json"], "", false));
        ok(&h.run(&["show", "s1", "--level", level, "--json"], "", false));
    }
    ok(&h.run(&["tick"], "", false));
    // The explicit reveals: their stdout is the one place secrets may be.
    ok(&h.run(&["show", "t1", "--reveal", "--json"], "", true));
    ok(&h.run(
        &["export", "s1", "--format", "cookies-txt", "--reveal"],
        "",
        true,
    ));
    ok(&h.run(&["export", "t1", "--format", "json", "--reveal"], "", true));

    // The scan: every run's stderr and plain stdout, and the data directory.
    let mut places = h.scanned.clone();
    // Every file under the data directory, subdirectories (the compiled
    // policy cache) included.
    let mut dirs = vec![h.dir.path().join("data")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                places.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut found = Vec::new();
    for (place, bytes) in &places {
        for c in &canaries {
            let h = hits(bytes, c);
            if !h.is_empty() {
                found.push(format!("{c} in {place} as {h:?}"));
            }
        }
    }
    assert_eq!(found, Vec::<String>::new());
    // The logs were at trace level, and the audit lines are there.
    let all_stderr: Vec<u8> = h.scanned.iter().flat_map(|(_, b)| b.clone()).collect();
    let all_stderr = text(&all_stderr);
    assert!(
        all_stderr.contains("TRACE"),
        "the logs were not at trace level"
    );
    assert!(all_stderr.contains("[AUDIT] secrets revealed credential=t1"));
    assert!(all_stderr.contains("[AUDIT] secrets exported credential=s1"));
    // Control: the secrets did go where they should, and the scanner finds
    // them there (so it would have found a leak).
    let allowed: Vec<u8> = h.allowed.iter().flat_map(|(_, b)| b.clone()).collect();
    for c in [
        &pw,
        &cookie,
        &header,
        &at,
        &rt,
        &ak,
        &sk,
        &rc,
        &txt_cookie,
        &json_cookie,
    ] {
        assert!(!hits(&allowed, c).is_empty(), "{c} never handed out");
    }
    for c in [&bad_cookie, &bad_header] {
        assert!(hits(&allowed, c).is_empty(), "a refused secret was stored");
    }
}

#[test]
fn the_scanner_catches_every_encoding_of_a_planted_leak() {
    let c = secret("PLANT");
    let hex: String = c.bytes().map(|b| format!("{b:02x}")).collect();
    let samples = [
        format!("log line: value={c} end"),
        format!("debug {hex}"),
        format!(
            "b64 {}",
            base64::engine::general_purpose::STANDARD.encode(format!("xy{c}z"))
        ),
        format!(
            "b64url {}",
            base64::engine::general_purpose::URL_SAFE.encode(format!("q{c}"))
        ),
        format!(
            "url ?t={}",
            c.replace('+', "%2B")
                .replace('/', "%2F")
                .replace('!', "%21")
        ),
    ];
    for s in &samples {
        assert!(!hits(s.as_bytes(), &c).is_empty(), "missed: {s}");
    }
    assert!(hits(b"nothing here", &c).is_empty());
}

#[test]
fn debug_and_display_of_secret_bearing_types_are_redacted() {
    let (pool, _, events) = support::memory_pool();
    let mut new = NewCredential::new("jd.com", CredentialKind::Account).with_id("a1");
    let values = [
        secret("PW"),
        secret("CK"),
        secret("HV"),
        secret("AT"),
        secret("RT"),
        secret("AK"),
        secret("SK"),
        secret("RC"),
        secret("TOTP"),
    ];
    let s = &mut new.secrets;
    s.password = Some(values[0].clone());
    s.cookies.push(("sid".into(), values[1].clone()));
    s.headers.push(("Authorization".into(), values[2].clone()));
    s.access_token = Some(values[3].clone());
    s.refresh_token = Some(values[4].clone());
    s.api_key = Some(values[5].clone());
    s.secret_key = Some(values[6].clone());
    s.recovery_codes.push(values[7].clone());
    s.totp_seed = Some(values[8].clone());
    let mut printed = vec![format!("{new:?}"), format!("{:?}", new.secrets)];
    pool.add(new.clone()).unwrap();
    let got = pool.acquire(&AcquireRequest::site("jd.com")).unwrap();
    printed.push(format!("{got:?}"));
    printed.push(format!("{:?}", got.lease.as_ref().unwrap()));
    let (view, secrets) = pool.reveal("a1").unwrap();
    printed.push(format!("{view:?} {secrets:?}"));
    printed.push(format!("{:?}", load_keys(&KeySource::Ephemeral).unwrap()));
    let parsed = credpool::transfer::parse(
        credpool::transfer::Format::CookiesTxt,
        &format!(".jd.com\tTRUE\t/\tFALSE\t0\tsid\t{}\nbad\n", values[1]),
        None,
    );
    printed.push(format!("{parsed:?}"));
    for p in &parsed.problems {
        printed.push(p.to_string());
    }
    let err = pool.add(new).unwrap_err();
    printed.push(format!("{err} {err:?}"));
    printed.extend(events.lines());
    let all = printed.join("\n");
    assert!(all.contains("[REDACTED]"));
    for v in &values {
        assert_eq!(hits(all.as_bytes(), v), Vec::<String>::new(), "{v} printed");
    }
    // ...while the lease itself does carry the secrets to the caller.
    assert_eq!(
        got.lease.unwrap().secrets.password.as_deref(),
        Some(values[0].as_str())
    );
}

// ---------------------------------------------------------------- panics

const PANIC_CHILD: &str = "CREDPOOL_PANIC_CHILD";

#[test]
fn panic_child_entry() {
    if let Ok(mode) = std::env::var(PANIC_CHILD) {
        let c = std::env::var("CREDPOOL_PANIC_CANARY").unwrap();
        if mode == "hooked" {
            credpool::cli::install_panic_hook();
        }
        let mut s = credpool::Secrets::default();
        s.password = Some(c.clone());
        // A bug that formats a secret into a panic message.
        let r: Result<(), String> = std::hint::black_box(Err(format!("bad state near {c}")));
        r.unwrap();
    }
}

fn panic_child(mode: &str, c: &str) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "security::panic_child_entry", "--nocapture"])
        .env(PANIC_CHILD, mode)
        .env("CREDPOOL_PANIC_CANARY", c)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

#[test]
fn the_command_s_panic_hook_withholds_runtime_panic_messages() {
    if std::env::var_os(PANIC_CHILD).is_some() {
        return;
    }
    let c = secret("PANIC");
    let hooked = panic_child("hooked", &c);
    assert!(hooked.contains("internal error"), "{hooked}");
    assert_eq!(
        hits(hooked.as_bytes(), &c),
        Vec::<String>::new(),
        "{hooked}"
    );
    // Control: Rust's default hook prints the message, and the scan sees it.
    let plain = panic_child("default", &c);
    assert!(!hits(plain.as_bytes(), &c).is_empty(), "{plain}");
}

#[test]
fn a_store_on_disk_is_redb_in_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    create_key_file(&dir.path().join("credpool.key")).unwrap();
    let pool = Pool::open(PoolOptions::on_disk(dir.path())).unwrap();
    pool.add(session("jd.com", "s1", &[("sid", "x")])).unwrap();
    drop(pool);
    assert!(dir.path().join(DB_FILE).is_file());
    let backend = RedbBackend::open(&dir.path().join(DB_FILE)).unwrap();
    assert!(backend.get("t/default/s/s1").unwrap().is_some());
}

#[test]
fn views_mask_personal_data_below_secret_and_never_hold_values() {
    use credpool::AccessLevel;
    let (pool, _, _) = support::memory_pool();
    let mut new = NewCredential::new("jd.com", CredentialKind::Account).with_id("a1");
    let (user, phone, email) = (canary("USER"), canary("PHONE"), canary("MAIL"));
    new.username = Some(user.clone());
    new.phone = Some(phone.clone());
    new.email = Some(email.clone());
    new.secrets.password = Some(secret("PW"));
    new.secrets.cookies.push(("sid".into(), secret("CK")));
    pool.add(new).unwrap();
    let public = pool.view("a1", AccessLevel::Public).unwrap();
    assert!(public.internal.is_none() && public.sensitive.is_none());
    let internal = pool.view("a1", AccessLevel::Internal).unwrap();
    assert!(internal.internal.is_some() && internal.sensitive.is_none());
    let sensitive = pool.view("a1", AccessLevel::Sensitive).unwrap();
    let s = sensitive.sensitive.unwrap();
    for (masked, full) in [(&s.username, &user), (&s.phone, &phone), (&s.email, &email)] {
        let masked = masked.as_deref().unwrap();
        let shown: String = masked.chars().filter(|c| *c != '*').collect();
        assert!(shown.len() <= 4 && full.ends_with(&shown), "{masked}");
    }
    assert_eq!(s.cookie_names, vec!["sid".to_string()]);
    let secret_level = pool.view("a1", AccessLevel::Secret).unwrap();
    assert_eq!(
        secret_level.sensitive.unwrap().username.as_deref(),
        Some(user.as_str())
    );
}
