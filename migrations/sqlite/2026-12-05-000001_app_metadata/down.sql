ALTER TABLE users DROP COLUMN app_metadata;
