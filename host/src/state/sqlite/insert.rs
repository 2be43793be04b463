//! New jobs on SQLite: a whole submission in one `INSERT … SELECT FROM json_each(…)`, as
//! PostgreSQL inserts one from `UNNEST` (each statement is a round trip to the connection's own
//! thread, and the one write connection is held for the whole submission).

use std::collections::HashMap;

use anyhow::Context as _;
use serde_json::json;
use sqlx::{AssertSqlSafe, SqliteConnection};

use super::super::rows::placement_text;
use super::{JOB_COLUMNS, job_from_row};
use crate::ids::{JobId, WorkerId, now_ms};
use crate::state::{InputRef, JobRecord, JobState, NewJob, StateResult};

/// Inserts `jobs` in one statement: each queued (`scheduled` when delayed), or assigned to its
/// worker in `direct` (by index) under lease epoch 1 (see `StateStore::insert_jobs_direct`; this
/// store has one coordinator, unfenced). A job whose idempotency key the tenant used before, or
/// earlier in `jobs`, is not inserted: the job that holds the key is returned with `false`. The
/// answers are in the order of `jobs`.
///
/// Each job travels as a JSON array (inline input in hex, decoded by `unhex`); `->>` gives
/// back SQL text, integers and NULL. Rows are inserted in the order given (`ORDER BY j.key`), so
/// that of two jobs with one idempotency key the first is kept.
pub(super) async fn insert_jobs(
    conn: &mut SqliteConnection,
    jobs: &[NewJob],
    direct: &[Option<WorkerId>],
) -> StateResult<Vec<(JobRecord, bool)>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let now = now_ms();
    let mut rows = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        let (inline, input_digest) = match &job.input {
            InputRef::Inline(b) => (Some(hex::encode(b)), None),
            InputRef::Blob { digest, .. } => (None, Some(digest.to_hex())),
        };
        let delayed = job.not_before_ms.is_some_and(|t| t > now);
        let worker = direct.get(i).and_then(Option::as_ref).filter(|_| !delayed);
        let state = match (delayed, worker) {
            (true, _) => JobState::Scheduled,
            (false, Some(_)) => JobState::Assigned,
            (false, None) => JobState::Queued,
        };
        rows.push(json!([
            job.id.to_string(),
            job.tenant_id.to_string(),
            job.workload,
            job.digest.to_hex(),
            job.params,
            inline,
            input_digest,
            i64::try_from(job.input.size()).unwrap_or(i64::MAX),
            job.priority,
            job.tier_priority,
            state.as_str(),
            job.idempotency_key,
            job.not_before_ms,
            i64::from(job.retry.max_attempts),
            i64::try_from(job.retry.initial_backoff_ms).unwrap_or(i64::MAX),
            i64::try_from(job.retry.max_backoff_ms).unwrap_or(i64::MAX),
            placement_text(&job.placement)?,
            job.trace_parent,
            i64::from(worker.is_some()),
            worker.map(|w| w.0.as_str()),
        ]));
    }
    let sql = format!(
        "INSERT INTO jobs (id, tenant_id, workload, digest, params, input_inline, input_digest, input_bytes, \
         priority, tier_priority, state, idempotency_key, created_at_ms, updated_at_ms, not_before_ms, \
         max_attempts, initial_backoff_ms, max_backoff_ms, placement, trace_parent, attempt, lease_epoch, worker_id) \
         SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4, unhex(j.value ->> 5), \
         j.value ->> 6, j.value ->> 7, j.value ->> 8, j.value ->> 9, j.value ->> 10, j.value ->> 11, ?1, ?1, \
         j.value ->> 12, j.value ->> 13, j.value ->> 14, j.value ->> 15, j.value ->> 16, j.value ->> 17, \
         j.value ->> 18, j.value ->> 18, j.value ->> 19 \
         FROM json_each(?2) AS j WHERE true ORDER BY j.key \
         ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING \
         RETURNING {JOB_COLUMNS}"
    );
    let inserted = sqlx::query(AssertSqlSafe(sql))
        .bind(now)
        .bind(serde_json::to_string(&rows).context("encoding new jobs")?)
        .fetch_all(&mut *conn)
        .await?;
    let mut inserted: HashMap<JobId, JobRecord> =
        inserted.iter().map(|r| job_from_row(r).map(|j| (j.id, j))).collect::<anyhow::Result<_>>()?;
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        match inserted.remove(&job.id) {
            Some(record) => out.push((record, true)),
            None => out.push((holder_of_key(conn, job).await?, false)),
        }
    }
    Ok(out)
}

/// The job that holds `job`'s idempotency key (the reason `job` was not inserted).
async fn holder_of_key(conn: &mut SqliteConnection, job: &NewJob) -> StateResult<JobRecord> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE tenant_id = ? AND idempotency_key = ?");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(job.tenant_id.to_string())
        .bind(&job.idempotency_key)
        .fetch_one(conn)
        .await?;
    Ok(job_from_row(&row)?)
}
