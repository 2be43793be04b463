//! Operator endpoint: the cluster as the answering coordinator sees it.

use axum::Json;
use axum::extract::State;

use super::AppState;
use super::auth::AdminCaller;
use super::views::{ClusterView, WorkerView};

/// This coordinator's id and whether it leads; the leader also lists the workers it knows
/// (admin only). Followers list no workers.
#[utoipa::path(get, path = "/v1/cluster", tag = "admin",
    responses((status = 200, body = ClusterView)),
    security(("api_key" = [])))]
pub async fn cluster(State(app): State<AppState>, _admin: AdminCaller) -> Json<ClusterView> {
    let c = &app.coordinator;
    let workers = c.known_workers().into_iter().map(WorkerView::from).collect();
    Json(ClusterView { coordinator: c.id().to_owned(), leader: c.is_leader(), workers })
}

/// Asks a worker to drain (admin only): it checkpoints and suspends its running jobs, which are
/// queued again at once, takes no new job, and exits. The command is sent whether or not this
/// coordinator knows the worker (a follower knows none). The worker of `niyanta serve` is not
/// drained: the process would be left without one (stop the process with SIGTERM instead).
#[utoipa::path(post, path = "/v1/cluster/workers/{id}/drain", tag = "admin",
    params(("id" = String, Path, description = "Worker id")),
    responses(
        (status = 202, description = "Drain command sent"),
        (status = 404, body = super::ErrorBody, description = "In `niyanta serve`: no worker of that id (a coordinator of a cluster sends the command whether or not the worker exists)"),
        (status = 409, body = super::ErrorBody, description = "The worker of `niyanta serve`, which stops only with its process"),
        (status = 422, body = super::ErrorBody, description = "Not a valid worker id"),
    ),
    security(("api_key" = [])))]
pub async fn drain_worker(
    State(app): State<AppState>,
    _admin: AdminCaller,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<axum::http::StatusCode, super::ApiError> {
    let worker =
        crate::ids::WorkerId::parse(&id).map_err(|e| super::ApiError::unprocessable("invalid_worker_id", e))?;
    if app.coordinator.is_embedded_worker(&worker) {
        return Err(super::ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "embedded_worker",
            format!("worker {worker} runs inside `niyanta serve` and stops with it: send the process SIGTERM instead"),
        ));
    }
    match app.broker.send_command(&worker, crate::broker::Command::Drain).await {
        Ok(()) => {}
        Err(crate::broker::BrokerError::UnknownWorker(_)) => {
            return Err(super::ApiError::not_found(format!("worker {worker}")));
        }
        Err(e) => return Err(super::ApiError::internal(e)),
    }
    Ok(axum::http::StatusCode::ACCEPTED)
}
