//! The records the state store keeps.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{Digest, JobId, TenantId, WorkerId};

/// Where a job is in its life. The allowed moves are in [`crate::state::machine`].
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
/// tenant's doing (its code, input or tier limits) but `host_error` (the host's) and `cancelled`
/// (asked for): see [`FailureClass::blame`].
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

/// A tenant.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Tenant {
    #[schema(value_type = String, format = Uuid)]
    pub id: TenantId,
    pub name: String,
    /// The tier's name (see `GET /v1/tiers`).
    pub tier: String,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
    /// When the tenant was suspended, Unix milliseconds; `None` while active. A suspended
    /// tenant's keys are refused and its queued jobs do not start.
    pub suspended_at_ms: Option<i64>,
}

impl Tenant {
    /// Whether the tenant is suspended.
    pub fn is_suspended(&self) -> bool {
        self.suspended_at_ms.is_some()
    }
}

/// What a presented API key stands for.
#[derive(Clone, Debug)]
pub enum Principal {
    /// The operator: may administer tenants, acts for no tenant.
    Admin,
    /// A tenant's key; a `read_only` key may only read.
    Tenant { tenant: Tenant, read_only: bool },
}

/// An API key as stored: never the key itself, only its digest's public id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    /// The first 16 hex digits of the key's SHA-256: names the key in lists and revocations.
    pub id: String,
    /// The tenant it acts for; `None`: an admin key.
    pub tenant_id: Option<TenantId>,
    /// Whether it may only read (`GET`).
    pub read_only: bool,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// When it was revoked, Unix milliseconds; a revoked key is refused.
    pub revoked_at_ms: Option<i64>,
}

/// A named component a tenant uploaded.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Workload {
    pub name: String,
    /// SHA-256 of the component bytes.
    #[schema(value_type = String)]
    pub digest: Digest,
    /// Component size in bytes.
    pub size_bytes: u64,
    /// Interfaces the component imports.
    pub imports: Vec<String>,
    /// Upload time, Unix milliseconds.
    pub created_at_ms: i64,
}

/// A job's input: bytes kept in the job record when small, otherwise a blob by digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputRef {
    /// Bytes kept inline (at most [`INLINE_LIMIT`] bytes).
    Inline(#[serde(with = "super::b64")] Vec<u8>),
    /// A blob in the object store under `inputs/{digest}`, of `size` bytes.
    Blob { digest: Digest, size: u64 },
}

impl InputRef {
    /// Input size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            Self::Inline(b) => b.len() as u64,
            Self::Blob { size, .. } => *size,
        }
    }
}

/// Inputs and outputs up to this many bytes live in the job record instead of the object store.
pub const INLINE_LIMIT: usize = 64 * 1024;

/// A job to insert.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub id: JobId,
    pub tenant_id: TenantId,
    pub workload: String,
    pub digest: Digest,
    /// JSON text.
    pub params: String,
    pub input: InputRef,
    /// Priority within the tenant's tier; higher starts first.
    pub priority: i32,
    /// The tier's priority at submission, the first sort key of the queue.
    pub tier_priority: i32,
    pub idempotency_key: Option<String>,
    /// Start no earlier than this, Unix milliseconds: a time in the future inserts the job
    /// `scheduled` instead of `queued`.
    pub not_before_ms: Option<i64>,
    pub retry: RetryPolicy,
    pub placement: Placement,
    /// The trace context (W3C `traceparent`) of the submission, which the job's spans continue
    /// (see [`crate::trace`]).
    pub trace_parent: Option<String>,
}

