//! The state store's guarantees, checked on both backends: a real SQLite file and a real
//! PostgreSQL (`NIYANTA_TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`),
//! each test in a schema of its own, dropped at the end.

use super::postgres::PostgresStore;
use super::sqlite::SqliteStore;
use super::*;
use async_trait::async_trait;

/// The store's methods that only tests call, each one statement of [`StateStore`] applied to a
/// single job or update (implemented for every store).
#[async_trait]
pub(crate) trait StateStoreTestExt: StateStore {
    /// Inserts queued jobs: [`StateStore::insert_jobs_direct`] with no direct start.
    async fn insert_jobs(&self, jobs: &[NewJob]) -> StateResult<Vec<(JobRecord, bool)>> {
        self.insert_jobs_direct(jobs, &[], None).await
    }
    /// Inserts one queued job: see [`StateStoreTestExt::insert_jobs`].
    async fn insert_job(&self, job: &NewJob) -> StateResult<(JobRecord, bool)> {
        let mut out = self.insert_jobs(std::slice::from_ref(job)).await?;
        out.pop().ok_or_else(|| StateError::Internal(anyhow::anyhow!("insert returned nothing")))
    }
    /// `assigned` → `running`, fenced. Returns the job, or `None` for a stale epoch.
    async fn mark_running(&self, id: JobId, epoch: i64) -> StateResult<Option<JobRecord>> {
        Ok(match self.apply_one(id, epoch, JobUpdate::Running).await? {
            Applied::Job(j) => Some(*j),
            _ => None,
        })
    }
    /// Stores progress, fenced.
    async fn record_progress(&self, id: JobId, epoch: i64, p: &Progress) -> StateResult<bool> {
        Ok(matches!(self.apply_one(id, epoch, JobUpdate::Progress(p.clone())).await?, Applied::Stored))
    }
    /// Stores a checkpoint, fenced. Returns its sequence number, or `None` for a stale epoch.
    async fn save_checkpoint(&self, id: JobId, epoch: i64, cp: &Checkpoint) -> StateResult<Option<u32>> {
        Ok(match self.apply_one(id, epoch, JobUpdate::Checkpoint(cp.clone())).await? {
            Applied::Checkpoint(seq) => Some(seq),
            _ => None,
        })
    }
    /// Appends log lines, fenced.
    async fn append_logs(&self, id: JobId, epoch: i64, lines: &[LogLine]) -> StateResult<bool> {
        Ok(matches!(self.apply_one(id, epoch, JobUpdate::Logs(lines.to_vec())).await?, Applied::Stored))
    }
    /// Applies an attempt's outcome, fenced. Returns the job as it now stands, or `None` when the
    /// epoch is stale or the job already ended.
    async fn finish_attempt(
        &self,
        id: JobId,
        epoch: i64,
        outcome: &Outcome,
        usage: Usage,
    ) -> StateResult<Option<JobRecord>> {
        let update = JobUpdate::Finish { outcome: outcome.clone(), usage };
        Ok(match self.apply_one(id, epoch, update).await? {
            Applied::Job(j) => Some(*j),
            _ => None,
        })
    }
    /// One update through `StateStore::apply_updates`.
    async fn apply_one(&self, job_id: JobId, epoch: i64, update: JobUpdate) -> StateResult<Applied> {
        let mut out = self.apply_updates(&[FencedUpdate { job_id, epoch, update }]).await?;
        Ok(out.pop().unwrap_or(Applied::Stale))
    }
}

impl<T: StateStore + ?Sized> StateStoreTestExt for T {}

/// Where a test's state lives; dropped (PostgreSQL: its schema) by [`Backend::cleanup`].
enum Backend {
    /// The directory is removed when the value drops.
    Sqlite {
        _dir: tempfile::TempDir,
    },
    Postgres {
        url: String,
        schema: String,
    },
}

impl Backend {
    async fn cleanup(self) {
        if let Backend::Postgres { url, schema } = self
            && let Ok(pool) = sqlx::PgPool::connect(&url).await
        {
            let drop = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
            let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&pool).await;
        }
    }
}

