//! Coordinators paused (SIGSTOP, then SIGCONT) during a steady flow of submissions and
//! checkpointing jobs: every accepted job exists and completes once with its output, the cluster
//! keeps moving, no database session stays idle inside a transaction, and never do two
//! coordinators say they lead. Also: PostgreSQL stopped, during which the API answers 503.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::cluster::{Cluster, nats_url};
use crate::common::Tenant;
use crate::private::PrivatePostgres;

/// How long each pause lasts: past the leader term (3 s) and the lease timeout (3 s).
const PAUSE: Duration = Duration::from_secs(6);
/// Steps of each ticker job (a checkpoint each).
const STEPS: u32 = 5;

fn ticker_output(steps: u32) -> Vec<u8> {
    (0..steps).map(|i| format!("step {i}\n")).collect::<String>().into_bytes()
}

/// What the flow saw: the accepted jobs (idempotency key, id), and answers other than 2xx.
#[derive(Default)]
struct Seen {
    accepted: Vec<(String, String)>,
    refused: Vec<(u16, String)>,
}

/// Submits one job under `key` through each coordinator in turn (2 s per try: a paused one does
/// not answer) until one accepts it; retries with the same key cannot create it twice. Panics
/// on any answer but 202, 200 (the key was used before), 503 and 429.
async fn submit_once(http: &reqwest::Client, urls: &[String], api_key: &str, key: &str, seen: &Mutex<Seen>) -> String {
    let body = json!({"workload": "ticker", "params": {"steps": STEPS, "sleep_ms": 60}});
    let start = Instant::now();
    for url in urls.iter().cycle() {
        let sent = http
            .post(format!("{url}/v1/jobs"))
            .bearer_auth(api_key)
            .header("idempotency-key", key)
            .json(&body)
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        if let Ok(resp) = sent {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            match status {
                StatusCode::ACCEPTED | StatusCode::OK => {
                    let v: Value = serde_json::from_str(&text).expect("a job");
                    return v["id"].as_str().expect("id").to_owned();
                }
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                    seen.lock().unwrap().refused.push((status.as_u16(), text));
                }
                _ => panic!("submission {key} answered {status}: {text}"),
            }
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no coordinator accepted {key} within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unreachable!("an endless cycle of coordinators")
}

/// The jobs of the tenant that succeeded, as the first coordinator to answer (within 2 s) counts
/// them; all are asked at once, as a paused one does not answer.
async fn succeeded(http: &reqwest::Client, urls: &[String], api_key: &str) -> Option<usize> {
    let asks = urls.iter().map(|url| {
        let rb = http
            .get(format!("{url}/v1/jobs?state=succeeded&limit=1000"))
            .bearer_auth(api_key)
            .timeout(Duration::from_secs(2));
        Box::pin(async move {
            let v: Value = rb.send().await?.error_for_status()?.json().await?;
            v["jobs"].as_array().map(Vec::len).ok_or_else(|| anyhow::anyhow!("no jobs in {v}"))
        })
    });
    futures::future::select_ok(asks).await.ok().map(|(n, _)| n)
}

/// The sessions of this cluster that sit idle inside a transaction, with the seconds since they
/// last did anything.
async fn idle_in_transaction(pool: &sqlx::PgPool, schema: &str) -> Vec<f64> {
    sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM now() - state_change)::FLOAT8 FROM pg_stat_activity \
         WHERE application_name = $1 AND state LIKE 'idle in transaction%'",
    )
    .bind(format!("niyanta/{schema}"))
    .fetch_all(pool)
    .await
    .expect("pg_stat_activity")
}

