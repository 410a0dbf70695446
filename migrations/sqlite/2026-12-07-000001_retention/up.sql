-- Retention purges delivered and failed deliveries by the time they finished. A partial index
-- holds only finished rows, so a purge batch reads just what it deletes, and a claim (which
-- changes neither column) stays as cheap as before.
CREATE INDEX outbox_finished ON outbox (finished_at) WHERE state <> 'pending';
