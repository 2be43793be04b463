//! Messaging between the coordinator and workers.
//!
//! The coordinator sends [`Command`]s to a named worker; workers send [`Report`]s and get an
//! [`Ack`] once the coordinator has committed what the report changes (request/reply), so a report
//! is retried until acknowledged and its handler must be idempotent. Every report about a job
//! carries the lease epoch (fencing token) of the worker's claim; a stale one is answered
//! [`Ack::Stale`] and changes nothing. [`JobEvent`]s fan out to API subscribers (server-sent
//! events). [`memory::MemoryBroker`] is the in-process backend of `niyanta serve`;
//! [`nats::NatsBroker`] carries the same messages between processes.

pub mod memory;
pub mod nats;

use std::collections::BTreeMap;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::ids::{Digest, JobId, TenantId, WorkerId};
use crate::state::{Checkpoint, FailureClass, FencedUpdate, InputRef, JobState, Progress};

/// Errors of the broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// No worker of that id is connected.
    #[error("worker {0} is not connected")]
    UnknownWorker(WorkerId),
    /// The other side is gone (shutting down).
    #[error("the broker is closed")]
    Closed,
    /// Transport failure.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Limits an attempt runs under, from the tenant's tier at assignment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Fuel units for the whole job.
    pub fuel: u64,
    /// Bytes of linear memory.
    pub memory_bytes: u64,
    /// Milliseconds of wall-clock time per attempt.
    pub wall_clock_ms: u64,
    /// Bytes of output.
    pub output_bytes: u64,
    /// Bytes of one checkpoint state.
    pub checkpoint_bytes: u64,
}

/// A job handed to a worker under a lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub job_id: JobId,
    pub tenant_id: TenantId,
    pub workload: String,
    pub digest: Digest,
    pub attempt: u32,
    /// The lease epoch (fencing token) every report about this attempt must carry.
    pub epoch: i64,
    /// JSON text.
    pub params: String,
    pub input: InputRef,
    /// The last acknowledged checkpoint, to resume from.
    pub resume: Option<Checkpoint>,
    /// Fuel units used by earlier attempts.
    pub fuel_used_before: u64,
    pub limits: Limits,
    /// The trace context (W3C `traceparent`) of the leader's `assign` span, which the worker's
    /// `job` span continues. Not in the payload: NATS carries it in the `traceparent` header.
    #[serde(skip)]
    pub trace: Option<String>,
}

/// Coordinator → worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Run this job. A worker already running the job under this epoch ignores a repeat.
    Assign(Box<Assignment>),
    /// Ask the job to stop (it sees `interrupted() = cancel`; forced after the grace period).
    Cancel { job_id: JobId, epoch: i64 },
    /// The worker runs this job without a valid lease (reconciliation found it): stop it at once
    /// and report nothing more about it.
    Abandon { job_id: JobId, epoch: i64 },
    /// Drain and stop: checkpoint and suspend every running job, take no new one, then exit.
    Drain,
}

/// Who a worker is and what it offers; sent with every registration and heartbeat, so a
/// coordinator that just became leader learns the workers from their next heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub id: WorkerId,
    /// Jobs it runs at once.
    pub slots: u32,
    /// Labels for placement (`--label KEY=VALUE`).
    pub labels: BTreeMap<String, String>,
    /// The worker's `niyanta` version.
    pub version: String,
}

/// Worker → coordinator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Report {
    /// A worker came up. It holds no leases: leases an earlier process under the same id held
    /// are void and their jobs are queued again.
    Register(WorkerInfo),
    /// The worker is alive and runs these (job, epoch) pairs (its inventory).
    Heartbeat { info: WorkerInfo, running: Vec<(JobId, i64)> },
    /// The worker drained and leaves: whatever it still holds is queued again now.
    Gone(WorkerId),
    /// A change to a job the worker holds a lease on (started, progress, checkpoint, logs, end);
    /// acknowledged after the commit.
    Job { worker: WorkerId, update: FencedUpdate },
}

