-- Workers claim the oldest due pending deliveries. A partial index in claim order holds only
-- the pending ones, so a claim reads the few rows it takes (plus those leased right now)
-- instead of sorting every pending row; delivered and failed rows leave it.
DROP INDEX outbox_due;
CREATE INDEX outbox_pending ON outbox (next_attempt_at, id) WHERE state = 'pending';
