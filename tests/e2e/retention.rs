//! Retention in distributed mode: the leader deletes ended jobs, with their output blobs, once
//! the retention period has passed (their params then leave the tenant's stored bytes), and
//! leaves the jobs that have not ended alone; it deletes spilled message bodies that were never
//! received.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::cluster::Cluster;

#[tokio::test]
async fn ended_jobs_and_their_output_are_deleted_once_the_retention_period_has_passed() {
    const RETENTION_MS: i64 = 2_000;
    let mut c = Cluster::new().retention_ms(RETENTION_MS as u64);
    c.coordinator();
    c.worker(2, &[]);
    c.wait_workers(1).await;
    let t = c.tenant("acme", "test").await;
    t.upload("echo").await;
    // Past the inline limit (64 KiB), so the output is stored as a blob.
    let input = "retained ".repeat(12_000);
    let ended = t.submit(json!({"workload": "echo", "input": input, "params": {"n": 1000}})).await;
    let later = niyanta::ids::rfc3339(niyanta::ids::now_ms() + 3_600_000);
    let scheduled = t.submit(json!({"workload": "echo", "input": "not yet", "not_before": later})).await;
    // Both jobs' params count in the tenant's stored bytes: `{"n":1000}` and `{}`.
    let params_bytes = || async { t.call(Method::GET, "/v1/usage", None).await.1["stored"]["params_bytes"].clone() };
    assert_eq!(params_bytes().await, 12);
    let done = t.wait_end(&ended.id, Duration::from_secs(30)).await;
    assert_eq!(done.state.as_str(), "succeeded", "{done:?}");
    assert_eq!(t.output(&ended.id).await, input.as_bytes());
    let parts = c.dir.path().join("blobs").join("outputs").join(&ended.id);
    assert!(parts.is_dir(), "the output was stored as a blob under {}", parts.display());

    let finished = niyanta::ids::parse_rfc3339(done.finished_at.as_deref().expect("finished_at")).expect("RFC 3339");
    let start = Instant::now();
    loop {
        let (status, body) = t.call(Method::GET, &format!("/v1/jobs/{}", ended.id), None).await;
        if status == 404 {
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(start.elapsed() < Duration::from_secs(20), "the ended job was not deleted: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gone = niyanta::ids::now_ms() - finished;
    assert!(gone >= RETENTION_MS, "deleted {gone} ms after it ended, before the retention period");
    let (status, _) = t.call(Method::GET, &format!("/v1/jobs/{}/output", ended.id), None).await;
    assert_eq!(status, 404);
    // The blobs go right after the rows.
    let start = Instant::now();
    while parts.exists() && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!parts.exists(), "the output blobs of the deleted job are still at {}", parts.display());

    // The job that has not ended is kept, however old, and so are its params' bytes.
    assert_eq!(t.job(&scheduled.id).await.state.as_str(), "scheduled");
    assert_eq!(params_bytes().await, 2, "the deleted job's params no longer count");
    let (_, page) = t.call(Method::GET, "/v1/jobs?limit=10", None).await;
    let ids: Vec<&str> = page["jobs"].as_array().into_iter().flatten().filter_map(|j| j["id"].as_str()).collect();
    assert_eq!(ids, [scheduled.id.as_str()]);
}

#[tokio::test]
async fn the_leader_deletes_spilled_message_bodies_left_behind_for_an_hour() {
    let mut c = Cluster::new();
    // Two bodies of messages that were never received, as a sender spills them: one from two
    // hours ago, one from now.
    let spill = c.dir.path().join("blobs").join("spill");
    std::fs::create_dir_all(&spill).unwrap();
    let (old, new) = (spill.join("0123456789abcdef0123456789abcdef"), spill.join("fedcba9876543210fedcba9876543210"));
    std::fs::write(&old, b"lost two hours ago").unwrap();
    std::fs::write(&new, b"in flight").unwrap();
    let touched = std::process::Command::new("touch").arg("-d").arg("2 hours ago").arg(&old).status().unwrap();
    assert!(touched.success());
    c.coordinator();
    c.leader(Duration::from_secs(15)).await;
    let start = Instant::now();
    while old.exists() && start.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!old.exists(), "the body left behind two hours ago is still there:\n{}", c.logs());
    assert_eq!(std::fs::read(&new).unwrap(), b"in flight");
}
