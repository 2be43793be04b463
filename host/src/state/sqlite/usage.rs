//! Metering on sqlite: the statements of [`crate::state::usage_sql`], and workers' updates
//! applied one at a time with what they meter (statements in process cost no round trip).

use sqlx::SqliteConnection;

use super::super::rows::parse;
use super::super::usage_sql::{Mark, Meter, meters, usage_statements};
use super::SqliteStore;
use super::updates;
use crate::ids::now_ms;
use crate::ids::{JobId, TenantId};
use crate::state::{Applied, FencedUpdate, Metered, StateError, StateResult, WorkloadUsage};

usage_statements!(SqliteStore, SqliteConnection);

/// Applies workers' updates in order with `updates::apply`, metering what they consumed, inside
/// the caller's transaction.
pub(super) async fn apply_metered(conn: &mut SqliteConnection, list: &[FencedUpdate]) -> StateResult<Vec<Applied>> {
    let mut out = Vec::with_capacity(list.len());
    let mut meter = Meter::default();
    let now = now_ms();
    for u in list {
        let mark = mark(&mut *conn, u).await?;
        let applied = updates::apply(&mut *conn, u).await?;
        if let Some(mark) = mark
            && let Some(total) = meter.record(&mark, u, &applied, now)
        {
            set_fuel_metered(&mut *conn, u.job_id, total).await?;
        }
        out.push(applied);
    }
    store_meter(conn, meter).await?;
    Ok(out)
}

/// The job's metering state, when `u` may meter and its epoch is current.
async fn mark(conn: &mut SqliteConnection, u: &FencedUpdate) -> StateResult<Option<Mark>> {
    if !meters(u) {
        return Ok(None);
    }
    let row: Option<(String, String, i64)> = sqlx::query_as(
        "SELECT tenant_id, workload, fuel_metered FROM jobs \
         WHERE id = $1 AND lease_epoch = $2 AND state IN ('assigned', 'running')",
    )
    .bind(u.job_id.to_string())
    .bind(u.epoch)
    .fetch_optional(conn)
    .await?;
    let Some((tenant, workload, fuel)) = row else { return Ok(None) };
    Ok(Some(Mark { tenant_id: parse(&tenant, "tenant id")?, workload, fuel_metered: u64::try_from(fuel).unwrap_or(0) }))
}

/// Records that the job's fuel up to `total` units is metered.
async fn set_fuel_metered(conn: &mut SqliteConnection, job: JobId, total: u64) -> StateResult<()> {
    sqlx::query("UPDATE jobs SET fuel_metered = $1 WHERE id = $2")
        .bind(i64::try_from(total).unwrap_or(i64::MAX))
        .bind(job.to_string())
        .execute(conn)
        .await?;
    Ok(())
}
