//! The JSON shapes of the API.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::ids::rfc3339;
use crate::state::{ApiKey, FailureClass, JobRecord, JobState, Placement, Progress, RetryPolicy, Tenant, Workload};

/// A job as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// UUID.
    pub id: String,
    pub workload: String,
    /// SHA-256 of the component the job runs.
    pub digest: String,
    pub state: JobState,
    /// Attempts started so far.
    pub attempt: u32,
    /// The worker that holds the job's lease, or ran its last attempt.
    pub worker: Option<String>,
    pub priority: i32,
    pub progress: Progress,
    /// Fuel units consumed over all attempts.
    pub fuel_used: u64,
    /// Largest linear memory seen, bytes.
    pub memory_peak_bytes: u64,
    /// Checkpoints stored so far.
    pub checkpoints: u32,
    /// The checkpoint the current attempt resumed from (0: it started from the beginning).
    pub resumed_from_checkpoint: u32,
    pub failure: Option<FailureView>,
    pub input_bytes: u64,
    /// Output size in bytes (final once the job ended).
    pub output_bytes: u64,
    /// The params as submitted (as stored: compact JSON).
    #[schema(value_type = Object)]
    pub params: Box<RawValue>,
    pub cancel_requested: bool,
    pub idempotency_key: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339; when the first attempt started.
    pub started_at: Option<String>,
    /// RFC 3339.
    pub finished_at: Option<String>,
    /// RFC 3339; the start time of a delayed job, or when a retry may start.
    pub not_before: Option<String>,
    pub retry: RetryPolicy,
    /// Attempts that failed retryably since the job was submitted or re-driven.
    pub failures: u32,
    /// Attempts that ended in a host error (class `host_error`, the platform's fault) since the
    /// job was submitted or re-driven; retried under the host retry policy, not `retry`.
    #[serde(default)]
    pub host_failures: u32,
    pub placement: Placement,
    /// Why the queued job cannot be placed on any worker now known (e.g. no worker has its
    /// required labels); it starts once one joins.
    pub waiting_reason: Option<String>,
    /// The job's trace id (W3C Trace Context, 32 hex digits): the trace of the API call that
    /// submitted it, continued from the request's `traceparent` header when it had one, which
    /// every assignment, attempt and report of the job joins.
    #[serde(default)]
    pub trace_id: Option<String>,
}

/// Why a job failed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FailureView {
    pub class: FailureClass,
    pub message: String,
}

impl From<&JobRecord> for JobView {
    fn from(j: &JobRecord) -> Self {
        Self {
            id: j.id.to_string(),
            workload: j.workload.clone(),
            digest: j.digest.to_hex(),
            state: j.state,
            attempt: j.attempt,
            worker: j.worker_id.as_ref().map(|w| w.0.clone()),
            priority: j.priority,
            progress: j.progress.clone(),
            fuel_used: j.fuel_used,
            memory_peak_bytes: j.memory_peak_bytes,
            checkpoints: j.checkpoints,
            resumed_from_checkpoint: j.resumed_from_checkpoint,
            failure: j
                .failure_class
                .map(|class| FailureView { class, message: j.failure_message.clone().unwrap_or_default() }),
            input_bytes: j.input.size(),
            output_bytes: j.output_bytes,
            // Copied as text, never parsed into a tree: a view costs what its params weigh.
            params: RawValue::from_string(j.params.clone()).unwrap_or_else(|_| RawValue::NULL.to_owned()),
            cancel_requested: j.cancel_requested,
            idempotency_key: j.idempotency_key.clone(),
            created_at: rfc3339(j.created_at_ms),
            started_at: j.started_at_ms.map(rfc3339),
            finished_at: j.finished_at_ms.map(rfc3339),
            not_before: j.not_before_ms.map(rfc3339),
            retry: j.retry,
            failures: j.failures,
            host_failures: j.host_failures,
            placement: j.placement.clone(),
            waiting_reason: j.waiting_reason.clone(),
            trace_id: j.trace_parent.as_deref().and_then(crate::trace::trace_id),
        }
    }
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobPage {
    pub jobs: Vec<JobView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A job submission.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitJob {
    /// Name of an uploaded workload.
    pub workload: String,
    /// Parameters handed to the workload: a JSON object (default `{}`), at most the tier's
    /// `params_bytes` of JSON text (413 `params_too_large`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub params: Option<Box<RawValue>>,
    /// Input as UTF-8 text. At most one of `input`, `input_base64`, `input_digest`.
    #[serde(default)]
    pub input: Option<String>,
    /// Input as base64 (standard alphabet, padded).
    #[serde(default)]
    pub input_base64: Option<String>,
    /// SHA-256 of an input uploaded with `POST /v1/inputs`.
    #[serde(default)]
    pub input_digest: Option<String>,
    /// Priority within the tenant's tier, -100..=100 (default 0); higher starts first.
    #[serde(default)]
    #[schema(minimum = -100, maximum = 100)]
    pub priority: i32,
    /// Submitting twice with the same key returns the first job instead of a new one. The
    /// `Idempotency-Key` header does the same.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255)]
    pub idempotency_key: Option<String>,
    /// Start no earlier than this RFC 3339 UTC time (`2026-11-21T10:00:00Z`), at most 366 days
    /// ahead: the job stays `scheduled` until then. Not with `delay_ms`.
    #[serde(default)]
    pub not_before: Option<String>,
    /// Start no earlier than this many ms after submission. Not with `not_before`.
    #[serde(default)]
    #[schema(maximum = 31_622_400_000_u64)]
    pub delay_ms: Option<u64>,
    /// Retries after failures the workload marks retryable (default: 3 attempts, backoff from
    /// 1,000 ms doubling up to 60,000 ms, with jitter).
    #[serde(default, deserialize_with = "super::body::object::option")]
    pub retry: Option<RetryPolicy>,
    /// Worker labels to require or prefer, and workloads to avoid sharing a worker with.
    #[serde(default, deserialize_with = "super::body::object::option")]
    pub placement: Option<Placement>,
}

/// Several submissions at once, all or none.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitBatch {
    /// 1 to 1000 submissions.
    #[schema(min_items = 1, max_items = 1000)]
    #[serde(deserialize_with = "super::body::object::vec")]
    pub jobs: Vec<SubmitJob>,
}

/// The jobs of a batch submission, in the order submitted.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchSubmitted {
    pub jobs: Vec<JobView>,
}

