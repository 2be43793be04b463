//! Submitting jobs: idempotency keys; inputs; listing with filters and pages. (Malformed
//! submissions are tested in process: `host/src/api/tests.rs`.)

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::common::Server;

#[tokio::test]
async fn idempotency_keys_return_the_first_job() {
    let server = Server::start();
    let t = server.tenant("acme", "test").await;
    t.upload("echo").await;
    let body = json!({"workload": "echo", "input": "once", "idempotency_key": "order-42"});
    let (s1, first) = t.call(Method::POST, "/v1/jobs", Some(body.clone())).await;
    let (s2, second) = t.call(Method::POST, "/v1/jobs", Some(body)).await;
    assert_eq!((s1, s2), (202, 200));
    assert_eq!(first["id"], second["id"]);
    // The header works too, and keys are per tenant.
    let resp = t
        .client
        .request(Method::POST, "/v1/jobs")
        .header("Idempotency-Key", "order-42")
        .json(&json!({"workload": "echo"}))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 200);
    let other = server.tenant("other", "test").await;
    other.upload("echo").await;
    let (s, v) =
        other.call(Method::POST, "/v1/jobs", Some(json!({"workload": "echo", "idempotency_key": "order-42"}))).await;
    assert_eq!(s, 202);
    assert_ne!(v["id"], first["id"]);
    let (_, page) = t.call(Method::GET, "/v1/jobs", None).await;
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(1));
    // Keys are counted in characters, as the OpenAPI `maxLength`: 255 three-byte characters
    // pass, 256 do not, and neither does an empty key.
    let longest = "鍵".repeat(255);
    let (s, v) = t.call(Method::POST, "/v1/jobs", Some(json!({"workload": "echo", "idempotency_key": longest}))).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["idempotency_key"].as_str(), Some(longest.as_str()));
    for key in ["鍵".repeat(256), String::new()] {
        let (s, v) = t.call(Method::POST, "/v1/jobs", Some(json!({"workload": "echo", "idempotency_key": key}))).await;
        assert_eq!((s, v["error"]["code"].as_str()), (422, Some("invalid_idempotency_key")), "{v}");
    }
}

