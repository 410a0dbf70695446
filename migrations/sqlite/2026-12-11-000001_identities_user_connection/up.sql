-- A user's identity in one connection (SCIM writes, sign-ins) is found by both columns: the
-- planner no longer walks the connection's identities by the primary key's prefix.
CREATE INDEX identities_user_connection ON identities (user_id, connection_id);
DROP INDEX identities_user;
