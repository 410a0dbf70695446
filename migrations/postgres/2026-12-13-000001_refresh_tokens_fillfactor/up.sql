-- A rotation marks the old token (`rotated_at`) and a revocation sets `revoked_at`; no index
-- covers either. With room left on each page, the new row version stays on its page without new
-- entries in the table's five indexes (a HOT update, the outbox's way). Tokens come in in order
-- and most are rotated or revoked while their page is still hot, so the room is where the
-- updates land. Pages written from now on keep it; those already full stay as they are until
-- rewritten.
ALTER TABLE refresh_tokens SET (fillfactor = 80);
