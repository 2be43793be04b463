//! Distributed mode as real processes: coordinators and workers over PostgreSQL and NATS.
//! Workers killed, paused past their lease, drained; the leader coordinator killed; tampered
//! component bytes; blobs in an S3 bucket; the state events of short jobs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use niyanta::broker::{JobEvent, JobEventKind, Observed};
use niyanta::state::JobState;
use reqwest::Method;
use serde_json::json;

use crate::cluster::Cluster;
use crate::common::Tenant;

fn ticker_output(steps: u32) -> Vec<u8> {
    (0..steps).map(|i| format!("step {i}\n")).collect::<String>().into_bytes()
}

/// The index of the worker that holds a lease now, as the leader sees it.
async fn busy_worker(c: &Cluster) -> usize {
    let start = Instant::now();
    loop {
        let leader = c.leader(Duration::from_secs(15)).await;
        let seen = c.workers_seen(leader).await;
        let busy = seen.as_array().into_iter().flatten().find(|w| w["running"].as_u64().unwrap_or(0) > 0);
        if let Some(id) = busy.and_then(|w| w["id"].as_str()) {
            return c.workers.iter().position(|w| w.name == id).expect("a worker of this cluster");
        }
        assert!(start.elapsed() < Duration::from_secs(15), "no worker holds a lease: {seen}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every job of the tenant once, each in `state`.
async fn assert_all(t: &Tenant, n: usize, state: &str) {
    let (_, page) = t.call(Method::GET, "/v1/jobs?limit=1000", None).await;
    let states: Vec<&str> = page["jobs"].as_array().into_iter().flatten().filter_map(|j| j["state"].as_str()).collect();
    assert_eq!(states, vec![state; n]);
}

/// One coordinator and two one-slot workers, with a tenant that uploaded `ticker`.
async fn ticker_cluster(mut c: Cluster) -> (Cluster, Tenant) {
    c.coordinator();
    c.worker(1, &[]);
    c.worker(1, &[]);
    c.wait_workers(2).await;
    let t = c.tenant("acme", "test").await;
    t.upload("ticker").await;
    (c, t)
}

#[tokio::test]
async fn a_worker_killed_mid_job_resumes_elsewhere_from_its_checkpoint() {
    let (mut c, t) = ticker_cluster(Cluster::new()).await;
    let job = t.submit(json!({"workload": "ticker", "params": {"steps": 40, "sleep_ms": 100}})).await;
    let before = t.wait_for(&job.id, Duration::from_secs(30), |j| j.checkpoints >= 5).await;
    let busy = busy_worker(&c).await;
    c.workers[busy].kill9();

    let after = t.wait_end(&job.id, Duration::from_secs(60)).await;
    assert_eq!(after.state.as_str(), "succeeded", "{after:?}\n{}", c.logs());
    assert_eq!(after.attempt, 2, "{after:?}");
    assert!(after.resumed_from_checkpoint >= before.checkpoints, "{after:?} resumed before {before:?}");
    assert_eq!(t.output(&job.id).await, ticker_output(40));
    assert!(after.fuel_used >= before.fuel_used, "fuel of the first attempt carried over: {after:?}");
    assert_all(&t, 1, "succeeded").await;
    // Metering over PostgreSQL: the fuel up to the checkpoint resumed from, plus the second
    // attempt's, each unit once; two attempts began but only the second reported an end.
    let (_, usage) = t.call(reqwest::Method::GET, "/v1/usage", None).await;
    let ticker = &usage["workloads"][0];
    assert_eq!(ticker["fuel"].as_u64(), Some(after.fuel_used), "{usage}");
    assert_eq!((ticker["succeeded"].as_u64(), ticker["attempts"].as_u64()), (Some(1), Some(1)), "{usage}");
    assert!(ticker["checkpoints"].as_u64().is_some_and(|n| n >= 40), "{usage}");
}

#[tokio::test]
async fn a_worker_paused_past_its_lease_cannot_report_and_the_job_completes_once() {
    let (c, t) = ticker_cluster(Cluster::new()).await;
    let job = t.submit(json!({"workload": "ticker", "params": {"steps": 50, "sleep_ms": 100}})).await;
    t.wait_for(&job.id, Duration::from_secs(30), |j| j.checkpoints >= 5).await;
    let paused = busy_worker(&c).await;
    c.workers[paused].signal("STOP");
    // Past the lease timeout the job runs again on the other worker.
    let moved = t.wait_for(&job.id, Duration::from_secs(20), |j| j.attempt == 2 && j.state.as_str() == "running").await;
    c.workers[paused].signal("CONT");

    let end = t.wait_end(&job.id, Duration::from_secs(60)).await;
    assert_eq!(end.state.as_str(), "succeeded", "{end:?}\n{}", c.logs());
    assert_eq!(end.attempt, 2, "the paused worker's late reports were refused: {end:?}");
    assert!(end.resumed_from_checkpoint >= moved.resumed_from_checkpoint);
    assert_eq!(t.output(&job.id).await, ticker_output(50));
    assert_all(&t, 1, "succeeded").await;
    // The paused worker learned that its lease was void.
    let start = Instant::now();
    while !c.workers[paused].log_text().contains("leases lost") {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", c.workers[paused].log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_job_moved_off_a_paused_worker_reads_its_output_parts_from_both_attempts() {
    let (c, t) = ticker_cluster(Cluster::new()).await;
    // Each step's line (66 KB, naming its attempt) is stored as its own output part, under the
    // attempt's lease epoch, before the step's checkpoint; 15 of them stay under the tier's
    // 1 MiB of output. (Whether the paused attempt also writes a part late is a race with its
    // heartbeat, which usually learns first that its lease is void; `worker::io`'s tests cover
    // the late write.)
    let params = json!({"steps": 15, "sleep_ms": 300, "pad_bytes": 66_000});
    let job = t.submit(json!({"workload": "ticker", "params": params})).await;
    t.wait_for(&job.id, Duration::from_secs(30), |j| j.checkpoints >= 3).await;
    let paused = busy_worker(&c).await;
    c.workers[paused].signal("STOP");
    t.wait_for(&job.id, Duration::from_secs(20), |j| j.attempt == 2 && j.state.as_str() == "running").await;
    c.workers[paused].signal("CONT");

    let end = t.wait_end(&job.id, Duration::from_secs(60)).await;
    assert_eq!((end.state.as_str(), end.attempt), ("succeeded", 2), "{end:?}\n{}", c.logs());
    let output = String::from_utf8(t.output(&job.id).await).expect("text output");
    let lines: Vec<(u32, u32)> = output
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let well_formed = f.len() == 5 && f[0] == "step" && f[2] == "attempt" && f[4].len() == 66_000;
            assert!(well_formed, "{}", &l[..40.min(l.len())]);
            (f[1].parse().expect("step"), f[3].parse().expect("attempt"))
        })
        .collect();
    // Steps 0.. in order, once each; the first attempt's up to the checkpoint the second resumed
    // from, the second's after it, however late the first attempt wrote.
    let resumed = end.resumed_from_checkpoint;
    let expected: Vec<(u32, u32)> = (0..15).map(|i| (i, if i < resumed { 1 } else { 2 })).collect();
    assert_eq!(lines, expected, "resumed from checkpoint {resumed}");
    assert!(resumed >= 3, "{end:?}");
}

#[tokio::test]
async fn sigterm_drains_a_worker_and_its_job_is_queued_again_at_once() {
    // A long lease timeout: the job can only move this fast because the drain requeued it.
    let (mut c, t) = ticker_cluster(Cluster::new().lease_timeout_ms(30_000)).await;
    let job = t.submit(json!({"workload": "ticker", "params": {"steps": 50, "sleep_ms": 100}})).await;
    let before = t.wait_for(&job.id, Duration::from_secs(30), |j| j.checkpoints >= 5).await;
    let busy = busy_worker(&c).await;
    c.workers[busy].terminate();
    let moved = t.wait_for(&job.id, Duration::from_secs(10), |j| j.attempt == 2).await;
    assert!(moved.resumed_from_checkpoint >= before.checkpoints, "{moved:?}");

    let end = t.wait_end(&job.id, Duration::from_secs(60)).await;
    assert_eq!(end.state.as_str(), "succeeded", "{end:?}\n{}", c.logs());
    assert_eq!(t.output(&job.id).await, ticker_output(50));
}

#[tokio::test]
async fn the_leader_killed_another_coordinator_takes_over_and_no_job_is_lost() {
    let mut c = Cluster::new();
    c.coordinator();
    c.coordinator();
    c.worker(2, &[]);
    c.wait_workers(1).await;
    let leader = c.leader(Duration::from_secs(15)).await;
    let follower = 1 - leader;
    // Every coordinator serves the API: the tenant works through the follower.
    let t = crate::common::create_tenant(c.url(follower), "acme", "test").await;
    t.upload("ticker").await;
    t.upload("echo").await;
    let long = t.submit(json!({"workload": "ticker", "params": {"steps": 40, "sleep_ms": 100}})).await;
    t.wait_for(&long.id, Duration::from_secs(30), |j| j.checkpoints >= 3).await;
    let mut echoes = Vec::new();
    for i in 0..10 {
        echoes.push(t.submit(json!({"workload": "echo", "input": format!("before {i}")})).await.id);
    }

    c.coordinators[leader].kill9();
    let killed = Instant::now();
    let now_leader = c.leader(Duration::from_secs(15)).await;
    let took = killed.elapsed();
    assert_eq!(now_leader, follower);
    assert!(took < Duration::from_secs(10), "takeover took {took:?}");
    for i in 0..10 {
        echoes.push(t.submit(json!({"workload": "echo", "input": format!("after {i}")})).await.id);
    }

    for (i, id) in echoes.iter().enumerate() {
        let j = t.wait_end(id, Duration::from_secs(30)).await;
        assert_eq!(j.state.as_str(), "succeeded", "{j:?}\n{}", c.logs());
        let word = if i < 10 { "before" } else { "after" };
        assert_eq!(t.output(id).await, format!("{word} {}", i % 10).into_bytes());
    }
    // The running job was adopted by the new leader, not restarted: still its first attempt.
    let end = t.wait_end(&long.id, Duration::from_secs(60)).await;
    assert_eq!((end.state.as_str(), end.attempt), ("succeeded", 1), "{end:?}\n{}", c.logs());
    assert_eq!(t.output(&long.id).await, ticker_output(40));
    assert_all(&t, 21, "succeeded").await;
}

#[tokio::test]
async fn a_worker_never_runs_component_bytes_that_do_not_match_their_digest() {
    let mut c = Cluster::new();
    c.coordinator();
    let t = c.tenant("acme", "test").await;
    let w = t.upload("echo").await;
    // Someone with access to the bucket swaps the bytes behind the digest.
    let path = c.dir.path().join("blobs/components").join(&w.digest);
    std::fs::write(&path, crate::common::guest("panic")).expect("tamper");
    c.worker(1, &[]);
    let job = t.submit(json!({"workload": "echo", "input": "hi"})).await;
    // Not the tenant's fault: a host error, retried under the host retry policy, then a dead letter.
    let end = t.wait_end(&job.id, Duration::from_secs(60)).await;
    assert_eq!(end.state.as_str(), "dead", "{end:?}");
    assert_eq!((end.failures, end.host_failures), (0, 5), "{end:?}");
    let failure = end.failure.expect("a failure");
    assert_eq!(failure.class.as_str(), "host_error", "{failure:?}");
    assert!(failure.message.contains("digest"), "{failure:?}");
}

#[tokio::test]
async fn components_inputs_and_outputs_live_in_an_s3_bucket() {
    let (endpoint, bucket) = crate::cluster::s3_bucket().await;
    let http = reqwest::Client::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Cluster::with_blobs(dir, format!("s3://{bucket}?endpoint={endpoint}&allow_http=true"));
    c.coordinator();
    c.worker(1, &[]);
    let t = c.tenant("acme", "test").await;
    let w = t.upload("echo").await;
    // Larger than the 64 KiB kept inline: the input and the output go to the bucket.
    let input: String = (0..20_000).map(|i| format!("{i:09}\n")).collect();
    let job = t.submit(json!({"workload": "echo", "input": input})).await;
    let end = t.wait_end(&job.id, Duration::from_secs(60)).await;
    assert_eq!(end.state.as_str(), "succeeded", "{end:?}\n{}", c.logs());
    assert_eq!(t.output(&job.id).await, input.as_bytes());

    let listing =
        http.get(format!("{endpoint}/{bucket}?list-type=2")).send().await.expect("list").text().await.expect("text");
    assert!(listing.contains(&format!("components/{}", w.digest)), "{listing}");
    assert!(listing.contains("inputs/"), "{listing}");
    assert!(listing.contains(&format!("outputs/{}/", job.id)), "{listing}");

    // The leader's sweep of spilled message bodies goes by their age in a bucket too.
    let url = format!(
        "s3://{bucket}?endpoint={endpoint}&allow_http=true&access_key_id=testing&secret_access_key=testing&region=us-east-1"
    );
    let blobs = niyanta::blobs::Blobs::from_url(&url).expect("the bucket");
    let spilled = blobs.put_spill(axum::body::Bytes::from_static(b"never received")).await.expect("spill");
    assert_eq!(blobs.purge_spill(niyanta::ids::now_ms() - 60_000).await.expect("purge"), 0);
    assert_eq!(blobs.purge_spill(niyanta::ids::now_ms() + 60_000).await.expect("purge"), 1);
    assert!(matches!(blobs.take_spill(&spilled).await, Err(niyanta::blobs::BlobError::NotFound(_))));
    let listing =
        http.get(format!("{endpoint}/{bucket}?list-type=2")).send().await.expect("list").text().await.expect("text");
    assert!(listing.contains(&format!("components/{}", w.digest)), "the sweep kept the rest: {listing}");
}

#[tokio::test]
async fn a_drain_command_from_the_api_moves_the_job_and_the_worker_exits_cleanly() {
    let (mut c, t) = ticker_cluster(Cluster::new().lease_timeout_ms(30_000)).await;
    let job = t.submit(json!({"workload": "ticker", "params": {"steps": 50, "sleep_ms": 100}})).await;
    let before = t.wait_for(&job.id, Duration::from_secs(30), |j| j.checkpoints >= 5).await;
    let busy = busy_worker(&c).await;
    let admin = niyanta::cli::Client::new(c.url(0), Some(crate::common::ADMIN_KEY.to_owned()));
    let path = format!("/v1/cluster/workers/{}/drain", c.workers[busy].name);
    let resp = admin.send(admin.request(Method::POST, &path)).await.expect("drain");
    assert_eq!(resp.status().as_u16(), 202);
    let status = c.workers[busy].child.take().expect("running").wait().expect("wait");
    assert!(status.success(), "the drained worker exited with {status}");
    let moved = t.wait_for(&job.id, Duration::from_secs(10), |j| j.attempt == 2).await;
    assert!(moved.resumed_from_checkpoint >= before.checkpoints, "{moved:?}");
    let end = t.wait_end(&job.id, Duration::from_secs(60)).await;
    assert_eq!(end.state.as_str(), "succeeded", "{end:?}\n{}", c.logs());
    assert_eq!(t.output(&job.id).await, ticker_output(50));
}

#[tokio::test]
async fn every_short_job_publishes_each_of_its_states_once_and_in_order() {
    let mut c = Cluster::new();
    c.coordinator();
    c.worker(16, &[]);
    c.wait_workers(1).await;
    let t = c.tenant("acme", "test").await;
    t.upload("echo").await;
    // The events as an API coordinator receives them, from NATS.
    let spill = tempfile::tempdir().expect("tempdir");
    let blobs = niyanta::blobs::Blobs::local(spill.path()).expect("blobs");
    let listener = niyanta::broker::nats::NatsBroker::connect(&crate::cluster::nats_url(), &c.namespace, blobs)
        .await
        .expect("NATS");
    let mut events = niyanta::broker::Broker::events(&listener);
    // Short jobs whose `Running` reports and results reach the coordinator together (one update
    // each) or apart.
    let jobs: Vec<_> = (0..200).map(|i| json!({"workload": "echo", "input": format!("job {i}")})).collect();
    let (status, body) = t.call(Method::POST, "/v1/jobs/batch", Some(json!({ "jobs": jobs }))).await;
    assert_eq!(status, 202, "{body}");
    let ids: Vec<String> =
        body["jobs"].as_array().expect("jobs").iter().map(|j| j["id"].as_str().expect("id").to_owned()).collect();
    let mut seen: HashMap<String, Vec<JobState>> = ids.iter().map(|id| (id.clone(), vec![])).collect();
    let ended =
        |seen: &HashMap<String, Vec<JobState>>| seen.values().all(|s| s.last().is_some_and(|s| s.is_terminal()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ended(&seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, events.next()).await.expect("every job ended within 60 s");
        record(&mut seen, event.expect("events"));
    }
    // Half a second more, so that a state published twice would show.
    while let Ok(event) = tokio::time::timeout(Duration::from_millis(500), events.next()).await {
        record(&mut seen, event.expect("events"));
    }
    for (id, states) in &seen {
        assert_eq!(states, &[JobState::Queued, JobState::Assigned, JobState::Running, JobState::Succeeded], "job {id}");
        let job = t.job(id).await;
        let (started, finished) = (job.started_at.as_deref(), job.finished_at.as_deref());
        assert!(started.is_some() && started <= finished, "{job:?}");
    }
}

/// Adds a state event of one of the jobs in `seen` to its states.
fn record(seen: &mut HashMap<String, Vec<JobState>>, observed: Observed) {
    match observed {
        Observed::Event(JobEvent { job_id, kind: JobEventKind::State { state, .. }, .. }) => {
            if let Some(states) = seen.get_mut(&job_id.to_string()) {
                states.push(state);
            }
        }
        Observed::Event(_) => {}
        Observed::Missed(n) => panic!("{n} events missed"),
    }
}
