//! A `credpool serve` started from the built binary over a test's data
//! directory, and the API tokens it is called with. One harness for every
//! test that needs a live server (serve, TLS, load, the CLI as a client).

use super::http::Client;
use super::{credpool, credpool_bin, ok, run_credpool};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running `credpool serve`, killed when dropped.
pub struct Served {
    child: Option<Child>,
    /// Where it said it serves, and the scheme it said.
    pub addr: SocketAddr,
    pub scheme: String,
    /// Everything it wrote on stderr so far (kept after it ends).
    log: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl Served {
    /// Starts `credpool serve ARGS` on `dir/data` with `dir/credpool.toml`
    /// and waits for its "serving on SCHEME://ADDR" line.
    pub fn start(dir: &Path, args: &[&str]) -> Served {
        Self::try_start(dir, args, None).unwrap_or_else(|log| panic!("serve did not start:\n{log}"))
    }

    /// As [`Served::start`], logging at trace level (what a leak test
    /// searches).
    pub fn start_traced(dir: &Path, args: &[&str]) -> Served {
        Self::try_start(dir, args, Some("trace"))
            .unwrap_or_else(|log| panic!("serve did not start:\n{log}"))
    }

    /// As [`Served::start`]; `Err` with its stderr if it exited instead.
    pub fn try_start(dir: &Path, args: &[&str], log_level: Option<&str>) -> Result<Served, String> {
        Self::try_start_env(dir, args, log_level, &[])
    }

    /// As [`Served::start`] with `env` set for the server.
    pub fn start_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Served {
        Self::try_start_env(dir, args, None, env)
            .unwrap_or_else(|log| panic!("serve did not start:\n{log}"))
    }

    fn try_start_env(
        dir: &Path,
        args: &[&str],
        log_level: Option<&str>,
        env: &[(&str, &str)],
    ) -> Result<Served, String> {
        let mut command = Command::new(credpool_bin());
        command
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--config")
            .arg(dir.join("credpool.toml"))
            .arg("serve")
            .args(args)
            .env_remove("CREDENTIAL_ENCRYPTION_KEY")
            .env_remove("CREDPOOL_LOG")
            .env_remove("CREDPOOL_LISTEN")
            .env_remove("CREDPOOL_ADDR")
            .env_remove("CREDPOOL_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(level) = log_level {
            command.env("CREDPOOL_LOG", level);
        }
        command.envs(env.iter().copied());
        let mut child = command.spawn().expect("start credpool serve");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let stream = child.stderr.take().expect("stderr");
        let sink = log.clone();
        // Drains stderr for as long as the server lives (a full pipe would
        // stall it) and says when the ready line came.
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("credpool: serving on ") {
                    let _ = tx.send(url.trim().to_string());
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        // The first start compiles the policy component (seconds in a
        // debug build on a busy machine).
        match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(url) => {
                let (scheme, addr) = url.split_once("://").expect("scheme://addr");
                Ok(Served {
                    child: Some(child),
                    addr: addr.parse().expect("a socket address"),
                    scheme: scheme.to_string(),
                    log,
                    reader: Some(reader),
                })
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = reader.join();
                Err(log.lock().unwrap().clone())
            }
        }
    }

    /// The address on loopback (for a server listening on 0.0.0.0).
    pub fn loopback(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.addr.port()))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.loopback())
    }

    /// A keep-alive plain-HTTP client calling with `token`.
    pub fn client(&self, token: &str) -> Client {
        Client::new(self.loopback(), Some(token))
    }

    /// Runs the CLI as a client of this server (`CREDPOOL_ADDR`) with `token`.
    pub fn run_cli(&self, dir: &Path, token: &str, args: &[&str], stdin: &str) -> Output {
        run_credpool(
            dir,
            args,
            stdin,
            &[("CREDPOOL_ADDR", &self.url("")), ("CREDPOOL_TOKEN", token)],
        )
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends `signal` and waits (at most a minute) for the process to end.
    pub fn signal(&mut self, signal: rustix::process::Signal) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let pid = rustix::process::Pid::from_child(child);
        rustix::process::kill_process(pid, signal).expect("signal the server");
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                self.child = None;
                // Its stderr is closed: the log is whole once the reader ends.
                if let Some(r) = self.reader.take() {
                    let _ = r.join();
                }
                return status;
            }
            assert!(Instant::now() < until, "the server did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` and returns at once (SIGSTOP, SIGCONT).
    pub fn send(&self, signal: rustix::process::Signal) {
        let child = self.child.as_ref().expect("running");
        let pid = rustix::process::Pid::from_child(child);
        rustix::process::kill_process(pid, signal).expect("signal the server");
    }

    /// SIGTERM, then its exit status and whole stderr.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let status = self.signal(rustix::process::Signal::TERM);
        (status, self.log())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A new API token printed by `credpool token create` for `tenant` and
/// `role` (`extra`: e.g. `--expires 8s`), as an operator makes one.
pub fn token(dir: &Path, tenant: &str, role: &str, extra: &[&str]) -> String {
    let mut args = vec!["token", "create", "--tenant", tenant, "--role", role];
    args.extend_from_slice(extra);
    let t = ok(&credpool(dir, &args)).trim().to_string();
    assert!(t.starts_with("cpt_"), "not a token: {t:?}");
    t
}
