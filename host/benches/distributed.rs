//! Benchmarks of distributed mode over the real PostgreSQL and NATS (results in BENCHMARKS.md):
//! 1. sustained throughput: `echo` jobs submitted over HTTP in batches for 60 s to a coordinator
//!    and two workers (in this process); jobs ended per second over the window (counted in the
//!    database when the window closes; every one must have succeeded), and the CPU time per ended
//!    job, of the whole machine and of this process;
//! 2. submit → running at a steady 500 jobs/s: from sending the HTTP submission to the job's
//!    `running` event (every job's, waiting up to a minute after the last submission), after a
//!    warm-up batch that has each worker compile `echo` and a warm-up second of single
//!    submissions at the same rate; also the time to the submission's answer;
//! 3. checkpoint round trip: a 64 KiB checkpoint report from a worker's NATS connection to its
//!    acknowledgement after the PostgreSQL commit (what a guest's `checkpoint` call waits for,
//!    less the copy out of the guest);
//! 4. failover: `kill -9` of the worker process running a `ticker` job until the job runs on the
//!    other worker (real processes, default 1 s heartbeat and 3 s lease timeout).
//!
//! Run: `cargo bench --bench distributed` (after scripts/build-guests.sh; PostgreSQL and NATS at
//! NIYANTA_TEST_DATABASE_URL and NIYANTA_TEST_NATS_URL or their defaults). Arguments pick parts
//! by name (`throughput-16`, `throughput-128`, `latency-8`, `latency-64`, `checkpoint`,
//! `failover`; a prefix such as `throughput` picks both), and `NIYANTA_BENCH_WINDOW_S` shortens
//! the throughput window.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use niyanta::api::views::{CreatedTenant, JobView};
use niyanta::broker::nats::NatsBroker;
use niyanta::broker::{Ack, Broker, Command as Cmd, JobEvent, JobEventKind, Observed, Report, WorkerInfo};
use niyanta::cli::Client;
use niyanta::cluster::{CoordinatorNode, WorkerNode};
use niyanta::config::cluster::{CoordinatorSettings, WorkerSettings};
use niyanta::ids::WorkerId;
use niyanta::state::{Checkpoint, FencedUpdate, JobState, JobUpdate};
use reqwest::Method;
use serde_json::json;

const ADMIN: &str = "bench-admin-key";

fn database_url() -> String {
    std::env::var("NIYANTA_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn nats_url() -> String {
    std::env::var("NIYANTA_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

struct Installation {
    dir: tempfile::TempDir,
    schema: String,
    namespace: String,
}

impl Installation {
    fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            dir: tempfile::tempdir().unwrap(),
            schema: format!("bench_{}", &id[..12]),
            namespace: format!("bench-{}", &id[..12]),
        }
    }

    fn blob_url(&self) -> String {
        format!("file://{}", self.dir.path().join("blobs").display())
    }

    fn coordinator_settings(&self) -> CoordinatorSettings {
        CoordinatorSettings {
            database_url: database_url(),
            database_schema: self.schema.clone(),
            nats_url: nats_url(),
            nats_namespace: self.namespace.clone(),
            blob_url: self.blob_url(),
            listen: "127.0.0.1:0".parse().unwrap(),
            tiers: bench_tiers(),
            ..CoordinatorSettings::default()
        }
    }

    fn worker_settings(&self, n: usize, slots: u32) -> WorkerSettings {
        WorkerSettings {
            nats_url: nats_url(),
            nats_namespace: self.namespace.clone(),
            blob_url: self.blob_url(),
            slots,
            id: format!("bench-w{n}"),
            cache_dir: self.dir.path().join(format!("cache-{n}")),
            ..WorkerSettings::default()
        }
    }

    async fn drop_schema(&self) {
        if let Ok(pool) = sqlx::PgPool::connect(&database_url()).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema)))
                .execute(&pool)
                .await;
        }
    }
}

