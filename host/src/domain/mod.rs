//! The job's domain: its states, how an attempt ends and why it failed, its checkpoints, its
//! retry policy and what it consumed. Shared by the sandbox ([`crate::runtime`]), the worker and
//! the state stores ([`crate::state`] re-exports them).

pub(crate) mod b64;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a job is in its life. The allowed moves: `docs/architecture.md`, "A job's life"
/// (generated from `state/machine.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its start time (`not_before`): a delayed job, or a retry waiting out its
    /// backoff. Queued once the time comes.
    Scheduled,
    /// Waiting for a free worker slot.
    Queued,
    /// Handed to a worker that holds a lease on it.
    Assigned,
    /// The worker started the guest.
    Running,
    /// Finished with an output.
    Succeeded,
    /// Finished with a failure class and message.
    Failed,
    /// Cancelled through the API.
    Cancelled,
    /// Failed retryably on every attempt its retry policy allows (a dead letter). Can be
    /// re-driven through the API.
    Dead,
}

impl JobState {
    /// The text form stored in the database and used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Queued => "queued",
            Self::Assigned => "assigned",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Dead => "dead",
        }
    }

    /// Parses the text form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "scheduled" => Self::Scheduled,
            "queued" => Self::Queued,
            "assigned" => Self::Assigned,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            "dead" => Self::Dead,
            _ => return None,
        })
    }

    /// The state's place in the job's life (`scheduled` 0 … `dead` 7).
    pub fn ordinal(self) -> u8 {
        self as u8
    }

    /// Whether the job has ended for good.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled | Self::Dead)
    }
}

/// Why a job failed. Each class comes with a message the tenant can act on. Every class is the
/// tenant's doing (its code, input or tier limits) but `host_error` (the host's: not billed, not
/// counted against the job's retries) and `cancelled` (asked for).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The workload returned an error.
    GuestError,
    /// The guest trapped: a panic, `unreachable`, a stack overflow, an out-of-bounds access.
    Trap,
    /// The job used up the fuel its tier allows.
    FuelExhausted,
    /// The guest tried to grow its memory past its tier's limit.
    MemoryLimit,
    /// An attempt ran past its tier's wall-clock limit.
    Timeout,
    /// The output (or a checkpoint) grew past its tier's limit.
    OutputLimit,
    /// Cancelled through the API.
    Cancelled,
    /// The workload rejected its input or params.
    InvalidInput,
    /// The workload reported a transient failure (`job-error::retryable`): the job is retried
    /// under its [`RetryPolicy`], and ends `dead` when no attempt is left.
    Retryable,
    /// A host service failed (the object store, the broker, the state store), or the worker
    /// could not load the component: not the tenant's fault. The job is queued again from its
    /// last checkpoint under the host retry policy, without using its own retry budget, and ends
    /// `dead` with this class when no host retry is left.
    HostError,
}

/// Whose doing a failure class is (the label `fault` of `niyanta_attempt_failures_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blame {
    /// The tenant's code, input or tier limits: billed, and counted against the job's retries.
    Tenant,
    /// The platform's: retried under the host retry policy, metered apart (`host_error_*`).
    Host,
    /// Asked for through the API (a cancellation).
    Requested,
}

impl Blame {
    /// The text form (`tenant`, `host`, `requested`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::Host => "host",
            Self::Requested => "requested",
        }
    }
}

impl std::fmt::Display for FailureClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FailureClass {
    /// The text form stored in the database and used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GuestError => "guest_error",
            Self::Trap => "trap",
            Self::FuelExhausted => "fuel_exhausted",
            Self::MemoryLimit => "memory_limit",
            Self::Timeout => "timeout",
            Self::OutputLimit => "output_limit",
            Self::Cancelled => "cancelled",
            Self::InvalidInput => "invalid_input",
            Self::Retryable => "retryable",
            Self::HostError => "host_error",
        }
    }

    /// Whose doing the class is: every class is the tenant's but `host_error` (the host's) and
    /// `cancelled` (asked for).
    pub fn blame(self) -> Blame {
        match self {
            Self::HostError => Blame::Host,
            Self::Cancelled => Blame::Requested,
            _ => Blame::Tenant,
        }
    }

    /// Parses the text form.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::GuestError,
            Self::Trap,
            Self::FuelExhausted,
            Self::MemoryLimit,
            Self::Timeout,
            Self::OutputLimit,
            Self::Cancelled,
            Self::InvalidInput,
            Self::Retryable,
            Self::HostError,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// Inputs and outputs up to this many bytes live in the job record instead of the object store.
pub const INLINE_LIMIT: usize = 64 * 1024;

