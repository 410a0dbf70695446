-- Workers claim due pending deliveries. A partial index in claim order holds only the pending
-- ones, so a claim reads the rows it takes instead of sorting every pending row.
DROP INDEX outbox_due;
CREATE INDEX outbox_pending ON outbox (next_attempt_at, id) WHERE state = 'pending';
