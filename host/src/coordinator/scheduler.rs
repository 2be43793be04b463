//! Scheduling: queued jobs onto free worker slots; lease expiry of silent workers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::broker::{Assignment, Command, Limits};
use crate::ids::{JobId, TenantId, WorkerId};
use crate::state::{Claimed, Placement};

use super::Coordinator;
use super::direct::Reserved;
use super::fair_share::{FairShare, Standing};

impl Coordinator {
    /// Assigns jobs whenever something may have changed (a submission, a finished job, a new
    /// worker), and at least once a second, until `stop` (checked between rounds).
    pub(super) async fn schedule_loop(self: Arc<Self>, stop: CancellationToken) -> anyhow::Result<()> {
        loop {
            let woken = stop.run_until_cancelled(tokio::time::timeout(Duration::from_secs(1), self.wake.notified()));
            if woken.await.is_none() {
                return Ok(());
            }
            while !stop.is_cancelled() {
                let round = self.schedule_round().await;
                if round.is_ok() {
                    crate::metrics::SCHEDULING_ROUNDS.inc();
                }
                match round {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => {
                        crate::metrics::database_error();
                        tracing::error!(error = %format!("{e:#}"), "scheduling round failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                }
            }
        }
    }

    /// The workers as placement sees them, most free slots first (so load spreads).
    fn slots(&self) -> Vec<Slot> {
        slots_of(&self.workers.lock())
    }

    /// Assigned or running jobs per tenant, from the leases the leader holds in memory. Once
    /// the leadership has swept (the jobs of workers that did not show up are queued again, and
    /// every live worker's heartbeat has added its leases) these are every active job, so the
    /// scheduling round needs no query for them; until then the state store counts them.
    fn active_by_tenant(&self) -> Vec<(TenantId, u32)> {
        let mut active: HashMap<TenantId, u32> = HashMap::new();
        {
            let workers = self.workers.lock();
            for held in workers.values().flat_map(|w| w.running.values()) {
                *active.entry(held.tenant_id).or_default() += 1;
            }
        }
        active.into_iter().collect()
    }

    /// A tenant's fair-share standing with `running` jobs assigned or running (no concurrency
    /// left for an unknown or suspended tenant).
    async fn standing(&self, tenant: TenantId, running: u32) -> anyhow::Result<Standing> {
        let Some(t) = self.tenant(tenant).await?.filter(|t| !t.is_suspended()) else {
            return Ok(Standing { running, weight: 1, priority: 0, left: 0 });
        };
        let tier = self.tier(&t);
        Ok(Standing {
            running,
            weight: tier.weight,
            priority: tier.priority,
            left: tier.concurrent_jobs.saturating_sub(running),
        })
    }

    /// Clears the waiting reasons once the workers' label sets differ from those the reasons
    /// were found under (a worker with new labels may take the jobs now).
    async fn refresh_waiting_reasons(&self, slots: &[Slot]) -> anyhow::Result<()> {
        let mut sets: Vec<BTreeMap<String, String>> = slots.iter().map(|s| s.labels.clone()).collect();
        sets.sort();
        sets.dedup();
        let same = self.placed_labels.lock().as_ref() == Some(&sets);
        if !same {
            self.state.clear_waiting_reasons().await?;
            {
                let mut p = self.placed_labels.lock();
                *p = Some(sets);
            }
        }
        Ok(())
    }

    /// One round: fills free slots with queued jobs that fit them, taken in fair-share order
    /// across tenants (see [`super::fair_share`]). Returns whether every free slot was filled
    /// (so another round may find more).
    ///
    /// A job goes to the worker with a free slot that has all its required labels, runs no job
    /// of a workload it avoids, and has the most of its preferred labels (then the most free
    /// slots). A job whose required labels no known worker has gets a waiting reason and is left
    /// out of later rounds until the workers change.
    async fn schedule_round(&self) -> anyhow::Result<bool> {
        let Some(lead) = self.leadership() else { return Ok(false) };
        let slots = self.slots();
        let total: u32 = slots.iter().map(|s| s.free).sum();
        if total == 0 {
            return Ok(false);
        }
        self.refresh_waiting_reasons(&slots).await?;
        // Tenants at their concurrency limit are skipped.
        let mut standings: HashMap<TenantId, Standing> = HashMap::new();
        let mut skip = Vec::new();
        let active = if lead.swept { self.active_by_tenant() } else { self.state.active_by_tenant().await? };
        for (tenant_id, running) in active {
            let standing = self.standing(tenant_id, running).await?;
            if standing.left == 0 {
                skip.push(tenant_id);
            }
            standings.insert(tenant_id, standing);
        }
        // Suspended tenants' jobs wait; leaving them out keeps them from crowding the candidates.
        skip.extend(self.suspended_tenants());
        // So do the jobs of tenants out of this month's fuel budget.
        skip.extend(self.over_budget());
        // More candidates per tenant than slots, so jobs that fit no free slot now do not hold
        // back the rest.
        let per_tenant = total.saturating_mul(2).clamp(8, 256);
        let changes = self.queue.changes();
        let candidates = self.state.queued_candidates(per_tenant, &skip).await?;
        self.queue.round_done(changes, candidates.is_empty(), &skip);
        let mut fair = FairShare::default();
        for c in candidates {
            if !fair.knows(c.tenant_id) {
                let standing = match standings.remove(&c.tenant_id) {
                    Some(s) => s,
                    None => self.standing(c.tenant_id, 0).await?,
                };
                fair.add_tenant(c.tenant_id, standing);
            }
            fair.push(c);
        }
        // Planned on the lease table as it is now, and reserved in it before the claim, so that
        // a job placed at submission meanwhile (see [`super::direct`]) and this round do not
        // take the same slot.
        let mut reserved = Reserved::new(self);
        let mut plan: BTreeMap<WorkerId, Vec<JobId>> = BTreeMap::new();
        let mut chosen = 0u32;
        let mut unplaceable: Vec<(JobId, String)> = Vec::new();
        {
            let mut workers = self.workers.lock();
            let mut slots = slots_of(&workers);
            while chosen < total {
                let Some(c) = fair.next() else { break };
                match place(&slots, c.tenant_id, &c.placement) {
                    Placed::On(i) => {
                        fair.started(c.tenant_id);
                        chosen += 1;
                        let slot = &mut slots[i];
                        slot.free -= 1;
                        slot.workloads.insert((c.tenant_id, c.workload.clone()));
                        if let Some(w) = workers.get_mut(&slot.worker) {
                            w.running.insert(
                                c.id,
                                super::Held { tenant_id: c.tenant_id, workload: c.workload.clone(), started: false },
                            );
                            reserved.add(slot.worker.clone(), c.id);
                        }
                        plan.entry(slot.worker.clone()).or_default().push(c.id);
                    }
                    Placed::NotNow => {}
                    Placed::Never(reason) => unplaceable.push((c.id, reason)),
                }
            }
        }
        if !unplaceable.is_empty() {
            tracing::info!(jobs = unplaceable.len(), "queued jobs no known worker can take; their status says why");
            self.state.set_waiting_reasons(&unplaceable).await?;
        }
        for (worker, ids) in plan {
            let claimed = self.state.assign_jobs(lead.term, &worker, &ids).await?;
            for c in claimed {
                reserved.confirm(c.job.id);
                self.dispatch(&worker, c).await?;
            }
        }
        Ok(chosen == total)
    }

    /// Sends a claimed job to `worker`: the job enters the lease table, its `assigned` event is
    /// published and the assignment leaves (a worker that cannot be reached loses the lease later).
    pub(super) async fn dispatch(&self, worker: &WorkerId, c: Claimed) -> anyhow::Result<()> {
        let job = c.job;
        let tier = match self.tenant(job.tenant_id).await? {
            Some(t) => self.tier(&t),
            None => super::no_tier(),
        };
        if let Some(w) = self.workers.lock().get_mut(worker) {
            w.running.insert(
                job.id,
                super::Held { tenant_id: job.tenant_id, workload: job.workload.clone(), started: false },
            );
        }
        self.publish_state(&job);
        // The `assign` span joins the job's trace; the worker's `job` span continues it.
        let span = tracing::info_span!("assign", job_id = %job.id, tenant_id = %job.tenant_id, worker_id = %worker,
            attempt = job.attempt, epoch = job.lease_epoch, trace_id = tracing::field::Empty);
        crate::trace::continue_from(&span, job.trace_parent.as_deref());
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
            trace: crate::trace::traceparent_of(&span),
        };
        let sent = self.broker.send_command(worker, Command::Assign(Box::new(assignment))).instrument(span).await;
        if let Err(e) = sent {
            // The worker is gone; its lease expires and the job is queued again.
            crate::metrics::broker_error();
            tracing::warn!(job_id = %job.id, %worker, error = %e, "could not send assignment");
        }
        Ok(())
    }

    /// Queues the scheduled jobs whose time has come (delayed jobs, retries after their backoff).
    async fn promote_due(&self) {
        loop {
            match self.state.promote_scheduled(crate::ids::now_ms(), 1_000).await {
                Ok(jobs) if jobs.is_empty() => return,
                Ok(jobs) => {
                    for job in &jobs {
                        self.publish_state(job);
                    }
                    self.queue_changed();
                    if jobs.len() < 1_000 {
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "could not queue the scheduled jobs that are due");
                    return;
                }
            }
        }
    }

    /// Every 250 ms: scheduled jobs that are due are queued, and workers silent for the lease timeout lose their leases, and their jobs go
    /// back to the queue (resuming from their last checkpoint). The requeue commits before the
    /// workers are forgotten, so a late report of theirs (answered `Stale` only once they are
    /// forgotten) can no longer end a job that was requeued. A new leader first waits one lease
    /// timeout for the workers' heartbeats, then requeues the jobs of workers it never heard from.
    ///
    /// Silence is counted only while the leader listens: after a stall of this process (it was
    /// paused, or starved of CPU) the ticks it missed are not replayed, and each worker's silence
    /// is shortened by the stall, so that the heartbeats that queued up meanwhile are read before
    /// any worker is declared lost.
    pub(super) async fn expire_loop(self: Arc<Self>, stop: CancellationToken) -> anyhow::Result<()> {
        const EVERY: Duration = Duration::from_millis(250);
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last = Instant::now();
        while stop.run_until_cancelled(tick.tick()).await.is_some() {
            let stalled = last.elapsed().saturating_sub(EVERY);
            last = Instant::now();
            if stalled >= EVERY {
                self.forgive_stall(stalled);
            }
            let Some(lead) = self.leadership() else { continue };
            self.promote_due().await;
            if !lead.swept && lead.since.elapsed() >= self.config.lease_timeout {
                let live: Vec<WorkerId> = self.workers.lock().keys().cloned().collect();
                match self.state.requeue_orphans(lead.term, &live).await {
                    Ok(jobs) => {
                        if !jobs.is_empty() {
                            tracing::warn!(jobs = jobs.len(), "queued again the jobs of workers that did not show up");
                            self.queue_changed();
                        }
                        self.mark_swept();
                    }
                    Err(e) => tracing::error!(error = %e, "could not requeue the jobs of workers that did not show up"),
                }
                continue;
            }
            let (expired, live): (Vec<WorkerId>, Vec<WorkerId>) = {
                let workers = self.workers.lock();
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
                    {
                        let mut workers = self.workers.lock();
                        for id in &expired {
                            workers.remove(id);
                        }
                    }
                    tracing::warn!(workers = ?expired, jobs = jobs.len(), "workers lost; their jobs are queued again");
                    self.queue_changed();
                }
                // The workers stay known; the next tick tries again.
                Err(e) => tracing::error!(error = %e, "could not requeue the jobs of lost workers"),
            }
        }
        Ok(())
    }

    /// Moves every worker's last heartbeat `stalled` later (never past now): the leader did not
    /// listen for that long.
    fn forgive_stall(&self, stalled: Duration) {
        tracing::warn!(
            stalled_ms = stalled.as_millis() as u64,
            "the leader stalled; workers' silence during it is not counted"
        );
        let now = Instant::now();
        {
            let mut workers = self.workers.lock();
            for w in workers.values_mut() {
                w.last_seen = (w.last_seen + stalled).min(now);
            }
        }
    }
}

/// A worker as one placement sees it.
pub(super) struct Slot {
    pub worker: WorkerId,
    pub free: u32,
    labels: BTreeMap<String, String>,
    /// The workloads of the jobs it runs (and was given this round), by tenant.
    pub workloads: HashSet<(TenantId, String)>,
}

/// The workers of the lease table `workers` as placement sees them, most free slots first (so
/// load spreads). Reserved slots count as used.
pub(super) fn slots_of(workers: &HashMap<WorkerId, super::WorkerSlots>) -> Vec<Slot> {
    let mut slots: Vec<Slot> = workers
        .iter()
        .map(|(id, w)| Slot {
            worker: id.clone(),
            free: w.info.slots.saturating_sub(w.running.len() as u32),
            labels: w.info.labels.clone(),
            workloads: w.running.values().map(|h| (h.tenant_id, h.workload.clone())).collect(),
        })
        .collect();
    slots.sort_by(|a, b| b.free.cmp(&a.free).then_with(|| a.worker.cmp(&b.worker)));
    slots
}

/// Where a job goes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Placed {
    /// On the slot at this index.
    On(usize),
    /// No free slot fits it now; it waits in the queue.
    NotNow,
    /// No known worker has its required labels: the reason.
    Never(String),
}

