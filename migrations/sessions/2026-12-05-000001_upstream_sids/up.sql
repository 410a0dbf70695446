-- Upstream OpenID Connect `sid` → the user whose session carries it (connection + "\n" + sid),
-- so an upstream back-channel logout token with a `sid` and no `sub` finds its session.
CREATE TABLE upstream_sids (
    key TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX upstream_sids_expires ON upstream_sids (expires_at);