impl Backend {
    /// PostgreSQL: after `vacuum_queue`, `job_queue` holds exactly the jobs that are `queued`
    /// without a waiting reason, with their priority, workload and placement (the triggers of
    /// migration 0010 kept it through whatever the test did). Errors: the rows that differ.
    async fn check_queue(&self, s: &dyn StateStore) -> anyhow::Result<()> {
        let Backend::Postgres { url, schema } = self else { return Ok(()) };
        s.vacuum_queue().await?;
        let pool = sqlx::PgPool::connect(url).await?;
        let sql = format!(
            "SELECT COALESCE(j.id, q.job_id) FROM \
               (SELECT id, tenant_id, priority, workload, placement FROM {schema}.jobs \
                WHERE state = 'queued' AND waiting_reason IS NULL) j \
             FULL JOIN {schema}.job_queue q ON q.job_id = j.id AND q.tenant_id = j.tenant_id \
               AND q.priority = j.priority AND q.workload = j.workload \
               AND q.placement IS NOT DISTINCT FROM j.placement \
             WHERE j.id IS NULL OR q.job_id IS NULL"
        );
        let differ: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(&pool).await?;
        pool.close().await;
        anyhow::ensure!(differ.is_empty(), "job_queue differs from the queued jobs for {differ:?}");
        Ok(())
    }
}

async fn sqlite() -> anyhow::Result<(Backend, Box<dyn StateStore>)> {
    let dir = tempfile::tempdir()?;
    let s = SqliteStore::open(&dir.path().join("state.db")).await?;
    Ok((Backend::Sqlite { _dir: dir }, Box::new(s)))
}

async fn postgres() -> anyhow::Result<(Backend, Box<dyn StateStore>)> {
    let url = std::env::var("NIYANTA_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
    let s = PostgresStore::connect(&url, Some(&schema), 4).await?;
    Ok((Backend::Postgres { url, schema }, Box::new(s)))
}

/// Runs each named test body on SQLite and on PostgreSQL.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() -> anyhow::Result<()> {
                let (backend, s) = super::sqlite().await?;
                let result = super::$name(s.as_ref()).await;
                backend.cleanup().await;
                result
            }

            #[tokio::test]
            async fn postgres() -> anyhow::Result<()> {
                let (backend, s) = super::postgres().await?;
                let mut result = super::$name(s.as_ref()).await;
                if result.is_ok() {
                    result = backend.check_queue(s.as_ref()).await;
                }
                backend.cleanup().await;
                result
            }
        }
    )*};
}

// After the macro: `macro_rules!` is visible only below its definition.
mod admin;
mod batches;
mod bounds;
mod candidates;
mod components;
mod delays_retries_placement;
mod gauges;
mod metering;
mod rate;

on_both_backends!(
    stale_epochs_change_nothing_and_one_result_is_accepted,
    queue_order_tenancy_and_idempotency,
    leases_are_listed_and_requeued_only_at_their_epoch,
    only_ended_jobs_past_retention_are_purged,
);

async fn setup(s: &dyn StateStore) -> anyhow::Result<Tenant> {
    s.migrate().await?;
    Ok(s.create_tenant("acme", "standard").await?)
}

fn new_job(tenant: TenantId, priority: i32, tier_priority: i32) -> NewJob {
    NewJob {
        trace_parent: None,
        id: JobId::new(),
        tenant_id: tenant,
        workload: "echo".into(),
        digest: Digest::of(b"component"),
        params: "{}".into(),
        input: InputRef::Inline(b"in".to_vec()),
        priority,
        tier_priority,
        idempotency_key: None,
        not_before_ms: None,
        retry: RetryPolicy::default(),
        placement: Placement::default(),
    }
}

/// A W3C `traceparent` value.
const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn done() -> Outcome {
    Outcome::Succeeded { output: OutputRef { inline: b"out".to_vec(), parts: 0, bytes: 3 } }
}

