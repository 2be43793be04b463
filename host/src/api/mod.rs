//! The HTTP API (axum): JSON under `/v1`, keys as `Authorization: Bearer <key>`, an OpenAPI 3
//! document at `/v1/openapi.json` (committed as `docs/openapi.json`).
//!
//! [`app`] builds the router over an [`AppState`]; tests drive it in process with
//! `tower::ServiceExt::oneshot` or over a socket.

pub mod auth;
mod body;
mod cluster;
mod error;
mod events;
mod jobs;
mod keys;
pub mod limits;
mod openapi;
pub mod page;
pub mod streams;
mod submission;
mod tenants;
#[cfg(test)]
mod tests;
mod tiers;
pub mod usage;
pub mod views;
mod workloads;

use std::sync::Arc;

use axum::Json;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};

pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use openapi::{ApiDoc, openapi_json};

use crate::blobs::Blobs;
use crate::broker::Broker;
use crate::coordinator::Coordinator;
use crate::runtime::Runtime;
use crate::state::StateStore;

/// What every handler needs.
#[derive(Clone)]
pub struct AppState {
    pub state: Arc<dyn StateStore>,
    pub coordinator: Arc<Coordinator>,
    pub runtime: Arc<Runtime>,
    pub blobs: Blobs,
    pub broker: Arc<dyn Broker>,
    /// The event streams each tenant holds open.
    pub streams: streams::StreamCounts,
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi::document())
}

async fn health() -> &'static str {
    "ok"
}

async fn ready(axum::extract::State(app): axum::extract::State<AppState>) -> Result<&'static str, ApiError> {
    app.state.has_admin_key().await?;
    Ok("ready")
}

/// `GET /metrics`: the Prometheus text format (see [`crate::metrics`]). Unauthenticated, like
/// `/health`: it names tiers, never tenants.
async fn metrics(
    axum::extract::State(app): axum::extract::State<AppState>,
) -> Result<([(axum::http::HeaderName, &'static str); 1], String), ApiError> {
    app.coordinator.refresh_gauges().await.map_err(|e| ApiError::failure(&e))?;
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render()))
}

/// Runs each request's handler in a task of its own, so that a client that goes away does not
/// cancel its database work half-way: the handler runs to its end (a commit, or a rollback) and
/// only its answer is dropped. Server-sent event streams outlive the handler and are not affected.
async fn run_to_completion(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    use tracing::Instrument as _;
    match tokio::spawn(next.run(req).instrument(tracing::Span::current())).await {
        Ok(resp) => resp,
        Err(e) => ApiError::internal(format!("a request handler failed: {e}")).into_response(),
    }
}

async fn fallback() -> ApiError {
    ApiError::new(axum::http::StatusCode::NOT_FOUND, "not_found", "no such endpoint; see /v1/openapi.json")
}

/// The router. `body_limit` is the largest request body in bytes (the largest tier's component
/// size, and at least 16 MiB): the ceiling of every body read whole. Component uploads and job
/// submissions are read only up to the caller's tier's own limit (see [`limits`]), and refused
/// from `Content-Length` before anything is read when over it.
pub fn app(state: AppState, body_limit: usize) -> axum::Router {
    axum::Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/workloads", get(workloads::list_workloads))
        .route("/v1/workloads/{name}", put(workloads::put_workload).get(workloads::get_workload))
        .route("/v1/inputs", post(workloads::put_input))
        .route("/v1/jobs", post(jobs::submit_job).get(jobs::list_jobs))
        .route("/v1/jobs/batch", post(jobs::submit_batch))
        .route("/v1/jobs/{id}", get(jobs::get_job))
        .route("/v1/jobs/{id}/output", get(jobs::get_output))
        .route("/v1/jobs/{id}/logs", get(jobs::get_logs))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel_job))
        .route("/v1/jobs/{id}/redrive", post(jobs::redrive_job))
        .route("/v1/jobs/{id}/events", get(events::job_events))
        .route("/v1/tenants", post(tenants::create_tenant).get(tenants::list_tenants))
        .route("/v1/tenants/{name}", get(tenants::get_tenant))
        .route("/v1/tenants/{name}/suspend", post(tenants::suspend_tenant))
        .route("/v1/tenants/{name}/resume", post(tenants::resume_tenant))
        .route("/v1/tenants/{name}/tier", put(tenants::set_tier))
        .route("/v1/tenants/{name}/keys", post(keys::create_key).get(keys::list_keys))
        .route("/v1/tenants/{name}/keys/{id}/revoke", post(keys::revoke_key))
        .route("/v1/tenants/{name}/usage", get(usage::tenant_usage))
        .route("/v1/tenant", get(tenants::whoami))
        .route("/v1/usage", get(usage::own_usage))
        .route("/v1/tiers", get(tiers::list_tiers))
        .route("/v1/tiers/{name}", put(tiers::put_tier))
        .route("/v1/cluster", get(cluster::cluster))
        .route("/v1/cluster/workers/{id}/drain", post(cluster::drain_worker))
        .fallback(fallback)
        .layer(axum::middleware::from_fn(run_to_completion))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::Extension(limits::BodyCeiling(body_limit as u64)))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}
