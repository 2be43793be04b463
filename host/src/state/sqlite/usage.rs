//! Metering on sqlite: the statements of [`crate::state::usage_sql`].

use sqlx::SqliteConnection;

use super::super::rows::parse;
use super::super::usage_sql::{Mark, Meter, meters, usage_statements};
use super::SqliteStore;
use super::updates;
use crate::ids::now_ms;
use crate::ids::{JobId, TenantId};
use crate::state::{Applied, FencedUpdate, JobState, Metered, StateError, StateResult, WorkloadUsage};

usage_statements!(SqliteStore, SqliteConnection);
