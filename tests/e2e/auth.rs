//! Keys: every endpoint but /health and /ready needs one; a tenant sees only its own jobs.

use reqwest::Method;
use serde_json::json;

use crate::common::{ADMIN_KEY, Server};
use niyanta::cli::Client;

async fn status(c: &Client, method: Method, path: &str) -> (u16, String) {
    let resp = c.request(method, path).send().await.expect("request");
    let s = resp.status().as_u16();
    let v: serde_json::Value = resp.json().await.unwrap_or_default();
    (s, v["error"]["code"].as_str().unwrap_or("").to_owned())
}

#[tokio::test]
async fn keys_are_required_and_checked() {
    let server = Server::start();
    let anon = Client::new(&server.url, None);
    let wrong = Client::new(&server.url, Some("nyk_not_a_key".into()));
    let admin = server.admin();
    let t = server.tenant("acme", "test").await;

    assert_eq!(status(&anon, Method::GET, "/health").await.0, 200);
    assert_eq!(status(&anon, Method::GET, "/ready").await.0, 200);
    for (m, p) in [(Method::GET, "/v1/jobs"), (Method::GET, "/v1/workloads"), (Method::POST, "/v1/tenants")] {
        assert_eq!(status(&anon, m.clone(), p).await, (401, "unauthorized".into()), "{m} {p} without a key");
        assert_eq!(status(&wrong, m.clone(), p).await, (401, "unauthorized".into()), "{m} {p} with a wrong key");
    }
    // The admin key acts for no tenant; a tenant key is no admin key.
    assert_eq!(status(&admin, Method::GET, "/v1/jobs").await, (403, "tenant_key_required".into()));
    assert_eq!(status(&t.client, Method::GET, "/v1/tenants").await, (403, "admin_key_required".into()));
    let rb = t.client.request(Method::POST, "/v1/tenants").json(&json!({"name": "evil", "tier": "premium"}));
    assert_eq!(rb.send().await.expect("post").status().as_u16(), 403);
    // A tenant with a wrong tier or a taken name is refused.
    let (s, v) = {
        let r = admin
            .request(Method::POST, "/v1/tenants")
            .json(&json!({"name": "x", "tier": "gold"}))
            .send()
            .await
            .expect("post");
        (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap_or_default())
    };
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("unknown_tier")), "{v}");
    let r = admin
        .request(Method::POST, "/v1/tenants")
        .json(&json!({"name": "acme", "tier": "free"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 409);
    // The key works, and the admin list shows the tenant.
    let (s, v) = t.call(Method::GET, "/v1/tenant", None).await;
    assert_eq!((s, v["name"].as_str()), (200, Some("acme")));
    let list: Vec<niyanta::api::views::TenantView> =
        admin.json(admin.request(Method::GET, "/v1/tenants")).await.expect("list");
    assert_eq!(list.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["acme"]);
    assert_ne!(t.key, ADMIN_KEY);
}

#[tokio::test]
async fn another_tenants_job_is_not_found() {
    let server = Server::start();
    let a = server.tenant("alpha", "test").await;
    let b = server.tenant("beta", "test").await;
    a.upload("echo").await;
    let job = a.submit(json!({"workload": "echo", "input": "secret"})).await;
    a.wait_end(&job.id, std::time::Duration::from_secs(30)).await;
    for (m, p) in [
        (Method::GET, format!("/v1/jobs/{}", job.id)),
        (Method::GET, format!("/v1/jobs/{}/output", job.id)),
        (Method::GET, format!("/v1/jobs/{}/logs", job.id)),
        (Method::GET, format!("/v1/jobs/{}/events", job.id)),
        (Method::POST, format!("/v1/jobs/{}/cancel", job.id)),
    ] {
        assert_eq!(status(&b.client, m.clone(), &p).await, (404, "not_found".into()), "{m} {p}");
    }
    let (_, page) = b.call(Method::GET, "/v1/jobs", None).await;
    assert_eq!(page["jobs"], json!([]));
    // Submitting against another tenant's workload name fails as if it did not exist.
    let (s, v) = b.call(Method::POST, "/v1/jobs", Some(json!({"workload": "echo"}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("unknown_workload")));
}
