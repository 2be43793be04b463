//! Jobs: submit, read, list, output, logs, cancel.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures::TryStreamExt;
use serde::Deserialize;
use tracing::Instrument;
use utoipa::IntoParams;

use super::auth::TenantCaller;
use super::body::JsonObject;
use super::views::{BatchSubmitted, JobPage, JobView, SubmitBatch, SubmitJob};
use super::{ApiError, AppState};
use crate::coordinator::{Submission, SubmitInput};
use crate::ids::{Digest, JobId};
use crate::state::{JobFilter, JobRecord, JobState, LogLine};

/// Longest idempotency key, in characters (Unicode scalar values, as the OpenAPI `maxLength`).
const MAX_IDEMPOTENCY_KEY: usize = 255;

pub(super) fn parse_job_id(id: &str) -> Result<JobId, ApiError> {
    id.parse().map_err(|_| ApiError::not_found(format!("job {id:?}")))
}

pub(super) async fn load_job(app: &AppState, tenant: &crate::state::Tenant, id: &str) -> Result<JobRecord, ApiError> {
    let job_id = parse_job_id(id)?;
    app.state.get_job(tenant.id, job_id).await?.ok_or_else(|| ApiError::not_found(format!("job {id}")))
}

fn submission(req: SubmitJob, header_key: Option<String>) -> Result<Submission, ApiError> {
    let params = match req.params {
        None | Some(serde_json::Value::Null) => "{}".to_owned(),
        Some(v @ serde_json::Value::Object(_)) => v.to_string(),
        Some(other) => {
            return Err(ApiError::unprocessable(
                "invalid_params",
                format!("params must be a JSON object, got {}", json_kind(&other)),
            ));
        }
    };
    let given = [req.input.is_some(), req.input_base64.is_some(), req.input_digest.is_some()];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(ApiError::unprocessable(
            "invalid_input",
            "give at most one of input, input_base64 and input_digest",
        ));
    }
    let input = if let Some(text) = req.input {
        SubmitInput::Inline(text.into_bytes().into())
    } else if let Some(b64) = req.input_base64 {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|e| ApiError::unprocessable("invalid_input", format!("input_base64 is not valid base64: {e}")))?;
        SubmitInput::Inline(bytes.into())
    } else if let Some(d) = req.input_digest {
        let digest: Digest =
            d.parse().map_err(|e| ApiError::unprocessable("invalid_input", format!("input_digest: {e}")))?;
        SubmitInput::Blob(digest)
    } else {
        SubmitInput::None
    };
    let idempotency_key = req.idempotency_key.or(header_key);
    if idempotency_key.as_ref().is_some_and(|k| k.is_empty() || k.chars().count() > MAX_IDEMPOTENCY_KEY) {
        return Err(ApiError::unprocessable(
            "invalid_idempotency_key",
            format!("an idempotency key has 1 to {MAX_IDEMPOTENCY_KEY} characters"),
        ));
    }
    let not_before_ms = match (req.not_before, req.delay_ms) {
        (Some(_), Some(_)) => {
            return Err(ApiError::unprocessable("invalid_job", "give at most one of not_before and delay_ms"));
        }
        (Some(at), None) => Some(
            crate::ids::parse_rfc3339(&at)
                .map_err(|e| ApiError::unprocessable("invalid_job", format!("not_before: {e}")))?,
        ),
        (None, Some(d)) => Some(crate::ids::now_ms().saturating_add(i64::try_from(d).unwrap_or(i64::MAX))),
        (None, None) => None,
    };
    let placement = req.placement.unwrap_or_default();
    if placement.require.len() + placement.prefer.len() > 32 || placement.avoid_workloads.len() > 32 {
        return Err(ApiError::unprocessable(
            "invalid_job",
            "placement takes at most 32 labels (require and prefer together) and 32 workloads to avoid",
        ));
    }
    Ok(Submission {
        workload: req.workload,
        params,
        input,
        priority: req.priority,
        idempotency_key,
        not_before_ms,
        retry: req.retry.unwrap_or_default(),
        placement,
    })
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Submits a job. 202 for a new job; 200 with the earlier job when the idempotency key was used.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs",
    request_body = SubmitJob,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Same as `idempotency_key` in the body"),
        ("traceparent" = Option<String>, Header, description = "W3C Trace Context of the caller: the job's trace continues it"),
    ),
    responses(
        (status = 202, body = JobView, description = "Accepted"),
        (status = 200, body = JobView, description = "The job submitted earlier with this idempotency key"),
        (status = 404, body = super::ErrorBody, description = "Unknown workload or input"),
        (status = 413, body = super::ErrorBody, description = "Input larger than the tier allows"),
        (status = 422, body = super::ErrorBody, description = "Malformed params, input, priority, retry policy, start time or placement"),
        (status = 429, body = super::ErrorBody, description = "Queue quota or submission rate reached (`queue_full`, `rate_limited`; see Retry-After)"),
        (status = 403, body = super::ErrorBody, description = "An inline input would pass the stored-bytes quota"),
        (status = 503, body = super::ErrorBody, description = "The database cannot be reached (`database_unavailable`, see Retry-After); whether the job was stored is unknown: send it again with the same idempotency key"),
    ),
    security(("api_key" = [])))]
