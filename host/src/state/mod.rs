//! State: the source of truth for tenants, keys, workloads, jobs and checkpoints.
//!
//! [`StateStore`] is the trait the coordinator and API use; [`sqlite::SqliteStore`] is the
//! embedded backend. Methods that act for a tenant take its [`TenantId`], so a lookup that forgets
//! the tenant does not compile. Methods a worker drives (progress, checkpoint, finish) are fenced by
//! the lease epoch: a stale epoch changes nothing and answers `false`/`None`.

mod admin_sql;
mod components_sql;
pub mod machine;
mod model;
pub mod postgres;
mod rate;
mod rows;
pub mod sqlite;
#[cfg(test)]
mod tests;
mod unavailable;
mod usage_sql;

use async_trait::async_trait;

pub(crate) use machine::{Next, Retries, may_retry};
pub use model::*;
pub use rate::TokenBucket;
pub use unavailable::chain_is_unavailable;

use crate::ids::{Digest, JobId, TenantId, WorkerId};
use crate::tier::Tiers;

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A unique name is taken (a tenant name).
    #[error("{0} already exists")]
    Conflict(String),
    /// The leader term the write was made under is over: another coordinator leads now (or the
    /// term expired unrenewed). Nothing changed.
    #[error("leader term {0} is over")]
    NotLeader(i64),
    /// The database failed or could not be reached.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for StateError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(e.into())
    }
}

/// Shorthand for state store results.
pub type StateResult<T> = Result<T, StateError>;

/// A job handed to a worker by [`StateStore::assign_jobs`].
#[derive(Clone, Debug)]
pub struct Claimed {
    /// The job, with `attempt` and `lease_epoch` already raised.
    pub job: JobRecord,
    /// The last acknowledged checkpoint, if any: the attempt resumes from it.
    pub checkpoint: Option<Checkpoint>,
}

/// The fencing token of a leader coordinator's term (see [`postgres::PostgresStore::campaign`]).
/// The scheduler's writes carry it, and a store with leader election refuses them with
/// [`StateError::NotLeader`] once the term is over, so a coordinator that lost its leadership
/// (paused, cut off) cannot hand out or take back jobs. `None`: a single coordinator, unfenced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderTerm(pub i64);

/// A lease as the store holds it: the job a worker was handed and under which epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub job_id: JobId,
    pub tenant_id: TenantId,
    pub workload: String,
    pub epoch: i64,
    /// `assigned` (not yet confirmed by the worker) or `running`.
    pub state: JobState,
    /// When the job last changed, Unix milliseconds.
    pub updated_at_ms: i64,
}

/// A queued job as the scheduler weighs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: JobId,
    pub tenant_id: TenantId,
    pub workload: String,
    pub placement: Placement,
}

/// Whether a tenant could hold a component (see [`StateStore::hold_component`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComponentHold {
    /// Held: the component is kept while the tenant uses it, and a grace period after.
    Held,
    /// The component is being deleted (its bytes may be gone already); nothing was held. The
    /// deletion ends within a blob deletion's time: hold it again then, and store its bytes
    /// again.
    Collecting,
    /// The component is not stored (never was, or was deleted); nothing was held. Only when no
    /// size was given.
    Missing,
}

/// What one pass of [`StateStore::sweep_components`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ComponentSweep {
    /// Tenants' holds released: unused for longer than the grace period.
    pub holds_released: u64,
    /// Components found held by no tenant, ready for [`StateStore::claim_components`].
    pub unreferenced: u64,
}

