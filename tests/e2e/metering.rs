//! Metering and the monthly fuel budget against a real server: usage per workload matches the
//! jobs that ran, over the API and the CLI; a tenant out of fuel is refused new jobs and its
//! queued jobs wait until the budget grows.

use std::time::Duration;

use niyanta::state::JobState;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{ADMIN_KEY, Server, cli, define_tier};

#[tokio::test]
async fn usage_per_workload_matches_the_jobs_that_ran() {
    let server = Server::start();
    let t = server.tenant("acme", "test").await;
    let other = server.tenant("other", "test").await;
    for w in ["echo", "ticker", "panic"] {
        t.upload(w).await;
    }
    other.upload("echo").await;
    let echo = t.submit(json!({"workload": "echo", "input": "hello, meter"})).await;
    let ticker = t.submit(json!({"workload": "ticker", "params": {"steps": 3, "sleep_ms": 10}})).await;
    let panic = t.submit(json!({"workload": "panic"})).await;
    let queued = t.submit(json!({"workload": "echo", "input": "never", "delay_ms": 60_000})).await;
    let theirs = other.submit(json!({"workload": "echo", "input": "not yours"})).await;
    let (s, _) = t.call(Method::POST, &format!("/v1/jobs/{}/cancel", queued.id), None).await;
    assert_eq!(s, 202);
    let echo = t.wait_end(&echo.id, Duration::from_secs(30)).await;
    let ticker = t.wait_end(&ticker.id, Duration::from_secs(30)).await;
    let panic = t.wait_end(&panic.id, Duration::from_secs(30)).await;
    other.wait_end(&theirs.id, Duration::from_secs(30)).await;
    assert_eq!((echo.state, ticker.state, panic.state), (JobState::Succeeded, JobState::Succeeded, JobState::Failed));

    let (s, report) = t.call(Method::GET, "/v1/usage", None).await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["tenant"], "acme");
    let by_name = |name: &str| -> Value {
        report["workloads"]
            .as_array()
            .and_then(|ws| ws.iter().find(|w| w["workload"] == name).cloned())
            .unwrap_or_else(|| panic!("no usage for {name}: {report}"))
    };
    let (e, tk, p) = (by_name("echo"), by_name("ticker"), by_name("panic"));
    // Fuel metered equals the fuel the jobs report; each unit once.
    assert_eq!(e["fuel"], echo.fuel_used, "{e}");
    assert_eq!(tk["fuel"], ticker.fuel_used, "{tk}");
    assert_eq!(p["fuel"], panic.fuel_used, "{p}");
    assert!(echo.fuel_used > 0 && ticker.fuel_used > 0);
    assert_eq!(
        (e["succeeded"].as_u64(), e["cancelled"].as_u64(), e["output_bytes"].as_u64()),
        (Some(1), Some(1), Some(12))
    );
    assert_eq!((tk["checkpoints"].as_u64(), tk["succeeded"].as_u64()), (Some(3), Some(1)));
    assert!(tk["checkpoint_bytes"].as_u64().is_some_and(|b| b >= 3 * 10), "{tk}");
    assert_eq!(tk["output_bytes"].as_u64(), Some(ticker.output_bytes));
    assert!(tk["wall_ms"].as_u64().is_some_and(|ms| ms >= 30), "three 10 ms steps: {tk}");
    assert_eq!(tk["memory_peak_bytes"].as_u64(), Some(ticker.memory_peak_bytes));
    assert_eq!((p["failed"].as_u64(), p["attempts"].as_u64()), (Some(1), Some(1)));
    let total_fuel = echo.fuel_used + ticker.fuel_used + panic.fuel_used;
    assert_eq!(report["total"]["fuel"].as_u64(), Some(total_fuel));
    assert_eq!(report["total"]["succeeded"].as_u64(), Some(2));

    // A range before any of it holds nothing; a reversed range is refused.
    let (_, empty) = t.call(Method::GET, "/v1/usage?from_ms=0&to_ms=1000", None).await;
    assert_eq!(empty["workloads"], json!([]));
    let (s, v) = t.call(Method::GET, "/v1/usage?from_ms=2000&to_ms=1000", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_query")), "{v}");

    // The CLI shows the same figures, for the tenant's key and for the admin naming the tenant.
    let out = cli(&server.url, &t.key, &["usage"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let total_line = text.lines().find(|l| l.starts_with("TOTAL\t")).unwrap_or_else(|| panic!("{text}"));
    assert!(total_line.split('\t').any(|f| f == total_fuel.to_string()), "{total_line}");
    let out = cli(&server.url, ADMIN_KEY, &["usage", "--tenant", "acme", "--json"]);
    let admin_view: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(admin_view["total"], report["total"]);
    let out = cli(&server.url, ADMIN_KEY, &["usage", "--tenant", "nobody"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nobody"));
    // The other tenant sees only its own.
    let (_, theirs) = other.call(Method::GET, "/v1/usage", None).await;
    assert_eq!(theirs["workloads"].as_array().map(Vec::len), Some(1), "{theirs}");
    assert_eq!(theirs["total"]["succeeded"].as_u64(), Some(1));
}

#[tokio::test]
async fn a_tenant_out_of_fuel_is_refused_and_its_queue_waits_for_a_larger_budget() {
    let server = Server::start();
    define_tier(&server, "budget", &["fuel_per_month=1", "concurrent_jobs=1"]);
    let t = server.tenant("thrifty", "budget").await;
    t.upload("ticker").await;
    // Two jobs accepted at once while nothing is used; the first meters fuel at its first
    // checkpoint, and runs on for a few seconds so that the leader sees the budget spent.
    let jobs = json!({"jobs": [
        {"workload": "ticker", "params": {"steps": 5, "sleep_ms": 1000}},
        {"workload": "ticker", "params": {"steps": 1}},
    ]});
    let (s, v) = t.call(Method::POST, "/v1/jobs/batch", Some(jobs)).await;
    assert_eq!(s, 202, "{v}");
    let first = v["jobs"][0]["id"].as_str().expect("id").to_owned();
    let second = v["jobs"][1]["id"].as_str().expect("id").to_owned();
    t.wait_for(&first, Duration::from_secs(10), |j| j.checkpoints >= 1).await;

    // New work is refused, naming the quota and the figure.
    let (s, v) = t.call(Method::POST, "/v1/jobs", Some(json!({"workload": "ticker"}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("fuel_budget")), "{v}");
    let msg = v["error"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("monthly fuel budget is 1") && msg.contains("fuel units since"), "{msg}");

    // The queued job waits after the first ends.
    let first = t.wait_end(&first, Duration::from_secs(30)).await;
    assert_eq!(first.state, JobState::Succeeded);
    crate::common::wait_rounds(&server.url, 3).await;
    assert_eq!(t.job(&second).await.state, JobState::Queued, "a tenant out of fuel starts nothing");

    // A larger budget lets it run.
    define_tier(&server, "budget", &["fuel_per_month=1000000000000", "concurrent_jobs=1"]);
    let second = t.wait_end(&second, Duration::from_secs(30)).await;
    assert_eq!(second.state, JobState::Succeeded);
}
