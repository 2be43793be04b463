//! Applying workers' reports: commit first, then acknowledge; a stale lease epoch changes nothing.

use std::collections::HashMap;
use std::time::Instant;

use crate::broker::{Ack, Delivery, JobEvent, JobEventKind, Report};
use crate::state::{JobState, Outcome};

use super::{Coordinator, WorkerSlots};

impl Coordinator {
    pub(super) async fn handle(&self, d: Delivery) {
        let ack = match self.apply(&d.report).await {
            Ok(ack) => ack,
            Err(e) => {
                // Not acknowledged: the worker retries the report.
                tracing::error!(error = %format!("{e:#}"), "could not apply a report");
                return;
            }
        };
        d.ack(ack);
    }

    fn fenced(ok: bool) -> Ack {
        if ok { Ack::Ok } else { Ack::Stale }
    }

    async fn apply(&self, report: &Report) -> anyhow::Result<Ack> {
        Ok(match report {
            Report::Register { worker, slots } => {
                if let Ok(mut w) = self.workers.lock() {
                    w.insert(
                        worker.clone(),
                        WorkerSlots { slots: *slots, running: HashMap::new(), last_seen: Instant::now() },
                    );
                }
                tracing::info!(%worker, slots, "worker registered");
                self.wake.notify_one();
                Ack::Ok
            }
            Report::Heartbeat { worker, .. } => {
                match self.workers.lock().ok().and_then(|mut w| w.get_mut(worker).map(|w| w.last_seen = Instant::now()))
                {
                    Some(()) => Ack::Ok,
                    // Unknown (expired) worker: its leases are void; it must register again.
                    None => Ack::Stale,
                }
            }
            Report::Started { job_id, epoch } => {
                let job = self.state.mark_running(*job_id, *epoch).await?;
                if let Some(job) = &job {
                    self.publish_state(job);
                }
                Self::fenced(job.is_some())
            }
            Report::Progress { job_id, epoch, progress } => {
                let ok = self.state.record_progress(*job_id, *epoch, progress).await?;
                if ok {
                    self.publish_job_event(*job_id, JobEventKind::Progress(progress.clone()));
                }
                Self::fenced(ok)
            }
            Report::Checkpoint { job_id, epoch, checkpoint } => {
                let seq = self.state.save_checkpoint(*job_id, *epoch, checkpoint).await?;
                if let Some(seq) = seq {
                    self.publish_job_event(*job_id, JobEventKind::Checkpoint { seq });
                }
                Self::fenced(seq.is_some())
            }
            Report::Logs { job_id, epoch, lines } => {
                let ok = self.state.append_logs(*job_id, *epoch, lines).await?;
                Self::fenced(ok)
            }
            Report::Finished { worker, job_id, epoch, outcome, usage } => {
                let job = self.state.finish_attempt(*job_id, *epoch, outcome, *usage).await?;
                if let Ok(mut w) = self.workers.lock()
                    && let Some(w) = w.get_mut(worker)
                {
                    w.running.remove(job_id);
                }
                self.wake.notify_one();
                match job {
                    Some(job) => {
                        if matches!(outcome, Outcome::Suspended) {
                            debug_assert_eq!(job.state, JobState::Queued);
                        }
                        self.publish_state(&job);
                        Ack::Ok
                    }
                    None => Ack::Stale,
                }
            }
        })
    }

    fn publish_job_event(&self, job_id: crate::ids::JobId, kind: JobEventKind) {
        // Events carry the tenant so subscribers can filter; the lease table knows it.
        let tenant = self.workers.lock().ok().and_then(|w| w.values().find_map(|w| w.running.get(&job_id).copied()));
        if let Some(tenant_id) = tenant {
            self.broker.publish_event(JobEvent { job_id, tenant_id, kind });
        }
    }
}