#[tokio::test]
async fn inputs_blobs_and_job_listing() {
    let server = Server::start();
    let t = server.tenant("acme", "test").await;
    t.upload("echo").await;
    // An uploaded input blob (over the 64 KiB inline size): the output is the same bytes.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let resp = t.client.request(Method::POST, "/v1/inputs").body(big.clone()).send().await.expect("post");
    assert_eq!(resp.status().as_u16(), 201);
    let input: niyanta::api::views::InputView = resp.json().await.expect("input view");
    assert_eq!(input.size_bytes, 300_000);
    let job = t.submit(json!({"workload": "echo", "input_digest": input.digest})).await;
    let job = t.wait_end(&job.id, Duration::from_secs(30)).await;
    assert_eq!(job.state.as_str(), "succeeded", "{job:?}");
    assert_eq!(job.input_bytes, 300_000);
    assert_eq!(job.output_bytes, 300_000);
    assert_eq!(t.output(&job.id).await, big);

    // Base64 input, then paging through the list newest first.
    for i in 0..4 {
        t.submit(json!({"workload": "echo", "input_base64": "aGVsbG8=", "priority": i})).await;
    }
    let (_, p1) = t.call(Method::GET, "/v1/jobs?limit=3", None).await;
    assert_eq!(p1["jobs"].as_array().map(Vec::len), Some(3));
    let cursor = p1["next_cursor"].as_str().expect("a next page").to_owned();
    let (_, p2) = t.call(Method::GET, &format!("/v1/jobs?limit=3&cursor={cursor}"), None).await;
    assert_eq!(p2["jobs"].as_array().map(Vec::len), Some(2));
    assert!(p2["next_cursor"].is_null());
    let ids: Vec<String> = p1["jobs"]
        .as_array()
        .into_iter()
        .chain(p2["jobs"].as_array())
        .flatten()
        .map(|j| j["id"].as_str().unwrap_or("").to_owned())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first");
    assert!(ids.contains(&job.id));
    let (s, v) = t.call(Method::GET, "/v1/jobs?state=nonsense", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_query")));
    let (s, _) = t.call(Method::GET, "/v1/jobs?limit=0", None).await;
    assert_eq!(s, 400);
    for id in &ids[..5] {
        let j = t.wait_end(id, Duration::from_secs(30)).await;
        assert_eq!(t.output(&j.id).await.len() as u64, j.output_bytes);
    }
    let (_, done) = t.call(Method::GET, "/v1/jobs?state=succeeded&workload=echo&limit=100", None).await;
    assert_eq!(done["jobs"].as_array().map(Vec::len), Some(5));
}

#[tokio::test]
async fn batch_submissions_are_all_or_nothing() {
    let server = Server::start();
    let t = server.tenant("acme", "test").await;
    t.upload("echo").await;
    let jobs: Vec<_> = (0..50).map(|i| json!({"workload": "echo", "input": format!("item {i}")})).collect();
    let (s, v) = t.call(Method::POST, "/v1/jobs/batch", Some(json!({ "jobs": jobs }))).await;
    assert_eq!(s, 202, "{v}");
    let ids: Vec<String> =
        v["jobs"].as_array().into_iter().flatten().filter_map(|j| j["id"].as_str().map(str::to_owned)).collect();
    assert_eq!(ids.len(), 50);
    for (i, id) in ids.iter().enumerate() {
        let j = t.wait_end(id, Duration::from_secs(30)).await;
        assert_eq!(j.state.as_str(), "succeeded", "{j:?}");
        assert_eq!(t.output(id).await, format!("item {i}").into_bytes());
    }

    // One bad item refuses the whole batch, naming its index; nothing is queued.
    let bad = json!({"jobs": [{"workload": "echo"}, {"workload": "echo", "params": 3}, {"workload": "echo"}]});
    let (s, v) = t.call(Method::POST, "/v1/jobs/batch", Some(bad)).await;
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("invalid_params")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap_or("").starts_with("jobs[1]: "), "{v}");
    let unknown = json!({"jobs": [{"workload": "echo"}, {"workload": "nope"}]});
    let (s, v) = t.call(Method::POST, "/v1/jobs/batch", Some(unknown)).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("unknown_workload")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap_or("").starts_with("jobs[1]: "), "{v}");
    let (s, v) = t.call(Method::POST, "/v1/jobs/batch", Some(json!({"jobs": []}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("invalid_batch")), "{v}");
    let array = json!({"jobs": [{"workload": "echo"}, ["echo"]]});
    let (s, v) = t.call(Method::POST, "/v1/jobs/batch", Some(array)).await;
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("invalid_body")), "{v}");
    let (_, page) = t.call(Method::GET, "/v1/jobs?limit=1000", None).await;
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(50), "no job of a refused batch was queued");
}

#[tokio::test]
async fn an_input_over_the_tier_limit_is_refused_while_streaming() {
    let server = Server::start();
    // `single` allows 1 MiB of input.
    let t = server.tenant("acme", "single").await;
    let resp = t.client.request(Method::POST, "/v1/inputs").body(vec![7u8; 3 << 20]).send().await.expect("post");
    assert_eq!(resp.status().as_u16(), 413);
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "input_too_large");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("1048576"), "{v}");
    // Exactly at the limit is fine.
    let resp = t.client.request(Method::POST, "/v1/inputs").body(vec![7u8; 1 << 20]).send().await.expect("post");
    assert_eq!(resp.status().as_u16(), 201);
    let staging = server.dir.path().join("data/blobs/staging");
    let left = std::fs::read_dir(&staging).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "nothing of the refused upload is kept");
}
