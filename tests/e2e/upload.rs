//! Uploading components: every bad upload is refused with a 4xx naming the problem, and nothing
//! already stored changes.

use reqwest::Method;
use serde_json::Value;

use crate::common::{Server, Tenant, guest};

async fn put(t: &Tenant, name: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = t.client.request(Method::PUT, &format!("/v1/workloads/{name}")).body(body).send().await.expect("put");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or("")
}

#[tokio::test]
async fn bad_uploads_are_refused_and_nothing_stored_changes() {
    let server = Server::start();
    let t = server.tenant("acme", "test").await;
    let good = t.upload("echo").await;
    assert_eq!(good.size_bytes as usize, guest("echo").len());
    assert!(good.imports.iter().any(|i| i == "niyanta:workload/host@0.1.0"), "{:?}", good.imports);

    // Not wasm at all.
    let (s, v) = put(&t, "echo", b"#!/bin/sh\necho hi\n".to_vec()).await;
    assert_eq!((s, code(&v)), (400, "not_wasm"), "{v}");

    // A core module: the 8-byte header of an empty module.
    let (s, v) = put(&t, "echo", b"\0asm\x01\0\0\0".to_vec()).await;
    assert_eq!((s, code(&v)), (422, "not_a_component"), "{v}");
    assert!(message(&v).contains("wasm32-wasip2"), "{v}");

    // A valid but empty component: it does not export `run`.
    let (s, v) = put(&t, "echo", b"\0asm\x0d\0\x01\0".to_vec()).await;
    assert_eq!((s, code(&v)), (422, "world_mismatch"), "{v}");

    // A component header followed by garbage.
    let mut bad = b"\0asm\x0d\0\x01\0".to_vec();
    bad.extend_from_slice(&[0xff; 64]);
    let (s, v) = put(&t, "echo", bad).await;
    assert_eq!((s, code(&v)), (422, "invalid_component"), "{v}");

    // A component importing wasi:sockets.
    let (s, v) = put(&t, "echo", guest("sockets")).await;
    assert_eq!((s, code(&v)), (422, "disallowed_import"), "{v}");
    assert!(message(&v).contains("wasi:sockets/"), "the import is named: {v}");

    // Larger than the tier's component limit (4 MiB in the `test` tier).
    let mut big = guest("echo");
    big.resize(5 * 1024 * 1024, 0);
    let (s, v) = put(&t, "echo", big).await;
    assert_eq!((s, code(&v)), (413, "component_too_large"), "{v}");
    assert!(message(&v).contains("4194304"), "the limit is named: {v}");

    // A bad name.
    let (s, v) = put(&t, "Not_Valid!", guest("echo")).await;
    assert_eq!((s, code(&v)), (400, "invalid_name"), "{v}");

    // The workload uploaded first is intact, and nothing else was stored.
    let (s, list) = t.call(Method::GET, "/v1/workloads", None).await;
    assert_eq!(s, 200);
    let list = list.as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["digest"], good.digest);
    let job = t.submit(serde_json::json!({"workload": "echo", "input": "still here"})).await;
    let job = t.wait_end(&job.id, std::time::Duration::from_secs(30)).await;
    assert_eq!(job.state.as_str(), "succeeded", "{job:?}");
    assert_eq!(t.output(&job.id).await, b"still here");
}

#[tokio::test]
async fn workloads_are_listed_read_and_replaced_per_tenant() {
    let server = Server::start();
    let a = server.tenant("alpha", "test").await;
    let b = server.tenant("beta", "test").await;
    let first = a.upload("echo").await;
    // Replacing under the same name points the name at the new component.
    let rb = a.client.request(Method::PUT, "/v1/workloads/echo").body(guest("primes"));
    let second: niyanta::api::views::WorkloadView = a.client.json(rb).await.expect("replace");
    assert_ne!(first.digest, second.digest);
    let (s, v) = a.call(Method::GET, "/v1/workloads/echo", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["digest"], second.digest);
    // Names are per tenant: beta sees nothing of alpha's.
    let (s, v) = b.call(Method::GET, "/v1/workloads/echo", None).await;
    assert_eq!((s, code(&v)), (404, "not_found"), "{v}");
    let (_, list) = b.call(Method::GET, "/v1/workloads", None).await;
    assert_eq!(list, serde_json::json!([]));
}
