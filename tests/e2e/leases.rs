//! Healthy workers keep their jobs: in a calm run of many short jobs, with heartbeats every
//! 50 ms so that many of them cross a result on its way, no attempt is abandoned and every job
//! succeeds on its first attempt, on one node and in a cluster.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::common::{Server, TIERS, Tenant};

const JOBS: usize = 3_000;

/// Submits `JOBS` echo jobs in batches of 1,000 and waits until every one ended; returns the
/// attempt counts of all jobs, by state.
async fn run_echo_jobs(t: &Tenant, limit: Duration) -> Vec<(String, u64)> {
    let job = json!({"workload": "echo", "input": "x"});
    for _ in 0..JOBS / 1000 {
        let rb = t.client.request(Method::POST, "/v1/jobs/batch").json(&json!({"jobs": vec![job.clone(); 1000]}));
        t.client.json::<Value>(rb).await.expect("batch");
    }
    let start = Instant::now();
    loop {
        let (_, open) = t.call(Method::GET, "/v1/jobs?limit=1&state=queued", None).await;
        let (_, running) = t.call(Method::GET, "/v1/jobs?limit=1&state=running", None).await;
        let (_, assigned) = t.call(Method::GET, "/v1/jobs?limit=1&state=assigned", None).await;
        let empty = |v: &Value| v["jobs"].as_array().is_none_or(Vec::is_empty);
        if empty(&open) && empty(&running) && empty(&assigned) {
            break;
        }
        assert!(start.elapsed() < limit, "jobs still open after {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/jobs?limit=1000&cursor={c}"),
            None => "/v1/jobs?limit=1000".to_owned(),
        };
        let (_, page) = t.call(Method::GET, &path, None).await;
        for j in page["jobs"].as_array().expect("jobs") {
            all.push((j["state"].as_str().unwrap_or("?").to_owned(), j["attempt"].as_u64().unwrap_or(0)));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    all
}

fn abandoned(metrics: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("niyanta_attempts_abandoned_total "))
        .and_then(|v| v.trim().parse().ok())
}

async fn metrics(url: &str) -> String {
    reqwest::get(format!("{url}/metrics")).await.expect("metrics").text().await.expect("metrics text")
}

fn assert_all_first_attempt(jobs: &[(String, u64)], logs: &str) {
    assert_eq!(jobs.len(), JOBS);
    let odd: Vec<&(String, u64)> = jobs.iter().filter(|(s, a)| s != "succeeded" || *a != 1).collect();
    assert!(
        odd.is_empty(),
        "{} jobs did not succeed on their first attempt: {:?}",
        odd.len(),
        &odd[..odd.len().min(10)]
    );
    let abandons = logs.lines().filter(|l| l.contains("without a valid lease")).count();
    assert_eq!(abandons, 0, "healthy workers were told to abandon jobs");
}

#[tokio::test]
async fn no_attempt_of_a_healthy_embedded_worker_is_abandoned() {
    let settings = format!("slots = 8\ngrace_ms = 1000\nlease_timeout_ms = 3000\nheartbeat_ms = 50\n{TIERS}");
    let server = Server::start_with_config(&settings);
    let t = server.tenant("acme", "bulk").await;
    t.upload("echo").await;
    let jobs = run_echo_jobs(&t, Duration::from_secs(120)).await;
    assert_all_first_attempt(&jobs, &server.log());
    assert_eq!(abandoned(&metrics(&server.url).await), Some(0));
}

#[tokio::test]
async fn no_attempt_of_a_healthy_distributed_worker_is_abandoned() {
    let mut c = Cluster::new().env("NIYANTA_HEARTBEAT_MS", "50");
    c.coordinator();
    c.worker(8, &[]);
    c.worker(8, &[]);
    c.wait_workers(2).await;
    let t = c.tenant("acme", "bulk").await;
    t.upload("echo").await;
    let jobs = run_echo_jobs(&t, Duration::from_secs(120)).await;
    assert_all_first_attempt(&jobs, &c.logs());
    assert_eq!(abandoned(&metrics(c.url(0)).await), Some(0));
}
