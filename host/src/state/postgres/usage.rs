//! Metering on postgres: the statements of [`crate::state::usage_sql`]. Workers' updates meter
//! as they are applied (see [`super::updates`]).

use sqlx::PgConnection;

use super::super::rows::parse;
use super::super::usage_sql::{Meter, usage_statements};
use super::PostgresStore;
use crate::ids::{JobId, TenantId};
use crate::state::{Metered, StateError, StateResult, WorkloadUsage};

usage_statements!(PostgresStore, PgConnection);
