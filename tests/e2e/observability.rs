//! Observability against a real server: `/metrics` in the Prometheus text format with the jobs,
//! queue, latency, fuel, checkpoint, slot and compile-cache figures; JSON log lines about a job
//! carrying its job, tenant, worker and attempt.

use std::time::Duration;

use niyanta::state::JobState;
use serde_json::{Value, json};

use crate::common::Server;

/// The value of the sample `name` (with its labels, as printed) in a Prometheus text page.
fn sample(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{page}"))
}

/// A field of a JSON log line: the event's own, or the fields of the span it happened in.
fn field<'a>(line: &'a Value, name: &str) -> Option<&'a Value> {
    line.get(name).or_else(|| line.get("span").and_then(|s| s.get(name)))
}

#[tokio::test]
async fn metrics_and_json_logs_describe_the_jobs() {
    let server = Server::start_with_env(&[("NIYANTA_LOG_JSON", "true")]);
    let t = server.tenant("acme", "test").await;
    t.upload("ticker").await;
    t.upload("echo").await;
    let ticker = t.submit(json!({"workload": "ticker", "params": {"steps": 3, "sleep_ms": 5}})).await;
    let echo = t.submit(json!({"workload": "echo", "input": "hi"})).await;
    assert_eq!(t.wait_end(&ticker.id, Duration::from_secs(30)).await.state, JobState::Succeeded);
    assert_eq!(t.wait_end(&echo.id, Duration::from_secs(30)).await.state, JobState::Succeeded);
    // One job no worker can take: it stays queued.
    let stuck = t.submit(json!({"workload": "echo", "placement": {"require": {"gpu": "yes"}}})).await;

    let resp = reqwest::get(format!("{}/metrics", server.url)).await.expect("metrics");
    assert_eq!(resp.status(), 200);
    let ctype = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let page = resp.text().await.expect("text");
    assert_eq!(sample(&page, "niyanta_jobs_submitted_total{tier=\"test\"}"), 3.0);
    assert_eq!(sample(&page, "niyanta_jobs_ended_total{state=\"succeeded\",tier=\"test\"}"), 2.0);
    assert_eq!(sample(&page, "niyanta_jobs{state=\"queued\",tier=\"test\"}"), 1.0);
    assert_eq!(sample(&page, "niyanta_jobs_queued"), 1.0);
    assert!(sample(&page, "niyanta_queue_oldest_age_seconds") >= 0.0);
    assert_eq!(sample(&page, "niyanta_job_start_latency_seconds_count"), 2.0);
    assert_eq!(sample(&page, "niyanta_job_run_seconds_count"), 2.0);
    assert_eq!(sample(&page, "niyanta_checkpoint_seconds_count"), 3.0);
    assert_eq!(sample(&page, "niyanta_checkpoint_bytes_count"), 3.0);
    assert!(sample(&page, "niyanta_fuel_consumed_total") > 0.0);
    // Each component compiled once, at upload; each job found it prepared in memory.
    assert_eq!(sample(&page, "niyanta_compile_cache_total{result=\"compiled\"}"), 2.0);
    assert_eq!(sample(&page, "niyanta_compile_cache_total{result=\"memory\"}"), 2.0);
    assert_eq!(
        sample(&page, "niyanta_worker_slots{state=\"free\"}") + sample(&page, "niyanta_worker_slots{state=\"used\"}"),
        2.0
    );
    assert_eq!(sample(&page, "niyanta_errors_total{source=\"database\"}"), 0.0);
    let (_, job) = t.call(reqwest::Method::GET, &format!("/v1/jobs/{}", stuck.id), None).await;
    assert_eq!(job["state"], "queued");

    // Every log line is JSON; every line about the ticker job names it, its tenant, its worker
    // and its attempt.
    let log = server.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect();
    let about: Vec<&Value> =
        lines.iter().filter(|l| field(l, "job_id").and_then(Value::as_str) == Some(ticker.id.as_str())).collect();
    assert!(about.len() >= 2, "lines about the job:\n{log}");
    for l in &about {
        for name in ["tenant_id", "worker_id", "attempt"] {
            assert!(field(l, name).is_some(), "{name} missing from {l}");
        }
    }
    assert!(about.iter().any(|l| l["message"] == "job ended" && l["state"] == "succeeded"), "{about:?}");

    // In one process too, a job is one trace: the lines of the worker's `job` span and of the
    // coordinator's `report` spans name the trace its submission started.
    let trace = t.job(&ticker.id).await.trace_id.expect("a trace id");
    for name in ["job", "report"] {
        let ids: Vec<&Value> =
            about.iter().filter(|l| l["span"]["name"] == name).map(|l| &l["span"]["trace_id"]).collect();
        assert!(!ids.is_empty() && ids.iter().all(|id| *id == trace.as_str()), "{name} spans: {ids:?} ({trace})");
    }
    assert_ne!(t.job(&echo.id).await.trace_id, Some(trace), "each submission starts its own trace");
}
