//! Metering on sqlite: the statements of [`crate::state::usage_sql`], and workers' updates
//! applied one at a time with what they meter.
//!
//! Each statement is a round trip to the connection's own thread (sqlx runs SQLite there), so
//! an attempt's end carries its metering state in its own statement's answer, and the jobs'
//! new metered totals are written together once the batch is applied.

use std::collections::HashMap;

use anyhow::Context as _;
use sqlx::SqliteConnection;

use super::super::rows::parse;
use super::super::usage_sql::{Mark, Meter, meters, usage_statements};
use super::SqliteStore;
use super::updates;
use crate::ids::now_ms;
use crate::ids::{JobId, TenantId};
use crate::state::machine::LEASED;
use crate::state::{Applied, FencedUpdate, JobUpdate, Metered, RetryPolicy, StateError, StateResult, WorkloadUsage};

usage_statements!(SqliteStore, SqliteConnection);

/// Applies workers' updates in order with `updates::apply`, metering what they consumed, inside
/// the caller's transaction.
/// A host error is retried under `host_retry`.
pub(super) async fn apply_metered(
    conn: &mut SqliteConnection,
    list: &[FencedUpdate],
    host_retry: &RetryPolicy,
) -> StateResult<Vec<Applied>> {
    let mut out = Vec::with_capacity(list.len());
    let mut meter = Meter::default();
    let now = now_ms();
    // The metered fuel totals this batch raised, by job: later updates of the same job read
    // them here, since `jobs.fuel_metered` is written only at the end.
    let mut raised: HashMap<JobId, u64> = HashMap::new();
    for u in list {
        let (applied, mark) = match &u.update {
            JobUpdate::Finish { outcome, usage } => {
                let (applied, metered) =
                    updates::finish(&mut *conn, u.job_id, u.epoch, outcome, *usage, host_retry).await?;
                let mark = match (&applied, metered) {
                    (Applied::Job(job), Some(fuel_metered)) => {
                        Some(Mark { tenant_id: job.tenant_id, workload: job.workload.clone(), fuel_metered })
                    }
                    _ => None,
                };
                (applied, mark)
            }
            _ => {
                let mark = mark(&mut *conn, u).await?;
                (updates::apply(&mut *conn, u, host_retry).await?, mark)
            }
        };
        if let Some(mut mark) = mark {
            if let Some(&fuel) = raised.get(&u.job_id) {
                mark.fuel_metered = fuel;
            }
            if let Some(total) = meter.record(&mark, u, &applied, now) {
                raised.insert(u.job_id, total);
            }
        }
        out.push(applied);
    }
    set_fuel_metered(&mut *conn, &raised).await?;
    store_meter(conn, meter).await?;
    Ok(out)
}

/// The job's metering state, when `u` may meter and its epoch is current.
async fn mark(conn: &mut SqliteConnection, u: &FencedUpdate) -> StateResult<Option<Mark>> {
    if !meters(u) {
        return Ok(None);
    }
    let row: Option<(String, String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT tenant_id, workload, fuel_metered FROM jobs \
         WHERE id = $1 AND lease_epoch = $2 AND state IN {LEASED}"
    )))
    .bind(u.job_id.to_string())
    .bind(u.epoch)
    .fetch_optional(conn)
    .await?;
    let Some((tenant, workload, fuel)) = row else { return Ok(None) };
    Ok(Some(Mark { tenant_id: parse(&tenant, "tenant id")?, workload, fuel_metered: u64::try_from(fuel).unwrap_or(0) }))
}

/// Records that each job's fuel up to its total in `totals` (fuel units) is metered, in one
/// statement.
async fn set_fuel_metered(conn: &mut SqliteConnection, totals: &HashMap<JobId, u64>) -> StateResult<()> {
    if totals.is_empty() {
        return Ok(());
    }
    let totals: HashMap<String, i64> =
        totals.iter().map(|(id, t)| (id.to_string(), i64::try_from(*t).unwrap_or(i64::MAX))).collect();
    sqlx::query("UPDATE jobs SET fuel_metered = t.value FROM json_each($1) AS t WHERE jobs.id = t.key")
        .bind(serde_json::to_string(&totals).context("encoding metered fuel totals")?)
        .execute(conn)
        .await?;
    Ok(())
}