pub async fn submit_job(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    headers: HeaderMap,
    JsonObject(req): JsonObject<SubmitJob>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let header_key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let s = submission(req, header_key)?;
    let (job, created) = app.coordinator.submit(&tenant, s).instrument(submit_span(&tenant, &headers)).await?;
    let status = if created { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok((status, Json(JobView::from(&job))))
}

/// The `submit` span of a submission: the first span of its jobs' traces, a child of the caller's
/// span when the request carries a W3C `traceparent` header (see [`crate::trace`]).
fn submit_span(tenant: &crate::state::Tenant, headers: &HeaderMap) -> tracing::Span {
    let span = tracing::info_span!("submit", tenant_id = %tenant.id, trace_id = tracing::field::Empty);
    let parent = headers.get(crate::trace::TRACEPARENT).and_then(|v| v.to_str().ok());
    crate::trace::continue_from(&span, parent);
    span
}

/// Most submissions in one batch.
const MAX_BATCH: usize = 1000;

/// Submits several jobs in one request and one transaction, all or none: when one is refused,
/// none is queued and the error names its index (`jobs[3]: ...`).
#[utoipa::path(post, path = "/v1/jobs/batch", tag = "jobs",
    request_body = SubmitBatch,
    params(("traceparent" = Option<String>, Header, description = "W3C Trace Context of the caller: the jobs' traces continue it")),
    responses(
        (status = 202, body = BatchSubmitted, description = "Accepted (jobs whose idempotency key was used before are the earlier jobs)"),
        (status = 404, body = super::ErrorBody, description = "Unknown workload or input"),
        (status = 413, body = super::ErrorBody, description = "Input larger than the tier allows"),
        (status = 422, body = super::ErrorBody, description = "Malformed params, input, priority, retry policy, start time or placement; a batch of 0 or more than 1000, or over the submission burst"),
        (status = 429, body = super::ErrorBody, description = "Queue quota or submission rate reached (`queue_full`, `rate_limited`; see Retry-After)"),
        (status = 403, body = super::ErrorBody, description = "An inline input would pass the stored-bytes quota"),
        (status = 503, body = super::ErrorBody, description = "The database cannot be reached (`database_unavailable`, see Retry-After); whether the job was stored is unknown: send it again with the same idempotency key"),
    ),
    security(("api_key" = [])))]
pub async fn submit_batch(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    headers: HeaderMap,
    JsonObject(batch): JsonObject<SubmitBatch>,
) -> Result<(StatusCode, Json<BatchSubmitted>), ApiError> {
    if batch.jobs.is_empty() || batch.jobs.len() > MAX_BATCH {
        return Err(ApiError::unprocessable(
            "invalid_batch",
            format!("a batch holds 1 to {MAX_BATCH} jobs, got {}", batch.jobs.len()),
        ));
    }
    let in_batch = |i: usize, e: ApiError| ApiError { message: format!("jobs[{i}]: {}", e.message), ..e };
    let subs = batch
        .jobs
        .into_iter()
        .enumerate()
        .map(|(i, req)| submission(req, None).map_err(|e| in_batch(i, e)))
        .collect::<Result<Vec<_>, _>>()?;
    let jobs = app.coordinator.submit_many(&tenant, subs).instrument(submit_span(&tenant, &headers)).await.map_err(
        |(i, e)| match i {
            Some(i) => in_batch(i, e.into()),
            None => ApiError::from(e),
        },
    )?;
    let jobs = jobs.iter().map(|(j, _)| JobView::from(j)).collect();
    Ok((StatusCode::ACCEPTED, Json(BatchSubmitted { jobs })))
}

/// One of the tenant's jobs.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "Job id (UUID)")),
    responses((status = 200, body = JobView), (status = 404, body = super::ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_job(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(JobView::from(&load_job(&app, &tenant, &id).await?)))
}

/// Filters for listing jobs.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only jobs in this state.
    state: Option<JobState>,
    /// Only jobs of this workload.
    workload: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(format = Uuid)]
    cursor: Option<String>,
}

