//! The queue figures `/metrics` reads, from the structures that hold live jobs only.
//!
//! Not from `jobs_tenant_state`: every claim, start and end of a job leaves a dead entry there
//! until `VACUUM` of `jobs`, which comes seldom. Measured 45 s into two throughput runs (7,100
//! and 7,400 jobs/s, 650,000 and 700,000 dead rows in `jobs`): the counts by state took 233–443
//! ms (one read 717,932 entries of that index for 21,560 live jobs), the oldest queued job
//! 113–148 ms. Read as below: 29–41 ms and 0.15–1.3 ms. See docs/benchmarks-history.md.

use super::super::rows::live_counts;
use super::PostgresStore;
use crate::state::machine::LEASED;
use crate::state::{JobState, StateResult};

impl PostgresStore {
    /// Jobs scheduled, queued, assigned or running, by tenant tier and state: the queued ones
    /// from `job_queue` (vacuumed every second) and the partial index `jobs_waiting`, the others
    /// from the partial indexes `jobs_scheduled` and `jobs_active`.
    pub(super) async fn live_job_counts(&self) -> StateResult<Vec<(String, JobState, u64)>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            sqlx::AssertSqlSafe(format!("SELECT t.tier, c.state, CAST(SUM(c.n) AS BIGINT) FROM ( \
               SELECT tenant_id, 'queued' AS state, COUNT(*) AS n FROM job_queue GROUP BY tenant_id \
               UNION ALL SELECT tenant_id, 'queued', COUNT(*) FROM jobs \
                 WHERE state = 'queued' AND waiting_reason IS NOT NULL GROUP BY tenant_id \
               UNION ALL SELECT tenant_id, 'scheduled', COUNT(*) FROM jobs WHERE state = 'scheduled' GROUP BY tenant_id \
               UNION ALL SELECT tenant_id, state, COUNT(*) FROM jobs \
                 WHERE state IN {LEASED} GROUP BY tenant_id, state \
             ) c JOIN tenants t ON t.id = c.tenant_id GROUP BY t.tier, c.state")),
        )
        .fetch_all(&self.read)
        .await?;
        Ok(live_counts(rows))
    }

    /// When the oldest queued job was submitted, Unix ms. In `job_queue`, the job with the
    /// least id: job ids are UUIDv7, whose text begins with the Unix ms they were made at (RFC
    /// 9562, section 5.7), and the coordinator makes a job's id as it accepts the job, a few ms
    /// at most before the insert sets `created_at_ms`; so the answer may be that many ms off, not
    /// more. Queued jobs with a waiting reason come from `jobs_waiting`.
    pub(super) async fn oldest_queued(&self) -> StateResult<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT LEAST( \
               (SELECT created_at_ms FROM jobs WHERE id = (SELECT MIN(job_id) FROM job_queue)), \
               (SELECT MIN(created_at_ms) FROM jobs WHERE state = 'queued' AND waiting_reason IS NOT NULL))",
        )
        .fetch_one(&self.read)
        .await?)
    }
}
