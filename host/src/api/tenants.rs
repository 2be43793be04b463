//! Operator endpoints: tenants (create, list, suspend, resume, change tier) and the caller's own
//! tenant. Tenants are named by their unique name in paths.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::auth::{AdminCaller, TenantCaller, generate_key, key_digest};
use super::body::JsonObject;
use super::views::{CreateTenant, CreatedTenant, SetTier, TenantView};
use super::{ApiError, AppState};
use crate::ids::check_workload_name;
use crate::state::Tenant;

/// Creates a tenant and its first API key (admin only). The key is shown once.
#[utoipa::path(post, path = "/v1/tenants", tag = "admin",
    request_body = CreateTenant,
    responses(
        (status = 201, body = CreatedTenant),
        (status = 409, body = super::ErrorBody, description = "The name is taken"),
        (status = 422, body = super::ErrorBody, description = "Bad name or unknown tier"),
    ),
    security(("api_key" = [])))]
pub async fn create_tenant(
    State(app): State<AppState>,
    _admin: AdminCaller,
    JsonObject(req): JsonObject<CreateTenant>,
) -> Result<(StatusCode, Json<CreatedTenant>), ApiError> {
    check_workload_name(&req.name).map_err(|_| {
        ApiError::unprocessable(
            "invalid_name",
            format!("tenant name {:?} is invalid: use 1 to 64 characters of a-z, 0-9, '-', '_' and '.'", req.name),
        )
    })?;
    known_tier(&app, &req.tier)?;
    let tenant = app.state.create_tenant(&req.name, &req.tier).await?;
    let key = generate_key();
    app.state.add_api_key(key_digest(&key), Some(tenant.id), false).await?;
    Ok((StatusCode::CREATED, Json(CreatedTenant { tenant: TenantView::from(&tenant), api_key: key })))
}

/// All tenants (admin only).
#[utoipa::path(get, path = "/v1/tenants", tag = "admin",
    responses((status = 200, body = Vec<TenantView>)), security(("api_key" = [])))]
pub async fn list_tenants(State(app): State<AppState>, _admin: AdminCaller) -> Result<Json<Vec<TenantView>>, ApiError> {
    Ok(Json(app.state.list_tenants().await?.iter().map(TenantView::from).collect()))
}

/// The caller's own tenant.
#[utoipa::path(get, path = "/v1/tenant", tag = "admin",
    responses((status = 200, body = TenantView)), security(("api_key" = [])))]
pub async fn whoami(TenantCaller(tenant): TenantCaller) -> Json<TenantView> {
    Json(TenantView::from(&tenant))
}

/// One tenant (admin only).
#[utoipa::path(get, path = "/v1/tenants/{name}", tag = "admin",
    params(("name" = String, Path, description = "Tenant name")),
    responses((status = 200, body = TenantView), (status = 404, body = super::ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_tenant(
    State(app): State<AppState>,
    _admin: AdminCaller,
    Path(name): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    Ok(Json(TenantView::from(&named(&app, &name).await?)))
}

/// Suspends a tenant (admin only): its keys are refused (403 `tenant_suspended`) and its queued
/// jobs do not start; running jobs run on. Suspending a suspended tenant changes nothing.
#[utoipa::path(post, path = "/v1/tenants/{name}/suspend", tag = "admin",
    params(("name" = String, Path, description = "Tenant name")),
    responses((status = 200, body = TenantView), (status = 404, body = super::ErrorBody)),
    security(("api_key" = [])))]
pub async fn suspend_tenant(
    State(app): State<AppState>,
    _admin: AdminCaller,
    Path(name): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    set_suspended(&app, &name, true).await
}

/// Resumes a suspended tenant (admin only): its keys work again and its queued jobs start.
#[utoipa::path(post, path = "/v1/tenants/{name}/resume", tag = "admin",
    params(("name" = String, Path, description = "Tenant name")),
    responses((status = 200, body = TenantView), (status = 404, body = super::ErrorBody)),
    security(("api_key" = [])))]
pub async fn resume_tenant(
    State(app): State<AppState>,
    _admin: AdminCaller,
    Path(name): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    set_suspended(&app, &name, false).await
}

async fn set_suspended(app: &AppState, name: &str, suspended: bool) -> Result<Json<TenantView>, ApiError> {
    let tenant = named(app, name).await?;
    let tenant = app.coordinator.set_suspended(tenant.id, suspended).await?.ok_or_else(|| gone(name))?;
    tracing::info!(tenant_id = %tenant.id, tenant = %tenant.name, suspended, "tenant suspension changed");
    Ok(Json(TenantView::from(&tenant)))
}

/// Moves a tenant to another tier (admin only). Its waiting jobs take the new tier's priority
/// and later jobs its limits; running jobs keep the limits they started under.
#[utoipa::path(put, path = "/v1/tenants/{name}/tier", tag = "admin",
    params(("name" = String, Path, description = "Tenant name")),
    request_body = SetTier,
    responses(
        (status = 200, body = TenantView),
        (status = 404, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody, description = "Unknown tier"),
    ),
    security(("api_key" = [])))]
pub async fn set_tier(
    State(app): State<AppState>,
    _admin: AdminCaller,
    Path(name): Path<String>,
    JsonObject(req): JsonObject<SetTier>,
) -> Result<Json<TenantView>, ApiError> {
    known_tier(&app, &req.tier)?;
    let tenant = named(&app, &name).await?;
    let tenant = app.coordinator.set_tenant_tier(tenant.id, &req.tier).await?.ok_or_else(|| gone(&name))?;
    tracing::info!(tenant_id = %tenant.id, tenant = %tenant.name, tier = %tenant.tier, "tenant tier changed");
    Ok(Json(TenantView::from(&tenant)))
}

/// The tenant named `name`, or a 404 naming it.
pub(super) async fn named(app: &AppState, name: &str) -> Result<Tenant, ApiError> {
    app.state.tenant_by_name(name).await?.ok_or_else(|| gone(name))
}

fn gone(name: &str) -> ApiError {
    ApiError::not_found(format!("tenant {name:?}"))
}

fn known_tier(app: &AppState, tier: &str) -> Result<(), ApiError> {
    let tiers = app.coordinator.tiers();
    if tiers.contains_key(tier) {
        return Ok(());
    }
    let known: Vec<&str> = tiers.keys().map(String::as_str).collect();
    Err(ApiError::unprocessable(
        "unknown_tier",
        format!("tier {tier:?} does not exist; the tiers are {}", known.join(", ")),
    ))
}
