//! Metering: what workers' reports add to `usage_hourly`, and the queries billing and the fuel
//! budget read. [`Meter`] works out the figures; [`usage_statements!`] expands the statements
//! (numbered placeholders, read by both PostgreSQL and SQLite) for each backend.

use std::collections::BTreeMap;

use super::{Applied, FailureClass, FencedUpdate, JobState, JobUpdate, Metered, Outcome};
use crate::ids::TenantId;

/// Metering hours: figures are summed per tenant, workload and hour.
pub(super) const HOUR_MS: i64 = 3_600_000;

/// A job's metering state before an update: whose it is and how much of its fuel is metered.
pub(super) struct Mark {
    pub tenant_id: TenantId,
    pub workload: String,
    pub fuel_metered: u64,
}

/// The figures a transaction's updates add, summed per (tenant, workload, hour) so that each
/// row is written once, in key order (concurrent transactions then lock rows in one order).
#[derive(Default)]
pub(super) struct Meter {
    pending: BTreeMap<(String, String, i64), Metered>,
}

impl Meter {
    /// Adds what an applied update consumed. Returns the job's new metered fuel total when it
    /// changed (the caller stores it in `jobs.fuel_metered`).
    pub fn record(&mut self, mark: &Mark, u: &FencedUpdate, applied: &Applied, now_ms: i64) -> Option<u64> {
        let (m, fuel_total) = match (&u.update, applied) {
            (JobUpdate::Checkpoint(cp), Applied::Checkpoint(_)) => (
                Metered { checkpoints: 1, checkpoint_bytes: cp.state.len() as u64, ..Metered::default() },
                cp.fuel_used,
            ),
            (JobUpdate::Finish { usage, outcome }, Applied::Job(job)) => {
                let mut m = Metered {
                    wall_ms: usage.wall_ms,
                    memory_peak_bytes: usage.memory_peak_bytes,
                    attempts: 1,
                    ..Metered::default()
                };
                match job.state {
                    JobState::Succeeded => m.succeeded = 1,
                    JobState::Failed => m.failed = 1,
                    JobState::Cancelled => m.cancelled = 1,
                    JobState::Dead => m.dead = 1,
                    _ => {}
                }
                if job.state.is_terminal() {
                    m.output_bytes = job.output_bytes;
                }
                if let Outcome::Failed { class: FailureClass::HostError, .. } = outcome {
                    m.host_errors = 1;
                    m.host_error_wall_ms = usage.wall_ms;
                }
                (m, usage.fuel_used)
            }
            _ => return None,
        };
        let fuel = fuel_total.saturating_sub(mark.fuel_metered);
        let host_error_fuel = if m.host_errors > 0 { fuel } else { 0 };
        self.add(mark.tenant_id, &mark.workload, now_ms, &Metered { fuel, host_error_fuel, ..m });
        (fuel_total > mark.fuel_metered).then_some(fuel_total)
    }

    /// Adds figures for a tenant's workload at `at_ms`.
    pub fn add(&mut self, tenant: TenantId, workload: &str, at_ms: i64, m: &Metered) {
        let hour = at_ms - at_ms.rem_euclid(HOUR_MS);
        self.pending.entry((tenant.to_string(), workload.to_owned(), hour)).or_default().add(m);
    }

    /// The rows to write, in key order.
    pub fn rows(self) -> impl Iterator<Item = ((String, String, i64), Metered)> {
        self.pending.into_iter()
    }
}

/// What an `INSERT INTO usage_hourly … ON CONFLICT (tenant_id, hour_ms, workload) DO UPDATE SET`
/// does with the row already there: adds the new figures, keeps the larger peak memory.
pub(super) const ADD_USAGE: &str = "fuel = usage_hourly.fuel + excluded.fuel, \
    wall_ms = usage_hourly.wall_ms + excluded.wall_ms, \
    memory_peak_bytes = CASE WHEN excluded.memory_peak_bytes > usage_hourly.memory_peak_bytes \
      THEN excluded.memory_peak_bytes ELSE usage_hourly.memory_peak_bytes END, \
    checkpoints = usage_hourly.checkpoints + excluded.checkpoints, \
    checkpoint_bytes = usage_hourly.checkpoint_bytes + excluded.checkpoint_bytes, \
    output_bytes = usage_hourly.output_bytes + excluded.output_bytes, \
    attempts = usage_hourly.attempts + excluded.attempts, \
    succeeded = usage_hourly.succeeded + excluded.succeeded, \
    failed = usage_hourly.failed + excluded.failed, \
    cancelled = usage_hourly.cancelled + excluded.cancelled, \
    dead = usage_hourly.dead + excluded.dead, \
    host_errors = usage_hourly.host_errors + excluded.host_errors, \
    host_error_fuel = usage_hourly.host_error_fuel + excluded.host_error_fuel, \
    host_error_wall_ms = usage_hourly.host_error_wall_ms + excluded.host_error_wall_ms";

