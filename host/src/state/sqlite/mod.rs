//! The embedded state backend: SQLite through sqlx, in WAL mode.
//!
//! All writes go through a pool of one connection, so SQLite never answers "database is locked";
//! reads use a separate pool. `synchronous = NORMAL` in WAL mode keeps every commit across a crash
//! of the process (`kill -9`); only a power loss may drop the last commits (SQLite docs, "WAL mode").

use std::path::Path;
use std::time::Duration;

use crate::state::machine::{ENDED, LEASED, LIVE, WAITING};
use anyhow::Context as _;
use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{AssertSqlSafe, FromRow, Row, SqlitePool};

mod admin;
mod components;
mod gauges;
mod insert;
mod rate;
mod updates;
mod usage;

use super::rows::{
    CANDIDATE_COLUMNS, CandidateRow, CheckpointRow, JOB_COLUMNS, JobRow, LEASE_COLUMNS, LeaseRow, LogRow, TenantRow,
    WorkloadRow, max_bytes_sql, parse, within_bytes,
};
use super::*;
use crate::ids::now_ms;

/// SQLite-backed [`StateStore`].
#[derive(Clone)]
pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
    host_retry: RetryPolicy,
}

impl SqliteStore {
    /// Opens (creating when missing) the database file at `path`.
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            // 64 MiB of page cache per connection (negative: KiB), so the hot job rows stay in memory.
            .pragma("cache_size", "-65536")
            .foreign_keys(true);
        // A connection that comes back with a transaction sqlx still counts (work dropped
        // half-way that sqlx could not roll back) is closed, never reused: the next caller's
        // statements would run inside it.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .after_release(|conn, _| {
                Box::pin(async move {
                    let clean = !sqlx::Connection::is_in_transaction(conn);
                    if !clean {
                        crate::metrics::connection_discarded();
                        tracing::warn!("a pooled SQLite connection came back inside a transaction; closing it");
                    }
                    Ok(clean)
                })
            })
            .connect_with(opts.clone())
            .await
            .with_context(|| format!("opening SQLite database {}", path.display()))?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.read_only(true))
            .await
            .with_context(|| format!("opening SQLite database {} for reading", path.display()))?;
        Ok(Self { write, read, host_retry: RetryPolicy::HOST })
    }

    /// Retries attempts that end in a host error under `policy` (default [`RetryPolicy::HOST`]).
    pub fn with_host_retry(mut self, policy: RetryPolicy) -> Self {
        self.host_retry = policy;
        self
    }
}

pub(super) fn job_from_row(r: &SqliteRow) -> anyhow::Result<JobRecord> {
    JobRow::read(r)?.try_into()
}

fn tenant_from_row(r: &SqliteRow) -> anyhow::Result<Tenant> {
    TenantRow::from_row(r)?.try_into()
}

