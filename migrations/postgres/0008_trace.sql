-- Traces: the W3C trace context (`traceparent`) of a job's submission, which the spans of its
-- assignments, attempts and reports continue, across processes and retries.
ALTER TABLE jobs ADD COLUMN trace_parent TEXT;
