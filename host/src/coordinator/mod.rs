//! The coordinator: accepts jobs, keeps their state, schedules them onto worker slots and applies
//! the workers' reports.
//!
//! Scheduling (see [`scheduler`]) hands queued jobs to workers with free slots, best first: tier
//! priority, then job priority, then age, never past a tenant's concurrent-job limit. Report
//! handling (see [`reports`]) commits each report before acknowledging it and fences it by the
//! lease epoch.

mod catalog;
mod collect;
mod direct;
mod fair_share;
mod gauges;
mod leader;
mod membership;
mod quota;
mod reports;
mod retention;
mod scheduler;

pub use catalog::{CATALOG_REFRESH, effective_tiers};
pub use collect::{DEFAULT_COMPONENT_GRACE, UploadError};
pub use leader::Election;
pub use quota::month_start_ms;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::blobs::Blobs;
use crate::broker::{Broker, Command, JobEvent, JobEventKind};
use crate::ids::{Digest, JobId, WorkerId};
use crate::state::{
    INLINE_LIMIT, InputRef, JobRecord, JobState, NewJob, Placement, RetryPolicy, StateError, StateStore, Tenant,
};
use crate::tier::{Tier, Tiers};

/// Most reports applied in one transaction.
const REPORT_BATCH: usize = 512;

/// How far ahead a delayed job may be scheduled, ms (366 days).
pub const MAX_DELAY_MS: i64 = 366 * 86_400_000;

/// A worker as the leader knows it.
#[derive(Clone, Debug)]
pub struct KnownWorker {
    /// What it declared: id, slots, labels, version.
    pub info: crate::broker::WorkerInfo,
    /// Jobs it holds leases on.
    pub running: u32,
    /// Time since its last heartbeat.
    pub last_seen: Duration,
}

/// Settings of the coordinator.
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    /// This coordinator's name in leader election and logs.
    pub id: String,
    /// A worker silent this long has lost its leases.
    pub lease_timeout: Duration,
    /// How long an elected leader's term lasts unrenewed (renewed every second).
    pub leader_ttl: Duration,
    /// Ended jobs (with their logs, checkpoints and output) are deleted this long after they
    /// finished; `None` keeps them.
    pub retention: Option<Duration>,
    /// A component no workload names and no job that has not ended needs is deleted once it has
    /// been unused this long (default [`DEFAULT_COMPONENT_GRACE`], 10 minutes; see [`collect`]).
    /// It must be longer than an upload takes to store a component and than a submission takes
    /// from reading its workload to inserting its job.
    pub component_grace: Duration,
    /// The worker that lives in this process (`niyanta serve`): it cannot be drained through
    /// the API, as the process would be left without one.
    pub embedded_worker: Option<WorkerId>,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            id: format!("coordinator-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            lease_timeout: Duration::from_secs(3),
            leader_ttl: Duration::from_secs(3),
            retention: None,
            component_grace: DEFAULT_COMPONENT_GRACE,
            embedded_worker: None,
        }
    }
}

/// The input of a submission.
#[derive(Clone, Debug)]
pub enum SubmitInput {
    /// No input (zero bytes).
    None,
    /// Bytes sent with the submission.
    Inline(Bytes),
    /// An input blob the tenant uploaded before.
    Blob(Digest),
}

