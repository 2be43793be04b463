//! The worker: runs assigned jobs in its slots.
//!
//! A worker registers (which voids any lease an earlier process under its id held), heartbeats
//! every second with its inventory of running (job, epoch) pairs, and for each [`Assignment`]
//! fetches the component by digest (checked against its SHA-256), prepares it once per digest,
//! runs the attempt in the [`Runtime`] and reports the outcome.

mod io;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::Mutex;
use tracing::Instrument;

use crate::blobs::Blobs;
use crate::broker::{Ack, Assignment, Broker, Command, Report, WorkerInfo};
use crate::ids::{JobId, WorkerId};
use crate::runtime::{Interrupt, JobLimits, JobSpec, Runtime, Signals};
use crate::state::{FailureClass, FencedUpdate, JobUpdate, Outcome, OutputRef, Usage};

/// Settings of a worker.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Jobs run at once.
    pub slots: u32,
    /// Time between heartbeats.
    pub heartbeat: Duration,
    /// How long an interrupted job may take to stop before it is stopped by force.
    pub grace: Duration,
    /// Labels for placement.
    pub labels: BTreeMap<String, String>,
}

/// A worker process's job runner.
pub struct Worker {
    id: WorkerId,
    info: WorkerInfo,
    config: WorkerConfig,
    runtime: Arc<Runtime>,
    broker: Arc<dyn Broker>,
    blobs: Blobs,
    running: Mutex<HashMap<JobId, (i64, Arc<Signals>)>>,
    /// Set once draining began: no new assignment is taken, heartbeats offer no slots.
    draining: std::sync::atomic::AtomicBool,
    tasks: tokio::sync::Mutex<tokio::task::JoinSet<()>>,
}

/// A report of a change to a job `worker` holds under lease `epoch`.
pub(crate) fn job_report(worker: &WorkerId, job_id: JobId, epoch: i64, update: JobUpdate) -> Report {
    Report::Job { worker: worker.clone(), update: FencedUpdate { job_id, epoch, update } }
}

