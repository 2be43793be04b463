//! Job policies in distributed mode, as real processes: retries with backoff ending in a dead
//! letter that can be re-driven, delayed jobs across a coordinator restart, and placement by
//! required and preferred labels and anti-affinity.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::cluster::Cluster;
use crate::common::Tenant;

fn ms(rfc3339: &Option<String>) -> i64 {
    niyanta::ids::parse_rfc3339(rfc3339.as_deref().expect("a time")).expect("RFC 3339")
}

#[tokio::test]
async fn retryable_failures_are_retried_with_backoff_then_dead_and_redriven() {
    let mut c = Cluster::new();
    c.coordinator();
    c.worker(2, &[]);
    let t = c.tenant("acme", "test").await;
    t.upload("panic").await;
    let retry = json!({"max_attempts": 3, "initial_backoff_ms": 400, "max_backoff_ms": 800});

    // Fails retryably on attempts 1 and 2, succeeds on 3: within the policy.
    let params = json!({"retryable": "upstream busy", "succeed_on_attempt": 3});
    let ok = t.submit(json!({"workload": "panic", "params": params, "retry": retry})).await;
    let end = t.wait_end(&ok.id, Duration::from_secs(30)).await;
    assert_eq!((end.state.as_str(), end.attempt, end.failures), ("succeeded", 3, 2), "{end:?}\n{}", c.logs());
    assert!(end.failure.is_none(), "{end:?}");
    assert_eq!(t.output(&ok.id).await, b"succeeded on attempt 3");

    // Needs a 4th attempt: dead after 3 retryable failures, with the last message.
    let params = json!({"retryable": "upstream busy", "succeed_on_attempt": 4});
    let job = t.submit(json!({"workload": "panic", "params": params, "retry": retry})).await;
    let waiting = t.wait_for(&job.id, Duration::from_secs(30), |j| j.state.as_str() == "scheduled").await;
    // Waiting out the first backoff: 200 to 400 ms (equal jitter on 400 ms).
    let wait = ms(&waiting.not_before) - niyanta::ids::now_ms();
    assert!(wait <= 400, "backoff of {wait} ms left: {waiting:?}");
    assert_eq!(waiting.failures, 1, "{waiting:?}");
    let dead = t.wait_end(&job.id, Duration::from_secs(30)).await;
    assert_eq!((dead.state.as_str(), dead.attempt, dead.failures), ("dead", 3, 3), "{dead:?}\n{}", c.logs());
    let failure = dead.failure.as_ref().expect("a failure");
    assert_eq!(failure.class.to_string(), "retryable");
    assert!(failure.message.contains("upstream busy (attempt 3)"), "{failure:?}");
    // A job that is not dead cannot be re-driven; the dead one can, and then succeeds.
    let (status, body) = t.call(Method::POST, &format!("/v1/jobs/{}/redrive", ok.id), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("not_dead")), "{body}");
    let (status, body) = t.call(Method::POST, &format!("/v1/jobs/{}/redrive", job.id), None).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!((body["state"].as_str(), body["failures"].as_u64()), (Some("queued"), Some(0)));
    let end = t.wait_end(&job.id, Duration::from_secs(30)).await;
    assert_eq!((end.state.as_str(), end.attempt), ("succeeded", 4), "{end:?}");
    assert_eq!(t.output(&job.id).await, b"succeeded on attempt 4");

    // A malformed policy is refused, naming the field.
    let bad = json!({"workload": "panic", "retry": {"max_attempts": 0}});
    let (status, body) = t.call(Method::POST, "/v1/jobs", Some(bad)).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or("").contains("max_attempts"), "{body}");
}

