//! `credpool bench --http ADDR`: a load generator for a live `credpool
//! serve`. C crawler loops, each on its own keep-alive HTTP/1.1 connection,
//! first call `GET /healthz` for S seconds (the server's floor: routing,
//! HTTP and JSON, no pool), then take and return leases for S seconds
//! (`POST /v1/acquire` then `POST /v1/leases/{id}/report`, or with
//! `--combined` one `report-and-acquire` per pair). It prints pairs a
//! second, p50/p99 latencies of both, and their ratio: the API's cost.
//!
//! Set-up: a tenant with at least C session credentials of `--site` that
//! the token may lease (a crawler or admin token). `--seed N` adds N
//! through the API first (needs an operator or admin token: `--seed-token`,
//! by default `--token`). The server's per-token rate limit must be off or
//! above the load: `credpool serve --rate-limit 0`.

use super::client::ApiToken;
use super::{EXIT_USAGE, Failed};
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The HTTP benchmark's options (with `--http`).
#[derive(Args, Debug)]
pub struct HttpArgs {
    /// Measure a running `credpool serve` at ADDR (host:port or
    /// http://host:port) over HTTP instead of a pool in this process.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// Connections (each one crawler loop, kept alive) for --http.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Seconds each of the two --http phases is measured, after a warm-up
    /// of a quarter of that (at most one second).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// The site whose credentials --http leases.
    #[arg(long, default_value = "bench.example")]
    pub site: String,
    /// First add this many session credentials to --site through the API
    /// (ids bench-000000...; ones already there are kept).
    #[arg(long, value_name = "N")]
    pub seed: Option<usize>,
    /// An operator or admin token for --seed (default: --token).
    #[arg(long, hide_env_values = true)]
    pub seed_token: Option<ApiToken>,
    /// Print the figures as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// One phase's figures.
#[derive(Debug, Serialize)]
pub struct Phase {
    /// Completed in the measured window: requests (healthz) or pairs.
    pub count: u64,
    pub per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// The run's figures.
#[derive(Debug, Serialize)]
pub struct HttpFigures {
    pub addr: String,
    pub concurrency: usize,
    pub seconds: f64,
    /// HTTP requests per pair: 2 (acquire, report) or 1 (report-and-acquire).
    pub calls_per_pair: u32,
    pub healthz: Phase,
    pub pairs: Phase,
    /// Acquires answered "nothing available" (not counted as pairs).
    pub no_available: u64,
    /// Pairs a second over /healthz requests a second.
    pub ratio: f64,
}

/// Runs the HTTP benchmark; `combined` is `bench --combined`.
/// `token` is the global `--token` (CREDPOOL_TOKEN): a crawler or admin
/// token of the tenant to load.
pub fn run(args: &HttpArgs, token: Option<&ApiToken>, combined: bool) -> Result<(), Failed> {
    let settings = Settings::from_args(args, token, combined)?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(|e| Failed(super::EXIT_ERROR, format!("cannot start a runtime: {e}")))?;
    let figures = rt
        .block_on(measure(&settings))
        .map_err(|m| Failed(super::EXIT_ERROR, m))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&figures).expect("figures serialise")
        );
    } else {
        print_text(&figures);
    }
    Ok(())
}

fn print_text(f: &HttpFigures) {
    println!(
        "credpool bench --http {}: {} connections, {} s per phase",
        f.addr, f.concurrency, f.seconds
    );
    println!(
        "  GET /healthz:         {:>9.0} req/s    p50 {:>8.1} us   p99 {:>8.1} us",
        f.healthz.per_sec, f.healthz.p50_us, f.healthz.p99_us
    );
    let what = if f.calls_per_pair == 1 {
        "report-and-acquire:"
    } else {
        "acquire + report:   "
    };
    println!(
        "  {what}  {:>9.0} pairs/s  p50 {:>8.1} us   p99 {:>8.1} us",
        f.pairs.per_sec, f.pairs.p50_us, f.pairs.p99_us
    );
    println!(
        "  ratio (pairs/s over healthz req/s): {:.3}; nothing available {} times",
        f.ratio, f.no_available
    );
}

#[derive(Clone)]
struct Settings {
    addr: SocketAddr,
    /// `Host` header value.
    host: String,
    auth: String,
    seed: Option<(usize, String)>,
    concurrency: usize,
    measure: Duration,
    warmup: Duration,
    site: String,
    combined: bool,
}

