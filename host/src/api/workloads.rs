//! Workloads (components) and input blobs.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::auth::TenantCaller;
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
        (status = 413, body = super::ErrorBody, description = "Larger than the tier allows"),
        (status = 422, body = super::ErrorBody, description = "A core module, invalid, a disallowed import, or not the workload world"),
        (status = 503, body = super::ErrorBody, description = "The same bytes are being deleted (unused); retry after the Retry-After delay"),
    ),
    security(("api_key" = [])))]
pub async fn put_workload(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path(name): Path<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<WorkloadView>), ApiError> {
    check_workload_name(&name).map_err(|m| ApiError::bad_request("invalid_name", m))?;
    let body = body?;
    let tier = app.coordinator.tier(&tenant);
    if body.len() as u64 > tier.component_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "component_too_large",
            format!("the component is {} bytes; the tier allows {} bytes", body.len(), tier.component_bytes),
        ));
    }
    let digest = Digest::of(&body);
    if !app.state.list_workloads(tenant.id).await?.iter().any(|w| w.digest == digest) {
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

/// The tenant's workloads.
#[utoipa::path(get, path = "/v1/workloads", tag = "workloads",
    responses((status = 200, body = Vec<WorkloadView>)), security(("api_key" = [])))]
pub async fn list_workloads(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
) -> Result<Json<Vec<WorkloadView>>, ApiError> {
    let all = app.state.list_workloads(tenant.id).await?;
    Ok(Json(all.iter().map(WorkloadView::from).collect()))
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
    body: axum::body::Body,
) -> Result<(StatusCode, Json<InputView>), ApiError> {
    let tier = app.coordinator.tier(&tenant);
    // The stored-bytes quota left caps the stream as well as the tier's input size.
    let left = match tier.stored_bytes {
        Some(quota) => Some((quota, app.state.stored_bytes(tenant.id).await?)),
        None => None,
    };
    let room = left.map_or(u64::MAX, |(quota, stored)| quota.saturating_sub(stored));
    let limit = tier.input_bytes.min(room);
    // Streamed to the object store while hashed: an input never sits whole in host memory.
    let (digest, size) = app.blobs.put_input_stream(body.into_data_stream(), limit).await.map_err(|e| match e {
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
