//! Hostile requests against what the server holds: params over the tier's `params_bytes`,
//! params filling the stored-bytes quota, bodies over the tier's limits (declared and chunked),
//! many large uploads at once (the server's memory and another tenant's latency), and pages of
//! jobs with large params.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{Server, Tenant, define_tier, guest, rss_bytes};

const MIB: u64 = 1024 * 1024;

/// The `GET /v1/jobs` page budget (`niyanta::api::page::PAGE_BYTES`).
const PAGE_BYTES: usize = niyanta::api::page::PAGE_BYTES;

/// Params whose JSON text is `bytes` long: `{"pad":"xx…"}`.
fn params_of(bytes: usize) -> Value {
    let v = json!({ "pad": "x".repeat(bytes - 10) });
    assert_eq!(v.to_string().len(), bytes);
    v
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or("")
}

/// The tenant's stored bytes as `GET /v1/usage` shows them.
async fn stored(t: &Tenant) -> Value {
    let (s, v) = t.call(Method::GET, "/v1/usage", None).await;
    assert_eq!(s, 200, "{v}");
    v["stored"].clone()
}

/// What a request written by hand got back.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
    /// Body bytes written before the answer came (or writing failed).
    sent: u64,
}

/// Sends `head` (the request line and headers, with `Authorization`, but not the body's length)
/// and then `body_bytes` bytes, declared by `Content-Length: declared`, or chunked when
/// `declared` is `None`, 256 KiB at a time, while reading the answer; writing stops as soon as
/// the answer has come or the server closed the connection.
async fn raw(url: &str, head: &str, declared: Option<u64>, body_bytes: u64) -> Answer {
    let addr = url.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let length = match declared {
        Some(n) => format!("Content-Length: {n}"),
        None => "Transfer-Encoding: chunked".to_owned(),
    };
    let head = format!("{head}\r\nHost: {addr}\r\n{length}\r\n\r\n");
    let sent = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let (sent, answered) = (sent.clone(), answered.clone());
        async move {
            wr.write_all(head.as_bytes()).await?;
            let chunk = vec![0u8; 256 * 1024];
            let mut left = body_bytes;
            while left > 0 && !answered.load(Ordering::SeqCst) {
                let n = left.min(chunk.len() as u64) as usize;
                if declared.is_none() {
                    wr.write_all(format!("{n:x}\r\n").as_bytes()).await?;
                }
                wr.write_all(&chunk[..n]).await?;
                if declared.is_none() {
                    wr.write_all(b"\r\n").await?;
                }
                sent.fetch_add(n as u64, Ordering::SeqCst);
                left -= n as u64;
            }
            if declared.is_none() && left == 0 {
                wr.write_all(b"0\r\n\r\n").await?;
            }
            std::io::Result::Ok(wr)
        }
    });
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len =
                    head.lines().find_map(|l| l.strip_prefix("content-length:")).map(|v| v.trim().parse::<usize>());
                if let Some(Ok(len)) = len
                    && buf.len() >= end + 4 + len
                {
                    return;
                }
            }
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    answered.store(true, Ordering::SeqCst);
    read.expect("an answer within 60 s");
    writer.abort();
    let text = String::from_utf8_lossy(&buf);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").and_then(|(_, b)| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
    Answer { status, body, sent: sent.load(Ordering::SeqCst) }
}

/// The request line and key of an upload of a component named `name`.
fn put_head(t: &Tenant, name: &str) -> String {
    format!("PUT /v1/workloads/{name} HTTP/1.1\r\nAuthorization: Bearer {}\r\nContent-Type: application/wasm", t.key)
}

