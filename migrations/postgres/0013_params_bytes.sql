-- The bytes of params each tenant keeps in its jobs (the JSON text, `octet_length(params)`),
-- counted in its stored bytes (`StateStore::stored_bytes`, the tier's `stored_bytes` quota).
-- Kept by statement-level triggers in the statement that inserts or deletes the jobs
-- (submission, retention), so reading a tenant's figure is at most 16 rows, whatever the
-- jobs it keeps.
--
-- Sharded: each statement adds its jobs' bytes to one of 16 rows of the tenant, picked at
-- random, and the figure is their sum. A single row per tenant would be locked from the
-- statement to its commit by every submission of the tenant, so that concurrent submissions of
-- one tenant would wait for each other's commit (a WAL flush each).
CREATE TABLE tenant_params (
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    shard     SMALLINT NOT NULL,
    bytes     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, shard)
);

INSERT INTO tenant_params (tenant_id, shard, bytes)
    SELECT tenant_id, 0, SUM(octet_length(params)) FROM jobs GROUP BY tenant_id;

-- One call per statement; the tenants in order, so that two statements lock their rows in
-- one order.
CREATE FUNCTION tenant_params_sync() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO tenant_params (tenant_id, shard, bytes)
        SELECT n.tenant_id, floor(random() * 16)::SMALLINT, SUM(octet_length(n.params))
        FROM new_rows n GROUP BY n.tenant_id ORDER BY n.tenant_id
        ON CONFLICT (tenant_id, shard) DO UPDATE SET bytes = tenant_params.bytes + excluded.bytes;
    ELSE
        INSERT INTO tenant_params (tenant_id, shard, bytes)
        SELECT o.tenant_id, floor(random() * 16)::SMALLINT, -SUM(octet_length(o.params))
        FROM old_rows o GROUP BY o.tenant_id ORDER BY o.tenant_id
        ON CONFLICT (tenant_id, shard) DO UPDATE SET bytes = tenant_params.bytes + excluded.bytes;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tenant_params_insert AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tenant_params_sync();
CREATE TRIGGER tenant_params_delete AFTER DELETE ON jobs REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tenant_params_sync();

-- The built-in tiers stored before `params_bytes` existed take its built-in figure; other
-- tiers stored without it get the default (1 MiB) when read.
UPDATE tiers SET spec = jsonb_set(spec::jsonb, '{params_bytes}', to_jsonb(CASE name
        WHEN 'free' THEN 65536 WHEN 'standard' THEN 1048576 ELSE 4194304 END))::text
    WHERE name IN ('free', 'standard', 'premium') AND NOT (spec::jsonb ? 'params_bytes');
