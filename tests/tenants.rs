//! Tenants of one server (issue 17 §1, §2): each its own policy component
//! (the built-in one, and the example policy built from
//! `examples/policy-minimal`, loaded by path with its SHA-256), its own
//! limits and its own data key. A token of one tenant reaches nothing of
//! another through any endpoint; the database and the logs hold no trace
//! of either's secrets; a tenant's data key rotates alone; removing a
//! tenant destroys its data key first, so copies of its records stay sealed.

use crate::support::byo::minimal_policy_wasm;
use crate::support::fixtures::encodings;
use crate::support::http::Answer;
use crate::support::server::{Served, token};
use crate::support::{canary, credpool, initialised, json, ok};
use credpool::backend::{Backend, MemoryBackend, RedbBackend, Write};
use credpool::crypto::{DATA_KEY_BASE, KeySource, load_keys, sealed_key_id};
use credpool::pool::{DB_FILE, Storage};
use credpool::rekey::{self, RekeyOptions};
use credpool::secrets::Secrets;
use credpool::tenant_keys::{self, StoreRings};
use credpool::vault::Vault;
use credpool::{Pool, PoolOptions};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

fn start(dir: &Path) -> Served {
    Served::start_traced(dir, &["--listen", "127.0.0.1:0", "--interval-ms", "100"])
}

fn expect(a: &Answer, status: u16) -> Value {
    assert_eq!(a.status, status, "{}", a.text());
    if a.body.is_empty() {
        Value::Null
    } else {
        a.json()
    }
}

fn session(site: &str, id: &str, cookie: &str) -> Value {
    json!({"site": site, "type": "session", "id": id, "max_concurrent": 1,
           "secrets": {"cookies": [{"name": "sid", "value": cookie}]}})
}

fn ids(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .filter_map(|v| v["id"].as_str().map(str::to_string))
        .collect()
}