#[tokio::test]
async fn oversized_params_and_json_bodies_are_refused_and_nothing_is_stored() {
    let server = Server::start();
    define_tier(&server, "small-params", &["params_bytes=65536", "submissions_per_second=100", "submission_burst=10"]);
    let t = server.tenant("acme", "small-params").await;
    t.upload("echo").await;
    let fits = params_of(65_536);
    let over = params_of(65_537);

    let (s, v) = t.call(Method::POST, "/v1/jobs", Some(json!({"workload": "echo", "params": over}))).await;
    assert_eq!((s, code(&v)), (413, "params_too_large"), "{v}");
    assert!(message(&v).contains("65537 bytes") && message(&v).contains("allows 65536 bytes"), "{v}");
    // One job over the limit refuses the whole batch, naming it.
    let batch = json!({"jobs": [{"workload": "echo"}, {"workload": "echo", "params": over}, {"workload": "echo"}]});
    let (s, v) = t.call(Method::POST, "/v1/jobs/batch", Some(batch)).await;
    assert_eq!((s, code(&v)), (413, "params_too_large"), "{v}");
    assert!(message(&v).starts_with("jobs[1]: the params are 65537 bytes"), "{v}");
    let (_, page) = t.call(Method::GET, "/v1/jobs", None).await;
    assert_eq!(page["jobs"], json!([]), "nothing stored");
    assert_eq!(stored(&t).await["params_bytes"], 0);

    // A JSON body over the tier's limit ((64 KiB + 128 KiB) for each of 10 jobs) is refused from
    // its Content-Length: the answer comes though the body is never sent.
    let limit = (65_536 + 131_072) * 10;
    let head =
        format!("POST /v1/jobs/batch HTTP/1.1\r\nAuthorization: Bearer {}\r\nContent-Type: application/json", t.key);
    let a = raw(&server.url, &head, Some(limit + 1), 0).await;
    assert_eq!((a.status, code(&a.body)), (413, "body_too_large"), "{a:?}");
    assert!(message(&a.body).contains(&format!("{} bytes (Content-Length); the limit is {limit}", limit + 1)), "{a:?}");

    // Params at the limit are taken, and counted.
    let job = t.submit(json!({"workload": "echo", "params": fits})).await;
    assert_eq!(job.params.get().len(), 65_536);
    assert_eq!(stored(&t).await["params_bytes"], 65_536);
}

#[tokio::test]
async fn params_count_in_the_stored_bytes_and_the_quota_holds() {
    let server = Server::start();
    let echo = guest("echo").len() as u64;
    let quota = echo + 50_000;
    define_tier(&server, "small-store", &[&format!("stored_bytes={quota}"), "params_bytes=20000"]);
    let t = server.tenant("acme", "small-store").await;
    t.upload("echo").await;
    let delayed = |bytes: usize| json!({"workload": "echo", "params": params_of(bytes), "delay_ms": 600_000});
    for _ in 0..3 {
        t.submit(delayed(15_000)).await;
    }
    let s = stored(&t).await;
    assert_eq!((s["components_bytes"].as_u64(), s["params_bytes"].as_u64()), (Some(echo), Some(45_000)), "{s}");
    assert_eq!((s["total_bytes"].as_u64(), s["quota_bytes"].as_u64()), (Some(echo + 45_000), Some(quota)), "{s}");

    // 15,000 more would pass the quota: refused with the figures, single or in a batch.
    let (st, v) = t.call(Method::POST, "/v1/jobs", Some(delayed(15_000))).await;
    assert_eq!((st, code(&v)), (403, "stored_bytes_quota"), "{v}");
    let stored_now = echo + 45_000;
    assert!(
        message(&v).contains(&format!("stores {stored_now} bytes; 15000 more"))
            && message(&v).contains(&format!("quota of {quota} bytes")),
        "{v}"
    );
    let batch = json!({"jobs": [delayed(2_000), delayed(2_000), delayed(2_000)]});
    let (st, v) = t.call(Method::POST, "/v1/jobs/batch", Some(batch)).await;
    assert_eq!((st, code(&v)), (403, "stored_bytes_quota"), "{v}");
    // What still fits is taken; nothing refused was stored.
    t.submit(delayed(4_000)).await;
    let (_, page) = t.call(Method::GET, "/v1/jobs?limit=100", None).await;
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(4), "{page}");
    assert_eq!(stored(&t).await["params_bytes"], 49_000);
    // Inputs share the quota with the params: 1,000 bytes are left.
    let resp = t.client.request(Method::POST, "/v1/inputs").body(vec![b'a'; 1_001]).send().await.expect("post");
    assert_eq!(resp.status().as_u16(), 403);
}

