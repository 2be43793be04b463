//! The records the state store keeps.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{Digest, JobId, TenantId, WorkerId};

/// Where a job is in its life. See `docs/architecture.md` for the transitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
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
}

impl JobState {
    /// The text form stored in the database and used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Assigned => "assigned",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses the text form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Self::Queued,
            "assigned" => Self::Assigned,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }

    /// Whether the job has ended for good.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// Why a job failed. Each class comes with a message the tenant can act on.
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
}

/// What a presented API key stands for.
#[derive(Clone, Debug)]
pub enum Principal {
    /// The operator: may administer tenants, acts for no tenant.
    Admin,
    /// A tenant's key.
    Tenant(Tenant),
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
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub updated_at_ms: i64,
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

/// Filters and paging for listing jobs.
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub workload: Option<String>,
    /// Only jobs with an id below this one (ids are time-ordered: the next page of newest-first).
    pub before: Option<JobId>,
    /// At most this many (1..=1000).
    pub limit: u32,
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
