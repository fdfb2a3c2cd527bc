//! `credpool serve` over HTTPS (rustls), and who may listen where: the
//! built binary serves a self-signed certificate made here for 127.0.0.1,
//! and a client trusting only that certificate calls it. A non-loopback
//! address without TLS is refused unless `--insecure-http` is given; bad
//! certificate and key files are named, never a panic.

use crate::support::server::{Served, token};
use crate::support::{credpool, initialised, stderr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A self-signed certificate for 127.0.0.1 (and its key), PEM, written as
/// `dir/NAME.crt` and `dir/NAME.key`.
fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf, String) {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
        .expect("self-signed certificate");
    let cert_pem = made.cert.pem();
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (cert, key, cert_pem)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A client that trusts this certificate and nothing else.
fn trusting(cert_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .https_only(true)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[test]
fn https_serves_health_and_an_authenticated_call_with_the_given_certificate() {
    let dir = initialised();
    let viewer = token(dir.path(), "default", "viewer", &[]);
    let (cert, key, cert_pem) = certificate(dir.path(), "server");
    let served = Served::start(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(served.scheme, "https", "{}", served.log());
    let client = trusting(&cert_pem);
    runtime().block_on(async {
        let health = client.get(served.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        assert_eq!(health.version(), reqwest::Version::HTTP_11);
        let body: serde_json::Value = health.json().await.unwrap();
        assert_eq!(body["status"], "alive");

        let stats = client
            .get(served.url("/v1/stats"))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap();
        assert_eq!(stats.status(), 200);
        let stats: serde_json::Value = stats.json().await.unwrap();
        assert!(stats.is_array(), "{stats}");

        let anonymous = client.get(served.url("/v1/stats")).send().await.unwrap();
        assert_eq!(anonymous.status(), 401);

        // A client that does not trust the certificate gets no answer.
        let stranger = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let refused = stranger.get(served.url("/healthz")).send().await;
        assert!(refused.is_err(), "an untrusted certificate was accepted");

        // Plain HTTP on the TLS port is not answered in the clear.
        let plain = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let clear = plain
            .get(format!("http://{}/healthz", served.loopback()))
            .send()
            .await;
        assert!(
            clear.as_ref().map_or(true, |r| !r.status().is_success()),
            "plain HTTP was answered on the TLS port: {clear:?}"
        );
    });
    // SIGTERM: the HTTPS path stops as the plain one does, flushing.
    let (status, log) = served.stop();
    assert!(status.success(), "{status:?}\n{log}");
    assert!(log.contains("credpool: stopped;"), "{log}");
    assert!(!log.contains(&viewer), "the token reached the log:\n{log}");
}

#[test]
fn bad_certificate_and_key_files_are_named_and_nothing_panics() {
    let dir = initialised();
    let (cert, key, _) = certificate(dir.path(), "good");
    let (_, other_key, _) = certificate(dir.path(), "other");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not PEM\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let serve = |cert: &Path, key: &Path| {
        credpool(
            dir.path(),
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                cert.to_str().unwrap(),
                "--tls-key",
                key.to_str().unwrap(),
            ],
        )
    };
    let cases: [(&Path, &Path, &Path, &str); 5] = [
        (
            &missing,
            &key,
            &missing,
            "cannot read the TLS certificate file",
        ),
        (&cert, &missing, &missing, "cannot read the TLS key file"),
        (&garbage, &key, &garbage, "holds no certificate"),
        // A certificate where the key should be: no private key in it.
        (&cert, &cert, &cert, "holds no private key"),
        (
            &cert,
            &other_key,
            &other_key,
            "does not fit the certificate",
        ),
    ];
    for (cert, key, named, says) in cases {
        let out = serve(cert, key);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(says), "expected {says:?}:\n{err}");
        assert!(
            err.contains(&named.display().to_string()),
            "the file is not named:\n{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(!err.contains("serving on"), "{err}");
    }
    // The key's bytes never reach the message.
    let key_pem = std::fs::read_to_string(&other_key).unwrap();
    let body_line = key_pem.lines().nth(1).unwrap();
    let err = stderr(&serve(&cert, &other_key));
    assert!(!err.contains(body_line), "{err}");

    // One of the pair alone is a usage error.
    let out = credpool(
        dir.path(),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--tls-key"), "{}", stderr(&out));
}

#[test]
fn a_non_loopback_address_needs_tls_or_an_explicit_insecure_http() {
    let dir = initialised();
    let out = credpool(dir.path(), &["serve", "--listen", "0.0.0.0:0"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refusing to serve plain HTTP on 0.0.0.0:0")
            && err.contains("--tls-cert")
            && err.contains("--insecure-http"),
        "{err}"
    );
    assert!(!err.contains("serving on"), "{err}");

    let served = Served::start(dir.path(), &["--listen", "0.0.0.0:0", "--insecure-http"]);
    assert_eq!(served.scheme, "http");
    assert!(
        served
            .log()
            .contains("WARNING: serving plain HTTP on 0.0.0.0:0, which is not loopback"),
        "{}",
        served.log()
    );
    let health =
        runtime().block_on(async { reqwest::get(served.url("/healthz")).await.unwrap().status() });
    assert_eq!(health, 200);
    let (status, log) = served.stop();
    assert!(status.success(), "{log}");

    // TLS and --insecure-http together make no sense.
    let (cert, key, _) = certificate(dir.path(), "server");
    let out = credpool(
        dir.path(),
        &[
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--insecure-http",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