/// A job as stored.
#[derive(Clone, Debug)]
pub struct JobRecord {
    pub id: JobId,
    pub tenant_id: TenantId,
    pub workload: String,
    pub digest: Digest,
    pub params: String,
    pub input: InputRef,
    pub priority: i32,
    pub tier_priority: i32,
    pub state: JobState,
    /// Attempts started so far (0 while first queued).
    pub attempt: u32,
    /// The fencing token of the current lease; raised on every claim.
    pub lease_epoch: i64,
    pub worker_id: Option<WorkerId>,
    pub progress: Progress,
    /// Fuel units consumed over all attempts, as of the last checkpoint or the end.
    pub fuel_used: u64,
    /// Largest linear memory seen, bytes.
    pub memory_peak_bytes: u64,
    pub failure_class: Option<FailureClass>,
    pub failure_message: Option<String>,
    /// Output size in bytes (known once the job ended, or as of the last checkpoint).
    pub output_bytes: u64,
    /// Number of output parts in the object store (0 when the output is inline).
    pub output_parts: u32,
    /// Checkpoints saved so far.
    pub checkpoints: u32,
    /// The checkpoint sequence number the current attempt resumed from (0: started fresh).
    pub resumed_from_checkpoint: u32,
    pub cancel_requested: bool,
    pub idempotency_key: Option<String>,
    /// The start time of a delayed job or of a retry waiting out its backoff, Unix milliseconds.
    pub not_before_ms: Option<i64>,
    pub retry: RetryPolicy,
    /// Attempts that ended in a retryable failure since the job was submitted or re-driven;
    /// counted against `retry.max_attempts`. A lost worker or a drain does not count.
    pub failures: u32,
    /// Attempts that ended in a host error (class `host_error`) since the job was submitted or
    /// re-driven; counted against the host retry policy, never against `retry`.
    pub host_failures: u32,
    pub placement: Placement,
    /// Why the job, though queued, cannot be placed on any worker now known (for example no
    /// worker has its required labels). Cleared when the set of workers changes.
    pub waiting_reason: Option<String>,
    /// The trace context (W3C `traceparent`) of the submission.
    pub trace_parent: Option<String>,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub updated_at_ms: i64,
}

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

/// Where a job may run. Labels are the ones workers declare (`--label KEY=VALUE`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Placement {
    /// Labels a worker must have (all of them) to run the job.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub require: BTreeMap<String, String>,
    /// Labels the job would rather have: among workers with a free slot, the one matching the
    /// most of them is chosen.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub prefer: BTreeMap<String, String>,
    /// Names of the tenant's workloads: the job does not run on a worker that runs a job of one
    /// of them (anti-affinity; name the job's own workload to spread its jobs over workers).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub avoid_workloads: Vec<String>,
}

impl Placement {
    /// Whether nothing is asked.
    pub fn is_empty(&self) -> bool {
        self.require.is_empty() && self.prefer.is_empty() && self.avoid_workloads.is_empty()
    }