#[tokio::test]
async fn uploads_over_the_tier_are_refused_before_their_body_is_read() {
    let server = Server::start();
    // The `test` tier takes components of up to 4 MiB.
    let t = server.tenant("acme", "test").await;
    let big = 60 * MIB;

    // Declared too large: the answer comes while the client has sent only the headers.
    let a = raw(&server.url, &put_head(&t, "big"), Some(big), 0).await;
    assert_eq!((a.status, code(&a.body)), (413, "component_too_large"), "{a:?}");
    assert!(message(&a.body).contains("62914560 bytes (Content-Length); the limit is 4194304 bytes"), "{a:?}");
    // Sent whole with that Content-Length, it is refused long before its end.
    let a = raw(&server.url, &put_head(&t, "big"), Some(big), big).await;
    assert_eq!((a.status, code(&a.body)), (413, "component_too_large"), "{a:?}");
    assert!(a.sent < big, "the server waited for the whole body: {a:?}");

    // Chunked, without a length: refused as soon as 4 MiB have passed, while the client still sends.
    let a = raw(&server.url, &put_head(&t, "big"), None, big).await;
    assert_eq!((a.status, code(&a.body)), (413, "component_too_large"), "{a:?}");
    assert!(message(&a.body).contains("larger than 4194304 bytes"), "{a:?}");
    assert!(a.sent < big, "the whole chunked body was read: {a:?}");
    // A chunked body within the limit is read whole, and checked as before.
    let a = raw(&server.url, &put_head(&t, "small"), None, 0).await;
    assert_eq!((a.status, code(&a.body)), (400, "not_wasm"), "{a:?}");
    let (_, list) = t.call(Method::GET, "/v1/workloads", None).await;
    assert_eq!(list, json!([]), "nothing stored");

    // Inputs, which are streamed, are refused from their Content-Length too (64 MiB in `test`).
    let head = format!("POST /v1/inputs HTTP/1.1\r\nAuthorization: Bearer {}", t.key);
    let a = raw(&server.url, &head, Some(65 * MIB), 0).await;
    assert_eq!((a.status, code(&a.body)), (413, "input_too_large"), "{a:?}");
}

/// The 99th percentile of `samples`, by nearest rank (of 50 to 100 samples, the largest).
fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[(samples.len() * 99).div_ceil(100) - 1]
}

