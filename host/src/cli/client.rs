//! The command as a client of `credpool serve`, as Vault's `VAULT_ADDR`:
//! with `CREDPOOL_ADDR` (or `--addr`) set, the pool commands send their
//! request to the server with `CREDPOOL_TOKEN` instead of opening the
//! store, and print the server's answer exactly as the local command does.
//! API errors become the command's messages and exit codes.

use super::{EXIT_ERROR, Failed};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use std::time::Duration;
use zeroize::Zeroizing;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
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

/// The server at `CREDPOOL_ADDR`.
pub struct Remote {
    /// As the user gave it, for messages.
    addr: String,
    base: Url,
    token: Option<ApiToken>,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

fn failed(msg: impl Into<String>) -> Failed {
    Failed(EXIT_ERROR, msg.into())
}

impl Remote {
    pub fn new(addr: &str, token: Option<&ApiToken>) -> Result<Remote, Failed> {
        let given = addr.trim();
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
                        "CREDPOOL_ADDR {given:?} is not a server address like http://127.0.0.1:8700"
                    ),
                )
            })?;
        let host = base.host_str().unwrap_or_default();
        let loopback = host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if base.scheme() == "http" && !loopback {
            eprintln!(
                "warning: CREDPOOL_ADDR {given} is plain HTTP to another machine: the token \
                 and the secrets of leases cross the network in the clear; use https://"
            );
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("credpool-cli/", env!("CARGO_PKG_VERSION")));
        if loopback {
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
            addr: given.to_string(),
            base,
            token: token.cloned(),
            http,
            rt,
        })
    }

    /// The URL of `segments` (each percent-encoded) with `query`.
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
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
                    self.addr
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
                self.addr
            ))),
            _ => Err(self.refusal(status, retry_after, &bytes, doing)),
        }
    }

    fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<(StatusCode, Option<String>, Vec<u8>), Failed> {
        let mut req = self.http.request(method, self.url(segments, query));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.0.as_str());
        }
        req = match body {
            Body::None => req,
            Body::Json(v) => req.json(v),
            Body::Text(t) => req
                .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(t),
        };
        self.rt.block_on(async {
            let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let bytes = resp.bytes().await.map_err(|e| self.unreachable(&e))?;
            Ok((status, retry_after, bytes.to_vec()))
        })
    }

    /// A transport failure, named by its root cause (no URL, no header).
    fn unreachable(&self, e: &reqwest::Error) -> Failed {
        let mut cause: &dyn std::error::Error = e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        if e.is_connect() {
            failed(format!(
                "no credpool server at {} ({cause}): start one with `credpool serve`, or unset \
                 CREDPOOL_ADDR to use the local store",
                self.addr
            ))
        } else if e.is_timeout() {
            failed(format!(
                "the server at {} did not answer in time",
                self.addr
            ))
        } else {
            failed(format!(
                "the request to the server at {} failed: {cause}",
                self.addr
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
                self.addr
            )),
            StatusCode::UNAUTHORIZED => failed(format!(
                "CREDPOOL_TOKEN is missing or not accepted by the server at {}: {said_text}",
                self.addr
            )),
            StatusCode::FORBIDDEN => {
                failed(format!("the token's role may not {doing}: {said_text}"))
            }
            StatusCode::TOO_MANY_REQUESTS => failed(format!(
                "the server at {} is limiting this token's request rate; retry in {} s",
                self.addr,
                retry_after.as_deref().unwrap_or("a few")
            )),
            // The server's message is the pool's own, as the local command
            // prints it ("no credential with id ...").
            _ => match said {
                Some(m) => failed(m),
                None => failed(format!("the server at {} answered {status}", self.addr)),
            },
        }
    }
}