/// How a job is retried after failures its workload marks retryable (class `retryable`).
///
/// After the `n`-th such failure the job waits `min(max_backoff_ms, initial_backoff_ms × 2^(n-1))`
/// with "equal jitter" (half of it fixed, the other half uniformly random; M. Brooker,
/// "Exponential Backoff And Jitter", AWS Architecture Blog, 2015), then resumes from its last
/// checkpoint. When `max_attempts` attempts have failed so, the job ends `dead`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts that may fail retryably before the job is dead, 1 to 100 (default 3; 1: no retry).
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: u32,
    /// Backoff before the first retry, ms, 0 to 86,400,000 (default 1,000).
    #[schema(maximum = 86_400_000)]
    pub initial_backoff_ms: u64,
    /// Longest backoff, ms, at least `initial_backoff_ms` and at most 86,400,000 (default 60,000).
    #[schema(maximum = 86_400_000)]
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 3, initial_backoff_ms: 1_000, max_backoff_ms: 60_000 }
    }
}

/// The longest backoff or delay a policy may ask for, ms (one day).
pub const MAX_BACKOFF_MS: u64 = 86_400_000;

impl RetryPolicy {
    /// The default host retry policy (setting `host_retry`): attempts that end in a host error
    /// are retried 4 times, after 1 s, 2 s, 4 s and 8 s (halves jittered), then the job is dead.
    pub const HOST: Self = Self { max_attempts: 5, initial_backoff_ms: 1_000, max_backoff_ms: 30_000 };

    /// Checks the bounds above; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=100).contains(&self.max_attempts) {
            return Err(format!("retry.max_attempts must be 1 to 100, got {}", self.max_attempts));
        }
        if self.initial_backoff_ms > MAX_BACKOFF_MS || self.max_backoff_ms > MAX_BACKOFF_MS {
            return Err(format!("retry backoffs are at most {MAX_BACKOFF_MS} ms"));
        }
        if self.max_backoff_ms < self.initial_backoff_ms {
            return Err(format!(
                "retry.max_backoff_ms ({}) is below retry.initial_backoff_ms ({})",
                self.max_backoff_ms, self.initial_backoff_ms
            ));
        }
        Ok(())
    }

    /// The backoff after the `failures`-th retryable failure (1, 2, …), ms. `unit` is a uniform
    /// random number in [0, 1) that picks the jittered half.
    pub fn backoff_ms(&self, failures: u32, unit: f64) -> u64 {
        let doublings = failures.saturating_sub(1).min(62);
        let base = self.initial_backoff_ms.saturating_mul(1u64 << doublings).min(self.max_backoff_ms);
        let half = base / 2;
        half + ((base - half) as f64 * unit.clamp(0.0, 1.0)) as u64
    }

    /// What becomes of a job whose attempt just failed retryably, having failed so `failures`
    /// times before: retried at `now_ms` plus the backoff, or dead.
    pub fn after_failure(&self, failures: u32, now_ms: i64) -> Option<i64> {
        let n = failures + 1;
        (n < self.max_attempts).then(|| now_ms + self.backoff_ms(n, fastrand::f64()) as i64)
    }
}

/// A job's progress as the guest last reported it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
    pub message: String,
}

/// A durably stored checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// 1, 2, …: raised on each checkpoint of the job.
    pub seq: u32,
    /// The guest's state bytes.
    #[serde(with = "b64")]
    pub state: Vec<u8>,
    /// Output bytes written before this checkpoint (kept on resume).
    pub output_bytes: u64,
    /// Output parts flushed to the object store before this checkpoint.
    pub output_parts: u32,
    /// Output bytes written after the last flushed part (at most 64 KiB), kept with the checkpoint.
    #[serde(with = "b64")]
    pub output_tail: Vec<u8>,
    /// Fuel units consumed over all attempts up to this checkpoint.
    pub fuel_used: u64,
}

/// How an attempt ended, as the worker reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Succeeded {
        output: OutputRef,
    },
    Failed {
        class: FailureClass,
        message: String,
        output: OutputRef,
    },
    /// The attempt stopped for a worker shutdown; the job goes back to the queue.
    Suspended,
}

/// Where an ended attempt left its output.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRef {
    /// Inline bytes (when `parts == 0`).
    #[serde(with = "b64")]
    pub inline: Vec<u8>,
    /// Parts in the object store under `outputs/{job}/{index}`.
    pub parts: u32,
    /// Total size in bytes.
    pub bytes: u64,
}

/// Usage figures of an ended attempt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Fuel units consumed over all attempts.
    pub fuel_used: u64,
    /// Largest linear memory of this attempt, bytes.
    pub memory_peak_bytes: u64,
    /// Wall time of this attempt, ms (from instantiation to its end).
    #[serde(default)]
    pub wall_ms: u64,
}

/// A line of a job's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    /// Unix milliseconds.
    pub at_ms: i64,
    pub attempt: u32,
    /// `trace`, `debug`, `info`, `warn`, `error`, or `stdout`/`stderr` for captured output.
    pub level: String,
    pub message: String,
}
