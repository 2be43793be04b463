//! Server-sent events of one job: its current state first, then every state change, progress
//! report and checkpoint, until it ends.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use futures::stream::{self, BoxStream};

use super::auth::TenantCaller;
use super::jobs::load_job;
use super::views::JobView;
use super::{ApiError, AppState};
use crate::broker::{JobEventKind, Observed};

/// Events: `job` (a full job view; sent first), `state`, `progress` and `checkpoint` (the JSON of
/// a job event). The stream ends after the event of a terminal state.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", tag = "jobs",
    params(("id" = String, Path)),
    responses((status = 200, content_type = "text/event-stream", body = String), (status = 404, body = super::ErrorBody)),
    security(("api_key" = [])))]
pub async fn job_events(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    // Subscribe before reading the job, so no change between the two is missed.
    let events = app.broker.events();
    let job = load_job(&app, &tenant, &id).await?;
    let first = Event::default().event("job").json_data(JobView::from(&job)).map_err(ApiError::internal)?;
    let (job_id, tenant_id) = (job.id, tenant.id);
    let head = stream::iter([Ok(first)]);
    if job.state.is_terminal() {
        return Ok(Sse::new(head).into_response());
    }
    let events = events.filter(move |o| {
        std::future::ready(match o {
            Observed::Event(e) => e.job_id == job_id && e.tenant_id == tenant_id,
            Observed::Missed(_) => true,
        })
    });
    // Ends right after the terminal state's event, without waiting for another one. When events
    // were missed (a slow subscriber), a fresh snapshot of the job takes their place.
    let tail = stream::unfold((Box::pin(events), app, false), move |(mut events, app, ended)| async move {
        if ended {
            return None;
        }
        let (ev, terminal) = match events.next().await? {
            Observed::Event(e) => {
                let (name, terminal) = match &e.kind {
                    JobEventKind::State { state, .. } => ("state", state.is_terminal()),
                    JobEventKind::Progress(_) => ("progress", false),
                    JobEventKind::Checkpoint { .. } => ("checkpoint", false),
                };
                (Event::default().event(name).json_data(&e).unwrap_or_else(|_| Event::default().event(name)), terminal)
            }
            Observed::Missed(_) => match app.state.get_job(tenant_id, job_id).await {
                Ok(Some(job)) => {
                    let ev = Event::default().event("job").json_data(JobView::from(&job));
                    (ev.unwrap_or_else(|_| Event::default().event("job")), job.state.is_terminal())
                }
                // The job is gone or the database failed: end the stream; the client reconnects.
                _ => return None,
            },
        };
        Some((Ok(ev), (events, app, terminal)))
    });
    let body: BoxStream<'static, Result<Event, Infallible>> = head.chain(tail).boxed();
    Ok(Sse::new(body).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}
