//! The distributed processes: [`CoordinatorNode`] (`niyanta coordinator`: the API, and while
//! elected the scheduler, over PostgreSQL, NATS and object storage) and [`WorkerNode`]
//! (`niyanta worker`: job slots fed over NATS). Any number of each may run; see
//! `docs/distributed.md`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::api::AppState;
use crate::blobs::Blobs;
use crate::broker::Broker;
use crate::broker::nats::NatsBroker;
use crate::config::cluster::{CoordinatorSettings, WorkerSettings};
use crate::coordinator::{Coordinator, CoordinatorConfig, Election, effective_tiers};
use crate::ids::WorkerId;
use crate::process::{bootstrap_admin, serve_api};
use crate::runtime::{Runtime, RuntimeConfig};
use crate::state::StateStore;
use crate::state::postgres::PostgresStore;
use crate::tier;
use crate::worker::{Worker, WorkerConfig};

/// Connects to PostgreSQL as the settings say.
async fn connect_state(cfg: &CoordinatorSettings) -> anyhow::Result<PostgresStore> {
    let schema = Some(cfg.database_schema.as_str()).filter(|s| !s.is_empty());
    Ok(PostgresStore::connect(&cfg.database_url, schema, cfg.database_connections)
        .await?
        .with_host_retry(cfg.host_retry))
}

/// `niyanta migrate`: applies pending migrations and returns.
pub async fn migrate(cfg: &CoordinatorSettings) -> anyhow::Result<()> {
    connect_state(cfg).await?.migrate().await?;
    Ok(())
}

/// A running coordinator process.
pub struct CoordinatorNode {
    /// Where the API listens.
    pub addr: SocketAddr,
    /// The shared handles.
    pub app: AppState,
    /// An admin key generated at this start (printed once), when there was none.
    pub generated_admin_key: Option<String>,
    tasks: tokio::task::JoinSet<anyhow::Result<()>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl CoordinatorNode {
    /// Connects to the backends, migrates, serves the API and campaigns for the leadership.
    pub async fn start(cfg: &CoordinatorSettings, admin_key: Option<String>) -> anyhow::Result<Self> {
        let store = connect_state(cfg).await?;
        store.migrate().await?;
        let generated_admin_key = bootstrap_admin(&store, admin_key).await?;
        let tiers = effective_tiers(&store, &cfg.tiers).await?;
        let blobs = Blobs::from_url(&cfg.blob_url)?;
        let broker: Arc<dyn Broker> =
            Arc::new(NatsBroker::connect(&cfg.nats_url, &cfg.nats_namespace, blobs.clone()).await?);
        // Uploads are compiled here to be checked; jobs never run here.
        let runtime = Arc::new(Runtime::new(&RuntimeConfig {
            max_memory_bytes: tier::max_memory_bytes(&tiers),
            pool_instances: 4,
            cache_dir: None,
            compile_helper: crate::runtime::compile::helper(),
        })?);
        let election: Arc<dyn Election> = Arc::new(store.clone());
        let state: Arc<dyn StateStore> = Arc::new(store);
        let mut config = CoordinatorConfig {
            lease_timeout: Duration::from_millis(cfg.lease_timeout_ms),
            leader_ttl: Duration::from_millis(cfg.leader_ttl_ms),
            retention: Some(Duration::from_millis(cfg.retention_ms)).filter(|r| !r.is_zero()),
            component_grace: Duration::from_millis(cfg.component_grace_ms),
            ..CoordinatorConfig::default()
        };
        if !cfg.id.is_empty() {
            config.id = cfg.id.clone();
        }
        let coordinator = Coordinator::new(
            state.clone(),
            broker.clone(),
            blobs.clone(),
            Arc::new(tiers.clone()),
            config,
            Some(election),
        );
        coordinator.use_runtime(runtime.clone());
        let mut tasks = coordinator.start().await?;
        let app = AppState { state, coordinator, runtime, blobs, broker, streams: Default::default() };
        let (addr, stop) = serve_api(&mut tasks, app.clone(), cfg.listen, &tiers).await?;
        Ok(Self { addr, app, generated_admin_key, tasks, stop })
    }

    /// Runs until a task fails or `shutdown_signal` resolves; then resigns the leadership (so
    /// another coordinator takes over at once) and stops.
    pub async fn run_until(mut self, shutdown_signal: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        let result = tokio::select! {
            () = shutdown_signal => Ok(()),
            Some(r) = self.tasks.join_next() => crate::process::task_result(r),
        };
        tracing::info!("shutting down");
        self.stop.send_replace(true);
        self.app.coordinator.resign().await;
        self.tasks.abort_all();
        result
    }
}

/// A running worker process.
pub struct WorkerNode {
    worker: Arc<Worker>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// `{host name}-{8 random hex digits}`, the host name reduced to letters, digits and `-`.
fn default_worker_id() -> WorkerId {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(40).collect::<String>())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    Worker::generate_id(&host)
}

impl WorkerNode {
    /// Connects to NATS and object storage, registers, and takes jobs.
    pub async fn start(cfg: &WorkerSettings) -> anyhow::Result<Self> {
        let id = if cfg.id.is_empty() {
            default_worker_id()
        } else {
            WorkerId::parse(&cfg.id).map_err(|e| anyhow::anyhow!("{e}"))?
        };
        let blobs = Blobs::from_url(&cfg.blob_url)?;
        let broker: Arc<dyn Broker> =
            Arc::new(NatsBroker::connect_without_events(&cfg.nats_url, &cfg.nats_namespace, blobs.clone()).await?);
        std::fs::create_dir_all(&cfg.cache_dir)
            .with_context(|| format!("creating the artifact cache {}", cfg.cache_dir.display()))?;
        let runtime = Arc::new(Runtime::new(&RuntimeConfig {
            max_memory_bytes: cfg.max_memory_bytes,
            pool_instances: (cfg.slots * 4).max(16),
            cache_dir: Some(cfg.cache_dir.clone()),
            compile_helper: crate::runtime::compile::helper(),
        })?);
        let config = WorkerConfig {
            slots: cfg.slots,
            heartbeat: Duration::from_millis(cfg.heartbeat_ms),
            grace: Duration::from_millis(cfg.grace_ms),
            labels: cfg.labels.clone(),
        };
        let worker = Worker::new(id, config, runtime, broker, blobs);
        tracing::info!(worker = %worker.id(), slots = cfg.slots, labels = ?cfg.labels, "worker starting");
        if let Some(addr) = cfg.metrics_listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the metrics address {addr}"))?;
            let app = axum::Router::new().route("/metrics", axum::routing::get(|| async { crate::metrics::render() }));
            tracing::info!(%addr, "serving /metrics");
            tokio::spawn(async move { axum::serve(listener, app).await });
        }
        let w = worker.clone();
        let task = tokio::spawn(async move { w.run().await });
        Ok(Self { worker, task })
    }

    /// This worker's id.
    pub fn id(&self) -> &WorkerId {
        self.worker.id()
    }

    /// Runs until the worker fails or `shutdown_signal` resolves; then drains: running jobs are
    /// asked to checkpoint (interrupt reason `shutdown`), reported suspended and queued again at
    /// once.
    pub async fn run_until(mut self, shutdown_signal: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        let result = tokio::select! {
            () = shutdown_signal => Ok(()),
            r = &mut self.task => {
                return match r {
                    // Drained on the coordinator's command.
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(anyhow::Error::new(e).context("the worker panicked")),
                };
            }
        };
        tracing::info!(worker = %self.worker.id(), "draining running jobs");
        self.worker.drain().await;
        self.task.abort();
        result
    }
}
