-- The queue in a table of its own: one row per job that is `queued` without a waiting reason,
-- kept by triggers on `jobs` in the statement that changes the job, and read by
-- `queue_candidates`.
--
-- Why not the partial index `jobs_queue` any more: a claim leaves the claimed row's old version
-- in that index until VACUUM removes it, and those entries pile up at the head of the queue,
-- where every scheduling round starts reading. VACUUM of `jobs` comes seldom (autovacuum visits
-- a database about once a minute, and a large table needs a fifth of its rows dead) and costs a
-- full pass over every index of the table. Measured in the throughput benchmark (about 10,000
-- jobs/s, no VACUUM during the run), the candidates query took 1.9 ms per call on average over
-- the first 20 s of a run, 5.9 ms over the next 20 s and 9.9 ms over the last 20 s.
-- `job_queue` stays small (the queued jobs and the dead rows since its last VACUUM), so the
-- leader VACUUMs it every second (`StateStore::vacuum_queue`) at a cost that does not grow with
-- the jobs kept.
CREATE TABLE job_queue (
    job_id    TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    priority  INTEGER NOT NULL,
    workload  TEXT NOT NULL,
    placement TEXT
);
CREATE INDEX job_queue_order ON job_queue (tenant_id, priority DESC, job_id);

INSERT INTO job_queue (job_id, tenant_id, priority, workload, placement)
    SELECT id, tenant_id, priority, workload, placement FROM jobs
    WHERE state = 'queued' AND waiting_reason IS NULL;

-- Statement-level triggers, each reading the statement's rows from its transition tables: a
-- changed or deleted row leaves the queue, and a new or changed row enters it if it waits in it.
-- One call per statement, whatever its rows: with a row-level trigger, a call per row took 6 to
-- 15 µs of each submitted job's insert (auto_explain in the throughput benchmark).
CREATE FUNCTION job_queue_sync() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM job_queue q USING old_rows o
        WHERE q.job_id = o.id AND o.state = 'queued' AND o.waiting_reason IS NULL;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO job_queue (job_id, tenant_id, priority, workload, placement)
        SELECT n.id, n.tenant_id, n.priority, n.workload, n.placement FROM new_rows n
        WHERE n.state = 'queued' AND n.waiting_reason IS NULL;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER job_queue_insert AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION job_queue_sync();
CREATE TRIGGER job_queue_update AFTER UPDATE ON jobs REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION job_queue_sync();
CREATE TRIGGER job_queue_delete AFTER DELETE ON jobs REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION job_queue_sync();

DROP INDEX jobs_queue;

-- The queued jobs with a waiting reason, which `job_queue` leaves out, for the queued-jobs
-- quota's count (`StateStore::queued_count`).
CREATE INDEX jobs_waiting ON jobs (tenant_id) WHERE state = 'queued' AND waiting_reason IS NOT NULL;

-- As in 0009, reading `job_queue` instead of `jobs`.
CREATE OR REPLACE FUNCTION queue_candidates(per_tenant BIGINT, skip TEXT[])
RETURNS TABLE (id TEXT, tenant_id TEXT, workload TEXT, placement TEXT)
LANGUAGE plpgsql STABLE
SET enable_sort = off
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY WITH RECURSIVE waiting(tenant_id) AS (
        (SELECT q.tenant_id FROM job_queue q ORDER BY q.tenant_id LIMIT 1)
        UNION ALL
        SELECT (SELECT q.tenant_id FROM job_queue q WHERE q.tenant_id > w.tenant_id ORDER BY q.tenant_id LIMIT 1)
        FROM waiting w WHERE w.tenant_id IS NOT NULL)
    SELECT c.job_id, c.tenant_id, c.workload, c.placement FROM waiting w CROSS JOIN LATERAL (
        SELECT q.job_id, q.tenant_id, q.workload, q.placement FROM job_queue q
        WHERE q.tenant_id = w.tenant_id
        ORDER BY q.priority DESC, q.job_id LIMIT per_tenant) c
    WHERE w.tenant_id IS NOT NULL AND NOT (w.tenant_id = ANY(skip));
END
$$;
