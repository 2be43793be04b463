//! The test harness: a real `niyanta serve` process on loopback, a tenant client, helpers to
//! upload the example components and follow jobs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use niyanta::api::views::{CreatedTenant, JobView, WorkloadView};
use niyanta::cli::Client;
use reqwest::Method;
use serde_json::{Value, json};

pub const ADMIN_KEY: &str = "test-admin-key-0123456789";

/// Tiers for the tests, on top of the built-in ones (`free`, `standard`, `premium`).
const SERVE_SETTINGS: &str = "slots = 2\ngrace_ms = 1000\nlease_timeout_ms = 3000\n";

/// The test tiers, as TOML tables (for any process's configuration file).
pub const TIERS: &str = r#"
[tiers.test]
fuel_per_job = 5000000000
memory_bytes = 33554432
wall_clock_ms = 30000
concurrent_jobs = 8
queued_jobs = 1000
input_bytes = 67108864
output_bytes = 1048576
checkpoint_bytes = 65536
component_bytes = 4194304
priority = 0

[tiers.slow]
fuel_per_job = 10000000000000
memory_bytes = 33554432
wall_clock_ms = 1500
concurrent_jobs = 8
queued_jobs = 1000
input_bytes = 1048576
output_bytes = 1048576
checkpoint_bytes = 65536
component_bytes = 4194304
priority = 0

[tiers.bulk]
fuel_per_job = 5000000000
memory_bytes = 33554432
wall_clock_ms = 60000
concurrent_jobs = 64
queued_jobs = 5000
input_bytes = 1048576
output_bytes = 1048576
checkpoint_bytes = 65536
component_bytes = 4194304
priority = 0

[tiers.single]
fuel_per_job = 5000000000
memory_bytes = 33554432
wall_clock_ms = 60000
concurrent_jobs = 1
queued_jobs = 3
input_bytes = 1048576
output_bytes = 1048576
checkpoint_bytes = 65536
component_bytes = 4194304
priority = 0
"#;

/// Where the built example components are.
pub fn guests_dir() -> PathBuf {
    let dir = std::env::var_os("NIYANTA_GUESTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples-wasm/target/wasm32-wasip2/release"));
    assert!(
        dir.join("echo.wasm").exists(),
        "no example components in {}: run scripts/build-guests.sh first",
        dir.display()
    );
    dir
}

/// The bytes of an example component.
pub fn guest(name: &str) -> Vec<u8> {
    let path = guests_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Starts `niyanta ARGS` with the admin key and debug logging (stderr appended to `log`), and
/// waits for the stdout line that starts with `ready`: returns the child and the rest of that line.
pub fn spawn_niyanta(
    args: &[std::ffi::OsString],
    env: &[(&str, &str)],
    log: &Path,
    ready: &'static str,
) -> (Child, String) {
    let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_niyanta"))
        .args(args)
        .env("NIYANTA_ADMIN_KEY", ADMIN_KEY)
        .env("NIYANTA_LOG", "info,niyanta=debug")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .expect("spawning niyanta");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix(ready) {
                let _ = tx.send(rest.to_owned());
            }
        }
    });
    let rest = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        panic!("niyanta {args:?} did not start:\n{text}")
    });
    (child, rest)
}

/// Runs the `niyanta` CLI against the API at `url` with `key`.
pub fn cli(url: &str, key: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_niyanta"))
        .args(args)
        .env("NIYANTA_URL", url)
        .env("NIYANTA_API_KEY", key)
        .output()
        .expect("running niyanta")
}

