//! The submission-rate buckets on PostgreSQL: one upsert per submission, serialized per tenant by
//! the row lock of `ON CONFLICT DO UPDATE`, the time read from the database's clock so that
//! coordinators whose clocks differ still share one bucket.

use std::time::Duration;

use super::PostgresStore;
use crate::ids::TenantId;
use crate::state::{StateResult, TokenBucket};

/// The database's clock, Unix ns (microsecond precision).
const NOW_NS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT * 1000";

impl PostgresStore {
    pub(super) async fn take_tokens(
        &self,
        tenant: TenantId,
        bucket: TokenBucket,
        tokens: u32,
    ) -> StateResult<Option<Duration>> {
        let Some(cost) = bucket.cost_ns(tokens) else { return Ok(Some(Duration::MAX)) };
        // `EXCLUDED.tat_ns - $2` is the statement's `now`.
        let sql = format!(
            "INSERT INTO rate_buckets AS b (tenant_id, tat_ns) SELECT $1, {NOW_NS} + $2 \
             ON CONFLICT (tenant_id) DO UPDATE SET tat_ns = GREATEST(b.tat_ns, EXCLUDED.tat_ns - $2) + $2 \
             WHERE GREATEST(b.tat_ns, EXCLUDED.tat_ns - $2) + $2 - (EXCLUDED.tat_ns - $2) <= $3 \
             RETURNING b.tat_ns"
        );
        let taken: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(tenant.to_string())
            .bind(cost)
            .bind(bucket.window_ns())
            .fetch_optional(&self.write)
            .await?;
        if taken.is_some() {
            return Ok(None);
        }
        let sql = format!("SELECT tat_ns, {NOW_NS} FROM rate_buckets WHERE tenant_id = $1");
        let (tat, now): (i64, i64) =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant.to_string()).fetch_one(&self.read).await?;
        Ok(Some(bucket.wait(tat, now, cost)))
    }
}
