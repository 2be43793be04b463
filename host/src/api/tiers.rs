//! Tiers: listed for everyone, defined and edited at run time by the admin.

use axum::Json;
use axum::extract::{Path, State};

use super::auth::AdminCaller;
use super::body::JsonObject;
use super::{ApiError, AppState};
use crate::ids::check_workload_name;
use crate::tier::{Tier, Tiers};

/// The tiers and their limits.
#[utoipa::path(get, path = "/v1/tiers", tag = "admin",
    responses((status = 200, body = std::collections::BTreeMap<String, crate::tier::Tier>)))]
pub async fn list_tiers(State(app): State<AppState>) -> Json<Tiers> {
    Json((*app.coordinator.tiers()).clone())
}

/// Defines a tier or replaces its limits (admin only). Tenants on it get the new limits for jobs
/// that start from now on; their waiting jobs take its priority. Every coordinator applies the
/// change within 2 s.
#[utoipa::path(put, path = "/v1/tiers/{name}", tag = "admin",
    params(("name" = String, Path, description = "Tier name: 1 to 64 of a-z, 0-9, '-', '_', '.'")),
    request_body = Tier,
    responses(
        (status = 200, body = Tier),
        (status = 422, body = super::ErrorBody, description = "A bad name or limit; the message names it"),
    ),
    security(("api_key" = [])))]
pub async fn put_tier(
    State(app): State<AppState>,
    _admin: AdminCaller,
    Path(name): Path<String>,
    JsonObject(tier): JsonObject<Tier>,
) -> Result<Json<Tier>, ApiError> {
    check_workload_name(&name).map_err(|_| {
        ApiError::unprocessable(
            "invalid_name",
            format!("tier name {name:?} is invalid: use 1 to 64 characters of a-z, 0-9, '-', '_' and '.'"),
        )
    })?;
    tier.validate(app.runtime.max_memory_bytes()).map_err(|m| ApiError::unprocessable("invalid_tier", m))?;
    app.coordinator.put_tier(&name, tier.clone()).await?;
    tracing::info!(tier = %name, "tier defined");
    Ok(Json(tier))
}
