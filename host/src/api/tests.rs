//! The API's validation and error mapping, in process: requests go to the router with
//! `tower::ServiceExt::oneshot`, against a real embedded node (SQLite, the in-process broker,
//! local blobs) in a temporary directory, with no process started and no socket per request.
//! What needs processes (crashes, pauses, several coordinators) stays in `tests/e2e`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::config::ServeConfig;
use crate::embedded::Node;

const ADMIN: &str = "in-process-admin-key";

/// A node and its router.
struct InProcess {
    _dir: tempfile::TempDir,
    node: Node,
    router: axum::Router,
}

/// The answer: status and JSON body (`Null` when the body is not JSON).
type Answer = (u16, Value);

impl InProcess {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ServeConfig {
            data_dir: dir.path().join("data"),
            listen: "127.0.0.1:0".parse().unwrap(),
            slots: 2,
            ..ServeConfig::default()
        };
        let node = Node::start(&cfg, Some(ADMIN.into())).await.unwrap();
        let router = super::app(node.app.clone(), 64 << 20);
        Self { _dir: dir, node, router }
    }

    /// Sends `body` (JSON, or raw bytes with `Content-Type: application/octet-stream`) with `key`.
    async fn send(&self, key: Option<&str>, method: Method, path: &str, body: Body, json: bool) -> Answer {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(key) = key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        let ctype = if json { "application/json" } else { "application/octet-stream" };
        let resp = self.router.clone().oneshot(req.header("content-type", ctype).body(body).unwrap()).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn call(&self, key: Option<&str>, method: Method, path: &str, body: Option<Value>) -> Answer {
        let body = body.map_or_else(Body::empty, |v| Body::from(v.to_string()));
        self.send(key, method, path, body, true).await
    }

    /// Creates a tenant on the `standard` tier; returns its key.
    async fn tenant(&self, name: &str) -> String {
        let (s, v) =
            self.call(Some(ADMIN), Method::POST, "/v1/tenants", Some(json!({"name": name, "tier": "standard"}))).await;
        assert_eq!(s, 201, "{v}");
        v["api_key"].as_str().unwrap().to_owned()
    }

    async fn upload(&self, key: &str, name: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../examples-wasm/target/wasm32-wasip2/release/{name}.wasm"));
        let wasm =
            std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; run scripts/build-guests.sh", path.display()));
        let (s, v) = self.send(Some(key), Method::PUT, &format!("/v1/workloads/{name}"), Body::from(wasm), false).await;
        assert!(s == 200 || s == 201, "{s} {v}");
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn malformed_submissions_get_a_4xx_naming_the_problem_and_store_nothing() {
    let n = InProcess::start().await;
    let key = n.tenant("acme").await;
    n.upload(&key, "echo").await;
    let cases = [
        (json!({"workload": "nope"}), 404, "unknown_workload"),
        (json!({"workload": "echo", "params": [1, 2]}), 422, "invalid_params"),
        (json!({"workload": "echo", "params": "{\"top\": 3}"}), 422, "invalid_params"),
        (json!({"workload": "echo", "input": "a", "input_base64": "YQ=="}), 422, "invalid_input"),
        (json!({"workload": "echo", "input_base64": "not base64!"}), 422, "invalid_input"),
        (json!({"workload": "echo", "input_digest": "abc"}), 422, "invalid_input"),
        (json!({"workload": "echo", "input_digest": "0".repeat(64)}), 404, "unknown_input"),
        (json!({"workload": "echo", "priority": 1000}), 422, "invalid_priority"),
        (json!({"workload": "echo", "colour": "blue"}), 422, "invalid_body"),
        (json!({"params": {}}), 422, "invalid_body"),
        // A JSON array is not taken for an object's fields in order, in the body or in it.
        (json!(["echo"]), 422, "invalid_body"),
        (json!({"workload": "echo", "retry": [1]}), 422, "invalid_body"),
        (json!({"workload": "echo", "retry": {"max_attempts": 0}}), 422, "invalid_job"),
        (json!({"workload": "echo", "placement": [{"gpu": "yes"}]}), 422, "invalid_body"),
    ];
    for (body, status, want) in cases {
        let (s, v) = n.call(Some(&key), Method::POST, "/v1/jobs", Some(body.clone())).await;
        assert_eq!((s, code(&v)), (status, want), "{body}: {v}");
        assert!(!v["error"]["message"].as_str().unwrap_or("").is_empty(), "{body}: {v}");
    }
    // Not JSON at all.
    let (s, v) = n.send(Some(&key), Method::POST, "/v1/jobs", Body::from("{not json"), true).await;
    assert_eq!((s, code(&v)), (400, "invalid_body"), "{v}");
    // None of them created a job.
    let (_, page) = n.call(Some(&key), Method::GET, "/v1/jobs", None).await;
    assert_eq!(page["jobs"], json!([]));
}

#[tokio::test]
async fn keys_are_required_checked_and_scoped() {
    let n = InProcess::start().await;
    let key = n.tenant("acme").await;
    let other = n.tenant("beta").await;
    let wrong = "nyk_not_a_key";

    assert_eq!(n.call(None, Method::GET, "/health", None).await.0, 200);
    assert_eq!(n.call(None, Method::GET, "/ready", None).await.0, 200);
    for (m, p) in [(Method::GET, "/v1/jobs"), (Method::GET, "/v1/workloads"), (Method::POST, "/v1/tenants")] {
        for k in [None, Some(wrong)] {
            let (s, v) = n.call(k, m.clone(), p, None).await;
            assert_eq!((s, code(&v)), (401, "unauthorized"), "{m} {p} with {k:?}");
        }
    }
    // The admin key acts for no tenant; a tenant key is no admin key.
    let (s, v) = n.call(Some(ADMIN), Method::GET, "/v1/jobs", None).await;
    assert_eq!((s, code(&v)), (403, "tenant_key_required"));
    let (s, v) = n.call(Some(&key), Method::GET, "/v1/tenants", None).await;
    assert_eq!((s, code(&v)), (403, "admin_key_required"));
    let evil = json!({"name": "evil", "tier": "premium"});
    assert_eq!(n.call(Some(&key), Method::POST, "/v1/tenants", Some(evil)).await.0, 403);
    // A tenant with a wrong tier or a taken name is refused.
    let (s, v) = n.call(Some(ADMIN), Method::POST, "/v1/tenants", Some(json!({"name": "x", "tier": "gold"}))).await;
    assert_eq!((s, code(&v)), (422, "unknown_tier"), "{v}");
    let (s, _) = n.call(Some(ADMIN), Method::POST, "/v1/tenants", Some(json!({"name": "acme", "tier": "free"}))).await;
    assert_eq!(s, 409);
    // The key works, and the admin list shows both tenants.
    let (s, v) = n.call(Some(&key), Method::GET, "/v1/tenant", None).await;
    assert_eq!((s, v["name"].as_str()), (200, Some("acme")));
    let (_, list) = n.call(Some(ADMIN), Method::GET, "/v1/tenants", None).await;
    let names: Vec<&str> = list.as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["acme", "beta"]);

    // Another tenant's job is not found, by any path; its workload names are its own.
    n.upload(&key, "echo").await;
    let (s, job) =
        n.call(Some(&key), Method::POST, "/v1/jobs", Some(json!({"workload": "echo", "input": "secret"}))).await;
    assert_eq!(s, 202, "{job}");
    let id = job["id"].as_str().unwrap();
    for (m, p) in [
        (Method::GET, format!("/v1/jobs/{id}")),
        (Method::GET, format!("/v1/jobs/{id}/output")),
        (Method::GET, format!("/v1/jobs/{id}/logs")),
        (Method::GET, format!("/v1/jobs/{id}/events")),
        (Method::POST, format!("/v1/jobs/{id}/cancel")),
        (Method::POST, format!("/v1/jobs/{id}/redrive")),
    ] {
        let (s, v) = n.call(Some(&other), m.clone(), &p, None).await;
        assert_eq!((s, code(&v)), (404, "not_found"), "{m} {p}");
    }
    let (_, page) = n.call(Some(&other), Method::GET, "/v1/jobs", None).await;
    assert_eq!(page["jobs"], json!([]));
    let (s, v) = n.call(Some(&other), Method::POST, "/v1/jobs", Some(json!({"workload": "echo"}))).await;
    assert_eq!((s, code(&v)), (404, "unknown_workload"));
    drop(n.node);
}

#[tokio::test]
async fn a_tenant_holds_a_bounded_number_of_event_streams_and_others_are_not_affected() {
    use super::streams::MAX_STREAMS_PER_TENANT;
    let n = InProcess::start().await;
    let key = n.tenant("acme").await;
    let other = n.tenant("beta").await;
    n.upload(&key, "echo").await;
    n.upload(&other, "echo").await;
    // Jobs that stay `scheduled` (an hour ahead), so their streams stay open.
    let later = json!({"workload": "echo", "delay_ms": 3_600_000});
    let (_, mine) = n.call(Some(&key), Method::POST, "/v1/jobs", Some(later.clone())).await;
    let (_, theirs) = n.call(Some(&other), Method::POST, "/v1/jobs", Some(later)).await;
    let open = |key: &str, id: &str| {
        let req = Request::get(format!("/v1/jobs/{id}/events"))
            .header("authorization", format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap();
        n.router.clone().oneshot(req)
    };
    let mine = mine["id"].as_str().unwrap();
    let mut held = Vec::new();
    for _ in 0..MAX_STREAMS_PER_TENANT {
        let resp = open(&key, mine).await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        held.push(resp);
    }
    let resp = open(&key, mine).await.unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(code(&v), "too_many_streams", "{v}");
    // Another tenant opens its own.
    assert_eq!(open(&other, theirs["id"].as_str().unwrap()).await.unwrap().status().as_u16(), 200);
    // A stream whose client went away frees its place.
    held.pop();
    assert_eq!(open(&key, mine).await.unwrap().status().as_u16(), 200);
}