/// The tenant's jobs, newest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(ListQuery),
    responses((status = 200, body = JobPage), (status = 400, body = super::ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_jobs(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<JobPage>, ApiError> {
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("invalid_query", format!("limit must be 1 to 1000, got {limit}")));
    }
    let before = q
        .cursor
        .map(|c| {
            c.parse::<JobId>()
                .map_err(|_| ApiError::bad_request("invalid_query", format!("cursor {c:?} is not a job id")))
        })
        .transpose()?;
    let filter = JobFilter { state: q.state, workload: q.workload, before, limit };
    let jobs = app.state.list_jobs(tenant.id, &filter).await?;
    let next_cursor = (jobs.len() as u32 == limit).then(|| jobs.last().map(|j| j.id.to_string())).flatten();
    Ok(Json(JobPage { jobs: jobs.iter().map(JobView::from).collect(), next_cursor }))
}

/// A finished job's output bytes (also the partial output of a failed job).
#[utoipa::path(get, path = "/v1/jobs/{id}/output", tag = "jobs",
    params(("id" = String, Path)),
    responses(
        (status = 200, content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, body = super::ErrorBody),
        (status = 409, body = super::ErrorBody, description = "The job has not ended yet"),
    ),
    security(("api_key" = [])))]
pub async fn get_output(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = load_job(&app, &tenant, &id).await?;
    if !job.state.is_terminal() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_finished",
            format!("job {id} is {}; its output is available once it ends", job.state.as_str()),
        ));
    }
    let headers = [
        (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
        (header::CONTENT_LENGTH, job.output_bytes.to_string()),
    ];
    if job.output_parts == 0 {
        let bytes = app.state.output_inline(tenant.id, job.id).await?.unwrap_or_default();
        return Ok((headers, bytes).into_response());
    }
    let stream = app.blobs.output(job.id, job.output_parts).map_err(std::io::Error::other);
    Ok((headers, Body::from_stream(stream)).into_response())
}

/// Paging of logs.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// At most this many lines, 1 to 10000 (default 1000).
    #[param(minimum = 1, maximum = 10_000)]
    limit: Option<u32>,
}

/// A job's log: `log` calls and captured stdout/stderr, oldest first.
#[utoipa::path(get, path = "/v1/jobs/{id}/logs", tag = "jobs",
    params(("id" = String, Path), LogQuery),
    responses((status = 200, body = Vec<LogLine>), (status = 404, body = super::ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_logs(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path(id): Path<String>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<LogLine>>, ApiError> {
    let Query(q) = query?;
    let job = load_job(&app, &tenant, &id).await?;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_request("invalid_query", format!("limit must be 1 to 10000, got {limit}")));
    }
    Ok(Json(app.state.job_logs(tenant.id, job.id, limit).await?))
}

/// Re-drives a dead job (one that failed retryably on every attempt its retry policy allows): it
/// is queued again with its failures reset, and resumes from its last checkpoint. A dead job
/// keeps no component: once its component was deleted (no workload named it and no job that had
/// not ended needed it, for the component grace period) it cannot be re-driven.
#[utoipa::path(post, path = "/v1/jobs/{id}/redrive", tag = "jobs",
    params(("id" = String, Path)),
    responses(
        (status = 202, body = JobView, description = "Queued again"),
        (status = 404, body = super::ErrorBody),
        (status = 409, body = super::ErrorBody, description = "The job is not dead, or its component was deleted"),
    ),
    security(("api_key" = [])))]
pub async fn redrive_job(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let job = load_job(&app, &tenant, &id).await?;
    if job.state != JobState::Dead {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_dead",
            format!("job {id} is {}; only a dead job can be re-driven", job.state.as_str()),
        ));
    }
    let job =
        app.coordinator.redrive(&tenant, job.id).await?.ok_or_else(|| ApiError::not_found(format!("job {id}")))?;
    if job.state == JobState::Dead {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "component_deleted",
            format!(
                "job {id} cannot be re-driven: its component was deleted once no workload or job used it; \
                 upload the workload again and submit a new job"
            ),
        ));
    }
    Ok((StatusCode::ACCEPTED, Json(JobView::from(&job))))
}

/// Cancels a job: a queued job ends `cancelled` at once; a running one is asked to stop and is
/// stopped by force after the grace period. Cancelling an ended job changes nothing.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path)),
    responses((status = 202, body = JobView), (status = 404, body = super::ErrorBody)),
    security(("api_key" = [])))]
pub async fn cancel_job(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let job_id = parse_job_id(&id)?;
    let job = app.coordinator.cancel(&tenant, job_id).await?.ok_or_else(|| ApiError::not_found(format!("job {id}")))?;
    Ok((StatusCode::ACCEPTED, Json(JobView::from(&job))))
}
