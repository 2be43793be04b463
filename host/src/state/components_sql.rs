//! Workloads, the components tenants hold and the collector's bookkeeping: one set of statements
//! for both backends (numbered placeholders, read by PostgreSQL and SQLite alike), expanded by
//! [`component_statements!`] for each store type.
//!
//! Why the statements are safe against a concurrent upload (see `coordinator::collect`): every
//! writer that starts using a component (an upload's hold, `put_workload`, a re-drive's hold)
//! clears `unreferenced_since_ms` of its `components` row, and the claim requires that column
//! set in the same `UPDATE`. On PostgreSQL the two writes meet on that row's lock, and the claim
//! re-checks the row's own columns after the wait (its subqueries would still see the snapshot
//! taken before it); a claimed row refuses the writers until the collector forgets it. SQLite has
//! one writer at a time.

/// The states of a job that has not ended, as an SQL list: [`crate::state::machine::LIVE`] as a
/// literal for `concat!` (a test checks that they agree).
macro_rules! live_states {
    () => {
        "('scheduled', 'queued', 'assigned', 'running')"
    };
}

/// A workload of the hold's tenant names its component (alias `h`).
macro_rules! tenant_workload_names {
    () => {
        "EXISTS (SELECT 1 FROM workloads w WHERE w.tenant_id = h.tenant_id AND w.digest = h.digest)"
    };
}

/// A job of the hold's tenant that has not ended needs its component (alias `h`; read through
/// the index `jobs_tenant_state`, over the tenant's jobs that have not ended).
macro_rules! tenant_job_needs {
    () => {
        concat!(
            "EXISTS (SELECT 1 FROM jobs j WHERE j.tenant_id = h.tenant_id AND j.state IN ",
            live_states!(),
            " AND j.digest = h.digest)"
        )
    };
}

/// No tenant holds the component and no workload names it (alias `c`).
macro_rules! unheld {
    () => {
        "NOT EXISTS (SELECT 1 FROM component_holds h WHERE h.digest = c.digest) \
         AND NOT EXISTS (SELECT 1 FROM workloads w WHERE w.digest = c.digest)"
    };
}

