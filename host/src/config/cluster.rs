//! Configuration of the distributed processes, `niyanta coordinator` and `niyanta worker`, layered
//! like [`super::ServeConfig`]: defaults, a TOML file, then flags and their `NIYANTA_*` variables.
//!
//! ```toml
//! # coordinator
//! database_url = "postgres://niyanta@db:5432/niyanta"
//! nats_url = "nats://nats:4222"
//! blob_url = "s3://niyanta-blobs?region=eu-west-1"
//! listen = "0.0.0.0:7171"
//! [tiers.free]   # as for `niyanta serve`
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::layered;
use crate::tier::{Tiers, default_tiers, max_memory_bytes};

/// The effective configuration of `niyanta coordinator`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorSettings {
    /// PostgreSQL, `postgres://user[:password]@host:port/database`. Required.
    pub database_url: String,
    /// Schema of the tables (created when missing); empty for the database's default.
    pub database_schema: String,
    /// Most database connections.
    pub database_connections: u32,
    /// NATS, `nats://host:port`.
    pub nats_url: String,
    /// Subjects are `niyanta.v1.{nats_namespace}.…`; installations sharing a NATS server differ here.
    pub nats_namespace: String,
    /// Object storage: `s3://BUCKET?endpoint=…&region=…` or `file:///DIR`. Required.
    pub blob_url: String,
    /// Address of the HTTP API.
    pub listen: SocketAddr,
    /// Name in leader election and logs; empty for a generated one.
    pub id: String,
    /// A worker silent this long loses its leases, milliseconds.
    pub lease_timeout_ms: u64,
    /// A leader's term lasts this long unrenewed (renewed every second), milliseconds.
    pub leader_ttl_ms: u64,
    /// Ended jobs, with their logs, checkpoints and output, are deleted this long after they
    /// finished, milliseconds (default 30 days); 0 keeps them.
    pub retention_ms: u64,
    /// A component no workload names and no job that has not ended needs is deleted once it has
    /// been unused this long, milliseconds (default 600,000: 10 minutes; at least 1,000).
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

impl Default for CoordinatorSettings {
    fn default() -> Self {
        Self {
            database_url: String::new(),
            database_schema: String::new(),
            database_connections: 16,
            nats_url: "nats://127.0.0.1:4222".to_owned(),
            nats_namespace: "default".to_owned(),
            blob_url: String::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7171)),
            id: String::new(),
            lease_timeout_ms: 3_000,
            leader_ttl_ms: 3_000,
            retention_ms: 30 * 24 * 3_600_000,
            component_grace_ms: crate::coordinator::DEFAULT_COMPONENT_GRACE.as_millis() as u64,
            host_retry: crate::state::RetryPolicy::HOST,
            tiers: default_tiers(),
        }
    }
}

/// Flags of `niyanta coordinator` (and `migrate`); `None` keeps the lower layer.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CoordinatorOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_schema: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_timeout_ms: Option<u64>,
}

impl CoordinatorSettings {
    /// Defaults, then the file, then the overrides. Errors name a missing or invalid setting.
    pub fn load(file: Option<&Path>, overrides: &CoordinatorOverrides) -> anyhow::Result<Self> {
        let cfg: Self = layered(file, overrides)?;
        anyhow::ensure!(!cfg.database_url.is_empty(), "give --database-url (or NIYANTA_DATABASE_URL)");
        anyhow::ensure!(!cfg.blob_url.is_empty(), "give --blob-url (or NIYANTA_BLOB_URL)");
        anyhow::ensure!(!cfg.tiers.is_empty(), "the configuration defines no tiers");
        anyhow::ensure!(cfg.lease_timeout_ms >= 500, "lease_timeout_ms must be at least 500");
        anyhow::ensure!(cfg.leader_ttl_ms >= 2_000, "leader_ttl_ms must be at least 2000 (renewed every 1000)");
        anyhow::ensure!(cfg.component_grace_ms >= 1_000, "component_grace_ms must be at least 1000");
        cfg.host_retry.validate().map_err(|e| anyhow::anyhow!("host_retry: {}", e.replace("retry.", "")))?;
        Ok(cfg)
    }
}

/// The effective configuration of `niyanta worker`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// NATS, `nats://host:port`.
    pub nats_url: String,
    /// As the coordinator's.
    pub nats_namespace: String,
    /// Object storage, as the coordinator's. Required.
    pub blob_url: String,
    /// Jobs run at once (default: [`super::default_slots`], 8 per core).
    pub slots: u32,
    /// Labels for placement.
    pub labels: BTreeMap<String, String>,
    /// Worker id (1 to 64 letters, digits, `-`, `_`); empty for `{hostname}-{random}`. A worker
    /// restarted under the same id holds none of its old leases.
    pub id: String,
    /// Time between heartbeats, milliseconds.
    pub heartbeat_ms: u64,
    /// How long an interrupted job may take to stop before it is stopped by force, milliseconds.
    pub grace_ms: u64,
    /// Directory of the compiled-artifact cache (default: [`default_cache_dir`]).
    pub cache_dir: PathBuf,
    /// Largest linear memory a job may get, bytes (the sandbox's slot size; at least the largest
    /// tier's `memory_bytes`).
    pub max_memory_bytes: u64,
    /// Where to serve `GET /metrics` (Prometheus text: fuel, checkpoints, compile cache); `None`:
    /// not served.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// The worker's artifact cache when none is configured: `niyanta/artifacts` under the user's cache