/// Whether an update may meter anything (a checkpoint or an attempt's end).
pub(super) fn meters(u: &FencedUpdate) -> bool {
    matches!(u.update, JobUpdate::Checkpoint(_) | JobUpdate::Finish { .. })
}

/// Expands, in a backend module, `store_meter` and `cancel_waiting` over `$conn`, and
/// the inherent methods `usage_between` and `fuel_by_tenant_since` of `$store` (which must have a
/// `read` pool).
macro_rules! usage_statements {
    ($store:ty, $conn:ty) => {
        /// Adds the meter's figures to `usage_hourly`.
        pub(super) async fn store_meter(conn: &mut $conn, meter: Meter) -> StateResult<()> {
            for ((tenant, workload, hour), m) in meter.rows() {
                let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
                let sql = format!(
                    "INSERT INTO usage_hourly (tenant_id, workload, hour_ms, fuel, wall_ms, memory_peak_bytes, \
                     checkpoints, checkpoint_bytes, output_bytes, attempts, succeeded, failed, cancelled, dead, \
                     host_errors, host_error_fuel, host_error_wall_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
                     ON CONFLICT (tenant_id, hour_ms, workload) DO UPDATE SET {}",
                    crate::state::usage_sql::ADD_USAGE
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(tenant)
                .bind(workload)
                .bind(hour)
                .bind(n(m.fuel))
                .bind(n(m.wall_ms))
                .bind(n(m.memory_peak_bytes))
                .bind(n(m.checkpoints))
                .bind(n(m.checkpoint_bytes))
                .bind(n(m.output_bytes))
                .bind(n(m.attempts))
                .bind(n(m.succeeded))
                .bind(n(m.failed))
                .bind(n(m.cancelled))
                .bind(n(m.dead))
                .bind(n(m.host_errors))
                .bind(n(m.host_error_fuel))
                .bind(n(m.host_error_wall_ms))
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        }

        /// Cancels a tenant's job that waits to start (`queued` or `scheduled`) and meters it.
        /// Returns whether it did; a job in any other state is left to the caller.
        pub(super) async fn cancel_waiting(conn: &mut $conn, tenant: TenantId, id: JobId, now: i64) -> StateResult<bool> {
            let workload: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "UPDATE jobs SET state = 'cancelled', failure_class = 'cancelled', \
                 failure_message = 'cancelled before it started', finished_at_ms = $1, cancel_requested = TRUE, \
                 updated_at_ms = $1 WHERE tenant_id = $2 AND id = $3 AND state IN {} \
                 RETURNING workload",
                crate::state::machine::WAITING
            )))
            .bind(now)
            .bind(tenant.to_string())
            .bind(id.to_string())
            .fetch_optional(&mut *conn)
            .await?;
            let Some(workload) = workload else { return Ok(false) };
            let mut meter = Meter::default();
            meter.add(tenant, &workload, now, &Metered { cancelled: 1, ..Metered::default() });
            store_meter(conn, meter).await?;
            Ok(true)
        }

        impl $store {
            /// A tenant's metered usage per workload, over the hours that start in
            /// `[from_ms, to_ms)`.
            pub(super) async fn usage_between(
                &self,
                tenant: TenantId,
                from_ms: i64,
                to_ms: i64,
            ) -> StateResult<Vec<WorkloadUsage>> {
                type Row = (String, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64);
                let rows: Vec<Row> = sqlx::query_as(
                    "SELECT workload, CAST(SUM(fuel) AS BIGINT), CAST(SUM(wall_ms) AS BIGINT), \
                     MAX(memory_peak_bytes), CAST(SUM(checkpoints) AS BIGINT), CAST(SUM(checkpoint_bytes) AS BIGINT), \
                     CAST(SUM(output_bytes) AS BIGINT), CAST(SUM(attempts) AS BIGINT), \
                     CAST(SUM(succeeded) AS BIGINT), CAST(SUM(failed) AS BIGINT), CAST(SUM(cancelled) AS BIGINT), \
                     CAST(SUM(dead) AS BIGINT), CAST(SUM(host_errors) AS BIGINT), \
                     CAST(SUM(host_error_fuel) AS BIGINT), CAST(SUM(host_error_wall_ms) AS BIGINT) FROM usage_hourly \
                     WHERE tenant_id = $1 AND hour_ms >= $2 AND hour_ms < $3 GROUP BY workload ORDER BY workload",
                )
                .bind(tenant.to_string())
                .bind(from_ms)
                .bind(to_ms)
                .fetch_all(&self.read)
                .await?;
                let n = |v: i64| u64::try_from(v).unwrap_or(0);
                Ok(rows
                    .into_iter()
                    .map(|(workload, fuel, wall, mem, cps, cpb, out, att, ok, failed, cancelled, dead, he, hef, hew)| WorkloadUsage {
                        workload,
                        usage: Metered {
                            fuel: n(fuel),
                            wall_ms: n(wall),
                            memory_peak_bytes: n(mem),
                            checkpoints: n(cps),
                            checkpoint_bytes: n(cpb),
                            output_bytes: n(out),
                            attempts: n(att),
                            succeeded: n(ok),
                            failed: n(failed),
                            cancelled: n(cancelled),
                            dead: n(dead),
                            host_errors: n(he),
                            host_error_fuel: n(hef),
                            host_error_wall_ms: n(hew),
                        },
                    })
                    .collect())
            }

            /// Fuel metered per tenant over the hours that start at or after `since_ms`, less the
            /// fuel of attempts that ended in a host error (the host's fault, not the tenant's).
            pub(super) async fn fuel_by_tenant_since(&self, since_ms: i64) -> StateResult<Vec<(TenantId, u64)>> {
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT tenant_id, CAST(SUM(fuel - host_error_fuel) AS BIGINT) FROM usage_hourly WHERE hour_ms >= $1 \
                     GROUP BY tenant_id",
                )
                .bind(since_ms)
                .fetch_all(&self.read)
                .await?;
                rows.into_iter()
                    .map(|(t, fuel)| Ok((parse(&t, "tenant id")?, u64::try_from(fuel).unwrap_or(0))))
                    .collect::<anyhow::Result<_>>()
                    .map_err(StateError::from)
            }
        }
    };
}