impl Settings {
    fn from_args(
        args: &HttpArgs,
        token: Option<&ApiToken>,
        combined: bool,
    ) -> Result<Settings, Failed> {
        let usage = |m: String| Failed(EXIT_USAGE, m);
        let raw = args.http.as_deref().unwrap_or_default();
        if raw.starts_with("https://") {
            return Err(usage(
                "bench --http speaks plain HTTP (run it on the server's machine, against a \
                 loopback listener); give host:port or http://host:port"
                    .into(),
            ));
        }
        let host = raw
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let addr = host
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                usage(format!(
                    "--http {raw:?} is not an address like 127.0.0.1:8700"
                ))
            })?;
        let token = token.map(ApiToken::reveal).ok_or_else(|| {
            usage("--http needs --token (or CREDPOOL_TOKEN): a crawler or admin token".into())
        })?;
        if args.concurrency == 0 || args.concurrency > 10_000 {
            return Err(usage(format!(
                "--concurrency must be between 1 and 10000, not {}",
                args.concurrency
            )));
        }
        if !(args.seconds.is_finite() && args.seconds > 0.0 && args.seconds <= 3600.0) {
            return Err(usage(format!(
                "--seconds must be above 0 and at most 3600, not {}",
                args.seconds
            )));
        }
        let seed = args.seed.map(|n| {
            let t = args.seed_token.as_ref().map_or(token, ApiToken::reveal);
            (n, format!("Bearer {t}"))
        });
        let measure = Duration::from_secs_f64(args.seconds);
        Ok(Settings {
            addr,
            host,
            auth: format!("Bearer {token}"),
            seed,
            concurrency: args.concurrency,
            measure,
            warmup: (measure / 4).min(Duration::from_secs(1)),
            site: args.site.clone(),
            combined,
        })
    }
}

/// One keep-alive connection.
struct Conn {
    send: SendRequest<Full<Bytes>>,
    host: String,
    auth: String,
}

/// An answer: its status and body.
struct Answer {
    status: StatusCode,
    body: Bytes,
}

impl Answer {
    /// The API's error message, for saying why a run stopped.
    fn error(&self, what: &str) -> String {
        #[derive(Deserialize)]
        struct Body {
            error: Inner,
        }
        #[derive(Deserialize)]
        struct Inner {
            code: String,
            message: String,
        }
        let detail = serde_json::from_slice::<Body>(&self.body)
            .map(|b| format!("{}: {}", b.error.code, b.error.message))
            .unwrap_or_else(|_| "no API error in the body".into());
        let hint = match self.status {
            StatusCode::TOO_MANY_REQUESTS => {
                " (the token's rate limit: serve with --rate-limit 0 to benchmark)"
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                " (acquire needs a crawler or admin token, --seed an operator or admin one)"
            }
            _ => "",
        };
        format!("{what} answered {}: {detail}{hint}", self.status)
    }
}

impl Conn {
    async fn open(s: &Settings, auth: &str) -> Result<Conn, String> {
        let tcp = tokio::net::TcpStream::connect(s.addr)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", s.addr))?;
        let _ = tcp.set_nodelay(true);
        let (send, conn) = http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("HTTP handshake with {} failed: {e}", s.addr))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn {
            send,
            host: s.host.clone(),
            auth: auth.to_string(),
        })
    }

    async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Answer, String> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host)
            .header(header::AUTHORIZATION, &self.auth);
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| format!("bad request for {path}: {e}"))?;
        self.send
            .ready()
            .await
            .map_err(|e| format!("the connection closed: {e}"))?;
        let resp = self
            .send
            .send_request(req)
            .await
            .map_err(|e| format!("{path} failed: {e}"))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{path}: reading the answer failed: {e}"))?
            .to_bytes();
        Ok(Answer { status, body })
    }
}

#[derive(Deserialize)]
struct Acquired {
    status: String,
    lease: Option<LeaseRef>,
}

#[derive(Deserialize)]
struct LeaseRef {
    id: String,
}

/// Adds `n` sessions to the site; ones already there (a second run) stay.
async fn seed(s: &Settings, n: usize, auth: &str) -> Result<(), String> {
    let mut conn = Conn::open(s, auth).await?;
    for i in 0..n {
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw).map_err(|e| format!("no randomness: {e}"))?;
        let value: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let body = serde_json::json!({
            "site": s.site,
            "type": "session",
            "id": format!("bench-{i:06}"),
            "secrets": {"cookies": [{"name": "sid", "value": value}]},
        });
        let answer = conn
            .call(Method::POST, "/v1/credentials", Some(body.to_string()))
            .await?;
        if !answer.status.is_success() && answer.status != StatusCode::CONFLICT {
            return Err(answer.error("adding a credential (--seed)"));
        }
    }
    Ok(())
}

/// What one loop saw in a phase.
#[derive(Default)]
struct Tally {
    /// Microseconds of each unit finished in the measured window.
    latencies: Vec<u32>,
    no_available: u64,
}

/// A loop's report outcome: 2% failures that rest nothing, so the pool
/// keeps its size and health stays up (at the in-process bench's 10%,
/// health sinks by 0.1 a use and low-health alerts flood the server's log
/// within seconds, measuring its terminal).
fn outcome(rng: &mut u64) -> &'static str {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    match *rng % 100 {
        0..=97 => "success",
        98 => "network",
        _ => "failed",
    }
}

/// The lease of an acquire answer, or `None` when nothing was available.
fn lease_of(answer: &Answer, what: &str) -> Result<Option<String>, String> {
    if !answer.status.is_success() {
        return Err(answer.error(what));
    }
    let got: Acquired = serde_json::from_slice(&answer.body)
        .map_err(|e| format!("{what} answered something that is not an acquire answer: {e}"))?;
    match (got.status.as_str(), got.lease) {
        ("success", Some(lease)) => Ok(Some(lease.id)),
        _ => Ok(None),
    }
}

