//! Prometheus metrics, kept in the `prometheus` crate's default registry and served in its text
//! format at `GET /metrics` (coordinators and `serve`; workers with `--metrics-listen`).
//!
//! Counters and histograms are per process: those of jobs (`niyanta_jobs_submitted_total`,
//! `niyanta_jobs_ended_total`, the latency histograms) on the coordinator that handled the
//! submission or report, those of guests (`niyanta_fuel_consumed_total`, checkpoints, the
//! compile cache) on the worker that ran the attempt, those of deleted components on the leader
//! that deleted them. Gauges of the queue and the workers are read from the state store and the
//! leader's view when scraped.

use std::sync::LazyLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, TextEncoder,
};

use crate::state::{JobRecord, JobState};

// The metric names, labels and buckets below are constants: constructing them cannot fail at run
// time (the test `every_metric_renders` builds them all).

#[allow(clippy::expect_used)]
fn counter(name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    let _ = prometheus::register(Box::new(c.clone()));
    c
}

#[allow(clippy::expect_used)]
fn gauge(name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    let _ = prometheus::register(Box::new(g.clone()));
    g
}

#[allow(clippy::expect_used)]
fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    let _ = prometheus::register(Box::new(c.clone()));
    c
}

#[allow(clippy::expect_used)]
fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    let _ = prometheus::register(Box::new(g.clone()));
    g
}

#[allow(clippy::expect_used)]
fn histogram(name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid metric");
    let _ = prometheus::register(Box::new(h.clone()));
    h
}

/// Seconds buckets from 1 ms to about 1.2 h (1 ms × 4ⁿ).
fn seconds() -> Vec<f64> {
    (0..12).map(|n| 0.001 * 4f64.powi(n)).collect()
}

/// Jobs accepted, by tier.
pub static JOBS_SUBMITTED: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter_vec("niyanta_jobs_submitted_total", "Jobs accepted, by tier.", &["tier"]));

/// Jobs that ended, by tier and end state (`succeeded`, `failed`, `cancelled`, `dead`).
pub static JOBS_ENDED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec("niyanta_jobs_ended_total", "Jobs that ended, by tier and end state.", &["tier", "state"])
});

/// Attempts that failed, by tier, failure class and whose fault it was (`tenant`, `host`,
/// `requested`: see [`crate::state::FailureClass::blame`]). Counted when the job ends or is
/// scheduled for a retry.
pub static ATTEMPT_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "niyanta_attempt_failures_total",
        "Attempts that failed, by tier, failure class and fault (tenant, host or requested).",
        &["tier", "class", "fault"],
    )
});

/// Jobs waiting or leased now, by state and tier (read from the state store when scraped).
pub static JOBS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec("niyanta_jobs", "Jobs scheduled, queued, assigned or running now, by state and tier.", &["state", "tier"])
});

/// Jobs queued now, all tenants (the worker autoscaler's metric).
pub static JOBS_QUEUED: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("niyanta_jobs_queued", "Jobs queued now, waiting for a slot."));

/// Age of the oldest queued job, seconds (0 when none is queued).
pub static QUEUE_OLDEST_AGE: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("niyanta_queue_oldest_age_seconds", "Age of the oldest queued job, seconds."));

/// Submission to first start, seconds.
pub static START_LATENCY: LazyLock<Histogram> = LazyLock::new(|| {
    histogram("niyanta_job_start_latency_seconds", "Time from a job's submission to its first start.", seconds())
});

/// First start to end, seconds.
pub static RUN_TIME: LazyLock<Histogram> =
    LazyLock::new(|| histogram("niyanta_job_run_seconds", "Time from a job's first start to its end.", seconds()));

/// Fuel units guests consumed on this worker.
pub static FUEL: LazyLock<IntCounter> =
    LazyLock::new(|| counter("niyanta_fuel_consumed_total", "Fuel units consumed by guests on this worker."));

/// Checkpoint state sizes, bytes.
pub static CHECKPOINT_BYTES: LazyLock<Histogram> = LazyLock::new(|| {
    // 64 B × 4ⁿ: 64 B to 64 MiB.
    let buckets = (0..11).map(|n| 64.0 * 4f64.powi(n)).collect();
    histogram("niyanta_checkpoint_bytes", "Checkpoint state sizes, bytes.", buckets)
});

/// Checkpoint round trips (guest call → durable → return), seconds.
pub static CHECKPOINT_LATENCY: LazyLock<Histogram> = LazyLock::new(|| {
    histogram("niyanta_checkpoint_seconds", "Checkpoint round trips: guest call to durable to return.", seconds())
});

/// Scheduling rounds the leader completed (one at least every second, and one after each
/// change that may free or need a slot): a test that checks that something does *not* start
/// waits for rounds to pass rather than for a fixed time.
pub static SCHEDULING_ROUNDS: LazyLock<IntCounter> =
    LazyLock::new(|| counter("niyanta_scheduling_rounds_total", "Scheduling rounds the leader completed."));

/// Worker slots (`used`, `free`) as the leader sees them.
pub static SLOTS: LazyLock<IntGaugeVec> =
    LazyLock::new(|| gauge_vec("niyanta_worker_slots", "Worker job slots, used and free.", &["state"]));

