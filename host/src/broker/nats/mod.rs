//! The broker between processes: NATS core subjects through async-nats.
//!
//! Subjects, under `niyanta.v1.{namespace}` (the namespace lets several installations, or tests,
//! share one NATS server):
//! - `….reports`: worker → coordinator [`Report`]s as request/reply. Only the leader coordinator
//!   subscribes; with no leader the request fails at once ("no responders") and the worker retries
//!   until a leader answers. The reply is the [`Ack`], sent after the commit.
//! - `….cmd.{worker id}`: coordinator → worker [`Command`]s, fire and forget: a lost assignment or
//!   cancel is repaired by reconciliation from the worker's heartbeat inventory.
//! - `….events`: [`JobEvent`]s. Every coordinator subscribes and fans them out to its own API
//!   subscribers (server-sent events), so an event stream works through any coordinator.
//!
//! Payloads are JSON. A payload over the server's `max_payload` (1 MiB by default) is spilled to
//! blob storage (`spill/{random}`) and the message carries only its key in the `Niyanta-Spill`
//! header: a checkpoint may be as large as the tier allows (64 MiB for `premium`). The receiver
//! reads and deletes it. Assignments and reports carry the sender's trace context in the W3C
//! `traceparent` header (see [`crate::trace`]).
//!
//! Messages that wait together to one subject travel as one batch ([`batch`]): commands to a
//! worker, events, and a worker's reports ([`reporter`]), whose answer is then the array of their
//! [`Ack`]s. A lone message travels alone, in the format above.

mod batch;
mod reporter;

use std::sync::Arc;

use async_nats::{Client, Message};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc, oneshot};

use self::batch::{Outgoing, is_batch, unpack};
use super::*;
use crate::blobs::Blobs;
use crate::trace::TRACEPARENT;

/// Header naming the blob that holds a spilled payload.
const SPILL_HEADER: &str = "Niyanta-Spill";
/// Room left in a message for headers and protocol framing, bytes.
const FRAMING: usize = 4096;

/// Subject names of one namespace.
#[derive(Clone, Debug)]
struct Subjects {
    prefix: String,
}

impl Subjects {
    fn reports(&self) -> String {
        format!("{}.reports", self.prefix)
    }
    fn events(&self) -> String {
        format!("{}.events", self.prefix)
    }
    fn commands(&self, worker: &WorkerId) -> String {
        format!("{}.cmd.{}", self.prefix, worker.0)
    }
}

/// A [`Broker`] over a NATS connection. Reconnects on its own when the server goes away;
/// subscriptions are restored on reconnection.
pub struct NatsBroker {
    client: Client,
    subjects: Subjects,
    blobs: Blobs,
    events: broadcast::Sender<JobEvent>,
    /// Commands, events and answers to reports leave through one task ([`batch::run_outbox`]).
    outbox: mpsc::UnboundedSender<(String, Outgoing)>,
    /// Reports leave through one task ([`reporter::run`]).
    reports: mpsc::UnboundedSender<reporter::Pending>,
}

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> BrokerError {
    BrokerError::Internal(anyhow::Error::new(e))
}

impl NatsBroker {
    /// Connects to NATS at `url` (`nats://host:port`) under `niyanta.v1.{namespace}`; spilled
    /// payloads go to `blobs`. The connection subscribes to the job events, which
    /// [`Broker::events`] yields: what a coordinator needs. Errors: an invalid namespace (1 to 64
    /// ASCII letters, digits, `-`, `_`), or the server cannot be reached.
    pub async fn connect(url: &str, namespace: &str, blobs: Blobs) -> anyhow::Result<Self> {
        Self::connect_with(url, namespace, blobs, true).await
    }

    /// [`NatsBroker::connect`] without the subscription to job events, for a worker, which sends
    /// reports and takes commands but reads no events: the server does not send it every job
    /// event of the installation. Its [`Broker::events`] stream never yields.
    pub async fn connect_without_events(url: &str, namespace: &str, blobs: Blobs) -> anyhow::Result<Self> {
        Self::connect_with(url, namespace, blobs, false).await
    }