/// `n` submit → succeeded round trips of an `echo` job, one after another.
async fn round_trips(t: &Tenant, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        let job = t.submit(json!({"workload": "echo", "input": format!("innocent {i}")})).await;
        loop {
            let j = t.job(&job.id).await;
            if j.state.is_terminal() {
                assert_eq!(j.state.as_str(), "succeeded", "{j:?}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        out.push(start.elapsed());
    }
    out
}

// Bounds. Measured on a 2-vCPU machine (debug logging on, the attackers on the same machine,
// 100–130 uploads refused in each run): the RSS grew by 14–18 MiB (4 of the 12 attackers send
// chunked bodies, each read up to the 4 MiB limit before the refusal), and the p99 of the
// innocent round trips was 30–70 ms under attack, 6–8 ms without. Unpaced (each attacker
// starting again at once: 1,500–1,800 uploads refused in 2 s) the p99 was 74–93 ms alone and
// 511 ms once beside another test. The bounds leave room for a loaded CI machine.
const RSS_GROWTH_BOUND: u64 = 64 * MIB;
const P99_BOUND: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_large_uploads_hold_no_memory_and_do_not_slow_other_tenants() {
    let server = Server::start();
    let pid = server.pid().expect("running");
    let attacker = server.tenant("attacker", "test").await;
    let innocent = server.tenant("innocent", "test").await;
    innocent.upload("echo").await;
    let quiet = p99(round_trips(&innocent, 20).await);
    let before = rss_bytes(pid);

    // Twelve clients send 60 MiB components on a 4 MiB tier (8 with Content-Length, 4 chunked),
    // and again, at most every 100 ms each, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let mut attackers = Vec::new();
    for i in 0..12 {
        let (url, head, stop) = (server.url.clone(), put_head(&attacker, &format!("big{i}")), stop.clone());
        attackers.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                let declared = (i % 3 != 2).then_some(60 * MIB);
                answers.push(raw(&url, &head, declared, 60 * MIB).await);
                tokio::time::sleep(Duration::from_millis(100).saturating_sub(started.elapsed())).await;
            }
            answers
        }));
    }
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = tokio::spawn({
        let (peak, stop) = (peak.clone(), stop.clone());
        async move {
            while !stop.load(Ordering::SeqCst) {
                peak.fetch_max(rss_bytes(pid), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let attacked = round_trips(&innocent, 50).await;
    stop.store(true, Ordering::SeqCst);
    sampler.await.expect("sampler");
    let mut refused = 0;
    for a in attackers {
        for answer in a.await.expect("attacker") {
            assert_eq!((answer.status, code(&answer.body)), (413, "component_too_large"), "{answer:?}");
            refused += 1;
        }
    }
    let growth = peak.load(Ordering::SeqCst).saturating_sub(before);
    let p99_attacked = p99(attacked);
    println!(
        "{refused} uploads of 60 MiB refused; RSS {} MiB before, grew by {:.1} MiB at most; p99 of the innocent \
         round trips {quiet:?} quiet, {p99_attacked:?} under attack",
        before / MIB,
        growth as f64 / MIB as f64
    );
    assert!(refused >= 12, "each attacker was answered");
    assert!(growth < RSS_GROWTH_BOUND, "the server's RSS grew by {growth} bytes");
    assert!(p99_attacked < P99_BOUND, "p99 {p99_attacked:?} under attack ({quiet:?} quiet)");
}

#[tokio::test]
async fn pages_of_jobs_stay_within_their_byte_budget_and_continue() {
    let server = Server::start();
    // The `test` tier takes params of up to 1 MiB (the default).
    let t = server.tenant("acme", "test").await;
    t.upload("echo").await;
    let heavy = json!({"workload": "echo", "params": params_of(1_000_000), "delay_ms": 600_000});
    let batch = json!({"jobs": vec![heavy; 12]});
    let (s, v) = t.call(Method::POST, "/v1/jobs/batch", Some(batch)).await;
    assert_eq!(s, 202, "{v}");
    let mut expected: Vec<String> =
        v["jobs"].as_array().expect("jobs").iter().map(|j| j["id"].as_str().expect("id").to_owned()).collect();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/jobs?limit=1000&cursor={c}"),
            None => "/v1/jobs?limit=1000".to_owned(),
        };
        let resp = t.client.request(Method::GET, &path).send().await.expect("list");
        assert_eq!(resp.status().as_u16(), 200);
        let body = resp.bytes().await.expect("body");
        assert!(body.len() <= PAGE_BYTES, "a page of {} bytes", body.len());
        let page: Value = serde_json::from_slice(&body).expect("json");
        let jobs = page["jobs"].as_array().expect("jobs");
        assert!(!jobs.is_empty() || page["next_cursor"].is_null(), "{}", page["next_cursor"]);
        seen.extend(jobs.iter().map(|j| j["id"].as_str().expect("id").to_owned()));
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3, "4 jobs of 1,000,000 bytes of params in each page of 4 MiB, though 1000 were asked for");
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "newest first, each job once: {seen:?}");
    expected.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(seen, expected, "every job");
}

#[tokio::test]
async fn workloads_are_listed_in_pages_with_a_cursor() {
    let server = Server::start();
    let t = server.tenant("acme", "test").await;
    for name in ["echo", "echo-2", "echo-3"] {
        let rb = t.client.request(Method::PUT, &format!("/v1/workloads/{name}")).body(guest("echo"));
        assert_eq!(rb.send().await.expect("put").status().as_u16(), 201);
    }
    let page = |query: &'static str| {
        let rb = t.client.request(Method::GET, &format!("/v1/workloads{query}"));
        async move {
            let resp = rb.send().await.expect("list");
            let next = resp.headers().get("next-cursor").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let names: Vec<String> = resp
                .json::<Vec<Value>>()
                .await
                .expect("json")
                .iter()
                .map(|w| w["name"].as_str().unwrap_or("").to_owned())
                .collect();
            (names, next)
        }
    };
    assert_eq!(page("?limit=2").await, (vec!["echo".to_owned(), "echo-2".to_owned()], Some("echo-2".to_owned())));
    assert_eq!(page("?limit=2&cursor=echo-2").await, (vec!["echo-3".to_owned()], None));
    assert_eq!(page("").await.0.len(), 3, "a tenant with few workloads gets them in one page");
}
