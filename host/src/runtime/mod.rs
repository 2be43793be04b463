//! The sandbox: runs one attempt of a job in a wasmtime store with fuel, memory, time, output and
//! host-call limits.
//!
//! One [`Runtime`] per process: one [`Engine`] with the pooling instance allocator and fuel
//! metering, one [`Linker`] built from the WIT bindings, and a [`WorkloadPre`] per component
//! digest in a bounded cache, so a job costs a [`Store`] and an instantiation. Compiled artifacts
//! are also cached on disk (see [`cache`]). Components are compiled where a compile can be
//! stopped (see [`compile`]).
//!
//! The modules of one attempt: [`job`] (the store's data and the run), [`host`] (the host
//! interface), [`limits`] (what bounds a job and how), [`slice`] (the time slices it runs in),
//! [`classify`] (how it ended).

pub mod cache;
mod classify;
pub mod compile;
mod host;
mod job;
pub mod limits;
mod pipe;
mod signals;
mod slice;
pub mod validate;
mod wasi;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy};

pub use compile::{CompileError, CompileLimits};
pub use job::{JobCtx, JobIo, JobSpec, LeaseLost, RunResult};
pub use limits::{JobLimits, pooling_config};
pub use signals::{Interrupt, Signals};

use crate::ids::Digest;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "workload",
    imports: {
        "niyanta:workload/host.read-input": async | trappable,
        "niyanta:workload/host.write-output": async | trappable,
        "niyanta:workload/host.checkpoint": async | trappable,
        default: trappable,
    },
    exports: { default: async },
});

pub use self::niyanta::workload::types::{InterruptReason, LogLevel};

/// The WIT interface the host implements.
pub const HOST_INTERFACE: &str = "niyanta:workload/host@0.1.0";
/// The WIT interface of shared types (no functions).
pub const TYPES_INTERFACE: &str = "niyanta:workload/types@0.1.0";

/// The code generation settings of every engine, the compile processes' included: the component
/// model and fuel metering (no epoch interruption: its checks cost 1.7× on a tight loop beside
/// fuel's, and fuel yields already bound how long a guest runs unseen; see [`limits::YIELD_FUEL`]).
/// Artifacts compiled under them load into
/// [`Runtime`]'s engine.
pub fn compile_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true).consume_fuel(true);
    config
}

/// The entry point of the `niyanta compile-component` process (see [`compile`]): one compile on
/// one thread.
pub fn compile_child_main() -> std::process::ExitCode {
    let mut config = compile_config();
    config.parallel_compilation(false);
    compile::child_main(&config)
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
    /// The `niyanta` executable, run as `niyanta compile-component` to compile where a compile
    /// can be stopped (see [`compile::helper`]); `None` compiles on a blocking thread of this
    /// process.
    pub compile_helper: Option<PathBuf>,
}

/// Compiled code of prepared components kept in memory, bytes: past it, the least recently used
/// are dropped (they stay in the on-disk artifact cache).
pub const PREPARED_BYTES: u64 = 1 << 30;
/// A prepared component unused for this long is dropped from memory; an artifact unused for
/// [`cache::ARTIFACT_IDLE`] is deleted from disk.
pub const PREPARED_IDLE: Duration = Duration::from_secs(600);

/// CPU priority (nice value, 0 to 19) of the threads guests run on: above the control plane's
/// (0), so that API requests, scheduling and heartbeats run ahead of guest code when the cores
/// are busy.
pub const GUEST_NICE: i32 = 5;

/// Engine, linker, compiler and prepared components of one process, and the threads guests run
/// on: a tokio runtime of their own (one thread per core, at [`GUEST_NICE`]), so that guest code
/// never holds a thread of the runtime serving the API and the scheduler.
pub struct Runtime {
    guests: Option<tokio::runtime::Runtime>,
    engine: Engine,
    linker: Linker<JobCtx>,
    cache: Option<cache::ArtifactCache>,
    compiler: compile::Compiler,
    prepared: moka::future::Cache<Digest, WorkloadPre<JobCtx>>,
    max_memory_bytes: u64,
}

