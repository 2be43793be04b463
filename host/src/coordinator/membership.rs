//! Workers as the leader sees them: registration, heartbeats, adoption by a new leader, and
//! reconciliation of each heartbeat's inventory against the leases in the state store.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::broker::{Ack, Command, WorkerInfo};
use crate::ids::{JobId, WorkerId, now_ms};

use super::{Coordinator, WorkerSlots};

impl Coordinator {
    /// A worker came up: leases an earlier process under its id held are void (their jobs are
    /// queued again), and it starts with none. `None`: not committed, not to be acknowledged.
    pub(super) async fn register(&self, info: &WorkerInfo) -> Option<Ack> {
        let lead = self.leadership()?;
        let old = match self.state.leases_of(&info.id).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(worker = %info.id, error = %format!("{e:#}"), "could not read the leases of a registering worker");
                return None;
            }
        };
        if !old.is_empty() {
            let pairs: Vec<(JobId, i64)> = old.iter().map(|l| (l.job_id, l.epoch)).collect();
            match self.state.requeue_leases(lead.term, &pairs).await {
                Ok(ids) => {
                    tracing::warn!(worker = %info.id, jobs = ids.len(), "worker restarted; its old leases are void and their jobs queued again")
                }
                Err(e) => {
                    tracing::error!(worker = %info.id, error = %format!("{e:#}"), "could not void the old leases of a restarted worker");
                    return None;
                }
            }
        }
        {
            let mut w = self.workers.lock();
            w.insert(info.id.clone(), WorkerSlots::new(info.clone()));
        }
        tracing::info!(worker = %info.id, slots = info.slots, labels = ?info.labels, version = %info.version, "worker registered");
        self.queue_changed();
        Some(Ack::Ok)
    }

    /// A worker drained and left: its remaining leases are void and it is forgotten.
    pub(super) async fn gone(&self, worker: &WorkerId) -> Option<Ack> {
        let lead = self.leadership()?;
        let requeued = async {
            let pairs: Vec<(JobId, i64)> =
                self.state.leases_of(worker).await?.iter().map(|l| (l.job_id, l.epoch)).collect();
            if pairs.is_empty() { Ok(Vec::new()) } else { self.state.requeue_leases(lead.term, &pairs).await }
        }
        .await;
        match requeued {
            Ok(ids) if !ids.is_empty() => {
                tracing::warn!(%worker, jobs = ids.len(), "a leaving worker still held leases; queued again")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(%worker, error = %format!("{e:#}"), "could not void a leaving worker's leases");
                return None;
            }
        }
        {
            let mut w = self.workers.lock();
            w.remove(worker);
        }
        tracing::info!(%worker, "worker left");
        self.queue_changed();
        Some(Ack::Ok)
    }

    /// A worker is alive and runs `running`. An unknown worker is adopted while this leadership is
    /// new (it was the previous leader's); later it is told `Stale` (it was declared lost: its
    /// leases are void and it must register again).
    pub(super) async fn heartbeat(&self, info: &WorkerInfo, running: &[(JobId, i64)]) -> Option<Ack> {
        let lead = self.leadership()?;
        let adopting = !lead.swept && lead.since.elapsed() < self.config.lease_timeout;
        {
            let mut workers = self.workers.lock();
            match workers.get_mut(&info.id) {
                Some(w) => {
                    w.last_seen = Instant::now();
                    w.info = info.clone();
                }
                None if adopting => {
                    tracing::info!(worker = %info.id, jobs = running.len(), "adopted a worker of the previous leader");
                    workers.insert(info.id.clone(), WorkerSlots::new(info.clone()));
                }
                None => return Some(Ack::Stale),
            }
        }
        if let Err(e) = self.reconcile(&info.id, running).await {
            tracing::warn!(worker = %info.id, error = %format!("{e:#}"), "could not reconcile a worker's inventory");
        }
        Some(Ack::Ok)
    }

    /// Of the attempts `worker` runs without a lease, those it was not just seen to end (see
    /// [`unexplained`]; this also forgets the ends older than a lease timeout).
    fn without_lease(&self, worker: &WorkerId, suspects: Vec<(JobId, i64)>) -> Vec<(JobId, i64)> {
        let mut workers = self.workers.lock();
        match workers.get_mut(worker) {
            Some(w) => unexplained(&mut w.ended, self.config.lease_timeout, suspects),
            None => suspects,
        }
    }

    /// Compares a worker's inventory with its leases: a job it runs without a valid lease is
    /// abandoned (told to stop), and a lease the worker does not run for a lease timeout (a lost
    /// assignment, or an attempt that vanished) is requeued, so the job is assigned afresh under a
    /// new epoch. The leader's view of the worker's jobs gains the leases it did not know (after
    /// adoption) and loses the requeued ones.
    async fn reconcile(&self, worker: &WorkerId, running: &[(JobId, i64)]) -> anyhow::Result<()> {
        let lead = self.leadership().ok_or_else(|| anyhow::anyhow!("not leading"))?;
        let leases = self.state.leases_of(worker).await?;
        let held: HashSet<(JobId, i64)> = leases.iter().map(|l| (l.job_id, l.epoch)).collect();
        let suspects = running.iter().filter(|p| !held.contains(p)).copied().collect();
        for (job_id, epoch) in self.without_lease(worker, suspects) {
            tracing::warn!(%worker, %job_id, epoch, "worker runs a job without a valid lease; abandoning it");
            crate::metrics::ABANDONED.inc();
            self.broker.send_command(worker, Command::Abandon { job_id, epoch }).await?;
        }
        let inventory: HashSet<&(JobId, i64)> = running.iter().collect();
        let cutoff = now_ms() - self.config.lease_timeout.as_millis() as i64;
        let lost: Vec<(JobId, i64)> = leases
            .iter()
            .filter(|l| !inventory.contains(&(l.job_id, l.epoch)) && l.updated_at_ms < cutoff)
            .map(|l| (l.job_id, l.epoch))
            .collect();
        let requeued = if lost.is_empty() { Vec::new() } else { self.state.requeue_leases(lead.term, &lost).await? };
        if !requeued.is_empty() {
            tracing::warn!(%worker, jobs = ?requeued, "leases the worker does not run; queued again");
            self.queue_changed();
        }
        if let Some(w) = self.workers.lock().get_mut(worker) {
            for l in &leases {
                let held = w.running.entry(l.job_id).or_insert_with(|| super::Held {
                    tenant_id: l.tenant_id,
                    workload: l.workload.clone(),
                    started: false,
                });
                held.started |= l.state == crate::state::JobState::Running;
            }
            for id in &requeued {
                w.running.remove(id);
            }
        }
        Ok(())
    }
}

