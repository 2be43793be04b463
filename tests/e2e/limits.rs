//! Misbehaving guests end their own job with a failure class and a message; the server and the
//! other jobs carry on.

use std::time::Duration;

use serde_json::json;

use crate::common::{Server, Tenant};

async fn run(t: &Tenant, body: serde_json::Value) -> niyanta::api::views::JobView {
    let job = t.submit(body).await;
    t.wait_end(&job.id, Duration::from_secs(60)).await
}

fn failure(j: &niyanta::api::views::JobView) -> (String, String) {
    let f = j.failure.as_ref().unwrap_or_else(|| panic!("job did not fail: {j:?}"));
    (f.class.as_str().to_owned(), f.message.clone())
}

#[tokio::test]
async fn each_limit_ends_only_its_own_job() {
    let server = Server::start();
    let t = server.tenant("acme", "test").await;
    let slow = server.tenant("slowpoke", "slow").await;
    for w in ["echo", "panic", "spin", "membomb", "outflood", "csv-groupby", "ticker"] {
        t.upload(w).await;
    }
    slow.upload("spin").await;

    // A long, well-behaved job runs across all the failures below.
    let steady = t.submit(json!({"workload": "ticker", "params": {"steps": 30, "sleep_ms": 100}})).await;

    let j = run(&t, json!({"workload": "panic"})).await;
    let (class, msg) = failure(&j);
    assert_eq!(class, "trap");
    assert!(msg.contains("deliberate panic from the panic fixture"), "{msg}");

    let j = run(&t, json!({"workload": "panic", "params": {"error": "the ledger does not balance"}})).await;
    assert_eq!(failure(&j), ("guest_error".into(), "the ledger does not balance".into()));

    let j = run(&t, json!({"workload": "spin"})).await;
    let (class, msg) = failure(&j);
    assert_eq!(class, "fuel_exhausted", "{msg}");
    assert!(msg.contains("5000000000"), "{msg}");
    assert!(j.fuel_used >= 5_000_000_000, "{j:?}");

    let j = run(&slow, json!({"workload": "spin"})).await;
    let (class, msg) = failure(&j);
    assert_eq!(class, "timeout", "{msg}");
    assert!(msg.contains("1500 ms"), "{msg}");

    let j = run(&t, json!({"workload": "membomb"})).await;
    let (class, msg) = failure(&j);
    assert_eq!(class, "memory_limit", "{msg}");
    assert!(msg.contains("33554432"), "{msg}");
    assert!(j.memory_peak_bytes <= 33_554_432 && j.memory_peak_bytes > 16 << 20, "{j:?}");

    let j = run(&t, json!({"workload": "outflood"})).await;
    let (class, msg) = failure(&j);
    assert_eq!(class, "output_limit", "{msg}");
    assert!(msg.contains("1048576"), "{msg}");

    let j =
        run(&t, json!({"workload": "csv-groupby", "input": "a,b\n1,2\n", "params": {"group_by": "x", "value": "b"}}))
            .await;
    let (class, msg) = failure(&j);
    assert_eq!(class, "invalid_input", "{msg}");
    assert!(msg.contains('x'), "{msg}");

    // The neighbour finished untouched, and the server still serves.
    let steady = t.wait_end(&steady.id, Duration::from_secs(60)).await;
    assert_eq!(steady.state.as_str(), "succeeded", "{steady:?}");
    let expected: String = (0..30).map(|i| format!("step {i}\n")).collect();
    assert_eq!(t.output(&steady.id).await, expected.as_bytes());
    let j = run(&t, json!({"workload": "echo", "input": "alive"})).await;
    assert_eq!(t.output(&j.id).await, b"alive");
    // A trap's stderr reached the job's log.
    let (_, logs) = t.call(reqwest::Method::GET, &format!("/v1/jobs/{}/logs", j.id), None).await;
    assert!(logs.is_array());
}
