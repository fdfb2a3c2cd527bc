//! One [`Pool`] per tenant, on one shared backend: each with its own
//! sandboxed policy instance, lock and key prefix. A tenant named by a
//! token created while the server runs is opened on its first request.
//! A tenant with a `[tenants.NAME]` table runs its own component (SHA-256
//! checked), `[policy]`, limits and sites; every configured tenant is
//! opened at start, so a bad one stops the server before it listens.

use super::alerts::AlertBook;
use super::errors::{ApiError, ApiResult};
use crate::backend::{Backend, RedbBackend, RedisBackend};
use crate::config::ConfigFile;
use crate::error::Error;
use crate::lifecycle::RefresherOptions;
use crate::lifecycle::notifiers::Notifiers;
use crate::pool::{DB_FILE, Pool, PoolOptions, Storage};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The ticket book and answer spool `credpool challenge` uses.
pub const TICKET_BOOK: &str = "tickets.json";
pub const ANSWER_DIR: &str = "answers";

#[derive(Clone)]
pub struct Tenant {
    pub pool: Arc<Pool>,
    pub alerts: Arc<AlertBook>,
}

pub struct Tenants {
    base: PoolOptions,
    config: ConfigFile,
    pub answer_dir: PathBuf,
    notifiers: Arc<Notifiers>,
    open: RwLock<HashMap<String, Tenant>>,
    /// Tenants removed while the server runs: refused until it restarts.
    removed: RwLock<HashSet<String>>,
    /// Several servers over Redis: which tenants this one leads (their
    /// pools live there, not in `open`).
    pub lead: Option<Arc<super::leadership::Leadership>>,
}

impl Tenants {
    /// Opens the store and the configured tenant's pool.
    pub fn open(
        data_dir: &Path,
        config: &ConfigFile,
        mut base: PoolOptions,
        lead: Option<Arc<super::leadership::Leadership>>,
    ) -> Result<Tenants, String> {
        if !data_dir.is_dir() {
            return Err(format!(
                "data directory {} does not exist; create it with `credpool init`",
                data_dir.display()
            ));
        }
        // The compiled policy is cached beside the data, as `run` does.
        if base.component.is_none() {
            crate::runtime::Runtime::builtin_cached(Some(&data_dir.join("cache")))
                .map_err(|e| format!("cannot load the policy: {e:#}"))?;
        }
        let backend: Arc<dyn Backend> = match (&base.storage, &lead) {
            (_, Some(lead)) => lead.data(),
            (Storage::Redis { url, .. }, None) => {
                Arc::new(RedisBackend::open(url).map_err(|e| Error::Store(e.into()).to_string())?)
            }
            _ => Arc::new(
                RedbBackend::open(&data_dir.join(DB_FILE))
                    .map_err(|e| Error::Store(e.into()).to_string())?,
            ),
        };
        base.storage = Storage::Shared(backend);
        let notifiers = Notifiers::new(&config.notify, Some(data_dir.join(TICKET_BOOK)));
        let tenants = Tenants {
            base: base.clone(),
            config: config.clone(),
            answer_dir: data_dir.join(ANSWER_DIR),
            notifiers,
            open: RwLock::new(HashMap::new()),
            removed: RwLock::new(HashSet::new()),
            lead,
        };
        // Every configured tenant is opened (or, with several servers,
        // joined for election) now, so a bad one stops the server before
        // it listens.
        let names: Vec<String> = std::iter::once(base.tenant.clone())
            .chain(
                config
                    .tenants
                    .keys()
                    .filter(|n| **n != base.tenant)
                    .cloned(),
            )
            .collect();
        for name in names {
            match &tenants.lead {
                Some(lead) => lead.join(&name),
                None => {
                    tenants
                        .get(&name)
                        .map_err(|e| format!("tenant {name}: {}", e.message))?;
                }
            }
        }
        Ok(tenants)
    }

    /// The one store every tenant's pool is on.
    pub fn backend(&self) -> Arc<dyn Backend> {
        match &self.base.storage {
            Storage::Shared(b) => b.clone(),
            _ => unreachable!("Tenants::open shares one backend"),
        }
    }

    /// The configured tenant (its answers come through the spool).
    pub fn default_tenant(&self) -> &str {
        &self.base.tenant
    }

