//! `credpool serve`: one pool for a crawl fleet over HTTP/1.1 JSON. The
//! server owns the store, runs the lifecycle loop `credpool run` runs, and
//! answers crawlers in any language. Each tenant has its own [`Pool`]
//! (its own policy instance and key prefix) on one shared backend; the API
//! token picks the tenant.
//!
//! Routes are in one file per area: `leases`, `credentials`, `admin`
//! (stats, alerts, tickets, tokens), `metrics`; `auth` checks tokens and
//! rate-limits them; `tls` serves HTTPS.
//!
//! Several servers over one Redis (`--advertise`): `leadership` elects one
//! server per tenant with a fenced lock, `forward` sends a request to the
//! tenant's leader, `closed` keeps the answers of closed leases so a
//! repeated report or release gets the same answer.

mod admin;
pub mod alerts;
pub mod auth;
mod backup;
mod closed;
mod credentials;
pub mod errors;
mod forward;
pub mod leadership;
mod leases;
mod lifecycle;
mod metrics;
mod tenants;
pub mod tls;

use crate::config::ConfigFile;
use crate::pool::PoolOptions;
use auth::TokenBook;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use errors::{ApiError, ApiResult};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tenants::Tenants;

/// How to serve.
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub config: ConfigFile,
    /// The options of the configured tenant's pool; other tenants differ
    /// only in their name.
    pub pool: PoolOptions,
    /// Between lifecycle ticks.
    pub interval: Duration,
    /// HTTPS with this certificate and key; `None` is plain HTTP.
    pub tls: Option<tls::TlsFiles>,
    /// Plain HTTP on an address that is not loopback, asked for explicitly.
    pub insecure_http: bool,
    /// Requests a second per token (0: no limit), and the burst allowed
    /// above that pace.
    pub rate_limit: u32,
    pub rate_burst: u32,
    /// Largest request body, bytes.
    pub max_body: usize,
    /// Several servers over one Redis: this server's URL as the others
    /// reach it (turns on leadership, fencing and forwarding).
    pub advertise: Option<String>,
    /// The leadership lock's TTL.
    pub lock_ttl: Duration,
}

/// What every handler shares.
pub struct AppState {
    pub tokens: TokenBook,
    /// Reveals and exports, whatever the log level.
    pub audit: crate::audit::AuditLog,
    pub tenants: Tenants,
    pub metrics: metrics::Metrics,
    pub max_body: usize,
    pub ready: AtomicBool,
    /// Answers of closed leases, for a repeated report or release.
    pub closed: closed::ClosedBook,
}

pub type Shared = Arc<AppState>;

/// Runs a pool call that may write to disk off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request's worker failed",
        )
    })?
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/healthz", get(admin::healthz))
        .route("/readyz", get(admin::readyz))
        .route("/metrics", get(metrics::scrape))
        .route("/v1/health", get(leadership::health))
        .route("/v1/acquire", post(leases::acquire))
        .route("/v1/leases/{id}/report", post(leases::report))
        .route("/v1/leases/{id}/release", post(leases::release))
        .route(
            "/v1/leases/{id}/report-and-acquire",
            post(leases::report_and_acquire),
        )
        .route(
            "/v1/credentials",
            get(credentials::list).post(credentials::add),
        )
        .route("/v1/credentials/import", post(credentials::import))
        .route(
            "/v1/credentials/{id}",
            get(credentials::show).delete(credentials::remove),
        )
        .route("/v1/credentials/{id}/reveal", get(credentials::reveal))
        .route("/v1/credentials/{id}/export", get(credentials::export))
        .route("/v1/credentials/{id}/unban", post(credentials::unban))
        .route(
            "/v1/credentials/{id}/reset-challenge",
            post(credentials::reset_challenge),
        )
        .route("/v1/backup", get(backup::backup))
        .route("/v1/stats", get(admin::stats))
        .route("/v1/alerts", get(admin::alerts))
        .route("/v1/audit", get(admin::audit))
        .route("/v1/tickets", get(admin::tickets))
        .route("/v1/tickets/{id}/answer", post(admin::answer))
        .route("/v1/tokens", get(admin::tokens).post(admin::create_token))
        .route(
            "/v1/tokens/{id}",
            axum::routing::delete(admin::revoke_token),
        )
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            forward::route,
        ))
        .with_state(state)
}

