//! Rows as both SQL backends store them, and their conversion to records. Columns have the same
//! names and Rust types in SQLite and PostgreSQL (integers are 64-bit but for the priorities),
//! so one row type serves both.

use std::str::FromStr;

use anyhow::Context as _;

use super::{
    ApiKey, Checkpoint, FailureClass, InputRef, JobRecord, JobState, Lease, LogLine, Placement, Progress, RetryPolicy,
    Tenant, Workload,
};
use crate::ids::WorkerId;

/// Declares a row type read by column position, and beside it the column list its queries select:
/// `positional_row! { Row, LIST { field: Type, … } }` gives `struct Row` with those fields,
/// `const LIST: &str` (the field names joined with `", "`; doc comments before `Row` document it)
/// and `Row::read(&row)`, which reads field `i` from column `i`.
///
/// The list is generated from the fields, so the two cannot drift apart; a query must select the
/// list first (further columns may follow it). Reading by position skips sqlx's lookup by name
/// (a hash of the name for every column of every row): with the 39 columns of `jobs` read three
/// times per job, that lookup was about 2 % of the distributed benchmark's CPU samples
/// (`docs/benchmarks-history.md`).
///
/// Errors: `read` fails with `sqlx::Error::ColumnNotFound` when the first column is not the first
/// field (the list was not selected first), and with sqlx's decoding errors when a column's type
/// does not match its field.
macro_rules! positional_row {
    ($(#[$doc:meta])* $row:ident, $list:ident { $first:ident: $first_ty:ty $(, $field:ident: $ty:ty)* $(,)? }) => {
        $(#[$doc])*
        pub(super) const $list: &str = concat!(stringify!($first) $(, ", ", stringify!($field))*);

        pub(super) struct $row {
            $first: $first_ty,
            $($field: $ty,)*
        }

        impl $row {
            /// The row's fields from columns `0..` of `row`, in declaration order.
            pub(super) fn read<'r, R>(row: &'r R) -> Result<Self, sqlx::Error>
            where
                R: sqlx::Row,
                usize: sqlx::ColumnIndex<R>,
                $first_ty: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
                $($ty: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,)*
            {
                use sqlx::Column as _;
                if row.columns().first().map(|c| c.name()) != Some(stringify!($first)) {
                    return Err(sqlx::Error::ColumnNotFound(concat!(stringify!($list), " selected first").into()));
                }
                let mut i = 0;
                let mut next = || {
                    i += 1;
                    i - 1
                };
                // A struct expression evaluates its fields in the order written.
                Ok(Self { $first: row.try_get(next())?, $($field: row.try_get(next())?,)* })
            }
        }
    };
}

/// The head of a page read within a byte bound. Over a subquery `(...) AS in_order` of the
/// page's rows in order (`key` ascending or descending: `order`), each with its `key` and its
/// `bytes`, it gives each row the bytes of the rows before it (`before_bytes`, NULL for the
/// first), so `WHERE before_bytes IS NULL OR before_bytes < max` keeps the rows up to the one
/// that reaches `max`, and at least one. The window runs over the subquery's rows only (its
/// `LIMIT` applies first), so a page reads at most `limit` rows whatever the tenant keeps.
pub(super) fn within_bytes(key: &str, order: &str) -> String {
    format!(
        "SELECT {key}, SUM(bytes) OVER (ORDER BY {key} {order} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) \
         AS before_bytes FROM"
    )
}

/// A byte bound as an SQL integer (`None`: no bound).
pub(super) fn max_bytes_sql(max: Option<u64>) -> i64 {
    max.map_or(i64::MAX, |m| i64::try_from(m).unwrap_or(i64::MAX))
}

pub(super) fn parse<T: FromStr>(s: &str, what: &str) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| anyhow::anyhow!("stored {what} {s:?} is corrupt: {e}"))
}

/// The rows of a live-jobs count (tier, state, count) as `StateStore::job_counts` gives
/// them; rows of an unknown state or a negative count are left out.
pub(super) fn live_counts(rows: Vec<(String, String, i64)>) -> Vec<(String, JobState, u64)> {
    rows.into_iter()
        .filter_map(|(tier, state, n)| Some((tier, JobState::parse(&state)?, u64::try_from(n).ok()?)))
        .collect()
}

