//! API keys: `Authorization: Bearer <key>`; keys are stored as SHA-256 digests only. A revoked
//! key is unknown (401).

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;

use super::{ApiError, AppState};
use crate::ids::Digest;
use crate::state::{Principal, Tenant};

/// A new random API key: `nyk_` and 64 hex digits (244 random bits from the OS generator).
pub fn generate_key() -> String {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    format!("nyk_{}{}", a.simple(), b.simple())
}

/// The digest a key is stored under.
pub fn key_digest(key: &str) -> Digest {
    Digest::of(key.as_bytes())
}

async fn principal(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    let header =
        parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing API key: send `Authorization: Bearer <key>`",
            )
        })?;
    let key = header.strip_prefix("Bearer ").map(str::trim).ok_or_else(|| {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "the Authorization header must be `Bearer <key>`")
    })?;
    state
        .state
        .principal(key_digest(key))
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "the API key is not valid"))
}

fn is_read(method: &axum::http::Method) -> bool {
    matches!(*method, axum::http::Method::GET | axum::http::Method::HEAD)
}

/// The caller, for endpoints that act for a tenant. Refused (403) for the admin key, a
/// suspended tenant's key (`tenant_suspended`), and a read-only key on any method but `GET` and
/// `HEAD` (`read_only_key`).
pub struct TenantCaller(pub Tenant);

/// The caller, for operator endpoints.
pub struct AdminCaller;

impl FromRequestParts<AppState> for TenantCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match principal(parts, state).await? {
            Principal::Tenant { tenant, .. } if tenant.is_suspended() => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "tenant_suspended",
                format!("tenant {:?} is suspended; its keys are refused until an operator resumes it", tenant.name),
            )),
            Principal::Tenant { read_only: true, .. } if !is_read(&parts.method) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "read_only_key",
                format!("this key may only read (GET); {} needs a read-write key", parts.method),
            )),
            Principal::Tenant { tenant, .. } => Ok(Self(tenant)),
            Principal::Admin => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "tenant_key_required",
                "the admin key acts for no tenant; use a tenant's key (niyanta tenant create prints one)",
            )),
        }
    }
}

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match principal(parts, state).await? {
            Principal::Admin => Ok(Self),
            Principal::Tenant { .. } => {
                Err(ApiError::new(StatusCode::FORBIDDEN, "admin_key_required", "this endpoint needs the admin key"))
            }
        }
    }
}
