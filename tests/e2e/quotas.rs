//! Tier quotas against a real server: the submission rate (429 with Retry-After) and the queue
//! under many concurrent clients, one rate shared by two coordinators, and the stored-bytes
//! quota on uploads.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::common::{ADMIN_KEY, Server, Tenant, cli, define_tier, guest};

#[tokio::test]
async fn the_submission_rate_and_the_queue_hold_under_concurrent_clients() {
    let server = Server::start();
    define_tier(&server, "metered", &["submissions_per_second=5", "submission_burst=10", "queued_jobs=1000"]);
    let t = server.tenant("acme", "metered").await;
    // Delayed a minute so that the jobs stay waiting while we count them.
    t.upload("echo").await;
    let body = json!({"workload": "echo", "delay_ms": 60_000});

    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..40 {
        let c = niyanta::cli::Client::new(&server.url, Some(t.key.clone()));
        let body = body.clone();
        clients.push(tokio::spawn(async move {
            let resp = c.request(Method::POST, "/v1/jobs").json(&body).send().await.expect("post");
            let status = resp.status().as_u16();
            let retry = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let v: Value = resp.json().await.unwrap_or_default();
            (status, retry, v)
        }));
    }
    let mut accepted = 0u32;
    for c in clients {
        let (status, retry, v) = c.await.expect("client");
        match status {
            202 => accepted += 1,
            429 => {
                assert_eq!(v["error"]["code"], "rate_limited", "{v}");
                let msg = v["error"]["message"].as_str().unwrap_or("");
                assert!(msg.contains("5 submissions per second") && msg.contains("bursts of up to 10"), "{msg}");
                assert!(retry.and_then(|r| r.parse::<u64>().ok()).is_some_and(|s| s >= 1), "a Retry-After in seconds");
            }
            other => panic!("unexpected answer {other}: {v}"),
        }
    }
    // The burst, plus what refilled while the clients ran, never more.
    let refilled = (started.elapsed().as_secs_f64() * 5.0).ceil() as u32;
    assert!((10..=10 + refilled).contains(&accepted), "{accepted} accepted in {:?}", started.elapsed());
    let (_, page) = t.call(Method::GET, "/v1/jobs?limit=100", None).await;
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(accepted as usize), "every accepted job is stored");

    // A batch larger than the burst can never pass; after a pause, submissions pass again.
    let batch = json!({"jobs": (0..11).map(|_| body.clone()).collect::<Vec<_>>()});
    let (s, v) = t.call(Method::POST, "/v1/jobs/batch", Some(batch)).await;
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("batch_over_burst")), "{v}");
    // A refusal of the batch as a whole names no job of it.
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.starts_with("a batch of 11 jobs")), "{v}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, _) = t.call(Method::POST, "/v1/jobs", Some(body.clone())).await;
    assert_eq!(s, 202);

    // The queue quota holds when many clients race for its last places.
    define_tier(&server, "small-queue", &["queued_jobs=5"]);
    let q = server.tenant("queue", "small-queue").await;
    q.upload("echo").await;
    let mut clients = Vec::new();
    for _ in 0..30 {
        let c = niyanta::cli::Client::new(&server.url, Some(q.key.clone()));
        let body = body.clone();
        clients.push(tokio::spawn(async move {
            let resp = c.request(Method::POST, "/v1/jobs").json(&body).send().await.expect("post");
            resp.status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for c in clients {
        statuses.push(c.await.expect("client"));
    }
    assert_eq!(statuses.iter().filter(|s| **s == 202).count(), 5, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 202 || *s == 429), "{statuses:?}");
}

#[tokio::test]
async fn coordinators_share_each_tenants_submission_rate() {
    let mut c = Cluster::new();
    c.coordinator();
    c.coordinator();
    let out = cli(
        c.url(0),
        ADMIN_KEY,
        &["tier", "set", "metered", "--like", "test", "submissions_per_second=1", "submission_burst=6"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The other coordinator reloads the tiers within 2 s.
    let admin = Tenant::new(c.url(1), ADMIN_KEY);
    let deadline = Instant::now() + Duration::from_secs(15);
    while admin.call(Method::GET, "/v1/tiers", None).await.1["metered"]["submission_burst"] != 6 {
        assert!(Instant::now() < deadline, "coordinator 1 never saw the tier\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t = c.tenant("acme", "metered").await;
    t.upload("echo").await;
    let through = [Tenant::new(c.url(0), &t.key), Tenant::new(c.url(1), &t.key)];
    let body = json!({"workload": "echo", "delay_ms": 60_000});

    // Turn about through the two coordinators: one bucket of 6 between them, not 6 each.
    let started = Instant::now();
    let mut accepted = [0u32; 2];
    let mut refused = [0u32; 2];
    for i in 0..16 {
        let (s, v) = through[i % 2].call(Method::POST, "/v1/jobs", Some(body.clone())).await;
        match s {
            202 => accepted[i % 2] += 1,
            429 => {
                assert_eq!(v["error"]["code"], "rate_limited", "{v}");
                refused[i % 2] += 1;
            }
            other => panic!("unexpected answer {other}: {v}\n{}", c.logs()),
        }
    }
    let refilled = started.elapsed().as_secs() as u32;
    let total = accepted[0] + accepted[1];
    assert!((6..=6 + refilled).contains(&total), "{accepted:?} accepted in {:?}", started.elapsed());
    assert!(refused.iter().all(|r| *r > 0), "each coordinator refuses once the shared bucket is empty: {refused:?}");
    let (_, page) = t.call(Method::GET, "/v1/jobs?limit=100", None).await;
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(total as usize), "every accepted job is stored");
}

#[tokio::test]
async fn uploads_stop_at_the_stored_bytes_quota() {
    let server = Server::start();
    let echo = guest("echo").len() as u64;
    let quota = echo + 150_000;
    define_tier(&server, "small-store", &[&format!("stored_bytes={quota}")]);
    let t = server.tenant("acme", "small-store").await;
    t.upload("echo").await;
    // The same component under another name is stored once.
    let rb = t.client.request(Method::PUT, "/v1/workloads/echo-again").body(guest("echo"));
    assert_eq!(rb.send().await.expect("put").status().as_u16(), 201);
    // A second, different component would pass the quota: refused with the figures.
    let rb = t.client.request(Method::PUT, "/v1/workloads/primes").body(guest("primes"));
    let resp = rb.send().await.expect("put");
    assert_eq!(resp.status().as_u16(), 403);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "stored_bytes_quota");
    let msg = v["error"]["message"].as_str().unwrap_or("");
    assert!(msg.contains(&format!("stores {echo} bytes")) && msg.contains(&format!("quota of {quota} bytes")), "{msg}");
    let (_, list) = t.call(Method::GET, "/v1/workloads", None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(2), "nothing stored for the refused upload");

    // Inputs count too: the first fits, the second would not.
    let first = vec![b'a'; 100_000];
    let resp = t.client.request(Method::POST, "/v1/inputs").body(first).send().await.expect("post");
    assert_eq!(resp.status().as_u16(), 201);
    let second = vec![b'b'; 100_000];
    let resp = t.client.request(Method::POST, "/v1/inputs").body(second.clone()).send().await.expect("post");
    assert_eq!(resp.status().as_u16(), 403);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "stored_bytes_quota", "{v}");
    // So does an inline input large enough to be stored as a blob.
    let (s, v) = t
        .call(
            Method::POST,
            "/v1/jobs",
            Some(json!({"workload": "echo", "input": String::from_utf8(second).expect("ascii")})),
        )
        .await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("stored_bytes_quota")), "{v}");
}
