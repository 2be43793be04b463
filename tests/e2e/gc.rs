//! Garbage collection of components, against a tenant that uploads one distinct component after
//! another under one name: once the grace period has passed, the object store holds only the
//! components a workload names or a job that has not ended needs, and the tenant's stored bytes
//! count only those. Embedded (blobs in the data directory) and distributed (an S3 bucket).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use wasm_encoder::ComponentSection as _;

use crate::cluster::Cluster;
use crate::common::{ADMIN_KEY, Server, TIERS, Tenant, cli, create_tenant, guest};

/// The grace period of these tests, ms (the shortest allowed).
const GRACE_MS: u64 = 1_000;

/// Components uploaded under one name.
const VARIANTS: u32 = 8;

/// `echo` made distinct by a component-level custom section carrying `n` and 256 KiB of
/// padding: a valid component with a digest of its own.
fn variant(n: u32) -> Vec<u8> {
    let mut bytes = guest("echo");
    let mut data = n.to_le_bytes().to_vec();
    data.resize(256 * 1024, 0xa5);
    wasm_encoder::CustomSection { name: "niyanta-gc-test".into(), data: data.into() }.append_to_component(&mut bytes);
    bytes
}

fn digest(bytes: &[u8]) -> String {
    niyanta::ids::Digest::of(bytes).to_hex()
}

/// Where an installation keeps its component bytes.
enum Store {
    /// `components/` under a blob directory.
    Dir(std::path::PathBuf),
    /// An S3 bucket.
    S3 { endpoint: String, bucket: String },
}

impl Store {
    /// The digests of the components stored now.
    async fn components(&self) -> BTreeSet<String> {
        match self {
            // Deleting the last component removes the emptied directory too.
            Store::Dir(dir) => std::fs::read_dir(dir.join("components"))
                .map(|entries| entries.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect())
                .unwrap_or_default(),
            Store::S3 { endpoint, bucket } => {
                let url = format!("{endpoint}/{bucket}?list-type=2&prefix=components/");
                let listing = reqwest::get(url).await.expect("list").text().await.expect("listing");
                listing
                    .split("<Key>components/")
                    .skip(1)
                    .filter_map(|k| k.split('<').next())
                    .map(str::to_owned)
                    .collect()
            }
        }
    }

    /// Waits until exactly `expected` are stored.
    async fn wait_for(&self, expected: &BTreeSet<String>, what: &str, logs: &dyn Fn() -> String) {
        let start = Instant::now();
        loop {
            let stored = self.components().await;
            if &stored == expected {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{what}: stored {stored:?}, expected {expected:?}\n{}",
                logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn put(t: &Tenant, bytes: &[u8]) {
    let rb = t.client.request(Method::PUT, "/v1/workloads/echo").body(bytes.to_vec());
    let resp = rb.send().await.expect("upload");
    let status = resp.status().as_u16();
    assert_eq!(status, 201, "{}", resp.text().await.unwrap_or_default());
}

/// The bytes of components the tenant holds, as `GET /v1/usage` reports them (its stored bytes
/// also count its jobs' params); `quota` is checked against the figure reported beside them.
async fn stored_bytes(t: &Tenant, quota: u64) -> u64 {
    let (status, usage) = t.call(Method::GET, "/v1/usage", None).await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["stored"]["quota_bytes"].as_u64(), Some(quota), "{usage}");
    usage["stored"]["components_bytes"].as_u64().unwrap_or_else(|| panic!("no components_bytes in {usage}"))
}

/// The scenario, against the API at `url` whose workers have `slots` slots in all.
async fn replaced_components_are_collected(url: &str, slots: u32, store: &Store, logs: &dyn Fn() -> String) {
    let variants: Vec<Vec<u8>> = (0..VARIANTS).map(variant).collect();
    let size = variants[0].len() as u64;
    // Room for three components and the jobs' params (a few bytes each).
    let quota = 3 * size + 4096;
    let tier = ["tier", "set", "gc", "--like", "test", &format!("stored_bytes={quota}")];
    let out = cli(url, ADMIN_KEY, &tier);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Another tenant takes every slot, so the job queued below waits until it is told to go.
    let blocker = create_tenant(url, "blocker", "test").await;
    blocker.upload("ticker").await;
    let mut blocking = Vec::new();
    for _ in 0..slots {
        let job = blocker.submit(json!({"workload": "ticker", "params": {"steps": 100_000, "sleep_ms": 50}})).await;
        blocker.wait_for(&job.id, Duration::from_secs(30), |j| j.state.as_str() == "running").await;
        blocking.push(job.id);
    }
    let ticker = digest(&guest("ticker"));

    let t = create_tenant(url, "acme", "gc").await;
    put(&t, &variants[0]).await;
    let pinned = t.submit(json!({"workload": "echo", "input": "kept for me"})).await;
    assert_eq!(pinned.state.as_str(), "queued");
    for v in &variants[1..] {
        put(&t, v).await;
    }
    // The components replaced are deleted, but the one the queued job needs.
    let (first, current) = (digest(&variants[0]), digest(&variants[VARIANTS as usize - 1]));
    let kept = BTreeSet::from([ticker.clone(), first, current.clone()]);
    store.wait_for(&kept, "the replaced components were not deleted", logs).await;
    assert_eq!(t.job(&pinned.id).await.state.as_str(), "queued");
    assert_eq!(stored_bytes(&t, quota).await, 2 * size, "the current component and the queued job's");

    // Once it ran, its component goes too.
    for id in &blocking {
        let (status, _) = blocker.call(Method::POST, &format!("/v1/jobs/{id}/cancel"), None).await;
        assert_eq!(status, 202);
    }
    let end = t.wait_end(&pinned.id, Duration::from_secs(60)).await;
    assert_eq!(end.state.as_str(), "succeeded", "{end:?}\n{}", logs());
    assert_eq!(t.output(&pinned.id).await, b"kept for me");
    store.wait_for(&BTreeSet::from([ticker.clone(), current]), "the ran job's component is still stored", logs).await;
    assert_eq!(stored_bytes(&t, quota).await, size);

    // Bytes deleted can be uploaded again, and bytes in their grace period too; they run.
    let again = &variants[3];
    put(&t, again).await;
    put(&t, &variants[VARIANTS as usize - 1]).await;
    put(&t, again).await;
    let job = t.submit(json!({"workload": "echo", "input": "again"})).await;
    let end = t.wait_end(&job.id, Duration::from_secs(60)).await;
    assert_eq!(end.state.as_str(), "succeeded", "{end:?}\n{}", logs());
    assert_eq!(t.output(&job.id).await, b"again");
    store.wait_for(&BTreeSet::from([ticker, digest(again)]), "only the current component is left", logs).await;
    assert_eq!(stored_bytes(&t, quota).await, size);

    // Each deletion is logged and counted.
    let deleted = logs().matches("deleted a component no workload or job uses any more").count();
    assert!(deleted >= VARIANTS as usize, "{deleted} deletions logged");
    let metrics = reqwest::get(format!("{url}/metrics")).await.expect("metrics").text().await.expect("text");
    let counter = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{name} missing from:\n{metrics}"))
    };
    assert_eq!(counter("niyanta_components_collected_total "), deleted as u64);
    assert_eq!(counter("niyanta_component_bytes_freed_total "), deleted as u64 * size);
}

#[tokio::test]
async fn an_embedded_node_deletes_the_components_no_workload_or_job_uses() {
    let config =
        format!("slots = 2\ngrace_ms = 1000\nlease_timeout_ms = 3000\ncomponent_grace_ms = {GRACE_MS}\n{TIERS}");
    let server = Server::start_with_config(&config);
    let store = Store::Dir(server.dir.path().join("data/blobs"));
    replaced_components_are_collected(&server.url, 2, &store, &|| server.log()).await;
    // The compiled artifacts of the collected components are gone from the compile cache too:
    // each one left belongs to a component still stored.
    let stored = store.components().await;
    let compiled: BTreeSet<String> = std::fs::read_dir(server.dir.path().join("data/compiled"))
        .expect("the compile cache")
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.split('-').next()).map(str::to_owned))
        .collect();
    assert!(compiled.is_subset(&stored), "compiled {compiled:?}, stored {stored:?}");
}

