ALTER TABLE clients DROP COLUMN global_token_revocation;
