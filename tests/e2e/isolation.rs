//! Isolation: every endpoint and method of the committed OpenAPI document, called without a key,
//! with a wrong key, and with another tenant's key on the first tenant's resources. Another
//! tenant's workload, job, output, log, event stream, input and usage answer exactly as if they
//! did not exist; identical components are stored once and listed only for their uploaders.

use std::time::Duration;

use niyanta::cli::Client;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::Server;

async fn answer(c: &Client, method: &Method, path: &str) -> (u16, Value) {
    let mut rb = c.request(method.clone(), path);
    if [Method::POST, Method::PUT].contains(method) {
        rb = rb.json(&json!({}));
    }
    let resp = rb.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Every (method, path template) of the committed OpenAPI document.
fn endpoints() -> Vec<(Method, String, bool)> {
    let doc: Value = serde_json::from_str(include_str!("../../docs/openapi.json")).expect("openapi");
    let mut out = Vec::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            let m: Method = method.to_uppercase().parse().expect("method");
            out.push((m, path.clone(), op.get("security").is_some()));
        }
    }
    assert!(out.len() >= 29, "{} endpoints", out.len());
    out
}

#[tokio::test]
async fn no_endpoint_gives_one_tenant_anything_of_another() {
    let server = Server::start();
    let alpha = server.tenant("alpha", "test").await;
    let beta = server.tenant("beta", "test").await;
    alpha.upload("ticker").await;
    let a_echo = alpha.upload("echo").await;
    let b_echo = beta.upload("echo").await;
    let rb = alpha.client.request(Method::POST, "/v1/inputs").body(b"alpha's secret input".to_vec());
    let input: Value = alpha.client.json(rb).await.expect("input");
    let digest = input["digest"].as_str().expect("digest").to_owned();
    let job = alpha.submit(json!({"workload": "ticker", "params": {"steps": 2}})).await;
    alpha.wait_end(&job.id, Duration::from_secs(30)).await;

    // Identical bytes: one stored component, each tenant sees its own upload only.
    assert_eq!(a_echo.digest, b_echo.digest);
    let stored = std::fs::read_dir(server.dir.path().join("data/blobs/components")).expect("components").count();
    assert_eq!(stored, 2, "ticker and one echo");
    let (_, listed) = beta.call(Method::GET, "/v1/workloads", None).await;
    let names: Vec<&str> = listed.as_array().expect("list").iter().filter_map(|w| w["name"].as_str()).collect();
    assert_eq!(names, ["echo"]);

    let anon = Client::new(&server.url, None);
    let wrong = Client::new(&server.url, Some("nyk_wrong".into()));
    for (method, template, secured) in endpoints() {
        let path = template.replace("{id}", &job.id).replace("{name}", "ticker");
        for (who, c) in [("no key", &anon), ("a wrong key", &wrong)] {
            let (s, v) = answer(c, &method, &path).await;
            if secured {
                assert_eq!((s, v["error"]["code"].as_str()), (401, Some("unauthorized")), "{method} {path} with {who}");
            } else {
                assert!(s < 500, "{method} {path}: {s}");
            }
        }
        // Beta, naming alpha's job and alpha's workload: nothing of alpha's comes back.
        let (s, v) = answer(&beta.client, &method, &path).await;
        let text = v.to_string();
        assert!(!text.contains("secret") && !text.contains("step 0"), "{method} {path} leaked: {text}");
        if template.contains("{id}") && template.starts_with("/v1/jobs") {
            assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")), "{method} {path}: {v}");
        } else if template == "/v1/workloads/{name}" && method == Method::GET {
            assert_eq!(s, 404, "{method} {path}: {v}");
        } else if template.starts_with("/v1/tenants")
            || template.starts_with("/v1/cluster")
            || method == Method::PUT && template.starts_with("/v1/tiers")
        {
            assert_eq!((s, v["error"]["code"].as_str()), (403, Some("admin_key_required")), "{method} {path}: {v}");
        }
    }
    // Lists and reports hold beta's own things only.
    let (_, jobs) = beta.call(Method::GET, "/v1/jobs", None).await;
    assert_eq!(jobs["jobs"], json!([]));
    let (_, usage) = beta.call(Method::GET, "/v1/usage", None).await;
    assert_eq!(usage["workloads"], json!([]), "{usage}");
    let (s, v) = beta.call(Method::POST, "/v1/jobs", Some(json!({"workload": "echo", "input_digest": digest}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("unknown_input")), "{v}");
    // Alpha's job and workloads are as they were.
    assert_eq!(alpha.job(&job.id).await.state.as_str(), "succeeded");
    assert_eq!(alpha.output(&job.id).await, b"step 0\nstep 1\n");
}
