//! Tenants, API keys, tiers, stored bytes and components: one set of statements for both
//! backends. The statements use numbered placeholders (`$1`), which PostgreSQL and SQLite (where
//! `$N` binds the N-th argument) both read, so [`admin_statements!`] expands the same code for each store type.

/// Expands the admin statements as inherent methods of `$store`, which must have `write` and
/// `read` pools, and a `tenant_from_row` and an `is_unique_violation` in scope.
macro_rules! admin_statements {
    ($store:ty) => {
        impl $store {
            pub(super) async fn insert_tenant(&self, name: &str, tier: &str) -> StateResult<Tenant> {
                let t = Tenant {
                    id: TenantId::new(),
                    name: name.to_owned(),
                    tier: tier.to_owned(),
                    created_at_ms: now_ms(),
                    suspended_at_ms: None,
                };
                let res = sqlx::query("INSERT INTO tenants (id, name, tier, created_at_ms) VALUES ($1, $2, $3, $4)")
                    .bind(t.id.to_string())
                    .bind(&t.name)
                    .bind(&t.tier)
                    .bind(t.created_at_ms)
                    .execute(&self.write)
                    .await;
                match res {
                    Ok(_) => Ok(t),
                    Err(e) if is_unique_violation(&e) => Err(StateError::Conflict(format!("tenant {name:?}"))),
                    Err(e) => Err(e.into()),
                }
            }

            pub(super) async fn tenant_where(&self, column: &'static str, value: &str) -> StateResult<Option<Tenant>> {
                let sql = format!("SELECT * FROM tenants WHERE {column} = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(value).fetch_optional(&self.read).await?;
                Ok(row.as_ref().map(tenant_from_row).transpose()?)
            }

            pub(super) async fn all_tenants(&self) -> StateResult<Vec<Tenant>> {
                let rows = sqlx::query("SELECT * FROM tenants ORDER BY name").fetch_all(&self.read).await?;
                Ok(rows.iter().map(tenant_from_row).collect::<anyhow::Result<_>>()?)
            }

            pub(super) async fn update_suspended(&self, id: TenantId, suspended: bool) -> StateResult<Option<Tenant>> {
                let query = if suspended {
                    sqlx::query("UPDATE tenants SET suspended_at_ms = COALESCE(suspended_at_ms, $1) WHERE id = $2 RETURNING *")
                        .bind(Some(now_ms()))
                } else {
                    sqlx::query("UPDATE tenants SET suspended_at_ms = $1 WHERE id = $2 RETURNING *").bind(None::<i64>)
                };
                let row = query.bind(id.to_string()).fetch_optional(&self.write).await?;
                Ok(row.as_ref().map(tenant_from_row).transpose()?)
            }

            pub(super) async fn update_tier(
                &self,
                id: TenantId,
                tier: &str,
                tier_priority: i32,
            ) -> StateResult<Option<Tenant>> {
                let mut tx = self.write.begin().await?;
                let row = sqlx::query("UPDATE tenants SET tier = $1 WHERE id = $2 RETURNING *")
                    .bind(tier)
                    .bind(id.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE jobs SET tier_priority = $1 WHERE tenant_id = $2 AND state IN {}",
                    crate::state::machine::WAITING
                )))
                    .bind(tier_priority)
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(row.as_ref().map(tenant_from_row).transpose()?)
            }

            pub(super) async fn insert_key(
                &self,
                digest: Digest,
                tenant: Option<TenantId>,
                read_only: bool,
            ) -> StateResult<ApiKey> {
                let key =
                    ApiKey { id: key_id(&digest), tenant_id: tenant, read_only, created_at_ms: now_ms(), revoked_at_ms: None };
                sqlx::query(
                    "INSERT INTO api_keys (digest, id, tenant_id, read_only, created_at_ms) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(digest.to_hex())
                .bind(&key.id)
                .bind(tenant.map(|t| t.to_string()))
                .bind(read_only)
                .bind(key.created_at_ms)
                .execute(&self.write)
                .await?;
                Ok(key)
            }

            pub(super) async fn keys_of(&self, tenant: TenantId) -> StateResult<Vec<ApiKey>> {
                let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at_ms, id");
                let rows = sqlx::query_as::<_, KeyRow>(sqlx::AssertSqlSafe(sql))
                    .bind(tenant.to_string())
                    .fetch_all(&self.read)
                    .await?;
                Ok(rows.into_iter().map(ApiKey::try_from).collect::<anyhow::Result<_>>()?)
            }

            pub(super) async fn revoke_key(&self, tenant: TenantId, id: &str) -> StateResult<Option<ApiKey>> {
                let sql = format!(
                    "UPDATE api_keys SET revoked_at_ms = COALESCE(revoked_at_ms, $1) WHERE tenant_id = $2 AND id = $3 \
                     RETURNING {KEY_COLUMNS}"
                );
                let row = sqlx::query_as::<_, KeyRow>(sqlx::AssertSqlSafe(sql))
                    .bind(now_ms())
                    .bind(tenant.to_string())
                    .bind(id)
                    .fetch_optional(&self.write)
                    .await?;
                Ok(row.map(ApiKey::try_from).transpose()?)
            }

            pub(super) async fn key_principal(&self, digest: Digest) -> StateResult<Option<Principal>> {
                let row = sqlx::query(
                    "SELECT k.tenant_id AS key_tenant, k.read_only AS key_read_only, t.* FROM api_keys k \
                     LEFT JOIN tenants t ON t.id = k.tenant_id WHERE k.digest = $1 AND k.revoked_at_ms IS NULL",
                )
                .bind(digest.to_hex())
                .fetch_optional(&self.read)
                .await?;
                let Some(row) = row else { return Ok(None) };
                if row.try_get::<Option<String>, _>("key_tenant")?.is_none() {
                    return Ok(Some(Principal::Admin));
                }
                Ok(Some(Principal::Tenant { tenant: tenant_from_row(&row)?, read_only: row.try_get("key_read_only")? }))
            }

            pub(super) async fn bytes_stored_by(&self, tenant: TenantId) -> StateResult<StoredBytes> {
                // The components the tenant holds in use: those its workloads name and those its
                // jobs that have not ended need (see `components_sql`), each digest once.
                // `tenant_params` is kept by triggers on `jobs` (see the `params_bytes` migrations).
                let (components, inputs, params): (i64, i64, i64) = sqlx::query_as(
                    "SELECT CAST(COALESCE((SELECT SUM(c.size_bytes) FROM component_holds h \
                     JOIN components c ON c.digest = h.digest \
                     WHERE h.tenant_id = $1 AND h.unreferenced_since_ms IS NULL), 0) AS BIGINT), \
                     CAST(COALESCE((SELECT SUM(size_bytes) FROM inputs WHERE tenant_id = $1), 0) AS BIGINT), \
                     CAST(COALESCE((SELECT SUM(bytes) FROM tenant_params WHERE tenant_id = $1), 0) AS BIGINT)",
                )
                .bind(tenant.to_string())
                .fetch_one(&self.read)
                .await?;
                let bytes = |n: i64| u64::try_from(n).unwrap_or(0);
                Ok(StoredBytes {
                    components_bytes: bytes(components),
                    inputs_bytes: bytes(inputs),
                    params_bytes: bytes(params),
                })
            }

            pub(super) async fn component_of(&self, tenant: TenantId, digest: Digest) -> StateResult<bool> {
                let found: Option<String> =
                    sqlx::query_scalar("SELECT name FROM workloads WHERE tenant_id = $1 AND digest = $2 LIMIT 1")
                        .bind(tenant.to_string())
                        .bind(digest.to_hex())
                        .fetch_optional(&self.read)
                        .await?;
                Ok(found.is_some())
            }

            pub(super) async fn stored_tiers(&self) -> StateResult<Tiers> {
                let rows = sqlx::query("SELECT name, spec FROM tiers").fetch_all(&self.read).await?;
                let mut tiers = Tiers::new();
                for r in &rows {
                    let (name, tier) = TierRow::from_row(r)?.parse()?;
                    tiers.insert(name, tier);
                }
                Ok(tiers)
            }

            pub(super) async fn upsert_tiers(&self, tiers: &Tiers, replace: bool) -> StateResult<()> {
                let sql = if replace {
                    "INSERT INTO tiers (name, spec, updated_at_ms) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, updated_at_ms = excluded.updated_at_ms"
                } else {
                    "INSERT INTO tiers (name, spec, updated_at_ms) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING"
                };
                let mut tx = self.write.begin().await?;
                for (name, tier) in tiers {
                    sqlx::query(sql).bind(name).bind(spec_json(tier)?).bind(now_ms()).execute(&mut *tx).await?;
                    if replace {
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "UPDATE jobs SET tier_priority = $1 WHERE state IN {} \
                             AND tenant_id IN (SELECT id FROM tenants WHERE tier = $2)",
                            crate::state::machine::WAITING
                        )))
                        .bind(tier.priority)
                        .bind(name)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                tx.commit().await?;
                Ok(())
            }
        }
    };
}

pub(super) use admin_statements;