#[tokio::test]
async fn paused_coordinators_lose_no_accepted_job_and_the_cluster_keeps_moving() {
    let mut c = Cluster::new();
    c.coordinator();
    c.coordinator();
    for _ in 0..3 {
        c.worker(4, &[]);
    }
    c.wait_workers(3).await;
    let t: Tenant = c.tenant("acme", "bulk").await;
    t.upload("ticker").await;
    let urls: Vec<String> = (0..2).map(|i| c.url(i).to_owned()).collect();
    let http = reqwest::Client::new();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // Four submitters, each one job at a time, about 13 jobs/s in all.
    let mut submitters = Vec::new();
    for s in 0..4 {
        let (http, urls, key, seen, stop) = (http.clone(), urls.clone(), t.key.clone(), seen.clone(), stop.clone());
        submitters.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let idem = format!("flow-{s}-{n}");
                let id = submit_once(&http, &urls, &key, &idem, &seen).await;
                seen.lock().unwrap().accepted.push((idem, id));
                n += 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }));
    }

    // A monitor: the longest time without a job ending while some were unfinished, and the
    // sessions idle inside a transaction for longer than the server allows (3 s) plus 2 s.
    let db = sqlx::PgPool::connect(&crate::cluster::database_url()).await.expect("database");
    let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let monitor = {
        let (http, urls, key, seen, watching, db, schema) =
            (http.clone(), urls.clone(), t.key.clone(), seen.clone(), watching.clone(), db.clone(), c.schema.clone());
        tokio::spawn(async move {
            let (mut last_count, mut last_change) = (0usize, Instant::now());
            let mut stalls: Vec<(Duration, Duration)> = Vec::new(); // (when it began after start, length)
            let mut stuck: Vec<f64> = Vec::new();
            let start = Instant::now();
            while watching.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(250)).await;
                stuck.extend(idle_in_transaction(&db, &schema).await.into_iter().filter(|s| *s > 5.0));
                let Some(done) = succeeded(&http, &urls, &key).await else { continue };
                let accepted = seen.lock().unwrap().accepted.len();
                if done > last_count || done >= accepted {
                    let gap = last_change.elapsed();
                    if gap > Duration::from_secs(2) {
                        stalls.push((last_change - start, gap));
                    }
                    last_count = done;
                    last_change = Instant::now();
                }
            }
            (stalls, stuck)
        })
    };

    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut pauses = Vec::new();
    let start = Instant::now();
    // The leader three times, then the follower once.
    for round in 0..4 {
        let leader = c.leader(Duration::from_secs(30)).await;
        let target = if round < 3 { leader } else { 1 - leader };
        pauses.push((if round < 3 { "leader" } else { "follower" }, start.elapsed()));
        c.coordinators[target].signal("STOP");
        tokio::time::sleep(PAUSE).await;
        c.coordinators[target].signal("CONT");
        // Never two leaders: the resumed coordinator knows at once that its term is over.
        let says: Vec<Option<bool>> = vec![c.says_it_leads(0).await, c.says_it_leads(1).await];
        assert!(says.iter().filter(|s| **s == Some(true)).count() <= 1, "two leaders: {says:?}\n{}", c.logs());
        tokio::time::sleep(Duration::from_secs(6)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for s in submitters {
        s.await.expect("submitter");
    }

    // Every accepted job ends, succeeded, once, with its output.
    let accepted = seen.lock().unwrap().accepted.clone();
    assert!(accepted.len() >= 300, "only {} jobs were accepted", accepted.len());
    let deadline = Instant::now() + Duration::from_secs(180);
    for (key, id) in &accepted {
        let end = t.wait_end(id, deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1))).await;
        assert_eq!(end.state.as_str(), "succeeded", "{key}: {end:?}\n{}", c.logs());
    }
    watching.store(false, std::sync::atomic::Ordering::SeqCst);
    let (stalls, stuck) = monitor.await.expect("monitor");
    let want = ticker_output(STEPS);
    for (key, id) in &accepted {
        assert_eq!(t.output(id).await, want, "output of {key} ({id})");
    }
    let mut ids: Vec<&String> = accepted.iter().map(|(_, id)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), accepted.len(), "two keys answered with one job");
    let (_, page) = t.call(Method::GET, "/v1/jobs?limit=1000", None).await;
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(accepted.len()), "jobs stored beside the accepted ones");

    // How long the cluster stood still, said for the record, and bounded: a pause of the leader
    // costs at most its term and the time the server takes to end its open transaction (3 s
    // each) plus a few seconds; a follower's pause costs nothing.
    eprintln!("pauses (kind, seconds after the first): {pauses:?}");
    for (i, p) in c.coordinators.iter().enumerate() {
        for l in p
            .log_text()
            .lines()
            .filter(|l| ["leading", "following", "ran out", "stalled", "renew"].iter().any(|w| l.contains(w)))
        {
            eprintln!("c{i}: {l}");
        }
    }
    eprintln!("stalls over 2 s (began, length): {stalls:?}");
    let refused = seen.lock().unwrap().refused.len();
    eprintln!("{} jobs accepted; {refused} submissions answered 503 or 429 and sent again", accepted.len());
    for (began, length) in &stalls {
        assert!(
            *length < Duration::from_secs(9),
            "the cluster stood still for {length:?} from {began:?}\n{}",
            c.logs()
        );
    }
    assert!(stuck.is_empty(), "sessions idle in a transaction for longer than 5 s: {stuck:?}");
    assert!(idle_in_transaction(&db, &c.schema).await.is_empty(), "sessions left idle in a transaction");
    let says: Vec<Option<bool>> = vec![c.says_it_leads(0).await, c.says_it_leads(1).await];
    assert_eq!(says.iter().filter(|s| **s == Some(true)).count(), 1, "leaders: {says:?}");
}

