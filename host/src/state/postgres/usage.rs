//! Metering on postgres: the statements of [`crate::state::usage_sql`].

use sqlx::PgConnection;

use super::super::rows::parse;
use super::super::usage_sql::{Mark, Meter, meters, usage_statements};
use super::PostgresStore;
use super::updates;
use crate::ids::now_ms;
use crate::ids::{JobId, TenantId};
use crate::state::{Applied, FencedUpdate, JobState, Metered, StateError, StateResult, WorkloadUsage};

usage_statements!(PostgresStore, PgConnection);