/// A workload as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkloadView {
    pub name: String,
    /// SHA-256 of the component.
    pub digest: String,
    pub size_bytes: u64,
    /// Interfaces the component imports.
    pub imports: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
}

impl From<&Workload> for WorkloadView {
    fn from(w: &Workload) -> Self {
        Self {
            name: w.name.clone(),
            digest: w.digest.to_hex(),
            size_bytes: w.size_bytes,
            imports: w.imports.clone(),
            created_at: rfc3339(w.created_at_ms),
        }
    }
}

/// An uploaded input blob.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InputView {
    /// SHA-256; pass as `input_digest` when submitting.
    pub digest: String,
    pub size_bytes: u64,
}

/// A tenant to create.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// 1 to 64 characters of a-z, 0-9, '-', '_', '.'.
    pub name: String,
    /// A tier name (see `GET /v1/tiers`).
    pub tier: String,
}

/// A tenant.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantView {
    pub id: String,
    pub name: String,
    pub tier: String,
    /// RFC 3339.
    pub created_at: String,
    /// Whether it is suspended: its keys are refused and its queued jobs do not start.
    pub suspended: bool,
    /// When it was suspended, RFC 3339.
    pub suspended_at: Option<String>,
}

impl From<&Tenant> for TenantView {
    fn from(t: &Tenant) -> Self {
        Self {
            id: t.id.to_string(),
            name: t.name.clone(),
            tier: t.tier.clone(),
            created_at: rfc3339(t.created_at_ms),
            suspended: t.is_suspended(),
            suspended_at: t.suspended_at_ms.map(rfc3339),
        }
    }
}

/// A created tenant and its first API key.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedTenant {
    pub tenant: TenantView,
    /// Shown once; only its SHA-256 is stored.
    pub api_key: String,
}

/// A tenant's new tier.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetTier {
    /// A tier name (see `GET /v1/tiers`).
    pub tier: String,
}

/// An API key to create for a tenant.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// A read-only key may only read (`GET`); default `false`.
    #[serde(default)]
    pub read_only: bool,
}

/// An API key as listed: never the key itself.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    /// The first 16 hex digits of the key's SHA-256; names the key to revoke.
    pub id: String,
    pub read_only: bool,
    /// RFC 3339.
    pub created_at: String,
    /// When it was revoked, RFC 3339; a revoked key is refused.
    pub revoked_at: Option<String>,
}

impl From<&ApiKey> for KeyView {
    fn from(k: &ApiKey) -> Self {
        Self {
            id: k.id.clone(),
            read_only: k.read_only,
            created_at: rfc3339(k.created_at_ms),
            revoked_at: k.revoked_at_ms.map(rfc3339),
        }
    }
}

/// A created API key.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    pub key: KeyView,
    /// Shown once; only its SHA-256 is stored.
    pub api_key: String,
}

/// A coordinator's view of the cluster (`GET /v1/cluster`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ClusterView {
    /// The answering coordinator's id.
    pub coordinator: String,
    /// Whether it leads (schedules, applies reports, detects lost workers).
    pub leader: bool,
    /// The workers the leader knows, by id (empty on a follower).
    pub workers: Vec<WorkerView>,
}

/// A worker as the leader knows it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkerView {
    pub id: String,
    /// Job slots.
    pub slots: u32,
    /// Jobs it holds leases on.
    pub running: u32,
    /// Placement labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Its `niyanta` version.
    pub version: String,
    /// Milliseconds since its last heartbeat.
    pub last_seen_ms: u64,
}

impl From<crate::coordinator::KnownWorker> for WorkerView {
    fn from(w: crate::coordinator::KnownWorker) -> Self {
        Self {
            id: w.info.id.0,
            slots: w.info.slots,
            running: w.running,
            labels: w.info.labels,
            version: w.info.version,
            last_seen_ms: w.last_seen.as_millis() as u64,
        }
    }
}
