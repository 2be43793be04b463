-- The submission-rate buckets, one row per tenant that submitted under a rate-limited tier (GCRA:
-- `tat_ns` is the bucket's theoretical arrival time, Unix nanoseconds); see
-- `StateStore::take_submission_tokens`.
CREATE TABLE rate_buckets (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id),
    tat_ns    INTEGER NOT NULL
);