#[tokio::test]
async fn a_delayed_job_waits_scheduled_across_a_coordinator_restart_and_starts_on_time() {
    let mut c = Cluster::new();
    c.coordinator();
    c.worker(1, &[]);
    let t = c.tenant("acme", "test").await;
    t.upload("echo").await;
    let job = t.submit(json!({"workload": "echo", "input": "later", "delay_ms": 6000})).await;
    assert_eq!(job.state.as_str(), "scheduled", "{job:?}");
    let due = ms(&job.not_before);

    // The only coordinator dies and another starts while the job waits.
    c.coordinators[0].kill9();
    let next = c.coordinator();
    let t = Tenant::new(c.url(next), &t.key);
    let still = t.job(&job.id).await;
    assert_eq!(still.state.as_str(), "scheduled", "{still:?}");
    assert!(niyanta::ids::now_ms() < due, "the restart took past the start time; the test proves nothing");

    let end = t.wait_end(&job.id, Duration::from_secs(30)).await;
    assert_eq!(end.state.as_str(), "succeeded", "{end:?}\n{}", c.logs());
    let late = ms(&end.started_at) - due;
    assert!((0..1000).contains(&late), "started {late} ms after its time");
    assert_eq!(t.output(&job.id).await, b"later");

    // A start time given as RFC 3339; a malformed one is refused.
    let at = niyanta::ids::rfc3339(niyanta::ids::now_ms() + 60_000);
    let later = t.submit(json!({"workload": "echo", "not_before": at})).await;
    assert_eq!((later.state.as_str(), later.not_before.as_deref()), ("scheduled", Some(at.as_str())));
    let (status, body) =
        t.call(Method::POST, "/v1/jobs", Some(json!({"workload": "echo", "not_before": "soon"}))).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or("").contains("not_before"), "{body}");
}

#[tokio::test]
async fn placement_honours_required_and_preferred_labels_and_anti_affinity() {
    let mut c = Cluster::new();
    c.coordinator();
    c.worker(2, &["zone=a"]);
    c.worker(2, &["zone=b", "gpu=yes"]);
    c.wait_workers(2).await;
    let t = c.tenant("acme", "test").await;
    t.upload("echo").await;
    t.upload("ticker").await;

    let run = |placement: serde_json::Value| json!({"workload": "echo", "input": "x", "placement": placement});
    let gpu = t.submit(run(json!({"require": {"gpu": "yes"}}))).await;
    let zone_b = t.submit(run(json!({"prefer": {"zone": "b"}}))).await;
    for (id, worker) in [(&gpu.id, "w1"), (&zone_b.id, "w1")] {
        let end = t.wait_end(id, Duration::from_secs(30)).await;
        assert_eq!((end.state.as_str(), end.worker.as_deref()), ("succeeded", Some(worker)), "{end:?}");
    }

    // No worker has the label: the job waits and says why, until such a worker joins.
    let tpu = t.submit(run(json!({"require": {"tpu": "v5"}}))).await;
    let waiting = t.wait_for(&tpu.id, Duration::from_secs(10), |j| j.waiting_reason.is_some()).await;
    assert_eq!(waiting.state.as_str(), "queued");
    assert!(waiting.waiting_reason.as_deref().unwrap_or("").contains("tpu=v5"), "{waiting:?}");
    c.worker(1, &["tpu=v5"]);
    let end = t.wait_end(&tpu.id, Duration::from_secs(30)).await;
    assert_eq!((end.state.as_str(), end.worker.as_deref()), ("succeeded", Some("w2")), "{end:?}");
    assert!(end.waiting_reason.is_none(), "{end:?}");

    // Anti-affinity: tickers that avoid each other never share a worker, though slots are free.
    let spread = json!({"avoid_workloads": ["ticker"], "require": {"zone": "a"}});
    let params = json!({"steps": 20, "sleep_ms": 100});
    let first = t.submit(json!({"workload": "ticker", "params": params, "placement": spread})).await;
    t.wait_for(&first.id, Duration::from_secs(30), |j| j.state.as_str() == "running").await;
    let second = t.submit(json!({"workload": "ticker", "params": params, "placement": spread})).await;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        let (a, b) = (t.job(&first.id).await, t.job(&second.id).await);
        if a.state.is_terminal() {
            break;
        }
        assert_eq!(b.state.as_str(), "queued", "started beside a ticker it avoids: {b:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in [&first.id, &second.id] {
        let end = t.wait_end(id, Duration::from_secs(60)).await;
        assert_eq!((end.state.as_str(), end.worker.as_deref()), ("succeeded", Some("w0")), "{end:?}");
    }
    let (a, b) = (t.job(&first.id).await, t.job(&second.id).await);
    assert!(ms(&b.started_at) >= ms(&a.finished_at), "the second started before the first ended: {a:?} {b:?}");
}
