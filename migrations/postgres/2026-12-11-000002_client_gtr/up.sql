-- Latch's global_token_revocation client field (latch_core::model::GtrTarget as JSON): where
-- Latch sends the app Global Token Revocation. NULL: nowhere.
ALTER TABLE clients ADD COLUMN global_token_revocation TEXT;
