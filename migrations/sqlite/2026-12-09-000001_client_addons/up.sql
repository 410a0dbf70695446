-- Auth0's client addons (latch_core::model::ClientAddons) as JSON; today only `samlp`, which
-- makes the client a SAML app. Clients stored before addons existed have none.
ALTER TABLE clients ADD COLUMN addons TEXT NOT NULL DEFAULT '{}';
