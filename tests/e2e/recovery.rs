//! Distributed mode recovering on its own: PostgreSQL and NATS restarted mid-run, and the chaos
//! test (1,000 checkpointing jobs while a worker is killed and restarted every few seconds).

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::cluster::Cluster;
use crate::common::Tenant;
use crate::private::{PrivateNats, PrivatePostgres};

fn ticker_output(steps: u32) -> Vec<u8> {
    (0..steps).map(|i| format!("step {i}\n")).collect::<String>().into_bytes()
}

/// Submits `n` ticker jobs in batches of at most 1,000; returns their ids.
async fn submit_tickers(t: &Tenant, n: usize, steps: u32, sleep_ms: u32) -> Vec<String> {
    let job = json!({"workload": "ticker", "params": {"steps": steps, "sleep_ms": sleep_ms}});
    let mut ids = Vec::with_capacity(n);
    while ids.len() < n {
        let k = (n - ids.len()).min(1000);
        let rb = t.client.request(Method::POST, "/v1/jobs/batch").json(&json!({"jobs": vec![job.clone(); k]}));
        let out: serde_json::Value = t.client.json(rb).await.expect("batch");
        ids.extend(out["jobs"].as_array().expect("jobs").iter().map(|j| j["id"].as_str().expect("id").to_owned()));
    }
    ids
}

/// Waits until every job ended, then checks that each succeeded once with the right output and
/// that the tenant has exactly these jobs.
async fn assert_all_succeeded(c: &Cluster, t: &Tenant, ids: &[String], steps: u32, limit: Duration) {
    let start = Instant::now();
    for id in ids {
        let left = limit.saturating_sub(start.elapsed()).max(Duration::from_secs(1));
        let end = t.wait_end(id, left).await;
        assert_eq!(end.state.as_str(), "succeeded", "{end:?}\n{}", c.logs());
    }
    let want = ticker_output(steps);
    for id in ids {
        assert_eq!(t.output(id).await, want, "output of {id}");
    }
    let (_, page) = t.call(Method::GET, "/v1/jobs?limit=1000&state=succeeded", None).await;
    let listed = page["jobs"].as_array().map_or(0, Vec::len);
    assert_eq!(listed, ids.len().min(1000), "jobs listed as succeeded");
}

#[tokio::test]
async fn the_cluster_recovers_from_postgres_then_nats_restarting_mid_run() {
    let pg = PrivatePostgres::start();
    let mut nats = PrivateNats::start();
    let mut c = Cluster::new().backends(pg.url(), nats.url());
    c.coordinator();
    c.worker(4, &[]);
    c.worker(4, &[]);
    c.wait_workers(2).await;
    let t = c.tenant("acme", "test").await;
    t.upload("ticker").await;
    let ids = submit_tickers(&t, 24, 30, 100).await;
    t.wait_for(&ids[0], Duration::from_secs(30), |j| j.checkpoints >= 3).await;

    // PostgreSQL goes away for 3 s: a crash, no clean shutdown.
    pg.stop();
    assert!(std::net::TcpStream::connect(("127.0.0.1", pg.port)).is_err(), "PostgreSQL still answers");
    tokio::time::sleep(Duration::from_secs(3)).await;
    pg.start_again();
    // A job submitted right after it is back is accepted once the pool reconnects.
    let start = Instant::now();
    let late = loop {
        let rb = t
            .client
            .request(Method::POST, "/v1/jobs")
            .json(&json!({"workload": "ticker", "params": {"steps": 30, "sleep_ms": 100}}));
        match t.client.json::<serde_json::Value>(rb).await {
            Ok(j) => break j["id"].as_str().expect("id").to_owned(),
            Err(e) => {
                assert!(start.elapsed() < Duration::from_secs(30), "submissions still fail: {e:#}\n{}", c.logs());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    c.leader(Duration::from_secs(30)).await;

    // Then NATS dies and comes back after 3 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    nats.kill();
    assert!(std::net::TcpStream::connect(("127.0.0.1", nats.port)).is_err(), "NATS still answers");
    tokio::time::sleep(Duration::from_secs(3)).await;
    nats.start_again();

    let mut all = ids;
    all.push(late);
    assert_all_succeeded(&c, &t, &all, 30, Duration::from_secs(120)).await;
}

#[tokio::test]
async fn chaos_a_thousand_checkpointing_jobs_complete_once_while_a_worker_keeps_dying() {
    let mut c = Cluster::new();
    c.coordinator();
    c.worker(8, &[]);
    c.worker(8, &[]);
    c.worker(8, &[]);
    c.wait_workers(3).await;
    let t = c.tenant("acme", "bulk").await;
    t.upload("ticker").await;
    let ids = submit_tickers(&t, 1000, 5, 40).await;

    // Kill -9 one worker every 3 s, in turn, and start it again under the same id.
    let start = Instant::now();
    let mut kills = 0;
    let mut victim = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (_, page) = t.call(Method::GET, "/v1/jobs?limit=1&state=queued", None).await;
        let (_, running) = t.call(Method::GET, "/v1/jobs?limit=1&state=running", None).await;
        let idle =
            page["jobs"].as_array().is_none_or(Vec::is_empty) && running["jobs"].as_array().is_none_or(Vec::is_empty);
        if idle || start.elapsed() > Duration::from_secs(240) {
            break;
        }
        c.workers[victim].kill9();
        c.restart_worker(victim);
        kills += 1;
        victim = (victim + 1) % c.workers.len();
    }
    assert!(kills >= 3, "only {kills} workers were killed before the jobs ran out; make the run longer");

    assert_all_succeeded(&c, &t, &ids, 5, Duration::from_secs(240)).await;
    // Jobs that ran again after a kill resumed from a checkpoint or from the start, yet each
    // ended once: at least one was interrupted.
    let mut moved = 0;
    for id in &ids {
        if t.job(id).await.attempt > 1 {
            moved += 1;
        }
    }
    assert!(moved > 0, "no job was interrupted by the kills");
}