fn cookie_of(revealed: &Value) -> String {
    revealed["secrets"]["cookies"][0]["value"]
        .as_str()
        .unwrap_or_else(|| panic!("no cookie in {revealed}"))
        .to_string()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `alpha` runs the built-in policy, `beta` the example policy from its
/// own file, SHA-256 checked.
fn two_tenants(d: &Path) {
    let wasm = std::fs::read(minimal_policy_wasm()).expect("the example policy");
    std::fs::create_dir_all(d.join("policies")).unwrap();
    std::fs::write(d.join("policies/minimal.wasm"), &wasm).unwrap();
    let config = format!(
        "[tenants.alpha]\n[tenants.alpha.policy]\nban_after_blocks = 1\n\
         [tenants.alpha.limits]\nmemory_mb = 128\ncall_deadline_ms = 5000\n\n\
         [tenants.beta]\ncomponent = \"policies/minimal.wasm\"\ncomponent_sha256 = \"{}\"\n\
         [tenants.beta.limits]\nmemory_mb = 64\n",
        sha256_hex(&wasm)
    );
    std::fs::write(d.join("credpool.toml"), config).unwrap();
}

#[test]
fn two_tenants_with_their_own_components_reach_only_their_own_and_leave_no_trace() {
    let dir = initialised();
    let d = dir.path();
    two_tenants(d);
    let a_admin = token(d, "alpha", "admin", &[]);
    let b_admin = token(d, "beta", "admin", &[]);
    let a_crawl = token(d, "alpha", "crawler", &[]);
    let b_crawl = token(d, "beta", "crawler", &[]);
    let server = start(d);
    let (mut a, mut b) = (server.client(&a_admin), server.client(&b_admin));
    let (mut ac, mut bc) = (server.client(&a_crawl), server.client(&b_crawl));
    let (ca, cb, ca2, cb2) = (
        canary("ALPHA"),
        canary("BETA"),
        canary("ALPHA2"),
        canary("BETA2"),
    );
    expect(
        &a.post("/v1/credentials", &session("a.test", "a1", &ca)),
        201,
    );
    expect(
        &b.post("/v1/credentials", &session("b.test", "b1", &cb)),
        201,
    );
    // The same id in both tenants: two credentials, each its own secret.
    expect(
        &a.post("/v1/credentials", &session("same.test", "s1", &ca2)),
        201,
    );
    expect(
        &b.post("/v1/credentials", &session("same.test", "s1", &cb2)),
        201,
    );

    // Each sees only its own.
    assert_eq!(
        ids(&expect(&a.get("/v1/credentials"), 200)),
        ["a1", "s1"].map(String::from).into()
    );
    assert_eq!(
        ids(&expect(&b.get("/v1/credentials"), 200)),
        ["b1", "s1"].map(String::from).into()
    );
    assert_eq!(
        cookie_of(&expect(&a.get("/v1/credentials/s1/reveal"), 200)),
        ca2
    );
    assert_eq!(
        cookie_of(&expect(&b.get("/v1/credentials/s1/reveal"), 200)),
        cb2
    );

    // Every route that takes an id, with A's token and B's id: not found.
    for (method, path) in [
        ("GET", "/v1/credentials/b1"),
        ("GET", "/v1/credentials/b1/reveal"),
        ("GET", "/v1/credentials/b1/export?format=json"),
        ("POST", "/v1/credentials/b1/unban"),
        ("POST", "/v1/credentials/b1/reset-challenge"),
        ("DELETE", "/v1/credentials/b1"),
    ] {
        let got = a.send(method, path, (method == "POST").then_some(b"{}".as_slice()));
        assert_eq!(got.status, 404, "{method} {path}: {}", got.text());
        assert!(!got.text().contains(&cb), "{method} {path} leaked");
    }
    assert_eq!(
        cookie_of(&expect(&b.get("/v1/credentials/b1/reveal"), 200)),
        cb
    );
    // Nothing of B's sites is A's to acquire.
    let got = expect(&ac.post("/v1/acquire", &json!({"site": "b.test"})), 404);
    assert_eq!(got["reason"], "unknown-site", "{got}");
    // B's lease: A can neither report nor release it; B still can.
    let leased = expect(&bc.post("/v1/acquire", &json!({"site": "b.test"})), 200);
    let lease = leased["lease"]["id"].as_str().expect("a lease").to_string();
    for path in [
        format!("/v1/leases/{lease}/report"),
        format!("/v1/leases/{lease}/release"),
    ] {
        let got = ac.post(&path, &json!({"outcome": "blocked"}));
        assert!(got.status >= 400, "{path}: {}", got.text());
        assert!(!got.text().contains(&cb), "{path} leaked");
    }
    expect(
        &bc.post(
            &format!("/v1/leases/{lease}/report"),
            &json!({"outcome": "success"}),
        ),
        200,
    );
    // Stats: A's own sites only; B's stats know nothing of A's site.
    let stats = expect(&a.get("/v1/stats"), 200);
    let sites: BTreeSet<&str> = stats
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["site"].as_str())
        .collect();
    assert_eq!(sites, ["a.test", "same.test"].into(), "{stats}");
    expect(&b.get("/v1/stats?site=a.test"), 404);
    // Import with B's id makes A's own credential and leaves B's alone.
    let file = json!([session("b.test", "b1", "imported-by-a")]).to_string();
    expect(
        &a.send(
            "POST",
            "/v1/credentials/import?format=json",
            Some(file.as_bytes()),
        ),
        200,
    );
    assert_eq!(
        cookie_of(&expect(&b.get("/v1/credentials/b1/reveal"), 200)),
        cb
    );
    assert_eq!(
        cookie_of(&expect(&a.get("/v1/credentials/b1/reveal"), 200)),
        "imported-by-a"
    );
    // Alerts, tickets, audit, tokens, metrics: A's own only.
    for path in ["/v1/alerts", "/v1/tickets", "/v1/audit", "/v1/tokens"] {
        let text = expect(&a.get(path), 200).to_string();
        assert!(!text.contains("beta"), "{path} shows tenant beta: {text}");
        assert!(!text.contains(&cb) && !text.contains(&cb2), "{path} leaked");
    }
    let b_tokens = expect(&b.get("/v1/tokens"), 200);
    let b_token_id = b_tokens[0]["id"].as_str().expect("a token id").to_string();
    assert_eq!(a.delete(&format!("/v1/tokens/{b_token_id}")).status, 404);
    assert_eq!(
        a.post("/v1/tickets/t-of-beta/answer", &json!({"code": "1"}))
            .status,
        404
    );
    assert_eq!(
        a.get("/v1/backup").status,
        403,
        "a backup holds every tenant"
    );
    let metrics = a.get("/metrics").text();
    assert!(metrics.contains("tenant=\"alpha\""), "{metrics}");
    assert!(
        !metrics.contains("tenant=\"beta\""),
        "A's metrics show beta"
    );
    // B's token against A's ids, once: the same walls the other way.
    assert_eq!(b.get("/v1/credentials/a1").status, 404);
    assert_eq!(b.get("/v1/credentials/a1/reveal").status, 404);

    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("tenant beta opened"), "{log}");
    // No trace of any secret, in any encoding, in the database or the log.
    let db = std::fs::read(d.join("data").join(DB_FILE)).unwrap();
    for secret in [&ca, &cb, &ca2, &cb2] {
        for form in encodings(secret) {
            assert!(
                !db.windows(form.len()).any(|w| w == form.as_bytes()),
                "a secret is in the database file"
            );
            assert!(!log.contains(&form), "a secret is in the server's log");
        }
    }
    // Each tenant's records are under its own data key.
    let ring = load_keys(&KeySource::File(d.join("data/credpool.key"))).unwrap();
    let backend = RedbBackend::open(&d.join("data").join(DB_FILE)).unwrap();
    let audit = rekey::audit(&backend, &ring).unwrap();
    assert!(audit.unreadable.is_empty(), "{audit:?}");
    assert!(audit.by_data_key.contains_key("alpha") && audit.by_data_key.contains_key("beta"));
    let (ka, _) = tenant_keys::read(&backend, &ring, "alpha")
        .unwrap()
        .unwrap();
    let (kb, _) = tenant_keys::read(&backend, &ring, "beta").unwrap().unwrap();
    assert_ne!(*ka[0].1, *kb[0].1, "two tenants share a data key");
}