/// Serves until SIGINT or SIGTERM: then stops accepting, finishes the
/// calls in flight, stops the lifecycle and flushes every tenant's pool.
pub fn serve(options: ServeOptions) -> Result<(), String> {
    let tls = options.tls.as_ref().map(tls::load).transpose()?;
    if tls.is_none() && !options.listen.ip().is_loopback() {
        if !options.insecure_http {
            return Err(format!(
                "refusing to serve plain HTTP on {}, which is not a loopback address: API tokens \
                 and leased secrets would cross the network in the clear. Give --tls-cert and \
                 --tls-key (PEM files) to serve HTTPS, or --insecure-http if something in front \
                 (a TLS proxy, a private link) protects the traffic",
                options.listen
            ));
        }
        let warning = format!(
            "WARNING: serving plain HTTP on {}, which is not loopback (--insecure-http): API \
             tokens and leased secrets cross the network unencrypted",
            options.listen
        );
        eprintln!("credpool: {warning}");
        tracing::warn!(target: "credpool::serve", "{warning}");
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the server's runtime: {e}"))?;
    rt.block_on(run(options, tls))
}

async fn run(
    options: ServeOptions,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
) -> Result<(), String> {
    // Bind first: a taken port is said before the store is opened.
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", options.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let tokens = TokenBook::open(&options.data_dir, options.rate_limit, options.rate_burst)?;
    let lead = tokio::task::block_in_place(|| leadership_of(&options))?;
    let tenants = tokio::task::block_in_place(|| {
        Tenants::open(
            &options.data_dir,
            &options.config,
            options.pool.clone(),
            lead.clone(),
        )
    })?;
    for t in tokens.tenants() {
        match &lead {
            Some(lead) => lead.join(&t),
            None => {
                let tenants = &tenants;
                tokio::task::block_in_place(|| tenants.get(&t)).map_err(|e| e.message)?;
            }
        }
    }
    let state = Arc::new(AppState {
        tokens,
        audit: crate::audit::AuditLog::in_dir(&options.data_dir),
        tenants,
        metrics: metrics::Metrics::new(),
        max_body: options.max_body,
        ready: AtomicBool::new(true),
        closed: closed::ClosedBook::default(),
    });
    if let Some(lead) = &lead {
        lead.start(&state);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = lifecycle::start(state.clone(), stop.clone(), options.interval);
    let scheme = if tls.is_some() { "https" } else { "http" };
    // The line tests and scripts wait for.
    eprintln!("credpool: serving on {scheme}://{addr}");
    tracing::info!(target: "credpool::serve", "serving on {scheme}://{addr}");
    let app = router(state.clone());
    let served = match tls {
        Some(config) => {
            let listener = tls::TlsListener::new(listener, config)
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await
        }
        None => {
            // Small JSON answers go out at once, not after Nagle's wait.
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await
        }
    };
    served.map_err(|e| format!("server failed: {e}"))?;
    state.ready.store(false, Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    let _ = tokio::task::spawn_blocking(move || ticker.join()).await;
    let written = tokio::task::block_in_place(|| state.tenants.close());
    eprintln!("credpool: stopped; {written} records flushed");
    Ok(())
}

/// With `--advertise` over a Redis store: this server's leadership.
fn leadership_of(options: &ServeOptions) -> Result<Option<Arc<leadership::Leadership>>, String> {
    let Some(node) = &options.advertise else {
        return Ok(None);
    };
    let crate::pool::Storage::Redis { url, .. } = &options.pool.storage else {
        return Err(
            "--advertise is for several servers over one Redis: give --store redis://...".into(),
        );
    };
    let data = crate::backend::RedisBackend::open(url)
        .map_err(|e| crate::error::Error::Store(e.into()).to_string())?;
    let lead = leadership::Leadership::new(
        node.trim_end_matches('/').to_string(),
        options.lock_ttl,
        url,
        Arc::new(data),
    )?;
    Ok(Some(Arc::new(lead)))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!(target: "credpool::serve", "stopping: finishing the calls in flight");
}