/// The `suspects` (attempts a heartbeat lists that hold no lease) whose result was not committed
/// within the last `keep`: a heartbeat taken before an attempt's result was sent, but read after
/// it was committed, still lists the attempt. `ended` (attempt → when its result was committed)
/// forgets entries older than `keep`, so it holds at most the results of one lease timeout.
fn unexplained(
    ended: &mut HashMap<(JobId, i64), Instant>,
    keep: Duration,
    suspects: Vec<(JobId, i64)>,
) -> Vec<(JobId, i64)> {
    ended.retain(|_, at| at.elapsed() < keep);
    suspects.into_iter().filter(|p| !ended.contains_key(p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_attempts_that_did_not_just_end_are_unexplained_and_old_ends_are_forgotten() {
        let (a, b, c) = (JobId::new(), JobId::new(), JobId::new());
        let keep = Duration::from_secs(3);
        let now = Instant::now();
        let mut ended = HashMap::from([((a, 1), now), ((b, 1), now - Duration::from_secs(4))]);
        // `a` just ended; `b` ended longer ago than a heartbeat can lag; `c` never ended; `a`
        // under another epoch is another attempt.
        let left = unexplained(&mut ended, keep, vec![(a, 1), (b, 1), (c, 1), (a, 2)]);
        assert_eq!(left, vec![(b, 1), (c, 1), (a, 2)]);
        assert_eq!(ended.keys().collect::<Vec<_>>(), vec![&(a, 1)], "the old end is forgotten");
    }
}