impl Runtime {
    /// Builds the engine, the linker and the guests' threads.
    pub fn new(cfg: &RuntimeConfig) -> anyhow::Result<Self> {
        let pool = pooling_config(cfg.max_memory_bytes, cfg.pool_instances)?;
        let mut config = compile_config();
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("{e:?}")).context("creating wasmtime engine")?;
        let mut linker = Linker::<JobCtx>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        Workload::add_to_linker::<JobCtx, HasSelf<JobCtx>>(&mut linker, |c| c)?;
        let cache = cfg.cache_dir.as_ref().map(|dir| cache::ArtifactCache::new(&engine, dir.clone())).transpose()?;
        let parallel = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let prepared = moka::future::Cache::builder()
            .weigher(|_, pre: &WorkloadPre<JobCtx>| {
                u32::try_from(compile::image_bytes(pre.instance_pre().component()) >> 10).unwrap_or(u32::MAX)
            })
            .max_capacity(PREPARED_BYTES >> 10)
            .time_to_idle(PREPARED_IDLE)
            .build();
        let guests = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(parallel)
            .thread_name("niyanta-guest")
            .on_thread_start(|| lower_priority(GUEST_NICE))
            .enable_all()
            .build()
            .context("starting the guests' threads")?;
        Ok(Self {
            guests: Some(guests),
            compiler: compile::Compiler::new(engine.clone(), cfg.compile_helper.clone(), parallel),
            engine,
            linker,
            cache,
            prepared,
            max_memory_bytes: cfg.max_memory_bytes,
        })
    }

    /// The largest linear memory a job may have here, bytes (the pooling allocator's slot size,
    /// fixed at start).
    pub fn max_memory_bytes(&self) -> u64 {
        self.max_memory_bytes
    }

    /// Checks and compiles `bytes` as a Niyanta workload of `owner` (a tenant: compiles of one
    /// owner run one at a time) within `limits`, its declared memory within `memory_bytes` (see
    /// [`validate`]); an accepted component is kept in the artifact cache and prepared, so its
    /// first job does not compile it again. `digest` must be the SHA-256 of `bytes`.
    pub async fn check_upload(
        &self,
        owner: &str,
        digest: Digest,
        bytes: bytes::Bytes,
        limits: CompileLimits,
        memory_bytes: u64,
    ) -> Result<validate::ComponentInfo, validate::ValidationError> {
        validate::header(&bytes)?;
        let component = self.compiler.compile(owner, bytes, limits).await?;
        validate::fits_tier(&component, memory_bytes)?;
        crate::metrics::COMPILE_CACHE.with_label_values(&["compiled"]).inc();
        let (info, pre) = validate::validate(&self.linker, component)?;
        if let Some(cache) = &self.cache {
            cache.store(digest, &info.component);
        }
        self.prepared.insert(digest, pre).await;
        Ok(info)
    }

    /// The prepared component for `digest`, from memory, the artifact cache, or by compiling the
    /// bytes `fetch` returns (whose digest the caller has checked). Concurrent calls for one
    /// digest prepare it once: the others wait and share the result.
    pub async fn prepare<F, Fut>(&self, digest: Digest, fetch: F) -> anyhow::Result<WorkloadPre<JobCtx>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<bytes::Bytes>>,
    {
        let mut loaded = false;
        let pre = self
            .prepared
            .try_get_with(digest, async {
                loaded = true;
                self.load_or_compile(digest, fetch).await
            })
            .await
            .map_err(|e: Arc<anyhow::Error>| anyhow::anyhow!("{e:#}"))?;
        if !loaded {
            crate::metrics::COMPILE_CACHE.with_label_values(&["memory"]).inc();
        }
        Ok(pre)
    }

    /// Forgets a component: drops it from memory and deletes its compiled artifact (for a
    /// component collected as garbage).
    pub async fn forget(&self, digest: Digest) {
        self.prepared.invalidate(&digest).await;
        if let Some(cache) = &self.cache {
            cache.remove(digest);
        }
    }

    /// [`Runtime::prepare`] past the memory: the artifact cache, else compiling.
    async fn load_or_compile<F, Fut>(&self, digest: Digest, fetch: F) -> anyhow::Result<WorkloadPre<JobCtx>>
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
                let component = self
                    .compiler
                    .compile(&digest.to_string(), bytes, CompileLimits::ACCEPTED)
                    .await
                    .with_context(|| format!("compiling component {digest}"))?;
                if let Some(cache) = &self.cache {
                    cache.store(digest, &component);
                    cache.sweep_if_due();
                }
                component
            }
        };
        self.linker
            .instantiate_pre(&component)
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .and_then(|pre| WorkloadPre::new(pre).map_err(|e| anyhow::anyhow!("{e:?}")))
            .with_context(|| format!("linking component {digest}"))
    }

    /// The guests' threads. [`Runtime::run`] called from a task spawned here runs the attempt in
    /// that task, without a hand-off. The worker does not: the rest of a job's task (preparing
    /// the component, its reports) stays on the runtime serving the control plane, so that it never
    /// queues behind guests that use their whole time slice (measured: an innocent `echo`'s p99
    /// beside two stdout floods was 226 ms with the whole task here, 19 ms without).
    pub fn guests(&self) -> &tokio::runtime::Handle {
        let Some(guests) = &self.guests else { unreachable!("the guests' runtime lives as long as the runtime") };
        guests.handle()
    }

    /// Runs one attempt of a job to its end on the guests' threads: see [`job::run`]. Called from
    /// a task on [`Runtime::guests`], the attempt runs in that task; called from elsewhere, it is
    /// handed to a task there. Dropping the future stops the attempt.
    pub async fn run(
        &self,
        pre: &WorkloadPre<JobCtx>,
        spec: JobSpec,
        io: Box<dyn JobIo>,
        signals: Arc<Signals>,
    ) -> RunResult {
        let guests = self.guests();
        if tokio::runtime::Handle::try_current().is_ok_and(|h| h.id() == guests.id()) {
            return job::run(&self.engine, pre, spec, io, signals).await;
        }
        let (engine, pre) = (self.engine.clone(), pre.clone());
        let attempt = async move { job::run(&engine, &pre, spec, io, signals).await };
        let task = guests.spawn(tracing::Instrument::in_current_span(attempt));
        let abort = task.abort_handle();
        let _stop_when_dropped = scopeguard(move || abort.abort());
        match task.await {
            Ok(result) => result,
            Err(e) => RunResult {
                outcome: Some(crate::domain::Outcome::Failed {
                    class: crate::domain::FailureClass::HostError,
                    message: format!("the attempt's task ended abnormally: {e}"),
                    output: crate::domain::OutputRef::default(),
                }),
                usage: crate::domain::Usage::default(),
                elapsed: Duration::ZERO,
            },
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // A tokio runtime may not be dropped from async code; this one stops without waiting.
        if let Some(guests) = self.guests.take() {
            guests.shutdown_background();
        }
    }
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// Lowers the CPU priority of the calling thread to `nice` (Linux: a thread's own nice value).
fn lower_priority(nice: i32) {
    // SAFETY: plain system calls on the calling thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower the guest thread's priority");
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
        let runtime = Runtime::new(&RuntimeConfig {
            max_memory_bytes: 64 << 20,
            pool_instances: 4,
            cache_dir: None,
            compile_helper: None,
        })?;
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
