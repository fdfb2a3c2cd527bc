//! The command as a client of `credpool serve`, as Vault's `VAULT_ADDR`:
//! with `CREDPOOL_ADDR` (or `--addr`) set, the pool commands send their
//! request to the server with `CREDPOOL_TOKEN` instead of opening the
//! store, and print the server's answer exactly as the local command does.
//! API errors become the command's messages and exit codes.
//!
//! `CREDPOOL_ADDR` may list several servers of one deployment, separated
//! by commas. A call goes to the server that answered last; when that one
//! refuses the connection, breaks it, times out, or answers 503
//! `no_leader` / `not_leader` (no server leads the tenant just now), it is
//! sent to the next, after a pause that doubles from 50 ms to 2 s (or the
//! answer's `Retry-After`), for up to `--failover-deadline` seconds. Only a
//! call that cannot take effect twice is sent again once a server may have
//! received it: every GET, and report and release (the server answers a
//! repeat with the first effect), also after a 503 `no_leader`. Any other
//! call (acquire, add, import, ...) is sent again only when no server can
//! have received it (the connection was refused): a standby answers
//! `no_leader` also when its forward to the leader was cut, so the call
//! may have been applied.

use super::{EXIT_ERROR, Failed};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use std::cell::Cell;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_secs(2);
/// No server leads the tenant just now.
const NO_LEADER_CODES: [&str; 2] = ["no_leader", "not_leader"];
/// An import of a large file, or a login-heavy acquire, may take a while.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// An API token from `--token` or `CREDPOOL_TOKEN`: never printed.
#[derive(Clone)]
pub struct ApiToken(Zeroizing<String>);

impl std::str::FromStr for ApiToken {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.is_empty() || !t.chars().all(|c| c.is_ascii_graphic()) {
            // The value is not repeated: it is a secret.
            return Err("an API token is printable ASCII without spaces".into());
        }
        Ok(ApiToken(Zeroizing::new(t.to_string())))
    }
}

impl ApiToken {
    /// The token itself, for an `Authorization` header.
    pub fn reveal(&self) -> &str {
        self.0.as_str()
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken([REDACTED])")
    }
}

/// A body to send.
pub enum Body<'a> {
    None,
    Json(&'a Value),
    /// A file's text, as `import` sends it.
    Text(String),
}

/// One server of `CREDPOOL_ADDR`.
struct Server {
    /// As the user gave it, for messages.
    addr: String,
    base: Url,
}

/// The server(s) at `CREDPOOL_ADDR`.
pub struct Remote {
    servers: Vec<Server>,
    /// The server calls start on: the one that answered last.
    current: Cell<usize>,
    failover_deadline: Duration,
    token: Option<ApiToken>,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

/// One attempt's answer, or why there was none.
enum Attempt {
    Answered(StatusCode, Option<String>, Vec<u8>),
    /// No connection was made: nothing reached the server.
    NotSent(reqwest::Error),
    /// The request may have reached the server.
    Broken(reqwest::Error),
}

fn failed(msg: impl Into<String>) -> Failed {
    Failed(EXIT_ERROR, msg.into())
}

/// `given` as a base URL: `http://` when it names no scheme.
fn parse_server(given: &str) -> Result<Server, Failed> {
    let with_scheme = if given.contains("://") {
        given.to_string()
    } else {
        format!("http://{given}")
    };
    let base = Url::parse(&with_scheme)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| {
            Failed(
                super::EXIT_USAGE,
                format!(
                    "CREDPOOL_ADDR {given:?} is not a server address like http://127.0.0.1:8700 \
                     (or several, separated by commas)"
                ),
            )
        })?;
    Ok(Server {
        addr: given.to_string(),
        base,
    })
}

