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
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

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
/// touches first. 2 MiB covers the initial memory of typical Rust components (about 1.1 MiB).
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
        .table_keep_resident(64 << 10);
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
    /// bytes `fetch` returns (whose digest the caller has checked).
    pub async fn prepare<F, Fut>(&self, digest: Digest, fetch: F) -> anyhow::Result<WorkloadPre<job::JobCtx>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<bytes::Bytes>>,
    {
        if let Some(pre) = self.prepared.lock().await.get(digest) {
            crate::metrics::COMPILE_CACHE.with_label_values(&["memory"]).inc();
            return Ok(pre);
        }
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