/// One crawler loop until `end`: healthz calls, or lease pairs.
async fn crawl(
    s: &Settings,
    healthz: bool,
    seed: u64,
    from: Instant,
    end: Instant,
) -> Result<Tally, String> {
    let mut conn = Conn::open(s, &s.auth).await?;
    let mut tally = Tally::default();
    let mut rng = seed | 1;
    let acquire_body = serde_json::json!({"site": s.site}).to_string();
    let mut held: Option<String> = None;
    loop {
        let start = Instant::now();
        if start >= end {
            break;
        }
        let done = if healthz {
            let a = conn.call(Method::GET, "/healthz", None).await?;
            if !a.status.is_success() {
                return Err(a.error("GET /healthz"));
            }
            true
        } else if s.combined {
            let answer = match held.take() {
                Some(lease) => {
                    let body = format!(
                        r#"{{"report":{{"outcome":"{}"}},"next":{acquire_body}}}"#,
                        outcome(&mut rng)
                    );
                    let path = format!("/v1/leases/{lease}/report-and-acquire");
                    conn.call(Method::POST, &path, Some(body)).await?
                }
                None => {
                    conn.call(Method::POST, "/v1/acquire", Some(acquire_body.clone()))
                        .await?
                }
            };
            held = lease_of(&answer, "report-and-acquire")?;
            held.is_some()
        } else {
            let answer = conn
                .call(Method::POST, "/v1/acquire", Some(acquire_body.clone()))
                .await?;
            match lease_of(&answer, "POST /v1/acquire")? {
                Some(lease) => {
                    let body = format!(r#"{{"outcome":"{}"}}"#, outcome(&mut rng));
                    let path = format!("/v1/leases/{lease}/report");
                    let a = conn.call(Method::POST, &path, Some(body)).await?;
                    if !a.status.is_success() {
                        return Err(a.error("report"));
                    }
                    true
                }
                None => false,
            }
        };
        let finished = Instant::now();
        if !done {
            tally.no_available += 1;
            // Nothing free: another loop holds them all; let it report.
            tokio::time::sleep(Duration::from_millis(1)).await;
        } else if start >= from && finished <= end {
            tally.latencies.push(
                finished
                    .duration_since(start)
                    .as_micros()
                    .min(u32::MAX as u128) as u32,
            );
        }
    }
    // A combined loop hands back the lease it holds.
    if let Some(lease) = held {
        let path = format!("/v1/leases/{lease}/release");
        let _ = conn.call(Method::POST, &path, None).await;
    }
    Ok(tally)
}

/// Runs C loops for warm-up + S seconds and sums what they saw.
async fn phase(s: &Settings, healthz: bool) -> Result<(Phase, u64), String> {
    let from = Instant::now() + s.warmup;
    let end = from + s.measure;
    let mut loops = tokio::task::JoinSet::new();
    for c in 0..s.concurrency {
        let s = s.clone();
        let seed = 0x2545_f491_4f6c_dd1d ^ ((c as u64) << 32);
        loops.spawn(async move { crawl(&s, healthz, seed, from, end).await });
    }
    let mut latencies = Vec::new();
    let mut no_available = 0;
    while let Some(done) = loops.join_next().await {
        let tally = done.map_err(|e| format!("a bench loop failed: {e}"))??;
        latencies.extend(tally.latencies);
        no_available += tally.no_available;
    }
    latencies.sort_unstable();
    let quantile = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(i).map_or(0.0, |&us| us as f64)
    };
    let count = latencies.len() as u64;
    Ok((
        Phase {
            count,
            per_sec: (count as f64 / s.measure.as_secs_f64()).round(),
            p50_us: quantile(0.50),
            p99_us: quantile(0.99),
        },
        no_available,
    ))
}

async fn measure(s: &Settings) -> Result<HttpFigures, String> {
    if let Some((n, auth)) = &s.seed {
        seed(s, *n, auth).await?;
    }
    let (healthz, _) = phase(s, true).await?;
    let (pairs, no_available) = phase(s, false).await?;
    if pairs.count == 0 {
        return Err(format!(
            "no lease was taken in {} s ({no_available} acquires found nothing available): \
             the token's tenant needs session credentials of {} (add them, or pass --seed N)",
            s.measure.as_secs_f64(),
            s.site
        ));
    }
    let ratio = if healthz.per_sec > 0.0 {
        (pairs.per_sec / healthz.per_sec * 1000.0).round() / 1000.0
    } else {
        0.0
    };
    Ok(HttpFigures {
        addr: s.addr.to_string(),
        concurrency: s.concurrency,
        seconds: s.measure.as_secs_f64(),
        calls_per_pair: if s.combined { 1 } else { 2 },
        healthz,
        pairs,
        no_available,
        ratio,
    })
}
