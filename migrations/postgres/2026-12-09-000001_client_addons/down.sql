ALTER TABLE clients DROP COLUMN addons;
