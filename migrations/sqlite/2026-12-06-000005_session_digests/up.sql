-- `session_id` now holds the digest of the session's secret (the cookie's value), never the secret.
-- Rows from before hold the secret itself, and the sessions they name are gone (the session store
-- drops sessions stored under their secrets). Tokens bound to one die as they would at its
-- logout: revoked unless granted offline_access. Every such row forgets the secret.
UPDATE refresh_tokens SET revoked_at = CAST(strftime('%s', 'now') AS INTEGER) * 1000
WHERE session_id IS NOT NULL AND NOT offline AND revoked_at IS NULL;
UPDATE refresh_tokens SET session_id = NULL WHERE session_id IS NOT NULL;