    async fn connect_with(url: &str, namespace: &str, blobs: Blobs, subscribe_events: bool) -> anyhow::Result<Self> {
        WorkerId::parse(namespace).map_err(|_| {
            anyhow::anyhow!("NATS namespace {namespace:?} must be 1 to 64 ASCII letters, digits, '-' or '_'")
        })?;
        let client = async_nats::ConnectOptions::new()
            .name("niyanta")
            .request_timeout(Some(std::time::Duration::from_secs(5)))
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => tracing::info!("NATS connected"),
                    async_nats::Event::Disconnected => tracing::warn!("NATS disconnected; reconnecting"),
                    other => tracing::warn!(event = %other, "NATS event"),
                }
            })
            .connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach NATS at {url}: {e}"))?;
        let subjects = Subjects { prefix: format!("niyanta.v1.{namespace}") };
        let events = event_channel();
        if subscribe_events {
            let mut incoming = client.subscribe(subjects.events()).await?;
            barrier(&client).await?;
            let fanout = events.clone();
            let event_blobs = blobs.clone();
            tokio::spawn(async move {
                while let Some(msg) = incoming.next().await {
                    match unpack::<JobEvent>(&event_blobs, &msg).await {
                        Ok(events) => {
                            for (e, _) in events {
                                let _ = fanout.send(e);
                            }
                            // A batch may hold a thousand events: let the subscribers take them
                            // before the next one lands in their buffers.
                            tokio::task::yield_now().await;
                        }
                        Err(e) => tracing::warn!(error = %format!("{e:#}"), "dropped undecodable job events"),
                    }
                }
            });
        }
        let limit = client.server_info().max_payload.saturating_sub(FRAMING);
        let (outbox, out_rx) = mpsc::unbounded_channel();
        tokio::spawn(batch::run_outbox(client.clone(), out_rx, limit));
        let (reports, report_rx) = mpsc::unbounded_channel();
        tokio::spawn(reporter::run(client.clone(), subjects.reports(), report_rx, limit));
        Ok(Self { client, subjects, blobs, events, outbox, reports })
    }

    /// The message to send for `value`, spilled to blob storage when it is too large, with the
    /// trace context (`traceparent`) of the span it is sent from.
    async fn encode(&self, value: &impl Serialize, trace: Option<String>) -> Result<Outgoing, BrokerError> {
        let body = Bytes::from(serde_json::to_vec(value).map_err(internal)?);
        let max = self.client.server_info().max_payload;
        if body.len() + FRAMING > max {
            let key = self.blobs.put_spill(body).await.map_err(|e| BrokerError::Internal(e.into()))?;
            return Ok(Outgoing { trace, spill: Some(key), body: Bytes::new() });
        }
        Ok(Outgoing { trace, spill: None, body })
    }
}

/// Returns once the server has processed everything this connection sent before (subscriptions
/// included): a message to a private inbox comes back only after them, as the server handles one
/// connection's operations in order.
async fn barrier(client: &Client) -> Result<(), BrokerError> {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.map_err(internal)?;
    client.publish(inbox, Bytes::new()).await.map_err(internal)?;
    match tokio::time::timeout(std::time::Duration::from_secs(10), sub.next()).await {
        Ok(Some(_)) => Ok(()),
        _ => Err(BrokerError::Internal(anyhow::anyhow!("NATS did not answer a round trip within 10 s"))),
    }
}

/// The trace context a message carries in its `traceparent` header.
fn trace_of(msg: &Message) -> Option<String> {
    msg.headers.as_ref().and_then(|h| h.get(TRACEPARENT)).map(|v| v.as_str().to_owned())
}

/// The answers to the reports of one batch, sent together once the last is known.
struct Answers {
    acks: Vec<Option<Ack>>,
    left: usize,
}

