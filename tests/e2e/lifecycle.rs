//! Progress, events, checkpoints and cancellation of running and queued jobs.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::common::Server;

#[tokio::test]
async fn progress_and_events_follow_a_job_to_its_end() {
    let server = Server::start();
    let t = server.tenant("acme", "test").await;
    t.upload("ticker").await;
    let job = t.submit(json!({"workload": "ticker", "params": {"steps": 12, "sleep_ms": 150}})).await;
    let events = t.client.request(Method::GET, &format!("/v1/jobs/{}/events", job.id)).send().await.expect("events");
    assert_eq!(events.status().as_u16(), 200);
    assert!(events.headers()["content-type"].to_str().unwrap_or("").starts_with("text/event-stream"));

    // Progress is visible through the API while the job runs.
    let running = t.wait_for(&job.id, Duration::from_secs(30), |j| j.progress.done >= 3).await;
    assert_eq!(running.state.as_str(), "running", "{running:?}");
    assert_eq!(running.progress.total, 12);
    assert!(running.checkpoints >= 2, "{running:?}");

    // The event stream ends by itself after the terminal state.
    let body = tokio::time::timeout(Duration::from_secs(30), events.text()).await.expect("stream ended").expect("body");
    let names: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(names.first(), Some(&"job"), "{body}");
    assert!(names.contains(&"progress") && names.contains(&"checkpoint"), "{body}");
    let last_data = body.lines().filter_map(|l| l.strip_prefix("data: ")).next_back().unwrap_or("");
    let last: serde_json::Value = serde_json::from_str(last_data).expect("json event");
    assert_eq!((last["type"].as_str(), last["state"].as_str()), (Some("state"), Some("succeeded")), "{body}");
    let done = t.job(&job.id).await;
    assert_eq!((done.checkpoints, done.progress.done), (12, 12), "{done:?}");
    assert!(done.started_at.is_some() && done.finished_at.is_some());

    // An ended job's stream is its snapshot only.
    let again = t.client.request(Method::GET, &format!("/v1/jobs/{}/events", job.id)).send().await.expect("events");
    let body = again.text().await.expect("body");
    assert_eq!(body.matches("event: ").count(), 1, "{body}");
}

#[tokio::test]
async fn cancel_running_queued_and_stubborn_jobs() {
    let server = Server::start();
    let t = server.tenant("acme", "single").await;
    t.upload("ticker").await;
    // `single` runs one job at a time: the second waits in the queue.
    let running = t.submit(json!({"workload": "ticker", "params": {"steps": 1000, "sleep_ms": 20}})).await;
    let queued = t.submit(json!({"workload": "ticker", "params": {"steps": 1, "sleep_ms": 0}})).await;
    t.wait_for(&running.id, Duration::from_secs(30), |j| j.state.as_str() == "running").await;
    assert_eq!(t.job(&queued.id).await.state.as_str(), "queued");

    let (s, v) = t.call(Method::POST, &format!("/v1/jobs/{}/cancel", queued.id), None).await;
    assert_eq!((s, v["state"].as_str()), (202, Some("cancelled")), "{v}");
    let (s, v) = t.call(Method::POST, &format!("/v1/jobs/{}/cancel", running.id), None).await;
    assert_eq!((s, v["cancel_requested"].as_bool()), (202, Some(true)), "{v}");
    let j = t.wait_end(&running.id, Duration::from_secs(30)).await;
    assert_eq!(j.state.as_str(), "cancelled", "{j:?}");
    let f = j.failure.expect("failure");
    assert_eq!(f.class.as_str(), "cancelled");
    assert!(f.message.contains("stopped when asked"), "cooperative: {}", f.message);
    let q = t.job(&queued.id).await;
    assert_eq!((q.state.as_str(), q.attempt), ("cancelled", 0), "never started: {q:?}");
    // The queue quota (3 in `single`) counts only queued jobs.
    for _ in 0..3 {
        t.submit(json!({"workload": "ticker", "params": {"steps": 100, "sleep_ms": 50}})).await;
    }
    let (s, v) = t.call(Method::POST, "/v1/jobs", Some(json!({"workload": "ticker"}))).await;
    // One of the three may already run; keep submitting until the quota answers.
    let (s, v) =
        if s == 202 { t.call(Method::POST, "/v1/jobs", Some(json!({"workload": "ticker"}))).await } else { (s, v) };
    assert_eq!((s, v["error"]["code"].as_str()), (429, Some("queue_full")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("allows 3"), "{v}");

    // Cancelling an ended job changes nothing.
    let (s, v) = t.call(Method::POST, &format!("/v1/jobs/{}/cancel", queued.id), None).await;
    assert_eq!((s, v["state"].as_str()), (202, Some("cancelled")));
}

#[tokio::test]
async fn a_job_that_ignores_cancel_is_stopped_after_the_grace_period() {
    let server = Server::start();
    let t = server.tenant("acme", "premium").await;
    t.upload("spin").await;
    let job = t.submit(json!({"workload": "spin"})).await;
    t.wait_for(&job.id, Duration::from_secs(30), |j| j.state.as_str() == "running").await;
    let asked = std::time::Instant::now();
    let (s, _) = t.call(Method::POST, &format!("/v1/jobs/{}/cancel", job.id), None).await;
    assert_eq!(s, 202);
    let j = t.wait_end(&job.id, Duration::from_secs(30)).await;
    assert!(asked.elapsed() >= Duration::from_millis(900), "the grace period (1 s) was given");
    assert_eq!(j.state.as_str(), "cancelled", "{j:?}");
    let f = j.failure.expect("failure");
    assert!(f.message.contains("by force"), "{}", f.message);
    assert!(j.fuel_used > 0);
}
