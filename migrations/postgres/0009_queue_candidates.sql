-- The scheduler's candidates: each tenant's best queued jobs (priority, then age), read from the
-- queue index. The tenants are found by a skip scan of the index (one probe per tenant, however
-- many jobs each holds). Sorting is switched off inside the function so the planner must read
-- each tenant's jobs in index order: statistics lag behind a queue that fills in seconds, and
-- with them it estimated one queued job and chose to sort every queued job of the tenant
-- (20,659 rows, 37 ms) instead of reading the index's first entries. The setting applies to
-- this function only. PL/pgSQL keeps the query's plan for the session (a SQL function with a
-- SET clause would be planned on every call).
CREATE FUNCTION queue_candidates(per_tenant BIGINT, skip TEXT[])
RETURNS TABLE (id TEXT, tenant_id TEXT, workload TEXT, placement TEXT)
LANGUAGE plpgsql STABLE
SET enable_sort = off
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY WITH RECURSIVE waiting(tenant_id) AS (
        (SELECT j.tenant_id FROM jobs j WHERE j.state = 'queued' AND j.waiting_reason IS NULL
         ORDER BY j.tenant_id LIMIT 1)
        UNION ALL
        SELECT (SELECT j.tenant_id FROM jobs j WHERE j.state = 'queued' AND j.waiting_reason IS NULL
                AND j.tenant_id > w.tenant_id ORDER BY j.tenant_id LIMIT 1)
        FROM waiting w WHERE w.tenant_id IS NOT NULL)
    SELECT c.id, c.tenant_id, c.workload, c.placement FROM waiting w CROSS JOIN LATERAL (
        SELECT j.id, j.tenant_id, j.workload, j.placement FROM jobs j
        WHERE j.state = 'queued' AND j.waiting_reason IS NULL AND j.tenant_id = w.tenant_id
        ORDER BY j.priority DESC, j.id LIMIT per_tenant) c
    WHERE w.tenant_id IS NOT NULL AND NOT (w.tenant_id = ANY(skip));
END
$$;
