-- Tenant administration: suspension, key ids, read-only and revoked keys, tiers edited at run time.

-- A suspended tenant's keys are refused and its queued jobs do not start; NULL: active.
ALTER TABLE tenants ADD COLUMN suspended_at_ms BIGINT;

-- A key's public id (the first 16 hex digits of its digest), for listing and revoking.
ALTER TABLE api_keys ADD COLUMN id TEXT;
UPDATE api_keys SET id = substr(digest, 1, 16);
ALTER TABLE api_keys ALTER COLUMN id SET NOT NULL;
CREATE UNIQUE INDEX api_keys_id ON api_keys (id);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);
-- A read-only key may only read (GET); a revoked key is refused.
ALTER TABLE api_keys ADD COLUMN read_only BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE api_keys ADD COLUMN revoked_at_ms BIGINT;

-- Tiers by name; `spec` is the tier's limits as JSON (see `Tier`). Seeded from the configuration
-- file with the tiers it names that are not here yet.
CREATE TABLE tiers (
    name          TEXT PRIMARY KEY,
    spec          TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