/// The state store. Cheap to clone behind an `Arc`; every method is one transaction.
///
/// ```no_run
/// # async fn demo() -> anyhow::Result<()> {
/// use niyanta::state::{StateStore, sqlite::SqliteStore};
/// let store = SqliteStore::open(std::path::Path::new("/tmp/niyanta-state.db")).await?;
/// store.migrate().await?;
/// let tenant = store.create_tenant("acme", "standard").await?;
/// assert_eq!(store.get_tenant(tenant.id).await?.map(|t| t.name), Some("acme".to_owned()));
/// # Ok(()) }
/// ```
#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// Applies pending migrations.
    async fn migrate(&self) -> StateResult<()>;

    // ---- tenants and keys ----

    /// Creates a tenant. Errors: `Conflict` when the name is taken.
    async fn create_tenant(&self, name: &str, tier: &str) -> StateResult<Tenant>;
    /// A tenant by id.
    async fn get_tenant(&self, id: TenantId) -> StateResult<Option<Tenant>>;
    /// A tenant by name.
    async fn tenant_by_name(&self, name: &str) -> StateResult<Option<Tenant>>;
    /// All tenants, by name.
    async fn list_tenants(&self) -> StateResult<Vec<Tenant>>;
    /// Suspends (`true`) or resumes a tenant; suspending again keeps the first suspension time.
    /// Returns the tenant as it now stands, `None` when there is no such tenant.
    async fn set_suspended(&self, id: TenantId, suspended: bool) -> StateResult<Option<Tenant>>;
    /// Moves a tenant to `tier`, whose scheduling priority is `tier_priority`: its jobs waiting to
    /// start take that priority. Returns the tenant as it now stands, `None` when unknown.
    async fn set_tenant_tier(&self, id: TenantId, tier: &str, tier_priority: i32) -> StateResult<Option<Tenant>>;
    /// Stores the SHA-256 digest of an API key for a tenant, or for the admin when `tenant` is
    /// `None`. Returns the key as stored (its id is the first 16 hex digits of the digest).
    async fn add_api_key(&self, digest: Digest, tenant: Option<TenantId>, read_only: bool) -> StateResult<ApiKey>;
    /// A tenant's keys, revoked ones included, by creation time.
    async fn list_api_keys(&self, tenant: TenantId) -> StateResult<Vec<ApiKey>>;
    /// Revokes a tenant's key by id (revoking again keeps the first time). Returns the key as it
    /// now stands, `None` when the tenant has no key with that id.
    async fn revoke_api_key(&self, tenant: TenantId, id: &str) -> StateResult<Option<ApiKey>>;
    /// Whom a key digest stands for; `None` for an unknown or revoked key.
    async fn principal(&self, digest: Digest) -> StateResult<Option<Principal>>;
    /// Whether any admin key exists.
    async fn has_admin_key(&self) -> StateResult<bool>;

    // ---- tiers ----

    /// The stored tiers by name.
    async fn tiers(&self) -> StateResult<Tiers>;
    /// Creates or replaces tiers (`replace`), or adds only those not stored yet (`!replace`: the
    /// configuration file's tiers at start). A replaced tier's priority applies to the waiting
    /// jobs of its tenants.
    async fn put_tiers(&self, tiers: &Tiers, replace: bool) -> StateResult<()>;

    // ---- workloads and inputs ----

    /// Records `name` → `digest` for the tenant, replacing an earlier upload under that name, and
    /// holds the component for the tenant (see [`StateStore::hold_component`]). A component the
    /// tenant used under the replaced upload and no longer names counts no more in its stored
    /// bytes. Returns [`ComponentHold::Collecting`], and stores nothing, when the component is
    /// being deleted: that happens only when more than the grace period passed since the caller
    /// held it and stored its bytes, which it must do again.
    async fn put_workload(&self, tenant: TenantId, workload: &Workload) -> StateResult<ComponentHold>;
    /// A tenant's workload by name.
    async fn get_workload(&self, tenant: TenantId, name: &str) -> StateResult<Option<Workload>>;
    /// A tenant's workloads, by name: those after `after` (a name), at most `limit`.
    async fn list_workloads(&self, tenant: TenantId, after: Option<&str>, limit: u32) -> StateResult<Vec<Workload>>;
    /// Whether one of the tenant's workloads is the component `digest`.
    async fn has_component(&self, tenant: TenantId, digest: Digest) -> StateResult<bool>;
    /// Records that the tenant uploaded an input blob.
    async fn put_input(&self, tenant: TenantId, digest: Digest, size: u64) -> StateResult<()>;
    /// The size in bytes of an input blob the tenant uploaded.
    async fn input_size(&self, tenant: TenantId, digest: Digest) -> StateResult<Option<u64>>;
    /// Bytes the tenant keeps stored: the components it holds in use (each distinct digest once:
    /// those its workloads name and those its jobs that have not ended need; see
    /// [`StateStore::hold_component`]), its uploaded inputs and the params of its jobs (a running
    /// total kept with the jobs' inserts and deletions, not a count over them).
    async fn stored_bytes(&self, tenant: TenantId) -> StateResult<StoredBytes>;

    // ---- components and their garbage collection (see `coordinator::collect`) ----

    /// Holds component `digest` for the tenant before its bytes are stored under it (an upload,
    /// `size` in bytes: the component is recorded when new), or to use it again (re-driving a
    /// dead job, `size` `None`: only a component still stored). A held component is not
    /// deleted: the hold lasts while a workload of the tenant names the component or a job of
    /// the tenant that has not ended needs it, and [`StateStore::sweep_components`] releases it
    /// a grace period after that, counted from the first sweep that found it unused. Returns
    /// whether it is held ([`ComponentHold`]).
    async fn hold_component(&self, tenant: TenantId, digest: Digest, size: Option<u64>) -> StateResult<ComponentHold>;
    /// Records components found in the object store (digest, size in bytes) that have no record
    /// (stored before they were recorded, or left by an upload that never finished), so they are
    /// collected when unused, and the size of those recorded without one. Returns how many were
    /// new.
    async fn adopt_components(&self, found: &[(Digest, u64)]) -> StateResult<u64>;
    /// One pass of the collector's bookkeeping, at `now_ms` (Unix ms), in one transaction: marks
    /// the tenants' holds that no workload of the tenant names and no job of the tenant that has
    /// not ended needs, unmarks those in use again, releases those marked at or before
    /// `now_ms - grace_ms` that are still unused, and marks the components no tenant holds and
    /// no workload names.
    async fn sweep_components(&self, now_ms: i64, grace_ms: i64) -> StateResult<ComponentSweep>;
    /// Takes up to `limit` marked components for deletion, each only if no tenant holds it and
    /// no workload names it (checked in the same statement), and returns them (digest, size in
    /// bytes) with those taken before and not yet forgotten (a collector that stopped half-way).
    /// From then on [`StateStore::hold_component`] answers [`ComponentHold::Collecting`]; the
    /// caller deletes the bytes, then calls [`StateStore::forget_component`].
    async fn claim_components(&self, now_ms: i64, limit: u32) -> StateResult<Vec<(Digest, u64)>>;
    /// Deletes the record of a component taken by [`StateStore::claim_components`] once its
    /// bytes are deleted. Returns whether there was one.
    async fn forget_component(&self, digest: Digest) -> StateResult<bool>;

    // ---- jobs, as the API sees them ----

    /// Inserts jobs in one transaction, in order; for a job with an idempotency key its tenant
    /// already used, nothing is inserted and the earlier job is returned with `false`. The jobs
    /// that have a worker in `direct` (by index; missing or `None`: queued as usual) are inserted
    /// already assigned to it, as
    /// [`StateStore::assign_jobs`] would leave them after one claim: attempt 1, lease epoch 1.
    /// That holds only while `term` is the leader's term (checked in the same transaction, as
    /// for a claim; `None`: unfenced); otherwise they are inserted queued, and the caller tells
    /// by their state. Delayed jobs (`not_before_ms` ahead) are always inserted `scheduled`.
    async fn insert_jobs_direct(
        &self,
        jobs: &[NewJob],
        direct: &[Option<WorkerId>],
        term: Option<LeaderTerm>,
    ) -> StateResult<Vec<(JobRecord, bool)>>;
    /// A tenant's job.
    async fn get_job(&self, tenant: TenantId, id: JobId) -> StateResult<Option<JobRecord>>;
    /// A tenant's jobs, newest first: at most `filter.limit`, and no more after the one that
    /// takes their params and inline inputs to `filter.max_bytes`.
    async fn list_jobs(&self, tenant: TenantId, filter: &JobFilter) -> StateResult<Vec<JobRecord>>;
    /// Cancels a job: a queued one ends `cancelled` at once; an assigned or running one is marked
    /// `cancel_requested` (the worker is then told). Returns the job as it now stands.
    async fn request_cancel(&self, tenant: TenantId, id: JobId) -> StateResult<Option<JobRecord>>;
    /// The inline output of a tenant's ended job (`None` when the job does not exist or its output
    /// is in parts).
    async fn output_inline(&self, tenant: TenantId, id: JobId) -> StateResult<Option<Vec<u8>>>;
    /// A job's log lines, oldest first: those after the first `page.offset`, at most
    /// `page.limit`, and no more after the one that takes their messages to `page.max_bytes`.
    async fn job_logs(&self, tenant: TenantId, id: JobId, page: LogFilter) -> StateResult<Vec<LogLine>>;

    // ---- jobs, as the scheduler and workers drive them ----

    /// Re-drives a tenant's `dead` job: it is queued again with its retryable failures reset to 0,
    /// and resumes from its last checkpoint. A job in any other state is left as it is. Returns
    /// the job as it now stands.
    async fn redrive(&self, tenant: TenantId, id: JobId) -> StateResult<Option<JobRecord>>;

    /// For each tenant with queued jobs, its best `per_tenant` ones (priority descending, then
    /// age), grouped by tenant; leaves out the tenants in `skip` (at their concurrency limit,
    /// suspended, out of fuel) and the jobs with a waiting reason. The scheduler shares slots out
    /// across the tenants (see `coordinator::scheduler`).
    async fn queued_candidates(&self, per_tenant: u32, skip: &[TenantId]) -> StateResult<Vec<Candidate>>;
    /// Queues the `scheduled` jobs whose start time is at or before `now_ms` (Unix ms), at most
    /// `limit`, earliest first. Returns them as they now stand.
    async fn promote_scheduled(&self, now_ms: i64, limit: u32) -> StateResult<Vec<JobRecord>>;
    /// Records why queued jobs cannot be placed; they are left out of `queued_candidates` until
    /// [`StateStore::clear_waiting_reasons`].
    async fn set_waiting_reasons(&self, reasons: &[(JobId, String)]) -> StateResult<()>;
    /// Clears every queued job's waiting reason (the workers changed: they may fit now).
    async fn clear_waiting_reasons(&self) -> StateResult<()>;
    /// Reclaims what the queue's reads would otherwise step over: on PostgreSQL, `VACUUM` of the
    /// `job_queue` table, whose dead rows (jobs claimed since the last call) the candidates query
    /// reads past until then (see migrations/postgres/0010_job_queue.sql). The leader calls it
    /// every second. Nothing to do on SQLite, which removes index entries with their row.
    /// Errors: the statement failed (another `VACUUM` of the table is not one: it waits).
    async fn vacuum_queue(&self) -> StateResult<()> {
        Ok(())
    }
    /// Hands queued jobs to `worker`: each still-queued one moves to `assigned` with its attempt and
    /// lease epoch raised. Jobs no longer queued are left out of the answer. Fenced by `term`.
    async fn assign_jobs(
        &self,
        term: Option<LeaderTerm>,
        worker: &WorkerId,
        ids: &[JobId],
    ) -> StateResult<Vec<Claimed>>;
    /// Applies workers' updates in order, in one transaction. Each is fenced by its lease epoch:
    /// a stale epoch (or a job that already ended) changes nothing and answers [`Applied::Stale`].
    /// `Finish` is accepted once per job, so exactly one terminal result is kept; a `Suspended`
    /// outcome puts the job back to `queued`.
    async fn apply_updates(&self, updates: &[FencedUpdate]) -> StateResult<Vec<Applied>>;

    /// Puts every `assigned` or `running` job held by a worker not in `live` back to `queued`
    /// (its lease is void). Returns the ids. Fenced by `term`.
    async fn requeue_orphans(&self, term: Option<LeaderTerm>, live: &[WorkerId]) -> StateResult<Vec<JobId>>;
    /// The leases `worker` holds (jobs `assigned` or `running` under its id).
    async fn leases_of(&self, worker: &WorkerId) -> StateResult<Vec<Lease>>;
    /// Puts the given leased jobs back to `queued`, each only while its lease epoch is still the
    /// one given. Returns the ids requeued. Fenced by `term`.
    async fn requeue_leases(&self, term: Option<LeaderTerm>, leases: &[(JobId, i64)]) -> StateResult<Vec<JobId>>;
    /// Deletes up to `limit` ended jobs that finished before `before_ms` (Unix milliseconds),
    /// oldest first, with their logs and checkpoints. Returns each one's id and whether output
    /// parts may be stored for it, which the caller deletes: true when its output is in parts,
    /// or when it was claimed more than once (an attempt that lost its lease may have stored
    /// parts; see [`crate::blobs::Blobs::put_output_part`]).
    async fn purge_finished(&self, before_ms: i64, limit: u32) -> StateResult<Vec<(JobId, bool)>>;
    /// A tenant's metered usage per workload (see [`Metered`]), summed over the metering hours
    /// that start in `[from_ms, to_ms)` (Unix ms; figures are kept per hour, so a range is
    /// exact when its ends are whole hours). Workloads by name; none without usage.
    async fn usage(&self, tenant: TenantId, from_ms: i64, to_ms: i64) -> StateResult<Vec<WorkloadUsage>>;
    /// Fuel units metered per tenant over the hours that start at or after `since_ms` (the
    /// monthly fuel budget). Tenants without usage are left out.
    async fn fuel_since(&self, since_ms: i64) -> StateResult<Vec<(TenantId, u64)>>;
    /// Jobs not yet ended (`scheduled`, `queued`, `assigned`, `running`) by their tenant's tier
    /// name and state (the `niyanta_jobs` gauge).
    async fn job_counts(&self) -> StateResult<Vec<(String, JobState, u64)>>;
    /// The submission time of the oldest queued job, Unix ms; `None` when none is queued.
    async fn oldest_queued_at_ms(&self) -> StateResult<Option<i64>>;
    /// Running or assigned jobs per tenant.
    async fn active_by_tenant(&self) -> StateResult<Vec<(TenantId, u32)>>;
    /// Jobs of one tenant waiting to start (`queued` or `scheduled`).
    async fn queued_count(&self, tenant: TenantId) -> StateResult<u32>;
    /// Takes `tokens` from the tenant's submission bucket (see [`TokenBucket`]; GCRA), which
    /// every user of the store shares: on PostgreSQL, every coordinator of the installation, the
    /// time read from the database's clock. `None`: taken. `Some(wait)`: refused, nothing taken,
    /// and `wait` is the time until that many tokens are there; more tokens than the burst are
    /// refused with [`Duration::MAX`](std::time::Duration::MAX). A bucket whose interval or burst
    /// changed keeps the time it owes (a tier change gives no new burst).
    async fn take_submission_tokens(
        &self,
        tenant: TenantId,
        bucket: TokenBucket,
        tokens: u32,
    ) -> StateResult<Option<std::time::Duration>>;
}