async fn stale_epochs_change_nothing_and_one_result_is_accepted(s: &dyn StateStore) -> anyhow::Result<()> {
    let t = setup(s).await?;
    let (job, created) = s.insert_job(&NewJob { trace_parent: Some(TRACE.into()), ..new_job(t.id, 0, 0) }).await?;
    assert!(created);
    let w1 = WorkerId("w1".into());
    let w2 = WorkerId("w2".into());

    let first = s.assign_jobs(None, &w1, &[job.id]).await?;
    assert_eq!(first.len(), 1);
    let e1 = first[0].job.lease_epoch;
    assert_eq!((first[0].job.attempt, first[0].job.state), (1, JobState::Assigned));
    assert!(s.mark_running(job.id, e1).await?.is_some());
    let cp = Checkpoint {
        seq: 0,
        state: b"s1".to_vec(),
        output_bytes: 0,
        output_parts: 0,
        output_tail: vec![],
        fuel_used: 7,
    };
    assert_eq!(s.save_checkpoint(job.id, e1, &cp).await?, Some(1));

    // w1 is lost: its job goes back to the queue and w2 claims it with a higher epoch.
    assert_eq!(s.requeue_orphans(None, std::slice::from_ref(&w2)).await?, vec![job.id]);
    let second = s.assign_jobs(None, &w2, &[job.id]).await?;
    let e2 = second[0].job.lease_epoch;
    assert!(e2 > e1);
    assert_eq!(second[0].job.attempt, 2);
    assert_eq!(second[0].job.resumed_from_checkpoint, 1);
    assert_eq!(second[0].checkpoint.as_ref().map(|c| (c.state.clone(), c.fuel_used)), Some((b"s1".to_vec(), 7)));

    // The cut-off worker comes back: nothing it says is accepted.
    assert!(s.mark_running(job.id, e1).await?.is_none());
    assert!(!s.record_progress(job.id, e1, &Progress::default()).await?);
    assert_eq!(s.save_checkpoint(job.id, e1, &cp).await?, None);
    assert!(!s.append_logs(job.id, e1, &[]).await?);
    assert!(s.finish_attempt(job.id, e1, &done(), Usage::default()).await?.is_none());

    // The job's trace context is kept from insertion through every claim.
    assert_eq!(second[0].job.trace_parent.as_deref(), Some(TRACE));

    // The current holder finishes once; a repeat of the same report is refused.
    let end =
        s.finish_attempt(job.id, e2, &done(), Usage { fuel_used: 9, memory_peak_bytes: 65536, wall_ms: 40 }).await?;
    let end = end.ok_or_else(|| anyhow::anyhow!("the holder's result was refused"))?;
    assert_eq!((end.state, end.fuel_used, end.output_bytes), (JobState::Succeeded, 9, 3));
    assert!(s.finish_attempt(job.id, e2, &done(), Usage::default()).await?.is_none());
    assert_eq!(s.output_inline(t.id, job.id).await?, Some(b"out".to_vec()));
    Ok(())
}

async fn queue_order_tenancy_and_idempotency(s: &dyn StateStore) -> anyhow::Result<()> {
    let t = setup(s).await?;
    let other = s.create_tenant("other", "free").await?;
    assert!(matches!(s.create_tenant("acme", "free").await, Err(StateError::Conflict(_))));
    let low = s.insert_job(&new_job(t.id, 0, 0)).await?.0;
    let high_tier = s.insert_job(&new_job(other.id, -5, 10)).await?.0;
    let high_prio = s.insert_job(&new_job(t.id, 50, 0)).await?.0;
    // Candidates come per tenant, each tenant's best first (priority, then age).
    let all = s.queued_candidates(10, &[]).await?;
    let of = |tenant: TenantId| -> Vec<JobId> { all.iter().filter(|c| c.tenant_id == tenant).map(|c| c.id).collect() };
    assert_eq!((of(t.id), of(other.id)), (vec![high_prio.id, low.id], vec![high_tier.id]));
    let mut best: Vec<JobId> = s.queued_candidates(1, &[]).await?.into_iter().map(|c| c.id).collect();
    best.sort();
    let mut expected = vec![high_prio.id, high_tier.id];
    expected.sort();
    assert_eq!(best, expected, "one per tenant");
    let skipped: Vec<JobId> = s.queued_candidates(10, &[other.id]).await?.into_iter().map(|c| c.id).collect();
    assert_eq!(skipped, vec![high_prio.id, low.id]);

    // A tenant cannot see another's job.
    assert!(s.get_job(other.id, low.id).await?.is_none());
    assert!(s.request_cancel(other.id, low.id).await?.is_none());
    assert_eq!(s.list_jobs(other.id, &JobFilter { limit: 10, ..JobFilter::default() }).await?.len(), 1);

    // Cancelling a queued job ends it at once; it is never claimed afterwards.
    let c = s.request_cancel(t.id, low.id).await?.ok_or_else(|| anyhow::anyhow!("missing"))?;
    assert_eq!((c.state, c.failure_class), (JobState::Cancelled, Some(FailureClass::Cancelled)));
    assert!(s.assign_jobs(None, &WorkerId("w".into()), &[low.id]).await?.is_empty());

    let mut keyed = new_job(t.id, 0, 0);
    keyed.idempotency_key = Some("k".into());
    let (a, created_a) = s.insert_job(&keyed).await?;
    keyed.id = JobId::new();
    let (b, created_b) = s.insert_job(&keyed).await?;
    assert!(created_a && !created_b);
    assert_eq!(a.id, b.id);
    Ok(())
}

on_both_backends!(concurrent_claims_take_each_job_once);

