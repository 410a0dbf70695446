-- Sessions dropped on the way up cannot come back; sessions stored since are keyed by digests,
-- which an earlier release cannot look up: drop them too.
DELETE FROM sessions;
DELETE FROM auth_codes;
DELETE FROM upstream_sids;
