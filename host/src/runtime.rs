//! The wasmtime side: one engine per process, the component compiled once
//! and pre-linked (`InstancePre`), and a fresh sandboxed store per tenant.

use crate::bindings::{Policy, PolicyPre};
use crate::state::HostState;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, Store};

/// The policy component built from `guest/` by build.rs.
pub static BUILTIN_POLICY: &[u8] = include_bytes!(env!("CREDPOOL_POLICY_WASM"));

/// How often the epoch advances: the granularity of per-call CPU deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A compiled, linked policy component, ready to instantiate per tenant.
pub struct Runtime {
    engine: Engine,
    component: Component,
    pre: PolicyPre<HostState>,
    source: String,
}

impl Runtime {
    /// The built-in policy, compiled once per process.
    pub fn builtin() -> anyhow::Result<Arc<Runtime>> {
        static BUILTIN: OnceLock<Arc<Runtime>> = OnceLock::new();
        if let Some(rt) = BUILTIN.get() {
            return Ok(rt.clone());
        }
        let rt = Arc::new(Runtime::new(BUILTIN_POLICY, "built-in policy")?);
        Ok(BUILTIN.get_or_init(|| rt).clone())
    }

    /// A policy component from a file, compiled once per process and path.
    pub fn from_file(path: &Path) -> anyhow::Result<Arc<Runtime>> {
        type Compiled = Vec<(PathBuf, Arc<Runtime>)>;
        static BY_PATH: OnceLock<Mutex<Compiled>> = OnceLock::new();
        let cache = BY_PATH.get_or_init(Default::default);
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if let Some((_, rt)) = cache.lock().unwrap().iter().find(|(p, _)| *p == key) {
            return Ok(rt.clone());
        }
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read policy component {}", path.display()))?;
        let rt = Arc::new(Runtime::new(&bytes, &path.display().to_string())?);
        cache.lock().unwrap().push((key, rt.clone()));
        Ok(rt)
    }

    fn new(wasm: &[u8], source: &str) -> anyhow::Result<Runtime> {
        let engine = engine()?;
        let component = Component::new(&engine, wasm)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{source} is not a valid WebAssembly component"))?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        // std in the guest needs clocks, random and stdio; the WasiCtx we
        // build grants no files, sockets or environment.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        Policy::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
        let pre = PolicyPre::new(
            linker
                .instantiate_pre(&component)
                .map_err(anyhow::Error::from)
                .with_context(|| {
                    format!("{source} does not fit the credpool:policy world this host provides")
                })?,
        )?;
        Ok(Runtime {
            engine,
            component,
            pre,
            source: source.to_string(),
        })
    }

    /// Where this component came from, for messages.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The names of everything the component imports (interfaces with
    /// their package and version), for checking what a policy can reach.
    pub fn import_names(&self) -> Vec<String> {
        self.component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// Instantiates the policy in a fresh store.
    pub fn instantiate(&self, state: HostState) -> anyhow::Result<(Store<HostState>, Policy)> {
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(u64::MAX / 2);
        let policy = self.pre.instantiate(&mut store)?;
        Ok((store, policy))
    }
}

/// The process-wide engine, with the epoch ticker that enforces deadlines.
fn engine() -> anyhow::Result<Engine> {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    if let Some(e) = ENGINE.get() {
        return Ok(e.clone());
    }
    let mut config = Config::new();
    // Synchronous component calls are 3-5x cheaper without this.
    config.concurrency_support(false);
    config.epoch_interruption(true);
    if std::env::var_os("CREDPOOL_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    let engine = Engine::new(&config)?;
    let engine = ENGINE.get_or_init(|| engine).clone();
    let ticker = engine.weak();
    std::thread::Builder::new()
        .name("credpool-epoch".into())
        .spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;
    Ok(engine)
}