    /// Whether a worker with `labels` has every required label.
    pub fn admits(&self, labels: &BTreeMap<String, String>) -> bool {
        self.require.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    /// How many preferred labels a worker with `labels` has.
    pub fn preference(&self, labels: &BTreeMap<String, String>) -> usize {
        self.prefer.iter().filter(|(k, v)| labels.get(*k) == Some(*v)).count()
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
    #[serde(with = "super::b64")]
    pub state: Vec<u8>,
    /// Output bytes written before this checkpoint (kept on resume).
    pub output_bytes: u64,
    /// Output parts flushed to the object store before this checkpoint.
    pub output_parts: u32,
    /// Output bytes written after the last flushed part (at most 64 KiB), kept with the checkpoint.
    #[serde(with = "super::b64")]
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
    #[serde(with = "super::b64")]
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

/// What a tenant's jobs consumed over a time range: the metering record billing reads.
///
/// Figures are added when the store accepts a worker's report, in the hour it arrives: fuel at
/// each checkpoint and attempt end (each unit once, see `jobs.fuel_metered`), checkpoint bytes
/// per checkpoint, wall time per attempt that reported its end, outcomes and output bytes when
/// a job ends. Fuel and time an attempt spent after its last checkpoint on a worker that was
/// lost are not metered (they were never reported).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Metered {
    /// Fuel units consumed (wasmtime fuel: roughly one per WebAssembly instruction).
    pub fuel: u64,
    /// Wall time of attempts, ms.
    pub wall_ms: u64,
    /// The largest linear memory any attempt used, bytes (a high-water mark, not a sum).
    pub memory_peak_bytes: u64,
    /// Checkpoints saved.
    pub checkpoints: u64,
    /// Checkpoint state saved, bytes (the sum over every checkpoint).
    pub checkpoint_bytes: u64,
    /// Output of the jobs that ended, bytes.
    pub output_bytes: u64,
    /// Attempts that reported an end, including those suspended by a drain or retried.
    pub attempts: u64,
    /// Jobs that ended `succeeded`.
    pub succeeded: u64,
    /// Jobs that ended `failed`.
    pub failed: u64,
    /// Jobs that ended `cancelled`, whether queued or running.
    pub cancelled: u64,
    /// Jobs that ended `dead` (out of retries).
    pub dead: u64,
    /// Attempts that ended in a host error (class `host_error`): the host's fault. Their fuel and
    /// wall time are in `fuel` and `wall_ms` and again below, so that a bill can leave them out.
    pub host_errors: u64,
    /// Fuel units of the attempts that ended in a host error (part of `fuel`).
    pub host_error_fuel: u64,
    /// Wall time of the attempts that ended in a host error, ms (part of `wall_ms`).
    pub host_error_wall_ms: u64,
}

impl Metered {
    /// Adds `other` to these figures (the memory peak is the larger of the two).
    pub fn add(&mut self, other: &Metered) {
        self.fuel += other.fuel;
        self.wall_ms += other.wall_ms;
        self.memory_peak_bytes = self.memory_peak_bytes.max(other.memory_peak_bytes);
        self.checkpoints += other.checkpoints;
        self.checkpoint_bytes += other.checkpoint_bytes;
        self.output_bytes += other.output_bytes;
        self.attempts += other.attempts;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.cancelled += other.cancelled;
        self.dead += other.dead;
        self.host_errors += other.host_errors;
        self.host_error_fuel += other.host_error_fuel;
        self.host_error_wall_ms += other.host_error_wall_ms;
    }
}

/// Metered usage of one of a tenant's workloads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkloadUsage {
    /// The workload's name.
    pub workload: String,
    #[serde(flatten)]
    pub usage: Metered,
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

/// Paging of a job's log, oldest line first.
#[derive(Clone, Copy, Debug)]
pub struct LogFilter {
    /// Lines to skip.
    pub offset: u32,
    /// At most this many lines.
    pub limit: u32,
    /// Bytes of messages the lines read may hold: the page stops after the line that reaches
    /// it (so it holds at least one line). `None`: no bound but `limit`.
    pub max_bytes: Option<u64>,
}

/// Filters and paging for listing jobs.
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub workload: Option<String>,
    /// Only jobs with an id below this one (ids are time-ordered: the next page of newest-first).
    pub before: Option<JobId>,
    /// At most this many (1..=1000).
    pub limit: u32,
    /// Bytes of params and inline input the jobs read may hold: the list stops after the job
    /// that reaches it (so it holds at least one job). `None`: no bound but `limit`.
    pub max_bytes: Option<u64>,
}

/// What a tenant keeps stored, in bytes: the figures its tier's `stored_bytes` quota counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StoredBytes {
    /// Its components, each distinct one (by digest) once.
    pub components_bytes: u64,
    /// Its uploaded inputs, and the inline inputs large enough to be stored as blobs.
    pub inputs_bytes: u64,
    /// The params (JSON text) of its jobs not yet deleted by retention.
    pub params_bytes: u64,
}

impl StoredBytes {
    /// The sum, in bytes.
    pub fn total(&self) -> u64 {
        self.components_bytes.saturating_add(self.inputs_bytes).saturating_add(self.params_bytes)
    }
}

/// A change a worker reports about a job it holds a lease on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum JobUpdate {
    /// The guest is starting: `assigned` → `running`.
    Running,
    /// The guest reported progress.
    Progress(Progress),
    /// Store a checkpoint (its `seq` is assigned by the store).
    Checkpoint(Checkpoint),
    /// Append log lines.
    Logs(Vec<LogLine>),
    /// The attempt ended.
    Finish { outcome: Outcome, usage: Usage },
}

impl JobUpdate {
    /// The kind's name, for logs and spans: `running`, `progress`, `checkpoint`, `logs`, `finish`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Progress(_) => "progress",
            Self::Checkpoint(_) => "checkpoint",
            Self::Logs(_) => "logs",
            Self::Finish { .. } => "finish",
        }
    }
}

/// A [`JobUpdate`] with the job and the lease epoch (fencing token) it was made under.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FencedUpdate {
    pub job_id: JobId,
    pub epoch: i64,
    pub update: JobUpdate,
}

/// What applying a [`FencedUpdate`] did.
#[derive(Clone, Debug)]
pub enum Applied {
    /// The epoch is stale or the job already ended: nothing changed.
    Stale,
    /// Stored (progress, logs).
    Stored,
    /// Stored as checkpoint number `seq`.
    Checkpoint(u32),
    /// The job as it now stands (after `Running` or `Finish`).
    Job(Box<JobRecord>),
}
