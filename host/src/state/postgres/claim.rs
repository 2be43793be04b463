//! Claims on PostgreSQL: the leader's fence, the claim and the claimed jobs' checkpoints in one
//! statement.

use sqlx::{AssertSqlSafe, PgPool, Row};

use super::super::rows::CheckpointRow;
use super::leader::{self, NOW_MS};
use super::{JOB_COLUMNS, job_from_row};
use crate::ids::{JobId, WorkerId, now_ms};
use crate::state::{Checkpoint, Claimed, LeaderTerm, StateResult};

/// Assigns the queued jobs among `ids` to `worker` (see `StateStore::assign_jobs`). The
/// statement takes a share lock on the leader row for `term` (see [`leader`]) and claims nothing
/// when the term is over; it is then told apart from "nothing left to claim" by [`leader::fence`].
pub(super) async fn assign_jobs(
    pool: &PgPool,
    term: Option<LeaderTerm>,
    worker: &WorkerId,
    ids: &[JobId],
) -> StateResult<Vec<Claimed>> {
    let ids: Vec<String> = ids.iter().map(|t| t.to_string()).collect();
    let sql = format!(
        "WITH fence AS (SELECT 1 FROM leader WHERE id = 1 AND term = $4 AND expires_at_ms > {NOW_MS} FOR SHARE), \
         claimed AS (UPDATE jobs SET state = 'assigned', attempt = attempt + 1, lease_epoch = lease_epoch + 1, \
           worker_id = $1, resumed_from_checkpoint = checkpoints, \
           fuel_metered = COALESCE((SELECT c.fuel_used FROM checkpoints c WHERE c.job_id = jobs.id), jobs.fuel_used), \
           waiting_reason = NULL, updated_at_ms = $2 \
           WHERE ($4::BIGINT IS NULL OR EXISTS (SELECT 1 FROM fence)) \
           AND id IN (SELECT id FROM jobs WHERE state = 'queued' AND id = ANY($3) FOR UPDATE SKIP LOCKED) \
           RETURNING {JOB_COLUMNS}) \
         SELECT claimed.*, c.seq AS cp_seq, c.state AS cp_state, c.output_bytes AS cp_output_bytes, \
           c.output_parts AS cp_output_parts, c.output_tail AS cp_output_tail, c.fuel_used AS cp_fuel_used \
         FROM claimed LEFT JOIN checkpoints c ON c.job_id = claimed.id AND claimed.checkpoints > 0"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(&worker.0)
        .bind(now_ms())
        .bind(&ids)
        .bind(term.map(|t| t.0))
        .fetch_all(pool)
        .await?;
    if rows.is_empty() && !ids.is_empty() {
        // Nothing claimed: a term that is over is an error, not an empty claim.
        leader::fence(&mut *pool.acquire().await?, term).await?;
    }
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let job = job_from_row(row)?;
        let checkpoint = match row.try_get::<Option<i64>, _>("cp_seq")? {
            Some(seq) => Some(Checkpoint::from(CheckpointRow {
                seq,
                state: row.try_get("cp_state")?,
                output_bytes: row.try_get("cp_output_bytes")?,
                output_parts: row.try_get("cp_output_parts")?,
                output_tail: row.try_get("cp_output_tail")?,
                fuel_used: row.try_get("cp_fuel_used")?,
            })),
            None => None,
        };
        out.push(Claimed { job, checkpoint });
    }
    out.sort_by_key(|c| std::cmp::Reverse((c.job.tier_priority, c.job.priority)));
    Ok(out)
}
