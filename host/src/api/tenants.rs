//! Operator endpoints: tenants and tiers.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::auth::{AdminCaller, TenantCaller, generate_key, key_digest};
use super::views::{CreateTenant, CreatedTenant, TenantView};
use super::{ApiError, AppState};
use crate::ids::check_workload_name;
use crate::tier::Tiers;

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
    body: Result<Json<CreateTenant>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<CreatedTenant>), ApiError> {
    let Json(req) = body?;
    check_workload_name(&req.name).map_err(|_| {
        ApiError::unprocessable(
            "invalid_name",
            format!("tenant name {:?} is invalid: use 1 to 64 characters of a-z, 0-9, '-', '_' and '.'", req.name),
        )
    })?;
    if !app.coordinator.tiers().contains_key(&req.tier) {
        let known: Vec<&str> = app.coordinator.tiers().keys().map(String::as_str).collect();
        return Err(ApiError::unprocessable(
            "unknown_tier",
            format!("tier {:?} does not exist; the tiers are {}", req.tier, known.join(", ")),
        ));
    }
    let tenant = app.state.create_tenant(&req.name, &req.tier).await?;
    let key = generate_key();
    app.state.add_api_key(key_digest(&key), Some(tenant.id)).await?;
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

/// The tiers and their limits.
#[utoipa::path(get, path = "/v1/tiers", tag = "admin",
    responses((status = 200, body = std::collections::BTreeMap<String, crate::tier::Tier>)))]
pub async fn list_tiers(State(app): State<AppState>) -> Json<Tiers> {
    Json(app.coordinator.tiers().clone())
}