positional_row! {
    /// The column list of `jobs` every query selects, first and in this order (a fixed text, the
    /// only one spliced into SQL).
    JobRow, JOB_COLUMNS {
        id: String,
        tenant_id: String,
        workload: String,
        digest: String,
        params: String,
        input_inline: Option<Vec<u8>>,
        input_digest: Option<String>,
        input_bytes: i64,
        priority: i32,
        tier_priority: i32,
        state: String,
        attempt: i64,
        lease_epoch: i64,
        worker_id: Option<String>,
        progress_done: i64,
        progress_total: i64,
        progress_message: String,
        fuel_used: i64,
        memory_peak_bytes: i64,
        failure_class: Option<String>,
        failure_message: Option<String>,
        output_bytes: i64,
        output_parts: i64,
        checkpoints: i64,
        resumed_from_checkpoint: i64,
        cancel_requested: bool,
        idempotency_key: Option<String>,
        not_before_ms: Option<i64>,
        max_attempts: i64,
        initial_backoff_ms: i64,
        max_backoff_ms: i64,
        failures: i64,
        host_failures: i64,
        placement: Option<String>,
        waiting_reason: Option<String>,
        trace_parent: Option<String>,
        created_at_ms: i64,
        started_at_ms: Option<i64>,
        finished_at_ms: Option<i64>,
        updated_at_ms: i64,
    }
}

impl TryFrom<JobRow> for JobRecord {
    type Error = anyhow::Error;

