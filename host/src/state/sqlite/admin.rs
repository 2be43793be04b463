//! Tenants, API keys and tiers on SQLite: the statements of [`crate::state::admin_sql`].

use sqlx::{FromRow, Row};

use super::super::admin_sql::admin_statements;
use super::super::rows::{KEY_COLUMNS, KeyRow, TierRow, key_id, spec_json};
use super::{SqliteStore, is_unique_violation, tenant_from_row};
use crate::ids::{Digest, TenantId, now_ms};
use crate::state::{ApiKey, Principal, StateError, StateResult, StoredBytes, Tenant};
use crate::tier::Tiers;

admin_statements!(SqliteStore);