async fn concurrent_claims_take_each_job_once(s: &dyn StateStore) -> anyhow::Result<()> {
    let t = setup(s).await?;
    let jobs: Vec<NewJob> = (0..60).map(|i| new_job(t.id, i % 3, 0)).collect();
    s.insert_jobs(&jobs).await?;
    let ids: Vec<JobId> = jobs.iter().map(|j| j.id).collect();
    let (w1, w2) = (WorkerId("w1".into()), WorkerId("w2".into()));
    // Two schedulers race for the same jobs.
    let (a, b) = futures::join!(s.assign_jobs(None, &w1, &ids), s.assign_jobs(None, &w2, &ids));
    let (a, b) = (a?, b?);
    let mut all: Vec<JobId> = a.iter().chain(&b).map(|c| c.job.id).collect();
    all.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(all, want, "every job claimed exactly once");
    assert!(a.iter().all(|c| c.job.worker_id.as_ref() == Some(&w1) && c.job.lease_epoch == 1));
    assert!(b.iter().all(|c| c.job.worker_id.as_ref() == Some(&w2) && c.job.lease_epoch == 1));
    assert!(s.queued_candidates(100, &[]).await?.is_empty());
    Ok(())
}

async fn leases_are_listed_and_requeued_only_at_their_epoch(s: &dyn StateStore) -> anyhow::Result<()> {
    let t = setup(s).await?;
    let jobs: Vec<NewJob> = (0..3).map(|_| new_job(t.id, 0, 0)).collect();
    s.insert_jobs(&jobs).await?;
    let w = WorkerId("w1".into());
    let claimed = s.assign_jobs(None, &w, &[jobs[0].id, jobs[1].id]).await?;
    s.mark_running(jobs[1].id, claimed.iter().find(|c| c.job.id == jobs[1].id).map_or(0, |c| c.job.lease_epoch))
        .await?;
    let mut leases = s.leases_of(&w).await?;
    leases.sort_by_key(|l| l.job_id);
    let mut want = vec![(jobs[0].id, JobState::Assigned), (jobs[1].id, JobState::Running)];
    want.sort_by_key(|(id, _)| *id);
    assert_eq!(leases.iter().map(|l| (l.job_id, l.state)).collect::<Vec<_>>(), want);
    assert!(leases.iter().all(|l| l.tenant_id == t.id && l.epoch == 1));
    assert!(s.leases_of(&WorkerId("other".into())).await?.is_empty());

    // A stale epoch requeues nothing; the current one requeues, once.
    assert!(s.requeue_leases(None, &[(jobs[0].id, 7)]).await?.is_empty());
    assert_eq!(s.requeue_leases(None, &[(jobs[0].id, 1), (jobs[2].id, 0)]).await?, vec![jobs[0].id]);
    assert!(s.requeue_leases(None, &[(jobs[0].id, 1)]).await?.is_empty());
    assert_eq!(s.leases_of(&w).await?.len(), 1);
    let again = s.assign_jobs(None, &WorkerId("w2".into()), &[jobs[0].id]).await?;
    assert_eq!(again.first().map(|c| c.job.lease_epoch), Some(2));
    Ok(())
}

async fn only_ended_jobs_past_retention_are_purged(s: &dyn StateStore) -> anyhow::Result<()> {
    let t = setup(s).await?;
    let jobs: Vec<NewJob> = (0..4).map(|_| new_job(t.id, 0, 0)).collect();
    s.insert_jobs(&jobs).await?;
    let w = WorkerId("w".into());
    // jobs[3] is claimed, handed back and claimed again (an attempt that lost its lease may have
    // left output parts), then ends with its output inline.
    s.assign_jobs(None, &w, &[jobs[3].id]).await?;
    assert_eq!(s.requeue_leases(None, &[(jobs[3].id, 1)]).await?, vec![jobs[3].id]);
    let again = s.assign_jobs(None, &w, &[jobs[3].id]).await?;
    assert_eq!(again.first().map(|c| c.job.lease_epoch), Some(2));
    s.mark_running(jobs[3].id, 2).await?;
    s.finish_attempt(jobs[3].id, 2, &done(), Usage::default()).await?;
    // jobs[0] ends (with a checkpoint and a log line), jobs[1] runs, jobs[2] stays queued.
    let claimed = s.assign_jobs(None, &w, &[jobs[0].id, jobs[1].id]).await?;
    let epoch = |id: JobId| claimed.iter().find(|c| c.job.id == id).map_or(0, |c| c.job.lease_epoch);
    s.mark_running(jobs[0].id, epoch(jobs[0].id)).await?;
    s.save_checkpoint(jobs[0].id, epoch(jobs[0].id), &Checkpoint::default()).await?;
    let line = LogLine { at_ms: 1, attempt: 1, level: "info".into(), message: "x".into() };
    s.append_logs(jobs[0].id, epoch(jobs[0].id), &[line]).await?;
    s.finish_attempt(jobs[0].id, epoch(jobs[0].id), &done(), Usage::default()).await?;
    s.mark_running(jobs[1].id, epoch(jobs[1].id)).await?;

    // Nothing finished before an hour ago.
    assert!(s.purge_finished(crate::ids::now_ms() - 3_600_000, 10).await?.is_empty());
    let mut purged = s.purge_finished(crate::ids::now_ms() + 1, 10).await?;
    purged.sort_by_key(|(id, _)| *id != jobs[0].id);
    assert_eq!(purged, vec![(jobs[0].id, false), (jobs[3].id, true)]);
    assert!(s.get_job(t.id, jobs[0].id).await?.is_none());
    assert!(s.job_logs(t.id, jobs[0].id, LogFilter { offset: 0, limit: 10, max_bytes: None }).await?.is_empty());
    assert!(s.get_job(t.id, jobs[1].id).await?.is_some() && s.get_job(t.id, jobs[2].id).await?.is_some());
    assert!(s.purge_finished(crate::ids::now_ms() + 1, 10).await?.is_empty());
    Ok(())
}

