-- Host errors (failure class `host_error`): attempts that failed because a host service did (the
-- object store, the broker, the state store) or the worker could not load the component. They
-- are retried under the host retry policy, counted here apart from the job's own retries, and
-- metered apart so that a bill can leave them out.
ALTER TABLE jobs ADD COLUMN host_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN host_errors BIGINT NOT NULL DEFAULT 0;
-- Fuel units and wall time (ms) of those attempts, also counted in `fuel` and `wall_ms`.
ALTER TABLE usage_hourly ADD COLUMN host_error_fuel BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN host_error_wall_ms BIGINT NOT NULL DEFAULT 0;
