-- Fair share: the scheduler takes each tenant's best queued jobs (priority, then age) and shares
-- the slots out across tenants by tier weight, so the queue is read per tenant.
DROP INDEX jobs_queue;
CREATE INDEX jobs_queue ON jobs (tenant_id, priority DESC, id)
    WHERE state = 'queued' AND waiting_reason IS NULL;
