//! New jobs on PostgreSQL: a whole submission in one `INSERT … SELECT FROM UNNEST(…)`, those
//! placed at once inserted assigned under the leader's fence.

use std::collections::HashMap;

use sqlx::{AssertSqlSafe, PgConnection};

use super::super::rows::placement_text;
use super::leader::NOW_MS;
use super::{JOB_COLUMNS, job_from_row};
use crate::ids::{JobId, WorkerId, now_ms};
use crate::state::{InputRef, JobRecord, JobState, LeaderTerm, NewJob, StateResult};

/// Inserts `jobs` in one statement (atomic on its own: all or none). A job whose idempotency key
/// the tenant used before (or used earlier in `jobs`) is not inserted: the job that holds the key
/// is returned with `false`. The answers are in the order of `jobs`. A job with a worker in
/// `direct` is inserted assigned to it while `term` holds (see `StateStore::insert_jobs_direct`):
/// the statement takes a share lock on the leader row, as a claim does.
pub(super) async fn insert_jobs(
    conn: &mut PgConnection,
    jobs: &[NewJob],
    direct: &[Option<WorkerId>],
    term: Option<LeaderTerm>,
) -> StateResult<Vec<(JobRecord, bool)>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let now = now_ms();
    let mut id = Vec::with_capacity(jobs.len());
    let mut tenant = Vec::with_capacity(jobs.len());
    let mut workload = Vec::with_capacity(jobs.len());
    let mut digest = Vec::with_capacity(jobs.len());
    let mut params = Vec::with_capacity(jobs.len());
    let mut inline: Vec<Option<&[u8]>> = Vec::with_capacity(jobs.len());
    let mut input_digest: Vec<Option<String>> = Vec::with_capacity(jobs.len());
    let mut input_bytes = Vec::with_capacity(jobs.len());
    let mut priority = Vec::with_capacity(jobs.len());
    let mut tier_priority = Vec::with_capacity(jobs.len());
    let mut state = Vec::with_capacity(jobs.len());
    let mut key = Vec::with_capacity(jobs.len());
    let mut not_before = Vec::with_capacity(jobs.len());
    let mut max_attempts = Vec::with_capacity(jobs.len());
    let mut initial_backoff = Vec::with_capacity(jobs.len());
    let mut max_backoff = Vec::with_capacity(jobs.len());
    let mut placement = Vec::with_capacity(jobs.len());
    let mut trace = Vec::with_capacity(jobs.len());
    let mut worker: Vec<Option<&str>> = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        id.push(job.id.to_string());
        tenant.push(job.tenant_id.to_string());
        workload.push(job.workload.as_str());
        digest.push(job.digest.to_hex());
        params.push(job.params.as_str());
        match &job.input {
            InputRef::Inline(b) => {
                inline.push(Some(b.as_slice()));
                input_digest.push(None);
            }
            InputRef::Blob { digest, .. } => {
                inline.push(None);
                input_digest.push(Some(digest.to_hex()));
            }
        }
        input_bytes.push(i64::try_from(job.input.size()).unwrap_or(i64::MAX));
        priority.push(job.priority);
        tier_priority.push(job.tier_priority);
        let delayed = job.not_before_ms.is_some_and(|t| t > now);
        state.push(if delayed { JobState::Scheduled } else { JobState::Queued }.as_str());
        worker.push(direct.get(i).and_then(Option::as_ref).filter(|_| !delayed).map(|w| w.0.as_str()));
        key.push(job.idempotency_key.as_deref());
        not_before.push(job.not_before_ms);
        max_attempts.push(i64::from(job.retry.max_attempts));
        initial_backoff.push(i64::try_from(job.retry.initial_backoff_ms).unwrap_or(i64::MAX));
        max_backoff.push(i64::try_from(job.retry.max_backoff_ms).unwrap_or(i64::MAX));
        placement.push(placement_text(&job.placement)?);
        trace.push(job.trace_parent.as_deref());
    }
    // `ORDER BY n` inserts in the order given, so that of two jobs with one idempotency key the
    // first is kept. A row is `direct` when it names a worker and the leader's term holds.
    let sql = format!(
        "WITH fence AS (SELECT 1 FROM leader WHERE id = 1 AND term = $20 AND expires_at_ms > {NOW_MS} FOR SHARE) \
         INSERT INTO jobs (id, tenant_id, workload, digest, params, input_inline, input_digest, input_bytes, \
         priority, tier_priority, state, idempotency_key, created_at_ms, updated_at_ms, not_before_ms, \
         max_attempts, initial_backoff_ms, max_backoff_ms, placement, trace_parent, attempt, lease_epoch, worker_id) \
         SELECT uid, utenant, uworkload, udigest, uparams, uinline, uinput_digest, uinput_bytes, upriority, \
         utier_priority, CASE WHEN direct THEN 'assigned' ELSE ustate END, ukey, $1, $1, unot_before, \
         umax_attempts, uinitial_backoff, umax_backoff, uplacement, utrace, \
         CASE WHEN direct THEN 1 ELSE 0 END, CASE WHEN direct THEN 1 ELSE 0 END, \
         CASE WHEN direct THEN uworker END \
         FROM (SELECT u.*, (uworker IS NOT NULL AND ($20::BIGINT IS NULL OR EXISTS (SELECT 1 FROM fence))) AS direct \
           FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[], $8::text[], \
             $9::bigint[], $10::int[], $11::int[], $12::text[], $13::text[], $14::bigint[], $15::bigint[], \
             $16::bigint[], $17::bigint[], $18::text[], $19::text[], $21::text[]) WITH ORDINALITY \
           AS u(uid, utenant, uworkload, udigest, uparams, uinline, uinput_digest, uinput_bytes, upriority, \
             utier_priority, ustate, ukey, unot_before, umax_attempts, uinitial_backoff, umax_backoff, uplacement, \
             utrace, uworker, n)) v ORDER BY n \
         ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING \
         RETURNING {JOB_COLUMNS}"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(now)
        .bind(id)
        .bind(tenant)
        .bind(workload)
        .bind(digest)
        .bind(params)
        .bind(inline)
        .bind(input_digest)
        .bind(input_bytes)
        .bind(priority)
        .bind(tier_priority)
        .bind(state)
        .bind(key)
        .bind(not_before)
        .bind(max_attempts)
        .bind(initial_backoff)
        .bind(max_backoff)
        .bind(placement)
        .bind(trace)
        .bind(term.map(|t| t.0))
        .bind(worker)
        .fetch_all(&mut *conn)
        .await?;
    let mut inserted: HashMap<JobId, JobRecord> = HashMap::with_capacity(rows.len());
    for r in &rows {
        let job = job_from_row(r)?;
        inserted.insert(job.id, job);
    }
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
async fn holder_of_key(conn: &mut PgConnection, job: &NewJob) -> StateResult<JobRecord> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE tenant_id = $1 AND idempotency_key = $2");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(job.tenant_id.to_string())
        .bind(&job.idempotency_key)
        .fetch_one(conn)
        .await?;
    Ok(job_from_row(&row)?)
}