#[test]
fn a_component_whose_sha256_differs_is_refused_at_start_with_both_hashes() {
    let dir = initialised();
    let d = dir.path();
    std::fs::create_dir_all(d.join("policies")).unwrap();
    std::fs::write(d.join("policies/evil.wasm"), b"not the reviewed policy").unwrap();
    let expected = "ab".repeat(32);
    std::fs::write(
        d.join("credpool.toml"),
        format!(
            "[tenants.gamma]\ncomponent = \"policies/evil.wasm\"\ncomponent_sha256 = \"{expected}\"\n"
        ),
    )
    .unwrap();
    let log = Served::try_start(d, &["--listen", "127.0.0.1:0"], None)
        .err()
        .expect("the server started with a component of the wrong hash");
    let actual = sha256_hex(b"not the reviewed policy");
    for part in ["tenant gamma", "evil.wasm", &expected, &actual] {
        assert!(
            log.contains(part),
            "the refusal does not say {part:?}: {log}"
        );
    }
    // A key the table does not know is named with its line.
    std::fs::write(
        d.join("credpool.toml"),
        "[tenants.gamma]\n[tenants.gamma.limits]\nmemory = 3\n",
    )
    .unwrap();
    let out = credpool(d, &["serve", "--listen", "127.0.0.1:0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("line 3") && err.contains("memory"),
        "{err}"
    );
}

#[test]
fn removing_a_tenant_destroys_its_data_key_so_copies_of_its_records_stay_sealed() {
    let dir = initialised();
    let d = dir.path();
    std::fs::write(d.join("credpool.toml"), "[tenants.alpha]\n[tenants.beta]\n").unwrap();
    let a_admin = token(d, "alpha", "admin", &[]);
    let b_admin = token(d, "beta", "admin", &[]);
    let (ca, cb) = (canary("ALPHA"), canary("BETA"));
    let server = start(d);
    let (mut a, mut b) = (server.client(&a_admin), server.client(&b_admin));
    for i in 0..20 {
        expect(
            &a.post("/v1/credentials", &session("a.test", &format!("a{i}"), &ca)),
            201,
        );
        expect(
            &b.post("/v1/credentials", &session("b.test", &format!("b{i}"), &cb)),
            201,
        );
    }
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    // B's data key rotates alone: its records move, A's stay as they are.
    let before_a = raw(d, "t/alpha/s/");
    let server = start(d);
    let mut b = server.client(&b_admin);
    let rotated = expect(&b.post("/v1/tenant/rekey", &json!({})), 200);
    assert!(rotated["rewrapped"].as_u64().unwrap() >= 40, "{rotated}");
    assert_eq!(rotated["retired"], json!([DATA_KEY_BASE + 1]), "{rotated}");
    assert_eq!(
        cookie_of(&expect(&b.get("/v1/credentials/b7/reveal"), 200)),
        cb
    );
    let (_, log) = server.stop();
    assert_eq!(
        raw(d, "t/alpha/s/"),
        before_a,
        "A's records changed with B's rekey"
    );
    // A copy of B's sealed records, taken before the removal.
    let copy = raw(d, "t/beta/");
    assert!(copy.len() >= 40);
    assert!(!log.contains(&cb));

    let server = start(d);
    let mut b = server.client(&b_admin);
    let refused = b.delete("/v1/tenant");
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (400, "confirmation_required")
    );
    assert_eq!(
        server
            .client(&a_admin)
            .delete("/v1/tenant?confirm=beta")
            .status,
        400
    );
    let removed = expect(&b.delete("/v1/tenant?confirm=beta"), 200);
    assert_eq!(removed["data_key_destroyed"], true);
    assert_eq!(removed["records_deleted"].as_u64(), Some(copy.len() as u64));
    assert_eq!(removed["tokens_revoked"], 1);
    assert_eq!(server.client(&b_admin).get("/v1/stats").status, 401);
    let mut a = server.client(&a_admin);
    assert_eq!(
        cookie_of(&expect(&a.get("/v1/credentials/a3/reveal"), 200)),
        ca
    );
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    assert!(raw(d, "t/beta/").is_empty(), "B's records are still there");

    // The copy put back: sealed bytes nothing opens. A's open as before.
    {
        let backend = RedbBackend::open(&d.join("data").join(DB_FILE)).unwrap();
        let puts: Vec<Write> = copy
            .iter()
            .map(|(k, v)| Write::Put(k.clone(), v.clone()))
            .collect();
        backend.apply(&puts).unwrap();
        let ring = load_keys(&KeySource::File(d.join("data/credpool.key"))).unwrap();
        let mut rings = StoreRings::new(&ring);
        for (k, v) in &copy {
            assert!(
                rings.open_record(&backend, k, v).is_err(),
                "{k} opened after its tenant's data key was destroyed"
            );
        }
        for (k, v) in raw_of(&backend, "t/alpha/") {
            assert!(
                rings.open_record(&backend, &k, &v).is_ok(),
                "{k} of alpha does not open"
            );
        }
    }
    let out = credpool(d, &["check", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("check's JSON");
    assert_eq!(report["ok"], false, "{report}");
    let damaged = report["damaged"].as_array().unwrap();
    assert_eq!(damaged.len(), copy.len(), "{report}");
    for item in damaged {
        assert!(
            item["key"].as_str().unwrap().starts_with("t/beta/"),
            "{item}"
        );
        assert!(
            item["reason"].as_str().unwrap().contains("destroyed"),
            "{item}"
        );
    }
    // The CLI removes what is left (without the server), asking first.
    let out = credpool(d, &["tenant", "remove", "beta"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let removed = json(&credpool(
        d,
        &["tenant", "remove", "beta", "--yes", "--json"],
    ));
    assert_eq!(removed["records_deleted"].as_u64(), Some(copy.len() as u64));
    ok(&credpool(d, &["check"]));
}

fn raw(d: &Path, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let backend = RedbBackend::open(&d.join("data").join(DB_FILE)).unwrap();
    raw_of(&backend, prefix)
}

fn raw_of(backend: &dyn Backend, prefix: &str) -> Vec<(String, Vec<u8>)> {
    backend.scan(prefix, None, usize::MAX).unwrap()
}

#[test]
fn a_store_from_before_data_keys_keeps_opening_and_a_rekey_moves_it_under_one() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("credpool.key");
    credpool::crypto::create_key_file(&key_file).unwrap();
    let server = Arc::new(load_keys(&KeySource::File(key_file.clone())).unwrap());
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    rekey::verify_key(&*backend, &server).unwrap();
    // Written as before data keys: sealed with the server key itself.
    let legacy = Vault::new(backend.clone(), server.clone(), "old");
    let mut secrets = Secrets::default();
    secrets.password = Some("legacy-password".into());
    legacy.put_secrets("x.test", "l1", &secrets).unwrap();
    let stored = legacy.secrets_raw("l1").unwrap().unwrap();
    let (site, _) = credpool::layout::open_envelope(&stored).unwrap();
    assert!(sealed_key_id(site).unwrap() < DATA_KEY_BASE);
    // The tenant gets a data key on open; the old record still opens.
    let data = tenant_keys::open_or_create(&backend, &server, "old").unwrap();
    let vault = Vault::with_data_keys(backend.clone(), data.clone(), server.clone(), "old");
    let got = vault.get_secrets("x.test", "l1").unwrap().unwrap();
    assert_eq!(got.password.as_deref(), Some("legacy-password"));
    // Its rekey moves it under the data key: the server key alone no
    // longer opens it, the tenant's vault does.
    let report =
        tenant_keys::rekey_tenant(&*backend, &server, &data, "old", &RekeyOptions::default())
            .unwrap();
    assert_eq!(report.rewrapped, 1, "{report:?}");
    assert!(legacy.get_secrets("x.test", "l1").is_err());
    let got = vault.get_secrets("x.test", "l1").unwrap().unwrap();
    assert_eq!(got.password.as_deref(), Some("legacy-password"));
    // Pools on one store: a tenant's rotation reads and writes nothing of
    // the other's.
    let pool = |tenant: &str| {
        let mut o = PoolOptions::in_memory();
        o.storage = Storage::Shared(backend.clone());
        o.key = KeySource::File(key_file.clone());
        o.tenant = tenant.into();
        Pool::open(o).unwrap()
    };
    let (p, q) = (pool("p"), pool("q"));
    for i in 0..50 {
        p.add(crate::support::session(
            "p.test",
            &format!("p{i}"),
            &[("sid", "pv")],
        ))
        .unwrap();
        q.add(crate::support::session(
            "q.test",
            &format!("q{i}"),
            &[("sid", "qv")],
        ))
        .unwrap();
    }
    p.flush().unwrap();
    q.flush().unwrap();
    let q_before = raw_of(&*backend, "t/q/");
    let report = p.rekey_tenant(&RekeyOptions::default()).unwrap();
    assert!(report.rewrapped >= 100, "{report:?}");
    assert_eq!(raw_of(&*backend, "t/q/"), q_before);
    assert_eq!(p.reveal("p7").unwrap().1.cookies[0].1, "pv");
    assert_eq!(q.reveal("q7").unwrap().1.cookies[0].1, "qv");
    for (k, v) in raw_of(&*backend, "t/p/p/") {
        assert_eq!(sealed_key_id(&v), Some(report.primary), "{k}");
    }
}
