-- Every authorization (code exchange) is a grant with a revocable record, also for clients
-- without refresh tokens: access tokens carry its id (`gid`) and die when it is revoked.
CREATE TABLE grants (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    client_id TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
    session_id TEXT,
    offline BOOLEAN NOT NULL DEFAULT false,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX grants_user ON grants (user_id);
CREATE INDEX grants_session ON grants (session_id);
CREATE INDEX grants_expires ON grants (expires_at);

-- The grants of existing refresh-token families; a family entirely revoked is a revoked grant.
INSERT INTO grants (id, user_id, client_id, session_id, offline, created_at, expires_at, revoked_at)
SELECT family_id, MIN(user_id), MIN(client_id), MIN(session_id), MAX(offline), MIN(created_at),
       MAX(family_expires_at),
       CASE WHEN COUNT(revoked_at) = COUNT(*) THEN MAX(revoked_at) END
FROM refresh_tokens
GROUP BY family_id;