/// directory (`$XDG_CACHE_HOME`, else `~/.cache`, per the XDG Base Directory Specification; the
/// platform's own convention elsewhere, by the `etcetera` crate), else under the system's
/// temporary directory when there is no home directory. Never the directory the worker was
/// started from.
pub fn default_cache_dir() -> PathBuf {
    use etcetera::BaseStrategy as _;
    etcetera::choose_base_strategy()
        .map_or_else(|_| std::env::temp_dir().join("niyanta"), |s| s.cache_dir().join("niyanta"))
        .join("artifacts")
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            nats_url: "nats://127.0.0.1:4222".to_owned(),
            nats_namespace: "default".to_owned(),
            blob_url: String::new(),
            slots: super::default_slots(),
            labels: BTreeMap::new(),
            id: String::new(),
            heartbeat_ms: 1_000,
            grace_ms: 5_000,
            cache_dir: default_cache_dir(),
            max_memory_bytes: max_memory_bytes(&default_tiers()),
            metrics_listen: None,
        }
    }
}

/// Flags of `niyanta worker`; `None` keeps the lower layer.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WorkerOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slots: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl WorkerSettings {
    /// Defaults, then the file, then the overrides. Errors name a missing or invalid setting.
    pub fn load(file: Option<&Path>, overrides: &WorkerOverrides) -> anyhow::Result<Self> {
        let cfg: Self = layered(file, overrides)?;
        anyhow::ensure!(!cfg.blob_url.is_empty(), "give --blob-url (or NIYANTA_BLOB_URL)");
        anyhow::ensure!(cfg.slots >= 1, "slots must be at least 1");
        anyhow::ensure!(cfg.heartbeat_ms >= 50, "heartbeat_ms must be at least 50");
        if !cfg.id.is_empty() {
            crate::ids::WorkerId::parse(&cfg.id).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(cfg)
    }
}

/// Parses `KEY=VALUE` labels (`--label`). Keys and values: 1 to 63 letters, digits, `-`, `_`, `.`.
pub fn parse_labels(given: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let valid =
        |s: &str| (1..=63).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    given
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').ok_or_else(|| anyhow::anyhow!("label {l:?} is not KEY=VALUE"))?;
            anyhow::ensure!(
                valid(k) && valid(v),
                "label {l:?}: keys and values are 1 to 63 letters, digits, '-', '_' or '.'"
            );
            Ok((k.to_owned(), v.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_settings_layer_and_name_what_is_missing() -> anyhow::Result<()> {
        let err = CoordinatorSettings::load(None, &CoordinatorOverrides::default()).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("--database-url")));
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "database_url = \"postgres://x@h/db\"\nblob_url = \"file:///tmp/b\"\nlease_timeout_ms = 900\n",
        )?;
        let over = CoordinatorOverrides { lease_timeout_ms: Some(1_200), ..CoordinatorOverrides::default() };
        let cfg = CoordinatorSettings::load(Some(&file), &over)?;
        assert_eq!((cfg.database_url.as_str(), cfg.lease_timeout_ms), ("postgres://x@h/db", 1_200));
        assert_eq!(cfg.nats_namespace, "default");

        let over =
            WorkerOverrides { blob_url: Some("file:///b".into()), id: Some("bad id".into()), ..Default::default() };
        let err = WorkerSettings::load(None, &over).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("worker id")));
        let labels = parse_labels(&["zone=a".into(), "gpu=no".into()])?;
        assert_eq!(labels.get("zone").map(String::as_str), Some("a"));
        assert!(parse_labels(&["nolabel".into()]).is_err());
        assert!(parse_labels(&["k=v w".into()]).is_err());
        Ok(())
    }

    #[test]
    fn the_default_artifact_cache_is_the_users_not_the_working_directorys() {
        let dir = WorkerSettings::default().cache_dir;
        assert!(dir.is_absolute(), "{}", dir.display());
        assert!(dir.ends_with("niyanta/artifacts"), "{}", dir.display());
        let home = std::env::var_os("XDG_CACHE_HOME").or_else(|| std::env::var_os("HOME"));
        if let Some(home) = home.map(PathBuf::from).filter(|h| h.is_absolute()) {
            assert!(dir.starts_with(&home), "{} is not under {}", dir.display(), home.display());
        }
    }
}
