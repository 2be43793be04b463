//! Scheduling: queued jobs onto free worker slots; lease expiry of silent workers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::broker::{Assignment, Command, Limits};
use crate::ids::{JobId, TenantId, WorkerId};
use crate::state::{Claimed, Tenant};

use super::Coordinator;

impl Coordinator {
    /// Assigns jobs whenever something may have changed (a submission, a finished job, a new
    /// worker), and at least once a second.
    pub(super) async fn schedule_loop(self: Arc<Self>) -> anyhow::Result<()> {
        loop {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.wake.notified()).await;
            loop {
                match self.schedule_round().await {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "scheduling round failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                }
            }
        }
    }

    fn free_slots(&self) -> Vec<(WorkerId, u32)> {
        let Ok(workers) = self.workers.lock() else { return Vec::new() };
        let mut free: Vec<(WorkerId, u32)> = workers
            .iter()
            .map(|(id, w)| (id.clone(), w.info.slots.saturating_sub(w.running.len() as u32)))
            .filter(|(_, n)| *n > 0)
            .collect();
        // Most free slots first, so load spreads across workers.
        free.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        free
    }

    async fn tenant(&self, id: TenantId) -> anyhow::Result<Option<Tenant>> {
        if let Some(t) = self.tenants.lock().ok().and_then(|t| t.get(&id).cloned()) {
            return Ok(Some(t));
        }
        let t = self.state.get_tenant(id).await?;
        if let Some(t) = &t {
            self.remember_tenant(t);
        }
        Ok(t)
    }

    /// One round: fills free slots with the best queued jobs. Returns whether every free slot was
    /// filled (so another round may find more).
    async fn schedule_round(&self) -> anyhow::Result<bool> {
        let Some(lead) = self.leadership() else { return Ok(false) };
        let free = self.free_slots();
        let total: u32 = free.iter().map(|(_, n)| n).sum();
        if total == 0 {
            return Ok(false);
        }
        // Remaining concurrency per tenant with running jobs; tenants at their limit are skipped.
        let mut allowance: HashMap<TenantId, u32> = HashMap::new();
        let mut skip = Vec::new();
        for (tenant_id, active) in self.state.active_by_tenant().await? {
            let limit = match self.tenant(tenant_id).await? {
                Some(t) => self.tier(&t).concurrent_jobs,
                None => 0,
            };
            let left = limit.saturating_sub(active);
            if left == 0 {
                skip.push(tenant_id);
            }
            allowance.insert(tenant_id, left);
        }
        let candidates = self.state.queued_candidates(total.saturating_mul(2).max(16), &skip).await?;
        let mut chosen: Vec<JobId> = Vec::new();
        for (job, tenant_id) in candidates {
            if chosen.len() as u32 >= total {
                break;
            }
            let left = match allowance.get_mut(&tenant_id) {
                Some(left) => left,
                None => {
                    let limit = match self.tenant(tenant_id).await? {
                        Some(t) => self.tier(&t).concurrent_jobs,
                        None => 0,
                    };
                    allowance.entry(tenant_id).or_insert(limit)
                }
            };
            if *left > 0 {
                *left -= 1;
                chosen.push(job);
            }
        }
        if chosen.is_empty() {
            return Ok(false);
        }
        let filled = chosen.len() as u32 == total;
        let mut rest = chosen.as_slice();
        for (worker, n) in free {
            if rest.is_empty() {
                break;
            }
            let (mine, others) = rest.split_at((n as usize).min(rest.len()));
            rest = others;
            let claimed = self.state.assign_jobs(lead.term, &worker, mine).await?;
            for c in claimed {
                self.dispatch(&worker, c).await?;
            }
        }
        Ok(filled)
    }

    async fn dispatch(&self, worker: &WorkerId, c: Claimed) -> anyhow::Result<()> {
        let job = c.job;
        let tier = match self.tenant(job.tenant_id).await? {
            Some(t) => self.tier(&t),
            None => super::no_tier(),
        };
        if let Ok(mut w) = self.workers.lock()
            && let Some(w) = w.get_mut(worker)
        {
            w.running.insert(job.id, job.tenant_id);
        }
        self.publish_state(&job);
        let assignment = Assignment {
            job_id: job.id,
            tenant_id: job.tenant_id,
            workload: job.workload.clone(),
            digest: job.digest,
            attempt: job.attempt,
            epoch: job.lease_epoch,
            params: job.params.clone(),
            input: job.input.clone(),
            fuel_used_before: c.checkpoint.as_ref().map_or(job.fuel_used, |cp| cp.fuel_used),
            resume: c.checkpoint,
            limits: Limits {
                fuel: tier.fuel_per_job,
                memory_bytes: tier.memory_bytes,
                wall_clock_ms: tier.wall_clock_ms,
                output_bytes: tier.output_bytes,
                checkpoint_bytes: tier.checkpoint_bytes,
            },
        };
        if let Err(e) = self.broker.send_command(worker, Command::Assign(Box::new(assignment))).await {
            // The worker is gone; its lease expires and the job is queued again.
            tracing::warn!(job_id = %job.id, %worker, error = %e, "could not send assignment");
        }
        Ok(())
    }

    /// Every second: workers silent for the lease timeout lose their leases, and their jobs go
    /// back to the queue (resuming from their last checkpoint). The requeue commits before the
    /// workers are forgotten, so a late report of theirs (answered `Stale` only once they are
    /// forgotten) can no longer end a job that was requeued. A new leader first waits one lease
    /// timeout for the workers' heartbeats, then requeues the jobs of workers it never heard from.
    pub(super) async fn expire_loop(self: Arc<Self>) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            let Some(lead) = self.leadership() else { continue };
            if !lead.swept && lead.since.elapsed() >= self.config.lease_timeout {
                let live: Vec<WorkerId> = self.workers.lock().map(|w| w.keys().cloned().collect()).unwrap_or_default();
                match self.state.requeue_orphans(lead.term, &live).await {
                    Ok(jobs) => {
                        if !jobs.is_empty() {
                            tracing::warn!(jobs = jobs.len(), "queued again the jobs of workers that did not show up");
                            self.wake.notify_one();
                        }
                        self.mark_swept();
                    }
                    Err(e) => tracing::error!(error = %e, "could not requeue the jobs of workers that did not show up"),
                }
                continue;
            }
            let (expired, live): (Vec<WorkerId>, Vec<WorkerId>) = {
                let Ok(workers) = self.workers.lock() else { continue };
                let now = Instant::now();
                workers
                    .iter()
                    .map(|(id, w)| (id.clone(), now.duration_since(w.last_seen) > self.config.lease_timeout))
                    .fold((Vec::new(), Vec::new()), |(mut dead, mut live), (id, is_dead)| {
                        if is_dead {
                            dead.push(id)
                        } else {
                            live.push(id)
                        }
                        (dead, live)
                    })
            };
            if expired.is_empty() {
                continue;
            }
            match self.state.requeue_orphans(lead.term, &live).await {
                Ok(jobs) => {
                    if let Ok(mut workers) = self.workers.lock() {
                        for id in &expired {
                            workers.remove(id);
                        }
                    }
                    tracing::warn!(workers = ?expired, jobs = jobs.len(), "workers lost; their jobs are queued again");
                    self.wake.notify_one();
                }
                // The workers stay known; the next tick tries again.
                Err(e) => tracing::error!(error = %e, "could not requeue the jobs of lost workers"),
            }
        }
    }
}
