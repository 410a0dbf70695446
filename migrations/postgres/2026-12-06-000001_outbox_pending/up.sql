-- Workers claim due pending deliveries. A partial index holds only the pending ones, so a claim
-- reads the few rows it takes (plus those leased right now); delivered and failed rows leave it.
DROP INDEX outbox_due;
CREATE INDEX outbox_pending ON outbox (next_attempt_at, id) WHERE state = 'pending';
-- A claim changes only `locked_until`, which no index covers: with room left on each page the
-- new row version stays on its page without new index entries (a HOT update). The outbox is a
-- queue with many updates; it is vacuumed sooner than the default.
ALTER TABLE outbox SET (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.05);