#[tokio::test]
async fn the_leader_deletes_the_components_no_workload_or_job_uses_from_an_s3_bucket() {
    let (endpoint, bucket) = crate::cluster::s3_bucket().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let blob_url = format!("s3://{bucket}?endpoint={endpoint}&allow_http=true");
    let mut c = Cluster::with_blobs(dir, blob_url).settings(&format!("component_grace_ms = {GRACE_MS}"));
    c.coordinator();
    c.worker(1, &[]);
    c.wait_workers(1).await;
    let store = Store::S3 { endpoint, bucket };
    let url = c.url(0).to_owned();
    replaced_components_are_collected(&url, 1, &store, &|| c.logs()).await;
}

#[tokio::test]
async fn a_dead_job_keeps_no_component_and_cannot_be_redriven_once_it_was_deleted() {
    let config =
        format!("slots = 2\ngrace_ms = 1000\nlease_timeout_ms = 3000\ncomponent_grace_ms = {GRACE_MS}\n{TIERS}");
    let server = Server::start_with_config(&config);
    let store = Store::Dir(server.dir.path().join("data/blobs"));
    let t = server.tenant("acme", "test").await;
    let flaky = guest("panic");
    let rb = t.client.request(Method::PUT, "/v1/workloads/flaky").body(flaky.clone());
    assert_eq!(rb.send().await.expect("upload").status().as_u16(), 201);
    let params = json!({"retryable": "upstream busy", "succeed_on_attempt": 2});
    let job = t.submit(json!({"workload": "flaky", "params": params, "retry": {"max_attempts": 1}})).await;
    let dead = t.wait_end(&job.id, Duration::from_secs(30)).await;
    assert_eq!(dead.state.as_str(), "dead", "{dead:?}");

    // The workload moves on: nothing keeps the dead job's component.
    let rb = t.client.request(Method::PUT, "/v1/workloads/flaky").body(variant(0));
    assert_eq!(rb.send().await.expect("upload").status().as_u16(), 201);
    store.wait_for(&BTreeSet::from([digest(&variant(0))]), "the dead job's component was kept", &|| server.log()).await;
    let (status, body) = t.call(Method::POST, &format!("/v1/jobs/{}/redrive", job.id), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("component_deleted")), "{body}");
    assert_eq!(t.job(&job.id).await.state.as_str(), "dead");
}