/// A job as a tenant submits it.
#[derive(Clone, Debug)]
pub struct Submission {
    pub workload: String,
    /// JSON text, already checked to parse.
    pub params: String,
    pub input: SubmitInput,
    /// Priority within the tenant's tier, -100..=100; higher starts first.
    pub priority: i32,
    pub idempotency_key: Option<String>,
    /// Start no earlier than this, Unix ms (a delayed job).
    pub not_before_ms: Option<i64>,
    pub retry: RetryPolicy,
    pub placement: Placement,
}

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("workload {0:?} does not exist; upload it first with PUT /v1/workloads/{0}")]
    UnknownWorkload(String),
    #[error("input {0} does not exist; upload it first with POST /v1/inputs")]
    UnknownInput(Digest),
    #[error("the input is {size} bytes; the tier allows {limit} bytes")]
    InputTooLarge { size: u64, limit: u64 },
    #[error(
        "the params are {size} bytes of JSON; the tier allows {limit} bytes (params_bytes): pass larger data as the \
         job's input"
    )]
    ParamsTooLarge { size: u64, limit: u64 },
    #[error("the tenant has {queued} queued jobs; the tier allows {limit}")]
    QueueFull { queued: u32, limit: u32 },
    #[error("the tier allows {rate} submissions per second in bursts of up to {burst}; retry in {retry_after_ms} ms")]
    RateLimited { rate: u32, burst: u32, retry_after_ms: u64 },
    #[error("a batch of {jobs} jobs is more than the tier's submission burst of {burst}; send smaller batches")]
    BatchOverBurst { jobs: u32, burst: u32 },
    #[error(
        "the tenant stores {stored} bytes; {adding} more would pass the tier's stored_bytes quota of {limit} bytes"
    )]
    StoredBytes { stored: u64, adding: u64, limit: u64 },
    #[error(
        "the tenant's jobs used {used} fuel units since {since}; the tier's monthly fuel budget is {budget}: \
         wait for the next month or move the tenant to a larger tier"
    )]
    FuelBudget { used: u64, budget: u64, since: String },
    #[error("priority {0} is out of range; use -100 to 100")]
    BadPriority(i32),
    /// A malformed retry policy, start time or placement; the text names the field.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StateError> for SubmitError {
    fn from(e: StateError) -> Self {
        Self::Internal(e.into())
    }
}

/// A job a worker holds a lease on, as the leader remembers it.
#[derive(Clone, Debug)]
struct Held {
    tenant_id: crate::ids::TenantId,
    workload: String,
    /// Whether the job was seen `running` (its `Running` report applied, or a lease in that
    /// state adopted): a result applied to a job never seen running also publishes its
    /// `running` event.
    started: bool,
}

#[derive(Debug)]
struct WorkerSlots {
    info: crate::broker::WorkerInfo,
    /// Jobs this worker holds leases on.
    running: HashMap<JobId, Held>,
    last_seen: Instant,
    /// Attempts of this worker whose result was committed, and when: a heartbeat whose
    /// inventory was taken before the result was sent, but read after it was committed, still
    /// lists them, and they must not be taken for attempts run without a lease.
    ended: HashMap<(JobId, i64), Instant>,
}

impl WorkerSlots {
    fn new(info: crate::broker::WorkerInfo) -> Self {
        Self { info, running: HashMap::new(), last_seen: Instant::now(), ended: HashMap::new() }
    }
}

/// The coordinator of one installation.
pub struct Coordinator {
    /// This process's sandbox runtime, told to forget collected components (see
    /// [`Coordinator::use_runtime`]).
    runtime: std::sync::OnceLock<Arc<crate::runtime::Runtime>>,
    state: Arc<dyn StateStore>,
    broker: Arc<dyn Broker>,
    blobs: Blobs,
    tiers: std::sync::RwLock<Arc<Tiers>>,
    config: CoordinatorConfig,
    election: Option<Arc<dyn Election>>,
    leadership: Mutex<Option<leader::Leadership>>,
    workers: Mutex<HashMap<WorkerId, WorkerSlots>>,
    tenants: Mutex<HashMap<crate::ids::TenantId, Tenant>>,
    /// The distinct label sets of the workers when waiting reasons were last cleared (see
    /// [`scheduler`]); `None` until the first round of a leadership.
    placed_labels: Mutex<Option<Vec<std::collections::BTreeMap<String, String>>>>,
    /// Each tenant's queue length as this coordinator knows it, in which submissions reserve
    /// room before inserting, so concurrent submissions through this coordinator cannot
    /// together pass `queued_jobs` (see [`quota::TenantQueue`]).
    queues: Mutex<HashMap<crate::ids::TenantId, Arc<quota::TenantQueue>>>,
    /// Tenants out of this month's fuel budget (see [`quota`]); found by the leader.
    over_budget: Mutex<Vec<crate::ids::TenantId>>,
    /// Whether the queue is known empty, for placing jobs at submission (see [`direct`]).
    queue: direct::QueueWatch,
    wake: Notify,
}