/// Defines (or redefines) tier `name` through the CLI: the `test` tier with `settings`
/// (`field=value`) changed.
pub fn define_tier(server: &Server, name: &str, settings: &[&str]) {
    let mut args = vec!["tier", "set", name, "--like", "test"];
    args.extend_from_slice(settings);
    let out = cli(&server.url, ADMIN_KEY, &args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Creates a tenant on `tier` through the API at `url` and returns it with its key.
pub async fn create_tenant(url: &str, name: &str, tier: &str) -> Tenant {
    let admin = Client::new(url, Some(ADMIN_KEY.to_owned()));
    let rb = admin.request(Method::POST, "/v1/tenants").json(&json!({"name": name, "tier": tier}));
    let created: CreatedTenant = admin.json(rb).await.expect("creating a tenant");
    Tenant::new(url, &created.api_key)
}

/// The scheduling rounds the leader at `url` completed (`niyanta_scheduling_rounds_total`).
pub async fn scheduling_rounds(url: &str) -> u64 {
    let text = reqwest::get(format!("{url}/metrics")).await.expect("metrics").text().await.expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix("niyanta_scheduling_rounds_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Waits until the leader at `url` completed `n` more scheduling rounds than now: at least
/// `n - 1` whole rounds began after this call. A negative check (something did *not* start)
/// waits for this instead of a fixed time.
pub async fn wait_rounds(url: &str, n: u64) {
    let start = scheduling_rounds(url).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while scheduling_rounds(url).await < start + n {
        assert!(std::time::Instant::now() < deadline, "no {n} scheduling rounds in 30 s at {url}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `niyanta serve` process with its own data directory and port.
pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub dir: tempfile::TempDir,
    env: Vec<(&'static str, &'static str)>,
}

impl Server {
    /// Starts a server in a new temporary directory.
    pub fn start() -> Self {
        Self::start_with_env(&[])
    }

    /// Starts a server with more environment variables (`NIYANTA_LOG_JSON`, …).
    pub fn start_with_env(env: &[(&'static str, &'static str)]) -> Self {
        Self::start_with(&format!("{SERVE_SETTINGS}{TIERS}"), env)
    }

    /// Starts a server whose configuration file is `config` (settings and tiers, TOML).
    pub fn start_with_config(config: &str) -> Self {
        Self::start_with(config, &[])
    }

    fn start_with(config: &str, env: &[(&'static str, &'static str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("niyanta.toml"), config).expect("config");
        let mut s = Self { child: None, url: String::new(), dir, env: env.to_vec() };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let args = [
            "serve".into(),
            "--data-dir".into(),
            self.dir.path().join("data").into_os_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--config".into(),
            self.dir.path().join("niyanta.toml").into_os_string(),
        ];
        let (child, url) = spawn_niyanta(&args, &self.env, &self.dir.path().join("serve.log"), "niyanta listening on ");
        self.url = url;
        self.child = Some(child);
    }

    /// `kill -9`: no shutdown, no drain.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("kill -9");
            c.wait().expect("wait");
        }
    }

    /// SIGTERM, then waits for the process to end (it drains running jobs).
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = c.id().to_string();
            let ok = Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
            assert!(ok.success());
            let status = c.wait().expect("wait");
            assert!(status.success(), "niyanta serve exited with {status} after SIGTERM");
        }
    }

    /// Starts the server again on the same data directory (a new port).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the server first");
        self.spawn();
    }

    /// The server process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// Creates a tenant on `tier` and returns it with its key.
    pub async fn tenant(&self, name: &str, tier: &str) -> Tenant {
        create_tenant(&self.url, name, tier).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A tenant's client.
pub struct Tenant {
    pub key: String,
    pub client: Client,
}

impl Tenant {
    /// A client of the API at `url` with `key` (a tenant's or the admin key).
    pub fn new(url: &str, key: &str) -> Tenant {
        Tenant { key: key.to_owned(), client: Client::new(url, Some(key.to_owned())) }
    }

    /// A client of a restarted server (new URL), same key.
    pub fn at(&self, server: &Server) -> Tenant {
        Tenant::new(&server.url, &self.key)
    }

    /// Uploads the example component `name` under its name.
    pub async fn upload(&self, name: &str) -> WorkloadView {
        let rb = self.client.request(Method::PUT, &format!("/v1/workloads/{name}")).body(guest(name));
        self.client.json(rb).await.unwrap_or_else(|e| panic!("uploading {name}: {e:#}"))
    }

    /// Raw request: status and JSON body (Null when the body is not JSON).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut rb = self.client.request(method, path);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Submits a job; panics unless it is accepted.
    pub async fn submit(&self, body: Value) -> JobView {
        let rb = self.client.request(Method::POST, "/v1/jobs").json(&body);
        self.client.json(rb).await.unwrap_or_else(|e| panic!("submitting {body}: {e:#}"))
    }

    pub async fn job(&self, id: &str) -> JobView {
        self.client.json(self.client.request(Method::GET, &format!("/v1/jobs/{id}"))).await.expect("get job")
    }

    pub async fn output(&self, id: &str) -> Vec<u8> {
        let resp =
            self.client.send(self.client.request(Method::GET, &format!("/v1/jobs/{id}/output"))).await.expect("output");
        resp.bytes().await.expect("output bytes").to_vec()
    }

    /// Polls until the job satisfies `done` (at most `limit`).
    pub async fn wait_for(&self, id: &str, limit: Duration, done: impl Fn(&JobView) -> bool) -> JobView {
        let start = Instant::now();
        loop {
            let job = self.job(id).await;
            if done(&job) {
                return job;
            }
            assert!(start.elapsed() < limit, "job {id} did not get there within {limit:?}: {job:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls until the job ended.
    pub async fn wait_end(&self, id: &str, limit: Duration) -> JobView {
        self.wait_for(id, limit, |j| j.state.is_terminal()).await
    }
}

/// The resident memory of a process, bytes (`VmRSS` of /proc/PID/status).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}