/// Where a job of `tenant` with placement `p` goes among `slots`.
pub(super) fn place(slots: &[Slot], tenant: TenantId, p: &Placement) -> Placed {
    let avoids = |s: &Slot| p.avoid_workloads.iter().any(|w| s.workloads.contains(&(tenant, w.clone())));
    let best = slots.iter().enumerate().filter(|(_, s)| s.free > 0 && p.admits(&s.labels) && !avoids(s)).max_by(
        |(ia, a), (ib, b)| {
            (p.preference(&a.labels), a.free).cmp(&(p.preference(&b.labels), b.free)).then_with(|| ib.cmp(ia))
        },
    );
    if let Some((i, _)) = best {
        return Placed::On(i);
    }
    if slots.iter().any(|s| p.admits(&s.labels)) {
        return Placed::NotNow;
    }
    let wanted: Vec<String> = p.require.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Placed::Never(format!(
        "no worker has the required labels {}; {} workers known; the job starts once such a worker joins",
        wanted.join(","),
        slots.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Placement;

    /// One tenant for every job and slot of a test.
    fn tenant() -> TenantId {
        "018f0000-0000-7000-8000-000000000001".parse().unwrap()
    }

    fn slot(name: &str, free: u32, labels: &[(&str, &str)], running: &[&str]) -> Slot {
        let tenant = tenant();
        Slot {
            worker: WorkerId(name.to_owned()),
            free,
            labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            workloads: running.iter().map(|w| (tenant, (*w).to_owned())).collect(),
        }
    }

    fn place(slots: &[Slot], placement: &Placement) -> Placed {
        super::place(slots, tenant(), placement)
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn required_labels_are_hard_and_preferred_ones_soft() {
        let slots = vec![slot("a", 4, &[("zone", "x")], &[]), slot("b", 1, &[("zone", "y"), ("gpu", "yes")], &[])];
        let require = Placement { require: labels(&[("gpu", "yes")]), ..Default::default() };
        assert_eq!(place(&slots, &require), Placed::On(1));
        let prefer = Placement { prefer: labels(&[("zone", "y")]), ..Default::default() };
        assert_eq!(place(&slots, &prefer), Placed::On(1));
        // Without preferences, the most free slots win.
        assert_eq!(place(&slots, &Placement::default()), Placed::On(0));
        let full = vec![slot("a", 4, &[], &[]), slot("b", 0, &[("gpu", "yes")], &[])];
        let require = Placement { require: labels(&[("gpu", "yes")]), ..Default::default() };
        assert_eq!(place(&full, &require), Placed::NotNow);
        let none = vec![slot("a", 4, &[("gpu", "no")], &[])];
        match place(&none, &require) {
            Placed::Never(reason) => assert!(reason.contains("gpu=yes"), "{reason}"),
            other => panic!("expected Never, got {other:?}"),
        }
    }

    #[test]
    fn anti_affinity_skips_workers_running_the_avoided_workload() {
        let slots = vec![slot("a", 4, &[], &["w"]), slot("b", 1, &[], &[])];
        let avoid = Placement { avoid_workloads: vec!["w".into()], ..Default::default() };
        assert_eq!(place(&slots, &avoid), Placed::On(1));
        let busy = vec![slot("a", 4, &[], &["w"])];
        assert_eq!(place(&busy, &avoid), Placed::NotNow);
    }
}
