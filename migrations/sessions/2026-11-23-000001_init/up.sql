-- The embedded session store (its own SQLite file, sessions.db). Instants are Unix milliseconds.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    ends_at BIGINT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_ends ON sessions (ends_at);

CREATE TABLE auth_codes (
    digest TEXT PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX auth_codes_expires ON auth_codes (expires_at);

CREATE TABLE login_transactions (
    id TEXT PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX login_transactions_expires ON login_transactions (expires_at);

CREATE TABLE seen_once (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX seen_once_expires ON seen_once (expires_at);

CREATE TABLE counters (
    key TEXT PRIMARY KEY NOT NULL,
    hits BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX counters_expires ON counters (expires_at);
