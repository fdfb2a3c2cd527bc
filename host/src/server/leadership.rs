//! Several servers over one Redis: which server leads each tenant.
//!
//! Every server campaigns for every tenant it serves, on a thread per
//! tenant: each `TTL/3` it takes or renews the tenant's lock (see
//! [`crate::backend::fence`]). The holder leads; it believes so only
//! until `start of its last successful renewal + TTL - TTL/5` on its
//! monotonic clock, so it stops answering for the tenant before Redis can
//! have let the lock expire, even when paused or cut off. A server that
//! takes the lock with a new epoch loads the tenant from Redis (a new
//! [`crate::pool::Pool`] whose writes carry that epoch) before it answers
//! for it; a deposed one drops its pool, whose late writes Redis refuses.
//! The others stand by and forward (see `forward`).

use super::AppState;
use super::errors::ApiError;
use super::tenants::Tenant;
use crate::backend::{FencedBackend, Holder, RedisBackend, fence};
use axum::http::StatusCode;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The lock's TTL unless `--lock-ttl` says otherwise.
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(5);

/// What a server knows of one tenant's leadership.
#[derive(Default)]
struct LeadState {
    /// The epoch this server holds the lock with (0: it does not).
    epoch: u64,
    /// Until when this server may answer as the leader (monotonic).
    valid_until: Option<Instant>,
    /// The lock's holder at the last look: epoch and advertised URL.
    holder: Option<(u64, String)>,
    /// The tenant loaded for `epoch`, once loaded.
    pool: Option<(u64, Tenant)>,
    loading: bool,
    /// Whether Redis has answered a take at least once.
    decided: bool,
}

struct Campaign {
    name: String,
    state: Mutex<LeadState>,
    /// Whether its thread runs (started once).
    running: AtomicBool,
}

/// Where a request for a tenant goes.
pub enum Route {
    /// This server leads it: here is the tenant.
    Here(Tenant),
    /// Another server leads it (its advertised URL).
    Elsewhere(String),
    /// No server is known to lead it (now: 503 `no_leader`).
    NoLeader,
    /// This server led it and no longer may, or is still loading it
    /// (503 `not_leader`).
    NotLeader(&'static str),
}

/// One tenant's leadership as `GET /v1/health` shows it.
#[derive(serde::Serialize)]
pub struct TenantLead {
    pub leader: bool,
    pub epoch: u64,
    pub leader_url: Option<String>,
}

pub struct Leadership {
    node: String,
    ttl: Duration,
    /// Locks on a connection of their own: a slow batch never delays a
    /// renewal.
    locks: RedisBackend,
    data: Arc<RedisBackend>,
    campaigns: Mutex<HashMap<String, Arc<Campaign>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stop: AtomicBool,
    app: OnceLock<Weak<AppState>>,
}

impl Leadership {
    /// Leadership as `node` (its advertised URL), with locks of `ttl`,
    /// over `data` (the shared store) and a lock connection to `url`.
    pub fn new(
        node: String,
        ttl: Duration,
        url: &crate::backend::StoreUrl,
        data: Arc<RedisBackend>,
    ) -> Result<Leadership, String> {
        let locks = RedisBackend::open(url).map_err(|e| e.to_string())?;
        Ok(Leadership {
            node,
            ttl,
            locks,
            data,
            campaigns: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            app: OnceLock::new(),
        })
    }

    /// The shared store (reads, and the writes of a pool not fenced).
    pub fn data(&self) -> Arc<dyn crate::backend::Backend> {
        self.data.clone()
    }

    /// This server's advertised URL.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Starts campaigning once the server's state exists (loading a
    /// tenant needs it).
    pub fn start(self: &Arc<Self>, app: &Arc<AppState>) {
        let _ = self.app.set(Arc::downgrade(app));
        let names: Vec<String> = self.campaigns.lock().unwrap().keys().cloned().collect();
        for name in names {
            self.spawn_campaign(&name);
        }
    }

    /// The campaign for `tenant`, begun now if it is new.
    fn campaign(self: &Arc<Self>, tenant: &str) -> Arc<Campaign> {
        let mut all = self.campaigns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = all.get(tenant) {
            return c.clone();
        }
        let c = Arc::new(Campaign {
            name: tenant.to_string(),
            state: Mutex::new(LeadState::default()),
            running: AtomicBool::new(false),
        });
        all.insert(tenant.to_string(), c.clone());
        drop(all);
        if self.app.get().is_some() {
            self.spawn_campaign(tenant);
        }
        c
    }

    /// Registers `tenant` (campaigning starts with [`Leadership::start`]).
    pub fn join(self: &Arc<Self>, tenant: &str) {
        self.campaign(tenant);
    }

