//! One [`Pool`] per tenant, on one shared backend: each with its own
//! sandboxed policy instance, lock and key prefix. A tenant named by a
//! token created while the server runs is opened on its first request.

use super::alerts::AlertBook;
use super::errors::{ApiError, ApiResult};
use crate::backend::{Backend, RedbBackend, RedisBackend};
use crate::config::ConfigFile;
use crate::error::Error;
use crate::lifecycle::RefresherOptions;
use crate::lifecycle::notifiers::Notifiers;
use crate::pool::{DB_FILE, Pool, PoolOptions, Storage};
use std::collections::HashMap;
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
            lead,
        };
        match &tenants.lead {
            Some(lead) => lead.join(&base.tenant),
            None => {
                tenants.get(&base.tenant).map_err(|e| e.message)?;
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
        if let Some(b) = backend {
            options.storage = Storage::Shared(b);
            options.durable_leases = true;
        }
        let pool =
            Arc::new(Pool::open(options).map_err(|e| ApiError::from(self.config.locate(e)))?);
        let mut ro = RefresherOptions::new(self.config.sites.clone());
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
