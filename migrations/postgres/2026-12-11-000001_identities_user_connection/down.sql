CREATE INDEX identities_user ON identities (user_id);
DROP INDEX identities_user_connection;
