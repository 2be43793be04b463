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
    #[command(flatten)]
    log: LogArgs,
}

/// Logging and tracing flags shared by the long-running commands.
#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// Log filter, e.g. `info` or `niyanta=debug` (tracing's EnvFilter syntax).
    #[arg(long, env = "NIYANTA_LOG", default_value = "info")]
    log: String,
    /// Log lines as JSON objects instead of text.
    #[arg(long, env = "NIYANTA_LOG_JSON")]
    log_json: bool,
    /// Export job traces (spans) to this OpenTelemetry collector, OTLP over HTTP with JSON
    /// (e.g. `http://127.0.0.1:4318`; spans go to `/v1/traces`). Batching follows the
    /// `OTEL_BSP_*` variables. Without it, trace ids are still made, propagated and logged.
    #[arg(long, env = "NIYANTA_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
}

impl LogArgs {
    /// Logging to stderr at the `--log` level (`--log-json`: one JSON object per line, the
    /// event's fields at the top level and the fields of the span it happened in, such as a job's
    /// `job_id`, `tenant_id`, `worker_id`, `attempt` and `trace_id`, under `span`), and traces
    /// of `service` (see [`crate::trace`]). The filter applies to both: trace spans are `info`
    /// spans of `niyanta` targets. Errors: a bad filter or endpoint.
    pub(super) fn init(&self, service: &'static str) -> anyhow::Result<crate::trace::Telemetry> {
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        let filter = tracing_subscriber::EnvFilter::try_new(&self.log)
            .map_err(|e| anyhow::anyhow!("--log {:?} is not a valid filter: {e}", self.log))?;
        let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
        let fmt = if self.log_json {
            fmt.json().flatten_event(true).with_current_span(true).with_span_list(false).boxed()
        } else {
            fmt.boxed()
        };
        let (traces, telemetry) = crate::trace::layer(self.otlp_endpoint.as_deref(), service)?;
        tracing_subscriber::registry()
            .with(filter)
            .with(fmt)
            .with(traces)
            .try_init()
            .map_err(|e| anyhow::anyhow!("cannot initialise logging: {e}"))?;
        Ok(telemetry)
    }
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
