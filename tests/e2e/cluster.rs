//! The distributed harness: `niyanta coordinator` and `niyanta worker` processes over the real
//! PostgreSQL and NATS on loopback. Each cluster gets its own database schema, NATS namespace and
//! blob directory (or S3 bucket), so clusters of parallel tests never see each other.

use std::ffi::OsString;
use std::process::{Child, Command};
use std::time::Duration;

use crate::common::{ADMIN_KEY, TIERS, Tenant, create_tenant, spawn_niyanta};

/// The PostgreSQL of the tests (`NIYANTA_TEST_DATABASE_URL`).
pub fn database_url() -> String {
    std::env::var("NIYANTA_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The NATS server of the tests (`NIYANTA_TEST_NATS_URL`).
pub fn nats_url() -> String {
    std::env::var("NIYANTA_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A process of the cluster.
pub struct Proc {
    pub child: Option<Child>,
    /// The coordinator's API URL, or the worker's id.
    pub name: String,
    pub log: std::path::PathBuf,
}

impl Proc {
    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal (`STOP`, `CONT`, `TERM`).
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill").args([&format!("-{sig}"), &pid]).status().expect("kill");
        assert!(ok.success(), "kill -{sig} {pid}");
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn terminate(&mut self) {
        self.signal("TERM");
        let status = self.child.take().expect("running").wait().expect("wait");
        assert!(status.success(), "{} exited with {status} after SIGTERM:\n{}", self.name, self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One installation: coordinators and workers sharing a schema, a namespace and blob storage.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub schema: String,
    pub namespace: String,
    pub blob_url: String,
    pub coordinators: Vec<Proc>,
    pub workers: Vec<Proc>,
    lease_timeout_ms: u64,
    database_url: String,
    nats_url: String,
    /// Each worker's slots and labels, to restart it under the same id.
    worker_specs: Vec<(u32, Vec<String>)>,
    /// More environment variables of every process started from now on.
    env: Vec<(String, String)>,
}

impl Cluster {
    /// An empty cluster with blobs in a local directory.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let blob_url = format!("file://{}", dir.path().join("blobs").display());
        Self::with_blobs(dir, blob_url)
    }

    /// An empty cluster with blobs at `blob_url`.
    pub fn with_blobs(dir: tempfile::TempDir, blob_url: String) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        std::fs::write(dir.path().join("niyanta.toml"), TIERS).expect("config");
        Self {
            dir,
            schema: format!("e2e_{}", &id[..16]),
            namespace: format!("e2e-{}", &id[..16]),
            blob_url,
            coordinators: Vec::new(),
            workers: Vec::new(),
            lease_timeout_ms: 3_000,
            database_url: database_url(),
            nats_url: nats_url(),
            worker_specs: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Uses this PostgreSQL and NATS instead of the shared ones (for tests that restart them).
    pub fn backends(mut self, database_url: String, nats_url: String) -> Self {
        self.database_url = database_url;
        self.nats_url = nats_url;
        self
    }

    /// Sets an environment variable of every process started from now on.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The environment of a process: S3 credentials and the variables set with [`Self::env`].
    fn process_env(&self) -> Vec<(&str, &str)> {
        s3_env().into_iter().chain(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str()))).collect()
    }

    /// Sets the retention period (`retention_ms` in the configuration file) of coordinators
    /// started from now on.
    pub fn retention_ms(self, ms: u64) -> Self {
        let config = format!("retention_ms = {ms}\n{TIERS}");
        std::fs::write(self.dir.path().join("niyanta.toml"), config).expect("config");
        self
    }

    /// Sets coordinator settings (TOML lines, e.g. `component_grace_ms = 1000`) of the
    /// configuration file of coordinators started from now on, replacing earlier ones.
    pub fn settings(self, lines: &str) -> Self {
        let config = format!("{lines}\n{TIERS}");
        std::fs::write(self.dir.path().join("niyanta.toml"), config).expect("config");
        self
    }

    /// Sets the lease timeout of coordinators started from now on.
    pub fn lease_timeout_ms(mut self, ms: u64) -> Self {
        self.lease_timeout_ms = ms;
        self
    }

    /// Starts a coordinator; returns its index.
    pub fn coordinator(&mut self) -> usize {
        let n = self.coordinators.len();
        let log = self.dir.path().join(format!("coordinator-{n}.log"));
        let args: Vec<OsString> = vec![
            "coordinator".into(),
            "--database-url".into(),
            self.database_url.clone().into(),
            "--database-schema".into(),
            self.schema.clone().into(),
            "--nats-url".into(),
            self.nats_url.clone().into(),
            "--nats-namespace".into(),
            self.namespace.clone().into(),
            "--blob-url".into(),
            self.blob_url.clone().into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--id".into(),
            format!("c{n}").into(),
            "--lease-timeout-ms".into(),
            self.lease_timeout_ms.to_string().into(),
            "--config".into(),
            self.dir.path().join("niyanta.toml").into_os_string(),
        ];
        let (child, url) = spawn_niyanta(&args, &self.process_env(), &log, "niyanta coordinator listening on ");
        self.coordinators.push(Proc { child: Some(child), name: url, log });
        n
    }

    /// Starts a worker with `slots` slots and the given labels; returns its index.
    pub fn worker(&mut self, slots: u32, labels: &[&str]) -> usize {
        let n = self.workers.len();
        self.worker_specs.push((slots, labels.iter().map(|l| (*l).to_owned()).collect()));
        let proc = self.spawn_worker(n);
        self.workers.push(proc);
        n
    }

    /// Starts worker `i` again under the same id (after it was killed).
    pub fn restart_worker(&mut self, i: usize) {
        assert!(self.workers[i].child.is_none(), "stop worker {i} first");
        self.workers[i] = self.spawn_worker(i);
    }

    fn spawn_worker(&self, n: usize) -> Proc {
        let (slots, labels) = &self.worker_specs[n];
        let log = self.dir.path().join(format!("worker-{n}.log"));
        let mut args: Vec<OsString> = vec![
            "worker".into(),
            "--nats-url".into(),
            self.nats_url.clone().into(),
            "--nats-namespace".into(),
            self.namespace.clone().into(),
            "--blob-url".into(),
            self.blob_url.clone().into(),
            "--slots".into(),
            slots.to_string().into(),
            "--id".into(),
            format!("w{n}").into(),
            "--cache-dir".into(),
            self.dir.path().join(format!("cache-{n}")).into_os_string(),
        ];
        for l in labels {
            args.push("--label".into());
            args.push(l.into());
        }
        let (child, _) = spawn_niyanta(&args, &self.process_env(), &log, "niyanta worker ");
        Proc { child: Some(child), name: format!("w{n}"), log }
    }

    /// The API URL of coordinator `i`.
    pub fn url(&self, i: usize) -> &str {
        &self.coordinators[i].name
    }

    /// Creates a tenant through coordinator 0.
    pub async fn tenant(&self, name: &str, tier: &str) -> Tenant {
        create_tenant(self.url(0), name, tier).await
    }

    /// The index of the coordinator that leads now (asks each one), waiting up to `limit`.
    pub async fn leader(&self, limit: Duration) -> usize {
        let start = std::time::Instant::now();
        loop {
            for (i, c) in self.coordinators.iter().enumerate() {
                if c.child.is_none() {
                    continue;
                }
                // A paused coordinator does not answer; it is asked again on the next turn.
                let admin = niyanta::cli::Client::new(&c.name, Some(ADMIN_KEY.to_owned()));
                let rb = admin.request(reqwest::Method::GET, "/v1/cluster").timeout(Duration::from_secs(2));
                if let Ok(v) = admin.json::<serde_json::Value>(rb).await
                    && v["leader"] == true
                {
                    return i;
                }
            }
            assert!(start.elapsed() < limit, "no coordinator leads after {limit:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether coordinator `i` answers `/v1/cluster` within 2 s that it leads.
    pub async fn says_it_leads(&self, i: usize) -> Option<bool> {
        let admin = niyanta::cli::Client::new(self.url(i), Some(ADMIN_KEY.to_owned()));
        let rb = admin.request(reqwest::Method::GET, "/v1/cluster").timeout(Duration::from_secs(2));
        admin.json::<serde_json::Value>(rb).await.ok().map(|v| v["leader"] == true)
    }

    /// The workers the leader knows, as `/v1/cluster` lists them.
    pub async fn workers_seen(&self, leader: usize) -> serde_json::Value {
        let admin = niyanta::cli::Client::new(self.url(leader), Some(ADMIN_KEY.to_owned()));
        let rb = admin.request(reqwest::Method::GET, "/v1/cluster");
        admin.json::<serde_json::Value>(rb).await.expect("cluster view")["workers"].clone()
    }

    /// Waits until the leader knows `n` workers.
    pub async fn wait_workers(&self, n: usize) {
        let start = std::time::Instant::now();
        loop {
            let leader = self.leader(Duration::from_secs(15)).await;
            if self.workers_seen(leader).await.as_array().map_or(0, Vec::len) >= n {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "the leader does not see {n} workers");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// All logs, for failure messages.
    pub fn logs(&self) -> String {
        self.coordinators
            .iter()
            .chain(&self.workers)
            .map(|p| format!("==== {} ({})\n{}", p.name, p.log.display(), p.log_text()))
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Workers first, so none is left waiting on a coordinator; then the schema goes.
        self.workers.clear();
        self.coordinators.clear();
        let drop = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema);
        let url = self.database_url.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let pool = sqlx::PgPool::connect(&url).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&pool).await.ok()
            })
        })
        .join();
    }
}

/// A new bucket on the S3 test server that `scripts/test.sh` starts: its endpoint and name.
pub async fn s3_bucket() -> (String, String) {
    let endpoint = std::env::var("NIYANTA_TEST_S3_ENDPOINT")
        .expect("NIYANTA_TEST_S3_ENDPOINT is unset: scripts/test.sh starts a local S3-compatible server");
    let bucket = format!("e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let created = reqwest::Client::new().put(format!("{endpoint}/{bucket}")).send().await.expect("S3 server");
    assert!(created.status().is_success(), "creating bucket {bucket}: {}", created.status());
    (endpoint, bucket)
}

/// The S3 credentials and region for a local S3-compatible server (ignored by `file://` blobs).
fn s3_env() -> Vec<(&'static str, &'static str)> {
    vec![("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_REGION", "us-east-1")]
}
