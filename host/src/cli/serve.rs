//! `niyanta serve`: the embedded all-in-one node.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::{ServeConfig, ServeOverrides};
use crate::embedded::Node;

use super::log::LogArgs;

/// Flags of `niyanta serve`; each also reads its environment variable.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Directory for the database, blobs and compiled artifacts [default: ./niyanta-data].
    #[arg(long, env = "NIYANTA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the HTTP API [default: 127.0.0.1:7171].
    #[arg(long, env = "NIYANTA_LISTEN")]
    listen: Option<SocketAddr>,
    /// Job slots of the worker [default: 8 per core].
    #[arg(long, env = "NIYANTA_SLOTS")]
    slots: Option<u32>,
    /// TOML configuration file (tiers, limits, and the settings above).
    #[arg(long, env = "NIYANTA_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    log: LogArgs,
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
    let telemetry = args.log.init("niyanta-serve")?;
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
    let result = node.run_until(shutdown_signal()).await;
    telemetry.shutdown().await;
    result
}
