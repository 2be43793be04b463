//! Jobs: submit, read, list, output, logs, cancel.

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use serde::Deserialize;
use tracing::Instrument;
use utoipa::IntoParams;

use super::auth::TenantCaller;
use super::body::JsonObject;
use super::limits::{BodyCeiling, MAX_BATCH};
use super::page::{PAGE_BYTES, Page};
use super::submission::{read_json, submission};
use super::views::{BatchSubmitted, JobPage, JobView, SubmitBatch, SubmitJob};
use super::{ApiError, AppState};
use crate::ids::JobId;
use crate::state::{InputRef, JobFilter, JobRecord, JobState, LogFilter, LogLine};

pub(super) fn parse_job_id(id: &str) -> Result<JobId, ApiError> {
    id.parse().map_err(|_| ApiError::not_found(format!("job {id:?}")))
}

pub(super) async fn load_job(app: &AppState, tenant: &crate::state::Tenant, id: &str) -> Result<JobRecord, ApiError> {
    let job_id = parse_job_id(id)?;
    app.state.get_job(tenant.id, job_id).await?.ok_or_else(|| ApiError::not_found(format!("job {id}")))
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
        (status = 413, body = super::ErrorBody, description = "Input, params or body larger than the tier allows (`input_too_large`, `params_too_large`, `body_too_large`)"),
        (status = 422, body = super::ErrorBody, description = "Malformed params, input, priority, retry policy, start time or placement"),
        (status = 429, body = super::ErrorBody, description = "Queue quota or submission rate reached (`queue_full`, `rate_limited`; see Retry-After)"),
        (status = 403, body = super::ErrorBody, description = "An inline input or the params would pass the stored-bytes quota"),
        (status = 503, body = super::ErrorBody, description = "The database cannot be reached (`database_unavailable`, see Retry-After); whether the job was stored is unknown: send it again with the same idempotency key"),
    ),
    security(("api_key" = [])))]
pub async fn submit_job(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Extension(ceiling): Extension<BodyCeiling>,
    headers: HeaderMap,
    body: Request,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let tier = app.coordinator.tier(&tenant);
    let JsonObject(req) = read_json::<SubmitJob>(body, &tier, ceiling).await?;
    let header_key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let s = submission(req, header_key, tier.params_bytes)?;
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

/// Submits several jobs in one request and one transaction, all or none: when one is refused,
/// none is queued and the error names its index (`jobs[3]: ...`).
#[utoipa::path(post, path = "/v1/jobs/batch", tag = "jobs",
    request_body = SubmitBatch,
    params(("traceparent" = Option<String>, Header, description = "W3C Trace Context of the caller: the jobs' traces continue it")),
    responses(
        (status = 202, body = BatchSubmitted, description = "Accepted (jobs whose idempotency key was used before are the earlier jobs)"),
        (status = 404, body = super::ErrorBody, description = "Unknown workload or input"),
        (status = 413, body = super::ErrorBody, description = "Input, params or body larger than the tier allows (`input_too_large`, `params_too_large`, `body_too_large`)"),
        (status = 422, body = super::ErrorBody, description = "Malformed params, input, priority, retry policy, start time or placement; a batch of 0 or more than 1000, or over the submission burst"),
        (status = 429, body = super::ErrorBody, description = "Queue quota or submission rate reached (`queue_full`, `rate_limited`; see Retry-After)"),
        (status = 403, body = super::ErrorBody, description = "An inline input or the params would pass the stored-bytes quota"),
        (status = 503, body = super::ErrorBody, description = "The database cannot be reached (`database_unavailable`, see Retry-After); whether the job was stored is unknown: send it again with the same idempotency key"),
    ),
    security(("api_key" = [])))]
pub async fn submit_batch(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Extension(ceiling): Extension<BodyCeiling>,
    headers: HeaderMap,
    body: Request,
) -> Result<(StatusCode, Json<BatchSubmitted>), ApiError> {
    let tier = app.coordinator.tier(&tenant);
    let JsonObject(batch) = read_json::<SubmitBatch>(body, &tier, ceiling).await?;
    if batch.jobs.is_empty() || batch.jobs.len() > MAX_BATCH as usize {
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
        .map(|(i, req)| submission(req, None, tier.params_bytes).map_err(|e| in_batch(i, e)))
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

/// The tenant's jobs, newest first: at most `limit`, and no more than 4 MiB of JSON (a page
/// stops before a job that would take it past that, and gives `next_cursor` for the rest).
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(ListQuery),
    responses((status = 200, body = JobPage), (status = 400, body = super::ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_jobs(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
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
    // The rows read are bounded by what they hold (params, inline input) as well as by count.
    let filter = JobFilter { state: q.state, workload: q.workload, before, limit, max_bytes: Some(PAGE_BYTES as u64) };
    let jobs = app.state.list_jobs(tenant.id, &filter).await?;
    let held: u64 = jobs.iter().map(held_bytes).sum();
    // `{"jobs":[…],"next_cursor":"<uuid>"}`: the array's budget leaves room for the rest.
    let mut page = Page::new(PAGE_BYTES - 64);
    for j in &jobs {
        if !page.push(&JobView::from(j))? {
            break;
        }
    }
    let more = jobs.len() as u32 == limit || held >= PAGE_BYTES as u64 || page.is_full();
    let next_cursor = jobs.get(page.items().wrapping_sub(1)).filter(|_| more).map(|j| j.id.to_string());
    let mut json = b"{\"jobs\":".to_vec();
    json.extend(page.into_json());
    json.extend(b",\"next_cursor\":");
    serde_json::to_writer(&mut json, &next_cursor).map_err(ApiError::internal)?;
    json.push(b'}');
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

/// Bytes a job's row holds that its size depends on: its params and inline input.
fn held_bytes(j: &JobRecord) -> u64 {
    let inline = match &j.input {
        InputRef::Inline(b) => b.len(),
        InputRef::Blob { .. } => 0,
    };
    (j.params.len() + inline) as u64
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
    /// The `next-cursor` header of the previous page (the lines read so far).
    #[param(format = Int64, minimum = 0, maximum = 4_294_967_295_u64)]
    cursor: Option<u32>,
}

/// A job's log: `log` calls and captured stdout/stderr, oldest first: at most `limit` lines and
/// no more than 4 MiB of JSON. When lines may follow, the `next-cursor` header is the `cursor`
/// of the next page.
#[utoipa::path(get, path = "/v1/jobs/{id}/logs", tag = "jobs",
    params(("id" = String, Path), LogQuery),
    responses(
        (status = 200, body = Vec<LogLine>, headers(("next-cursor" = u32, description = "The `cursor` of the next page; absent on the last page"))),
        (status = 404, body = super::ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn get_logs(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path(id): Path<String>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let job = load_job(&app, &tenant, &id).await?;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_request("invalid_query", format!("limit must be 1 to 10000, got {limit}")));
    }
    let offset = q.cursor.unwrap_or(0);
    let filter = LogFilter { offset, limit, max_bytes: Some(PAGE_BYTES as u64) };
    let lines: Vec<LogLine> = app.state.job_logs(tenant.id, job.id, filter).await?;
    let held: u64 = lines.iter().map(|l| l.message.len() as u64).sum();
    let mut page = Page::new(PAGE_BYTES);
    for line in &lines {
        if !page.push(line)? {
            break;
        }
    }
    let more = lines.len() as u32 == limit || held >= PAGE_BYTES as u64 || page.is_full();
    let next = more.then(|| (u64::from(offset) + page.items() as u64).to_string());
    Ok(page.into_response(next))
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
