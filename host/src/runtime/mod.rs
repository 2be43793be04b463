//! The sandbox: runs one attempt of a job in a wasmtime store with fuel, memory, time, output and
//! host-call limits.
//!
//! One [`Runtime`] per process: one [`Engine`] with the pooling instance allocator, one [`Linker`],
//! and a [`WorkloadPre`] per component digest, so a job costs a [`Store`] and an instantiation.
//! Compiled artifacts are cached on disk (see [`cache`]). Deadlines and cancellation use fuel-based
//! async yields rather than epochs: fuel is needed for the fuel budget anyway, and a yield every
//! [`FUEL_YIELD_INTERVAL`] units lets a dropped future stop a guest that never calls the host.

pub mod cache;
mod job;
mod pipe;
pub mod validate;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::Mutex;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use job::{Interrupt, JobCtx, JobIo, JobLimits, JobSpec, LeaseLost, RunResult, Signals};

use crate::ids::Digest;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "workload",
    exports: { default: async },
});

pub use self::niyanta::workload::types::{InterruptReason, LogLevel};

/// Fuel units between two async yields of a running guest (about a millisecond of guest code):
/// the granularity of wall-clock deadlines and forced cancellation.
pub const FUEL_YIELD_INTERVAL: u64 = 1_000_000;

/// Bytes of each linear memory kept resident (reset with `memset` instead of `madvise`) when an
/// instance slot is freed, so the next job in the slot takes no page faults on the memory it
/// touches first. 2 MiB covers the initial memory of typical Rust components: about 1.1 MiB for
/// data and stack, 1.9 MiB with the heap reservation Niyanta's examples are linked with
/// (`examples-wasm/.cargo/config.toml`).
/// Where the kernel has the `PAGEMAP_SCAN` ioctl (Linux 6.7 and later) only the pages the guest
/// wrote are reset, not the whole 2 MiB (wasmtime's `PoolingAllocationConfig::pagemap_scan`).
pub const KEEP_RESIDENT_BYTES: usize = 2 << 20;

/// The pooling allocator of the engine: `instances` component instances (each with up to 4
/// core instances, 2 memories and 4 tables) whose memories may grow to `max_memory_bytes`.
pub fn pooling_config(max_memory_bytes: u64, instances: u32) -> anyhow::Result<PoolingAllocationConfig> {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(4))
        .total_memories(instances.saturating_mul(2))
        .total_tables(instances.saturating_mul(4))
        .total_stacks(instances)
        .max_memory_size(usize::try_from(max_memory_bytes).context("memory limit too large")?)
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);
    Ok(pool)
}

/// Settings of the sandbox engine.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Largest linear memory of any job, in bytes (the pooling allocator's slot size).
    pub max_memory_bytes: u64,
    /// Component instances the pool holds at once (jobs running at once, plus headroom).
    pub pool_instances: u32,
    /// Directory of the compiled-artifact cache; `None` disables it.
    pub cache_dir: Option<PathBuf>,
}

/// Prepared components kept in memory (each holds its compiled code).
pub const PREPARED_CAPACITY: usize = 256;

/// The prepared components, least recently used dropped first past [`PREPARED_CAPACITY`] (they
/// stay in the on-disk artifact cache).
#[derive(Default)]
struct Prepared {
    map: HashMap<Digest, (WorkloadPre<job::JobCtx>, u64)>,
    clock: u64,
}

impl Prepared {
    fn get(&mut self, digest: Digest) -> Option<WorkloadPre<job::JobCtx>> {
        self.clock += 1;
        let clock = self.clock;
        self.map.get_mut(&digest).map(|(pre, used)| {
            *used = clock;
            pre.clone()
        })
    }

    fn insert(&mut self, digest: Digest, pre: WorkloadPre<job::JobCtx>) {
        self.clock += 1;
        if self.map.len() >= PREPARED_CAPACITY && !self.map.contains_key(&digest) {
            let oldest = self.map.iter().min_by_key(|(_, (_, used))| *used).map(|(d, _)| *d);
            if let Some(oldest) = oldest {
                self.map.remove(&oldest);
            }
        }
        self.map.insert(digest, (pre, self.clock));
    }
}

/// Engine, linker and prepared components of one process.
pub struct Runtime {
    engine: Engine,
    linker: Linker<job::JobCtx>,
    cache: Option<cache::ArtifactCache>,
    prepared: Mutex<Prepared>,
    /// One gate per digest being prepared, so that jobs arriving together for a component not
    /// yet in memory wait for one compilation (or artifact load) instead of each doing its own.
    preparing: std::sync::Mutex<HashMap<Digest, Arc<Mutex<()>>>>,
    max_memory_bytes: u64,
}

impl Runtime {
    /// Builds the engine and linker.
    pub fn new(cfg: &RuntimeConfig) -> anyhow::Result<Self> {
        let pool = pooling_config(cfg.max_memory_bytes, cfg.pool_instances)?;
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .consume_fuel(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("{e:?}")).context("creating wasmtime engine")?;
        let linker = job::linker(&engine)?;
        let cache = cfg.cache_dir.as_ref().map(|dir| cache::ArtifactCache::new(&engine, dir.clone())).transpose()?;
        Ok(Self {
            engine,
            linker,
            cache,
            prepared: Mutex::new(Prepared::default()),
            preparing: std::sync::Mutex::new(HashMap::new()),
            max_memory_bytes: cfg.max_memory_bytes,
        })
    }