pub(super) use usage_statements;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::JobId;
    use crate::state::Checkpoint;

    #[test]
    fn fuel_is_metered_once_across_checkpoints_and_the_end() {
        let tenant = TenantId::new();
        let mut mark = Mark { tenant_id: tenant, workload: "w".into(), fuel_metered: 100 };
        let mut meter = Meter::default();
        let cp = |fuel| FencedUpdate {
            job_id: JobId::new(),
            epoch: 1,
            update: JobUpdate::Checkpoint(Checkpoint { state: vec![0; 10], fuel_used: fuel, ..Checkpoint::default() }),
        };
        assert_eq!(meter.record(&mark, &cp(250), &Applied::Checkpoint(1), 5), Some(250));
        mark.fuel_metered = 250;
        // A stale update meters nothing.
        assert_eq!(meter.record(&mark, &cp(900), &Applied::Stale, 5), None);
        // Time in another hour goes to another row.
        assert_eq!(meter.record(&mark, &cp(300), &Applied::Checkpoint(2), HOUR_MS + 5), Some(300));
        let rows: Vec<_> = meter.rows().collect();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].0.2, rows[0].1.fuel, rows[0].1.checkpoints, rows[0].1.checkpoint_bytes), (0, 150, 1, 10));
        assert_eq!((rows[1].0.2, rows[1].1.fuel), (HOUR_MS, 50));
    }
}
