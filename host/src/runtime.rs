//! The wasmtime side: one engine per process, the component compiled once
//! and pre-linked (`InstancePre`), and a fresh sandboxed store per tenant.

use crate::bindings::{Policy, PolicyPre};
use crate::state::HostState;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, Store};

/// The policy component built from `guest/` by build.rs.
pub static BUILTIN_POLICY: &[u8] = include_bytes!(env!("CREDPOOL_POLICY_WASM"));

/// How often the epoch advances: the granularity of per-call CPU deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Epoch ticks so far, advanced by the same thread as the engine's epoch:
/// a clock of [`EPOCH_TICK`] granularity that costs an atomic load, for
/// checks on every call (is a flush due?) that a clock read would slow.
static TICKS: AtomicU64 = AtomicU64::new(0);

/// The coarse clock: epoch ticks since the engine started.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

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
        Self::builtin_cached(None)
    }

    /// The built-in policy, compiled once per process; with `cache_dir`,
    /// the compiled code is also kept there so the next process loads it in
    /// about a millisecond instead of compiling for most of a second.
    pub fn builtin_cached(cache_dir: Option<&Path>) -> anyhow::Result<Arc<Runtime>> {
        static BUILTIN: OnceLock<Arc<Runtime>> = OnceLock::new();
        if let Some(rt) = BUILTIN.get() {
            return Ok(rt.clone());
        }
        let rt = Arc::new(Runtime::new(BUILTIN_POLICY, "built-in policy", cache_dir)?);
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
        let rt = Arc::new(Runtime::new(&bytes, &path.display().to_string(), None)?);
        cache.lock().unwrap().push((key, rt.clone()));
        Ok(rt)
    }

    fn new(wasm: &[u8], source: &str, cache_dir: Option<&Path>) -> anyhow::Result<Runtime> {
        let engine = engine()?;
        let component = match cache_dir.filter(|d| private_dir(d)) {
            Some(dir) => load_or_compile(&engine, wasm, dir),
            None => Component::new(&engine, wasm).map_err(anyhow::Error::from),
        }
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

/// Makes (or accepts) a cache directory only its owner can write: the
/// cache holds native code, so nobody else may be able to plant a file.
fn private_dir(dir: &Path) -> bool {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        if builder.create(dir).is_err() {
            return false;
        }
        std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o022 == 0)
    }
    #[cfg(not(unix))]
    {
        builder.create(dir).is_ok()
    }
}

/// Loads the component's compiled code from `dir`, or compiles it and
/// stores it there (atomically, 0600). The file name carries a hash of the
/// component and of the engine's settings, so a new build never loads stale
/// code; a file that fails to load is replaced.
fn load_or_compile(engine: &Engine, wasm: &[u8], dir: &Path) -> anyhow::Result<Component> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    wasm.hash(&mut h);
    engine.precompile_compatibility_hash().hash(&mut h);
    let path = dir.join(format!("policy-{:016x}.cwasm", h.finish()));
    if path.exists() {
        // SAFETY: the file was written by `precompile_component` of an
        // engine with these settings into a directory only we can write.
        if let Ok(c) = unsafe { Component::deserialize_file(engine, &path) } {
            return Ok(c);
        }
    }
    let compiled = engine
        .precompile_component(wasm)
        .map_err(anyhow::Error::from)?;
    let write = || -> std::io::Result<()> {
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(&mut tmp, &compiled)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(())
    };
    if let Err(e) = write() {
        // A cache that cannot be written only costs time.
        tracing::debug!("cannot cache the compiled policy in {}: {e}", dir.display());
    }
    // SAFETY: these bytes were just produced by this engine.
    unsafe { Component::deserialize(engine, &compiled) }.map_err(anyhow::Error::from)
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
    let created = Engine::new(&config)?;
    let engine = ENGINE.get_or_init(|| created.clone()).clone();
    // Two threads may both get here; only the one whose engine was kept
    // starts its ticker (two would run deadlines out twice as fast).
    if !Engine::same(&engine, &created) {
        return Ok(engine);
    }
    let ticker = engine.weak();
    std::thread::Builder::new()
        .name("credpool-epoch".into())
        .spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                TICKS.fetch_add(1, Ordering::Relaxed);
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;
    Ok(engine)
}
