//! The submission-rate buckets on SQLite: one upsert per submission through the single writer,
//! the time read from this process's clock (one coordinator uses the file).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::SqliteStore;
use crate::ids::TenantId;
use crate::state::{StateResult, TokenBucket};

impl SqliteStore {
    pub(super) async fn take_tokens(
        &self,
        tenant: TenantId,
        bucket: TokenBucket,
        tokens: u32,
    ) -> StateResult<Option<Duration>> {
        let Some(cost) = bucket.cost_ns(tokens) else { return Ok(Some(Duration::MAX)) };
        let now =
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        let taken: Option<i64> = sqlx::query_scalar(
            "INSERT INTO rate_buckets (tenant_id, tat_ns) VALUES (?1, ?2 + ?3) \
             ON CONFLICT (tenant_id) DO UPDATE SET tat_ns = max(tat_ns, ?2) + ?3 \
             WHERE max(tat_ns, ?2) + ?3 - ?2 <= ?4 RETURNING tat_ns",
        )
        .bind(tenant.to_string())
        .bind(now)
        .bind(cost)
        .bind(bucket.window_ns())
        .fetch_optional(&self.write)
        .await?;
        if taken.is_some() {
            return Ok(None);
        }
        let tat: i64 = sqlx::query_scalar("SELECT tat_ns FROM rate_buckets WHERE tenant_id = ?")
            .bind(tenant.to_string())
            .fetch_one(&self.write)
            .await?;
        Ok(Some(bucket.wait(tat, now, cost)))
    }
}
