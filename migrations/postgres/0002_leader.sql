-- Leader election among coordinators: one row, taken by whoever finds it expired. `term` is the
-- fencing token of the current leadership (raised on each takeover); the scheduler's writes check
-- it in their own transaction. Times are the database's clock, Unix milliseconds.
CREATE TABLE leader (
    id            SMALLINT PRIMARY KEY CHECK (id = 1),
    holder        TEXT NOT NULL,
    term          BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
INSERT INTO leader (id, holder, term, expires_at_ms) VALUES (1, '', 0, 0);
