//! Workloads, component holds and the collector's bookkeeping on SQLite: the statements of
//! [`crate::state::components_sql`].

use anyhow::Context as _;

use super::super::components_sql::{
    component_statements, live_states, tenant_job_needs, tenant_workload_names, unheld,
};
use super::super::rows::parse;
use super::SqliteStore;
use crate::ids::{Digest, TenantId, now_ms};
use crate::state::{ComponentHold, ComponentSweep, StateResult, Workload};

component_statements!(SqliteStore, sqlx::Sqlite);
