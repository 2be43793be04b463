//! A job's trace across processes: the API call that submits it (continuing the caller's
//! `traceparent`), the leader's assignment, the worker's attempt and the leader's handling of the
//! worker's reports, linked by ids carried in NATS headers and exported over OTLP/HTTP to a
//! collector that the test runs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post;
use reqwest::Method;
use serde_json::{Value, json};

use crate::cluster::Cluster;

/// The caller's trace: the job's spans must all belong to it.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// A span as exported: service, name, ids and attributes.
#[derive(Clone, Debug)]
struct Exported {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: Value,
}

/// An OTLP/HTTP collector on loopback that keeps every span it receives (JSON encoding).
async fn collector() -> (String, Arc<Mutex<Vec<Exported>>>) {
    let spans: Arc<Mutex<Vec<Exported>>> = Arc::default();
    let kept = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                let v: Value = serde_json::from_slice(&body).expect("OTLP JSON");
                let mut out = kept.lock().expect("lock");
                for rs in v["resourceSpans"].as_array().into_iter().flatten() {
                    let service = rs["resource"]["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|a| a["key"] == "service.name")
                        .and_then(|a| a["value"]["stringValue"].as_str())
                        .unwrap_or_default()
                        .to_owned();
                    for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                        for s in ss["spans"].as_array().into_iter().flatten() {
                            let text = |k: &str| s[k].as_str().unwrap_or_default().to_lowercase();
                            out.push(Exported {
                                service: service.clone(),
                                name: text("name"),
                                trace_id: text("traceId"),
                                span_id: text("spanId"),
                                parent: text("parentSpanId"),
                                attributes: s["attributes"].clone(),
                            });
                        }
                    }
                }
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, spans)
}

/// The string value of a span attribute.
fn attribute(span: &Exported, key: &str) -> Option<String> {
    let a = span.attributes.as_array()?.iter().find(|a| a["key"] == key)?;
    let v = &a["value"];
    v["stringValue"].as_str().map(str::to_owned).or_else(|| v["intValue"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn a_job_is_one_trace_from_the_api_call_through_the_worker_and_back() {
    let (endpoint, spans) = collector().await;
    let mut c = Cluster::new()
        .env("NIYANTA_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("NIYANTA_LOG_JSON", "true");
    c.coordinator();
    c.worker(1, &[]);
    c.wait_workers(1).await;
    let t = c.tenant("traced", "test").await;
    t.upload("ticker").await;

    let rb = t
        .client
        .request(Method::POST, "/v1/jobs")
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .json(&json!({"workload": "ticker", "params": {"steps": 3}}));
    let job: Value = t.client.json(rb).await.expect("submit");
    let id = job["id"].as_str().expect("id").to_owned();
    assert_eq!(job["trace_id"], TRACE_ID, "the job view names its trace:\n{}", c.logs());
    let end = t.wait_end(&id, Duration::from_secs(30)).await;
    assert_eq!(end.state, niyanta::state::JobState::Succeeded);

    // Each process exports every 100 ms, on its own: wait for the leader's last report span and
    // for the worker's span, which ends only once that report is answered.
    let start = Instant::now();
    let trace = loop {
        let trace: Vec<Exported> =
            spans.lock().expect("lock").iter().filter(|s| s.trace_id == TRACE_ID).cloned().collect();
        let finished = trace.iter().any(|s| s.name == "report" && attribute(s, "update").as_deref() == Some("finish"));
        let attempt = trace.iter().any(|s| s.service == "niyanta-worker" && s.name == "job");
        if (finished && attempt) || start.elapsed() > Duration::from_secs(10) {
            break trace;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let names: Vec<(&str, &str)> = trace.iter().map(|s| (s.service.as_str(), s.name.as_str())).collect();
    let one = |service: &str, name: &str| -> Exported {
        let found: Vec<&Exported> = trace.iter().filter(|s| s.service == service && s.name == name).collect();
        assert_eq!(found.len(), 1, "one {name} span from {service} in {names:?}\n{}", c.logs());
        found[0].clone()
    };
    // API call → assignment → attempt → reports, each the child of the one before.
    let submit = one("niyanta-coordinator", "submit");
    assert_eq!(submit.parent, CALLER_SPAN, "the submission continues the caller's span");
    let assign = one("niyanta-coordinator", "assign");
    assert_eq!(assign.parent, submit.span_id);
    assert_eq!(attribute(&assign, "job_id").as_deref(), Some(id.as_str()));
    assert_eq!(attribute(&assign, "worker_id").as_deref(), Some("w0"));
    let attempt = one("niyanta-worker", "job");
    assert_eq!(attempt.parent, assign.span_id, "the worker's span continues the assignment (NATS header)");
    let reports: Vec<&Exported> = trace.iter().filter(|s| s.name == "report").collect();
    let kinds: Vec<String> = reports.iter().filter_map(|s| attribute(s, "update")).collect();
    for kind in ["running", "checkpoint", "finish"] {
        assert!(kinds.iter().any(|k| k == kind), "a {kind} report span in {kinds:?}");
    }
    for r in &reports {
        assert_eq!(r.service, "niyanta-coordinator");
        assert_eq!(r.parent, attempt.span_id, "reports continue the worker's span (NATS header)");
    }

    // The JSON log lines of both processes name the trace.
    for p in c.coordinators.iter().chain(&c.workers) {
        let named = p
            .log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["span"]["trace_id"] == TRACE_ID)
            .count();
        assert!(named > 0, "no log line of {} names the trace:\n{}", p.name, p.log_text());
    }
}

#[tokio::test]
async fn a_quiet_log_filter_keeps_the_traces() {
    let (endpoint, spans) = collector().await;
    let mut c = Cluster::new()
        .env("NIYANTA_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("NIYANTA_LOG", "warn");
    c.coordinator();
    c.worker(1, &[]);
    c.wait_workers(1).await;
    let t = c.tenant("quiet", "test").await;
    t.upload("echo").await;
    let rb = t
        .client
        .request(Method::POST, "/v1/jobs")
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .json(&json!({"workload": "echo", "input": "quiet"}));
    let job: Value = t.client.json(rb).await.expect("submit");
    assert_eq!(job["trace_id"], TRACE_ID, "the job view names its trace under --log warn");
    let id = job["id"].as_str().expect("id").to_owned();
    let end = t.wait_end(&id, Duration::from_secs(30)).await;
    assert_eq!(end.state, niyanta::state::JobState::Succeeded);
    // The submission, the assignment and the attempt are exported all the same.
    let start = Instant::now();
    let names = loop {
        let names: Vec<(String, String)> = spans
            .lock()
            .expect("lock")
            .iter()
            .filter(|s| s.trace_id == TRACE_ID)
            .map(|s| (s.service.clone(), s.name.clone()))
            .collect();
        let has = |service: &str, name: &str| names.iter().any(|(s, n)| s == service && n == name);
        let all = has("niyanta-coordinator", "submit")
            && has("niyanta-coordinator", "assign")
            && has("niyanta-worker", "job");
        if all || start.elapsed() > Duration::from_secs(10) {
            break names;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (service, name) in
        [("niyanta-coordinator", "submit"), ("niyanta-coordinator", "assign"), ("niyanta-worker", "job")]
    {
        assert!(names.iter().any(|(s, n)| s == service && n == name), "no {name} span from {service} in {names:?}");
    }
    // The logs hold no info lines.
    for p in c.coordinators.iter().chain(&c.workers) {
        let text = p.log_text();
        assert!(!text.contains("INFO"), "an info line under --log warn in {}:\n{text}", p.name);
    }
}