    /// The largest linear memory a job may have here, bytes (the pooling allocator's slot size,
    /// fixed at start).
    pub fn max_memory_bytes(&self) -> u64 {
        self.max_memory_bytes
    }

    /// Compiles and checks `bytes` as a Niyanta workload (see [`validate::validate`]); an accepted
    /// component is kept in the artifact cache and prepared, so its first job does not compile it
    /// again. `digest` must be the SHA-256 of `bytes`. Blocks while compiling: call it from
    /// `spawn_blocking`.
    pub fn validate_and_keep(
        &self,
        digest: Digest,
        bytes: &[u8],
    ) -> Result<validate::ComponentInfo, validate::ValidationError> {
        let (info, pre) = validate::validate(&self.engine, &self.linker, bytes)?;
        crate::metrics::COMPILE_CACHE.with_label_values(&["compiled"]).inc();
        if let Some(cache) = &self.cache {
            cache.store(digest, &info.component);
        }
        self.prepared.blocking_lock().insert(digest, pre);
        Ok(info)
    }

    /// The prepared component for `digest`, from memory, the artifact cache, or by compiling the
    /// bytes `fetch` returns (whose digest the caller has checked). Concurrent calls for one
    /// digest prepare it once: the others wait and take it from memory (a failure is not shared:
    /// each waiting call then tries on its own).
    pub async fn prepare<F, Fut>(&self, digest: Digest, fetch: F) -> anyhow::Result<WorkloadPre<job::JobCtx>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<bytes::Bytes>>,
    {
        if let Some(pre) = self.prepared.lock().await.get(digest) {
            crate::metrics::COMPILE_CACHE.with_label_values(&["memory"]).inc();
            return Ok(pre);
        }
        let gate = self.preparing.lock().map(|mut p| p.entry(digest).or_default().clone()).unwrap_or_default();
        let _gate = gate.lock().await;
        if let Some(pre) = self.prepared.lock().await.get(digest) {
            crate::metrics::COMPILE_CACHE.with_label_values(&["memory"]).inc();
            return Ok(pre);
        }
        let pre = self.load_or_compile(digest, fetch).await;
        if let Ok(mut p) = self.preparing.lock() {
            p.remove(&digest);
        }
        pre
    }

    /// [`Runtime::prepare`] past the memory: the artifact cache, else compiling.
    async fn load_or_compile<F, Fut>(&self, digest: Digest, fetch: F) -> anyhow::Result<WorkloadPre<job::JobCtx>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<bytes::Bytes>>,
    {
        let component = match self.cache.as_ref().and_then(|c| c.load(digest)) {
            Some(c) => {
                crate::metrics::COMPILE_CACHE.with_label_values(&["disk"]).inc();
                c
            }
            None => {
                crate::metrics::COMPILE_CACHE.with_label_values(&["compiled"]).inc();
                let bytes = fetch().await?;
                let engine = self.engine.clone();
                let component = tokio::task::spawn_blocking(move || Component::new(&engine, &bytes))
                    .await
                    .context("compiling component")?
                    .map_err(|e| anyhow::anyhow!("{e:?}"))
                    .with_context(|| format!("compiling component {digest}"))?;
                if let Some(cache) = &self.cache {
                    cache.store(digest, &component);
                }
                component
            }
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .and_then(|pre| WorkloadPre::new(pre).map_err(|e| anyhow::anyhow!("{e:?}")))
            .with_context(|| format!("linking component {digest}"))?;
        self.prepared.lock().await.insert(digest, pre.clone());
        Ok(pre)
    }

    /// Runs one attempt of a job to its end: see [`job::run`].
    pub async fn run(
        &self,
        pre: &WorkloadPre<job::JobCtx>,
        spec: JobSpec,
        io: Box<dyn JobIo>,
        signals: Arc<Signals>,
    ) -> RunResult {
        job::run(&self.engine, pre, spec, io, signals).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn jobs_arriving_together_compile_their_component_once() -> anyhow::Result<()> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples-wasm/target/wasm32-wasip2/release/echo.wasm");
        let bytes = bytes::Bytes::from(
            std::fs::read(&path).with_context(|| format!("{}: run scripts/build-guests.sh first", path.display()))?,
        );
        let runtime = Runtime::new(&RuntimeConfig { max_memory_bytes: 64 << 20, pool_instances: 4, cache_dir: None })?;
        let digest = Digest::of(&bytes);
        let fetched = AtomicUsize::new(0);
        let prepare = || {
            runtime.prepare(digest, || async {
                fetched.fetch_add(1, Ordering::SeqCst);
                Ok(bytes.clone())
            })
        };
        let all = futures::future::join_all((0..8).map(|_| prepare())).await;
        assert!(all.iter().all(Result::is_ok));
        assert_eq!(fetched.load(Ordering::SeqCst), 1, "eight jobs at once compiled the component more than once");
        prepare().await?;
        assert_eq!(fetched.load(Ordering::SeqCst), 1, "a prepared component was compiled again");
        Ok(())
    }
}
