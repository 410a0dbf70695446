-- Nothing to undo: the secrets forgotten on the way up cannot come back.
SELECT 1;
