//! `niyanta serve`: the embedded all-in-one node.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::{ServeConfig, ServeOverrides};
use crate::embedded::Node;

/// Flags of `niyanta serve`; each also reads its environment variable.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Directory for the database, blobs and compiled artifacts [default: ./niyanta-data].
    #[arg(long, env = "NIYANTA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the HTTP API [default: 127.0.0.1:7171].
    #[arg(long, env = "NIYANTA_LISTEN")]
    listen: Option<SocketAddr>,
    /// Job slots of the worker [default: number of cores].
    #[arg(long, env = "NIYANTA_SLOTS")]
    slots: Option<u32>,
    /// TOML configuration file (tiers, limits, and the settings above).
    #[arg(long, env = "NIYANTA_CONFIG")]
    config: Option<PathBuf>,
    /// Log filter, e.g. `info` or `niyanta=debug` (tracing's EnvFilter syntax).
    #[arg(long, env = "NIYANTA_LOG", default_value = "info")]
    log: String,
    /// Log lines as JSON objects instead of text.
    #[arg(long, env = "NIYANTA_LOG_JSON")]
    log_json: bool,
}

/// Logging to stderr at the `filter` level; `json`: one JSON object per line, the event's fields
/// at the top level and the fields of the span it happened in (a job's `job_id`, `tenant_id`,
/// `worker_id`, `attempt` on a worker) under `span`.
pub(super) fn init_tracing(filter: &str, json: bool) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("--log {filter:?} is not a valid filter: {e}"))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let res = if json {
        builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init()
    } else {
        builder.try_init()
    };
    res.map_err(|e| anyhow::anyhow!("cannot initialise logging: {e}"))
}

pub(super) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing(&args.log, args.log_json)?;
    let overrides = ServeOverrides { data_dir: args.data_dir, listen: args.listen, slots: args.slots };
    let cfg = ServeConfig::load(args.config.as_deref(), &overrides)?;
    tracing::info!(
        data_dir = %cfg.data_dir.display(),
        listen = %cfg.listen,
        slots = cfg.slots,
        tiers = ?cfg.tiers.keys().collect::<Vec<_>>(),
        "starting niyanta serve"
    );
    let admin_key = std::env::var("NIYANTA_ADMIN_KEY").ok();
    let node = Node::start(&cfg, admin_key).await?;
    if let Some(key) = &node.generated_admin_key {
        // Shown once: only its digest is stored.
        println!("admin key (shown once, keep it): {key}");
    }
    println!("niyanta listening on http://{}", node.addr);
    node.run_until(shutdown_signal()).await
}