    fn try_from(r: JobRow) -> anyhow::Result<Self> {
        let input = match (r.input_inline, r.input_digest) {
            (Some(bytes), _) => InputRef::Inline(bytes),
            (None, Some(d)) => InputRef::Blob { digest: parse(&d, "input digest")?, size: r.input_bytes as u64 },
            (None, None) => anyhow::bail!("job {} has neither an inline input nor an input digest", r.id),
        };
        Ok(JobRecord {
            id: parse(&r.id, "job id")?,
            tenant_id: parse(&r.tenant_id, "tenant id")?,
            workload: r.workload,
            digest: parse(&r.digest, "digest")?,
            params: r.params,
            input,
            priority: r.priority,
            tier_priority: r.tier_priority,
            state: JobState::parse(&r.state).with_context(|| format!("stored job state {:?} is unknown", r.state))?,
            attempt: r.attempt as u32,
            lease_epoch: r.lease_epoch,
            worker_id: r.worker_id.map(WorkerId),
            progress: Progress {
                done: r.progress_done as u64,
                total: r.progress_total as u64,
                message: r.progress_message,
            },
            fuel_used: r.fuel_used as u64,
            memory_peak_bytes: r.memory_peak_bytes as u64,
            failure_class: r.failure_class.as_deref().and_then(FailureClass::parse),
            failure_message: r.failure_message,
            output_bytes: r.output_bytes as u64,
            output_parts: r.output_parts as u32,
            checkpoints: r.checkpoints as u32,
            resumed_from_checkpoint: r.resumed_from_checkpoint as u32,
            cancel_requested: r.cancel_requested,
            idempotency_key: r.idempotency_key,
            not_before_ms: r.not_before_ms,
            retry: retry_policy(r.max_attempts, r.initial_backoff_ms, r.max_backoff_ms),
            failures: r.failures as u32,
            host_failures: r.host_failures as u32,
            placement: placement_from(r.placement)?,
            waiting_reason: r.waiting_reason,
            trace_parent: r.trace_parent,
            created_at_ms: r.created_at_ms,
            started_at_ms: r.started_at_ms,
            finished_at_ms: r.finished_at_ms,
            updated_at_ms: r.updated_at_ms,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct TenantRow {
    id: String,
    name: String,
    tier: String,
    created_at_ms: i64,
    suspended_at_ms: Option<i64>,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = anyhow::Error;

    fn try_from(r: TenantRow) -> anyhow::Result<Self> {
        Ok(Tenant {
            id: parse(&r.id, "tenant id")?,
            name: r.name,
            tier: r.tier,
            created_at_ms: r.created_at_ms,
            suspended_at_ms: r.suspended_at_ms,
        })
    }
}

/// The column list of `api_keys` key queries select.
pub(super) const KEY_COLUMNS: &str = "id, tenant_id, read_only, created_at_ms, revoked_at_ms";

#[derive(sqlx::FromRow)]
pub(super) struct KeyRow {
    id: String,
    tenant_id: Option<String>,
    read_only: bool,
    created_at_ms: i64,
    revoked_at_ms: Option<i64>,
}

impl TryFrom<KeyRow> for ApiKey {
    type Error = anyhow::Error;

    fn try_from(r: KeyRow) -> anyhow::Result<Self> {
        Ok(ApiKey {
            id: r.id,
            tenant_id: r.tenant_id.as_deref().map(|t| parse(t, "tenant id")).transpose()?,
            read_only: r.read_only,
            created_at_ms: r.created_at_ms,
            revoked_at_ms: r.revoked_at_ms,
        })
    }
}

/// A stored tier: its name and its limits as JSON.
#[derive(sqlx::FromRow)]
pub(super) struct TierRow {
    pub name: String,
    pub spec: String,
}

impl TierRow {
    /// The tier's name and limits.
    pub fn parse(self) -> anyhow::Result<(String, crate::tier::Tier)> {
        let tier =
            serde_json::from_str(&self.spec).with_context(|| format!("stored tier {:?} is corrupt", self.name))?;
        Ok((self.name, tier))
    }
}

/// A retry policy from its stored columns (`max_attempts`, `initial_backoff_ms`, `max_backoff_ms`).
pub(super) fn retry_policy(max_attempts: i64, initial_backoff_ms: i64, max_backoff_ms: i64) -> RetryPolicy {
    RetryPolicy {
        max_attempts: max_attempts as u32,
        initial_backoff_ms: initial_backoff_ms as u64,
        max_backoff_ms: max_backoff_ms as u64,
    }
}

/// A tier's limits as stored.
pub(super) fn spec_json(tier: &crate::tier::Tier) -> anyhow::Result<String> {
    serde_json::to_string(tier).context("encoding a tier")
}

/// The public id of a key with this digest.
pub(super) fn key_id(digest: &crate::ids::Digest) -> String {
    digest.to_hex()[..16].to_owned()
}

#[derive(sqlx::FromRow)]
pub(super) struct WorkloadRow {
    name: String,
    digest: String,
    size_bytes: i64,
    imports: String,
    created_at_ms: i64,
}

impl TryFrom<WorkloadRow> for Workload {
    type Error = anyhow::Error;

    fn try_from(r: WorkloadRow) -> anyhow::Result<Self> {
        Ok(Workload {
            name: r.name,
            digest: parse(&r.digest, "digest")?,
            size_bytes: r.size_bytes as u64,
            imports: serde_json::from_str(&r.imports).context("stored imports are corrupt")?,
            created_at_ms: r.created_at_ms,
        })
    }
}

/// A `checkpoints` row (its fields are also filled from other column names where a query
/// selects them beside a job's, as the PostgreSQL claim does).
#[derive(sqlx::FromRow)]
pub(super) struct CheckpointRow {
    pub(super) seq: i64,
    pub(super) state: Vec<u8>,
    pub(super) output_bytes: i64,
    pub(super) output_parts: i64,
    pub(super) output_tail: Vec<u8>,
    pub(super) fuel_used: i64,
}

impl From<CheckpointRow> for Checkpoint {
    fn from(r: CheckpointRow) -> Self {
        Checkpoint {
            seq: r.seq as u32,
            state: r.state,
            output_bytes: r.output_bytes as u64,
            output_parts: r.output_parts as u32,
            output_tail: r.output_tail,
            fuel_used: r.fuel_used as u64,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct LogRow {
    attempt: i64,
    at_ms: i64,
    level: String,
    message: String,
}

impl From<LogRow> for LogLine {
    fn from(r: LogRow) -> Self {
        LogLine { at_ms: r.at_ms, attempt: r.attempt as u32, level: r.level, message: r.message }
    }
}

positional_row! {
    /// The columns of a [`Lease`], as `leases_of` selects them.
    LeaseRow, LEASE_COLUMNS {
        id: String,
        tenant_id: String,
        workload: String,
        lease_epoch: i64,
        state: String,
        updated_at_ms: i64,
    }
}

impl TryFrom<LeaseRow> for Lease {
    type Error = anyhow::Error;
    fn try_from(r: LeaseRow) -> anyhow::Result<Self> {
        Ok(Lease {
            job_id: parse(&r.id, "job id")?,
            tenant_id: parse(&r.tenant_id, "tenant id")?,
            workload: r.workload,
            epoch: r.lease_epoch,
            state: JobState::parse(&r.state).with_context(|| format!("stored job state {:?} is unknown", r.state))?,
            updated_at_ms: r.updated_at_ms,
        })
    }
}

/// The stored form of a placement: JSON text, `NULL` when nothing is asked.
pub(super) fn placement_text(p: &Placement) -> anyhow::Result<Option<String>> {
    if p.is_empty() { Ok(None) } else { Ok(Some(serde_json::to_string(p).context("encoding a placement")?)) }
}

/// A placement from its stored form (see [`placement_text`]).
fn placement_from(text: Option<String>) -> anyhow::Result<Placement> {
    match text {
        Some(text) => serde_json::from_str(&text).context("stored placement is corrupt"),
        None => Ok(Placement::default()),
    }
}

positional_row! {
    /// The columns of a scheduling candidate, as `queued_candidates` selects them.
    CandidateRow, CANDIDATE_COLUMNS {
        id: String,
        tenant_id: String,
        workload: String,
        placement: Option<String>,
    }
}

impl TryFrom<CandidateRow> for super::Candidate {
    type Error = anyhow::Error;
    fn try_from(r: CandidateRow) -> anyhow::Result<Self> {
        Ok(super::Candidate {
            id: parse(&r.id, "job id")?,
            tenant_id: parse(&r.tenant_id, "tenant id")?,
            workload: r.workload,
            placement: placement_from(r.placement)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A candidate's columns as a query would select them, `prefix` in front.
    fn select(prefix: &str) -> String {
        format!(
            "SELECT {prefix}'job-1' AS id, 'tenant-1' AS tenant_id, 'echo' AS workload, NULL AS placement, 7 AS extra"
        )
    }

    #[test]
    fn the_column_list_is_the_fields_in_order() {
        assert_eq!(CANDIDATE_COLUMNS, "id, tenant_id, workload, placement");
        assert_eq!(LEASE_COLUMNS, "id, tenant_id, workload, lease_epoch, state, updated_at_ms");
        assert!(JOB_COLUMNS.starts_with("id, tenant_id, workload, digest, params, "));
        assert!(JOB_COLUMNS.ends_with(", started_at_ms, finished_at_ms, updated_at_ms"));
        assert_eq!(JOB_COLUMNS.split(", ").count(), 40);
    }

    #[tokio::test]
    async fn rows_are_read_by_position_and_the_list_must_come_first() -> anyhow::Result<()> {
        let url = std::env::var("NIYANTA_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let pg = sqlx::PgPool::connect(&url).await?;
        let lite = sqlx::SqlitePool::connect("sqlite::memory:").await?;

        let row = sqlx::query(sqlx::AssertSqlSafe(select(""))).fetch_one(&pg).await?;
        let read = CandidateRow::read(&row)?;
        assert_eq!((read.id.as_str(), read.tenant_id.as_str(), read.workload.as_str()), ("job-1", "tenant-1", "echo"));
        assert_eq!(read.placement, None);
        let row = sqlx::query(sqlx::AssertSqlSafe(select(""))).fetch_one(&lite).await?;
        assert_eq!(CandidateRow::read(&row)?.workload, "echo");

        // A column in front of the list: refused, not read shifted by one.
        let row = sqlx::query(sqlx::AssertSqlSafe(select("1 AS n, "))).fetch_one(&pg).await?;
        let e = CandidateRow::read(&row).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("CANDIDATE_COLUMNS selected first"), "{e}");
        let row = sqlx::query(sqlx::AssertSqlSafe(select("1 AS n, "))).fetch_one(&lite).await?;
        assert!(matches!(CandidateRow::read(&row), Err(sqlx::Error::ColumnNotFound(_))));

        // A column of the wrong type: a decoding error naming its position.
        let row = sqlx::query("SELECT 'job-1' AS id, 5 AS tenant_id, 'echo' AS workload, NULL AS placement")
            .fetch_one(&pg)
            .await?;
        assert!(matches!(CandidateRow::read(&row), Err(sqlx::Error::ColumnDecode { index, .. }) if index == "1"));
        pg.close().await;
        Ok(())
    }
}
