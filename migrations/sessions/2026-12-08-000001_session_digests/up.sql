-- Sessions are stored under the digest of their secret from now on (the secret lives only in the
-- browser's cookie). Rows from before are keyed by the secret itself: drop them, and the codes
-- that name them. Their users sign in again once.
DELETE FROM sessions;
DELETE FROM auth_codes;
DELETE FROM upstream_sids;
