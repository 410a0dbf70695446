DROP TABLE log_stream_events;
DROP TABLE log_streams;
