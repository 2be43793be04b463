//! Workers' fenced updates, applied inside the caller's transaction. Every statement matches
//! `lease_epoch = ? AND state IN ('assigned', 'running')`: a stale epoch or an ended job changes
//! nothing.

use sqlx::{AssertSqlSafe, Row, SqliteConnection};

use super::super::rows::retry_policy;
use super::{JOB_COLUMNS, job_from_row};
use crate::ids::{JobId, now_ms};
use crate::state::machine::LEASED;
use crate::state::{
    Applied, Checkpoint, FailureClass, FencedUpdate, JobUpdate, LogLine, Next, Outcome, Progress, Retries, RetryPolicy,
    StateResult, Usage, may_retry,
};

/// Applies an update; an attempt's end as [`finish`] does.
pub(super) async fn apply(
    conn: &mut SqliteConnection,
    u: &FencedUpdate,
    host_retry: &RetryPolicy,
) -> StateResult<Applied> {
    let (id, epoch) = (u.job_id, u.epoch);
    match &u.update {
        JobUpdate::Running => running(conn, id, epoch).await,
        JobUpdate::Progress(p) => progress(conn, id, epoch, p).await,
        JobUpdate::Checkpoint(cp) => checkpoint(conn, id, epoch, cp).await,
        JobUpdate::Logs(lines) => logs(conn, id, epoch, lines).await,
        JobUpdate::Finish { outcome, usage } => Ok(finish(conn, id, epoch, outcome, *usage, host_retry).await?.0),
    }
}

/// The job a fenced `UPDATE … RETURNING` changed, or `Stale` when it matched no row.
fn job_or_stale(row: Option<sqlx::sqlite::SqliteRow>) -> StateResult<Applied> {
    Ok(match row {
        Some(r) => Applied::Job(Box::new(job_from_row(&r)?)),
        None => Applied::Stale,
    })
}

fn stored(ok: bool) -> Applied {
    if ok { Applied::Stored } else { Applied::Stale }
}

async fn running(conn: &mut SqliteConnection, id: JobId, epoch: i64) -> StateResult<Applied> {
    let now = now_ms();
    let sql = format!(
        "UPDATE jobs SET state = 'running', started_at_ms = COALESCE(started_at_ms, ?), updated_at_ms = ? \
         WHERE id = ? AND lease_epoch = ? AND state IN {LEASED} RETURNING {JOB_COLUMNS}"
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(now)
        .bind(now)
        .bind(id.to_string())
        .bind(epoch)
        .fetch_optional(conn)
        .await?;
    job_or_stale(row)
}

async fn progress(conn: &mut SqliteConnection, id: JobId, epoch: i64, p: &Progress) -> StateResult<Applied> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE jobs SET progress_done = ?, progress_total = ?, progress_message = ?, updated_at_ms = ? \
         WHERE id = ? AND lease_epoch = ? AND state IN {LEASED}"
    )))
    .bind(p.done as i64)
    .bind(p.total as i64)
    .bind(&p.message)
    .bind(now_ms())
    .bind(id.to_string())
    .bind(epoch)
    .execute(conn)
    .await?;
    Ok(stored(r.rows_affected() == 1))
}

async fn checkpoint(conn: &mut SqliteConnection, id: JobId, epoch: i64, cp: &Checkpoint) -> StateResult<Applied> {
    let now = now_ms();
    let seq: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "UPDATE jobs SET checkpoints = checkpoints + 1, fuel_used = ?, updated_at_ms = ? \
         WHERE id = ? AND lease_epoch = ? AND state IN {LEASED} RETURNING checkpoints"
    )))
    .bind(cp.fuel_used as i64)
    .bind(now)
    .bind(id.to_string())
    .bind(epoch)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(seq) = seq else { return Ok(Applied::Stale) };
    sqlx::query(
        "INSERT INTO checkpoints (job_id, seq, state, output_bytes, output_parts, output_tail, fuel_used, \
         created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id) DO UPDATE SET seq = excluded.seq, \
         state = excluded.state, output_bytes = excluded.output_bytes, output_parts = excluded.output_parts, \
         output_tail = excluded.output_tail, fuel_used = excluded.fuel_used, created_at_ms = excluded.created_at_ms",
    )
    .bind(id.to_string())
    .bind(seq)
    .bind(&cp.state)
    .bind(cp.output_bytes as i64)
    .bind(i64::from(cp.output_parts))
    .bind(&cp.output_tail)
    .bind(cp.fuel_used as i64)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(Applied::Checkpoint(seq as u32))
}

