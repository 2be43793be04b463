//! Placing at submission: while nothing waits in the queue, the leader hands a new job to a free
//! slot in the statement that inserts it, instead of queueing it for the next scheduling round.
//!
//! A scheduling round costs a wake-up, the candidates query and the claim (two statements and a
//! commit) before the assignment leaves; a job submitted through the leader while the queue is
//! empty skips all three. Nothing is passed over: a job is placed at once only when
//! - this coordinator leads and its view of the leases is complete (the adoption sweep is done);
//! - the last scheduling round found no queued job it could consider ([`QueueWatch`]) and nothing
//!   has been queued since (a submission through another coordinator, a requeue, a retry that
//!   came due, a re-drive, a new worker: each calls [`Coordinator::queue_changed`]);
//! - its tenant was not left out of that round (at its concurrency limit, suspended, out of its
//!   fuel budget), since such a tenant may have queued jobs that come first, and the tenant is
//!   under its concurrency limit now;
//! - it is not delayed, and a worker slot fits it by the scheduler's own rules
//!   ([`super::scheduler`]: required labels, anti-affinity, preferred labels, free slots).
//!
//! The slot is reserved in the leader's lease table before the insert ([`Reserved`]), as a round
//! reserves the slots it plans, so neither hands out a slot the other took. The insert is fenced
//! by the leader's term like a claim (see `StateStore::insert_jobs_direct`): a coordinator whose
//! term ended inserts the job queued. A job placed at once still publishes its `queued` event
//! before its `assigned` one.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::ids::{JobId, TenantId, WorkerId};
use crate::state::{Claimed, JobRecord, JobState, LeaderTerm, NewJob};
use crate::tier::Tier;

use super::Coordinator;
use super::scheduler::{Placed, place, slots_of};

/// Most jobs placed at submission whose `queued` event is awaited (see [`QueueWatch::placed`]).
const PLACED_AWAITED: usize = 65_536;

/// Whether the queue is known empty: a counter raised whenever jobs may have been queued, and
/// the counter's value when a scheduling round last found no queued job (with the tenants that
/// round left out). Also the jobs placed at submission whose `queued` event has not come back
/// through the broker yet, so that event is not taken for a queued job.
#[derive(Debug, Default)]
pub(super) struct QueueWatch {
    changes: AtomicU64,
    drained: Mutex<Option<(u64, HashSet<TenantId>)>>,
    placed: Mutex<HashSet<JobId>>,
}

impl QueueWatch {
    /// The counter now; a round reads it before its candidates query.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }

    /// Jobs may have been queued.
    pub fn changed(&self) {
        self.changes.fetch_add(1, Ordering::SeqCst);
    }

    /// A round that read the counter at `changes` found no queued job outside the tenants in
    /// `skipped` (`drained`), or found some.
    pub fn round_done(&self, changes: u64, drained: bool, skipped: &[TenantId]) {
        {
            let mut d = self.drained.lock();
            *d = drained.then(|| (changes, skipped.iter().copied().collect()));
        }
    }

    /// `job` was placed at submission; its `queued` event is on its way. At most
    /// [`PLACED_AWAITED`] are remembered: past that (events lost on the way), all are forgotten,
    /// and their events, should they come, count as queued jobs (the safe side).
    pub fn placed(&self, job: JobId) {
        {
            let mut p = self.placed.lock();
            if p.len() >= PLACED_AWAITED {
                p.clear();
            }
            p.insert(job);
        }
    }

    /// Whether a `queued` event of `job` is the one published when it was placed at submission
    /// (each such event is recognized once).
    pub fn is_placed_echo(&self, job: JobId) -> bool {
        self.placed.lock().remove(&job)
    }

    /// Events were missed: the ones awaited may never come.
    pub fn forget_placed(&self) {
        {
            let mut p = self.placed.lock();
            p.clear();
        }
    }

    /// Whether a job of `tenant` queued now would be the only one a round could consider.
    pub fn is_drained_for(&self, tenant: TenantId) -> bool {
        let now = self.changes();
        self.drained.lock().as_ref().is_some_and(|(at, skipped)| *at == now && !skipped.contains(&tenant))
    }
}

/// Slots reserved in the leader's lease table for jobs not yet claimed. Dropping it frees those
/// not [`Reserved::confirm`]ed (a claim that failed or did not take them).
pub(super) struct Reserved<'a> {
    coordinator: &'a Coordinator,
    pending: Vec<(WorkerId, JobId)>,
}

impl<'a> Reserved<'a> {
    pub fn new(coordinator: &'a Coordinator) -> Self {
        Self { coordinator, pending: Vec::new() }
    }

    /// Records a reservation already entered in the lease table.
    pub fn add(&mut self, worker: WorkerId, job: JobId) {
        self.pending.push((worker, job));
    }

    /// The job was claimed: its entry stays.
    pub fn confirm(&mut self, job: JobId) {
        self.pending.retain(|(_, j)| *j != job);
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        {
            let mut workers = self.coordinator.workers.lock();
            for (worker, job) in &self.pending {
                if let Some(w) = workers.get_mut(worker) {
                    w.running.remove(job);
                }
            }
        }
    }
}

