//! The queue figures `/metrics` reads. On SQLite a row's old versions leave nothing behind in
//! the indexes, so `jobs_tenant_state` answers both.

use super::super::rows::live_counts;
use super::SqliteStore;
use crate::state::machine::LIVE;
use crate::state::{JobState, StateResult};

impl SqliteStore {
    /// Jobs scheduled, queued, assigned or running, by tenant tier and state.
    pub(super) async fn live_job_counts(&self) -> StateResult<Vec<(String, JobState, u64)>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT t.tier, j.state, COUNT(*) FROM jobs j JOIN tenants t ON t.id = j.tenant_id \
             WHERE j.state IN {LIVE} GROUP BY t.tier, j.state"
        )))
        .fetch_all(&self.read)
        .await?;
        Ok(live_counts(rows))
    }

    /// When the oldest queued job was submitted, Unix ms.
    pub(super) async fn oldest_queued(&self) -> StateResult<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT MIN(created_at_ms) FROM jobs WHERE state = 'queued'")
            .fetch_one(&self.read)
            .await?)
    }
}
