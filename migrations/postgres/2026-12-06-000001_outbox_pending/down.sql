ALTER TABLE outbox RESET (fillfactor, autovacuum_vacuum_scale_factor);
DROP INDEX outbox_pending;
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
