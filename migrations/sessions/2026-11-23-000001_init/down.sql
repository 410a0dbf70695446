DROP TABLE counters;
DROP TABLE seen_once;
DROP TABLE login_transactions;
DROP TABLE auth_codes;
DROP TABLE sessions;