async fn logs(conn: &mut SqliteConnection, id: JobId, epoch: i64, lines: &[LogLine]) -> StateResult<Applied> {
    let live: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT 1 FROM jobs WHERE id = ? AND lease_epoch = ? AND state IN {LEASED}"
    )))
    .bind(id.to_string())
    .bind(epoch)
    .fetch_optional(&mut *conn)
    .await?;
    if live.is_none() {
        return Ok(Applied::Stale);
    }
    for l in lines {
        sqlx::query("INSERT INTO job_logs (job_id, attempt, at_ms, level, message) VALUES (?, ?, ?, ?, ?)")
            .bind(id.to_string())
            .bind(i64::from(l.attempt))
            .bind(l.at_ms)
            .bind(&l.level)
            .bind(&l.message)
            .execute(&mut *conn)
            .await?;
    }
    Ok(Applied::Stored)
}

/// Ends the attempt (see `JobUpdate::Finish`); a host error is retried under `host_retry`. Also returns the job's `fuel_metered` as it
/// stood (the statement leaves it alone), for metering without a statement of its own; `None`
/// with `Applied::Stale`.
pub(super) async fn finish(
    conn: &mut SqliteConnection,
    id: JobId,
    epoch: i64,
    outcome: &Outcome,
    usage: Usage,
    host_retry: &RetryPolicy,
) -> StateResult<(Applied, Option<u64>)> {
    let now = now_ms();
    let next = match outcome {
        Outcome::Failed { class, .. } if may_retry(outcome) => {
            let Some(retries) = retries(&mut *conn, id, epoch).await? else {
                return Ok((Applied::Stale, None));
            };
            Next::of(outcome, Some(retries.after(*class, host_retry, now)))
        }
        _ => Next::of(outcome, None),
    };
    let sql = format!(
        "UPDATE jobs SET state = ?, failure_class = ?, failure_message = ?, \
         output_inline = CASE WHEN ? THEN ? ELSE output_inline END, \
         output_bytes = CASE WHEN ? THEN ? ELSE output_bytes END, \
         output_parts = CASE WHEN ? THEN ? ELSE output_parts END, \
         fuel_used = ?, memory_peak_bytes = MAX(memory_peak_bytes, ?), \
         worker_id = CASE WHEN ? THEN worker_id ELSE NULL END, \
         finished_at_ms = CASE WHEN ? THEN ? ELSE NULL END, \
         failures = failures + ?, host_failures = host_failures + ?, not_before_ms = COALESCE(?, not_before_ms), \
         started_at_ms = COALESCE(started_at_ms, ?), updated_at_ms = ? \
         WHERE id = ? AND lease_epoch = ? AND state IN {LEASED} \
         RETURNING {JOB_COLUMNS}, fuel_metered"
    );
    let output = next.output;
    let has_output = output.is_some();
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(next.state.as_str())
        .bind(next.class.map(FailureClass::as_str))
        .bind(next.message)
        .bind(has_output)
        .bind(output.map(|o| o.inline.as_slice()))
        .bind(has_output)
        .bind(output.map_or(0, |o| o.bytes as i64))
        .bind(has_output)
        .bind(output.map_or(0, |o| i64::from(o.parts)))
        .bind(usage.fuel_used as i64)
        .bind(usage.memory_peak_bytes as i64)
        .bind(next.state.is_terminal())
        .bind(next.state.is_terminal())
        .bind(now)
        .bind(i64::from(next.counts_failure))
        .bind(i64::from(next.counts_host_failure))
        .bind(next.not_before_ms)
        .bind(now)
        .bind(now)
        .bind(id.to_string())
        .bind(epoch)
        .fetch_optional(conn)
        .await?;
    let metered = match &row {
        Some(r) => Some(u64::try_from(r.try_get::<i64, _>("fuel_metered")?).unwrap_or(0)),
        None => None,
    };
    Ok((job_or_stale(row)?, metered))
}

/// A live job's failures so far and its retry policy; `None` for a stale epoch.
async fn retries(conn: &mut SqliteConnection, id: JobId, epoch: i64) -> StateResult<Option<Retries>> {
    let row: Option<(i64, i64, i64, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT failures, host_failures, max_attempts, initial_backoff_ms, max_backoff_ms FROM jobs \
         WHERE id = ? AND lease_epoch = ? AND state IN {LEASED}"
    )))
    .bind(id.to_string())
    .bind(epoch)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(failures, host_failures, max_attempts, initial, max)| Retries {
        failures: failures as u32,
        host_failures: host_failures as u32,
        policy: retry_policy(max_attempts, initial, max),
    }))
}
