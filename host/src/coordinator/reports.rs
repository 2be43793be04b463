//! Applying workers' reports: commit first, then acknowledge; a stale lease epoch changes nothing.
//! Reports that arrive together are applied in one transaction, and a `Running` report that
//! arrives with its attempt's result is applied as part of the result.

use std::collections::HashMap;

use crate::broker::{Ack, Delivery, JobEvent, JobEventKind, Report};
use crate::ids::{JobId, WorkerId};
use crate::state::{Applied, FencedUpdate, JobRecord, JobState, JobUpdate};

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
        // A `Running` report followed in the same batch by its attempt's result is answered by
        // that result: one update of the job's row instead of two.
        let merged = merged_starts(&updates);
        let applying: Vec<FencedUpdate> =
            updates.iter().zip(&merged).filter(|(_, m)| m.is_none()).map(|(u, _)| u.clone()).collect();
        let applied = match self.state.apply_updates(&applying).await {
            Ok(a) => a,
            Err(e) => {
                crate::metrics::database_error();
                // Not acknowledged: the workers send these reports again.
                tracing::error!(error = %format!("{e:#}"), reports = updates.len(), "could not apply reports");
                return;
            }
        };
        // The answers in the batch's order: a merged `Running` report takes its result's.
        let mut applied = applied.into_iter();
        let mut answers: Vec<Option<Applied>> =
            merged.iter().map(|m| if m.is_none() { applied.next() } else { None }).collect();
        for (i, m) in merged.iter().enumerate() {
            if let Some(result) = *m {
                let ok = matches!(answers[result], Some(Applied::Job(_)));
                answers[i] = Some(if ok { Applied::Stored } else { Applied::Stale });
            }
        }
        for (((d, worker, span), update), applied) in jobs.into_iter().zip(&updates).zip(answers) {
            let _in_span = span.enter();
            let ack = self.after_commit(&worker, update, applied.unwrap_or(Applied::Stale));
            d.ack(ack);
        }
    }

    /// Events and lease bookkeeping for a committed update; the answer to the worker.
    fn after_commit(&self, worker: &WorkerId, update: &FencedUpdate, applied: Applied) -> Ack {
        let finished = matches!(update.update, JobUpdate::Finish { .. });
        let mut unstarted = false;
        if let Some(w) = self.workers.lock().get_mut(worker) {
            match (&update.update, &applied) {
                (JobUpdate::Finish { .. }, _) => {
                    unstarted = w.running.remove(&update.job_id).is_some_and(|h| !h.started);
                    if matches!(applied, Applied::Job(_)) {
                        w.ended.insert((update.job_id, update.epoch), std::time::Instant::now());
                    }
                }
                (JobUpdate::Running, Applied::Job(_)) => {
                    if let Some(h) = w.running.get_mut(&update.job_id) {
                        h.started = true;
                    }
                }
                _ => {}
            }
        }
        if finished {
            // A slot is free; an attempt that did not end its job (suspended, to be retried) has
            // put the job back in the queue.
            match &applied {
                Applied::Job(job) if !job.state.is_terminal() => self.queue_changed(),
                _ => self.wake.notify_one(),
            }
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
                if finished && unstarted {
                    // Its `Running` report was merged into the result, or comes after it.
                    self.publish_state(&JobRecord {
                        state: JobState::Running,
                        failure_class: None,
                        failure_message: None,
                        finished_at_ms: None,
                        ..(*job).clone()
                    });
                }
                self.publish_state(&job);
                Ack::Ok
            }
        }
    }

    fn publish_job_event(&self, job_id: JobId, kind: JobEventKind) {
        // Events carry the tenant so subscribers can filter; the lease table knows it.
        let tenant = self.workers.lock().values().find_map(|w| w.running.get(&job_id).map(|h| h.tenant_id));
        if let Some(tenant_id) = tenant {
            self.broker.publish_event(JobEvent { job_id, tenant_id, kind });
        }
    }
}

/// For each update of `list`: the index of the later result (`Finish`) of the same job and epoch
/// when the update is a `Running` report and the list holds one, else `None`. The result sets the
/// job's start time too, so the `Running` update is not applied on its own.
fn merged_starts(list: &[FencedUpdate]) -> Vec<Option<usize>> {
    let mut results: HashMap<(JobId, i64), usize> = HashMap::new();
    let mut out = vec![None; list.len()];
    for (i, u) in list.iter().enumerate().rev() {
        match u.update {
            JobUpdate::Finish { .. } => {
                results.insert((u.job_id, u.epoch), i);
            }
            JobUpdate::Running => out[i] = results.get(&(u.job_id, u.epoch)).copied(),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{FailureClass, Outcome, OutputRef, Usage};

    #[test]
    fn a_start_merges_into_its_own_attempts_later_result_only() {
        let (a, b) = (JobId::new(), JobId::new());
        let u = |job_id, epoch, update| FencedUpdate { job_id, epoch, update };
        let finish = || JobUpdate::Finish {
            outcome: Outcome::Failed { class: FailureClass::Trap, message: "x".into(), output: OutputRef::default() },
            usage: Usage::default(),
        };
        let list = [
            u(a, 1, JobUpdate::Running),
            u(b, 1, JobUpdate::Running),
            u(a, 1, JobUpdate::Progress(Default::default())),
            u(b, 2, finish()),
            u(a, 1, finish()),
            u(b, 2, JobUpdate::Running),
        ];
        // `b`'s start is of another epoch than its result, and its second start comes after it.
        assert_eq!(merged_starts(&list), [Some(4), None, None, None, None, None]);
        assert!(merged_starts(&[]).is_empty());
    }
}
