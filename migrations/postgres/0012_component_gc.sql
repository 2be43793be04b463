-- Garbage collection of components (`coordinator/collect.rs`): the bytes of a component
-- (`components/{digest}` in the object store, shared by every tenant that uploads them) are
-- deleted once no tenant holds it any more.

-- One row per stored component. `unreferenced_since_ms`: when the collector found that no tenant
-- holds it (cleared when one holds it again); `collecting_since_ms`: when the collector took it
-- for deletion (its bytes are being deleted; nobody may hold it until the row is gone).
CREATE TABLE components (
    digest                TEXT PRIMARY KEY,
    size_bytes            BIGINT NOT NULL,
    created_at_ms         BIGINT NOT NULL,
    unreferenced_since_ms BIGINT,
    collecting_since_ms   BIGINT
);

-- Which tenant holds which component: from its upload on, while a workload of the tenant names it
-- or a job of the tenant that has not ended needs it, and a grace period after that.
-- `unreferenced_since_ms` NULL: in use, and counted in the tenant's stored bytes.
CREATE TABLE component_holds (
    tenant_id             TEXT NOT NULL REFERENCES tenants(id),
    digest                TEXT NOT NULL,
    created_at_ms         BIGINT NOT NULL,
    unreferenced_since_ms BIGINT,
    PRIMARY KEY (tenant_id, digest)
);
CREATE INDEX component_holds_digest ON component_holds (digest);
CREATE INDEX workloads_digest ON workloads (digest);

-- What is stored already: the workloads' components, and those of the jobs that have not ended
-- (whose size the collector reads from the object store).
INSERT INTO components (digest, size_bytes, created_at_ms)
    SELECT digest, MAX(size_bytes), MIN(created_at_ms) FROM workloads GROUP BY digest;
INSERT INTO components (digest, size_bytes, created_at_ms)
    SELECT DISTINCT digest, 0, 0 FROM jobs
    WHERE state IN ('scheduled', 'queued', 'assigned', 'running')
    AND NOT EXISTS (SELECT 1 FROM components c WHERE c.digest = jobs.digest);
INSERT INTO component_holds (tenant_id, digest, created_at_ms)
    SELECT tenant_id, digest, MIN(created_at_ms) FROM workloads GROUP BY tenant_id, digest;
INSERT INTO component_holds (tenant_id, digest, created_at_ms)
    SELECT DISTINCT tenant_id, digest, 0 FROM jobs
    WHERE state IN ('scheduled', 'queued', 'assigned', 'running')
    AND NOT EXISTS (SELECT 1 FROM component_holds h WHERE h.tenant_id = jobs.tenant_id AND h.digest = jobs.digest);
