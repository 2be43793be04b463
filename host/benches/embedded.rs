//! End-to-end benchmarks of the embedded node (results in BENCHMARKS.md):
//! 1. throughput of `echo` jobs submitted over HTTP in batches, from the first submission to the
//!    last job's end;
//! 2. submit → running latency at a steady 100 jobs/s: from sending the HTTP submission to the
//!    job's `running` event.
//!
//! Run: `cargo bench --bench embedded` (after scripts/build-guests.sh). The throughput runs with
//! the default slot count (`ServeConfig::default().slots`), then with each count in
//! `NIYANTA_BENCH_SLOTS` (comma-separated, e.g. `2,16,128`) when set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use niyanta::api::views::{CreatedTenant, JobView};
use niyanta::broker::{JobEvent, JobEventKind, Observed};
use niyanta::cli::Client;
use niyanta::config::ServeConfig;
use niyanta::embedded::Node;
use niyanta::state::JobState;
use reqwest::Method;
use serde_json::json;

const ADMIN: &str = "bench-admin-key";

async fn start(slots: u32) -> (tempfile::TempDir, Node, Client) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ServeConfig {
        data_dir: dir.path().join("data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        slots,
        ..ServeConfig::default()
    };
    let node = Node::start(&cfg, Some(ADMIN.into())).await.unwrap();
    let url = format!("http://{}", node.addr);
    let admin = Client::new(&url, Some(ADMIN.into()));
    let created: CreatedTenant = admin
        .json(admin.request(Method::POST, "/v1/tenants").json(&json!({"name": "bench", "tier": "premium"})))
        .await
        .unwrap();
    let client = Client::new(&url, Some(created.api_key));
    client.send(client.request(Method::PUT, "/v1/workloads/echo").body(common::guest("echo"))).await.unwrap();
    (dir, node, client)
}

async fn submit(client: &Client, i: usize) -> String {
    let job: JobView = client
        .json(client.request(Method::POST, "/v1/jobs").json(&json!({"workload": "echo", "input": format!("job {i}")})))
        .await
        .unwrap();
    job.id
}

async fn submit_batch(client: &Client, first: usize, n: usize) {
    let jobs: Vec<_> = (first..first + n).map(|i| json!({"workload": "echo", "input": format!("job {i}")})).collect();
    let rb = client.request(Method::POST, "/v1/jobs/batch").json(&json!({ "jobs": jobs }));
    let resp = client.send(rb).await.unwrap();
    assert_eq!(resp.status().as_u16(), 202);
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let default = ServeConfig::default().slots;
    let mut counts = vec![default];
    if let Ok(list) = std::env::var("NIYANTA_BENCH_SLOTS") {
        counts.extend(list.split(',').map(|n| n.trim().parse::<u32>().expect("NIYANTA_BENCH_SLOTS: numbers")));
    }
    rt.block_on(async {
        for slots in counts {
            throughput(slots, slots == default).await;
        }
        latency().await;
    });
}

async fn throughput(slots: u32, default: bool) {
    const JOBS: usize = 10_000;
    const BATCH: usize = 500;
    const IN_FLIGHT: usize = 4;
    let (_dir, node, client) = start(slots).await;
    let mut events = node.app.broker.events();
    let ended = Arc::new(tokio::sync::Notify::new());
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (d, e) = (done.clone(), ended.clone());
    tokio::spawn(async move {
        while let Some(ev) = events.next().await {
            if let Observed::Missed(n) = ev {
                panic!("the benchmark's event subscriber fell {n} events behind");
            }
            if let Observed::Event(JobEvent { kind: JobEventKind::State { state, .. }, .. }) = ev
                && state.is_terminal()
            {
                assert_eq!(state, JobState::Succeeded);
                if d.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == JOBS {
                    e.notify_one();
                }
            }
        }
    });
    let start = Instant::now();
    futures::stream::iter(0..JOBS / BATCH)
        .map(|b| submit_batch(&client, b * BATCH, BATCH))
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    let submitted = start.elapsed();
    tokio::time::timeout(Duration::from_secs(600), ended.notified()).await.expect("all jobs ended");
    let all = start.elapsed();
    let which = if default { " (the default)" } else { "" };
    println!(
        "embedded throughput: {JOBS} echo jobs over HTTP, POST /v1/jobs/batch of {BATCH}, {IN_FLIGHT} batches in flight, {slots} slots{which}"
    );
    println!(
        "  submitted in     {:>8.2} s  ({:>7.0} submissions/s)",
        submitted.as_secs_f64(),
        JOBS as f64 / submitted.as_secs_f64()
    );
    println!(
        "  all ended in     {:>8.2} s  ({:>7.0} jobs/s end to end)",
        all.as_secs_f64(),
        JOBS as f64 / all.as_secs_f64()
    );
}

async fn latency() {
    const JOBS: usize = 1_000;
    let (_dir, node, client) = start(2).await;
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let lat: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let running_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut events = node.app.broker.events();
    let ra = running_at.clone();
    tokio::spawn(async move {
        while let Some(ev) = events.next().await {
            if let Observed::Event(JobEvent {
                job_id,
                kind: JobEventKind::State { state: JobState::Running, .. },
                ..
            }) = ev
            {
                ra.lock().unwrap().insert(job_id.to_string(), Instant::now());
            }
        }
    });
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut handles = Vec::new();
    for i in 0..JOBS {
        tick.tick().await;
        let (client, sent) = (client.clone(), sent.clone());
        handles.push(tokio::spawn(async move {
            let t = Instant::now();
            let id = submit(&client, i).await;
            sent.lock().unwrap().insert(id, t);
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    {
        let sent = sent.lock().unwrap();
        let running = running_at.lock().unwrap();
        let mut l = lat.lock().unwrap();
        for (id, t) in sent.iter() {
            let r = running.get(id).unwrap_or_else(|| panic!("job {id} never ran"));
            l.push(r.duration_since(*t));
        }
        l.sort();
    }
    let l = lat.lock().unwrap();
    let pct = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)];
    println!("submit → running at 100 jobs/s ({JOBS} echo jobs over HTTP, 2 slots)");
    println!(
        "  p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        l[l.len() - 1].as_secs_f64() * 1e3
    );
}
