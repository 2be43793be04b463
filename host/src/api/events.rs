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
use super::streams::MAX_STREAMS_PER_TENANT;
use super::views::JobView;
use super::{ApiError, AppState};
use crate::broker::{JobEventKind, Observed};
use axum::http::StatusCode;

use JobStreamEventName as Name;

/// The name of a server-sent event of a job.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStreamEventName {
    /// `data` is a [`JobView`]: the job as it is now (first, and after missed events).
    Job,
    /// `data` is a job event of type `state`.
    State,
    /// `data` is a job event of type `progress`.
    Progress,
    /// `data` is a job event of type `checkpoint`.
    Checkpoint,
}

impl JobStreamEventName {
    /// The name on the `event:` line.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Job => "job",
            Self::State => "state",
            Self::Progress => "progress",
            Self::Checkpoint => "checkpoint",
        }
    }
}

/// One server-sent event of a job's stream, as an SSE client reads it (`event:` and `data:`
/// lines).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct JobStreamEvent {
    pub event: JobStreamEventName,
    /// JSON text.
    pub data: String,
}

/// Events: `job` (a full job view; sent first), `state`, `progress` and `checkpoint` (the JSON of
/// a job event). The stream ends after the event of a terminal state. A tenant holds at most
/// [`MAX_STREAMS_PER_TENANT`] streams open at once; past that, `429 too_many_streams`.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", tag = "jobs",
    params(("id" = String, Path)),
    responses(
        (status = 200, content_type = "text/event-stream", body = JobStreamEvent),
        (status = 404, body = super::ErrorBody),
        (status = 429, body = super::ErrorBody, description = "The tenant holds as many event streams open as it may (`too_many_streams`)"),
    ),
    security(("api_key" = [])))]
pub async fn job_events(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    // Subscribe before reading the job, so no change between the two is missed.
    let events = app.broker.events();
    let job = load_job(&app, &tenant, &id).await?;
    let Some(slot) = app.streams.open(tenant.id) else {
        let msg = format!(
            "this tenant holds {MAX_STREAMS_PER_TENANT} event streams open, as many as it may; close one first"
        );
        return Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_streams", msg));
    };
    let first =
        Event::default().event(Name::Job.as_str()).json_data(JobView::from(&job)).map_err(ApiError::internal)?;
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
    // The slot rides along in the stream's state: the count drops when the body does.
    let tail = stream::unfold((Box::pin(events), app, false, slot), move |(mut events, app, ended, slot)| async move {
        if ended {
            return None;
        }
        let (ev, terminal) = match events.next().await? {
            Observed::Event(e) => {
                let (name, terminal) = match &e.kind {
                    JobEventKind::State { state, .. } => (Name::State, state.is_terminal()),
                    JobEventKind::Progress(_) => (Name::Progress, false),
                    JobEventKind::Checkpoint { .. } => (Name::Checkpoint, false),
                };
                let name = name.as_str();
                (Event::default().event(name).json_data(&e).unwrap_or_else(|_| Event::default().event(name)), terminal)
            }
            Observed::Missed(_) => match app.state.get_job(tenant_id, job_id).await {
                Ok(Some(job)) => {
                    let ev = Event::default().event(Name::Job.as_str()).json_data(JobView::from(&job));
                    (ev.unwrap_or_else(|_| Event::default().event(Name::Job.as_str())), job.state.is_terminal())
                }
                // The job is gone or the database failed: end the stream; the client reconnects.
                _ => return None,
            },
        };
        Some((Ok(ev), (events, app, terminal, slot)))
    });
    let body: BoxStream<'static, Result<Event, Infallible>> = head.chain(tail).boxed();
    Ok(Sse::new(body).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}
