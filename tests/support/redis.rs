//! A `redis-server` of the test's own, on a free loopback port in a
//! temporary directory (Debian's `redis-server` package; `.ci/run`
//! installs it), killed when dropped. No test uses a Redis that happens to
//! be running.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    aof: bool,
    /// TLS only, with this certificate and key.
    tls: Option<(PathBuf, PathBuf)>,
    child: Option<Child>,
}

impl RedisServer {
    /// A Redis keeping nothing on disk.
    pub fn start() -> RedisServer {
        Self::start_with(false)
    }

    /// A Redis with the append-only file on, fsynced at every write: what
    /// it acknowledged survives its own restart.
    pub fn start_durable() -> RedisServer {
        Self::start_with(true)
    }

    /// A Redis speaking only TLS (`rediss://`) with `cert` and `key`.
    pub fn start_tls(cert: &Path, key: &Path) -> RedisServer {
        Self::start_on(false, Some((cert.to_path_buf(), key.to_path_buf())))
    }

    fn start_with(aof: bool) -> RedisServer {
        Self::start_on(aof, None)
    }

    fn start_on(aof: bool, tls: Option<(PathBuf, PathBuf)>) -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut server = RedisServer {
            port,
            dir: tempfile::tempdir().expect("temp dir"),
            aof,
            tls,
            child: None,
        };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The directory Redis keeps its files in (the AOF when on).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts (again) on the same port and directory, and waits until it
    /// answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let aof = if self.aof { "yes" } else { "no" };
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => command.args(["--port", &self.port.to_string()]),
            Some((cert, key)) => command
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .args(["--tls-auth-clients", "no"]),
        };
        let child = command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", aof, "--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (Debian: apt-get install -y redis-server)");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(20);
        while self.cli(&["PING"]).stdout != b"PONG\n" {
            assert!(Instant::now() < until, "redis-server did not answer");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, and waits until the port is closed.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let until = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < until, "redis-server's port stayed open");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis-cli -p PORT --raw ARGS` (over TLS when it speaks only that).
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut command = Command::new("redis-cli");
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "--raw"]);
        if let Some((cert, _)) = &self.tls {
            command.arg("--tls").arg("--cacert").arg(cert);
        }
        command.args(args).output().expect("run redis-cli")
    }

    /// Every key, as `redis-cli --scan` lists them.
    pub fn keys(&self) -> Vec<String> {
        let out = self.cli(&["--scan"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Every file in Redis's directory (its AOF, when on).
    pub fn files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
        out
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