/// Errors of the backends, by source (`database`, `broker`, `connection_in_transaction`).
pub static ERRORS: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter_vec("niyanta_errors_total", "Errors of the state store and the broker.", &["source"]));

/// Attempts a worker was told to abandon: the leader found it running them without a valid lease.
pub static ABANDONED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "niyanta_attempts_abandoned_total",
        "Attempts a worker was told to abandon: it ran them without a valid lease.",
    )
});

/// Components deleted by the leader once no workload named them and no job that had not ended
/// needed them (see `coordinator::collect`).
pub static COMPONENTS_COLLECTED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "niyanta_components_collected_total",
        "Components deleted once no workload or job that has not ended used them.",
    )
});

/// Bytes of the components deleted (those still stored when their deletion came).
pub static COMPONENT_BYTES_FREED: LazyLock<IntCounter> =
    LazyLock::new(|| counter("niyanta_component_bytes_freed_total", "Bytes of the components deleted once unused."));

/// Compiled-component lookups by result (`memory`, `disk`: hits; `compiled`: a miss).
pub static COMPILE_CACHE: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter_vec("niyanta_compile_cache_total", "Compiled-component lookups by result.", &["result"]));

/// Counts a database error.
pub fn database_error() {
    ERRORS.with_label_values(&["database"]).inc();
}

/// Counts a pooled database connection closed because it came back inside a transaction (see
/// [`crate::state::postgres::pool`]).
pub fn connection_discarded() {
    ERRORS.with_label_values(&["connection_in_transaction"]).inc();
}

/// Counts a broker error.
pub fn broker_error() {
    ERRORS.with_label_values(&["broker"]).inc();
}

fn failed(job: &JobRecord, tier: &str) {
    if let Some(class) = job.failure_class {
        ATTEMPT_FAILURES.with_label_values(&[tier, class.as_str(), class.blame().as_str()]).inc();
    }
}

/// Records a job's state change (called once per change, after its commit): first starts and
/// ends, with their latencies.
pub fn job_changed(job: &JobRecord, tier: &str) {
    match job.state {
        JobState::Running if job.attempt == 1 => {
            if let Some(started) = job.started_at_ms {
                START_LATENCY.observe((started - job.created_at_ms).max(0) as f64 / 1000.0);
            }
        }
        JobState::Scheduled => failed(job, tier),
        s if s.is_terminal() => {
            failed(job, tier);
            JOBS_ENDED.with_label_values(&[tier, s.as_str()]).inc();
            if let (Some(started), Some(finished)) = (job.started_at_ms, job.finished_at_ms) {
                RUN_TIME.observe((finished - started).max(0) as f64 / 1000.0);
            }
        }
        _ => {}
    }
}

/// Every registered metric in the Prometheus text format (version 0.0.4).
pub fn render() -> String {
    let mut out = Vec::new();
    // Touch the metrics so that each is listed from the first scrape.
    for m in [&*JOBS_QUEUED, &*QUEUE_OLDEST_AGE] {
        let _ = m.get();
    }
    let _ = (FUEL.get(), ABANDONED.get(), START_LATENCY.get_sample_count(), RUN_TIME.get_sample_count());
    let _ = (COMPONENTS_COLLECTED.get(), COMPONENT_BYTES_FREED.get(), SCHEDULING_ROUNDS.get());
    let _ = (CHECKPOINT_BYTES.get_sample_count(), CHECKPOINT_LATENCY.get_sample_count());
    for source in ["database", "broker", "connection_in_transaction"] {
        let _ = ERRORS.with_label_values(&[source]);
    }
    for result in ["memory", "disk", "compiled"] {
        let _ = COMPILE_CACHE.with_label_values(&[result]);
    }
    let _ = TextEncoder::new().encode(&prometheus::gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_renders() {
        JOBS_SUBMITTED.with_label_values(&["free"]).inc();
        JOBS.with_label_values(&["queued", "free"]).set(3);
        SLOTS.with_label_values(&["free"]).set(2);
        ATTEMPT_FAILURES.with_label_values(&["free", "host_error", "host"]).inc();
        let text = render();
        for name in [
            "niyanta_jobs_submitted_total{tier=\"free\"} 1",
            "niyanta_jobs{state=\"queued\",tier=\"free\"} 3",
            "niyanta_jobs_queued 0",
            "niyanta_queue_oldest_age_seconds 0",
            "niyanta_job_start_latency_seconds_bucket{le=\"0.001\"} 0",
            "niyanta_job_run_seconds_count 0",
            "niyanta_fuel_consumed_total 0",
            "niyanta_checkpoint_bytes_bucket{le=\"64\"} 0",
            "niyanta_checkpoint_seconds_count 0",
            "niyanta_worker_slots{state=\"free\"} 2",
            "niyanta_errors_total{source=\"broker\"} 0",
            "niyanta_compile_cache_total{result=\"compiled\"} 0",
            "niyanta_components_collected_total 0",
            "niyanta_component_bytes_freed_total 0",
            "niyanta_scheduling_rounds_total ",
            "niyanta_attempt_failures_total{class=\"host_error\",fault=\"host\",tier=\"free\"} 1",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