impl Coordinator {
    /// A coordinator over the given backends. With an `election` it leads only while elected
    /// (several coordinators share one state store); without, it is the only one and leads.
    pub fn new(
        state: Arc<dyn StateStore>,
        broker: Arc<dyn Broker>,
        blobs: Blobs,
        tiers: Arc<Tiers>,
        config: CoordinatorConfig,
        election: Option<Arc<dyn Election>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            runtime: std::sync::OnceLock::new(),
            state,
            broker,
            blobs,
            tiers: std::sync::RwLock::new(tiers),
            config,
            election,
            leadership: Mutex::new(None),
            workers: Mutex::new(HashMap::new()),
            tenants: Mutex::new(HashMap::new()),
            placed_labels: Mutex::new(None),
            queues: Mutex::new(HashMap::new()),
            over_budget: Mutex::new(Vec::new()),
            queue: direct::QueueWatch::default(),
            wake: Notify::new(),
        })
    }

    /// Makes `runtime` (the process's sandbox) forget each component this coordinator collects:
    /// its prepared copy in memory and its compiled artifact on disk.
    pub fn use_runtime(&self, runtime: Arc<crate::runtime::Runtime>) {
        let _ = self.runtime.set(runtime);
    }

    /// Starts leading, or campaigning for the leadership when there is an election (see
    /// [`leader`]). Alone, the jobs that were running when the previous process died are queued
    /// again first: a restarted process holds no lease.
    pub async fn start(self: &Arc<Self>) -> anyhow::Result<tokio::task::JoinSet<anyhow::Result<()>>> {
        let mut set = tokio::task::JoinSet::new();
        let this = self.clone();
        match self.election.clone() {
            Some(election) => set.spawn(async move { this.campaign_loop(election).await }),
            None => set.spawn(async move { this.lead_alone().await }),
        };
        let this = self.clone();
        set.spawn(async move { this.catalog_loop().await });
        Ok(set)
    }

    /// Accepts a job for `tenant`. Returns the job and whether it was created (`false`: the
    /// idempotency key was used before and the earlier job is returned).
    pub async fn submit(&self, tenant: &Tenant, s: Submission) -> Result<(JobRecord, bool), SubmitError> {
        let mut out = self.submit_many(tenant, vec![s]).await.map_err(|(_, e)| e)?;
        out.pop().ok_or_else(|| SubmitError::Internal(anyhow::anyhow!("no job was inserted")))
    }

    /// Accepts several jobs for `tenant` at once, all or none: a refused submission is returned
    /// with its index (`None` when the batch as a whole is refused: the queue or rate quota) and
    /// nothing is queued. The jobs are inserted in one transaction.
    pub async fn submit_many(
        &self,
        tenant: &Tenant,
        subs: Vec<Submission>,
    ) -> Result<Vec<(JobRecord, bool)>, (Option<usize>, SubmitError)> {
        let tier = self.tier(tenant);
        let mut workloads: HashMap<String, crate::state::Workload> = HashMap::new();
        let mut jobs = Vec::with_capacity(subs.len());
        for (i, s) in subs.into_iter().enumerate() {
            jobs.push(self.new_job(tenant, &tier, s, &mut workloads).await.map_err(|e| (Some(i), e))?);
        }
        let queue = self.queues.lock().entry(tenant.id).or_default().clone();
        let ask = quota::Ask {
            jobs: u32::try_from(jobs.len()).unwrap_or(u32::MAX),
            queued_limit: tier.queued_jobs,
            params_bytes: jobs.iter().map(|j| j.params.len() as u64).sum(),
            stored_limit: tier.stored_bytes,
        };
        let mut reservation =
            queue.reserve(ask, || self.count_quotas(tenant.id, &tier)).await.map_err(|e| (None, e))?;
        self.check_fuel_budget(tenant.id, &tier).await.map_err(|e| (None, e))?;
        self.take_submission_tokens(tenant.id, &tier, jobs.len()).await.map_err(|e| (None, e))?;
        // Placed at once while nothing waits in the queue (see [`direct`]).
        let mut reserved = direct::Reserved::new(self);
        let (direct, term) = self.place_at_submission(tenant.id, &tier, &jobs, &mut reserved);
        let inserted = self.state.insert_jobs_direct(&jobs, &direct, term).await.map_err(|e| (None, e.into()))?;
        let created = inserted.iter().filter(|(_, created)| *created).count();
        reservation.created = u32::try_from(created).unwrap_or(u32::MAX);
        reservation.created_bytes = inserted.iter().filter(|(_, c)| *c).map(|(j, _)| j.params.len() as u64).sum();
        drop(reservation);
        if created > 0 {
            crate::metrics::JOBS_SUBMITTED.with_label_values(&[tenant.tier.as_str()]).inc_by(created as u64);
            self.remember_tenant(tenant);
            if self.dispatch_inserted(&inserted, &direct, &mut reserved).await {
                self.queue_changed();
            }
        }
        Ok(inserted)
    }

    async fn new_job(
        &self,
        tenant: &Tenant,
        tier: &Tier,
        s: Submission,
        workloads: &mut HashMap<String, crate::state::Workload>,
    ) -> Result<NewJob, SubmitError> {
        if !(-100..=100).contains(&s.priority) {
            return Err(SubmitError::BadPriority(s.priority));
        }
        let params = s.params.len() as u64;
        if params > tier.params_bytes {
            return Err(SubmitError::ParamsTooLarge { size: params, limit: tier.params_bytes });
        }
        s.retry.validate().map_err(SubmitError::Invalid)?;
        if let Some(at) = s.not_before_ms
            && at > crate::ids::now_ms() + MAX_DELAY_MS
        {
            return Err(SubmitError::Invalid(format!(
                "not_before is more than {} days ahead; submit the job later",
                MAX_DELAY_MS / 86_400_000
            )));
        }
        let workload = match workloads.get(&s.workload) {
            Some(w) => w.clone(),
            None => {
                let w = self
                    .state
                    .get_workload(tenant.id, &s.workload)
                    .await?
                    .ok_or_else(|| SubmitError::UnknownWorkload(s.workload.clone()))?;
                workloads.insert(s.workload.clone(), w.clone());
                w
            }
        };
        let input = match s.input {
            SubmitInput::None => InputRef::Inline(Vec::new()),
            SubmitInput::Inline(b) if b.len() <= INLINE_LIMIT => InputRef::Inline(b.to_vec()),
            SubmitInput::Inline(b) => {
                let size = b.len() as u64;
                if size > tier.input_bytes {
                    return Err(SubmitError::InputTooLarge { size, limit: tier.input_bytes });
                }
                let digest = Digest::of(&b);
                if self.state.input_size(tenant.id, digest).await?.is_none() {
                    self.check_stored_bytes(tenant.id, tier, size).await?;
                }
                self.blobs.put_input(digest, b).await.map_err(anyhow::Error::from)?;
                self.state.put_input(tenant.id, digest, size).await?;
                InputRef::Blob { digest, size }
            }
            SubmitInput::Blob(digest) => {
                let size = self.state.input_size(tenant.id, digest).await?.ok_or(SubmitError::UnknownInput(digest))?;
                InputRef::Blob { digest, size }
            }
        };
        if input.size() > tier.input_bytes {
            return Err(SubmitError::InputTooLarge { size: input.size(), limit: tier.input_bytes });
        }
        Ok(NewJob {
            id: JobId::new(),
            tenant_id: tenant.id,
            workload: workload.name,
            digest: workload.digest,
            params: s.params,
            input,
            priority: s.priority,
            tier_priority: tier.priority,
            idempotency_key: s.idempotency_key,
            not_before_ms: s.not_before_ms,
            retry: s.retry,
            placement: s.placement,
            // The `submit` span of the API call (see `crate::trace`).
            trace_parent: crate::trace::current(),
        })
    }

    /// Cancels a tenant's job: a queued job ends at once, a running one is asked to stop. Returns
    /// the job as it now stands, `None` when the tenant has no such job.
    pub async fn cancel(&self, tenant: &Tenant, id: JobId) -> Result<Option<JobRecord>, StateError> {
        let Some(job) = self.state.request_cancel(tenant.id, id).await? else { return Ok(None) };
        match (job.state, &job.worker_id) {
            (JobState::Cancelled, _) => self.publish_state(&job),
            (JobState::Assigned | JobState::Running, Some(worker)) => {
                let cmd = Command::Cancel { job_id: job.id, epoch: job.lease_epoch };
                if let Err(e) = self.broker.send_command(worker, cmd).await {
                    tracing::warn!(job_id = %job.id, %worker, error = %e, "could not send cancel; the lease expiry will stop the job");
                }
            }
            _ => {}
        }
        Ok(Some(job))
    }

    /// Re-drives a tenant's dead job (see [`StateStore::redrive`]). Returns the job as it now
    /// stands (`dead` jobs are `queued`; others unchanged), `None` when the tenant has no such job.
    /// A dead job keeps no component: one whose component was deleted (see [`collect`]) stays
    /// `dead`.
    pub async fn redrive(&self, tenant: &Tenant, id: JobId) -> Result<Option<JobRecord>, StateError> {
        if let Some(dead) = self.state.get_job(tenant.id, id).await?.filter(|j| j.state == JobState::Dead)
            && self.state.hold_component(tenant.id, dead.digest, None).await? != crate::state::ComponentHold::Held
        {
            return Ok(Some(dead));
        }
        let job = self.state.redrive(tenant.id, id).await?;
        if let Some(job) = job.as_ref().filter(|j| j.state == JobState::Queued) {
            self.remember_tenant(tenant);
            self.publish_state(job);
            self.queue_changed();
        }
        Ok(job)
    }

    /// Whether `worker` is the worker inside this process (`niyanta serve`).
    pub fn is_embedded_worker(&self, worker: &WorkerId) -> bool {
        self.config.embedded_worker.as_ref() == Some(worker)
    }

    /// This coordinator's id (in leader election and logs).
    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// The workers this coordinator knows (only a leader knows any), by id.
    pub fn known_workers(&self) -> Vec<KnownWorker> {
        let mut workers: Vec<KnownWorker> = self
            .workers
            .lock()
            .values()
            .map(|w| KnownWorker {
                info: w.info.clone(),
                running: w.running.len() as u32,
                last_seen: w.last_seen.elapsed(),
            })
            .collect();
        workers.sort_by(|a, b| a.info.id.0.cmp(&b.info.id.0));
        workers
    }

    fn publish_state(&self, job: &JobRecord) {
        crate::metrics::job_changed(job, &self.tier_label(job));
        let worker = job.worker_id.as_ref().map_or("", |w| w.0.as_str());
        if job.state.is_terminal() {
            tracing::info!(job_id = %job.id, tenant_id = %job.tenant_id, worker_id = worker, attempt = job.attempt,
                state = job.state.as_str(), failure_class = job.failure_class.map(|c| c.as_str()), "job ended");
        } else {
            tracing::debug!(job_id = %job.id, tenant_id = %job.tenant_id, worker_id = worker, attempt = job.attempt,
                state = job.state.as_str(), "job state");
        }
        self.broker.publish_event(JobEvent {
            job_id: job.id,
            tenant_id: job.tenant_id,
            kind: JobEventKind::State {
                state: job.state,
                attempt: job.attempt,
                failure_class: job.failure_class,
                failure_message: job.failure_message.clone(),
            },
        });
    }
}

fn no_tier() -> Tier {
    Tier {
        fuel_per_job: 0,
        memory_bytes: 0,
        wall_clock_ms: 0,
        concurrent_jobs: 0,
        queued_jobs: 0,
        input_bytes: 0,
        output_bytes: 0,
        checkpoint_bytes: 0,
        component_bytes: 0,
        params_bytes: 0,
        priority: 0,
        weight: 1,
        submissions_per_second: Some(1),
        submission_burst: Some(1),
        stored_bytes: Some(0),
        fuel_per_month: Some(1),
        compile_ms: 1,
    }
}