/// The built-in tiers and `bench`: `premium` allowing 4,096 concurrent jobs, so that the
/// tenant's limit never caps the workers' slots.
fn bench_tiers() -> niyanta::tier::Tiers {
    let mut tiers = niyanta::tier::default_tiers();
    let mut bench = tiers["premium"].clone();
    bench.concurrent_jobs = 4_096;
    tiers.insert("bench".into(), bench);
    tiers
}

/// A tenant on `tier` with `echo` and `ticker` uploaded.
async fn tenant(url: &str, tier: &str) -> Client {
    let admin = Client::new(url, Some(ADMIN.into()));
    let created: CreatedTenant = admin
        .json(admin.request(Method::POST, "/v1/tenants").json(&json!({"name": "bench", "tier": tier})))
        .await
        .unwrap();
    let client = Client::new(url, Some(created.api_key));
    for w in ["echo", "ticker"] {
        client.send(client.request(Method::PUT, &format!("/v1/workloads/{w}")).body(common::guest(w))).await.unwrap();
    }
    client
}

async fn wait_leader(node: &CoordinatorNode) {
    let start = Instant::now();
    while !node.app.coordinator.is_leader() {
        assert!(start.elapsed() < Duration::from_secs(15), "never elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the part `name` runs: every part without arguments, else those the arguments name
/// (`cargo bench --bench distributed -- throughput latency`).
fn selected(name: &str) -> bool {
    let wanted: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    wanted.is_empty() || wanted.iter().any(|w| name.contains(w.as_str()))
}

/// The throughput window, seconds (`NIYANTA_BENCH_WINDOW_S`, default 60).
fn window() -> Duration {
    let s = std::env::var("NIYANTA_BENCH_WINDOW_S").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    Duration::from_secs(s)
}

/// CPU time so far, in seconds: the whole machine's busy time (every CPU's user, system and
/// interrupt time, from `/proc/stat`) and this process's (user and system, from `/proc/self/stat`).
/// Both files count in USER_HZ ticks (proc(5)), 1/100 s on x86_64 and aarch64 Linux whatever the
/// kernel's own tick rate. `None` where they cannot be read.
fn cpu_seconds() -> Option<(f64, f64)> {
    const USER_HZ: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> =
        stat.lines().next()?.split_whitespace().skip(1).map(|t| t.parse().ok()).collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...: busy is user, nice, system, irq and
    // softirq (time stolen by the hypervisor is not this machine's work).
    let busy: u64 = [0, 1, 2, 5, 6].iter().map(|&i| ticks.get(i).copied()).sum::<Option<u64>>()?;
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name (which may hold spaces), from field 3 (state) on.
    let fields: Vec<&str> = own.rsplit_once(')')?.1.split_whitespace().collect();
    let (utime, stime): (u64, u64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    Some((busy as f64 / USER_HZ, (utime + stime) as f64 / USER_HZ))
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        // Echo jobs take a millisecond, so a slot spends most of its time on round trips
        // (assignment, the result's commit): throughput and latency are shown for the slot
        // counts of earlier runs and for many more slots per worker.
        for slots in [16, 128] {
            if selected(&format!("throughput-{slots}")) {
                throughput(slots).await;
            }
        }
        for slots in [8, 64] {
            if selected(&format!("latency-{slots}")) {
                latency(slots).await;
            }
        }
        if selected("checkpoint") {
            checkpoint_round_trip().await;
        }
        if selected("failover") {
            failover().await;
        }
    });
}

async fn throughput(slots: u32) {
    let window = window();
    const BATCH: usize = 500;
    const IN_FLIGHT: usize = 4;
    let inst = Installation::new();
    let node = CoordinatorNode::start(&inst.coordinator_settings(), Some(ADMIN.into())).await.unwrap();
    wait_leader(&node).await;
    let workers = [
        WorkerNode::start(&inst.worker_settings(0, slots)).await.unwrap(),
        WorkerNode::start(&inst.worker_settings(1, slots)).await.unwrap(),
    ];
    let client = tenant(&format!("http://{}", node.addr), "bench").await;
    // Ended jobs as the events tell, to keep the queue fed; the figure is counted in the
    // database, as a subscriber that falls behind misses events.
    let done = Arc::new(AtomicUsize::new(0));
    let missed = Arc::new(AtomicUsize::new(0));
    let mut events = node.app.broker.events();
    let (d, m) = (done.clone(), missed.clone());
    tokio::spawn(async move {
        while let Some(ev) = events.next().await {
            match ev {
                Observed::Missed(n) => {
                    m.fetch_add(n as usize, Ordering::Relaxed);
                }
                Observed::Event(JobEvent { kind: JobEventKind::State { state, .. }, .. }) if state.is_terminal() => {
                    assert_eq!(state, JobState::Succeeded);
                    d.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    });
    let submitted = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    let mut feeders = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (client, submitted, done) = (client.clone(), submitted.clone(), done.clone());
        feeders.push(tokio::spawn(async move {
            while start.elapsed() < window {
                // Keep the queue fed, not flooded: at most 20,000 jobs waiting.
                if submitted.load(Ordering::Relaxed) - done.load(Ordering::Relaxed) > 20_000 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                let jobs: Vec<_> =
                    (0..BATCH).map(|i| json!({"workload": "echo", "input": format!("job {i}")})).collect();
                let resp = client
                    .send(client.request(Method::POST, "/v1/jobs/batch").json(&json!({ "jobs": jobs })))
                    .await
                    .unwrap();
                assert_eq!(resp.status().as_u16(), 202);
                submitted.fetch_add(BATCH, Ordering::Relaxed);
            }
        }));
    }
    for f in feeders {
        f.await.unwrap();
    }
    let elapsed = start.elapsed();
    let cpu_end = cpu_seconds();
    let end_ms = niyanta::ids::now_ms();
    let ended = ended_in_database(&inst.schema, end_ms).await;
    println!(
        "distributed throughput: echo jobs over HTTP for {:.0} s (batches of {BATCH}, {IN_FLIGHT} in flight), 1 coordinator, 2 workers × {slots} slots",
        window.as_secs_f64()
    );
    println!(
        "  submitted {:>7}   ended {:>7}   {:>7.0} jobs/s ended   {:>7.0} submissions/s",
        submitted.load(Ordering::Relaxed),
        ended,
        ended as f64 / elapsed.as_secs_f64(),
        submitted.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()
    );
    if let (Some((busy0, own0)), Some((busy1, own1))) = (cpu_start, cpu_end) {
        let (secs, per_job) = (elapsed.as_secs_f64(), |cpu: f64| cpu * 1e6 / ended.max(1) as f64);
        println!(
            "  CPU busy {:.2} CPUs, {:.0} µs per ended job (the machine: PostgreSQL, NATS and this process); this process {:.2} CPUs, {:.0} µs per job",
            (busy1 - busy0) / secs,
            per_job(busy1 - busy0),
            (own1 - own0) / secs,
            per_job(own1 - own0)
        );
    }
    let missed = missed.load(Ordering::Relaxed);
    if missed > 0 {
        println!("  (the benchmark's event subscriber missed {missed} events; the figure is the database's)");
    }
    for w in workers {
        w.run_until(async {}).await.unwrap();
    }
    node.run_until(async {}).await.unwrap();
    inst.drop_schema().await;
}

/// Jobs of the installation in `schema` that ended by `end_ms` (Unix ms); panics unless every one
/// of them succeeded.
async fn ended_in_database(schema: &str, end_ms: i64) -> usize {
    let pool = sqlx::PgPool::connect(&database_url()).await.unwrap();
    let sql = format!(
        "SELECT COUNT(*) FILTER (WHERE state = 'succeeded'), COUNT(*) FROM {schema}.jobs \
         WHERE finished_at_ms IS NOT NULL AND finished_at_ms <= $1"
    );
    let (succeeded, ended): (i64, i64) =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(end_ms).fetch_one(&pool).await.unwrap();
    assert_eq!(succeeded, ended, "{} of the ended jobs did not succeed", ended - succeeded);
    pool.close().await;
    usize::try_from(ended).unwrap()
}

/// Waits until `jobs` warm-up jobs have been seen running (at most a minute).
async fn wait_running(running_at: &Mutex<HashMap<String, Instant>>, jobs: usize) {
    let start = Instant::now();
    while running_at.lock().unwrap().len() < jobs {
        assert!(start.elapsed() < Duration::from_secs(60), "the warm-up jobs did not run");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn latency(slots: u32) {
    const JOBS: usize = 5_000;
    const EVERY: Duration = Duration::from_millis(2);
    const WARM_UP: usize = 500;
    let inst = Installation::new();
    let node = CoordinatorNode::start(&inst.coordinator_settings(), Some(ADMIN.into())).await.unwrap();
    wait_leader(&node).await;
    let elected = Instant::now();
    let workers = [
        WorkerNode::start(&inst.worker_settings(0, slots)).await.unwrap(),
        WorkerNode::start(&inst.worker_settings(1, slots)).await.unwrap(),
    ];
    let client = tenant(&format!("http://{}", node.addr), "bench").await;
    let running_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let tenant_of: Arc<Mutex<HashMap<String, niyanta::ids::TenantId>>> = Arc::default();
    let mut events = node.app.broker.events();
    let (ra, to) = (running_at.clone(), tenant_of.clone());
    tokio::spawn(async move {
        while let Some(ev) = events.next().await {
            if let Observed::Event(JobEvent {
                job_id,
                tenant_id,
                kind: JobEventKind::State { state: JobState::Running, .. },
            }) = ev
            {
                ra.lock().unwrap().insert(job_id.to_string(), Instant::now());
                to.lock().unwrap().insert(job_id.to_string(), tenant_id);
            }
        }
    });
    // Instants as Unix ms, to compare with the times the state store keeps.
    let (base, base_ms) = (Instant::now(), niyanta::ids::now_ms() as f64);
    let unix_ms = move |t: Instant| base_ms + t.duration_since(base).as_secs_f64() * 1e3;
    // Warm up: each worker compiles `echo` on its first job; the figure is the steady state.
    let warm: Vec<_> = (0..4 * slots).map(|i| json!({"workload": "echo", "input": format!("warm-up {i}")})).collect();
    let resp =
        client.send(client.request(Method::POST, "/v1/jobs/batch").json(&json!({ "jobs": warm }))).await.unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    wait_running(&running_at, (4 * slots) as usize).await;
    // Then a second of single submissions at the measured rate, so that the HTTP connections and
    // the prepared statements of this path are in place, as in a steady state.
    let mut tick = tokio::time::interval(EVERY);
    let mut warming = Vec::new();
    for i in 0..WARM_UP {
        tick.tick().await;
        let client = client.clone();
        warming.push(tokio::spawn(async move {
            let body = json!({"workload": "echo", "input": format!("warm-up single {i}")});
            client.send(client.request(Method::POST, "/v1/jobs").json(&body)).await.unwrap();
        }));
    }
    for h in warming {
        h.await.unwrap();
    }
    wait_running(&running_at, (4 * slots) as usize + WARM_UP).await;
    // A steady state is also past the new leader's sweep (one lease timeout after its election).
    let swept = elected + Duration::from_millis(inst.coordinator_settings().lease_timeout_ms + 500);
    tokio::time::sleep(swept.saturating_duration_since(Instant::now())).await;
    running_at.lock().unwrap().clear();
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let answered: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let mut tick = tokio::time::interval(EVERY);
    let mut handles = Vec::new();
    for i in 0..JOBS {
        tick.tick().await;
        let (client, sent, answered) = (client.clone(), sent.clone(), answered.clone());
        handles.push(tokio::spawn(async move {
            let t = Instant::now();
            let job: JobView = client
                .json(
                    client
                        .request(Method::POST, "/v1/jobs")
                        .json(&json!({"workload": "echo", "input": format!("job {i}")})),
                )
                .await
                .unwrap();
            answered.lock().unwrap().push(t.elapsed());
            sent.lock().unwrap().insert(job.id, t);
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    // Every job's running event, however late (at most a minute).
    let start = Instant::now();
    while running_at.lock().unwrap().len() < JOBS && start.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut l: Vec<Duration> = {
        let sent = sent.lock().unwrap();
        let running = running_at.lock().unwrap();
        sent.iter()
            .map(|(id, t)| running.get(id).unwrap_or_else(|| panic!("job {id} never ran")).duration_since(*t))
            .collect()
    };
    l.sort();
    let pct = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)].as_secs_f64() * 1e3;
    println!("submit → running at 500 jobs/s ({JOBS} echo jobs over HTTP, 1 coordinator, 2 workers × {slots} slots)");
    println!("  p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms", pct(0.5), pct(0.99), pct(1.0));
    let mut a = answered.lock().unwrap().clone();
    a.sort();
    let pct = |p: f64| a[((a.len() as f64 * p) as usize).min(a.len() - 1)].as_secs_f64() * 1e3;
    println!("  of which the submission's answer: p50 {:>7.2} ms   p99 {:>7.2} ms", pct(0.5), pct(0.99));
    // Where the time goes, by the job's times in the state store (whole ms): sent → inserted,
    // inserted → `running` applied by the leader, applied → the event here.
    let (mut intake, mut start, mut event) = (Vec::new(), Vec::new(), Vec::new());
    let rows: Vec<(String, Instant, Instant, niyanta::ids::TenantId)> = {
        let (sent, running, tenants) = (sent.lock().unwrap(), running_at.lock().unwrap(), tenant_of.lock().unwrap());
        sent.iter().map(|(id, t)| (id.clone(), *t, running[id], tenants[id])).collect()
    };
    for (id, t, r, tenant) in rows {
        let job = node.app.state.get_job(tenant, id.parse().unwrap()).await.unwrap().unwrap();
        let (created, started) = (job.created_at_ms as f64, job.started_at_ms.unwrap() as f64);
        intake.push(created - unix_ms(t));
        start.push(started - created);
        event.push(unix_ms(r) - started);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "  split (p50): sent → inserted {:.1} ms, inserted → running applied {:.1} ms, applied → event {:.1} ms",
        median(&mut intake),
        median(&mut start),
        median(&mut event)
    );
    for w in workers {
        w.run_until(async {}).await.unwrap();
    }
    node.run_until(async {}).await.unwrap();
    inst.drop_schema().await;
}

async fn checkpoint_round_trip() {
    const ROUNDS: usize = 500;
    let inst = Installation::new();
    let node = CoordinatorNode::start(&inst.coordinator_settings(), Some(ADMIN.into())).await.unwrap();
    wait_leader(&node).await;
    let client = tenant(&format!("http://{}", node.addr), "bench").await;
    // This process plays the worker on a NATS connection of its own.
    let broker = NatsBroker::connect_without_events(
        &nats_url(),
        &inst.namespace,
        niyanta::blobs::Blobs::from_url(&inst.blob_url()).unwrap(),
    )
    .await
    .unwrap();
    let me = WorkerId("bench-checkpointer".into());
    let mut commands = broker.commands(&me).await.unwrap();
    let info = WorkerInfo { id: me.clone(), slots: 1, ..WorkerInfo::default() };
    assert_eq!(broker.report(Report::Register(info)).await.unwrap(), Ack::Ok);
    let _job: JobView =
        client.json(client.request(Method::POST, "/v1/jobs").json(&json!({"workload": "ticker"}))).await.unwrap();
    let Some(Cmd::Assign(a)) = commands.next().await else { panic!("no assignment") };
    let running = Report::Job {
        worker: me.clone(),
        update: FencedUpdate { job_id: a.job_id, epoch: a.epoch, update: JobUpdate::Running },
    };
    assert_eq!(broker.report(running).await.unwrap(), Ack::Ok);
    let state = vec![7u8; 64 * 1024];
    let mut times = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        let cp = Checkpoint { state: state.clone(), fuel_used: i as u64, ..Checkpoint::default() };
        let report = Report::Job {
            worker: me.clone(),
            update: FencedUpdate { job_id: a.job_id, epoch: a.epoch, update: JobUpdate::Checkpoint(cp) },
        };
        let t = Instant::now();
        assert_eq!(broker.report(report).await.unwrap(), Ack::Ok);
        times.push(t.elapsed());
    }
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)].as_secs_f64() * 1e3;
    println!("checkpoint round trip, 64 KiB state, worker → NATS → PostgreSQL commit → ack ({ROUNDS} rounds)");
    println!("  p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms", pct(0.5), pct(0.99), pct(1.0));
    node.run_until(async {}).await.unwrap();
    inst.drop_schema().await;
}

/// A `niyanta` process; killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `niyanta ARGS` and waits for its stdout line starting with `ready`; returns the rest.
fn spawn(args: &[String], log: &std::path::Path, ready: &'static str) -> (Proc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_niyanta"))
        .args(args)
        .env("NIYANTA_ADMIN_KEY", ADMIN)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix(ready) {
                let _ = tx.send(rest.to_owned());
            }
        }
    });
    let rest = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("{args:?} did not start"));
    (Proc(child), rest)
}

async fn failover() {
    const ROUNDS: usize = 10;
    let inst = Installation::new();
    let dir = inst.dir.path();
    let common = |v: &mut Vec<String>| {
        v.extend([
            "--nats-url".into(),
            nats_url(),
            "--nats-namespace".into(),
            inst.namespace.clone(),
            "--blob-url".into(),
            inst.blob_url(),
        ]);
    };
    let mut args = vec![
        "coordinator".into(),
        "--database-url".into(),
        database_url(),
        "--database-schema".into(),
        inst.schema.clone(),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ];
    common(&mut args);
    let (_coordinator, url) = spawn(&args, &dir.join("coordinator.log"), "niyanta coordinator listening on ");
    let client = tenant(&url, "premium").await;
    let worker = |n: usize| {
        let mut args = vec![
            "worker".into(),
            "--slots".into(),
            "1".into(),
            "--id".into(),
            format!("fw{n}"),
            "--cache-dir".into(),
            dir.join(format!("cache-{n}")).display().to_string(),
        ];
        common(&mut args);
        spawn(&args, &dir.join(format!("worker-{n}.log")), "niyanta worker ").0
    };
    let mut workers: HashMap<String, Proc> = HashMap::new();
    let mut next = 0;
    let mut times = Vec::new();
    for _ in 0..ROUNDS {
        while workers.len() < 2 {
            workers.insert(format!("fw{next}"), worker(next));
            next += 1;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let job: JobView = client
            .json(
                client
                    .request(Method::POST, "/v1/jobs")
                    .json(&json!({"workload": "ticker", "params": {"steps": 600, "sleep_ms": 100}})),
            )
            .await
            .unwrap();
        // Which worker runs it: the leader's view.
        let admin = Client::new(&url, Some(ADMIN.into()));
        let busy = loop {
            let view: serde_json::Value = admin.json(admin.request(Method::GET, "/v1/cluster")).await.unwrap();
            let busy = view["workers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|w| w["running"].as_u64() == Some(1))
                .and_then(|w| w["id"].as_str().map(str::to_owned));
            if let Some(b) = busy {
                break b;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let path = format!("/v1/jobs/{}", job.id);
        let get = |c: Client| {
            let path = path.clone();
            async move { c.json::<JobView>(c.request(Method::GET, &path)).await }
        };
        while get(client.clone()).await.unwrap().state != JobState::Running {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(workers.remove(&busy));
        let killed = Instant::now();
        loop {
            let j = get(client.clone()).await.unwrap();
            if j.attempt == 2 && j.state == JobState::Running {
                break;
            }
            assert!(killed.elapsed() < Duration::from_secs(30), "no failover: {j:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        times.push(killed.elapsed());
        client.send(client.request(Method::POST, &format!("/v1/jobs/{}/cancel", job.id))).await.unwrap();
    }
    times.sort();
    println!(
        "worker killed (kill -9) → its job running on another worker ({ROUNDS} rounds, 1 s heartbeat, 3 s lease timeout)"
    );
    println!(
        "  p50 {:>7.2} s   min {:>7.2} s   max {:>7.2} s",
        times[times.len() / 2].as_secs_f64(),
        times[0].as_secs_f64(),
        times[times.len() - 1].as_secs_f64()
    );
    inst.drop_schema().await;
}