fn is_loopback(url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether the call may be sent again once a server may have received it.
fn idempotent(method: &Method, segments: &[&str]) -> bool {
    *method == Method::GET
        || (*method == Method::POST
            && matches!(segments, ["v1", "leases", _, "report" | "release"]))
}

/// A 503 that says no server leads the tenant (the call may have been
/// applied all the same: a standby's forward cut after sending).
fn no_leader(status: StatusCode, body: &[u8]) -> bool {
    status == StatusCode::SERVICE_UNAVAILABLE
        && serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
            .is_some_and(|c| NO_LEADER_CODES.contains(&c.as_str()))
}

impl Remote {
    /// `addr`: one server, or several separated by commas;
    /// `failover_deadline`: how long one call goes on trying them.
    pub fn new(
        addr: &str,
        token: Option<&ApiToken>,
        failover_deadline: Duration,
    ) -> Result<Remote, Failed> {
        let servers = addr
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(parse_server)
            .collect::<Result<Vec<_>, _>>()?;
        if servers.is_empty() {
            return Err(Failed(
                super::EXIT_USAGE,
                "CREDPOOL_ADDR names no server".into(),
            ));
        }
        for s in servers.iter().filter(|s| s.base.scheme() == "http") {
            if !is_loopback(&s.base) {
                eprintln!(
                    "warning: CREDPOOL_ADDR {} is plain HTTP to another machine: the token \
                     and the secrets of leases cross the network in the clear; use https://",
                    s.addr
                );
            }
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("credpool-cli/", env!("CARGO_PKG_VERSION")));
        if servers.iter().all(|s| is_loopback(&s.base)) {
            // A proxy from the environment has no business with loopback.
            builder = builder.no_proxy();
        }
        let http = builder
            .build()
            .map_err(|e| failed(format!("cannot make an HTTP client: {e}")))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| failed(format!("cannot start the HTTP client's runtime: {e}")))?;
        Ok(Remote {
            servers,
            current: Cell::new(0),
            failover_deadline,
            token: token.cloned(),
            http,
            rt,
        })
    }

    /// The server in use, for messages.
    fn addr(&self) -> &str {
        &self.servers[self.current.get()].addr
    }

    /// The URL of `segments` (each percent-encoded) with `query`.
    fn url(&self, server: &Server, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = server.base.clone();
        {
            let mut path = url.path_segments_mut().expect("http URLs have paths");
            path.pop_if_empty();
            path.extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// Sends one request and returns the JSON answer. `doing` names the
    /// command's action for a refusal ("may not add credentials").
    pub fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Body<'_>,
        doing: &str,
    ) -> Result<Value, Failed> {
        let (status, retry_after, bytes) = self.send(method, segments, query, body)?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|_| {
                failed(format!(
                    "the server at {} answered {status} with a body that is not JSON",
                    self.addr()
                ))
            });
        }
        let said_code = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_string));
        let refused = self.refusal(status, retry_after, &bytes, doing);
        // Under --json the command says the server's own code.
        let code = said_code.unwrap_or_else(|| format!("http_{}", status.as_u16()));
        super::failure::note(&code, &refused.1);
        Err(refused)
    }

    /// A GET whose answer is a file: its bytes (a refusal as for
    /// [`Remote::call`]).
    pub fn download(&self, segments: &[&str], doing: &str) -> Result<Vec<u8>, Failed> {
        let (status, retry_after, bytes) = self.send(Method::GET, segments, &[], Body::None)?;
        if status.is_success() {
            return Ok(bytes);
        }
        let said_code = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_string));
        let refused = self.refusal(status, retry_after, &bytes, doing);
        let code = said_code.unwrap_or_else(|| format!("http_{}", status.as_u16()));
        super::failure::note(&code, &refused.1);
        Err(refused)
    }

    /// As [`Remote::call`], but a refusal whose error code is `keep` is
    /// an answer too: its body is returned (an acquire's 404
    /// `unknown_site` carries the acquire answer).
    pub fn call_keeping(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Body<'_>,
        doing: &str,
        keep: &str,
    ) -> Result<Value, Failed> {
        let (status, retry_after, bytes) = self.send(method, segments, query, body)?;
        let parsed = serde_json::from_slice::<Value>(&bytes).ok();
        match parsed {
            Some(v) if status.is_success() || v["error"]["code"] == keep => Ok(v),
            _ if status.is_success() => Err(failed(format!(
                "the server at {} answered {status} with a body that is not JSON",
                self.addr()
            ))),
            _ => Err(self.refusal(status, retry_after, &bytes, doing)),
        }
    }

    /// The call on the server in use, then on the next ones while they
    /// are down or without a leader (see the module's doc).
    fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<(StatusCode, Option<String>, Vec<u8>), Failed> {
        let started = Instant::now();
        let may_repeat = idempotent(&method, segments);
        let n = self.servers.len();
        let mut failures = 0usize;
        loop {
            let at = self.current.get();
            let retry_after = match self.attempt(&self.servers[at], &method, segments, query, &body)
            {
                Attempt::Answered(status, retry_after, bytes) => {
                    if !(may_repeat && no_leader(status, &bytes)) {
                        return Ok((status, retry_after, bytes));
                    }
                    if started.elapsed() >= self.failover_deadline {
                        return Ok((status, retry_after, bytes));
                    }
                    retry_after
                }
                Attempt::NotSent(_) if started.elapsed() < self.failover_deadline => None,
                Attempt::Broken(_) if may_repeat && started.elapsed() < self.failover_deadline => {
                    None
                }
                Attempt::NotSent(e) | Attempt::Broken(e) => {
                    // The next command starts on another server.
                    self.current.set((at + 1) % n);
                    return Err(self.unreachable(&self.servers[at], &e));
                }
            };
            self.current.set((at + 1) % n);
            failures += 1;
            let rounds = (failures - 1) / n;
            let pause = match retry_after.and_then(|r| r.trim().parse::<u64>().ok()) {
                Some(secs) => Duration::from_secs(secs).min(MAX_PAUSE),
                // A server this call has not tried yet: at once.
                None if rounds == 0 && !failures.is_multiple_of(n) => Duration::ZERO,
                None => (FIRST_PAUSE * 2u32.saturating_pow(rounds.min(16) as u32)).min(MAX_PAUSE),
            };
            let left = self.failover_deadline.saturating_sub(started.elapsed());
            std::thread::sleep(pause.min(left));
        }
    }

    /// One request to `server`.
    fn attempt(
        &self,
        server: &Server,
        method: &Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: &Body<'_>,
    ) -> Attempt {
        let mut req = self
            .http
            .request(method.clone(), self.url(server, segments, query));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.0.as_str());
        }
        req = match body {
            Body::None => req,
            Body::Json(v) => req.json(v),
            Body::Text(t) => req
                .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(t.clone()),
        };
        self.rt.block_on(async {
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) if e.is_connect() => return Attempt::NotSent(e),
                Err(e) => return Attempt::Broken(e),
            };
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            match resp.bytes().await {
                Ok(bytes) => Attempt::Answered(status, retry_after, bytes.to_vec()),
                Err(e) => Attempt::Broken(e),
            }
        })
    }

    /// A transport failure, named by its root cause (no URL, no header).
    fn unreachable(&self, server: &Server, e: &reqwest::Error) -> Failed {
        let mut cause: &dyn std::error::Error = e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        if e.is_connect() {
            failed(format!(
                "no credpool server at {} ({cause}): start one with `credpool serve`, or unset \
                 CREDPOOL_ADDR to use the local store",
                server.addr
            ))
        } else if e.is_timeout() {
            failed(format!(
                "the server at {} did not answer in time",
                server.addr
            ))
        } else {
            failed(format!(
                "the request to the server at {} failed: {cause}",
                server.addr
            ))
        }
    }

    /// A refused request as the command's error.
    fn refusal(
        &self,
        status: StatusCode,
        retry_after: Option<String>,
        body: &[u8],
        doing: &str,
    ) -> Failed {
        let said = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string));
        let said_text = said.clone().unwrap_or_else(|| format!("HTTP {status}"));
        match status {
            StatusCode::UNAUTHORIZED if self.token.is_none() => failed(format!(
                "CREDPOOL_TOKEN is missing or not accepted: the server at {} needs an API token \
                 (set CREDPOOL_TOKEN; the server's operator makes one with `credpool token create`)",
                self.addr()
            )),
            StatusCode::UNAUTHORIZED => failed(format!(
                "CREDPOOL_TOKEN is missing or not accepted by the server at {}: {said_text}",
                self.addr()
            )),
            StatusCode::FORBIDDEN => {
                failed(format!("the token's role may not {doing}: {said_text}"))
            }
            StatusCode::TOO_MANY_REQUESTS => failed(format!(
                "the server at {} is limiting this token's request rate; retry in {} s",
                self.addr(),
                retry_after.as_deref().unwrap_or("a few")
            )),
            // The server's message is the pool's own, as the local command
            // prints it ("no credential with id ...").
            _ => match said {
                Some(m) => failed(m),
                None => failed(format!("the server at {} answered {status}", self.addr())),
            },
        }
    }
}