impl Coordinator {
    /// Jobs may have been queued: the queue is no longer known empty, and the scheduler wakes.
    pub(super) fn queue_changed(&self) {
        self.queue.changed();
        self.wake.notify_one();
    }

    /// The workers to hand `jobs` of `tenant` to at once (by index; `None`: queued as usual),
    /// with the leader's term to fence the insert; the slots are reserved in `reserved`. Nothing
    /// is placed unless every condition of this module holds.
    pub(super) fn place_at_submission(
        &self,
        tenant: TenantId,
        tier: &Tier,
        jobs: &[NewJob],
        reserved: &mut Reserved<'_>,
    ) -> (Vec<Option<WorkerId>>, Option<LeaderTerm>) {
        let mut direct = vec![None; jobs.len()];
        let Some(lead) = self.leadership().filter(|l| l.swept) else { return (direct, None) };
        if !self.queue.is_drained_for(tenant) {
            return (direct, None);
        }
        let now = crate::ids::now_ms();
        let mut workers = self.workers.lock();
        let mut active = workers.values().flat_map(|w| w.running.values()).filter(|h| h.tenant_id == tenant).count();
        let mut slots = slots_of(&workers);
        for (i, job) in jobs.iter().enumerate() {
            if active >= tier.concurrent_jobs as usize {
                break;
            }
            if job.not_before_ms.is_some_and(|t| t > now) {
                continue;
            }
            let Placed::On(s) = place(&slots, tenant, &job.placement) else { continue };
            let slot = &mut slots[s];
            slot.free -= 1;
            slot.workloads.insert((tenant, job.workload.clone()));
            if let Some(w) = workers.get_mut(&slot.worker) {
                w.running
                    .insert(job.id, super::Held { tenant_id: tenant, workload: job.workload.clone(), started: false });
                reserved.add(slot.worker.clone(), job.id);
                direct[i] = Some(slot.worker.clone());
                active += 1;
            }
        }
        (direct, lead.term)
    }