fn workload_from_row(r: &SqliteRow) -> anyhow::Result<Workload> {
    WorkloadRow::from_row(r)?.try_into()
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[async_trait]
impl StateStore for SqliteStore {
    async fn migrate(&self) -> StateResult<()> {
        sqlx::migrate!("../migrations/sqlite").run(&self.write).await.context("applying SQLite migrations")?;
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
        let row = sqlx::query("SELECT * FROM workloads WHERE tenant_id = ? AND name = ?")
            .bind(tenant.to_string())
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(workload_from_row).transpose()?)
    }

    async fn list_workloads(&self, tenant: TenantId, after: Option<&str>, limit: u32) -> StateResult<Vec<Workload>> {
        let rows = sqlx::query(
            "SELECT * FROM workloads WHERE tenant_id = ? AND (? IS NULL OR name > ?) ORDER BY name LIMIT ?",
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
            "INSERT INTO inputs (tenant_id, digest, size_bytes, created_at_ms) VALUES (?, ?, ?, ?) \
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
        let n: Option<i64> = sqlx::query_scalar("SELECT size_bytes FROM inputs WHERE tenant_id = ? AND digest = ?")
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
        _term: Option<LeaderTerm>,
    ) -> StateResult<Vec<(JobRecord, bool)>> {
        let mut conn = self.write.acquire().await?;
        insert::insert_jobs(&mut conn, jobs, direct).await
    }

    async fn get_job(&self, tenant: TenantId, id: JobId) -> StateResult<Option<JobRecord>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE tenant_id = ? AND id = ?");
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
               WHERE tenant_id = ? AND (? IS NULL OR state = ?) AND (? IS NULL OR workload = ?) \
               AND (? IS NULL OR id < ?) ORDER BY id DESC LIMIT ?) AS in_order) AS page \
             WHERE before_bytes IS NULL OR before_bytes < ?) ORDER BY id DESC",
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
               finished_at_ms = CASE WHEN state IN {WAITING} THEN ? ELSE finished_at_ms END, \
               cancel_requested = CASE WHEN state IN {LIVE} THEN 1 ELSE cancel_requested END, \
               updated_at_ms = ? \
             WHERE tenant_id = ? AND id = ? RETURNING {JOB_COLUMNS}"
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
            sqlx::query_scalar("SELECT output_inline FROM jobs WHERE tenant_id = ? AND id = ?")
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
               WHERE j.tenant_id = ? AND l.job_id = ? ORDER BY l.seq LIMIT ? OFFSET ?) AS in_order) AS page \
             WHERE before_bytes IS NULL OR before_bytes < ?) ORDER BY seq",
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
        let skip = serde_json::to_string(&skip.iter().map(|t| t.to_string()).collect::<Vec<_>>())
            .context("encoding tenants to skip")?;
        // Read from the queue index `jobs_queue` as PostgreSQL's `queue_candidates` reads
        // `job_queue`: the tenants by a skip scan (one probe each), then each tenant's first
        // `per_tenant` entries, so a round's cost does not grow with the jobs queued. (A window
        // function over every queued job took 8 ms per round with 10,000 queued.)
        let sql = format!(
            "WITH RECURSIVE waiting(t) AS ( \
               SELECT (SELECT tenant_id FROM jobs WHERE state = 'queued' AND waiting_reason IS NULL \
                       ORDER BY tenant_id LIMIT 1) \
               UNION ALL \
               SELECT (SELECT tenant_id FROM jobs WHERE state = 'queued' AND waiting_reason IS NULL \
                       AND tenant_id > waiting.t ORDER BY tenant_id LIMIT 1) \
               FROM waiting WHERE waiting.t IS NOT NULL) \
             SELECT {CANDIDATE_COLUMNS} FROM waiting JOIN jobs ON jobs.id IN ( \
               SELECT q.id FROM jobs q WHERE q.state = 'queued' AND q.waiting_reason IS NULL \
               AND q.tenant_id = waiting.t ORDER BY q.priority DESC, q.id LIMIT ?1) \
             WHERE waiting.t IS NOT NULL AND waiting.t NOT IN (SELECT value FROM json_each(?2)) \
             ORDER BY tenant_id, priority DESC, id"
        );
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(i64::from(per_tenant)).bind(skip).fetch_all(&self.read).await?;
        rows.iter().map(|r| Ok(CandidateRow::read(r)?.try_into()?)).collect()
    }

    async fn redrive(&self, tenant: TenantId, id: JobId) -> StateResult<Option<JobRecord>> {
        let sql = format!(
            "UPDATE jobs SET state = 'queued', failures = 0, host_failures = 0, failure_class = NULL, failure_message = NULL, \
             finished_at_ms = NULL, not_before_ms = NULL, updated_at_ms = ? \
             WHERE tenant_id = ? AND id = ? AND state = 'dead' RETURNING {JOB_COLUMNS}"
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
            "UPDATE jobs SET state = 'queued', updated_at_ms = ? WHERE id IN (SELECT id FROM jobs \
             WHERE state = 'scheduled' AND not_before_ms <= ? ORDER BY not_before_ms LIMIT ?) RETURNING {JOB_COLUMNS}"
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
        let mut tx = self.write.begin().await?;
        for (id, reason) in reasons {
            sqlx::query("UPDATE jobs SET waiting_reason = ? WHERE id = ? AND state = 'queued'")
                .bind(reason)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn clear_waiting_reasons(&self) -> StateResult<()> {
        sqlx::query("UPDATE jobs SET waiting_reason = NULL WHERE waiting_reason IS NOT NULL")
            .execute(&self.write)
            .await?;
        Ok(())
    }

    // SQLite serves one coordinator (the embedded node): leader terms are never checked.
    async fn assign_jobs(
        &self,
        _term: Option<LeaderTerm>,
        worker: &WorkerId,
        ids: &[JobId],
    ) -> StateResult<Vec<Claimed>> {
        let now = now_ms();
        let ids = serde_json::to_string(&ids.iter().map(|t| t.to_string()).collect::<Vec<_>>())
            .context("encoding job ids")?;
        let mut tx = self.write.begin().await?;
        let sql = format!(
            "UPDATE jobs SET state = 'assigned', attempt = attempt + 1, lease_epoch = lease_epoch + 1, \
             worker_id = ?, resumed_from_checkpoint = checkpoints, \
             fuel_metered = COALESCE((SELECT c.fuel_used FROM checkpoints c WHERE c.job_id = jobs.id), jobs.fuel_used), waiting_reason = NULL, updated_at_ms = ? \
             WHERE state = 'queued' AND id IN (SELECT value FROM json_each(?)) RETURNING {JOB_COLUMNS}"
        );
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(&worker.0).bind(now).bind(&ids).fetch_all(&mut *tx).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let job = job_from_row(row)?;
            let checkpoint = if job.checkpoints > 0 {
                let cp = sqlx::query("SELECT * FROM checkpoints WHERE job_id = ?")
                    .bind(job.id.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
                cp.map(|r| CheckpointRow::from_row(&r).map(Checkpoint::from)).transpose()?
            } else {
                None
            };
            out.push(Claimed { job, checkpoint });
        }
        tx.commit().await?;
        out.sort_by_key(|c| std::cmp::Reverse((c.job.tier_priority, c.job.priority)));
        Ok(out)
    }

    async fn apply_updates(&self, updates: &[FencedUpdate]) -> StateResult<Vec<Applied>> {
        let mut tx = self.write.begin().await?;
        let out = usage::apply_metered(&mut tx, updates, &self.host_retry).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn requeue_orphans(&self, _term: Option<LeaderTerm>, live: &[WorkerId]) -> StateResult<Vec<JobId>> {
        let live = serde_json::to_string(&live.iter().map(|w| w.0.as_str()).collect::<Vec<_>>())
            .context("encoding live workers")?;
        let ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "UPDATE jobs SET state = 'queued', worker_id = NULL, updated_at_ms = ? \
             WHERE state IN {LEASED} \
             AND (worker_id IS NULL OR worker_id NOT IN (SELECT value FROM json_each(?))) RETURNING id"
        )))
        .bind(now_ms())
        .bind(live)
        .fetch_all(&self.write)
        .await?;
        Ok(ids.iter().map(|s| parse(s, "job id")).collect::<anyhow::Result<_>>()?)
    }

    async fn leases_of(&self, worker: &WorkerId) -> StateResult<Vec<Lease>> {
        let sql = format!("SELECT {LEASE_COLUMNS} FROM jobs WHERE worker_id = ? AND state IN {LEASED}");
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(&worker.0).fetch_all(&self.read).await?;
        rows.iter().map(|r| Ok(LeaseRow::read(r)?.try_into()?)).collect()
    }

    async fn requeue_leases(&self, _term: Option<LeaderTerm>, leases: &[(JobId, i64)]) -> StateResult<Vec<JobId>> {
        let now = now_ms();
        let mut tx = self.write.begin().await?;
        let mut out = Vec::new();
        for (id, epoch) in leases {
            let r = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE jobs SET state = 'queued', worker_id = NULL, updated_at_ms = ? \
                 WHERE id = ? AND lease_epoch = ? AND state IN {LEASED}"
            )))
            .bind(now)
            .bind(id.to_string())
            .bind(epoch)
            .execute(&mut *tx)
            .await?;
            if r.rows_affected() > 0 {
                out.push(*id);
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn purge_finished(&self, before_ms: i64, limit: u32) -> StateResult<Vec<(JobId, bool)>> {
        let mut tx = self.write.begin().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, output_parts > 0 OR lease_epoch > 1 AS blobs FROM jobs WHERE state IN {ENDED} \
             AND finished_at_ms < ? ORDER BY finished_at_ms LIMIT ?"
        )))
        .bind(before_ms)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: String = r.try_get("id")?;
            for sql in [
                "DELETE FROM job_logs WHERE job_id = ?",
                "DELETE FROM checkpoints WHERE job_id = ?",
                "DELETE FROM jobs WHERE id = ?",
            ] {
                sqlx::query(sql).bind(&id).execute(&mut *tx).await?;
            }
            out.push((parse(&id, "job id")?, r.try_get::<bool, _>("blobs")?));
        }
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
        let rows = sqlx::query(
            sqlx::AssertSqlSafe(format!("SELECT tenant_id, COUNT(*) AS n FROM jobs INDEXED BY jobs_active WHERE state IN {LEASED} GROUP BY tenant_id")),
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((parse(&r.try_get::<String, _>("tenant_id")?, "tenant id")?, r.try_get::<i64, _>("n")? as u32)))
            .collect::<anyhow::Result<_>>()
            .map_err(Into::into)
    }

    async fn queued_count(&self, tenant: TenantId) -> StateResult<u32> {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM jobs WHERE tenant_id = ? AND state IN {WAITING}"
        )))
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
