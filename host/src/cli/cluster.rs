//! `niyanta coordinator`, `niyanta worker` and `niyanta migrate`: the distributed processes.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::log::LogArgs;
use super::serve::shutdown_signal;
use crate::cluster::{CoordinatorNode, WorkerNode};
use crate::config::cluster::{
    CoordinatorOverrides, CoordinatorSettings, WorkerOverrides, WorkerSettings, parse_labels,
};

/// Where the state, messages and blobs are; shared by `coordinator` and `migrate`.
#[derive(Debug, clap::Args)]
pub struct StateArgs {
    /// PostgreSQL URL, postgres://user[:password]@host:port/database.
    #[arg(long, env = "NIYANTA_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Schema of Niyanta's tables (created when missing) [default: the database's default].
    #[arg(long, env = "NIYANTA_DATABASE_SCHEMA")]
    database_schema: Option<String>,
    /// TOML configuration file (tiers, and the settings of these flags).
    #[arg(long, env = "NIYANTA_CONFIG")]
    config: Option<PathBuf>,
}

/// Flags of `niyanta coordinator`.
#[derive(Debug, clap::Args)]
pub struct CoordinatorArgs {
    #[command(flatten)]
    state: StateArgs,
    /// NATS URL [default: nats://127.0.0.1:4222].
    #[arg(long, env = "NIYANTA_NATS_URL")]
    nats_url: Option<String>,
    /// Subjects are niyanta.v1.NAMESPACE.… [default: default].
    #[arg(long, env = "NIYANTA_NATS_NAMESPACE")]
    nats_namespace: Option<String>,
    /// Object storage: s3://BUCKET?endpoint=…&region=… or file:///DIR.
    #[arg(long, env = "NIYANTA_BLOB_URL")]
    blob_url: Option<String>,
    /// Address of the HTTP API [default: 127.0.0.1:7171].
    #[arg(long, env = "NIYANTA_LISTEN")]
    listen: Option<SocketAddr>,
    /// Name in leader election and logs [default: generated].
    #[arg(long, env = "NIYANTA_COORDINATOR_ID")]
    id: Option<String>,
    /// A worker silent this long loses its leases, in milliseconds [default: 3000].
    #[arg(long, env = "NIYANTA_LEASE_TIMEOUT_MS")]
    lease_timeout_ms: Option<u64>,
    #[command(flatten)]
    log: LogArgs,
}

/// Flags of `niyanta worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// NATS URL [default: nats://127.0.0.1:4222].
    #[arg(long, env = "NIYANTA_NATS_URL")]
    nats_url: Option<String>,
    /// Subjects are niyanta.v1.NAMESPACE.… [default: default].
    #[arg(long, env = "NIYANTA_NATS_NAMESPACE")]
    nats_namespace: Option<String>,
    /// Object storage, as the coordinator's.
    #[arg(long, env = "NIYANTA_BLOB_URL")]
    blob_url: Option<String>,
    /// Jobs run at once [default: 8 per core].
    #[arg(long, env = "NIYANTA_SLOTS")]
    slots: Option<u32>,
    /// A placement label, KEY=VALUE; repeat for more (env: comma-separated).
    #[arg(long = "label", env = "NIYANTA_LABELS", value_delimiter = ',')]
    labels: Vec<String>,
    /// Worker id [default: HOSTNAME-RANDOM]. A restarted worker never keeps its old leases.
    #[arg(long, env = "NIYANTA_WORKER_ID")]
    id: Option<String>,
    /// Time between heartbeats, in milliseconds [default: 1000].
    #[arg(long, env = "NIYANTA_HEARTBEAT_MS")]
    heartbeat_ms: Option<u64>,
    /// Directory of the compiled-artifact cache [default: $XDG_CACHE_HOME/niyanta/artifacts, or
    /// ~/.cache/niyanta/artifacts].
    #[arg(long, env = "NIYANTA_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Serve `GET /metrics` (Prometheus text: fuel, checkpoints, compile cache) at this address
    /// [default: not served].
    #[arg(long, env = "NIYANTA_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// TOML configuration file (the settings of these flags).
    #[arg(long, env = "NIYANTA_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    log: LogArgs,
}

fn coordinator_settings(state: StateArgs, more: CoordinatorOverrides) -> anyhow::Result<CoordinatorSettings> {
    let over =
        CoordinatorOverrides { database_url: state.database_url, database_schema: state.database_schema, ..more };
    CoordinatorSettings::load(state.config.as_deref(), &over)
}

pub async fn coordinator(args: CoordinatorArgs) -> anyhow::Result<()> {
    let telemetry = args.log.init("niyanta-coordinator")?;
    let more = CoordinatorOverrides {
        nats_url: args.nats_url,
        nats_namespace: args.nats_namespace,
        blob_url: args.blob_url,
        listen: args.listen,
        id: args.id,
        lease_timeout_ms: args.lease_timeout_ms,
        ..CoordinatorOverrides::default()
    };
    let cfg = coordinator_settings(args.state, more)?;
    tracing::info!(listen = %cfg.listen, nats = %cfg.nats_url, namespace = %cfg.nats_namespace, "starting niyanta coordinator");
    let node = CoordinatorNode::start(&cfg, std::env::var("NIYANTA_ADMIN_KEY").ok()).await?;
    if let Some(key) = &node.generated_admin_key {
        println!("admin key (shown once, keep it): {key}");
    }
    println!("niyanta coordinator listening on http://{}", node.addr);
    let result = node.run_until(shutdown_signal()).await;
    telemetry.shutdown().await;
    result
}

pub async fn migrate(args: StateArgs) -> anyhow::Result<()> {
    // Only the database matters here: placeholders satisfy the other required settings.
    let more = CoordinatorOverrides { blob_url: Some("file:///unused".to_owned()), ..CoordinatorOverrides::default() };
    let cfg = coordinator_settings(args, more)?;
    crate::cluster::migrate(&cfg).await?;
    println!("migrations applied");
    Ok(())
}

pub async fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    let telemetry = args.log.init("niyanta-worker")?;
    let labels = parse_labels(&args.labels)?;
    let over = WorkerOverrides {
        nats_url: args.nats_url,
        nats_namespace: args.nats_namespace,
        blob_url: args.blob_url,
        slots: args.slots,
        labels: Some(labels).filter(|l| !l.is_empty()),
        id: args.id,
        heartbeat_ms: args.heartbeat_ms,
        cache_dir: args.cache_dir,
        metrics_listen: args.metrics_listen,
    };
    let cfg = WorkerSettings::load(args.config.as_deref(), &over)?;
    let node = WorkerNode::start(&cfg).await?;
    println!("niyanta worker {} started", node.id());
    let result = node.run_until(shutdown_signal()).await;
    telemetry.shutdown().await;
    result
}
