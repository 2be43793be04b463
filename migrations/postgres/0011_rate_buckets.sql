-- The submission-rate buckets, one row per tenant that submitted under a rate-limited tier, shared
-- by every coordinator so that the tier's rate holds for the installation, not per coordinator.
-- GCRA (ATM Forum Traffic Management 4.0, 1996): `tat_ns` is the bucket's theoretical arrival
-- time, Unix nanoseconds of the database's clock; see `StateStore::take_submission_tokens`.
CREATE TABLE rate_buckets (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id),
    tat_ns    BIGINT NOT NULL
);
