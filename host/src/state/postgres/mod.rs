//! The distributed state backend: PostgreSQL through sqlx, with the same tables and semantics as
//! the SQLite one. Claims lock the rows they take (`FOR UPDATE SKIP LOCKED`), so concurrent
//! schedulers never hand one job out twice.

use std::time::Duration;

use crate::state::machine::{ENDED, LEASED, LIVE, WAITING};
use anyhow::Context as _;
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, FromRow, PgPool, Row};

mod admin;
mod claim;
mod components;
mod gauges;
mod insert;
mod leader;
pub mod pool;
mod rate;
mod updates;
mod usage;

use super::rows::{
    CANDIDATE_COLUMNS, CandidateRow, JOB_COLUMNS, JobRow, LEASE_COLUMNS, LeaseRow, LogRow, TenantRow, WorkloadRow,
    max_bytes_sql, parse, within_bytes,
};
use super::*;
use crate::ids::now_ms;

/// PostgreSQL-backed [`StateStore`].
#[derive(Clone)]
pub struct PostgresStore {
    write: PgPool,
    read: PgPool,
    host_retry: RetryPolicy,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user@host:port/db`), with up to
    /// `max_connections` connections. With `schema`, every table lives in that schema (created
    /// when missing), so several installations or tests can share one database.
    pub async fn connect(url: &str, schema: Option<&str>, max_connections: u32) -> anyhow::Result<Self> {
        let opts: PgConnectOptions = url.parse().with_context(|| format!("parsing the database URL {url}"))?;
        if let Some(schema) = schema {
            anyhow::ensure!(
                schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "schema {schema:?} may hold only letters, digits and '_'"
            );
            let admin = PgPoolOptions::new().max_connections(1).connect_with(opts.clone()).await?;
            sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {schema}"))).execute(&admin).await?;
            admin.close().await;
        }
        let opts = pool::session(opts, schema);
        let pool = pool::options(max_connections)
            .connect_with(opts)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {}", redact(url)))?;
        Ok(Self { write: pool.clone(), read: pool, host_retry: RetryPolicy::HOST })
    }

    /// Retries attempts that end in a host error under `policy` (default [`RetryPolicy::HOST`]).
    pub fn with_host_retry(mut self, policy: RetryPolicy) -> Self {
        self.host_retry = policy;
        self
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].find(':') {
            Some(colon) => format!("{}:***{}", &url[..s + 3 + colon], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

pub(super) fn job_from_row(r: &PgRow) -> anyhow::Result<JobRecord> {
    JobRow::read(r)?.try_into()
}

fn lease_from_row(r: &PgRow) -> anyhow::Result<Lease> {
    LeaseRow::read(r)?.try_into()
}

fn tenant_from_row(r: &PgRow) -> anyhow::Result<Tenant> {
    TenantRow::from_row(r)?.try_into()
}

fn workload_from_row(r: &PgRow) -> anyhow::Result<Workload> {
    WorkloadRow::from_row(r)?.try_into()
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[async_trait]
impl StateStore for PostgresStore {
    async fn migrate(&self) -> StateResult<()> {
        sqlx::migrate!("../migrations/postgres").run(&self.write).await.context("applying PostgreSQL migrations")?;
        Ok(())
    }

    async fn create_tenant(&self, name: &str, tier: &str) -> StateResult<Tenant> {
        self.insert_tenant(name, tier).await
    }

    async fn get_tenant(&self, id: TenantId) -> StateResult<Option<Tenant>> {
        self.tenant_where("id", &id.to_string()).await
    }

    async fn tenant_by_name(&self, name: &str) -> StateResult<Option<Tenant>> {
        self.tenant_where("name", name).await
    }

    async fn list_tenants(&self) -> StateResult<Vec<Tenant>> {
        self.all_tenants().await
    }

    async fn set_suspended(&self, id: TenantId, suspended: bool) -> StateResult<Option<Tenant>> {
        self.update_suspended(id, suspended).await
    }

    async fn set_tenant_tier(&self, id: TenantId, tier: &str, tier_priority: i32) -> StateResult<Option<Tenant>> {
        self.update_tier(id, tier, tier_priority).await
    }

    async fn add_api_key(&self, digest: Digest, tenant: Option<TenantId>, read_only: bool) -> StateResult<ApiKey> {
        self.insert_key(digest, tenant, read_only).await
    }

    async fn list_api_keys(&self, tenant: TenantId) -> StateResult<Vec<ApiKey>> {
        self.keys_of(tenant).await
    }

    async fn revoke_api_key(&self, tenant: TenantId, id: &str) -> StateResult<Option<ApiKey>> {
        self.revoke_key(tenant, id).await
    }

    async fn principal(&self, digest: Digest) -> StateResult<Option<Principal>> {
        self.key_principal(digest).await
    }

    async fn has_admin_key(&self) -> StateResult<bool> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE tenant_id IS NULL AND revoked_at_ms IS NULL")
                .fetch_one(&self.read)
                .await?;
        Ok(n > 0)
    }

    async fn stored_bytes(&self, tenant: TenantId) -> StateResult<StoredBytes> {
        self.bytes_stored_by(tenant).await
    }

    async fn hold_component(&self, tenant: TenantId, digest: Digest, size: Option<u64>) -> StateResult<ComponentHold> {
        self.hold(tenant, digest, size).await
    }

    async fn adopt_components(&self, found: &[(Digest, u64)]) -> StateResult<u64> {
        self.record_components(found).await
    }

    async fn sweep_components(&self, now_ms: i64, grace_ms: i64) -> StateResult<ComponentSweep> {
        self.sweep(now_ms, grace_ms).await
    }

    async fn claim_components(&self, now_ms: i64, limit: u32) -> StateResult<Vec<(Digest, u64)>> {
        self.claim_unheld(now_ms, limit).await
    }

    async fn forget_component(&self, digest: Digest) -> StateResult<bool> {
        self.forget_claimed(digest).await
    }

    async fn tiers(&self) -> StateResult<Tiers> {
        self.stored_tiers().await
    }

    async fn put_tiers(&self, tiers: &Tiers, replace: bool) -> StateResult<()> {
        self.upsert_tiers(tiers, replace).await
    }

    async fn put_workload(&self, tenant: TenantId, w: &Workload) -> StateResult<ComponentHold> {
        self.upsert_workload(tenant, w).await
    }

    async fn get_workload(&self, tenant: TenantId, name: &str) -> StateResult<Option<Workload>> {
        let row = sqlx::query("SELECT * FROM workloads WHERE tenant_id = $1 AND name = $2")
            .bind(tenant.to_string())
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(workload_from_row).transpose()?)
    }

    async fn list_workloads(&self, tenant: TenantId, after: Option<&str>, limit: u32) -> StateResult<Vec<Workload>> {
        let rows = sqlx::query(
            "SELECT * FROM workloads WHERE tenant_id = $1 AND ($2::TEXT IS NULL OR name > $3) ORDER BY name LIMIT $4",
        )
        .bind(tenant.to_string())
        .bind(after)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(workload_from_row).collect::<anyhow::Result<_>>()?)
    }

    async fn has_component(&self, tenant: TenantId, digest: Digest) -> StateResult<bool> {
        self.component_of(tenant, digest).await
    }

    async fn put_input(&self, tenant: TenantId, digest: Digest, size: u64) -> StateResult<()> {
        sqlx::query(
            "INSERT INTO inputs (tenant_id, digest, size_bytes, created_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(tenant.to_string())
        .bind(digest.to_hex())
        .bind(size as i64)
        .bind(now_ms())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn input_size(&self, tenant: TenantId, digest: Digest) -> StateResult<Option<u64>> {
        let n: Option<i64> = sqlx::query_scalar("SELECT size_bytes FROM inputs WHERE tenant_id = $1 AND digest = $2")
            .bind(tenant.to_string())
            .bind(digest.to_hex())
            .fetch_optional(&self.read)
            .await?;
        Ok(n.map(|n| n as u64))
    }

    async fn insert_jobs_direct(
        &self,
        jobs: &[NewJob],
        direct: &[Option<WorkerId>],
        term: Option<LeaderTerm>,
    ) -> StateResult<Vec<(JobRecord, bool)>> {
        // One statement: atomic without a transaction of its own.
        let mut conn = self.write.acquire().await?;
        insert::insert_jobs(&mut conn, jobs, direct, term).await
    }

    async fn get_job(&self, tenant: TenantId, id: JobId) -> StateResult<Option<JobRecord>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE tenant_id = $1 AND id = $2");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(tenant.to_string())
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(job_from_row).transpose()?)
    }

    async fn list_jobs(&self, tenant: TenantId, f: &JobFilter) -> StateResult<Vec<JobRecord>> {
        // The newest `limit`, then those up to the one that takes the bytes to `max_bytes`
        // (see `rows::within_bytes`).
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE id IN (SELECT id FROM ({} ( \
               SELECT id, octet_length(params) + COALESCE(octet_length(input_inline), 0) AS bytes FROM jobs \
               WHERE tenant_id = $1 AND ($2::TEXT IS NULL OR state = $3) AND ($4::TEXT IS NULL OR workload = $5) \
               AND ($6::TEXT IS NULL OR id < $7) ORDER BY id DESC LIMIT $8) AS in_order) AS page \
             WHERE before_bytes IS NULL OR before_bytes < $9) ORDER BY id DESC",
            within_bytes("id", "DESC")
        );
        let state = f.state.map(JobState::as_str);
        let before = f.before.map(|b| b.to_string());
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(tenant.to_string())
            .bind(state)
            .bind(state)
            .bind(&f.workload)
            .bind(&f.workload)
            .bind(&before)
            .bind(&before)
            .bind(i64::from(f.limit.clamp(1, 1000)))
            .bind(max_bytes_sql(f.max_bytes))
            .fetch_all(&self.read)
            .await?;
        Ok(rows.iter().map(job_from_row).collect::<anyhow::Result<_>>()?)
    }

    async fn request_cancel(&self, tenant: TenantId, id: JobId) -> StateResult<Option<JobRecord>> {
        let now = now_ms();
        let mut tx = self.write.begin().await?;
        usage::cancel_waiting(&mut tx, tenant, id, now).await?;
        let sql = format!(
            "UPDATE jobs SET \
               state = CASE WHEN state IN {WAITING} THEN 'cancelled' ELSE state END, \
               failure_class = CASE WHEN state IN {WAITING} THEN 'cancelled' ELSE failure_class END, \
               failure_message = CASE WHEN state IN {WAITING} THEN 'cancelled before it started' \
                 ELSE failure_message END, \
               finished_at_ms = CASE WHEN state IN {WAITING} THEN $1 ELSE finished_at_ms END, \
               cancel_requested = CASE WHEN state IN {LIVE} THEN TRUE ELSE cancel_requested END, \
               updated_at_ms = $2 \
             WHERE tenant_id = $3 AND id = $4 RETURNING {JOB_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(now)
            .bind(now)
            .bind(tenant.to_string())
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row.as_ref().map(job_from_row).transpose()?)
    }

    async fn output_inline(&self, tenant: TenantId, id: JobId) -> StateResult<Option<Vec<u8>>> {
        let out: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT output_inline FROM jobs WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.to_string())
                .bind(id.to_string())
                .fetch_optional(&self.read)
                .await?;
        Ok(out.flatten())
    }

    async fn job_logs(&self, tenant: TenantId, id: JobId, page: LogFilter) -> StateResult<Vec<LogLine>> {
        let sql = format!(
            "SELECT attempt, at_ms, level, message FROM job_logs WHERE seq IN (SELECT seq FROM ({} ( \
               SELECT l.seq, octet_length(l.message) AS bytes FROM job_logs l JOIN jobs j ON j.id = l.job_id \
               WHERE j.tenant_id = $1 AND l.job_id = $2 ORDER BY l.seq LIMIT $3 OFFSET $4) AS in_order) AS page \
             WHERE before_bytes IS NULL OR before_bytes < $5) ORDER BY seq",
            within_bytes("seq", "ASC")
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(tenant.to_string())
            .bind(id.to_string())
            .bind(i64::from(page.limit))
            .bind(i64::from(page.offset))
            .bind(max_bytes_sql(page.max_bytes))
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|r| Ok(LogRow::from_row(r)?.into())).collect()
    }

    async fn queued_candidates(&self, per_tenant: u32, skip: &[TenantId]) -> StateResult<Vec<Candidate>> {
        let skip: Vec<String> = skip.iter().map(|t| t.to_string()).collect();
        // See migrations/postgres/0009_queue_candidates.sql and 0010_job_queue.sql.
        let sql = format!("SELECT {CANDIDATE_COLUMNS} FROM queue_candidates($1, $2)");
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(i64::from(per_tenant)).bind(skip).fetch_all(&self.read).await?;
        rows.iter().map(|r| Ok(CandidateRow::read(r)?.try_into()?)).collect()
    }

    async fn redrive(&self, tenant: TenantId, id: JobId) -> StateResult<Option<JobRecord>> {
        let sql = format!(
            "UPDATE jobs SET state = 'queued', failures = 0, host_failures = 0, failure_class = NULL, failure_message = NULL, \
             finished_at_ms = NULL, not_before_ms = NULL, updated_at_ms = $1 \
             WHERE tenant_id = $2 AND id = $3 AND state = 'dead' RETURNING {JOB_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(now_ms())
            .bind(tenant.to_string())
            .bind(id.to_string())
            .fetch_optional(&self.write)
            .await?;
        match row {
            Some(r) => Ok(Some(job_from_row(&r)?)),
            None => self.get_job(tenant, id).await,
        }
    }

    async fn promote_scheduled(&self, now: i64, limit: u32) -> StateResult<Vec<JobRecord>> {
        let sql = format!(
            "UPDATE jobs SET state = 'queued', updated_at_ms = $1 WHERE id IN (SELECT id FROM jobs \
             WHERE state = 'scheduled' AND not_before_ms <= $2 ORDER BY not_before_ms LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING {JOB_COLUMNS}"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(now_ms())
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.write)
            .await?;
        Ok(rows.iter().map(job_from_row).collect::<anyhow::Result<_>>()?)
    }

    async fn set_waiting_reasons(&self, reasons: &[(JobId, String)]) -> StateResult<()> {
        let ids: Vec<String> = reasons.iter().map(|(j, _)| j.to_string()).collect();
        let texts: Vec<&str> = reasons.iter().map(|(_, r)| r.as_str()).collect();
        sqlx::query(
            "UPDATE jobs SET waiting_reason = r.reason FROM UNNEST($1::text[], $2::text[]) AS r(id, reason) \
             WHERE jobs.id = r.id AND jobs.state = 'queued'",
        )
        .bind(ids)
        .bind(texts)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn clear_waiting_reasons(&self) -> StateResult<()> {
        sqlx::query("UPDATE jobs SET waiting_reason = NULL WHERE waiting_reason IS NOT NULL")
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn vacuum_queue(&self) -> StateResult<()> {
        // `VACUUM` cannot run in a transaction block: sent alone, outside one.
        sqlx::raw_sql("VACUUM job_queue").execute(&self.write).await?;
        Ok(())
    }

    async fn assign_jobs(
        &self,
        term: Option<LeaderTerm>,
        worker: &WorkerId,
        ids: &[JobId],
    ) -> StateResult<Vec<Claimed>> {
        claim::assign_jobs(&self.write, term, worker, ids).await
    }

    async fn apply_updates(&self, updates: &[FencedUpdate]) -> StateResult<Vec<Applied>> {
        let mut meter = super::usage_sql::Meter::default();
        if updates::single_statement(updates) {
            let mut conn = self.write.acquire().await?;
            let out = updates::apply_all(&mut conn, updates, now_ms(), &mut meter, &self.host_retry).await?;
            // Empty for such a batch (its results meter in their own statement): no statement.
            usage::store_meter(&mut conn, meter).await?;
            return Ok(out);
        }
        let mut tx = self.write.begin().await?;
        let out = updates::apply_all(&mut tx, updates, now_ms(), &mut meter, &self.host_retry).await?;
        usage::store_meter(&mut tx, meter).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn requeue_orphans(&self, term: Option<LeaderTerm>, live: &[WorkerId]) -> StateResult<Vec<JobId>> {
        let live: Vec<String> = live.iter().map(|w| w.0.clone()).collect();
        let mut tx = self.write.begin().await?;
        leader::fence(&mut tx, term).await?;
        let ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "UPDATE jobs SET state = 'queued', worker_id = NULL, updated_at_ms = $1 \
             WHERE state IN {LEASED} \
             AND (worker_id IS NULL OR NOT (worker_id = ANY($2))) RETURNING id"
        )))
        .bind(now_ms())
        .bind(live)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ids.iter().map(|s| parse(s, "job id")).collect::<anyhow::Result<_>>()?)
    }

    async fn leases_of(&self, worker: &WorkerId) -> StateResult<Vec<Lease>> {
        let sql = format!("SELECT {LEASE_COLUMNS} FROM jobs WHERE worker_id = $1 AND state IN {LEASED}");
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(&worker.0).fetch_all(&self.read).await?;
        rows.iter().map(|r| Ok(lease_from_row(r)?)).collect()
    }

    async fn requeue_leases(&self, term: Option<LeaderTerm>, leases: &[(JobId, i64)]) -> StateResult<Vec<JobId>> {
        let ids: Vec<String> = leases.iter().map(|(j, _)| j.to_string()).collect();
        let epochs: Vec<i64> = leases.iter().map(|(_, e)| *e).collect();
        let mut tx = self.write.begin().await?;
        leader::fence(&mut tx, term).await?;
        let out: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "UPDATE jobs SET state = 'queued', worker_id = NULL, updated_at_ms = $1 \
             FROM UNNEST($2::text[], $3::bigint[]) AS l(id, epoch) \
             WHERE jobs.id = l.id AND jobs.lease_epoch = l.epoch AND jobs.state IN {LEASED} \
             RETURNING jobs.id"
        )))
        .bind(now_ms())
        .bind(ids)
        .bind(epochs)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(out.iter().map(|s| parse(s, "job id")).collect::<anyhow::Result<_>>()?)
    }

    async fn purge_finished(&self, before_ms: i64, limit: u32) -> StateResult<Vec<(JobId, bool)>> {
        let mut tx = self.write.begin().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, output_parts > 0 OR lease_epoch > 1 AS blobs FROM jobs WHERE state IN {ENDED} \
             AND finished_at_ms < $1 ORDER BY finished_at_ms LIMIT $2 FOR UPDATE SKIP LOCKED"
        )))
        .bind(before_ms)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut out: Vec<(JobId, bool)> = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push((parse(&r.try_get::<String, _>("id")?, "job id")?, r.try_get::<bool, _>("blobs")?));
        }
        let ids: Vec<String> = out.iter().map(|(id, _)| id.to_string()).collect();
        for table in ["job_logs", "checkpoints"] {
            let sql = format!("DELETE FROM {table} WHERE job_id = ANY($1)");
            sqlx::query(AssertSqlSafe(sql)).bind(&ids).execute(&mut *tx).await?;
        }
        sqlx::query("DELETE FROM jobs WHERE id = ANY($1)").bind(&ids).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn usage(&self, tenant: TenantId, from_ms: i64, to_ms: i64) -> StateResult<Vec<WorkloadUsage>> {
        self.usage_between(tenant, from_ms, to_ms).await
    }

    async fn fuel_since(&self, since_ms: i64) -> StateResult<Vec<(TenantId, u64)>> {
        self.fuel_by_tenant_since(since_ms).await
    }

    async fn job_counts(&self) -> StateResult<Vec<(String, JobState, u64)>> {
        self.live_job_counts().await
    }

    async fn oldest_queued_at_ms(&self) -> StateResult<Option<i64>> {
        self.oldest_queued().await
    }

    async fn active_by_tenant(&self) -> StateResult<Vec<(TenantId, u32)>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT tenant_id, COUNT(*) AS n FROM jobs WHERE state IN {LEASED} GROUP BY tenant_id"
        )))
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((parse(&r.try_get::<String, _>("tenant_id")?, "tenant id")?, r.try_get::<i64, _>("n")? as u32)))
            .collect::<anyhow::Result<_>>()
            .map_err(Into::into)
    }

    async fn queued_count(&self, tenant: TenantId) -> StateResult<u32> {
        // Counted where claimed jobs leave no dead entries to step over: `job_queue`, and the
        // partial index `jobs_waiting` for queued jobs with a waiting reason (migration 0010).
        // `jobs_tenant_state` keeps an entry for every claimed job's `queued` version until
        // VACUUM: counted from it, the count took 60 ms by the end of a 60 s throughput run.
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM job_queue WHERE tenant_id = $1) \
             + (SELECT COUNT(*) FROM jobs WHERE tenant_id = $1 AND state = 'scheduled') \
             + (SELECT COUNT(*) FROM jobs WHERE tenant_id = $1 AND state = 'queued' AND waiting_reason IS NOT NULL)",
        )
        .bind(tenant.to_string())
        .fetch_one(&self.read)
        .await?;
        Ok(n as u32)
    }

    async fn take_submission_tokens(
        &self,
        tenant: TenantId,
        bucket: TokenBucket,
        tokens: u32,
    ) -> StateResult<Option<Duration>> {
        self.take_tokens(tenant, bucket, tokens).await
    }
}
