//! The embedded all-in-one node of `niyanta serve`: coordinator, worker and API in one process
//! over SQLite, in-process channels and a local blob directory.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::api::AppState;
use crate::blobs::Blobs;
use crate::broker::Broker;
use crate::broker::memory::MemoryBroker;
use crate::config::ServeConfig;
use crate::coordinator::{Coordinator, CoordinatorConfig, effective_tiers};
use crate::process::{bootstrap_admin, serve_api, task_result};
use crate::runtime::{Runtime, RuntimeConfig};
use crate::state::StateStore;
use crate::state::sqlite::SqliteStore;
use crate::tier;
use crate::worker::{Worker, WorkerConfig};

/// A running node.
pub struct Node {
    /// Where the API listens (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// The shared handles, for in-process callers.
    pub app: AppState,
    /// An admin key generated at this start (printed once), when there was none.
    pub generated_admin_key: Option<String>,
    worker: Arc<Worker>,
    tasks: tokio::task::JoinSet<anyhow::Result<()>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Node {
    /// Opens the data directory, migrates, and starts the coordinator, the worker and the API.
    pub async fn start(cfg: &ServeConfig, admin_key: Option<String>) -> anyhow::Result<Self> {
        let dir = &cfg.data_dir;
        std::fs::create_dir_all(dir).with_context(|| format!("creating data directory {}", dir.display()))?;
        let store = SqliteStore::open(&dir.join("state.db")).await?.with_host_retry(cfg.host_retry);
        store.migrate().await?;
        let state: Arc<dyn StateStore> = Arc::new(store);
        let generated_admin_key = bootstrap_admin(state.as_ref(), admin_key).await?;
        let tiers = effective_tiers(state.as_ref(), &cfg.tiers).await?;

        let blobs = Blobs::local(&dir.join("blobs"))?;
        let runtime = Arc::new(Runtime::new(&RuntimeConfig {
            max_memory_bytes: tier::max_memory_bytes(&tiers),
            pool_instances: (cfg.slots * 4).max(64),
            cache_dir: Some(dir.join("compiled")),
            compile_helper: crate::runtime::compile::helper(),
        })?);
        let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::default());
        let worker_id = Worker::generate_id("embedded");
        let coordinator = Coordinator::new(
            state.clone(),
            broker.clone(),
            blobs.clone(),
            Arc::new(tiers.clone()),
            CoordinatorConfig {
                lease_timeout: Duration::from_millis(cfg.lease_timeout_ms),
                component_grace: Duration::from_millis(cfg.component_grace_ms),
                embedded_worker: Some(worker_id.clone()),
                ..CoordinatorConfig::default()
            },
            None,
        );
        coordinator.use_runtime(runtime.clone());
        let mut tasks = coordinator.start().await?;
        let worker = Worker::new(
            worker_id,
            WorkerConfig {
                slots: cfg.slots,
                heartbeat: Duration::from_millis(cfg.heartbeat_ms),
                grace: Duration::from_millis(cfg.grace_ms),
                labels: Default::default(),
            },
            runtime.clone(),
            broker.clone(),
            blobs.clone(),
        );
        let w = worker.clone();
        tasks.spawn(async move { w.run().await });

        let app = AppState { state, coordinator, runtime, blobs, broker, streams: Default::default() };
        let (addr, stop) = serve_api(&mut tasks, app.clone(), cfg.listen, &tiers).await?;
        Ok(Self { addr, app, generated_admin_key, worker, tasks, stop })
    }

    /// Runs until a task fails or `shutdown_signal` resolves; then drains the worker (running
    /// jobs checkpoint and are queued again) and stops.
    pub async fn run_until(mut self, shutdown_signal: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        let result = tokio::select! {
            () = shutdown_signal => Ok(()),
            Some(r) = self.tasks.join_next() => task_result(r),
        };
        tracing::info!("shutting down: draining running jobs");
        self.stop.send_replace(true);
        // Each job's final report is acknowledged only after the coordinator committed it.
        self.worker.drain().await;
        self.tasks.abort_all();
        result
    }
}
