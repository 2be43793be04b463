//! Durability on one node: `kill -9` of `niyanta serve` while jobs run, then a restart on the
//! same data directory; and a graceful SIGTERM drain.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::common::Server;

fn ticker_output(steps: u32) -> Vec<u8> {
    (0..steps).map(|i| format!("step {i}\n")).collect::<String>().into_bytes()
}

#[tokio::test]
async fn kill_9_then_restart_resumes_from_the_last_checkpoint() {
    let mut server = Server::start();
    let t = server.tenant("acme", "single").await;
    t.upload("ticker").await;
    t.upload("echo").await;
    // One slot for this tenant: the ticker runs, the other jobs wait in the queue.
    let long = t.submit(json!({"workload": "ticker", "params": {"steps": 40, "sleep_ms": 100}})).await;
    let waiting: Vec<String> = {
        let mut ids = Vec::new();
        for i in 0..2 {
            ids.push(t.submit(json!({"workload": "echo", "input": format!("queued {i}")})).await.id);
        }
        ids
    };
    let before = t.wait_for(&long.id, Duration::from_secs(30), |j| j.checkpoints >= 8).await;
    assert_eq!(before.attempt, 1);

    server.kill9();
    server.restart();
    let t = t.at(&server);

    // Everything accepted is still there.
    for id in waiting.iter().chain([&long.id]) {
        let (s, _) = t.call(Method::GET, &format!("/v1/jobs/{id}"), None).await;
        assert_eq!(s, 200, "job {id} survived");
    }
    let after = t.wait_end(&long.id, Duration::from_secs(60)).await;
    assert_eq!(after.state.as_str(), "succeeded", "{after:?}");
    assert_eq!(after.attempt, 2, "one more attempt after the restart: {after:?}");
    assert!(
        after.resumed_from_checkpoint >= before.checkpoints,
        "resumed from checkpoint {} (at least {} were stored before the kill)",
        after.resumed_from_checkpoint,
        before.checkpoints
    );
    // The resumed run's output equals an undisturbed run's, and its log says where it resumed.
    assert_eq!(t.output(&long.id).await, ticker_output(40));
    let (_, logs) = t.call(Method::GET, &format!("/v1/jobs/{}/logs", long.id), None).await;
    let resumed = logs
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["attempt"] == 2)
        .filter_map(|l| l["message"].as_str())
        .find(|m| m.starts_with("resumed from step"))
        .unwrap_or_else(|| panic!("no resume line in {logs}"));
    assert_ne!(resumed, "resumed from step 0", "{resumed}");
    // Fuel used before the kill is counted.
    assert!(after.fuel_used >= before.fuel_used, "{after:?}");

    for (i, id) in waiting.iter().enumerate() {
        let j = t.wait_end(id, Duration::from_secs(30)).await;
        assert_eq!((j.state.as_str(), j.attempt), ("succeeded", 1), "{j:?}");
        assert_eq!(t.output(id).await, format!("queued {i}").into_bytes());
    }
    // Exactly one terminal result each: the list holds each job once, each succeeded.
    let (_, page) = t.call(Method::GET, "/v1/jobs?limit=100", None).await;
    let states: Vec<&str> = page["jobs"].as_array().into_iter().flatten().filter_map(|j| j["state"].as_str()).collect();
    assert_eq!(states, ["succeeded"; 3]);
}

#[tokio::test]
async fn sigterm_drains_running_jobs_which_resume_after_restart() {
    let mut server = Server::start();
    let t = server.tenant("acme", "test").await;
    t.upload("ticker").await;
    let job = t.submit(json!({"workload": "ticker", "params": {"steps": 30, "sleep_ms": 100}})).await;
    let before = t.wait_for(&job.id, Duration::from_secs(30), |j| j.checkpoints >= 5).await;
    server.terminate();
    assert!(server.log().contains("draining"), "{}", server.log());
    server.restart();
    let t = t.at(&server);
    // Drained, not lost: queued again with its checkpoint, then finished.
    let j = t.wait_end(&job.id, Duration::from_secs(60)).await;
    assert_eq!(j.state.as_str(), "succeeded", "{j:?}");
    assert_eq!(j.attempt, 2, "{j:?}");
    assert!(j.resumed_from_checkpoint >= before.checkpoints, "{j:?}");
    assert_eq!(t.output(&job.id).await, ticker_output(30));
}
