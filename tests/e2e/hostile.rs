//! Hostile components: deep recursion, checkpoint and log floods, host calls with huge lists.
//! Each ends only its own job with a failure class naming what happened, while another tenant's
//! job runs on and the server keeps answering.

use std::time::{Duration, Instant};

use niyanta::api::views::JobView;
use serde_json::{Value, json};

use crate::common::{Server, Tenant, define_tier};

async fn run(t: &Tenant, params: Value) -> JobView {
    let job = t.submit(json!({"workload": "hostile", "params": params})).await;
    t.wait_end(&job.id, Duration::from_secs(60)).await
}

fn failure(j: &JobView) -> (&str, &str) {
    let f = j.failure.as_ref().unwrap_or_else(|| panic!("job did not fail: {j:?}"));
    (f.class.as_str(), f.message.as_str())
}

#[tokio::test]
async fn hostile_guests_end_only_their_own_jobs() {
    let server = Server::start();
    define_tier(&server, "hostile", &["wall_clock_ms=2000"]);
    let t = server.tenant("mallory", "hostile").await;
    let neighbour = server.tenant("alice", "test").await;
    t.upload("hostile").await;
    neighbour.upload("ticker").await;
    let steady = neighbour.submit(json!({"workload": "ticker", "params": {"steps": 40, "sleep_ms": 100}})).await;

    let j = run(&t, json!({"mode": "recurse"})).await;
    let (class, msg) = failure(&j);
    assert_eq!(class, "trap", "{msg}");
    assert!(msg.contains("stack"), "a stack overflow is named: {msg}");

    // A checkpoint flood runs into the wall clock while the server keeps answering.
    let flood = t.submit(json!({"workload": "hostile", "params": {"mode": "checkpoint-flood"}})).await;
    let asked = Instant::now();
    let (s, _) = neighbour.call(reqwest::Method::GET, "/v1/jobs?limit=1", None).await;
    assert_eq!(s, 200);
    assert!(asked.elapsed() < Duration::from_secs(1), "the API answered in {:?} during the flood", asked.elapsed());
    let j = t.wait_end(&flood.id, Duration::from_secs(60)).await;
    let (class, msg) = failure(&j);
    assert_eq!(class, "timeout", "{msg}");
    assert!(j.checkpoints > 10, "{j:?}");

    // A log flood runs out of fuel or time; the job's log keeps the first lines only.
    let j = run(&t, json!({"mode": "log-flood"})).await;
    assert!(["fuel_exhausted", "timeout"].contains(&failure(&j).0), "{j:?}");
    let (_, logs) = t.call(reqwest::Method::GET, &format!("/v1/jobs/{}/logs?limit=5000", j.id), None).await;
    let lines = logs.as_array().map_or(0, Vec::len);
    assert!((1000..=1002).contains(&lines), "{lines} log lines kept");

    // One host call with a huge list: over the output limit, or past the guest's memory.
    let j = run(&t, json!({"mode": "huge-write", "bytes": 8 << 20})).await;
    let (class, msg) = failure(&j);
    assert_eq!(class, "output_limit", "{msg}");
    let j = run(&t, json!({"mode": "huge-write", "bytes": 64 << 20})).await;
    assert_eq!(failure(&j).0, "memory_limit", "{j:?}");
    let j = run(&t, json!({"mode": "huge-checkpoint", "bytes": 1 << 20})).await;
    let (class, msg) = failure(&j);
    assert_eq!(class, "output_limit", "{msg}");
    assert!(msg.contains("checkpoint"), "{msg}");

    // The neighbour's job was untouched.
    let steady = neighbour.wait_end(&steady.id, Duration::from_secs(60)).await;
    assert_eq!(steady.state.as_str(), "succeeded", "{steady:?}");
    let expected: String = (0..40).map(|i| format!("step {i}\n")).collect();
    assert_eq!(neighbour.output(&steady.id).await, expected.as_bytes());
}