    /// After the insert: a job inserted assigned publishes its `queued` event and is dispatched
    /// like a claimed one. Returns whether any job went to the queue instead.
    pub(super) async fn dispatch_inserted(
        &self,
        inserted: &[(JobRecord, bool)],
        direct: &[Option<WorkerId>],
        reserved: &mut Reserved<'_>,
    ) -> bool {
        let mut queued = false;
        for ((job, created), worker) in inserted.iter().zip(direct) {
            if !*created {
                continue;
            }
            match worker {
                Some(worker) if job.state == JobState::Assigned && job.worker_id.as_ref() == Some(worker) => {
                    reserved.confirm(job.id);
                    self.queue.placed(job.id);
                    self.publish_state(&JobRecord {
                        state: JobState::Queued,
                        attempt: 0,
                        lease_epoch: 0,
                        worker_id: None,
                        ..job.clone()
                    });
                    let claimed = Claimed { job: job.clone(), checkpoint: None };
                    if let Err(e) = self.dispatch(worker, claimed).await {
                        tracing::warn!(job_id = %job.id, error = %format!("{e:#}"), "could not dispatch a job placed at submission");
                    }
                }
                _ => {
                    self.publish_state(job);
                    queued |= job.state == JobState::Queued;
                }
            }
        }
        queued
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use futures::StreamExt;

    use super::*;
    use crate::broker::memory::MemoryBroker;
    use crate::broker::{Broker, Command, Report, WorkerInfo};
    use crate::coordinator::{CoordinatorConfig, Submission, SubmitInput};
    use crate::state::sqlite::SqliteStore;
    use crate::state::{FencedUpdate, JobUpdate, Outcome, StateStore, Usage, Workload};

    fn tenant(n: u8) -> TenantId {
        format!("018f0000-0000-7000-8000-0000000000{n:02}").parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_queue_is_drained_only_for_the_round_that_saw_it_and_the_tenants_it_considered() {
        let q = QueueWatch::default();
        let (a, b) = (tenant(1), tenant(2));
        assert!(!q.is_drained_for(a), "no round yet");
        let at = q.changes();
        q.round_done(at, true, &[b]);
        assert!(q.is_drained_for(a));
        assert!(!q.is_drained_for(b), "a tenant left out of the round may have queued jobs");
        q.changed();
        assert!(!q.is_drained_for(a), "queued since the round");
        // A round that read the counter before the change does not count.
        q.round_done(at, true, &[]);
        assert!(!q.is_drained_for(a));
        let at = q.changes();
        q.round_done(at, false, &[]);
        assert!(!q.is_drained_for(a), "the round found queued jobs");
        q.round_done(at, true, &[]);
        assert!(q.is_drained_for(a) && q.is_drained_for(b));
        // The `queued` event of a job placed at submission is recognized once.
        let job = JobId::new();
        q.placed(job);
        assert!(q.is_placed_echo(job) && !q.is_placed_echo(job));
        q.placed(job);
        q.forget_placed();
        assert!(!q.is_placed_echo(job));
    }

    fn submission() -> Submission {
        Submission {
            workload: "echo".into(),
            params: "{}".into(),
            input: SubmitInput::None,
            priority: 0,
            idempotency_key: None,
            not_before_ms: None,
            retry: Default::default(),
            placement: Default::default(),
        }
    }

    /// The next assignment sent to a worker: its job and epoch.
    async fn assigned(commands: &mut futures::stream::BoxStream<'static, Command>) -> (JobId, i64) {
        match tokio::time::timeout(Duration::from_secs(5), commands.next()).await {
            Ok(Some(Command::Assign(a))) => (a.job_id, a.epoch),
            other => panic!("expected an assignment, got {other:?}"),
        }
    }

    /// A coordinator over SQLite and the in-process broker, with one worker of two slots; tenant
    /// `one` may run one job at a time, tenant `two` many. Jobs go to the free slot at submission
    /// while no job waits for the tenant, and to the queue behind the ones that wait.
    #[tokio::test]
    async fn jobs_are_placed_at_submission_only_while_none_of_their_tenant_waits() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open(&dir.path().join("state.db")).await?;
        store.migrate().await?;
        let state: Arc<dyn StateStore> = Arc::new(store);
        let mut tiers = crate::tier::default_tiers();
        let mut single = tiers["standard"].clone();
        single.concurrent_jobs = 1;
        tiers.insert("single".into(), single);
        let tiers = crate::coordinator::effective_tiers(state.as_ref(), &tiers).await?;
        let broker = Arc::new(MemoryBroker::default());
        let blobs = crate::blobs::Blobs::local(&dir.path().join("blobs"))?;
        let c =
            Coordinator::new(state.clone(), broker.clone(), blobs, Arc::new(tiers), CoordinatorConfig::default(), None);
        let _tasks = c.start().await?;
        let (one, two) = (state.create_tenant("one", "single").await?, state.create_tenant("two", "standard").await?);
        for t in [&one, &two] {
            let w = Workload {
                name: "echo".into(),
                digest: crate::ids::Digest::of(b"echo"),
                size_bytes: 4,
                imports: Vec::new(),
                created_at_ms: 0,
            };
            state.put_workload(t.id, &w).await?;
        }
        let worker = WorkerId("w1".into());
        let mut commands = broker.commands(&worker).await?;
        let info = WorkerInfo { id: worker.clone(), slots: 2, labels: Default::default(), version: "test".into() };
        broker.report(Report::Register(info)).await?;
        // The round the registration starts finds the queue empty.
        let start = std::time::Instant::now();
        while !c.queue.is_drained_for(one.id) {
            assert!(start.elapsed() < Duration::from_secs(5), "no round found the queue empty");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        let (a, _) = c.submit(&one, submission()).await?;
        assert_eq!(
            (a.state, a.attempt, a.lease_epoch, a.worker_id.as_ref()),
            (JobState::Assigned, 1, 1, Some(&worker))
        );
        assert_eq!(assigned(&mut commands).await, (a.id, 1));
        // `one` is at its limit: its next jobs wait, and while they do, so do its later ones.
        let (b, _) = c.submit(&one, submission()).await?;
        assert_eq!(b.state, JobState::Queued);
        let (d, _) = c.submit(&one, submission()).await?;
        assert_eq!(d.state, JobState::Queued);
        // `two` has nothing waiting: its job takes the free slot at once.
        let start = std::time::Instant::now();
        while !c.queue.is_drained_for(two.id) {
            assert!(start.elapsed() < Duration::from_secs(5), "no round after the queued submissions");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!c.queue.is_drained_for(one.id), "`one` has queued jobs");
        let (e, _) = c.submit(&two, submission()).await?;
        assert_eq!((e.state, e.worker_id.as_ref()), (JobState::Assigned, Some(&worker)));
        assert_eq!(assigned(&mut commands).await, (e.id, 1));
        // Both slots are taken: `two`'s next job is queued.
        let (f, _) = c.submit(&two, submission()).await?;
        assert_eq!(f.state, JobState::Queued);

        // `a` ends: the round gives its slot to `one`'s oldest waiting job, in order.
        let finish =
            JobUpdate::Finish { outcome: Outcome::Succeeded { output: Default::default() }, usage: Usage::default() };
        let update = FencedUpdate { job_id: a.id, epoch: 1, update: finish };
        broker.report(Report::Job { worker: worker.clone(), update }).await?;
        let next = assigned(&mut commands).await;
        assert!(next == (b.id, 1) || next == (f.id, 1), "{next:?}");
        let job = |id| {
            let state = state.clone();
            async move { state.get_job(if id == f.id { two.id } else { one.id }, id).await }
        };
        assert_eq!(job(d.id).await?.map(|j| j.state), Some(JobState::Queued), "`d` waits behind `b`");
        Ok(())
    }
}