/// The deliveries of the reports `msg` carried, each answered through `outbox`: a plain
/// message's answer is its [`Ack`], a batch's is the array of its reports' acks, sent once every
/// one was answered (a report left unanswered leaves the whole batch unanswered, and the worker
/// sends its reports again).
fn deliveries(
    reports: Vec<(Report, Option<String>)>,
    batch: bool,
    reply: String,
    outbox: mpsc::UnboundedSender<(String, Outgoing)>,
) -> Vec<Delivery> {
    if !batch {
        return reports
            .into_iter()
            .map(|(report, trace)| {
                let (reply, outbox) = (reply.clone(), outbox.clone());
                Delivery::new(report, trace, move |ack| {
                    if let Ok(body) = serde_json::to_vec(&ack) {
                        let _ = outbox.send((reply, Outgoing::plain(body)));
                    }
                })
            })
            .collect();
    }
    let answers = Arc::new(Mutex::new(Answers { acks: vec![None; reports.len()], left: reports.len() }));
    reports
        .into_iter()
        .enumerate()
        .map(|(i, (report, trace))| {
            let (answers, reply, outbox) = (answers.clone(), reply.clone(), outbox.clone());
            Delivery::new(report, trace, move |ack| {
                let complete = {
                    let mut a = answers.lock();
                    if a.acks[i].replace(ack).is_none() {
                        a.left -= 1;
                    }
                    (a.left == 0).then(|| a.acks.iter().flatten().copied().collect::<Vec<Ack>>())
                };
                if let Some(acks) = complete
                    && let Ok(body) = serde_json::to_vec(&acks)
                {
                    let _ = outbox.send((reply, Outgoing::plain(body)));
                }
            })
        })
        .collect()
}

#[async_trait]
impl Broker for NatsBroker {
    async fn send_command(&self, worker: &WorkerId, cmd: Command) -> Result<(), BrokerError> {
        let trace = match &cmd {
            Command::Assign(a) => a.trace.clone(),
            _ => None,
        };
        let message = self.encode(&cmd, trace).await?;
        self.outbox.send((self.subjects.commands(worker), message)).map_err(|_| BrokerError::Closed)
    }

