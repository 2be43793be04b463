-- Delayed jobs and retry backoff: a `scheduled` job waits until `not_before_ms`.
ALTER TABLE jobs ADD COLUMN not_before_ms BIGINT;
-- Retry policy (see RetryPolicy) and the retryable failures counted against it.
ALTER TABLE jobs ADD COLUMN max_attempts BIGINT NOT NULL DEFAULT 3;
ALTER TABLE jobs ADD COLUMN initial_backoff_ms BIGINT NOT NULL DEFAULT 1000;
ALTER TABLE jobs ADD COLUMN max_backoff_ms BIGINT NOT NULL DEFAULT 60000;
ALTER TABLE jobs ADD COLUMN failures BIGINT NOT NULL DEFAULT 0;
-- Placement (JSON: require, prefer, avoid_workloads; NULL: anywhere) and why a queued job
-- cannot be placed.
ALTER TABLE jobs ADD COLUMN placement TEXT;
ALTER TABLE jobs ADD COLUMN waiting_reason TEXT;

CREATE INDEX jobs_scheduled ON jobs (not_before_ms) WHERE state = 'scheduled';

-- The queue leaves out jobs with a waiting reason: the index says so, so that taking the best
-- candidates stays an ordered scan of its first entries, however many jobs wait.
DROP INDEX jobs_queue;
CREATE INDEX jobs_queue ON jobs (tier_priority DESC, priority DESC, id)
    WHERE state = 'queued' AND waiting_reason IS NULL;

-- `dead` is an end state too: retention purges it.
DROP INDEX jobs_finished;
CREATE INDEX jobs_finished ON jobs (finished_at_ms)
    WHERE state IN ('succeeded', 'failed', 'cancelled', 'dead');