/// Sends a report until the coordinator answers it (the broker may be briefly unreachable).
pub(crate) async fn send_report(broker: &dyn Broker, report: Report) -> Ack {
    let mut delay = Duration::from_millis(50);
    loop {
        match broker.report(report.clone()).await {
            Ok(ack) => return ack,
            Err(e) => {
                crate::metrics::broker_error();
                tracing::warn!(error = %e, "report not acknowledged; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

impl Worker {
    /// A fresh id `{prefix}-{8 random hex digits}`.
    pub fn generate_id(prefix: &str) -> WorkerId {
        WorkerId(format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]))
    }

    /// A worker named `id`.
    pub fn new(
        id: WorkerId,
        config: WorkerConfig,
        runtime: Arc<Runtime>,
        broker: Arc<dyn Broker>,
        blobs: Blobs,
    ) -> Arc<Self> {
        let info = WorkerInfo {
            id: id.clone(),
            slots: config.slots,
            labels: config.labels.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        Arc::new(Self {
            id,
            info,
            config,
            runtime,
            broker,
            blobs,
            running: Mutex::new(HashMap::new()),
            draining: std::sync::atomic::AtomicBool::new(false),
            tasks: tokio::sync::Mutex::new(tokio::task::JoinSet::new()),
        })
    }

    /// This worker's id.
    pub fn id(&self) -> &WorkerId {
        &self.id
    }

    /// Registers and serves commands until the broker closes or a `Drain` command was carried
    /// out (then `Ok`).
    pub async fn run(self: Arc<Self>) -> anyhow::Result<()> {
        let mut commands = self.broker.commands(&self.id).await?;
        send_report(self.broker.as_ref(), Report::Register(self.info.clone())).await;
        let this = self.clone();
        let heartbeat = tokio::spawn(async move { this.heartbeat_loop().await });
        while let Some(cmd) = commands.next().await {
            match cmd {
                Command::Drain => {
                    tracing::info!(worker = %self.id, "drain requested by the coordinator");
                    self.drain().await;
                    break;
                }
                Command::Assign(a) => {
                    if self.draining.load(std::sync::atomic::Ordering::SeqCst) || !self.claim_slot(&a) {
                        continue;
                    }
                    let this = self.clone();
                    let mut tasks = self.tasks.lock().await;
                    // Finished tasks stay in the set until joined: reap them as we go.
                    while tasks.try_join_next().is_some() {}
                    tasks.spawn(async move { this.run_job(*a).await });
                }
                Command::Cancel { job_id, epoch } => self.interrupt(job_id, Some(epoch), Interrupt::Cancel),
                Command::Abandon { job_id, epoch } => {
                    let signals = self.running.lock().get(&job_id).cloned();
                    if let Some((e, signals)) = signals
                        && e == epoch
                    {
                        tracing::warn!(%job_id, epoch, "running without a valid lease; abandoning");
                        signals.abandon();
                    }
                }
            }
        }
        heartbeat.abort();
        Ok(())
    }

    async fn heartbeat_loop(&self) {
        let mut tick = tokio::time::interval(self.config.heartbeat);
        loop {
            tick.tick().await;
            let running = self.running.lock().iter().map(|(id, (epoch, _))| (*id, *epoch)).collect();
            let ack = send_report(self.broker.as_ref(), Report::Heartbeat { info: self.offer(), running }).await;
            if ack == Ack::Stale {
                // The coordinator declared this worker lost (it was silent past the lease
                // timeout): its leases are void and its jobs are queued again. Stop them and
                // register afresh, holding no lease.
                tracing::warn!(worker = %self.id, "leases lost; stopping their jobs and registering again");
                let all: Vec<Arc<Signals>> = self.running.lock().values().map(|(_, s)| s.clone()).collect();
                all.iter().for_each(|s| s.abandon());
                send_report(self.broker.as_ref(), Report::Register(self.info.clone())).await;
            }
        }
    }

    /// What this worker offers now: no slots once draining.
    fn offer(&self) -> WorkerInfo {
        let mut info = self.info.clone();
        if self.draining.load(std::sync::atomic::Ordering::SeqCst) {
            info.slots = 0;
        }
        info
    }

    /// Enters an assignment in the inventory; `false` for a repeat of one already running under
    /// the same or a newer epoch (a re-sent assignment).
    fn claim_slot(&self, a: &Assignment) -> bool {
        let mut r = self.running.lock();
        if r.get(&a.job_id).is_some_and(|(epoch, _)| *epoch >= a.epoch) {
            return false;
        }
        r.insert(a.job_id, (a.epoch, Arc::new(Signals::default())));
        true
    }

    fn interrupt(&self, job: JobId, epoch: Option<i64>, why: Interrupt) {
        let Some((e, signals)) = self.running.lock().get(&job).cloned() else {
            return;
        };
        if epoch.is_some_and(|epoch| epoch != e) {
            return;
        }
        signals.interrupt(why);
        let grace = self.config.grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            signals.force_stop();
        });
    }

    /// Drains: offers no more slots, asks every running job to checkpoint and stop (interrupt
    /// reason `shutdown`), waits for them to report (at most the grace period, then they are
    /// stopped by force), and tells the coordinator it is gone, so whatever it still held is
    /// queued again at once rather than after the lease timeout.
    pub async fn drain(&self) {
        self.draining.store(true, std::sync::atomic::Ordering::SeqCst);
        let running: Vec<(JobId, i64)> = self.running.lock().iter().map(|(id, (e, _))| (*id, *e)).collect();
        // Offer no slot from now on, before the suspended jobs are queued again.
        let _ = tokio::time::timeout(
            self.config.grace,
            send_report(self.broker.as_ref(), Report::Heartbeat { info: self.offer(), running: running.clone() }),
        )
        .await;
        for (job, _) in running {
            self.interrupt(job, None, Interrupt::Shutdown);
        }
        let mut tasks = self.tasks.lock().await;
        while tasks.join_next().await.is_some() {}
        let _ =
            tokio::time::timeout(self.config.grace, send_report(self.broker.as_ref(), Report::Gone(self.id.clone())))
                .await;
    }

    async fn run_job(self: Arc<Self>, a: Assignment) {
        let span = tracing::info_span!("job", job_id = %a.job_id, tenant_id = %a.tenant_id, worker_id = %self.id,
            attempt = a.attempt, trace_id = tracing::field::Empty);
        // The leader's `assign` span (NATS header) is the parent: reports sent from this span
        // carry it on to the coordinator.
        crate::trace::continue_from(&span, a.trace.as_deref());
        self.clone().run_job_in_span(a).instrument(span).await;
    }

    async fn run_job_in_span(self: Arc<Self>, a: Assignment) {
        let signals = self.running.lock().get(&a.job_id).filter(|(e, _)| *e == a.epoch).map(|(_, s)| s.clone());
        // A newer lease on the same job replaced this one before it started.
        let Some(signals) = signals else { return };
        let outcome = self.attempt(&a, signals).await;
        {
            // Only this attempt's entry: a newer lease on the same job may have replaced it.
            let mut r = self.running.lock();
            if r.get(&a.job_id).is_some_and(|(epoch, _)| *epoch == a.epoch) {
                r.remove(&a.job_id);
            }
        }
        if let Some((outcome, usage)) = outcome {
            let report = job_report(&self.id, a.job_id, a.epoch, JobUpdate::Finish { outcome, usage });
            if send_report(self.broker.as_ref(), report).await == Ack::Stale {
                tracing::warn!(job_id = %a.job_id, "result refused: the lease moved to another worker");
            }
        }
    }

    /// Runs one attempt; `None` when the lease was lost (nothing to report).
    ///
    /// The `Running` report travels while the component is prepared and the guest starts, so a
    /// short job does not wait a round trip to the coordinator before it runs, and the result
    /// does not wait for its answer either: the coordinator fences both by the lease epoch, and a
    /// result applied to a job still `assigned` also marks it started. The `Running` report is
    /// queued before the guest starts, so the result, queued after it, reaches the coordinator
    /// after it or in the same batch (where the two are applied as one update); if a retry
    /// reorders them, the late `Running` report is answered `Stale` and changes nothing. Its
    /// answer still gates everything that could touch another attempt's data: output parts wait
    /// for it, and a `Stale` answer (the job was queued again between its claim and now) abandons
    /// the attempt, which then reports nothing.
    async fn attempt(&self, a: &Assignment, signals: Arc<Signals>) -> Option<(Outcome, Usage)> {
        let (confirm_tx, confirmed) = tokio::sync::watch::channel(None);
        let mut confirm = {
            let started = job_report(&self.id, a.job_id, a.epoch, JobUpdate::Running);
            let (broker, signals) = (self.broker.clone(), signals.clone());
            Box::pin(
                async move {
                    let ok = send_report(broker.as_ref(), started).await == Ack::Ok;
                    if !ok {
                        signals.abandon();
                    }
                    confirm_tx.send_replace(Some(ok));
                }
                .in_current_span(),
            )
        };
        // Polled once here, the report is queued (see `Broker::report`) before the result can
        // be; the answer is awaited on its own task.
        if futures::poll!(&mut confirm).is_pending() {
            tokio::spawn(confirm);
        }
        let outcome = self.run_attempt(a, signals, confirmed.clone()).await;
        // Refused already: the job was queued again, and another attempt may hold it.
        if *confirmed.borrow() == Some(false) {
            return None;
        }
        outcome
    }

    async fn run_attempt(
        &self,
        a: &Assignment,
        signals: Arc<Signals>,
        confirmed: tokio::sync::watch::Receiver<Option<bool>>,
    ) -> Option<(Outcome, Usage)> {
        let blobs = self.blobs.clone();
        let digest = a.digest;
        let pre = self.runtime.prepare(digest, || async move { Ok(blobs.component(digest).await?) }).await;
        let pre = match pre {
            Ok(pre) => pre,
            Err(e) => {
                let message = format!("the component {digest} could not be loaded: {e:#}");
                tracing::error!(%message);
                let output = OutputRef::default();
                let usage = Usage { fuel_used: a.fuel_used_before, ..Usage::default() };
                return Some((Outcome::Failed { class: FailureClass::HostError, message, output }, usage));
            }
        };
        let spec = JobSpec {
            id: a.job_id,
            attempt: a.attempt,
            params: a.params.clone(),
            input_size: a.input.size(),
            resume: a.resume.clone(),
            fuel_used_before: a.fuel_used_before,
            limits: JobLimits {
                fuel: a.limits.fuel,
                memory_bytes: a.limits.memory_bytes,
                wall_clock: Duration::from_millis(a.limits.wall_clock_ms),
                output_bytes: a.limits.output_bytes,
                checkpoint_bytes: a.limits.checkpoint_bytes,
            },
        };
        let io = io::WorkerIo::new(
            self.id.clone(),
            a.job_id,
            a.epoch,
            a.input.clone(),
            self.blobs.clone(),
            self.broker.clone(),
            confirmed,
        );
        let pending = io.pending_sender();
        let result = self.runtime.run(&pre, spec, Box::new(io), signals).await;
        pending.send().await;
        crate::metrics::FUEL.inc_by(result.usage.fuel_used.saturating_sub(a.fuel_used_before));
        tracing::debug!(elapsed_ms = result.elapsed.as_millis() as u64, fuel = result.usage.fuel_used, "attempt ended");
        result.outcome.map(|o| (o, result.usage))
    }
}
