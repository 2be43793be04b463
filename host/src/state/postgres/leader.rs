//! Leader election among coordinators through one row of PostgreSQL (`leader`), timed by the
//! database's clock so coordinators' clocks need not agree.
//!
//! A coordinator campaigns by taking the row once it has expired, which raises the `term`; the
//! leader renews it well inside the time to live. The term is the fencing token: the scheduler's
//! writes run [`fence`] in their own transaction, which takes a share lock on the row, so a write
//! under a term that is over (another coordinator took the row, or it expired) changes nothing,
//! and a takeover waits for writes already under way.

use sqlx::PgConnection;

use super::PostgresStore;
use crate::state::{LeaderTerm, StateError, StateResult};

/// The database's clock in Unix milliseconds, as SQL.
pub(super) const NOW_MS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

/// Fails with [`StateError::NotLeader`] unless `term` is the current, unexpired leadership.
/// `None` (a single coordinator) is never fenced.
pub(super) async fn fence(conn: &mut PgConnection, term: Option<LeaderTerm>) -> StateResult<()> {
    let Some(LeaderTerm(term)) = term else { return Ok(()) };
    let sql = format!("SELECT 1 FROM leader WHERE id = 1 AND term = $1 AND expires_at_ms > {NOW_MS} FOR SHARE");
    let held: Option<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(term).fetch_optional(conn).await?;
    held.map(|_| ()).ok_or(StateError::NotLeader(term))
}

impl PostgresStore {
    /// Takes the leadership for `holder` when nobody holds it (it expired or was resigned), for
    /// `ttl_ms` milliseconds. Returns the new term, or `None` when another coordinator leads.
    pub async fn campaign(&self, holder: &str, ttl_ms: u64) -> StateResult<Option<LeaderTerm>> {
        let sql = format!(
            "UPDATE leader SET holder = $1, term = term + 1, expires_at_ms = {NOW_MS} + $2 \
             WHERE id = 1 AND expires_at_ms <= {NOW_MS} RETURNING term"
        );
        let term: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(holder)
            .bind(ttl_ms as i64)
            .fetch_optional(&self.write)
            .await?;
        Ok(term.map(LeaderTerm))
    }

    /// Extends `term` by `ttl_ms` from now. `false`: the term is over (another coordinator took
    /// the row), and the caller must stop acting as leader.
    pub async fn renew(&self, term: LeaderTerm, ttl_ms: u64) -> StateResult<bool> {
        let sql = format!("UPDATE leader SET expires_at_ms = {NOW_MS} + $2 WHERE id = 1 AND term = $1");
        let r = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(term.0).bind(ttl_ms as i64).execute(&self.write).await?;
        Ok(r.rows_affected() == 1)
    }

    /// Ends `term` at once, so another coordinator can take over without waiting for expiry.
    pub async fn resign(&self, term: LeaderTerm) -> StateResult<()> {
        sqlx::query("UPDATE leader SET expires_at_ms = 0 WHERE id = 1 AND term = $1")
            .bind(term.0)
            .execute(&self.write)
            .await?;
        Ok(())
    }
}
