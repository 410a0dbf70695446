-- Log streams (latch_core::model::log_stream): the streams, and one durable queue of the events
-- each is yet to send. The log writer queues an event for every stream whose filters it passes,
-- in the transaction that writes the event; a worker leases a stream (`locked_until`), sends
-- its oldest queued events in order and deletes them once the sink answered 2xx. Deleting a
-- stream deletes its queue (by the store, and by the workers' purge for events another instance
-- queued with a view of the streams a few seconds old). A queued event is kept no longer than
-- the log keeps events (`date`, the event's, in milliseconds: the retention task purges by it),
-- so a stream left paused or suspended holds a bounded queue.
CREATE TABLE log_streams (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    -- endpoint, content type and format; the authorization sealed under the master key
    sink TEXT NOT NULL,
    filters TEXT NOT NULL,
    suspended_reason TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    locked_until BIGINT,
    failures INTEGER NOT NULL,
    failing_since BIGINT,
    last_error TEXT,
    next_attempt_at BIGINT
);

-- AUTOINCREMENT: a sequence number is never used twice, even after the newest row is deleted.
CREATE TABLE log_stream_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id TEXT NOT NULL,
    log_id TEXT NOT NULL,
    date BIGINT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX log_stream_events_stream ON log_stream_events (stream_id, seq);
CREATE INDEX log_stream_events_date ON log_stream_events (date);
