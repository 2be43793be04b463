-- Metering: what each tenant's jobs consumed, per workload and hour, for billing and the monthly
-- fuel budget. Rows are added to in the transaction that stores the worker's report, and are
-- kept when retention purges the jobs.
CREATE TABLE usage_hourly (
    tenant_id         TEXT NOT NULL REFERENCES tenants(id),
    workload          TEXT NOT NULL,
    -- The hour the figures were reported in: Unix milliseconds, a multiple of 3,600,000.
    hour_ms           INTEGER NOT NULL,
    -- Fuel units consumed (wasmtime fuel).
    fuel              INTEGER NOT NULL DEFAULT 0,
    -- Wall time of the attempts that reported an end, ms.
    wall_ms           INTEGER NOT NULL DEFAULT 0,
    -- The largest linear memory of any attempt, bytes.
    memory_peak_bytes INTEGER NOT NULL DEFAULT 0,
    checkpoints       INTEGER NOT NULL DEFAULT 0,
    -- Checkpoint state bytes saved (every checkpoint counts).
    checkpoint_bytes  INTEGER NOT NULL DEFAULT 0,
    -- Output bytes of the jobs that ended.
    output_bytes      INTEGER NOT NULL DEFAULT 0,
    -- Attempts that reported an end (including those suspended or retried).
    attempts          INTEGER NOT NULL DEFAULT 0,
    succeeded         INTEGER NOT NULL DEFAULT 0,
    failed            INTEGER NOT NULL DEFAULT 0,
    cancelled         INTEGER NOT NULL DEFAULT 0,
    dead              INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, hour_ms, workload)
);

-- The job's fuel total already metered: set at each claim to the total the attempt starts from,
-- raised by each checkpoint and end, so each unit is metered once.
ALTER TABLE jobs ADD COLUMN fuel_metered INTEGER NOT NULL DEFAULT 0;