/// Expands the statements as inherent methods of `$store` (which has a `write` pool), `$db` its
/// sqlx database.
macro_rules! component_statements {
    ($store:ty, $db:ty) => {
        /// Records the component (when `size` is given and it is new) and clears its mark, unless
        /// it is being deleted; answers whether it can be held.
        async fn keep_component(
            conn: &mut <$db as sqlx::Database>::Connection,
            digest: Digest,
            size: Option<u64>,
        ) -> StateResult<ComponentHold> {
            let kept = match size {
                Some(size) => sqlx::query(
                    "INSERT INTO components (digest, size_bytes, created_at_ms) VALUES ($1, $2, $3) \
                     ON CONFLICT (digest) DO UPDATE SET unreferenced_since_ms = NULL, size_bytes = excluded.size_bytes \
                     WHERE components.collecting_since_ms IS NULL",
                )
                .bind(digest.to_hex())
                .bind(size as i64)
                .bind(now_ms()),
                None => sqlx::query(
                    "UPDATE components SET unreferenced_since_ms = NULL WHERE digest = $1 AND collecting_since_ms IS NULL",
                )
                .bind(digest.to_hex()),
            }
            .execute(&mut *conn)
            .await?;
            if kept.rows_affected() > 0 {
                return Ok(ComponentHold::Held);
            }
            let found: Option<i64> = sqlx::query_scalar("SELECT size_bytes FROM components WHERE digest = $1")
                .bind(digest.to_hex())
                .fetch_optional(&mut *conn)
                .await?;
            Ok(if found.is_some() { ComponentHold::Collecting } else { ComponentHold::Missing })
        }

        /// Holds a kept component for the tenant, in use.
        async fn upsert_hold(
            conn: &mut <$db as sqlx::Database>::Connection,
            tenant: TenantId,
            digest: Digest,
        ) -> StateResult<()> {
            sqlx::query(
                "INSERT INTO component_holds (tenant_id, digest, created_at_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant_id, digest) DO UPDATE SET unreferenced_since_ms = NULL",
            )
            .bind(tenant.to_string())
            .bind(digest.to_hex())
            .bind(now_ms())
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        impl $store {
            pub(super) async fn hold(
                &self,
                tenant: TenantId,
                digest: Digest,
                size: Option<u64>,
            ) -> StateResult<ComponentHold> {
                // Holds before components, in every transaction that writes both (the sweep too),
                // so that two of them never wait for each other's rows.
                let mut tx = self.write.begin().await?;
                upsert_hold(&mut tx, tenant, digest).await?;
                let held = keep_component(&mut tx, digest, size).await?;
                if held == ComponentHold::Held {
                    tx.commit().await?;
                } else {
                    tx.rollback().await?;
                }
                Ok(held)
            }

            pub(super) async fn upsert_workload(&self, tenant: TenantId, w: &Workload) -> StateResult<ComponentHold> {
                let mut tx = self.write.begin().await?;
                let replaced: Option<String> =
                    sqlx::query_scalar("SELECT digest FROM workloads WHERE tenant_id = $1 AND name = $2")
                        .bind(tenant.to_string())
                        .bind(&w.name)
                        .fetch_optional(&mut *tx)
                        .await?;
                sqlx::query(
                    "INSERT INTO workloads (tenant_id, name, digest, size_bytes, imports, created_at_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, name) DO UPDATE SET \
                     digest = excluded.digest, size_bytes = excluded.size_bytes, imports = excluded.imports, \
                     created_at_ms = excluded.created_at_ms",
                )
                .bind(tenant.to_string())
                .bind(&w.name)
                .bind(w.digest.to_hex())
                .bind(w.size_bytes as i64)
                .bind(serde_json::to_string(&w.imports).context("encoding imports")?)
                .bind(w.created_at_ms)
                .execute(&mut *tx)
                .await?;
                upsert_hold(&mut tx, tenant, w.digest).await?;
                // The replaced component counts no more in the tenant's stored bytes at once; the
                // next sweep marks it again, or unmarks it while a job still needs it.
                if let Some(old) = replaced.filter(|d| *d != w.digest.to_hex()) {
                    sqlx::query(concat!(
                        "UPDATE component_holds AS h SET unreferenced_since_ms = COALESCE(unreferenced_since_ms, $1) \
                         WHERE h.tenant_id = $2 AND h.digest = $3 AND NOT ",
                        tenant_workload_names!()
                    ))
                    .bind(now_ms())
                    .bind(tenant.to_string())
                    .bind(old)
                    .execute(&mut *tx)
                    .await?;
                }
                let held = keep_component(&mut tx, w.digest, Some(w.size_bytes)).await?;
                if held == ComponentHold::Held {
                    tx.commit().await?;
                } else {
                    tx.rollback().await?;
                }
                Ok(held)
            }

            pub(super) async fn record_components(&self, found: &[(Digest, u64)]) -> StateResult<u64> {
                let mut adopted = 0;
                // A transaction per chunk, so a large listing does not hold SQLite's one writer long.
                for chunk in found.chunks(500) {
                    let mut tx = self.write.begin().await?;
                    for (digest, size) in chunk {
                        let new = sqlx::query(
                            "INSERT INTO components (digest, size_bytes, created_at_ms) VALUES ($1, $2, $3) \
                             ON CONFLICT (digest) DO NOTHING",
                        )
                        .bind(digest.to_hex())
                        .bind(*size as i64)
                        .bind(now_ms())
                        .execute(&mut *tx)
                        .await?;
                        adopted += new.rows_affected();
                        if new.rows_affected() == 0 {
                            sqlx::query("UPDATE components SET size_bytes = $1 WHERE digest = $2 AND size_bytes = 0")
                                .bind(*size as i64)
                                .bind(digest.to_hex())
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    tx.commit().await?;
                }
                Ok(adopted)
            }

            pub(super) async fn sweep(&self, now: i64, grace_ms: i64) -> StateResult<ComponentSweep> {
                let mut tx = self.write.begin().await?;
                // The holds not named by a workload of their tenant, and those marked: marked while
                // unused (keeping the first mark), unmarked when in use. The holds the tenant's
                // workloads name (nearly all) are left alone without reading any job.
                sqlx::query(concat!(
                    "UPDATE component_holds AS h SET unreferenced_since_ms = CASE WHEN ",
                    tenant_workload_names!(),
                    " THEN NULL WHEN ",
                    tenant_job_needs!(),
                    " THEN NULL ELSE COALESCE(unreferenced_since_ms, $1) END \
                     WHERE unreferenced_since_ms IS NOT NULL OR NOT ",
                    tenant_workload_names!()
                ))
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let released = sqlx::query(concat!(
                    "DELETE FROM component_holds AS h WHERE unreferenced_since_ms <= $1 AND NOT ",
                    tenant_workload_names!(),
                    " AND NOT ",
                    tenant_job_needs!()
                ))
                .bind(now - grace_ms)
                .execute(&mut *tx)
                .await?;
                let unreferenced = sqlx::query(concat!(
                    "UPDATE components AS c SET unreferenced_since_ms = $1 \
                     WHERE collecting_since_ms IS NULL AND unreferenced_since_ms IS NULL AND ",
                    unheld!()
                ))
                .bind(now)
                .execute(&mut *tx)
                .await?;
                // A mark left on a component held again (a hold that committed during the
                // previous statement's wait for the row, unseen by its snapshot) is cleared.
                sqlx::query(concat!(
                    "UPDATE components AS c SET unreferenced_since_ms = NULL \
                     WHERE collecting_since_ms IS NULL AND unreferenced_since_ms IS NOT NULL AND NOT (",
                    unheld!(),
                    ")"
                ))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(ComponentSweep { holds_released: released.rows_affected(), unreferenced: unreferenced.rows_affected() })
            }

            pub(super) async fn claim_unheld(&self, now: i64, limit: u32) -> StateResult<Vec<(Digest, u64)>> {
                // The conditions on the row's own columns are repeated outside the subquery, so that
                // PostgreSQL checks them again on a row a concurrent hold changed.
                let rows: Vec<(String, i64)> = sqlx::query_as(concat!(
                    "UPDATE components AS c SET collecting_since_ms = COALESCE(collecting_since_ms, $1) \
                     WHERE digest IN (SELECT c.digest FROM components AS c \
                       WHERE c.collecting_since_ms IS NOT NULL OR (c.unreferenced_since_ms IS NOT NULL AND ",
                    unheld!(),
                    ") ORDER BY c.digest LIMIT $2) \
                     AND (collecting_since_ms IS NOT NULL OR (unreferenced_since_ms IS NOT NULL AND ",
                    unheld!(),
                    ")) RETURNING digest, size_bytes"
                ))
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(&self.write)
                .await?;
                rows.into_iter()
                    .map(|(d, size)| Ok((parse(&d, "digest")?, u64::try_from(size).unwrap_or(0))))
                    .collect::<anyhow::Result<_>>()
                    .map_err(Into::into)
            }

            pub(super) async fn forget_claimed(&self, digest: Digest) -> StateResult<bool> {
                let gone = sqlx::query("DELETE FROM components WHERE digest = $1 AND collecting_since_ms IS NOT NULL")
                    .bind(digest.to_hex())
                    .execute(&self.write)
                    .await?;
                Ok(gone.rows_affected() > 0)
            }
        }
    };
}

pub(super) use {component_statements, live_states, tenant_job_needs, tenant_workload_names, unheld};

#[cfg(test)]
mod tests {
    #[test]
    fn the_live_states_are_the_machines() {
        assert_eq!(live_states!(), crate::state::machine::LIVE);
    }
}
