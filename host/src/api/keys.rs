//! A tenant's API keys (admin only): create (shown once), list, revoke.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::auth::{AdminCaller, generate_key, key_digest};
use super::tenants::named;
use super::views::{CreateKey, CreatedKey, KeyView};
use super::{ApiError, AppState};

/// Creates an API key for a tenant; the key is shown once. An empty body makes a read-write key.
#[utoipa::path(post, path = "/v1/tenants/{name}/keys", tag = "admin",
    params(("name" = String, Path, description = "Tenant name")),
    request_body(content = Option<CreateKey>, description = "Optional: no body makes a read-write key"),
    responses((status = 201, body = CreatedKey), (status = 404, body = super::ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_key(
    State(app): State<AppState>,
    _admin: AdminCaller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let req: CreateKey = if body.iter().all(u8::is_ascii_whitespace) {
        CreateKey::default()
    } else {
        let invalid =
            |m: String| ApiError::unprocessable("invalid_body", format!("the body is not a key request: {m}"));
        match serde_json::from_slice::<serde_json::Value>(&body).map_err(|e| invalid(e.to_string()))? {
            serde_json::Value::Null => CreateKey::default(),
            v @ serde_json::Value::Object(_) => serde_json::from_value(v).map_err(|e| invalid(e.to_string()))?,
            _ => return Err(invalid("expected a JSON object".into())),
        }
    };
    let tenant = named(&app, &name).await?;
    let api_key = generate_key();
    let key = app.state.add_api_key(key_digest(&api_key), Some(tenant.id), req.read_only).await?;
    tracing::info!(tenant_id = %tenant.id, key_id = %key.id, read_only = key.read_only, "API key created");
    Ok((StatusCode::CREATED, Json(CreatedKey { key: KeyView::from(&key), api_key })))
}

/// A tenant's keys, revoked ones included, by creation time.
#[utoipa::path(get, path = "/v1/tenants/{name}/keys", tag = "admin",
    params(("name" = String, Path, description = "Tenant name")),
    responses((status = 200, body = Vec<KeyView>), (status = 404, body = super::ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_keys(
    State(app): State<AppState>,
    _admin: AdminCaller,
    Path(name): Path<String>,
) -> Result<Json<Vec<KeyView>>, ApiError> {
    let tenant = named(&app, &name).await?;
    Ok(Json(app.state.list_api_keys(tenant.id).await?.iter().map(KeyView::from).collect()))
}

/// Revokes a tenant's key: from now on it is refused (401). Revoking again changes nothing.
#[utoipa::path(post, path = "/v1/tenants/{name}/keys/{id}/revoke", tag = "admin",
    params(("name" = String, Path, description = "Tenant name"), ("id" = String, Path, description = "Key id (see the key list)")),
    responses((status = 200, body = KeyView), (status = 404, body = super::ErrorBody)),
    security(("api_key" = [])))]
pub async fn revoke_key(
    State(app): State<AppState>,
    _admin: AdminCaller,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<KeyView>, ApiError> {
    let tenant = named(&app, &name).await?;
    let key = app
        .state
        .revoke_api_key(tenant.id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("key {id:?} of tenant {name:?}")))?;
    tracing::info!(tenant_id = %tenant.id, key_id = %key.id, "API key revoked");
    Ok(Json(KeyView::from(&key)))
}
