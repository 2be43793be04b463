//! Applying workers' reports: commit first, then acknowledge; a stale lease epoch changes nothing.
//! Reports that arrive together are applied in one transaction.

use crate::broker::{Ack, Delivery, JobEvent, JobEventKind, Report};
use crate::ids::{JobId, WorkerId};
use crate::state::{Applied, FencedUpdate, JobUpdate};

use super::Coordinator;

impl Coordinator {
    /// Handles a batch of deliveries: membership reports in memory, job updates in one
    /// transaction. When the transaction fails nothing is acknowledged, so workers retry.
    /// Heartbeats (each reconciles an inventory against the leases, a query) are handled after
    /// the job updates are answered, so they do not delay them.
    pub(super) async fn handle_batch(&self, batch: Vec<Delivery>) {
        let mut heartbeats = Vec::new();
        self.handle_job_reports(batch, &mut heartbeats).await;
        for d in heartbeats {
            if let Report::Heartbeat { info, running } = &d.report
                && let Some(ack) = self.heartbeat(info, running).await
            {
                d.ack(ack);
            }
        }
    }

    /// [`Coordinator::handle_batch`] but for heartbeats, which go to `heartbeats`.
    async fn handle_job_reports(&self, batch: Vec<Delivery>, heartbeats: &mut Vec<Delivery>) {
        let mut jobs: Vec<(Delivery, WorkerId, tracing::Span)> = Vec::new();
        let mut updates: Vec<FencedUpdate> = Vec::new();
        for d in batch {
            match &d.report {
                // Unanswered (`None`) when nothing could be committed: the worker sends it again.
                Report::Register(info) => {
                    if let Some(ack) = self.register(info).await {
                        d.ack(ack);
                    }
                }
                Report::Gone(worker) => {
                    if let Some(ack) = self.gone(worker).await {
                        d.ack(ack);
                    }
                }
                Report::Heartbeat { .. } => heartbeats.push(d),
                Report::Job { worker, update } => {
                    // A child of the worker's `job` span (the report's trace context); it lasts
                    // from arrival to the answer, the commit included.
                    let span = tracing::info_span!("report", job_id = %update.job_id, worker_id = %worker,
                        epoch = update.epoch, update = update.update.kind(), trace_id = tracing::field::Empty);
                    crate::trace::continue_from(&span, d.trace.as_deref());
                    updates.push(update.clone());
                    let worker = worker.clone();
                    jobs.push((d, worker, span));
                }
            }
        }
        if updates.is_empty() {
            return;
        }
        let applied = match self.state.apply_updates(&updates).await {
            Ok(a) => a,
            Err(e) => {
                crate::metrics::database_error();
                // Not acknowledged: the workers send these reports again.
                tracing::error!(error = %format!("{e:#}"), reports = updates.len(), "could not apply reports");
                return;
            }
        };
        for (((d, worker, span), update), applied) in jobs.into_iter().zip(&updates).zip(applied) {
            let _in_span = span.enter();
            let ack = self.after_commit(&worker, update, applied);
            d.ack(ack);
        }
    }

    /// Events and lease bookkeeping for a committed update; the answer to the worker.
    fn after_commit(&self, worker: &WorkerId, update: &FencedUpdate, applied: Applied) -> Ack {
        let finished = matches!(update.update, JobUpdate::Finish { .. });
        if finished {
            if let Ok(mut w) = self.workers.lock()
                && let Some(w) = w.get_mut(worker)
            {
                w.running.remove(&update.job_id);
            }
            self.wake.notify_one();
        }
        match applied {
            Applied::Stale => Ack::Stale,
            Applied::Stored => {
                if let JobUpdate::Progress(p) = &update.update {
                    self.publish_job_event(update.job_id, JobEventKind::Progress(p.clone()));
                }
                Ack::Ok
            }
            Applied::Checkpoint(seq) => {
                self.publish_job_event(update.job_id, JobEventKind::Checkpoint { seq });
                Ack::Ok
            }
            Applied::Job(job) => {
                self.publish_state(&job);
                Ack::Ok
            }
        }
    }

    fn publish_job_event(&self, job_id: JobId, kind: JobEventKind) {
        // Events carry the tenant so subscribers can filter; the lease table knows it.
        let tenant =
            self.workers.lock().ok().and_then(|w| w.values().find_map(|w| w.running.get(&job_id).map(|h| h.tenant_id)));
        if let Some(tenant_id) = tenant {
            self.broker.publish_event(JobEvent { job_id, tenant_id, kind });
        }
    }
}
