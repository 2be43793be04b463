//! The records the state store keeps.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{Digest, JobId, TenantId, WorkerId};

pub use crate::domain::*;

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
    Inline(#[serde(with = "crate::domain::b64")] Vec<u8>),
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
