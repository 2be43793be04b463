//! Configuration of the `niyanta` processes: built-in defaults, then a TOML file, then flags
//! (each flag also reads an environment variable). Unknown keys in the file are refused.
//! [`ServeConfig`] is the embedded node's; [`cluster`] holds the coordinator's and the worker's.
//! A `niyanta serve` file:
//!
//! ```toml
//! data_dir = "/var/lib/niyanta"
//! listen = "0.0.0.0:7171"
//! slots = 8
//!
//! [tiers.free]            # replaces or adds a tier; every field but the quotas is required
//! fuel_per_job = 20000000000
//! memory_bytes = 33554432
//! # ...
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::tier::{Tiers, default_tiers};

pub mod cluster;

/// Defaults of `T`, then the TOML `file` (when given), then `overrides` (fields left out of
/// its serialization keep the lower layer).
pub(crate) fn layered<T>(file: Option<&Path>, overrides: &impl Serialize) -> anyhow::Result<T>
where
    T: Default + Serialize + for<'de> Deserialize<'de>,
{
    let mut fig = Figment::from(Serialized::defaults(T::default()));
    if let Some(file) = file {
        anyhow::ensure!(file.exists(), "the configuration file {} does not exist", file.display());
        fig = fig.merge(Toml::file_exact(file));
    }
    fig.merge(Serialized::defaults(overrides))
        .extract()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("reading the configuration")
}

/// Job slots per core by default ([`default_slots`]).
pub const SLOTS_PER_CORE: u32 = 8;

/// The default slot count of a worker: [`SLOTS_PER_CORE`] per core. A slot is cheap while its job
/// waits on I/O, and the guests' CPU is bounded by the runtime's threads (one per core), not by
/// the slots, so one slot per core left short jobs waiting on each other's round trips: on the
/// embedded benchmark (10,000 `echo` jobs, 2 cores) 2 slots ended 1,421 jobs/s, 16 slots 4,091,
/// 64 slots 6,553 and 128 slots 6,469 (BENCHMARKS.md). More than 8 per core buys little for short
/// jobs, while CPU-bound jobs would share each core that many ways, stretching each attempt's
/// wall time towards its tier's limit; each running job may also hold its tier's memory.
pub fn default_slots() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    cores.saturating_mul(SLOTS_PER_CORE)
}

/// The effective configuration of `niyanta serve`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Directory of the SQLite database, blobs and compiled-artifact cache.
    pub data_dir: PathBuf,
    /// Address of the HTTP API.
    pub listen: SocketAddr,
    /// Job slots of the embedded worker (default: [`default_slots`], 8 per core).
    pub slots: u32,
    /// A worker silent this long loses its leases, in milliseconds.
    pub lease_timeout_ms: u64,
    /// Time between worker heartbeats, in milliseconds.
    pub heartbeat_ms: u64,
    /// How long an interrupted job may take to stop before it is stopped by force, in
    /// milliseconds.
    pub grace_ms: u64,
    /// A component no workload names and no job that has not ended needs is deleted once it has
    /// been unused this long, in milliseconds (default 600,000: 10 minutes; at least 1,000).
    pub component_grace_ms: u64,
    /// How attempts that end in a host error (class `host_error`: the object store, the broker
    /// or the state store failed, or the worker could not load the component) are retried, apart
    /// from the job's own retry policy; the job ends `dead` when none is left. TOML table
    /// `[host_retry]` with `max_attempts`, `initial_backoff_ms`, `max_backoff_ms` (default 5
    /// attempts, backoff 1,000 ms doubling to 30,000 ms).
    pub host_retry: crate::state::RetryPolicy,
    /// Tiers by name.
    pub tiers: Tiers,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("niyanta-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7171)),
            slots: default_slots(),
            lease_timeout_ms: 3_000,
            heartbeat_ms: 1_000,
            grace_ms: 5_000,
            component_grace_ms: crate::coordinator::DEFAULT_COMPONENT_GRACE.as_millis() as u64,
            host_retry: crate::state::RetryPolicy::HOST,
            tiers: default_tiers(),
        }
    }
}

/// Values given on the command line (or their environment variables); `None` keeps the lower layer.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ServeOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slots: Option<u32>,
}

impl ServeConfig {
    /// Defaults, then the file (when given), then the overrides.
    pub fn load(file: Option<&Path>, overrides: &ServeOverrides) -> anyhow::Result<Self> {
        let cfg: ServeConfig = layered(file, overrides)?;
        anyhow::ensure!(cfg.slots >= 1, "slots must be at least 1");
        anyhow::ensure!(cfg.component_grace_ms >= 1_000, "component_grace_ms must be at least 1000");
        cfg.host_retry.validate().map_err(|e| anyhow::anyhow!("host_retry: {}", e.replace("retry.", "")))?;
        anyhow::ensure!(!cfg.tiers.is_empty(), "the configuration defines no tiers");
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_merge_and_unknown_keys_are_refused() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("niyanta.toml");
        std::fs::write(
            &file,
            "slots = 3\nlisten = \"127.0.0.1:9000\"\n[tiers.tiny]\nfuel_per_job = 10\nmemory_bytes = 65536\n\
             wall_clock_ms = 10\nconcurrent_jobs = 1\nqueued_jobs = 1\ninput_bytes = 1\noutput_bytes = 1\n\
             checkpoint_bytes = 1\ncomponent_bytes = 1\npriority = -5\n",
        )?;
        let over = ServeOverrides { slots: Some(5), ..ServeOverrides::default() };
        let cfg = ServeConfig::load(Some(&file), &over)?;
        assert_eq!(cfg.slots, 5);
        assert_eq!(cfg.listen.port(), 9000);
        assert_eq!(cfg.tiers.get("tiny").map(|t| t.priority), Some(-5));
        assert!(cfg.tiers.contains_key("premium"));

        // The documented example configuration spells out exactly the built-in tiers.
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/niyanta.toml");
        let cfg = ServeConfig::load(Some(&example), &ServeOverrides::default())?;
        assert_eq!(cfg.tiers, default_tiers());
        assert_eq!(cfg.slots, 8);

        std::fs::write(&file, "slotz = 3\n")?;
        let err = ServeConfig::load(Some(&file), &ServeOverrides::default()).err().map(|e| format!("{e:#}"));
        assert!(err.is_some_and(|e| e.contains("slotz")));
        Ok(())
    }
}
