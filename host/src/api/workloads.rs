//! Workloads (components) and input blobs.

use axum::Json;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::TenantCaller;
use super::limits::{BodyCeiling, content_length, linger, read_body};
use super::page::{PAGE_BYTES, Page};
use super::views::{InputView, WorkloadView};
use super::{ApiError, AppState};
use crate::blobs::StreamError;
use crate::coordinator::UploadError;
use crate::ids::{Digest, check_workload_name, now_ms};
use crate::state::Workload;

/// Uploads a component under a name (replacing an earlier upload under that name).
#[utoipa::path(put, path = "/v1/workloads/{name}", tag = "workloads",
    params(("name" = String, Path, description = "Workload name: 1 to 64 of a-z, 0-9, '-', '_', '.'")),
    request_body(content(
        (Vec<u8> = "application/wasm"),
        (Vec<u8> = "application/octet-stream"),
    ), description = "The component bytes (the content type is not checked)"),
    responses(
        (status = 201, body = WorkloadView, description = "Stored"),
        (status = 400, body = super::ErrorBody, description = "Not WebAssembly, or a bad name"),
        (status = 403, body = super::ErrorBody, description = "The tenant's stored bytes would pass the tier's quota"),
        (status = 413, body = super::ErrorBody, description = "Larger than the tier allows (`component_too_large`): refused from `Content-Length` before the body is read, or as soon as a chunked body passes the limit"),
        (status = 422, body = super::ErrorBody, description = "A core module, invalid, a disallowed import, or not the workload world"),
        (status = 503, body = super::ErrorBody, description = "The same bytes are being deleted (unused); retry after the Retry-After delay"),
    ),
    security(("api_key" = [])))]
pub async fn put_workload(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Extension(ceiling): Extension<BodyCeiling>,
    Path(name): Path<String>,
    body: Request,
) -> Result<(StatusCode, Json<WorkloadView>), ApiError> {
    check_workload_name(&name).map_err(|m| ApiError::bad_request("invalid_name", m))?;
    let tier = app.coordinator.tier(&tenant);
    // Held whole (it is validated and compiled), so read only up to the tier's size: refused
    // from Content-Length before a byte is read, or as soon as a chunked body passes it.
    let limit = tier.component_bytes.min(ceiling.0);
    let why = if limit < tier.component_bytes { "the server's body limit" } else { "the tier's component_bytes" };
    let body = read_body(body, limit).await.map_err(|e| e.into_api("component_too_large", "the component", why))?;
    let digest = Digest::of(&body);
    if !app.state.has_component(tenant.id, digest).await? {
        app.coordinator.check_stored_bytes(tenant.id, &tier, body.len() as u64).await?;
    }
    let info = app
        .runtime
        .check_upload(&tenant.id.to_string(), digest, body.clone(), tier.compile_limits(), tier.memory_bytes)
        .await?;
    let w = Workload { name, digest, size_bytes: body.len() as u64, imports: info.imports, created_at_ms: now_ms() };
    app.coordinator.store_workload(tenant.id, &w, body).await.map_err(upload_error)?;
    Ok((StatusCode::CREATED, Json(WorkloadView::from(&w))))
}

/// 503 `component_busy` (with `Retry-After`) while the same bytes are being deleted.
fn upload_error(e: UploadError) -> ApiError {
    match e {
        UploadError::Collecting(_) => {
            let mut err = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "component_busy", e.to_string());
            err.retry_after = Some(1);
            err
        }
        UploadError::State(e) => e.into(),
        UploadError::Blob(e) => ApiError::internal(e),
    }
}

/// Paging of workloads.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WorkloadQuery {
    /// Page size, 1 to 1000 (default 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// The `next-cursor` header of the previous page (the last name it held).
    cursor: Option<String>,
}

/// The tenant's workloads, by name: at most `limit`, and no more than 4 MiB of JSON. When more
/// may follow, the `next-cursor` header is the `cursor` of the next page.
#[utoipa::path(get, path = "/v1/workloads", tag = "workloads", params(WorkloadQuery),
    responses(
        (status = 200, body = Vec<WorkloadView>, headers(("next-cursor" = String, description = "The `cursor` of the next page; absent on the last page"))),
        (status = 400, body = super::ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn list_workloads(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    query: Result<Query<WorkloadQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("invalid_query", format!("limit must be 1 to 1000, got {limit}")));
    }
    let all = app.state.list_workloads(tenant.id, q.cursor.as_deref(), limit).await?;
    let mut page = Page::new(PAGE_BYTES);
    for w in &all {
        if !page.push(&WorkloadView::from(w))? {
            break;
        }
    }
    let more = all.len() as u32 == limit || page.is_full();
    let next = all.get(page.items().wrapping_sub(1)).filter(|_| more).map(|w| w.name.clone());
    Ok(page.into_response(next))
}

/// One of the tenant's workloads.
#[utoipa::path(get, path = "/v1/workloads/{name}", tag = "workloads",
    params(("name" = String, Path)),
    responses((status = 200, body = WorkloadView), (status = 404, body = super::ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_workload(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path(name): Path<String>,
) -> Result<Json<WorkloadView>, ApiError> {
    let w = app
        .state
        .get_workload(tenant.id, &name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("workload {name:?}")))?;
    Ok(Json(WorkloadView::from(&w)))
}

/// Uploads an input blob (raw bytes) for later jobs.
#[utoipa::path(post, path = "/v1/inputs", tag = "jobs",
    request_body(content = Option<Vec<u8>>, content_type = "application/octet-stream",
        description = "The input bytes; no body stores the empty input"),
    responses(
        (status = 201, body = InputView),
        (status = 403, body = super::ErrorBody, description = "The tenant's stored bytes would pass the tier's quota"),
        (status = 413, body = super::ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn put_input(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    body: Request,
) -> Result<(StatusCode, Json<InputView>), ApiError> {
    let tier = app.coordinator.tier(&tenant);
    // The stored-bytes quota left caps the stream as well as the tier's input size.
    let left = match tier.stored_bytes {
        Some(quota) => Some((quota, app.state.stored_bytes(tenant.id).await?.total())),
        None => None,
    };
    let room = left.map_or(u64::MAX, |(quota, stored)| quota.saturating_sub(stored));
    let limit = tier.input_bytes.min(room);
    // Refused before a byte is read when the Content-Length says it is too large; otherwise
    // streamed to the object store while hashed: an input never sits whole in host memory.
    let (parts, body) = body.into_parts();
    let streamed = match content_length(&parts.headers).filter(|n| *n > limit) {
        Some(_) => {
            linger(&parts.headers, body.into_data_stream());
            Err(StreamError::TooLarge { limit })
        }
        None => app.blobs.put_input_stream(body.into_data_stream(), limit).await,
    };
    let (digest, size) = streamed.map_err(|e| match e {
        StreamError::TooLarge { .. } if room < tier.input_bytes => {
            let (quota, stored) = left.unwrap_or_default();
            ApiError::new(
                StatusCode::FORBIDDEN,
                "stored_bytes_quota",
                format!(
                    "the tenant stores {stored} bytes; the input would pass the tier's stored_bytes quota of {quota} bytes"
                ),
            )
        }
        StreamError::TooLarge { limit } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "input_too_large",
            format!("the input is larger than the {limit} bytes the tier allows"),
        ),
        StreamError::Body(m) => ApiError::bad_request("invalid_body", m),
        StreamError::Blob(e) => ApiError::internal(e),
    })?;
    app.state.put_input(tenant.id, digest, size).await?;
    Ok((StatusCode::CREATED, Json(InputView { digest: digest.to_hex(), size_bytes: size })))
}
