-- Sign-in throttling (progressive delays): per key, the failures still counted, the instant
-- leaking is counted from, the end of the key's delay, and when the row means nothing any more.
-- Instants are Unix milliseconds.
CREATE TABLE throttles (
    key TEXT PRIMARY KEY NOT NULL,
    failures BIGINT NOT NULL,
    mark BIGINT NOT NULL,
    until_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX throttles_expires ON throttles (expires_at);
