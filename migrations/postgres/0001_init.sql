-- Niyanta state, PostgreSQL flavour (the same tables, columns and indexes as the SQLite one). Timestamps are Unix milliseconds; ids are UUID text; digests are
-- SHA-256 in lowercase hex. Every tenant-owned row carries its tenant_id.

CREATE TABLE tenants (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    tier          TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- API keys by the SHA-256 of the key; tenant_id NULL is the admin.
CREATE TABLE api_keys (
    digest        TEXT PRIMARY KEY,
    tenant_id     TEXT REFERENCES tenants(id),
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE workloads (
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    name          TEXT NOT NULL,
    digest        TEXT NOT NULL,
    size_bytes    BIGINT NOT NULL,
    imports       TEXT NOT NULL, -- JSON array of interface names
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE inputs (
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    digest        TEXT NOT NULL,
    size_bytes    BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, digest)
);

CREATE TABLE jobs (
    id                      TEXT PRIMARY KEY,
    tenant_id               TEXT NOT NULL REFERENCES tenants(id),
    workload                TEXT NOT NULL,
    digest                  TEXT NOT NULL,
    params                  TEXT NOT NULL,
    input_inline            BYTEA,
    input_digest            TEXT,
    input_bytes             BIGINT NOT NULL,
    priority                INTEGER NOT NULL,
    tier_priority           INTEGER NOT NULL,
    state                   TEXT NOT NULL,
    attempt                 BIGINT NOT NULL DEFAULT 0,
    lease_epoch             BIGINT NOT NULL DEFAULT 0,
    worker_id               TEXT,
    progress_done           BIGINT NOT NULL DEFAULT 0,
    progress_total          BIGINT NOT NULL DEFAULT 0,
    progress_message        TEXT NOT NULL DEFAULT '',
    fuel_used               BIGINT NOT NULL DEFAULT 0,
    memory_peak_bytes       BIGINT NOT NULL DEFAULT 0,
    failure_class           TEXT,
    failure_message         TEXT,
    output_inline           BYTEA,
    output_bytes            BIGINT NOT NULL DEFAULT 0,
    output_parts            BIGINT NOT NULL DEFAULT 0,
    checkpoints             BIGINT NOT NULL DEFAULT 0,
    resumed_from_checkpoint BIGINT NOT NULL DEFAULT 0,
    cancel_requested        BOOLEAN NOT NULL DEFAULT FALSE,
    idempotency_key         TEXT,
    created_at_ms           BIGINT NOT NULL,
    started_at_ms           BIGINT,
    finished_at_ms          BIGINT,
    updated_at_ms           BIGINT NOT NULL
);

CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_tenant_id ON jobs (tenant_id, id);
-- Per-tenant counts by state (the queued-jobs quota).
CREATE INDEX jobs_tenant_state ON jobs (tenant_id, state);
-- The queue: only queued rows are indexed, so finished jobs do not slow claims down.
CREATE INDEX jobs_queue ON jobs (tier_priority DESC, priority DESC, id)
    WHERE state = 'queued';
-- Leased jobs, by tenant (concurrency limits) and worker (lease expiry).
CREATE INDEX jobs_active ON jobs (tenant_id, worker_id) WHERE state IN ('assigned', 'running');

CREATE TABLE checkpoints (
    job_id        TEXT PRIMARY KEY REFERENCES jobs(id),
    seq           BIGINT NOT NULL,
    state         BYTEA NOT NULL,
    output_bytes  BIGINT NOT NULL,
    output_parts  BIGINT NOT NULL,
    output_tail   BYTEA NOT NULL,
    fuel_used     BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE job_logs (
    job_id  TEXT NOT NULL REFERENCES jobs(id),
    seq     BIGSERIAL PRIMARY KEY,
    attempt BIGINT NOT NULL,
    at_ms   BIGINT NOT NULL,
    level   TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX job_logs_job ON job_logs (job_id, seq);
