//! Host faults are not the tenant's: when the object store fails under a running job, the attempt
//! ends with class `host_error`, and the job runs again from its last checkpoint under the host
//! retry policy without using its own retry budget. It ends `succeeded` once the fault clears, or
//! `dead` with `host_error` if it never does; never `trap`. (NATS and PostgreSQL restarting
//! mid-run are in `recovery.rs`.)

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use niyanta::state::{FailureClass, JobState};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

use crate::cluster::Cluster;
use crate::common::{Server, TIERS, Tenant};

/// Ticker steps whose lines (past 64 KiB each) are stored as output parts in the object store
/// before each checkpoint, so the job writes to the object store every `sleep_ms` (at most 14
/// steps: the test tier's output limit is 1 MiB).
fn ticker(steps: u32, sleep_ms: u32) -> Value {
    json!({"workload": "ticker", "params": {"steps": steps, "sleep_ms": sleep_ms, "pad_bytes": 70_000},
           "retry": {"max_attempts": 1}})
}

/// Checks that the output holds each step's line once, in order.
async fn assert_steps(t: &Tenant, id: &str, steps: u32) {
    let out = String::from_utf8(t.output(id).await).expect("utf-8");
    let got: Vec<&str> = out.lines().map(|l| l.split(" attempt ").next().unwrap_or("")).collect();
    let want: Vec<String> = (0..steps).map(|i| format!("step {i}")).collect();
    assert_eq!(got, want, "output of {id}");
}

/// Replaces the blob directory with a file, so that every read and write of the object store
/// fails; [`restore`] undoes it.
fn break_blobs(data: &Path) -> PathBuf {
    let (blobs, away) = (data.join("blobs"), data.join("blobs.away"));
    std::fs::rename(&blobs, &away).expect("moving the blob directory away");
    std::fs::write(&blobs, b"not a directory").expect("a file in its place");
    away
}

fn restore(data: &Path, away: &Path) {
    std::fs::remove_file(data.join("blobs")).expect("removing the file");
    std::fs::rename(away, data.join("blobs")).expect("moving the blob directory back");
}

#[tokio::test]
async fn a_job_survives_its_blob_directory_failing_then_recovering_without_using_its_retries() {
    let server = Server::start();
    let t = server.tenant("acme", "test").await;
    t.upload("ticker").await;
    let job = t.submit(ticker(12, 150)).await;
    t.wait_for(&job.id, Duration::from_secs(30), |j| j.checkpoints >= 2).await;

    let data = server.dir.path().join("data");
    let away = break_blobs(&data);
    let failed = t.wait_for(&job.id, Duration::from_secs(30), |j| j.host_failures >= 1).await;
    let failure = failed.failure.as_ref().expect("the host error is shown");
    assert_eq!(failure.class, FailureClass::HostError, "{}", failure.message);
    assert!(failure.message.contains("object store"), "{}", failure.message);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    restore(&data, &away);

    let done = t.wait_end(&job.id, Duration::from_secs(60)).await;
    assert_eq!(done.state, JobState::Succeeded, "{done:?}\n{}", server.log());
    assert_eq!(done.failures, 0, "a host error does not use the job's retry budget");
    assert!(done.host_failures >= 1);
    assert!(done.resumed_from_checkpoint >= 2, "resumed from its last checkpoint: {done:?}");
    assert_steps(&t, &job.id, 12).await;

    // The host-failed attempts are metered, and marked.
    let (s, usage) = t.call(Method::GET, "/v1/usage", None).await;
    assert_eq!(s, 200, "{usage}");
    let w = &usage["workloads"][0];
    assert_eq!(w["host_errors"], json!(done.host_failures), "{usage}");
    assert!(w["host_error_wall_ms"].as_u64().unwrap_or(0) > 0, "{usage}");
    // And counted as the host's fault.
    let metrics = reqwest::get(format!("{}/metrics", server.url)).await.expect("metrics");
    let metrics = metrics.text().await.expect("metrics text");
    assert!(
        metrics.lines().any(|l| l.starts_with("niyanta_attempt_failures_total")
            && l.contains(r#"class="host_error""#)
            && l.contains(r#"fault="host""#)),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_job_whose_object_store_never_recovers_ends_dead_with_host_error() {
    let config = format!(
        "slots = 2\ngrace_ms = 1000\nlease_timeout_ms = 3000\n\
         [host_retry]\nmax_attempts = 3\ninitial_backoff_ms = 100\nmax_backoff_ms = 200\n{TIERS}"
    );
    let server = Server::start_with_config(&config);
    let t = server.tenant("acme", "test").await;
    t.upload("ticker").await;
    // The component is uploaded; the worker has not loaded it yet. From now on it cannot.
    let _away = break_blobs(&server.dir.path().join("data"));
    let job = t.submit(ticker(4, 10)).await;

    let done = t.wait_end(&job.id, Duration::from_secs(60)).await;
    assert_eq!(done.state, JobState::Dead, "{done:?}\n{}", server.log());
    let failure = done.failure.as_ref().expect("a failure");
    assert_eq!(failure.class, FailureClass::HostError, "{}", failure.message);
    assert_eq!((done.attempt, done.host_failures, done.failures), (3, 3, 0));
}

/// A TCP proxy in front of the S3 test server that can be stopped (its port closed, its
/// connections reset) and started again on the same port, as a restarting S3 server would be.
struct Proxy {
    addr: SocketAddr,
    upstream: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut p = Self { addr, upstream: upstream.to_owned(), task: None };
        p.serve(listener);
        p
    }

    fn serve(&mut self, listener: TcpListener) {
        let upstream = Arc::new(self.upstream.clone());
        self.task = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                conns.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream.as_str()).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }

    /// Closes the port and resets every connection (the JoinSet is dropped with the task).
    fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    async fn start_again(&mut self) {
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        self.serve(listener);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_on_a_cluster_whose_s3_server_stops_mid_run_succeed_once_it_is_back() {
    let (endpoint, bucket) = crate::cluster::s3_bucket().await;
    let upstream = endpoint.trim_start_matches("http://").to_owned();
    let mut proxy = Proxy::start(&upstream).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let blob_url = format!("s3://{bucket}?endpoint=http://{}&allow_http=true", proxy.addr);
    let mut c = Cluster::with_blobs(dir, blob_url)
        .settings("[host_retry]\nmax_attempts = 10\ninitial_backoff_ms = 200\nmax_backoff_ms = 1000");
    c.coordinator();
    c.worker(4, &[]);
    c.wait_workers(1).await;
    let t = c.tenant("acme", "test").await;
    t.upload("ticker").await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(t.submit(ticker(12, 150)).await.id);
    }
    t.wait_for(&ids[0], Duration::from_secs(30), |j| j.checkpoints >= 2).await;

    proxy.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.start_again().await;

    let mut host_failures = 0;
    for id in &ids {
        let done = t.wait_end(id, Duration::from_secs(120)).await;
        assert_eq!(done.state, JobState::Succeeded, "{done:?}\n{}", c.logs());
        assert_eq!(done.failures, 0, "{done:?}");
        assert_steps(&t, id, 12).await;
        host_failures += done.host_failures;
    }
    // Four jobs storing a part every 150 ms cannot all have missed a 3 s outage.
    assert!(host_failures >= 1, "no attempt met the outage");
}
