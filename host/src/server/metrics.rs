//! `GET /metrics` in the Prometheus text format: request latency by route
//! (recorded as requests pass), and the pool's state read from each
//! tenant's policy at scrape time: credentials by site and status, grants
//! and refusals, outcomes by class, refreshes by method and result, open
//! tickets, active alerts. Labels are names, never a secret. A token sees
//! its own tenant's series; a token of the server's own tenant, every tenant's.

use super::Shared;
use super::auth::Need;
use super::errors::ApiResult;
use crate::names;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SiteLabels {
    tenant: String,
    site: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    tenant: String,
    site: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    tenant: String,
    site: String,
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefreshLabels {
    tenant: String,
    site: String,
    method: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

pub struct Metrics {
    registry: Registry,
    latency: Family<RouteLabels, Histogram>,
    credentials: Family<StatusLabels, Gauge>,
    grants: Family<SiteLabels, Gauge>,
    refusals: Family<SiteLabels, Gauge>,
    outcomes: Family<OutcomeLabels, Gauge>,
    refreshes: Family<RefreshLabels, Gauge>,
    tickets: Family<SiteLabels, Gauge>,
    needs_person: Family<SiteLabels, Gauge>,
    pace: Family<SiteLabels, Gauge>,
    alerts: Family<TenantLabels, Gauge>,
    /// One scrape at a time: each fills the shared families for its caller.
    rendering: std::sync::Mutex<()>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("credpool");
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
            ])
        });
        registry.register(
            "http_request_duration_seconds",
            "API request latency by route",
            latency.clone(),
        );
        let credentials = Family::default();
        registry.register(
            "credentials",
            "Credentials by site and status",
            credentials.clone(),
        );
        let grants = Family::default();
        registry.register(
            "grants",
            "Leases granted (stored totals, over every process)",
            grants.clone(),
        );
        let refusals = Family::default();
        registry.register(
            "refusals",
            "Acquires refused (nothing available; stored totals, over every process)",
            refusals.clone(),
        );
        let outcomes = Family::default();
        registry.register("outcomes", "Reported outcomes by class", outcomes.clone());
        let refreshes = Family::default();
        registry.register(
            "refreshes",
            "Finished refreshes by method and result",
            refreshes.clone(),
        );
        let tickets = Family::default();
        registry.register("open_tickets", "Open challenge tickets", tickets.clone());
        let needs_person = Family::default();
        registry.register(
            "needs_person",
            "Credentials out of rotation that only a person can bring back",
            needs_person.clone(),
        );
        let pace = Family::default();
        registry.register(
            "pace_per_minute",
            "Adaptive pace per credential per minute (sites with adaptive pacing)",
            pace.clone(),
        );
        let alerts = Family::default();
        registry.register(
            "active_alerts",
            "Alerts raised in the last hour",
            alerts.clone(),
        );
        Metrics {
            registry,
            latency,
            credentials,
            grants,
            refusals,
            outcomes,
            refreshes,
            tickets,
            needs_person,
            pace,
            alerts,
            rendering: std::sync::Mutex::new(()),
        }
    }

    /// Reads the state of every tenant (`only`: of that one) into the
    /// gauges, then encodes all.
    fn render(&self, state: &Shared, only: Option<&str>) -> ApiResult<String> {
        let _one = self.rendering.lock().unwrap_or_else(|p| p.into_inner());
        for f in [
            &self.grants,
            &self.refusals,
            &self.tickets,
            &self.needs_person,
            &self.pace,
        ] {
            f.clear();
        }
        self.credentials.clear();
        self.outcomes.clear();
        self.refreshes.clear();
        self.alerts.clear();
        let now = chrono::Utc::now().timestamp_millis();
        for (tenant, t) in state.tenants.all() {
            if only.is_some_and(|o| o != tenant) {
                continue;
            }
            self.alerts
                .get_or_create(&TenantLabels {
                    tenant: tenant.clone(),
                })
                .set(t.alerts.active(now) as i64);
            for s in t.pool.stats(None)? {
                let site = SiteLabels {
                    tenant: tenant.clone(),
                    site: s.site.clone(),
                };
                let b = &s.by_status;
                for (status, n) in [
                    ("init", b.init),
                    ("active", b.active),
                    ("cooling", b.cooling),
                    ("challenged", b.challenged),
                    ("suspended", b.suspended),
                    ("banned", b.banned),
                    ("expired", b.expired),
                ] {
                    self.credentials
                        .get_or_create(&StatusLabels {
                            tenant: tenant.clone(),
                            site: s.site.clone(),
                            status: status.into(),
                        })
                        .set(n as i64);
                }
                self.grants.get_or_create(&site).set(s.granted as i64);
                self.refusals.get_or_create(&site).set(s.refused as i64);
                self.tickets.get_or_create(&site).set(s.open_tickets as i64);
                self.needs_person
                    .get_or_create(&site)
                    .set(i64::from(s.needs_person_total));
                if let Some(pace) = s.pace_per_minute {
                    self.pace.get_or_create(&site).set(i64::from(pace));
                }
                let outcome = |class: &str| OutcomeLabels {
                    tenant: tenant.clone(),
                    site: s.site.clone(),
                    class: class.into(),
                };
                self.outcomes
                    .get_or_create(&outcome("success"))
                    .set(s.successes as i64);
                for (class, n) in &s.failures {
                    self.outcomes
                        .get_or_create(&outcome(names::failure_class(*class)))
                        .set(*n as i64);
                }
                for m in &s.refresh_by_method {
                    for (result, n) in [("succeeded", m.succeeded), ("failed", m.failed)] {
                        self.refreshes
                            .get_or_create(&RefreshLabels {
                                tenant: tenant.clone(),
                                site: s.site.clone(),
                                method: names::refresh_method(m.method).into(),
                                result: result.into(),
                            })
                            .set(n as i64);
                    }
                }
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).map_err(|_| {
            super::errors::ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "could not encode the metrics",
            )
        })?;
        Ok(out)
    }
}

pub async fn scrape(State(s): State<Shared>, headers: HeaderMap) -> ApiResult<Response> {
    let who = s.tokens.authorize(&headers, Need::View)?;
    // A tenant's token sees its own tenant's series; the server's own
    // tenant (the platform's operators) sees every tenant's.
    let only = (who.tenant != s.tenants.default_tenant()).then_some(who.tenant.as_str());
    let text = s.metrics.render(&s, only)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// Records each request's latency by its route pattern (never its path:
/// ids stay out of the metrics).
pub async fn track(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    s.metrics
        .latency
        .get_or_create(&RouteLabels {
            method,
            route,
            status: resp.status().as_u16(),
        })
        .observe(started.elapsed().as_secs_f64());
    resp
}