    fn spawn_campaign(self: &Arc<Self>, tenant: &str) {
        let Some(c) = self
            .campaigns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
            .cloned()
        else {
            return;
        };
        if c.running.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        let handle = std::thread::Builder::new()
            .name(format!("lead-{tenant}"))
            .spawn(move || me.run_campaign(&c))
            .expect("spawn a leadership thread");
        self.threads.lock().unwrap().push(handle);
    }

    /// Where a request for `tenant` goes now.
    pub fn route(self: &Arc<Self>, tenant: &str) -> Route {
        let c = self.campaign(tenant);
        let st = c.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.epoch > 0 {
            if st.valid_until.is_some_and(|v| Instant::now() < v) {
                return match &st.pool {
                    Some((e, t)) if *e == st.epoch => Route::Here(t.clone()),
                    _ => Route::NotLeader("this server was just elected and is loading the tenant"),
                };
            }
            return Route::NotLeader("this server could not renew its leadership in time");
        }
        match &st.holder {
            Some((_, url)) if *url != self.node => Route::Elsewhere(url.clone()),
            _ => Route::NoLeader,
        }
    }

    /// Waits (up to one TTL) for `tenant`'s first election result, so a
    /// tenant's first request does not fail only because nobody has
    /// campaigned for it yet.
    pub async fn settled(self: &Arc<Self>, tenant: &str) {
        let c = self.campaign(tenant);
        let until = Instant::now() + self.ttl;
        while Instant::now() < until {
            {
                let st = c.state.lock().unwrap_or_else(|p| p.into_inner());
                if st.decided && !st.loading {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The tenant if this server leads it now, else the API error.
    pub fn here(self: &Arc<Self>, tenant: &str) -> Result<Tenant, ApiError> {
        match self.route(tenant) {
            Route::Here(t) => Ok(t),
            Route::NotLeader(why) => Err(not_leader(why)),
            Route::Elsewhere(url) => Err(not_leader(&format!("tenant {tenant} is led by {url}"))),
            Route::NoLeader => Err(no_leader(tenant)),
        }
    }

    /// The tenants this server leads now, with their pools.
    pub fn led(&self) -> Vec<(String, Tenant)> {
        let now = Instant::now();
        let all: Vec<Arc<Campaign>> = self
            .campaigns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        all.iter()
            .filter_map(|c| {
                let st = c.state.lock().unwrap_or_else(|p| p.into_inner());
                let valid = st.epoch > 0 && st.valid_until.is_some_and(|v| now < v);
                match &st.pool {
                    Some((e, t)) if valid && *e == st.epoch => Some((c.name.clone(), t.clone())),
                    _ => None,
                }
            })
            .collect()
    }

    /// Every tenant's leadership as this server sees it.
    pub fn health(&self) -> HashMap<String, TenantLead> {
        let now = Instant::now();
        let all: Vec<Arc<Campaign>> = self
            .campaigns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        all.iter()
            .map(|c| {
                let st = c.state.lock().unwrap_or_else(|p| p.into_inner());
                let leader = st.epoch > 0
                    && st.valid_until.is_some_and(|v| now < v)
                    && st.pool.as_ref().is_some_and(|(e, _)| *e == st.epoch);
                let (epoch, url) = match &st.holder {
                    Some((e, u)) => (*e, Some(u.clone())),
                    None => (0, None),
                };
                (
                    c.name.clone(),
                    TenantLead {
                        leader,
                        epoch,
                        leader_url: url,
                    },
                )
            })
            .collect()
    }

    /// Stops campaigning and lets go of every lock this server holds (the
    /// pools flushed before), so a standby takes over at once.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap());
        for t in threads {
            let _ = t.join();
        }
    }

    fn run_campaign(self: Arc<Self>, c: &Campaign) {
        let period = self.ttl / 3;
        while !self.stop.load(Ordering::SeqCst) {
            let started = Instant::now();
            self.take_or_renew(c, started);
            while !self.stop.load(Ordering::SeqCst) && started.elapsed() < period {
                std::thread::sleep((period.saturating_sub(started.elapsed())).min(ms(50)));
            }
        }
        let mut st = c.state.lock().unwrap_or_else(|p| p.into_inner());
        let epoch = std::mem::take(&mut st.epoch);
        st.valid_until = None;
        drop(st);
        if epoch > 0
            && let Err(e) = fence::release(&self.locks, &c.name, &self.node, epoch)
        {
            tracing::warn!(target: "credpool::lead", "tenant {}: could not let the lock go: {e}", c.name);
        }
    }

    fn take_or_renew(self: &Arc<Self>, c: &Campaign, started: Instant) {
        let held = c.state.lock().unwrap_or_else(|p| p.into_inner()).epoch;
        let taken = fence::take(&self.locks, &c.name, &self.node, held, self.ttl);
        let mut st = c.state.lock().unwrap_or_else(|p| p.into_inner());
        match taken {
            Ok(Holder::Me(epoch)) => {
                st.decided = true;
                st.valid_until = Some(started + self.ttl - self.ttl / 5);
                st.holder = Some((epoch, self.node.clone()));
                if epoch != st.epoch {
                    tracing::info!(target: "credpool::lead", "tenant {}: this server leads it now (epoch {epoch}); loading it", c.name);
                    st.epoch = epoch;
                    retire(st.pool.take());
                }
                let load = st.pool.is_none() && !st.loading;
                if load {
                    st.loading = true;
                    drop(st);
                    self.spawn_load(&c.name, epoch);
                }
            }
            Ok(Holder::Other(epoch, url)) => {
                st.decided = true;
                if st.epoch > 0 {
                    tracing::warn!(target: "credpool::lead", "tenant {}: deposed (epoch {} is over; {url} leads at epoch {epoch})", c.name, st.epoch);
                    st.epoch = 0;
                    st.valid_until = None;
                    retire(st.pool.take());
                }
                st.holder = Some((epoch, url));
            }
            Err(e) => {
                // The leader's validity runs out by itself on the monotonic
                // clock; nothing else to do until Redis answers.
                tracing::warn!(target: "credpool::lead", "tenant {}: cannot reach the lock: {e}", c.name);
            }
        }
    }

    fn spawn_load(self: &Arc<Self>, tenant: &str, epoch: u64) {
        let me = self.clone();
        let tenant = tenant.to_string();
        std::thread::spawn(move || me.load(&tenant, epoch));
    }

    /// Opens `tenant` from Redis for `epoch` and installs it if that is
    /// still this server's epoch.
    fn load(&self, tenant: &str, epoch: u64) {
        let c = self
            .campaigns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
            .cloned();
        let Some(c) = c else { return };
        let app = self.app.get().and_then(Weak::upgrade);
        let started = Instant::now();
        let opened = match app {
            Some(app) => {
                let backend: Arc<dyn crate::backend::Backend> = Arc::new(FencedBackend::new(
                    self.data.clone(),
                    tenant,
                    &self.node,
                    epoch,
                ));
                app.tenants
                    .open_pool(tenant, Some(backend))
                    .map_err(|e| e.message)
            }
            None => Err("the server is stopping".to_string()),
        };
        let mut st = c.state.lock().unwrap_or_else(|p| p.into_inner());
        st.loading = false;
        match opened {
            Ok(t) if st.epoch == epoch => {
                tracing::info!(target: "credpool::lead", "tenant {tenant}: loaded for epoch {epoch} in {} ms", started.elapsed().as_millis());
                st.pool = Some((epoch, t));
            }
            Ok(t) => retire(Some((epoch, t))),
            Err(e) => {
                tracing::error!(target: "credpool::lead", "tenant {tenant}: cannot load it as leader: {e}; trying again")
            }
        }
    }
}

/// Lets a pool that no longer leads go, off the caller's thread: its
/// refreshes stop, and its last flush is refused by Redis if it was
/// deposed.
fn retire(old: Option<(u64, Tenant)>) {
    let Some((_, t)) = old else { return };
    std::thread::spawn(move || {
        if let Some(r) = t.pool.refresher() {
            r.shutdown(Duration::from_secs(5));
        }
        drop(t);
    });
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// 503 `not_leader`, try again in a second.
pub fn not_leader(why: &str) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_leader",
        format!("this server does not lead the tenant now: {why}"),
    );
    e.retry_after = Some(1);
    e
}

/// 503 `no_leader`, try again in a second.
pub fn no_leader(tenant: &str) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_leader",
        format!("no server leads tenant {tenant} now (an election is under way); try again"),
    );
    e.retry_after = Some(1);
    e
}

/// `GET /v1/health` (no token): this server's advertised URL and, per
/// tenant, whether it leads it, the lock's epoch and the leader's URL.
/// A single server (no `--advertise`) leads every tenant it has open.
pub async fn health(
    axum::extract::State(s): axum::extract::State<super::Shared>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (node, tenants) = match &s.tenants.lead {
        Some(lead) => (Some(lead.node().to_string()), lead.health()),
        None => (
            None,
            s.tenants
                .all()
                .into_iter()
                .map(|(name, _)| {
                    let lead = TenantLead {
                        leader: true,
                        epoch: 0,
                        leader_url: None,
                    };
                    (name, lead)
                })
                .collect(),
        ),
    };
    axum::Json(serde_json::json!({"node": node, "tenants": tenants})).into_response()
}
