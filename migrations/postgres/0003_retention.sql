-- Retention: finished jobs are purged oldest first once past the retention period.
CREATE INDEX jobs_finished ON jobs (finished_at_ms)
    WHERE state IN ('succeeded', 'failed', 'cancelled');
