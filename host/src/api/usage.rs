//! Metering: what a tenant's jobs consumed over a time range, per workload (for billing).

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{AdminCaller, TenantCaller};
use super::{ApiError, AppState};
use crate::coordinator::month_start_ms;
use crate::ids::{LATEST_MS, now_ms};
use crate::state::{Metered, StoredBytes, Tenant, WorkloadUsage};

/// The time range of a usage report.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// Start, Unix ms, at most `to_ms` (default: the start of the calendar month, UTC, that holds
    /// the end).
    #[param(minimum = 0, maximum = 253_402_300_799_999_i64)]
    from_ms: Option<i64>,
    /// End, exclusive, Unix ms, at most 253,402,300,799,999 (9999-12-31T23:59:59.999Z) (default:
    /// now).
    #[param(minimum = 0, maximum = 253_402_300_799_999_i64)]
    to_ms: Option<i64>,
}

/// A tenant's metered usage over `[from_ms, to_ms)`. Usage is kept per hour: the report sums the
/// hours that start in the range, so it is exact when both ends are whole hours (UTC).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageReport {
    /// The tenant's name.
    pub tenant: String,
    pub from_ms: i64,
    pub to_ms: i64,
    /// Per workload, by name; workloads without usage in the range are left out.
    pub workloads: Vec<WorkloadUsage>,
    /// The sum over the workloads (the memory peak is their largest).
    pub total: Metered,
    /// What the tenant stores now (not over the range), against its tier's `stored_bytes`.
    #[serde(default)]
    pub stored: StoredView,
}

/// A tenant's stored bytes now, and its tier's quota on them.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct StoredView {
    #[serde(flatten)]
    pub bytes: StoredBytes,
    /// The sum of the three, bytes.
    pub total_bytes: u64,
    /// The tier's `stored_bytes` quota, bytes (`null`: no limit).
    pub quota_bytes: Option<u64>,
}

/// The caller's usage over a time range, per workload.
#[utoipa::path(get, path = "/v1/usage", tag = "jobs", params(UsageQuery),
    responses((status = 200, body = UsageReport), (status = 400, body = super::ErrorBody)),
    security(("api_key" = [])))]
pub async fn own_usage(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    query: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<UsageReport>, ApiError> {
    let Query(q) = query?;
    report(&app, &tenant, q).await.map(Json)
}

/// A tenant's usage over a time range, per workload (admin only).
#[utoipa::path(get, path = "/v1/tenants/{name}/usage", tag = "admin",
    params(("name" = String, Path, description = "Tenant name"), UsageQuery),
    responses(
        (status = 200, body = UsageReport),
        (status = 400, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn tenant_usage(
    State(app): State<AppState>,
    _admin: AdminCaller,
    Path(name): Path<String>,
    query: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<UsageReport>, ApiError> {
    let Query(q) = query?;
    let tenant = super::tenants::named(&app, &name).await?;
    report(&app, &tenant, q).await.map(Json)
}

async fn report(app: &AppState, tenant: &Tenant, q: UsageQuery) -> Result<UsageReport, ApiError> {
    let now = now_ms();
    let to_ms = q.to_ms.unwrap_or(now);
    if !(0..=LATEST_MS).contains(&to_ms) {
        return Err(ApiError::bad_request("invalid_query", format!("to_ms ({to_ms}) must be 0 to {LATEST_MS}")));
    }
    let from_ms = q.from_ms.unwrap_or_else(|| month_start_ms(to_ms));
    if from_ms < 0 || to_ms < from_ms {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("from_ms ({from_ms}) must be at least 0 and at most to_ms ({to_ms})"),
        ));
    }
    let workloads = app.state.usage(tenant.id, from_ms, to_ms).await?;
    let mut total = Metered::default();
    for w in &workloads {
        total.add(&w.usage);
    }
    let bytes = app.state.stored_bytes(tenant.id).await?;
    let stored =
        StoredView { bytes, total_bytes: bytes.total(), quota_bytes: app.coordinator.tier(tenant).stored_bytes };
    Ok(UsageReport { tenant: tenant.name.clone(), from_ms, to_ms, workloads, total, stored })
}