/// Leader election on PostgreSQL: one leader at a time, renewals, and writes fenced by the term.
#[tokio::test]
async fn leadership_is_exclusive_and_a_deposed_leader_cannot_schedule() -> anyhow::Result<()> {
    let url = std::env::var("NIYANTA_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
    let s = PostgresStore::connect(&url, Some(&schema), 4).await?;
    let backend = Backend::Postgres { url, schema };
    let result = async {
        let t = setup(&s).await?;
        let jobs: Vec<NewJob> = (0..2).map(|_| new_job(t.id, 0, 0)).collect();
        s.insert_jobs(&jobs).await?;

        let a = s.campaign("a", 60_000).await?.ok_or_else(|| anyhow::anyhow!("a is not elected"))?;
        assert_eq!(s.campaign("b", 60_000).await?, None, "one leader at a time");
        assert!(s.renew(a, 60_000).await?);
        let w = WorkerId("w".into());
        assert_eq!(s.assign_jobs(Some(a), &w, &[jobs[0].id]).await?.len(), 1);

        // a's term ends (here: resigned; in life: it stopped renewing); b takes over.
        s.resign(a).await?;
        let b = s.campaign("b", 60_000).await?.ok_or_else(|| anyhow::anyhow!("b is not elected"))?;
        assert!(b.0 > a.0, "terms rise");
        assert!(!s.renew(a, 60_000).await?, "a deposed leader cannot renew");
        // Everything a does under its old term is refused and changes nothing.
        assert!(matches!(s.assign_jobs(Some(a), &w, &[jobs[1].id]).await, Err(StateError::NotLeader(_))));
        assert!(matches!(s.requeue_orphans(Some(a), &[]).await, Err(StateError::NotLeader(_))));
        assert!(matches!(s.requeue_leases(Some(a), &[(jobs[0].id, 1)]).await, Err(StateError::NotLeader(_))));
        assert_eq!(s.leases_of(&w).await?.len(), 1);
        assert_eq!(s.queued_candidates(10, &[]).await?.len(), 1);
        // b's writes go through.
        assert_eq!(s.assign_jobs(Some(b), &w, &[jobs[1].id]).await?.len(), 1);
        // A job placed at submission under a's term is inserted queued; under b's, assigned.
        let placed = [new_job(t.id, 0, 0)];
        let late = s.insert_jobs_direct(&placed, &[Some(w.clone())], Some(a)).await?;
        assert_eq!((late[0].0.state, late[0].0.lease_epoch, late[0].0.worker_id.as_ref()), (JobState::Queued, 0, None));
        let placed = [new_job(t.id, 0, 0)];
        let now = s.insert_jobs_direct(&placed, &[Some(w.clone())], Some(b)).await?;
        assert_eq!(
            (now[0].0.state, now[0].0.lease_epoch, now[0].0.worker_id.as_ref()),
            (JobState::Assigned, 1, Some(&w))
        );

        // An expired term is over even when nobody took it.
        let s2 = s.clone();
        s2.resign(b).await?;
        let c = s.campaign("c", 1).await?.ok_or_else(|| anyhow::anyhow!("c is not elected"))?;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(matches!(s.requeue_orphans(Some(c), &[]).await, Err(StateError::NotLeader(_))));
        anyhow::Ok(())
    }
    .await;
    backend.cleanup().await;
    result
}
