//! Tenant administration against a real server: keys (read-only, revoked), suspension, tier
//! changes, tiers defined at run time and kept across a restart, all through the CLI and the API.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{ADMIN_KEY, Server, Tenant, cli};

fn ok_json(out: std::process::Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

fn tenant(server: &Server, key: &str) -> Tenant {
    Tenant::new(&server.url, key)
}

async fn code(t: &Tenant, method: Method, path: &str, body: Option<Value>) -> (u16, String) {
    let (s, v) = t.call(method, path, body).await;
    (s, v["error"]["code"].as_str().unwrap_or("").to_owned())
}

#[tokio::test]
async fn keys_can_be_read_only_and_revoked() {
    let server = Server::start();
    let created = ok_json(cli(&server.url, ADMIN_KEY, &["tenant", "create", "acme", "--tier", "test", "--json"]));
    let first = tenant(&server, created["api_key"].as_str().expect("key"));
    first.upload("echo").await;
    let ro = ok_json(cli(&server.url, ADMIN_KEY, &["key", "create", "acme", "--read-only", "--json"]));
    let reader = tenant(&server, ro["api_key"].as_str().expect("key"));
    assert_eq!(ro["key"]["read_only"], json!(true));

    // A read-only key reads, and is refused everything else.
    assert_eq!(code(&reader, Method::GET, "/v1/workloads", None).await.0, 200);
    let job = first.submit(json!({"workload": "echo", "input": "hi"})).await;
    assert_eq!(code(&reader, Method::GET, &format!("/v1/jobs/{}", job.id), None).await.0, 200);
    assert_eq!(
        code(&reader, Method::POST, "/v1/jobs", Some(json!({"workload": "echo"}))).await,
        (403, "read_only_key".into())
    );
    assert_eq!(
        code(&reader, Method::POST, &format!("/v1/jobs/{}/cancel", job.id), None).await,
        (403, "read_only_key".into())
    );

    // The list names both keys by id, never the keys themselves.
    let listed = ok_json(cli(&server.url, ADMIN_KEY, &["key", "list", "acme", "--json"]));
    let ids: Vec<&str> = listed.as_array().expect("list").iter().map(|k| k["id"].as_str().expect("id")).collect();
    assert_eq!(ids.len(), 2);
    assert!(!listed.to_string().contains(&first.key) && !listed.to_string().contains(&reader.key));

    // Revoking the first key: refused from now on; the other key works on.
    let first_id = ids.iter().find(|id| **id != ro["key"]["id"].as_str().expect("id")).expect("first key").to_string();
    let revoked = ok_json(cli(&server.url, ADMIN_KEY, &["key", "revoke", "acme", &first_id, "--json"]));
    assert!(revoked["revoked_at"].is_string());
    assert_eq!(code(&first, Method::GET, "/v1/jobs", None).await, (401, "unauthorized".into()));
    assert_eq!(code(&reader, Method::GET, "/v1/jobs", None).await.0, 200);

    // Unknown tenants and keys: the CLI says so and exits 2; a tenant key is no admin key.
    let out = cli(&server.url, ADMIN_KEY, &["key", "revoke", "acme", "0000000000000000"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not exist"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&server.url, ADMIN_KEY, &["key", "list", "nobody"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("tenant \"nobody\" does not exist"));
    let other = server.tenant("other", "test").await;
    for (m, p) in [
        (Method::GET, "/v1/tenants/acme"),
        (Method::GET, "/v1/tenants/acme/keys"),
        (Method::POST, "/v1/tenants/acme/keys"),
        (Method::POST, "/v1/tenants/acme/suspend"),
        (Method::POST, "/v1/tenants/acme/resume"),
        (Method::PUT, "/v1/tiers/gold"),
    ] {
        assert_eq!(code(&other, m.clone(), p, Some(json!({}))).await, (403, "admin_key_required".into()), "{m} {p}");
    }
}

#[tokio::test]
async fn a_suspended_tenant_is_refused_and_its_queued_jobs_wait() {
    let server = Server::start();
    let t = server.tenant("acme", "test").await;
    let other = server.tenant("other", "test").await;
    t.upload("echo").await;
    other.upload("echo").await;
    // Due in 1 s: it is queued while the tenant is suspended, and must not start until resumed.
    let job = t.submit(json!({"workload": "echo", "input": "later", "delay_ms": 1000})).await;
    let suspended = ok_json(cli(&server.url, ADMIN_KEY, &["tenant", "suspend", "acme", "--json"]));
    assert_eq!(suspended["suspended"], json!(true));
    assert_eq!(code(&t, Method::GET, "/v1/jobs", None).await, (403, "tenant_suspended".into()));
    // Other tenants run on meanwhile.
    let theirs = other.submit(json!({"workload": "echo", "input": "x"})).await;
    assert_eq!(other.wait_end(&theirs.id, Duration::from_secs(30)).await.state, niyanta::state::JobState::Succeeded);
    // Due and queued (the tenant, suspended, cannot look: the gauge shows it), then passed over
    // by later scheduling rounds.
    let queued = r#"niyanta_jobs{state="queued",tier="test"} 1"#;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = reqwest::get(format!("{}/metrics", server.url)).await.expect("metrics").text().await.expect("text");
        if text.lines().any(|l| l == queued) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the delayed job was never queued:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    crate::common::wait_rounds(&server.url, 3).await;
    let listed = ok_json(cli(&server.url, ADMIN_KEY, &["tenant", "list", "--json"]));
    let acme = listed.as_array().expect("list").iter().find(|x| x["name"] == "acme").expect("acme").clone();
    assert_eq!(acme["suspended"], json!(true));

    let resumed_at = niyanta::ids::now_ms();
    let resumed = ok_json(cli(&server.url, ADMIN_KEY, &["tenant", "resume", "acme", "--json"]));
    assert_eq!(resumed["suspended"], json!(false));
    let ended = t.wait_end(&job.id, Duration::from_secs(30)).await;
    assert_eq!(ended.state, niyanta::state::JobState::Succeeded);
    let started = niyanta::ids::parse_rfc3339(ended.started_at.as_deref().expect("started")).expect("time");
    assert!(started >= resumed_at, "the job started at {started}, before the tenant was resumed at {resumed_at}");
    assert_eq!(t.output(&job.id).await, b"later");
}

#[tokio::test]
async fn tiers_are_defined_at_run_time_and_kept_across_a_restart() {
    let mut server = Server::start();
    let t = server.tenant("acme", "test").await;
    // A new tier, from another one with two limits changed.
    let gold = ok_json(cli(
        &server.url,
        ADMIN_KEY,
        &["tier", "set", "gold", "--like", "test", "concurrent_jobs=3", "priority=40", "--json"],
    ));
    assert_eq!((gold["concurrent_jobs"].as_u64(), gold["priority"].as_i64()), (Some(3), Some(40)));
    // Bad definitions are refused with the field named; nothing changes.
    let out = cli(&server.url, ADMIN_KEY, &["tier", "set", "gold", "memory_bytes=1099511627776"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("memory_bytes"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli(&server.url, ADMIN_KEY, &["tier", "set", "platinum", "priority=1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--like"), "{}", String::from_utf8_lossy(&out.stderr));

    let moved = ok_json(cli(&server.url, ADMIN_KEY, &["tenant", "set-tier", "acme", "gold", "--json"]));
    assert_eq!(moved["tier"], "gold");
    let (s, me) = t.call(Method::GET, "/v1/tenant", None).await;
    assert_eq!((s, me["tier"].as_str()), (200, Some("gold")));
    let out = cli(&server.url, ADMIN_KEY, &["tenant", "set-tier", "acme", "diamond"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown_tier"), "{}", String::from_utf8_lossy(&out.stderr));

    // Kept across a restart, with the configuration file's tiers beside it.
    server.kill9();
    server.restart();
    let tiers = ok_json(cli(&server.url, ADMIN_KEY, &["tier", "list", "--json"]));
    assert_eq!(tiers["gold"], gold);
    assert!(tiers["test"].is_object() && tiers["premium"].is_object());
    let t = t.at(&server);
    let (_, me) = t.call(Method::GET, "/v1/tenant", None).await;
    assert_eq!(me["tier"], "gold");
    // A tenant on it runs jobs under it.
    t.upload("echo").await;
    let job = t.submit(json!({"workload": "echo", "input": "gold"})).await;
    assert_eq!(t.wait_end(&job.id, Duration::from_secs(30)).await.state, niyanta::state::JobState::Succeeded);
}

#[tokio::test]
async fn the_worker_of_serve_is_not_drained_and_unknown_workers_are_404() {
    let server = Server::start();
    let admin = tenant(&server, ADMIN_KEY);
    let (status, body) = admin.call(Method::GET, "/v1/cluster", None).await;
    assert_eq!(status, 200, "{body}");
    let id = body["workers"][0]["id"].as_str().expect("the embedded worker").to_owned();
    let (status, body) = admin.call(Method::POST, &format!("/v1/cluster/workers/{id}/drain"), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("embedded_worker")), "{body}");
    let (status, body) = admin.call(Method::POST, "/v1/cluster/workers/no-such-worker/drain", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{body}");

    // The node still runs jobs.
    let t = server.tenant("after-drain", "test").await;
    t.upload("echo").await;
    let job = t.submit(json!({"workload": "echo", "input": "still here"})).await;
    t.wait_end(&job.id, Duration::from_secs(30)).await;
    assert_eq!(t.output(&job.id).await, b"still here");
}