    async fn commands(&self, worker: &WorkerId) -> Result<BoxStream<'static, Command>, BrokerError> {
        let sub = self.client.subscribe(self.subjects.commands(worker)).await.map_err(internal)?;
        // Past the barrier the server knows the subscription: nothing sent after this returns is missed.
        barrier(&self.client).await?;
        let blobs = self.blobs.clone();
        Ok(sub
            .then(move |msg| {
                let blobs = blobs.clone();
                async move {
                    let commands = unpack::<Command>(&blobs, &msg).await.unwrap_or_else(|e| {
                        tracing::warn!(error = %format!("{e:#}"), "dropped undecodable commands");
                        Vec::new()
                    });
                    let commands = commands.into_iter().map(|(mut cmd, trace)| {
                        if let Command::Assign(a) = &mut cmd {
                            a.trace = trace;
                        }
                        cmd
                    });
                    futures::stream::iter(commands)
                }
            })
            .flatten()
            .boxed())
    }

    async fn report(&self, report: Report) -> Result<Ack, BrokerError> {
        let message = self.encode(&report, crate::trace::current()).await?;
        let (answer, answered) = oneshot::channel();
        self.reports.send((message, answer)).map_err(|_| BrokerError::Closed)?;
        answered.await.map_err(|_| BrokerError::Closed)?
    }

    async fn reports(&self) -> Result<BoxStream<'static, Delivery>, BrokerError> {
        let sub = self.client.subscribe(self.subjects.reports()).await.map_err(internal)?;
        barrier(&self.client).await?;
        let blobs = self.blobs.clone();
        let outbox = self.outbox.clone();
        Ok(sub
            .then(move |msg| {
                let (blobs, outbox) = (blobs.clone(), outbox.clone());
                async move {
                    let batch = is_batch(&msg);
                    let reports = unpack::<Report>(&blobs, &msg).await.map_err(|e| {
                        tracing::warn!(error = %format!("{e:#}"), "dropped undecodable reports");
                    });
                    let delivered = match (reports, msg.reply) {
                        (Ok(reports), Some(reply)) => deliveries(reports, batch, reply.to_string(), outbox),
                        _ => Vec::new(),
                    };
                    futures::stream::iter(delivered)
                }
            })
            .flatten()
            .boxed())
    }

    fn publish_event(&self, event: JobEvent) {
        match serde_json::to_vec(&event) {
            Ok(body) => {
                let _ = self.outbox.send((self.subjects.events(), Outgoing::plain(body)));
            }
            Err(e) => tracing::warn!(error = %e, "could not encode a job event"),
        }
    }

    fn events(&self) -> BoxStream<'static, Observed> {
        observe(&self.events)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::state::{Checkpoint, FencedUpdate, JobUpdate};

    /// The NATS server of the tests (`NIYANTA_TEST_NATS_URL`, default the local one).
    pub(crate) fn nats_url() -> String {
        std::env::var("NIYANTA_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
    }

    async fn pair() -> anyhow::Result<(Arc<NatsBroker>, Arc<NatsBroker>, tempfile::TempDir)> {
        let dir = tempfile::tempdir()?;
        let ns = format!("t{}", uuid::Uuid::new_v4().simple());
        let blobs = Blobs::local(dir.path())?;
        let a = NatsBroker::connect(&nats_url(), &ns, blobs.clone()).await?;
        let b = NatsBroker::connect(&nats_url(), &ns, blobs).await?;
        Ok((Arc::new(a), Arc::new(b), dir))
    }

    #[tokio::test]
    async fn reports_commands_and_events_cross_processes_and_large_payloads_spill() -> anyhow::Result<()> {
        let (coord, worker, dir) = pair().await?;

        // No coordinator subscribed yet: a report fails fast instead of hanging.
        let info = WorkerInfo { id: WorkerId("w1".into()), slots: 2, ..WorkerInfo::default() };
        assert!(worker.report(Report::Register(info.clone())).await.is_err());

        let mut reports = coord.reports().await?;
        let w = worker.clone();
        let sent = tokio::spawn(async move { w.report(Report::Heartbeat { info, running: vec![] }).await });
        let d = tokio::time::timeout(Duration::from_secs(5), reports.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("none"))?;
        assert!(matches!(&d.report, Report::Heartbeat { info, .. } if info.id.0 == "w1" && info.slots == 2));
        d.ack(Ack::Stale);
        assert_eq!(sent.await??, Ack::Stale);

        // A 3 MiB checkpoint is over NATS's 1 MiB payload limit: it travels through blob storage.
        let state: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
        let update = FencedUpdate {
            job_id: JobId::new(),
            epoch: 4,
            update: JobUpdate::Checkpoint(Checkpoint { seq: 0, state: state.clone(), ..Checkpoint::default() }),
        };
        let report = Report::Job { worker: WorkerId("w1".into()), update: update.clone() };
        let w = worker.clone();
        let sent = tokio::spawn(async move { w.report(report).await });
        let d = tokio::time::timeout(Duration::from_secs(5), reports.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("none"))?;
        assert!(matches!(&d.report, Report::Job { update: u, .. } if *u == update));
        d.ack(Ack::Ok);
        assert_eq!(sent.await??, Ack::Ok);
        // The spilled body was read once and deleted.
        let spill = dir.path().join("spill");
        assert!(!spill.exists() || std::fs::read_dir(&spill)?.next().is_none());

        let wid = WorkerId("w1".into());
        let mut cmds = worker.commands(&wid).await?;
        let job = JobId::new();
        coord.send_command(&wid, Command::Cancel { job_id: job, epoch: 3 }).await?;
        let got = tokio::time::timeout(Duration::from_secs(5), cmds.next()).await?;
        assert_eq!(got, Some(Command::Cancel { job_id: job, epoch: 3 }));

        // Events published by one side reach the subscribers of both, in order.
        let mut seen = worker.events();
        let tenant_id = crate::ids::TenantId::new();
        for seq in 0..3 {
            coord.publish_event(JobEvent { job_id: job, tenant_id, kind: JobEventKind::Checkpoint { seq } });
        }
        for seq in 0..3 {
            let e = tokio::time::timeout(Duration::from_secs(5), seen.next()).await?;
            assert_eq!(
                e,
                Some(Observed::Event(JobEvent { job_id: job, tenant_id, kind: JobEventKind::Checkpoint { seq } }))
            );
        }
        Ok(())
    }

    #[tokio::test]
    async fn bursts_travel_in_batches_in_order_and_each_report_gets_its_own_answer() -> anyhow::Result<()> {
        let (coord, worker, _dir) = pair().await?;
        // A second subscriber to the reports subject sees the messages themselves.
        let mut raw = coord.client.subscribe(coord.subjects.reports()).await?;
        let mut reports = coord.reports().await?;

        // 300 reports sent at once: each sender gets the answer to its own report.
        let jobs: Vec<JobId> = (0..300).map(|_| JobId::new()).collect();
        let mut senders = Vec::new();
        for (i, job_id) in jobs.iter().enumerate() {
            let w = worker.clone();
            let update = FencedUpdate { job_id: *job_id, epoch: i as i64, update: JobUpdate::Running };
            senders.push(tokio::spawn(
                async move { w.report(Report::Job { worker: WorkerId("w1".into()), update }).await },
            ));
        }
        for _ in 0..jobs.len() {
            let d = tokio::time::timeout(Duration::from_secs(5), reports.next())
                .await?
                .ok_or_else(|| anyhow::anyhow!("reports ended"))?;
            let Report::Job { update, .. } = &d.report else { anyhow::bail!("not a job report") };
            // Odd epochs are stale.
            let ack = if update.epoch % 2 == 1 { Ack::Stale } else { Ack::Ok };
            d.ack(ack);
        }
        for (i, s) in senders.into_iter().enumerate() {
            assert_eq!(s.await??, if i % 2 == 1 { Ack::Stale } else { Ack::Ok }, "report {i}");
        }
        let mut messages = 0;
        let mut batches = 0;
        while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(200), raw.next()).await {
            messages += 1;
            batches += usize::from(batch::is_batch(&msg));
        }
        assert!(batches > 0 && messages < 50, "300 reports took {messages} messages, {batches} of them batches");

        // Commands and events published in a burst arrive complete and in order.
        let wid = WorkerId("w1".into());
        let mut cmds = worker.commands(&wid).await?;
        let mut seen = worker.events();
        let tenant_id = crate::ids::TenantId::new();
        for (seq, job_id) in jobs.iter().enumerate() {
            coord.send_command(&wid, Command::Cancel { job_id: *job_id, epoch: seq as i64 }).await?;
            coord.publish_event(JobEvent {
                job_id: *job_id,
                tenant_id,
                kind: JobEventKind::Checkpoint { seq: seq as u32 },
            });
        }
        for (seq, job_id) in jobs.iter().enumerate() {
            let got = tokio::time::timeout(Duration::from_secs(5), cmds.next()).await?;
            assert_eq!(got, Some(Command::Cancel { job_id: *job_id, epoch: seq as i64 }));
            let e = tokio::time::timeout(Duration::from_secs(5), seen.next()).await?;
            let want = JobEvent { job_id: *job_id, tenant_id, kind: JobEventKind::Checkpoint { seq: seq as u32 } };
            assert_eq!(e, Some(Observed::Event(want)));
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_broker_without_events_is_not_sent_them() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let ns = format!("t{}", uuid::Uuid::new_v4().simple());
        let blobs = Blobs::local(dir.path())?;
        let worker = NatsBroker::connect_without_events(&nats_url(), &ns, blobs.clone()).await?;
        let raw = async_nats::connect(nats_url()).await?;
        let subject = format!("niyanta.v1.{ns}.events");
        // Nobody listens on the events subject: the server answers a request with "no responders".
        let asked = raw.request(subject.clone(), Bytes::from_static(b"{}")).await;
        assert!(
            asked.as_ref().is_err_and(|e| e.kind() == async_nats::RequestErrorKind::NoResponders),
            "the worker's broker subscribed to events: {asked:?}"
        );
        // A broker with events listens there (the request now waits for an answer).
        let coord = NatsBroker::connect(&nats_url(), &ns, blobs).await?;
        let asked = tokio::time::timeout(Duration::from_millis(500), raw.request(subject, Bytes::from_static(b"{}")));
        assert!(asked.await.is_err(), "the coordinator's broker did not subscribe to events");
        // It receives a published event; the worker's stream yields nothing.
        let mut seen = coord.events();
        let mut unseen = worker.events();
        let job_id = JobId::new();
        let tenant_id = crate::ids::TenantId::new();
        worker.publish_event(JobEvent { job_id, tenant_id, kind: JobEventKind::Checkpoint { seq: 1 } });
        let got = tokio::time::timeout(Duration::from_secs(5), seen.next()).await?;
        assert!(matches!(got, Some(Observed::Event(ref e)) if e.job_id == job_id), "{got:?}");
        assert!(tokio::time::timeout(Duration::from_millis(200), unseen.next()).await.is_err());
        Ok(())
    }

    #[tokio::test]
    async fn bad_namespaces_and_unreachable_servers_are_clear_errors() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let blobs = Blobs::local(dir.path())?;
        let err = NatsBroker::connect(&nats_url(), "a.b", blobs.clone()).await.err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("namespace")));
        let err = NatsBroker::connect("nats://127.0.0.1:1", "x", blobs).await.err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("cannot reach NATS")), "unreachable server accepted");
        Ok(())
    }
}
