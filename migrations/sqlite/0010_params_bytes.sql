-- The bytes of params each tenant keeps in its jobs (the JSON text, `octet_length(params)`),
-- counted in its stored bytes (`StateStore::stored_bytes`, the tier's `stored_bytes` quota).
-- Kept by triggers in the statement that inserts or deletes the jobs (submission, retention),
-- so reading a tenant's figure is one row, whatever the jobs it keeps.
CREATE TABLE tenant_params (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id),
    bytes     INTEGER NOT NULL
);

INSERT INTO tenant_params (tenant_id, bytes)
    SELECT tenant_id, SUM(octet_length(params)) FROM jobs GROUP BY tenant_id;

CREATE TRIGGER tenant_params_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO tenant_params (tenant_id, bytes) VALUES (NEW.tenant_id, octet_length(NEW.params))
    ON CONFLICT (tenant_id) DO UPDATE SET bytes = bytes + excluded.bytes;
END;

CREATE TRIGGER tenant_params_delete AFTER DELETE ON jobs BEGIN
    UPDATE tenant_params SET bytes = bytes - octet_length(OLD.params) WHERE tenant_id = OLD.tenant_id;
END;

-- The built-in tiers stored before `params_bytes` existed take its built-in figure; other
-- tiers stored without it get the default (1 MiB) when read.
UPDATE tiers SET spec = json_set(spec, '$.params_bytes', CASE name
        WHEN 'free' THEN 65536 WHEN 'standard' THEN 1048576 ELSE 4194304 END)
    WHERE name IN ('free', 'standard', 'premium') AND json_extract(spec, '$.params_bytes') IS NULL;