#[tokio::test]
async fn while_postgres_is_down_the_api_answers_503_and_recovers_without_a_restart() {
    let pg = PrivatePostgres::start();
    let mut c = Cluster::new().backends(pg.url(), nats_url());
    c.coordinator();
    c.worker(2, &[]);
    c.wait_workers(1).await;
    let t = c.tenant("acme", "test").await;
    t.upload("echo").await;
    let before = t.submit(json!({"workload": "echo", "input": "before"})).await;
    t.wait_end(&before.id, Duration::from_secs(30)).await;

    pg.stop();
    let down = Instant::now();
    let mut answers = 0;
    while down.elapsed() < Duration::from_secs(10) {
        for (method, path, body) in [
            (Method::GET, "/v1/jobs?limit=10".to_owned(), None),
            (Method::GET, format!("/v1/jobs/{}", before.id), None),
            (Method::POST, "/v1/jobs".to_owned(), Some(json!({"workload": "echo", "input": "down"}))),
        ] {
            let mut rb = t.client.request(method.clone(), &path).timeout(Duration::from_secs(15));
            if let Some(b) = &body {
                rb = rb.json(b).header("idempotency-key", "while-down");
            }
            let resp = rb.send().await.expect("the API answers while PostgreSQL is down");
            let status = resp.status();
            let retry_after = resp.headers().get("retry-after").cloned();
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{method} {path}: {v}");
            assert_eq!(v["error"]["code"], "database_unavailable", "{v}");
            assert!(retry_after.is_some(), "{method} {path}: no Retry-After");
            answers += 1;
        }
    }
    assert!(answers >= 3);
    pg.start_again();

    // Without a restart: submissions are accepted again, and run.
    let start = Instant::now();
    let after = loop {
        let rb = t.client.request(Method::POST, "/v1/jobs").json(&json!({"workload": "echo", "input": "after"}));
        match t.client.json::<Value>(rb).await {
            Ok(j) => break j["id"].as_str().expect("id").to_owned(),
            Err(e) => {
                assert!(start.elapsed() < Duration::from_secs(30), "still refused: {e:#}\n{}", c.logs());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let end = t.wait_end(&after, Duration::from_secs(30)).await;
    assert_eq!(end.state.as_str(), "succeeded", "{end:?}\n{}", c.logs());
    assert_eq!(t.output(&after).await, b"after");
}
