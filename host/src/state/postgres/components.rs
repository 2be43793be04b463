//! Workloads, component holds and the collector's bookkeeping on PostgreSQL: the statements of
//! [`crate::state::components_sql`].

use anyhow::Context as _;

use super::super::components_sql::{
    component_statements, live_states, tenant_job_needs, tenant_workload_names, unheld,
};
use super::super::rows::parse;
use super::PostgresStore;
use crate::ids::{Digest, TenantId, now_ms};
use crate::state::{ComponentHold, ComponentSweep, StateResult, Workload};

component_statements!(PostgresStore, sqlx::Postgres);