    /// A tenant's pool, opened on first use (with several servers: only
    /// while this one leads it).
    pub fn get(&self, tenant: &str) -> ApiResult<Tenant> {
        if self.is_removed(tenant) {
            return Err(ApiError::new(
                axum::http::StatusCode::GONE,
                "tenant_removed",
                format!("tenant {tenant} was removed"),
            ));
        }
        if let Some(lead) = &self.lead {
            return lead.here(tenant);
        }
        if let Some(t) = self
            .open
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
        {
            return Ok(t.clone());
        }
        let mut open = self.open.write().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = open.get(tenant) {
            return Ok(t.clone());
        }
        let t = self.open_pool(tenant, None)?;
        open.insert(tenant.to_string(), t.clone());
        Ok(t)
    }

    /// Opens `tenant`'s pool (on `backend` instead of the shared one when
    /// given: a leader's fenced writes), not kept here.
    pub fn open_pool(&self, tenant: &str, backend: Option<Arc<dyn Backend>>) -> ApiResult<Tenant> {
        let alerts = AlertBook::new(self.notifiers.clone());
        let mut options = self.base.clone();
        options.tenant = tenant.to_string();
        options.events = alerts.clone();
        let config = self.config.for_tenant(tenant);
        if let Some(section) = self.config.tenants.get(tenant) {
            options.policy_config = config.policy_config_json();
            options.limits = self.config.tenant_limits(tenant, self.base.limits.clone());
            if let Some(path) = self.config.tenant_component(tenant) {
                if let Some(hash) = &section.component_sha256 {
                    crate::config::tenants::check_sha256(tenant, &path, hash)
                        .map_err(|m| ApiError::from(Error::Policy(m)))?;
                }
                options.component = Some(path);
            }
        }
        if let Some(b) = backend {
            options.storage = Storage::Shared(b);
            options.durable_leases = true;
        }
        let pool = Arc::new(Pool::open(options).map_err(|e| ApiError::from(config.locate(e)))?);
        let mut ro = RefresherOptions::new(config.sites.clone());
        if tenant == self.base.tenant {
            ro.answer_dir = Some(self.answer_dir.clone());
        }
        let refresher = pool.attach_refresher(ro).map_err(ApiError::from)?;
        if tenant == self.base.tenant {
            self.notifiers.attach(refresher);
        }
        tracing::info!(target: "credpool::serve", "tenant {tenant} opened");
        Ok(Tenant { pool, alerts })
    }

    fn is_removed(&self, tenant: &str) -> bool {
        self.removed
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(tenant)
    }

    /// Removes a tenant: refused from now on, its pool closed, then its
    /// data key destroyed and its records deleted
    /// ([`crate::tenant_keys::remove`]). The server's own tenant stays.
    pub fn remove(&self, tenant: &str) -> ApiResult<crate::tenant_keys::RemoveReport> {
        if tenant == self.base.tenant {
            return Err(ApiError::bad_request(
                "invalid_input",
                format!(
                    "tenant {tenant} is the server's own ([pool] tenant); it cannot be removed while the server runs"
                ),
            ));
        }
        self.removed
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.to_string());
        let open = self
            .open
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(tenant);
        if let Some(t) = open {
            if let Some(r) = t.pool.refresher() {
                r.shutdown(Duration::from_secs(10));
            }
            // Calls already in flight finish before the records go; the
            // pool is never dropped (its drop would write counters back).
            let until = std::time::Instant::now() + Duration::from_secs(10);
            while Arc::strong_count(&t.pool) > 1 && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            std::mem::forget(t.pool);
        }
        let report = crate::tenant_keys::remove(&*self.backend(), tenant)
            .map_err(|e| ApiError::from(Error::from(e)))?;
        Ok(report)
    }

    pub fn all(&self) -> Vec<(String, Tenant)> {
        if let Some(lead) = &self.lead {
            return lead.led();
        }
        self.open
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Stops refreshes, hands their results to the policies, flushes every
    /// pool; returns the records written.
    pub fn close(&self) -> u32 {
        let mut written = 0;
        for (name, t) in self.all() {
            if let Some(r) = t.pool.refresher() {
                r.shutdown(Duration::from_secs(10));
            }
            if let Err(e) = t.pool.deliver_refresh_results() {
                tracing::error!(target: "credpool::serve", "tenant {name}: could not hand the last refresh results to the policy: {e}");
            }
            match t.pool.flush() {
                Ok(n) => written += n,
                Err(e) => {
                    tracing::error!(target: "credpool::serve", "tenant {name}: flush failed: {e}")
                }
            }
        }
        self.notifiers.close(Duration::from_secs(10));
        if let Some(lead) = &self.lead {
            lead.stop();
        }
        written
    }
}
