//! Sandbox benchmarks (results in BENCHMARKS.md):
//! 1. per-job overhead: instantiate + call `echo` with a small input + drop, Niyanta's runtime
//!    with every limit on (called from a task on the guests' threads, the sandbox alone, and as
//!    the worker calls it, from another runtime, which hands each attempt to a guest thread and
//!    back) versus bare
//!    wasmtime doing the same in the same run (without fuel, and with fuel metering on);
//! 2. the cost of limits on CPU-bound guests (`primes`, `csv-groupby` on flights.csv) versus the
//!    same run in bare wasmtime without fuel, with fuel metering on, and with fuel and epoch
//!    interruption on.
//!
//! Run: `cargo bench --bench sandbox` (after scripts/build-guests.sh).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Bare, MemIo, Metering, guest, median};
use niyanta::ids::{Digest, JobId};
use niyanta::runtime::{JobLimits, JobSpec, Runtime, RuntimeConfig, Signals};
use niyanta::state::Outcome;

fn limits() -> JobLimits {
    JobLimits {
        fuel: 10_000_000_000_000,
        memory_bytes: 512 << 20,
        wall_clock: Duration::from_secs(600),
        output_bytes: 1 << 30,
        checkpoint_bytes: 1 << 20,
    }
}

/// One attempt's spec. The job id is made once (as a job's is, at submission), not per attempt:
/// a UUIDv7 draws from the operating system's generator, a system call the bare runs do not make.
fn spec(input: &[u8], params: &str) -> JobSpec {
    static ID: std::sync::LazyLock<JobId> = std::sync::LazyLock::new(JobId::new);
    JobSpec {
        id: *ID,
        attempt: 1,
        params: params.into(),
        input_size: input.len() as u64,
        resume: None,
        fuel_used_before: 0,
        limits: limits(),
    }
}

struct Niyanta {
    rt: Runtime,
    pre: niyanta::runtime::WorkloadPre<niyanta::runtime::JobCtx>,
}

impl Niyanta {
    async fn new(component: Vec<u8>) -> Self {
        let rt = Runtime::new(&RuntimeConfig {
            max_memory_bytes: 512 << 20,
            pool_instances: 1000,
            cache_dir: None,
            compile_helper: None,
        })
        .unwrap();
        let digest = Digest::of(&component);
        let bytes = bytes::Bytes::from(component);
        let pre = rt.prepare(digest, || async move { Ok(bytes) }).await.unwrap();
        Self { rt, pre }
    }

    async fn run(&self, input: Arc<Vec<u8>>, params: &str) -> Vec<u8> {
        let s = spec(&input, params);
        let r = self.rt.run(&self.pre, s, Box::new(MemIo { input }), Arc::new(Signals::default())).await;
        match r.outcome {
            Some(Outcome::Succeeded { output }) => output.inline,
            other => panic!("job did not succeed: {other:?}"),
        }
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        overhead().await;
        limits_cost().await;
    });
}

async fn overhead() {
    let echo = guest("echo");
    let bare = Bare::new(&echo, Metering::None);
    let fueled = Bare::new(&echo, Metering::Fuel);
    let ours = Arc::new(Niyanta::new(echo).await);
    let input = Arc::new(b"hello, sandbox".to_vec());
    assert_eq!(bare.run(input.clone(), "{}"), *input);
    assert_eq!(fueled.run(input.clone(), "{}"), *input);
    assert_eq!(ours.run(input.clone(), "{}").await, *input);
    const N: u32 = 5_000;
    let (mut b, mut f, mut n, mut h) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _round in 0..7 {
        let t = Instant::now();
        for _ in 0..N {
            bare.run(input.clone(), "{}");
        }
        b.push(t.elapsed() / N);
        let t = Instant::now();
        for _ in 0..N {
            fueled.run(input.clone(), "{}");
        }
        f.push(t.elapsed() / N);
        // The sandbox alone: from a task on the guests' threads, no hand-off.
        let (o, i) = (ours.clone(), input.clone());
        let took = ours.rt.guests().spawn(async move {
            let t = Instant::now();
            for _ in 0..N {
                o.run(i.clone(), "{}").await;
            }
            t.elapsed()
        });
        n.push(took.await.unwrap() / N);
        // As the worker calls it, from another runtime: each attempt handed to a guest thread
        // and back.
        let t = Instant::now();
        for _ in 0..N {
            ours.run(input.clone(), "{}").await;
        }
        h.push(t.elapsed() / N);
    }
    let (b, f, n, h) = (median(b), median(f), median(n), median(h));
    println!(
        "per-job overhead: echo, {}-byte input, instantiate + call + drop (median of 7 rounds of {N})",
        input.len()
    );
    println!("  bare wasmtime (pooling, no fuel, sync)      {:>8.2} µs", b.as_secs_f64() * 1e6);
    println!("  bare wasmtime with fuel metering            {:>8.2} µs", f.as_secs_f64() * 1e6);
    println!("  niyanta runtime (all limits, async)         {:>8.2} µs", n.as_secs_f64() * 1e6);
    println!(
        "  niyanta runtime, handed to a guest thread   {:>8.2} µs (as the worker calls it)",
        h.as_secs_f64() * 1e6
    );
    println!(
        "  ratio                                        {:>8.2}× ({:.2}× handed over)",
        n.as_secs_f64() / b.as_secs_f64(),
        h.as_secs_f64() / b.as_secs_f64()
    );
}

async fn limits_cost() {
    let flights = Arc::new(common::flights_csv());
    let cases: [(&str, Arc<Vec<u8>>, &str); 2] = [
        ("primes", Arc::new(Vec::new()), r#"{"below": 200000000}"#),
        ("csv-groupby", flights, r#"{"group_by": "carrier", "value": "arr_delay"}"#),
    ];
    for (name, input, params) in cases {
        let component = guest(name);
        let bare = Bare::new(&component, Metering::None);
        let fueled = Bare::new(&component, Metering::Fuel);
        let epochs = Bare::new(&component, Metering::FuelAndEpochs);
        let ours = Niyanta::new(component).await;
        let want = bare.run(input.clone(), params);
        assert_eq!(fueled.run(input.clone(), params), want, "{name}: same output");
        assert_eq!(epochs.run(input.clone(), params), want, "{name}: same output");
        assert_eq!(ours.run(input.clone(), params).await, want, "{name}: same output");
        let (mut b, mut f, mut e, mut n) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _round in 0..5 {
            let t = Instant::now();
            bare.run(input.clone(), params);
            b.push(t.elapsed());
            let t = Instant::now();
            fueled.run(input.clone(), params);
            f.push(t.elapsed());
            let t = Instant::now();
            epochs.run(input.clone(), params);
            e.push(t.elapsed());
            let t = Instant::now();
            ours.run(input.clone(), params).await;
            n.push(t.elapsed());
        }
        let (b, f, e, n) = (median(b), median(f), median(e), median(n));
        println!("cost of limits: {name} {params} (median of 5)");
        println!("  without limits   {:>9.1} ms", b.as_secs_f64() * 1e3);
        println!("  fuel metering    {:>9.1} ms", f.as_secs_f64() * 1e3);
        println!("  fuel and epochs  {:>9.1} ms", e.as_secs_f64() * 1e3);
        println!("  with limits      {:>9.1} ms", n.as_secs_f64() * 1e3);
        println!(
            "  ratio            {:>9.2}× (to fuel metering alone {:.2}×)",
            n.as_secs_f64() / b.as_secs_f64(),
            n.as_secs_f64() / f.as_secs_f64()
        );
    }
}
