//! Fair share against a real server (2 slots): a tenant holding 10,000 queued jobs does not
//! delay another tenant's job beyond the next slot that turns over, and a tenant never runs more
//! jobs at once than its tier's `concurrent_jobs`.

use std::time::Duration;

use niyanta::ids::parse_rfc3339;
use niyanta::state::JobState;
use reqwest::Method;
use serde_json::json;

use crate::common::{Server, define_tier};

#[tokio::test]
async fn a_flooding_tenant_does_not_delay_another_beyond_one_slot_turnover() {
    let server = Server::start();
    define_tier(&server, "flood", &["concurrent_jobs=64", "queued_jobs=20000"]);
    let a = server.tenant("flooder", "flood").await;
    let b = server.tenant("neighbour", "test").await;
    a.upload("ticker").await;
    b.upload("echo").await;
    // Each of A's jobs holds a slot for about 200 ms: 10,000 of them would take 1,000 s.
    let job = json!({"workload": "ticker", "params": {"steps": 1, "sleep_ms": 200}});
    for _ in 0..10 {
        let batch = json!({"jobs": vec![job.clone(); 1000]});
        let (s, v) = a.call(Method::POST, "/v1/jobs/batch", Some(batch)).await;
        assert_eq!(s, 202, "{v}");
    }
    let (_, running) = a.call(Method::GET, "/v1/jobs?state=running&limit=10", None).await;
    assert!(running["jobs"].as_array().is_some_and(|j| j.len() <= 2), "2 slots: {running}");

    let mine = b.submit(json!({"workload": "echo", "input": "my turn"})).await;
    let mine = b.wait_end(&mine.id, Duration::from_secs(10)).await;
    assert_eq!(mine.state, JobState::Succeeded);
    let submitted = parse_rfc3339(&mine.created_at).expect("time");
    let started = parse_rfc3339(mine.started_at.as_deref().expect("started")).expect("time");
    // A's jobs that started between B's submission and B's start: at most the slots that a
    // scheduling round already in flight could have filled.
    let mut starts = Vec::new();
    for state in ["assigned", "running", "succeeded"] {
        let (_, page) = a.call(Method::GET, &format!("/v1/jobs?state={state}&limit=1000"), None).await;
        let jobs = page["jobs"].as_array().expect("jobs").clone();
        starts.extend(jobs.iter().filter_map(|j| j["started_at"].as_str().and_then(|t| parse_rfc3339(t).ok())));
    }
    assert!(starts.len() >= 2, "the flood was running: {starts:?}");
    let overtaking = starts.iter().filter(|t| (submitted..started).contains(t)).count();
    assert!(overtaking <= 2, "{overtaking} of the flood's jobs started ahead of B's ({} ms wait)", started - submitted);
    assert!(started - submitted < 2_000, "B waited {} ms for a slot", started - submitted);
    let (_, queued) = a.call(Method::GET, "/v1/jobs?state=queued&limit=1000", None).await;
    assert_eq!(queued["jobs"].as_array().map(Vec::len), Some(1000), "the flood is still queued");
}

#[tokio::test]
async fn a_tenant_never_runs_more_jobs_at_once_than_its_tier_allows() {
    let server = Server::start();
    define_tier(&server, "one-at-a-time", &["concurrent_jobs=1"]);
    let t = server.tenant("serial", "one-at-a-time").await;
    t.upload("ticker").await;
    // Two slots are free, but the tier allows one job at a time: the jobs run one after another.
    let body = json!({"jobs": vec![json!({"workload": "ticker", "params": {"steps": 1, "sleep_ms": 150}}); 4]});
    let (s, v) = t.call(Method::POST, "/v1/jobs/batch", Some(body)).await;
    assert_eq!(s, 202, "{v}");
    let ids: Vec<String> =
        v["jobs"].as_array().expect("jobs").iter().filter_map(|j| j["id"].as_str().map(str::to_owned)).collect();
    assert_eq!(ids.len(), 4, "{v}");
    let mut spans = Vec::new();
    for id in &ids {
        let job = t.wait_end(id, Duration::from_secs(20)).await;
        assert_eq!(job.state, JobState::Succeeded, "{id}");
        let at = |t: Option<&str>| parse_rfc3339(t.expect("time")).expect("time");
        spans.push((at(job.started_at.as_deref()), at(job.finished_at.as_deref())));
    }
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "a job started at {} while another ran until {}", pair[1].0, pair[0].1);
    }
}
