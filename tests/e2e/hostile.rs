//! Hostile components: deep recursion, checkpoint and log floods, host calls with huge lists, an
//! enormous declared memory or table.
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

    // A component declaring a 64 MiB initial memory, over the tier's 32 MiB: refused at upload,
    // naming the size and the limit. On a tier with 128 MiB the same component runs.
    let rb = t.client.request(reqwest::Method::PUT, "/v1/workloads/bigmem").body(crate::common::guest("bigmem"));
    let resp = rb.send().await.expect("upload");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("json");
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("exceeds_tier")), "{body}");
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("67108864") && msg.contains("33554432"), "names the size and the limit: {msg}");
    let roomy = server.tenant("roomy", "standard").await;
    roomy.upload("bigmem").await;
    let ok = roomy.submit(json!({"workload": "bigmem"})).await;
    let ok = roomy.wait_end(&ok.id, Duration::from_secs(30)).await;
    assert_eq!(ok.state.as_str(), "succeeded", "{ok:?}");
    assert_eq!(roomy.output(&ok.id).await, b"ok");

    // The neighbour's job was untouched.
    let steady = neighbour.wait_end(&steady.id, Duration::from_secs(60)).await;
    assert_eq!(steady.state.as_str(), "succeeded", "{steady:?}");
    let expected: String = (0..40).map(|i| format!("step {i}\n")).collect();
    assert_eq!(neighbour.output(&steady.id).await, expected.as_bytes());
}

/// Rewrites every table a component's core modules declare (or import) to start at `minimum`
/// elements, with no maximum.
struct HugeTables {
    minimum: u64,
}

impl wasm_encoder::reencode::Reencode for HugeTables {
    type Error = std::convert::Infallible;

    fn table_type(
        &mut self,
        t: wasmparser::TableType,
    ) -> Result<wasm_encoder::TableType, wasm_encoder::reencode::Error<Self::Error>> {
        let mut t = wasm_encoder::reencode::utils::table_type(self, t)?;
        t.minimum = self.minimum;
        t.maximum = None;
        Ok(t)
    }
}

impl wasm_encoder::reencode::ReencodeComponent for HugeTables {}

#[tokio::test]
async fn a_component_declaring_an_enormous_table_is_refused_and_nothing_else_changes() {
    use wasm_encoder::reencode::ReencodeComponent as _;
    let echo = crate::common::guest("echo");
    let mut component = wasm_encoder::Component::new();
    HugeTables { minimum: 100_000_000 }
        .parse_component(&mut component, wasmparser::Parser::new(0), &echo)
        .expect("re-encoding echo");
    let hostile = component.finish();
    wasmparser::Validator::new().validate_all(&hostile).expect("still a valid component");

    let server = Server::start();
    let t = server.tenant("mallory", "test").await;
    let rb = t.client.request(reqwest::Method::PUT, "/v1/workloads/tables").body(hostile);
    let resp = rb.send().await.expect("upload");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("json");
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_component")), "{body}");
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("table"), "the refusal names the table: {msg}");
    let (_, listed) = t.call(reqwest::Method::GET, "/v1/workloads", None).await;
    assert_eq!(listed, json!([]), "nothing was stored");

    // The host is unharmed: the original component uploads and runs.
    t.upload("echo").await;
    let j = t.submit(json!({"workload": "echo", "input": "fine"})).await;
    let j = t.wait_end(&j.id, Duration::from_secs(30)).await;
    assert_eq!(j.state.as_str(), "succeeded", "{j:?}");
    assert_eq!(t.output(&j.id).await, b"fine");
}