/// The coordinator's answer to a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ack {
    /// Committed.
    Ok,
    /// The lease epoch is stale (or the job ended): stop the job and report nothing more.
    Stale,
}

/// A report as the coordinator receives it, with the way to answer it.
pub struct Delivery {
    pub report: Report,
    /// The trace context (W3C `traceparent`) of the span the report was sent from (a worker's
    /// `job` span), when there was one; NATS carries it in the `traceparent` header.
    pub trace: Option<String>,
    reply: Box<dyn FnOnce(Ack) + Send>,
}

impl Delivery {
    /// A delivery sent from the span `trace` names, whose answer goes to `reply`.
    pub fn new(report: Report, trace: Option<String>, reply: impl FnOnce(Ack) + Send + 'static) -> Self {
        Self { report, trace, reply: Box::new(reply) }
    }

    /// Answers the report.
    pub fn ack(self, ack: Ack) {
        (self.reply)(ack);
    }
}

/// Something that happened to a job, for API subscribers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    pub job_id: JobId,
    pub tenant_id: TenantId,
    #[serde(flatten)]
    pub kind: JobEventKind,
}

/// The kinds of [`JobEvent`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobEventKind {
    /// The job moved to another state.
    State { state: JobState, attempt: u32, failure_class: Option<FailureClass>, failure_message: Option<String> },
    /// The guest reported progress.
    Progress(Progress),
    /// A checkpoint was stored.
    Checkpoint { seq: u32 },
}

/// What an event subscriber receives.
#[derive(Clone, Debug, PartialEq)]
pub enum Observed {
    /// The next event.
    Event(JobEvent),
    /// This many events were dropped because the subscriber fell behind; re-read what it follows.
    Missed(u64),
}

/// The message transport between coordinator and workers.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Sends a command to one worker.
    async fn send_command(&self, worker: &WorkerId, cmd: Command) -> Result<(), BrokerError>;
    /// The commands addressed to `worker`, from the moment this returns.
    async fn commands(&self, worker: &WorkerId) -> Result<BoxStream<'static, Command>, BrokerError>;
    /// Sends a report and waits for the coordinator's answer. The report carries the trace
    /// context of the current span ([`Delivery::trace`]). A report that needs no spilling is
    /// queued when the future is first polled, so reports one task starts one after another
    /// leave in that order (the worker relies on it to send a job's `Running` report ahead of
    /// its result).
    async fn report(&self, report: Report) -> Result<Ack, BrokerError>;
    /// The reports for the coordinator. Only one consumer may take them.
    async fn reports(&self) -> Result<BoxStream<'static, Delivery>, BrokerError>;
    /// Publishes an event to every subscriber (best effort: a slow subscriber misses events).
    fn publish_event(&self, event: JobEvent);
    /// The events from now on. A subscriber that falls behind is told how many it missed.
    fn events(&self) -> BoxStream<'static, Observed>;
}

/// Events buffered per subscriber before it is told it missed some: a few seconds of events at
/// thousands of jobs per second (one batch submission of 1,000 jobs alone publishes 1,000 `queued`
/// events at once). The buffer is shared by the subscribers, about 5 MiB.
const EVENT_BUFFER: usize = 32_768;

/// The in-process fan-out of events to API subscribers, shared by the broker backends.
pub(crate) fn event_channel() -> broadcast::Sender<JobEvent> {
    broadcast::Sender::new(EVENT_BUFFER)
}

/// A subscriber's view of an event channel.
pub(crate) fn observe(events: &broadcast::Sender<JobEvent>) -> BoxStream<'static, Observed> {
    BroadcastStream::new(events.subscribe())
        .map(|e| match e {
            Ok(e) => Observed::Event(e),
            Err(BroadcastStreamRecvError::Lagged(n)) => Observed::Missed(n),
        })
        .boxed()
}
