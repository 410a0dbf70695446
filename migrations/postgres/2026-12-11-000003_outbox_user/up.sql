-- Whom a delivery is about (the notice's `sub`), so an administrator can list a user's
-- deliveries (`GET /api/v2/logout-deliveries?user_id=`). Claims never change it, so they stay
-- HOT updates.
ALTER TABLE outbox ADD COLUMN user_id TEXT;
UPDATE outbox SET user_id = notice::json ->> 'sub';
CREATE INDEX outbox_user ON outbox (user_id, created_at);
CREATE INDEX outbox_client ON outbox (client_id, created_at);
