DROP INDEX outbox_client;
DROP INDEX outbox_user;
ALTER TABLE outbox DROP COLUMN user_id;
