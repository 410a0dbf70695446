-- Inbound SCIM per connection (latch_core::model::scim): a connection's configuration, its
-- bearer tokens (digests only), and what Latch keeps of each user a SCIM client provisioned.
-- Deleting a connection deletes all three; deleting a user deletes their SCIM records.
CREATE TABLE scim_configs (
    connection_id TEXT PRIMARY KEY NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    user_id_attribute TEXT NOT NULL,
    mapping TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE scim_tokens (
    token_id TEXT PRIMARY KEY NOT NULL,
    connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    digest TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    valid_until BIGINT
);
CREATE INDEX scim_tokens_connection ON scim_tokens (connection_id, created_at);

-- `user_name_key` is `user_name` lower-cased (by Latch, not the database's collation): userName
-- is unique within a connection case-insensitively. The email lookup goes through `users_email`.
CREATE TABLE scim_users (
    connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    user_name TEXT NOT NULL,
    user_name_key TEXT NOT NULL,
    external_id TEXT,
    active BOOLEAN NOT NULL,
    resource TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (connection_id, user_id),
    CONSTRAINT scim_users_user_name UNIQUE (connection_id, user_name_key),
    CONSTRAINT scim_users_external_id UNIQUE (connection_id, external_id)
);
CREATE INDEX scim_users_user ON scim_users (user_id);
CREATE INDEX scim_users_created ON scim_users (connection_id, created_at, user_id);
