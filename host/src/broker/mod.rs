//! Messaging between the coordinator and workers.
//!
//! The coordinator sends [`Command`]s to a named worker; workers send [`Report`]s and get an
//! [`Ack`] once the coordinator has committed what the report changes (request/reply), so a report
//! is retried until acknowledged and its handler must be idempotent. Every report about a job
//! carries the lease epoch (fencing token) of the worker's claim; a stale one is answered
//! [`Ack::Stale`] and changes nothing. [`JobEvent`]s fan out to API subscribers (server-sent
//! events). [`memory::MemoryBroker`] is the in-process backend of `niyanta serve`.

pub mod memory;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

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
}

/// Coordinator → worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Run this job.
    Assign(Box<Assignment>),
    /// Ask the job to stop (it sees `interrupted() = cancel`; forced after the grace period).
    Cancel { job_id: JobId, epoch: i64 },
}

/// Worker → coordinator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Report {
    /// A worker came up with `slots` job slots. It holds no leases.
    Register { worker: WorkerId, slots: u32 },
    /// The worker is alive and runs these (job, epoch) pairs.
    Heartbeat { worker: WorkerId, running: Vec<(JobId, i64)> },
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
    reply: Box<dyn FnOnce(Ack) + Send>,
}

impl Delivery {
    /// A delivery whose answer goes to `reply`.
    pub fn new(report: Report, reply: impl FnOnce(Ack) + Send + 'static) -> Self {
        Self { report, reply: Box::new(reply) }
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
    /// The commands addressed to `worker`, from now on.
    async fn commands(&self, worker: &WorkerId) -> Result<BoxStream<'static, Command>, BrokerError>;
    /// Sends a report and waits for the coordinator's answer.
    async fn report(&self, report: Report) -> Result<Ack, BrokerError>;
    /// The reports for the coordinator. Only one consumer may take them.
    async fn reports(&self) -> Result<BoxStream<'static, Delivery>, BrokerError>;
    /// Publishes an event to every subscriber (best effort: a slow subscriber misses events).
    fn publish_event(&self, event: JobEvent);
    /// The events from now on. A subscriber that falls behind is told how many it missed.
    fn events(&self) -> BoxStream<'static, Observed>;
}
